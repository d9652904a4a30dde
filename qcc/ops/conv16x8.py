"""TFLM's 16x8 matrix kernels: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with int16 activations and
int8 weights, as the TFLite converter writes them for "16x8" quantization (int16 activations of zero
point 0, per-channel int8 weights of zero point 0, int64 biases).

The importers of the three operators (conv.py, fully_connected.py) build one Conv16x8 node where the input is
int16: the arithmetic is TFLM's, not the 8-bit kernels' (reference/integer_ops/conv.h, depthwise_conv.h and
fully_connected.h of the pinned wheel):

    acc = bias[c] + sum(w * x) over the window         (padded taps skipped: with Z_x = 0 they add nothing)
    int64 bias: acc in int64;  y = MultiplyByQuantizedMultiplier(int64 acc, M0, e)
              = (acc * m + 2^(14 - e)) >> (15 - e),  m = min((M0 + 2^15) >> 16, 0x7FFF)   (one rounding,
                with TFLM's 16-bit multiplier: qcc/numerics/tflm.py reduced_multiplier)
    int32 bias (CONV_2D and FULLY_CONNECTED only): acc in int32 (modulo 2^32, where TFLM's C++ overflows),
              y = MultiplyByQuantizedMultiplier(int32 acc, M0, e), the 8-bit kernels' requantization
    y = clamp(y, fused activation's codes)

with (M0, e) = QuantizeMultiplier(s_x * s_w[c] / s_y in double). TFLM asserts |acc| < 2^47 on the int64 path;
the import proves it for every input from the weights and the bias, and refuses the model where it cannot.
The C is runtime_c/qcc_s16.c: qcc_conv_s16 gathers each output pixel's window into an int16 column, then one
dot product per output channel, two products per SMLALD on cores with the DSP extension; qcc_depthwise_s16
reads a depthwise window in place, its rows and columns clipped to the input once per output.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import CODE_RANGE, Graph, Node
from qcc.numerics import tflm
from qcc.ops.base import Op, register
from qcc.ops.explanation import Explanation
from qcc.ops.quantized import emit_requant, prepare_requant, requantize, sxtb16_tap_order, wrap_int32
from qcc.ops.tflite_import import fused_clamp

GEOMETRY = ("groups", "kernel", "strides", "dilations", "pads_begin")


def add_conv16x8(model, x, weights: np.ndarray, w_quant, y_shape, geometry: dict, depthwise: bool) -> None:
    """The Conv16x8 node for the operator being imported: x (N, C, H, W) or (rows, depth) int16, weights
    (out_c, in_c / groups, kernel_h, kernel_w) int8 in the IR's order, the output declared in `y_shape`
    (NCHW, or (rows, cols) for FULLY_CONNECTED). Checks what TFLM's 16x8 arithmetic assumes."""
    out_c = int(weights.shape[0])
    x_quant = x.quant
    y_tensor = model.output_tensor(0)
    model.require(y_tensor.dtype == "int16", f"the input is int16 but the output is {y_tensor.dtype}; TFLM's 16x8 "
                  "kernels write int16")
    y_quant = model.quant(y_tensor)
    model.require(x_quant.scalar()[1] == 0 and y_quant.scalar()[1] == 0,
                  f"an int16 zero point is not 0 (input {x_quant.scalar()[1]}, output {y_quant.scalar()[1]}); TFLM's "
                  "16x8 kernels assume symmetric int16 activations, as the converter writes them")
    model.require(not np.any(w_quant.zero_point), "the weights' zero points must be 0 (TFLM's 16x8 kernels assume "
                  "symmetric weights)")
    bias, wide = _bias(model, out_c, depthwise)
    if wide:
        # TFLM asserts |acc| < 2^47 before its 64-bit multiply; every input code lies in [-32768, 32767]
        reach = np.abs(weights.reshape(out_c, -1).astype(np.int64)).sum(axis=1) * 32768
        worst = int((reach + np.abs(bias if bias is not None else 0)).max())
        model.require(worst < tflm.WIDE_ACC_LIMIT, f"the accumulator can reach {worst}, beyond the 2^47 TFLM's "
                      "64-bit requantization allows (a bias of that size is no 16x8 model the converter writes)")
    y = model.output(0, y_shape, "nchw" if len(y_shape) == 4 else "tflite", dtypes=("int16",))
    w_name = model.constant_tensor("filter" if len(y_shape) == 4 else "weights", np.ascontiguousarray(weights), w_quant)
    node = model.add_node(Conv16x8.name, [x.name, w_name], [y], {**geometry, "bias": bias, "wide": wide})
    node.attrs["clamp"] = fused_clamp(model, y_quant, "int16")
    s_x, s_y = float(x_quant.scalar()[0]), float(y_quant.scalar()[0])
    s_w = np.broadcast_to(w_quant.scale.reshape(-1), (out_c,)).astype(np.float64)
    for c in range(out_c):
        m0, e = tflm.quantize_multiplier(s_x * float(s_w[c]) / s_y)
        if wide:
            try:
                tflm.reduced_multiplier(m0, e)
            except ValueError as error:
                model.refuse(f"output channel {c}: {error}")


