"""MaxPool on a quantized tensor: the maximum code of each window (scale and zero point pass
through unchanged, and max commutes with the monotone dequantization).

TFLite's MAX_POOL_2D (TFLM's reference_integer_ops::MaxPool) is the same maximum over the taps inside
the map, then clamped to the fused activation's codes: the kernel's optional clamp, attrs["clamp"]."""

from __future__ import annotations

import numpy as np

from qcc.ir import CODE_RANGE, KERNEL_SUFFIX, Graph, Node
from qcc.access_order import AccessOrder, Window2d
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, int_list_attribute, register, require
from qcc.ops.tflite_import import fused_clamp, pool_window
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.conv import resolve_pads, window_output_size
from qcc.ops.quantized import add_output, quantized_input


def _has_real_tap(size, out, kernel, stride, dilation, pad_begin) -> bool:
    """Whether every window has a tap inside the input: for window o, some k < kernel with
    0 <= o*stride - pad_begin + k*dilation < size (the first such k, if any, by arithmetic)."""
    start = np.arange(out, dtype=np.int64) * stride - pad_begin
    first = np.maximum(-(start // dilation), 0)  # the first k whose tap is at 0 or beyond
    return bool(np.all((first < kernel) & (start + first * dilation < size)))


@register
class MaxPool(Op):
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    name = "MaxPool"
    onnx_ops = (OnnxOp("", "MaxPool", 12),)  # ORT runs MaxPool on int8 and uint8 from opset 12
    summary = "2-D max pooling: kernel, strides, pads, auto_pad, ceil_mode, dilations"

    qdq_float_ops = onnx_ops
    qdq_propagation_ops = onnx_ops  # ORT 1.32 propagates across MaxPool from 12 (measured: not MaxPool-11)
    tflite_ops = (TfliteOp("MAX_POOL_2D", 1, 3),)  # 2: int8, 3: int16 (refused as an activation type)

    def import_tflite(self, operator, model) -> None:
        """Channels first, like the other pooling. TFLM requires the output's zero point equal to the input's
        and its scale within 1e-6 of it (PoolingPrepare: |s_x - s_y| in float32); the codes pass through, and
        the fused activation's range comes from the output's parameters."""
        x, kernel, strides, begins, out_hw = pool_window(model)
        y_quant = model.quant(model.output_tensor(0))
        (s_x, z_x), (s_y, z_y) = x.quant.scalar(), y_quant.scalar()
        model.require(float(abs(np.float32(s_x) - np.float32(s_y))) <= 1e-6 and z_x == z_y,
                      f"the output's scale {float(s_y):g} and zero point {z_y} differ from the input's ({float(s_x):g}, "
                      f"{z_x}); TFLM's MAX_POOL_2D requires the same zero point and a scale within 1e-6")
        inside = all(_has_real_tap(x.shape[2 + i], out_hw[i], kernel[i], strides[i], 1, begins[i]) for i in range(2))
        model.require(inside, "a pooling window lies wholly in the padding")
        y = model.output(0, (*x.shape[:2], *out_hw), "nchw", dtypes=(x.dtype,))
        node = model.add_node(self.name, [x.name], [y], {"kernel": kernel, "strides": strides, "dilations": [1, 1],
                                                         "pads_begin": begins})
        lo, hi = fused_clamp(model, y_quant, x.dtype)
        if (lo, hi) != CODE_RANGE[x.dtype]:
            node.attrs["clamp"] = (lo, hi)

    @staticmethod
    def _clamp(node: Node, graph: Graph) -> tuple[int, int]:
        """The codes the maxima are clamped to: a TFLite fused activation's, or the type's whole range."""
        qmin, qmax = CODE_RANGE[graph.tensor(node.outputs[0]).dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        return max(lo, qmin), min(hi, qmax)

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        require(len(x.shape) == 4, graph, onnx_node, f"only 2-D pooling (4-D input) is supported, got shape {x.shape}")
        require(len(onnx_node.output) == 1 or not onnx_node.output[1], graph, onnx_node, "the Indices output is not supported")
        kernel = int_list_attribute(graph, onnx_node, "kernel_shape", None, 2, 1)
        strides = int_list_attribute(graph, onnx_node, "strides", [1, 1], 2, 1)
        dilations = int_list_attribute(graph, onnx_node, "dilations", [1, 1], 2, 1)
        if attribute(onnx_node, "pads") is not None:
            int_list_attribute(graph, onnx_node, "pads", [0, 0, 0, 0], 4, 0)
        ceil_mode = bool(attribute(onnx_node, "ceil_mode", 0))
        auto_pad = attribute(onnx_node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        begins, ends = resolve_pads(auto_pad, attribute(onnx_node, "pads"), x.shape[2:], kernel, strides, dilations)
        out_hw = [window_output_size(x.shape[2 + i], kernel[i], strides[i], dilations[i], begins[i], ends[i], ceil_mode)
                  for i in range(2)]
        require(min(out_hw) > 0, graph, onnx_node, f"the output would be empty ({out_hw})")
        require(all(_has_real_tap(x.shape[2 + i], out_hw[i], kernel[i], strides[i], dilations[i], begins[i]) for i in range(2)),
                graph, onnx_node, "a pooling window lies wholly in the padding; its maximum is undefined")
        y = add_output(graph, onnx_node, 0, x.dtype, (*x.shape[:2], *out_hw), x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={
            "kernel": kernel, "strides": strides, "dilations": dilations, "pads_begin": begins,
        })

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        y = graph.tensor(node.outputs[0])
        (k_h, k_w), (s_h, s_w), (d_h, d_w) = node.attrs["kernel"], node.attrs["strides"], node.attrs["dilations"]
        out_h, out_w = y.shape[2:]
        # Pad with a value below every code so that padding never wins, wide enough for any window.
        top, left = node.attrs["pads_begin"]
        bottom = max(0, (out_h - 1) * s_h + (k_h - 1) * d_h + 1 - x.shape[2] - top)
        right = max(0, (out_w - 1) * s_w + (k_w - 1) * d_w + 1 - x.shape[3] - left)
        padded = np.pad(x.astype(np.int16), [(0, 0), (0, 0), (top, bottom), (left, right)], constant_values=-1000)
        result = np.full(y.shape, -1000, dtype=np.int16)
        for i in range(k_h):
            for j in range(k_w):
                window = padded[:, :, i * d_h: i * d_h + (out_h - 1) * s_h + 1: s_h, j * d_w: j * d_w + (out_w - 1) * s_w + 1: s_w]
                result = np.maximum(result, window)
        return [np.clip(result, *self._clamp(node, graph)).astype(y.dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def access_order(self, node: Node, graph: Graph) -> AccessOrder:
        return Window2d.of(node, graph).plane_pixel_major()

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        a = node.attrs
        (batch, channels, in_h, in_w), (out_h, out_w) = x.shape, y.shape[2:]
        # channel strides: the tensors' planes, or the chain's for a view of a band of rows (backend/streams.py)
        in_plane, out_plane = a.get("planes", (in_h * in_w, out_h * out_w))
        fields = {"batch": batch, "channels": channels, "in_h": in_h, "in_w": in_w, "out_h": out_h, "out_w": out_w,
                  "kernel_h": a["kernel"][0], "kernel_w": a["kernel"][1],
                  "stride_h": a["strides"][0], "stride_w": a["strides"][1],
                  "dilation_h": a["dilations"][0], "dilation_w": a["dilations"][1],
                  "pad_top": a["pads_begin"][0], "pad_left": a["pads_begin"][1],
                  "in_plane": in_plane, "out_plane": out_plane}
        fields["clamp_lo"], fields["clamp_hi"] = self._clamp(node, graph)
        params = c.struct("qcc_maxpool_params", f"{c.symbol(node.name)}_params", fields)
        return f"qcc_maxpool_{KERNEL_SUFFIX[x.dtype]}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
