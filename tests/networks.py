"""The float networks embedded engineers deploy (MLPerf Tiny and friends), built with onnx.helper
with seeded weights and BatchNormalization already folded into the convolutions (except where the
network keeps it: the autoencoder's BatchNormalization after dense layers, which ORT does not fold).
Quantize them with models.quantize."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class NetBuilder:
    """Appends float ONNX nodes and tracks shapes (NCHW), so each network reads like its paper."""

    def __init__(self, name: str, input_shape: list[int], seed: int = 0):
        self.name, self.rng = name, np.random.default_rng(seed)
        self.nodes, self.inits, self.shapes = [], [], {"input": list(input_shape)}
        self.input_shape = list(input_shape)
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def _const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _node(self, op: str, inputs: list[str], shape: list[int], **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x, cout, k=3, stride=1, group=1, act="relu", kernel=None, dilation=1):
        n, cin, h, w = self.shapes[x]
        kh, kw = kernel or (k, k)
        span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
        fan_in = cin // group * kh * kw
        name = self._name("conv")
        wt = self._const(f"{name}_w", (self.rng.standard_normal((cout, cin // group, kh, kw)) * np.sqrt(2 / fan_in)).astype(np.float32))
        b = self._const(f"{name}_b", (self.rng.standard_normal(cout) * 0.05).astype(np.float32))
        pads = [(span_h - 1) // 2, (span_w - 1) // 2, span_h // 2, span_w // 2]
        oh, ow = (h + pads[0] + pads[2] - span_h) // stride + 1, (w + pads[1] + pads[3] - span_w) // stride + 1
        extra = {"dilations": [dilation, dilation]} if dilation != 1 else {}
        y = self._node("Conv", [x, wt, b], [n, cout, oh, ow], kernel_shape=[kh, kw], strides=[stride, stride], pads=pads,
                       group=group, **extra)
        return self.activation(y, act)

    def activation(self, x, act):
        if act == "relu":
            return self._node("Relu", [x], self.shapes[x])
        if act == "relu6":
            lo, hi = self._const(self._name("lo"), np.float32(0)), self._const(self._name("hi"), np.float32(6))
            return self._node("Clip", [x, lo, hi], self.shapes[x])
        if act == "leaky":
            return self._node("LeakyRelu", [x], self.shapes[x], alpha=0.1)
        return x

    def dense(self, x, units, act="relu", batchnorm=False):
        n, k = self.shapes[x]
        name = self._name("fc")
        wt = self._const(f"{name}_w", (self.rng.standard_normal((k, units)) * np.sqrt(2 / k)).astype(np.float32))
        b = self._const(f"{name}_b", (self.rng.standard_normal(units) * 0.05).astype(np.float32))
        y = self._node("Gemm", [x, wt, b], [n, units])
        if batchnorm:
            params = [self._const(self._name("bn"), v.astype(np.float32)) for v in (
                self.rng.uniform(0.5, 1.5, units), self.rng.standard_normal(units) * 0.1,
                self.rng.standard_normal(units) * 0.2, self.rng.uniform(0.5, 2.0, units))]
            y = self._node("BatchNormalization", [y, *params], [n, units], epsilon=1e-3)
        return self.activation(y, act)

    def add(self, a, b, act=None):
        return self.activation(self._node("Add", [a, b], self.shapes[a]), act)

    def concat(self, xs):
        shape = list(self.shapes[xs[0]])
        shape[1] = sum(self.shapes[x][1] for x in xs)
        return self._node("Concat", xs, shape, axis=1)

    def maxpool(self, x, k=3, stride=2, ceil_mode=1):
        n, c, h, w = self.shapes[x]
        out = [-(-(s - k) // stride) + 1 if ceil_mode else (s - k) // stride + 1 for s in (h, w)]
        return self._node("MaxPool", [x], [n, c, *out], kernel_shape=[k, k], strides=[stride, stride], ceil_mode=ceil_mode)

    def avgpool(self, x, kernel, stride=None):
        n, c, h, w = self.shapes[x]
        stride = stride or kernel
        out = [(h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1]
        return self._node("AveragePool", [x], [n, c, *out], kernel_shape=list(kernel), strides=list(stride))

    def global_pool(self, x):
        n, c = self.shapes[x][:2]
        return self._node("GlobalAveragePool", [x], [n, c, 1, 1])

    def flatten(self, x):
        shape = self.shapes[x]
        return self._node("Flatten", [x], [shape[0], int(np.prod(shape[1:]))], axis=1)

    def resize2x(self, x):
        n, c, h, w = self.shapes[x]
        roi, scales = self._const(self._name("roi"), np.zeros(0, np.float32)), self._const(self._name("scales"), np.array([1, 1, 2, 2], np.float32))
        return self._node("Resize", [x, roi, scales], [n, c, 2 * h, 2 * w], mode="nearest")

    def sigmoid(self, x):
        return self._node("Sigmoid", [x], self.shapes[x])

    def softmax(self, x, axis=-1):
        return self._node("Softmax", [x], self.shapes[x], axis=axis)

    def build(self, outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, self.input_shape)],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, self.shapes[o]) for o in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def ds_cnn(seed=0):
    """Keyword spotting DS-CNN (MLPerf Tiny): 1x1x49x10, Conv 10x4/2 (64), 4 x (depthwise 3x3 + pointwise 1x1),
    average pool over the remaining 25x5 map, Gemm to 12 classes."""
    net = NetBuilder("ds_cnn", [1, 1, 49, 10], seed)
    x = net.conv("input", 64, kernel=(10, 4), stride=2)
    for _ in range(4):
        x = net.conv(x, 64, 3, group=64)
        x = net.conv(x, 64, 1)
    x = net.avgpool(x, net.shapes[x][2:])
    return net.build([net.dense(net.flatten(x), 12, act=None)])


def mobilenet_v1(seed=0, alpha=0.25, size=96, classes=2):
    """Visual wake words MobileNetV1, width 0.25, 96x96x3, 2 classes."""
    net = NetBuilder("mobilenet_v1", [1, 3, size, size], seed)
    c = lambda ch: max(8, int(ch * alpha))  # noqa: E731
    x = net.conv("input", c(32), 3, stride=2)
    for ch, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]:
        x = net.conv(x, net.shapes[x][1], 3, stride=stride, group=net.shapes[x][1])
        x = net.conv(x, c(ch), 1)
    x = net.flatten(net.global_pool(x))
    return net.build([net.dense(x, classes, act=None)])


def resnet8(seed=0):
    """CIFAR ResNet-8 (MLPerf Tiny image classification): 32x32x3, stem Conv(16), three stages of one
    residual block (16, 32, 64 channels; stride 2 and a 1x1 projection in the last two), AveragePool, Gemm(10)."""
    net = NetBuilder("resnet8", [1, 3, 32, 32], seed)
    x = net.conv("input", 16, 3)
    for ch, stride in [(16, 1), (32, 2), (64, 2)]:
        y = net.conv(x, ch, 3, stride=stride)
        y = net.conv(y, ch, 3, act=None)
        shortcut = x if stride == 1 else net.conv(x, ch, 1, stride=stride, act=None)
        x = net.add(y, shortcut, act="relu")
    x = net.avgpool(x, net.shapes[x][2:])
    return net.build([net.dense(net.flatten(x), 10, act=None)])


def autoencoder(seed=0):
    """MLPerf Tiny anomaly detection: 640 -> 128 x4 -> 8 -> 128 x4 -> 640, each dense layer followed by
    BatchNormalization and Relu (the last without)."""
    net = NetBuilder("autoencoder", [1, 640], seed)
    x = "input"
    for units in [128, 128, 128, 128, 8, 128, 128, 128, 128]:
        x = net.dense(x, units, batchnorm=True)
    return net.build([net.dense(x, 640, act=None)])


def mobilenet_v2(seed=0, alpha=0.35, size=96, classes=10):
    """MobileNetV2 width 0.35 at 96x96: inverted residual blocks with Clip(0, 6) and Add."""
    net = NetBuilder("mobilenet_v2", [1, 3, size, size], seed)
    c = lambda ch: max(8, int(ch * alpha + 4) // 8 * 8)  # noqa: E731
    x = net.conv("input", c(32), 3, stride=2, act="relu6")
    for expand, ch, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                        (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(repeats):
            cin = net.shapes[x][1]
            y = net.conv(x, cin * expand, 1, act="relu6") if expand != 1 else x
            y = net.conv(y, cin * expand, 3, stride=stride if i == 0 else 1, group=cin * expand, act="relu6")
            y = net.conv(y, c(ch), 1, act=None)
            x = net.add(x, y) if (i > 0 or stride == 1) and cin == c(ch) else y
    x = net.conv(x, 1280, 1, act="relu6")
    x = net.flatten(net.global_pool(x))
    return net.build([net.dense(x, classes, act=None)])


def squeezenet11(seed=0, size=96, classes=10):
    """SqueezeNet 1.1 at 96x96: MaxPool (ceil mode) and fire modules that Concat two expand branches."""
    net = NetBuilder("squeezenet11", [1, 3, size, size], seed)
    x = net.conv("input", 64, 3, stride=2)
    x = net.maxpool(x)

    def fire(x, squeeze, expand):
        s = net.conv(x, squeeze, 1)
        return net.concat([net.conv(s, expand, 1), net.conv(s, expand, 3)])

    x = fire(fire(x, 16, 64), 16, 64)
    x = net.maxpool(x)
    x = fire(fire(x, 32, 128), 32, 128)
    x = net.maxpool(x)
    for squeeze, expand in [(48, 192), (48, 192), (64, 256), (64, 256)]:
        x = fire(x, squeeze, expand)
    x = net.conv(x, classes, 1)
    return net.build([net.flatten(net.global_pool(x))])


def detector_head(seed=0, size=64):
    """A small detector: Conv + LeakyRelu backbone, two 2x nearest Resize steps with Concat skips, and
    a Sigmoid on the prediction map."""
    net = NetBuilder("detector", [1, 3, size, size], seed)
    c1 = net.conv("input", 16, 3, stride=2, act="leaky")   # 32x32
    c2 = net.conv(c1, 32, 3, stride=2, act="leaky")        # 16x16
    c3 = net.conv(c2, 64, 3, stride=2, act="leaky")        # 8x8
    u2 = net.concat([net.resize2x(net.conv(c3, 32, 1, act="leaky")), c2])  # 16x16
    u1 = net.concat([net.resize2x(net.conv(u2, 16, 1, act="leaky")), c1])  # 32x32
    head = net.conv(u1, 6, 1, act=None)
    return net.build([net.sigmoid(head)])


NETWORKS = {"ds_cnn": ds_cnn, "mobilenet_v1": mobilenet_v1, "resnet8": resnet8, "autoencoder": autoencoder,
            "mobilenet_v2": mobilenet_v2, "squeezenet11": squeezenet11, "detector_head": detector_head}