def _bias(model, out_c: int, depthwise: bool) -> tuple[np.ndarray | None, bool]:
    """(the bias as int64 or None, whether TFLM accumulates in int64). TFLM's 16x8 DEPTHWISE_CONV_2D always
    reads an int64 bias; CONV_2D and FULLY_CONNECTED accumulate in int32 with an int32 bias (or with none,
    where the operator's quantized_bias_type says INT32)."""
    if not model.has_input(2):
        narrow = not depthwise and model.options.get("quantized_bias_type", 0) == 2  # TensorType INT32
        return None, not narrow
    bias = model.constant(2, "bias")
    allowed = (np.int64,) if depthwise else (np.int64, np.int32)
    model.require(bias.dtype in allowed and bias.size == out_c, f"the bias must be {out_c} "
                  f"{'int64' if depthwise else 'int64 or int32'} values for int16 activations, got {bias.size} "
                  f"{bias.dtype}")
    return bias.astype(np.int64).reshape(-1), bias.dtype == np.int64


@register
class Conv16x8(Op):
    runtime_sources = ("qcc_s16.c",)
    runtime_header = "qcc_s16.h"
    name = "Conv16x8"
    summary = "TFLM's 16x8 CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: int16 activations, int8 weights"

    @staticmethod
    def _geometry(node: Node, graph: Graph) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """(N, C, H, W) of the input and the output: a FULLY_CONNECTED's rows are images of 1x1."""
        x, y = graph.tensor(node.inputs[0]).shape, graph.tensor(node.outputs[0]).shape
        return (tuple(x) if len(x) == 4 else (*x, 1, 1)), (tuple(y) if len(y) == 4 else (*y, 1, 1))

    def prepare(self, node: Node, graph: Graph) -> None:
        x, w = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        out_c = w.shape[0]
        s_x, s_y = float(x.quant.scalar()[0]), float(y.quant.scalar()[0])
        s_w = np.broadcast_to(w.quant.scale.reshape(-1), (out_c,)).astype(np.float64)
        real = s_x * s_w / s_y
        pairs = [tflm.quantize_multiplier(float(m)) for m in real]
        if node.attrs["wide"]:
            reduced = [tflm.reduced_multiplier(m0, e) for m0, e in pairs]
            node.params["wide_mult"] = np.array([m for m, _ in reduced], np.int32)
            node.params["wide_shift"] = np.array([s for _, s in reduced], np.int8)
        else:
            node.params["requant"] = prepare_requant(node, graph, real.astype(np.float32), real)

    def _clamp(self, node: Node) -> tuple[int, int]:
        lo, hi = CODE_RANGE["int16"]
        a, b = node.attrs["clamp"]
        return max(a, lo), min(b, hi)

    def accumulators(self, node: Node, graph: Graph, x: np.ndarray) -> np.ndarray:
        """acc (N, out_c, out_h, out_w) in int64, exactly (TFLM's int64 sums; the int32 path wraps them)."""
        (batch, in_c, in_h, in_w), (_, out_c, out_h, out_w) = self._geometry(node, graph)
        w = graph.tensor(node.inputs[1]).data.astype(np.int64)
        a = node.attrs
        groups, (k_h, k_w), (s_h, s_w), (d_h, d_w) = a["groups"], a["kernel"], a["strides"], a["dilations"]
        top, left = a["pads_begin"]
        span_h, span_w = (out_h - 1) * s_h + (k_h - 1) * d_h + 1, (out_w - 1) * s_w + (k_w - 1) * d_w + 1
        padded = np.zeros((batch, in_c, max(span_h, top + in_h), max(span_w, left + in_w)), np.int64)
        padded[:, :, top:top + in_h, left:left + in_w] = x.reshape(batch, in_c, in_h, in_w)
        in_g, out_g = in_c // groups, out_c // groups
        w = w.reshape(groups, out_g, in_g, k_h, k_w)
        acc = np.zeros((batch, groups, out_g, out_h, out_w), np.int64)
        for i in range(k_h):
            for j in range(k_w):
                window = padded[:, :, i * d_h:i * d_h + (out_h - 1) * s_h + 1:s_h, j * d_w:j * d_w + (out_w - 1) * s_w + 1:s_w]
                acc += np.einsum("ngchw,goc->ngohw", window.reshape(batch, groups, in_g, out_h, out_w), w[:, :, :, i, j])
        acc = acc.reshape(batch, out_c, out_h, out_w)
        if a["bias"] is not None:
            acc += a["bias"].reshape(1, out_c, 1, 1)
        return acc

    def reference(self, node: Node, graph: Graph, inputs):
        acc = self.accumulators(node, graph, inputs[0])
        y = graph.tensor(node.outputs[0])
        if node.attrs["wide"]:
            shape = (1, -1, 1, 1)
            lo, hi = self._clamp(node)
            codes = np.clip(tflm.requantize_wide(acc, node.params["wide_mult"].reshape(shape),
                                                 node.params["wide_shift"].reshape(shape)), lo, hi)
        else:
            codes = requantize(wrap_int32(acc), node.params["requant"], 1, "int32")
        return [codes.astype(np.int16).reshape(y.shape)]

    def macs(self, node: Node, graph: Graph) -> int:
        w = graph.tensor(node.inputs[1])
        return graph.tensor(node.outputs[0]).size * int(np.prod(w.shape[1:]))

    def explain(self, node: Node, graph: Graph) -> Explanation:
        path = ("an int64 accumulator requantized by TFLM's 16-bit multiplier (M0 + 2^15) >> 16 and a right shift "
                "by 15 - e, one rounding" if node.attrs["wide"] else
                "an int32 accumulator requantized as the 8-bit kernels are")
        return Explanation("tflm_integer", f"TFLM's 16x8 kernel (int16 activations, int8 weights): {path}; the same "
                                           "in every scheme")

    DIRECT_TAPS = 512  # a window below it sums in int32 without overflow: |w x| <= 2^22

    def is_depthwise(self, node: Node, graph: Graph) -> bool:
        """qcc_depthwise_s16: one input channel per group, a window small enough for its int32 sums."""
        (_, in_c, _, _), _ = self._geometry(node, graph)
        w = graph.tensor(node.inputs[1])
        return node.attrs["groups"] == in_c and w.shape[1] == 1 and int(np.prod(w.shape[1:])) < self.DIRECT_TAPS

    def taps4(self, node: Node, graph: Graph) -> int:
        """The weights' row length: the taps (depthwise, read in place), or the taps rounded up to 4 (gathered)."""
        taps = int(np.prod(graph.tensor(node.inputs[1]).shape[1:]))
        return taps if self.is_depthwise(node, graph) else -(-taps // 4) * 4

    def rows_in_place(self, node: Node, graph: Graph) -> bool:
        """A FULLY_CONNECTED (1x1 window, 1x1 image, one group): qcc_conv_s16 reads each row as its column."""
        (_, _, in_h, in_w), _ = self._geometry(node, graph)
        return in_h * in_w == 1 and node.attrs["kernel"] == [1, 1] and node.attrs["groups"] == 1

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        if self.is_depthwise(node, graph) or self.rows_in_place(node, graph):
            return 0
        # two pixels' columns where qcc_conv_s16 pairs them (windows below 512 taps, rows of 2 or more), else one
        taps4 = self.taps4(node, graph)
        _, (_, _, _, out_w) = self._geometry(node, graph)
        return 2 * taps4 * (2 if taps4 < 512 and out_w > 1 else 1)

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y, w = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0]), graph.tensor(node.inputs[1])
        prefix = c.symbol(node.name)
        a, p = node.attrs, node.params
        (batch, in_c, in_h, in_w), (_, out_c, out_h, out_w) = self._geometry(node, graph)
        taps4, depthwise = self.taps4(node, graph), self.is_depthwise(node, graph)
        wide = bool(a["wide"])
        lo, hi = self._clamp(node)
        if wide:
            requant = {"mult": "NULL", "shift": "NULL", "per_channel": 0, "zero": 0, "lo": 0, "hi": 0,
                       "acc_f32_exact": 0, "exact_mult": "NULL", "fast_shift": 0, "fast_bias": 0, "fast_window": 0,
                       "fast_lo": 0, "fast_hi": 0, "fast_zero": 0}
        else:
            requant = emit_requant(c, prefix, p["requant"])
        fields = {
            "batch": batch, "in_c": in_c, "in_h": in_h, "in_w": in_w, "out_c": out_c, "out_h": out_h, "out_w": out_w,
            "kernel_h": a["kernel"][0], "kernel_w": a["kernel"][1], "stride_h": a["strides"][0],
            "stride_w": a["strides"][1], "dilation_h": a["dilations"][0], "dilation_w": a["dilations"][1],
            "pad_top": a["pads_begin"][0], "pad_left": a["pads_begin"][1], "groups": a["groups"], "taps4": taps4,
            "weights": c.const_array(f"{prefix}_weights", "int8_t", w.data.reshape(-1) if depthwise
                                     else sxtb16_tap_order(w.data, taps4)),
            "bias": "NULL" if a["bias"] is None else c.const_array(f"{prefix}_bias", "int64_t", a["bias"]),
            "wide": int(wide),
            "wide_mult": c.const_array(f"{prefix}_wide_mult", "int32_t", p["wide_mult"]) if wide else "NULL",
            "wide_shift": c.const_array(f"{prefix}_wide_shift", "int8_t", p["wide_shift"]) if wide else "NULL",
            "lo": lo, "hi": hi, "requant": requant,
        }
        params = c.struct("qcc_conv16_params", f"{prefix}_params", fields)
        if depthwise:
            return f"qcc_depthwise_s16({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
        scratch = "NULL" if self.rows_in_place(node, graph) else c.scratch(node)
        return f"qcc_conv_s16({params}, {c.tensor(x.name)}, {c.tensor(y.name)}, {scratch});"
