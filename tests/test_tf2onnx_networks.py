"""Whole networks written the way tf2onnx converts TFLite int8 models (`--opset 13`/`17`), as most
TFLite users reach ONNX: int8 input and output without Q/DQ at the edges, NHWC at the boundary with
Transposes, every layer DQ(int8) -> op -> Q with per-channel DQ weights and DQ(int32) biases,
TFLite's explicit Pad (no value input), fully connected layers as MatMul + Add, the classifier's
Softmax. ORT must run each as integers (but TFLite's Pads, float in ORT), and qcc must equal it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_exact
from qdq_builder import QdqGraph, ort_float_ops

ACT = 4 / 128  # every activation's scale: the values stay within about +-4


class TfliteStyle(QdqGraph):
    """Layers with weights scaled by their fan-in, so that activations stay in range."""

    def conv(self, x, cin, cout, k=3, stride=1, group=1, relu=True, pad=None, x_quant=(ACT, -128)):
        if pad is not None:  # TFLite's SAME padding: a Pad without a value (pads with 0.0), same quantization
            x = self.qdq(self.node("Pad", [x, self.const(np.array([0, 0, *pad, 0, 0, *pad], np.int64))]), *x_quant, np.int8)
        fan_in = cin // group * k * k
        w_scale = (self.rng.uniform(0.6, 1.4, cout) / (127 * np.sqrt(fan_in)) * 3).astype(np.float32)
        codes = self.rng.integers(-127, 128, (cout, cin // group, k, k)).astype(np.int8)
        w = self.dequantize(self.const(codes), w_scale, np.zeros(cout, np.int8), np.int8, axis=0)
        bias = self.int32_bias((cout,), (np.float32(x_quant[0]) * w_scale).astype(np.float32), axis=0)
        y = self.node("Conv", [x, w, bias], strides=[stride, stride], group=group, kernel_shape=[k, k])
        if relu:
            y = self.node("Relu", [y])
        return self.qdq(y, ACT, -128 if relu else -3, np.int8)

    def fully_connected(self, x, k, n):
        w_scale = (self.rng.uniform(0.6, 1.4, n) / (127 * np.sqrt(k)) * 3).astype(np.float32)
        w = self.dequantize(self.const(self.rng.integers(-127, 128, (k, n)).astype(np.int8)), w_scale,
                            np.zeros(n, np.int8), np.int8, axis=1)
        y = self.node("MatMul", [x, w])
        y = self.node("Add", [y, self.int32_bias((n,), (np.float32(ACT) * w_scale).astype(np.float32), axis=0)])
        return self.qdq(y, ACT, -3, np.int8)


def ds_cnn(opset: int):
    """MLPerf Tiny's keyword spotting DS-CNN (reduced): 49x10 MFCC input, a strided conv, two
    depthwise-separable blocks, average pooling, a fully connected layer and Softmax."""
    g = TfliteStyle(opset, seed=11)
    x = g.dequantize(g.input("input_1", [1, 49, 10, 1], np.int8), 1 / 128, 0, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, 0, np.int8)
    x = g.conv(x, 1, 16, k=3, stride=2, pad=[1, 1], x_quant=(1 / 128, 0))
    for _ in range(2):
        x = g.conv(x, 16, 16, k=3, group=16, pad=[1, 1])
        x = g.conv(x, 16, 16, k=1)
    x = g.qdq(g.node("AveragePool", [x], kernel_shape=[25, 5]), ACT, -128, np.int8)
    x = g.qdq(g.node("Reshape", [x, g.const(np.array([1, 16], np.int64))]), ACT, -128, np.int8)
    logits = g.fully_connected(x, 16, 12)
    probs = g.quantize(g.node("Softmax", [logits], axis=-1), 1 / 256, -128, np.int8)
    g.output(probs, "Identity")
    return g.model()


def vww_head(opset: int):
    """A visual-wake-words style head in NHWC: conv, depthwise, global pooling written as
    ReduceMean's replacement GlobalAveragePool, flatten, two fully connected layers."""
    g = TfliteStyle(opset, seed=12)
    x = g.dequantize(g.input("input", [1, 16, 16, 3], np.int8), 1 / 128, -1, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, -1, np.int8)
    x = g.conv(x, 3, 8, k=3, stride=2, pad=[1, 1], x_quant=(1 / 128, -1))
    x = g.conv(x, 8, 8, k=3, group=8, pad=[1, 1])
    x = g.conv(x, 8, 16, k=1)
    x = g.qdq(g.node("GlobalAveragePool", [x]), ACT, -128, np.int8)
    x = g.qdq(g.node("Reshape", [x, g.const(np.array([1, 16], np.int64))]), ACT, -128, np.int8)
    x = g.fully_connected(x, 16, 8)
    y = g.fully_connected(x, 8, 2)
    g.output(g.quantize(g.node("Softmax", [y], axis=-1), 1 / 256, -128, np.int8), "output")
    return g.model()


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("network", [ds_cnn, vww_head], ids=["ds_cnn", "vww_head"])
def test_tf2onnx_network_runs_as_integers_and_qcc_equals_ort(tmp_path, network, opset):
    model = network(opset)
    # ORT runs each DQ -> Pad -> Q as a float Pad (it has no QDQ rule for Pad); padding with Q(0.0),
    # the zero point, it equals qcc's Pad on the codes. Everything else runs as integers.
    assert ort_float_ops(model) == {"Pad"}
    compiled = check_exact(model, tmp_path, n_random=6)
    ops = [n.op for n in compiled.graph.nodes]
    assert "QGemm" in ops and "QLinearSoftmax" in ops and all(o not in ("QuantizeLinear", "DequantizeLinear") for o in ops)
    assert "Transpose" not in ops  # the first convolution reads the NHWC input in place
    assert all(compiled.graph.tensor(n).dtype == "int8" for n in compiled.graph.inputs + compiled.graph.outputs)


def test_the_input_transpose_becomes_a_view_where_every_reader_takes_channels_last_bytes(tmp_path):
    """tf2onnx's Transpose of the NHWC input image, read by a convolution (its im2col takes the channels-last
    bytes) and by a Concat (its copy takes their strides): no Transpose, no copy of the image in the arena."""
    g = TfliteStyle(13, seed=13)
    x = g.dequantize(g.input("input", [1, 9, 7, 3], np.int8), 1 / 128, -1, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, -1, np.int8)
    y = g.conv(x, 3, 5, k=3, stride=2, pad=[1, 1], x_quant=(1 / 128, -1))
    y = g.qdq(g.node("Resize", [y, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest"), ACT, -128, np.int8)
    both = g.qdq(g.node("Concat", [x, g.qdq(g.node("Slice", [y, g.const(np.array([0, 0], np.int64)),
                                                             g.const(np.array([9, 7], np.int64)),
                                                             g.const(np.array([2, 3], np.int64))]), ACT, -128, np.int8)],
                        axis=1), ACT, -3, np.int8)
    g.output(g.conv(both, 8, 4, k=1), "output")
    model = g.model()
    compiled = check_exact(model, tmp_path, n_random=6)
    ops = [n.op for n in compiled.graph.nodes]
    assert "Transpose" not in ops and ops.count("ChannelsFirstView") == 1
    assert "qcc_transpose_8bit" not in (tmp_path / "out" / "model.c").read_text()


def test_an_input_transpose_read_by_a_depthwise_convolution_stays_a_copy(tmp_path):
    """The depthwise kernels read channel planes: the image is transposed first, as written."""
    g = TfliteStyle(13, seed=14)
    x = g.dequantize(g.input("input", [1, 8, 8, 3], np.int8), 1 / 128, -1, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, -1, np.int8)
    g.output(g.conv(x, 3, 3, k=3, group=3, pad=[1, 1], x_quant=(1 / 128, -1)), "output")
    compiled = check_exact(g.model(), tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes].count("Transpose") == 1


def micro_speech(opset: int, second_reader: bool = False):
    """TFLM's micro_speech as tf2onnx writes it: the NHWC input transposed to NCHW, a strided convolution,
    then TensorFlow's Flatten as Transpose back to NHWC and Reshape to (1, H * W * C), a fully connected
    layer and Softmax. second_reader: the NHWC image is also an output of its own (its bytes then exist)."""
    g = TfliteStyle(opset, seed=15)
    x = g.dequantize(g.input("input", [1, 13, 10, 1], np.int8), 1 / 128, -1, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, -1, np.int8)
    x = g.conv(x, 1, 6, k=3, stride=2, pad=[1, 1], x_quant=(1 / 128, -1))  # (1, 6, 7, 5)
    nhwc = g.qdq(g.node("Transpose", [x], perm=[0, 2, 3, 1]), ACT, -128, np.int8)
    flat = g.qdq(g.node("Reshape", [nhwc, g.const(np.array([-1, 210], np.int64))]), ACT, -128, np.int8)
    logits = g.fully_connected(flat, 210, 4)
    g.output(g.quantize(g.node("Softmax", [logits], axis=-1), 1 / 256, -128, np.int8), "labels")
    if second_reader:
        g.output(g.quantize(g.node("Relu", [nhwc]), ACT, -128, np.int8), "features")
    return g.model()


@pytest.mark.parametrize("opset", [13, 17])
def test_a_flatten_to_channels_last_becomes_the_fully_connected_layers_weight_order(tmp_path, opset):
    """The Transpose back to NHWC before the Flatten is never run: the fully connected layer reads the
    convolution's channels-first output, its weight rows permuted at compile time, and the two run
    streamed, the image never whole. Exact to ORT, in every scheme."""
    compiled = check_exact(micro_speech(opset), tmp_path, n_random=6)
    ops = [n.op for n in compiled.graph.nodes]
    assert "Transpose" not in ops and "QGemm" in ops
    conv = next(n for n in compiled.graph.nodes if n.op == "QLinearConv")
    assert compiled.plan.storage[conv.outputs[0]].kind == "stream"  # rows of it in a band, never whole


def test_a_flatten_whose_channels_last_image_has_another_reader_keeps_its_transpose(tmp_path):
    compiled = check_exact(micro_speech(13, second_reader=True), tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes].count("Transpose") == 1


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_a_flatten_to_channels_last_into_a_gemm_with_transposed_weights(tmp_path, quant_format):
    """The same through ONNX Runtime's quantizer on a float Gemm (transB = 1: the weights' rows are the
    outputs, their columns permuted), uint8 activations: QGemm in QOperator form, a QDQ group in QDQ form."""
    from helpers import make_model
    from models import quantize
    from onnx import helper

    rng = np.random.default_rng(16)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["t"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1)]
    model = make_model(nodes, [("x", "float32", [1, 2, 9, 8])], [("y", "float32", [1, 5])], {
        "w": rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.1, 4).astype(np.float32),
        "g": rng.normal(0, 0.1, (5, 80)).astype(np.float32), "gb": rng.normal(0, 0.1, 5).astype(np.float32)})
    path = quantize(model, tmp_path / "gemm.onnx", quant_format=quant_format)
    compiled = check_exact(path, tmp_path, n_random=6)
    ops = [n.op for n in compiled.graph.nodes]
    assert "Transpose" not in ops and "QGemm" in ops
    assert next(n for n in compiled.graph.nodes if n.op == "QGemm").attrs["trans_b"]


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_a_uint8_input_requantized_to_int8_is_requantized_as_the_convolution_loads_it(tmp_path, io_in_arena):
    """tf2onnx's form of a TFLite model with a uint8 image (ST's and OpenMV's detectors): DequantizeLinear(uint8)
    -> QuantizeLinear(int8) (a float island: one table), then the Transpose to NCHW and the first convolution. The
    convolution applies the table as it loads each byte of the uint8 image, read in place channels last: no int8
    copy, no transposed one. Exact to ORT; the scales differ, so the table is no mere x ^ 0x80."""
    g = TfliteStyle(13, seed=17)
    x = g.dequantize(g.input("image", [1, 10, 9, 3], np.uint8), 1 / 255, 0, np.uint8)
    x = g.qdq(x, 1 / 128, -5, np.int8)
    x = g.qdq(g.node("Transpose", [x], perm=[0, 3, 1, 2]), 1 / 128, -5, np.int8)
    g.output(g.conv(x, 3, 6, k=3, stride=2, pad=[1, 1], x_quant=(1 / 128, -5)), "output")
    compiled = check_exact(g.model(), tmp_path, n_random=6, io_in_arena=io_in_arena)
    assert [n.op for n in compiled.graph.nodes][:3] == ["LookupOnLoad", "ChannelsFirstView", "QLinearConv"]
    assert "_in_table[256]" in (tmp_path / "out" / "model.c").read_text()
