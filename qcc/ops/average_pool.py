"""com.microsoft QLinearAveragePool: the mean of each pooling window, as ONNX Runtime computes it.

ORT has two paths (contrib_ops/cpu/quantization/qlinear_pool.cc):

- a kernel that equals the whole map with no padding (after auto_pad) runs the integer global
  pool: acc = sum(x) - z_x * n in int32, requantized with f32(s_x / f32(s_y * f32(n)));
- every other window is averaged in float32: xf = f32(s_x * (x - z_x)), a sequential float32
  sum over the window's taps inside the map (rows outer, columns inner), y = f32(sum / count)
  with count = kernel_h * kernel_w if count_include_pad else the taps inside, then
  q = clamp(nearbyint(f32(f32(y / s_y) + z_y))), where a value at or above 2^31 converts to
  INT32_MIN and so gives qmin.

The reference below computes the float path with numpy float32 (IEEE-exact); the C emulates it
with integers (runtime_c/qcc_average_pool.c, twin qcc/numerics/ort_float32_sum.py). 1-D pooling
(rank-3 input) runs as 2-D pooling over a map of height 1, exactly as ORT's 1-D task orders it.
"""

from __future__ import annotations

import math

import numpy as np

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import CODE_RANGE, DTYPE_RANGE, KERNEL_SUFFIX, Graph, Node
from qcc.numerics import ort_float32_sum
from qcc.numerics.ort_float32 import float32_parts
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, int_list_attribute, register, require
from qcc.ops.explanation import KEEPS_ORT, Explanation
from qcc.ops.global_average_pool import GlobalPoolExplanation, centered_maps
from qcc.numerics.accumulator_range import sum_range
from qcc.ops.tflite_import import fused_clamp, pool_window
from qcc.ops.quantized import (add_output, bind_quant, emit_requant, prepare_requant, quantized_input, read_quant,
                                requantize, wrap_int32)


def _ort_pads(auto_pad: str, pads, size, kernel, strides):
    """ORT's (begin, end) pads per axis (PoolAttributes::ComputeSizePadDilations, C division)."""
    rank = len(size)
    if auto_pad == "VALID":
        return [0] * rank, [0] * rank
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for n, k, s in zip(size, kernel, strides):
            needed = ((n + s - 1) // s - 1) * s + k - n
            head = int((needed + 1) / 2) if auto_pad == "SAME_LOWER" else int(needed / 2)
            begins.append(head)
            ends.append(needed - head)
        return begins, ends
    pads = list(pads) if pads else [0] * (2 * rank)
    return pads[:rank], pads[rank:]


def _ort_output_size(size, kernel, stride, begin, end, ceil_mode) -> int:
    """ORT's PoolAttributes::ComputeOutputSize (dilation 1)."""
    numerator = size + begin + end - kernel
    out = int(numerator / stride) + 1  # C division truncates toward zero
    if ceil_mode:
        out = math.ceil(np.float32(numerator) / np.float32(stride)) + 1
        if (out - 1) * stride >= size + begin:  # the last window must start inside the input or begin pad
            out -= 1
    return out


def window_fields(batch: int, channels: int, in_hw, out_hw, attrs: dict) -> dict:
    """The pooling window's geometry, as both average pools' C parameter structs name it."""
    return {"batch": batch, "channels": channels, "in_h": in_hw[0], "in_w": in_hw[1], "out_h": out_hw[0],
            "out_w": out_hw[1], "kernel_h": attrs["kernel"][0], "kernel_w": attrs["kernel"][1],
            "stride_h": attrs["strides"][0], "stride_w": attrs["strides"][1], "pad_top": attrs["pads_begin"][0],
            "pad_left": attrs["pads_begin"][1]}


@register
class QLinearAveragePool(Op):
    runtime_sources = ("qcc_average_pool.c", "qcc_kernels.c")
    runtime_header = "qcc_average_pool.h"
    folds_clamp = True
    name = "QLinearAveragePool"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearAveragePool"),)
    summary = "1-D and 2-D average pooling: kernel, strides, pads, auto_pad, ceil_mode, count_include_pad, channels first or last"

    qdq_float_ops = (OnnxOp("", "AveragePool", 7),)  # count_include_pad from 7

    def from_qdq(self, group):
        x, y = group.quantized_input(0), group.quantized_output()
        check_integer_types(group, x, None, y)
        return [group.replacement("QLinearAveragePool", [*x, y[1], y[2]], domain="com.microsoft", **group.attributes())]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        require(len(x.shape) in (3, 4), graph, onnx_node,
                f"only 1-D and 2-D pooling (rank-3 or rank-4 input) are supported, got shape {x.shape}")
        channels_last = bool(attribute(onnx_node, "channels_last", 0))
        if channels_last:
            batch, spatial, channels = x.shape[0], list(x.shape[1:-1]), x.shape[-1]
        else:
            batch, channels, spatial = x.shape[0], x.shape[1], list(x.shape[2:])
        rank = len(spatial)
        kernel = attribute(onnx_node, "kernel_shape")
        require(kernel is not None and len(kernel) == rank, graph, onnx_node,
                f"kernel_shape must have {rank} entries, got {kernel}")
        kernel = int_list_attribute(graph, onnx_node, "kernel_shape", None, rank, 1)
        strides = int_list_attribute(graph, onnx_node, "strides", [1] * rank, rank, 1)
        pads = int_list_attribute(graph, onnx_node, "pads", [0] * (2 * rank), 2 * rank, 0)
        dilations = int_list_attribute(graph, onnx_node, "dilations", [1] * rank, rank, 1)
        ceil_mode = bool(attribute(onnx_node, "ceil_mode", 0))
        count_include_pad = bool(attribute(onnx_node, "count_include_pad", 0))
        auto_pad = attribute(onnx_node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        require(len(strides) == rank and len(pads) == 2 * rank, graph, onnx_node,
                f"strides {strides} and pads {pads} do not match a {rank}-D kernel")
        require(all(d == 1 for d in dilations), graph, onnx_node,
                f"dilations {dilations} are not supported (ORT's QLinearAveragePool does not dilate its windows)")
        require(all(k > 0 for k in kernel) and all(s > 0 for s in strides), graph, onnx_node,
                f"kernel_shape {kernel} and strides {strides} must be positive")
        require(auto_pad in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"), graph, onnx_node,
                f"auto_pad '{auto_pad}' is not an ONNX value")
        require(all(0 <= pads[i] < kernel[i] and 0 <= pads[i + rank] < kernel[i] for i in range(rank)), graph, onnx_node,
                f"pads {pads} must be non-negative and smaller than the kernel {kernel} (ORT refuses others)")
        begins, ends = _ort_pads(auto_pad, pads, spatial, kernel, strides)
        require(all(n + b + e >= k for n, k, b, e in zip(spatial, kernel, begins, ends)), graph, onnx_node,
                f"the kernel {kernel} is larger than the padded input {spatial}")
        out = [_ort_output_size(n, k, s, b, e, ceil_mode) for n, k, s, b, e in zip(spatial, kernel, strides, begins, ends)]
        require(min(out) > 0, graph, onnx_node, f"the output would be empty ({out})")

        x_quant = read_quant(graph, onnx_node, 1, 2, "input")
        y_quant = read_quant(graph, onnx_node, 3, 4, "output")
        (s_x, _), (s_y, _) = x_quant.scalar(), y_quant.scalar()
        is_global = list(spatial) == kernel and not any(begins) and not any(ends)
        if is_global:
            count = int(np.prod(spatial))
            require(count < 2**24, graph, onnx_node, f"the map has {count} elements; ORT refuses 2^24 or more")
            scale = np.float32(s_x) / (np.float32(s_y) * np.float32(count))
            require(2.0**-32 <= scale < 256.0, graph, onnx_node,
                    f"the window covers the map, so ORT runs its global pool, which refuses s_x / (s_y * n) = {scale:g} "
                    "outside [2^-32, 256)")
        else:
            why = ort_float32_sum.check_scales(s_x, s_y, int(np.prod(kernel)))
            require(why is None, graph, onnx_node, f"{why}: qcc's integer emulation of ORT's float32 average does not cover it")

        def pad_2d(values, fill):  # 1-D pooling runs as 2-D over a map of height 1
            return [fill] * (2 - rank) + list(values)

        x_name = bind_quant(graph, onnx_node, 0, x_quant)
        out_shape = (batch, *out, channels) if channels_last else (batch, channels, *out)
        y = add_output(graph, onnx_node, 0, x.dtype, out_shape, y_quant)
        return Node(self.name, onnx_node.name or y, [x_name], [y], attrs={
            "global": is_global, "channels_last": channels_last, "batch": batch, "channels": channels,
            "in_hw": pad_2d(spatial, 1), "out_hw": pad_2d(out, 1), "kernel": pad_2d(kernel, 1),
            "strides": pad_2d(strides, 1), "pads_begin": pad_2d(begins, 0), "count_include_pad": count_include_pad,
        })

    # --- compile time ---------------------------------------------------------------------------
    def accumulator_range(self, node: Node, graph: Graph):
        """Only the global path has an int32 accumulator; the float path sums in (emulated) float32."""
        if not node.attrs["global"]:
            return None
        x = graph.tensor(node.inputs[0])
        return sum_range(int(np.prod(node.attrs["in_hw"])), x.quant.scalar()[1], x.dtype)

    def prepare(self, node: Node, graph: Graph) -> None:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        s_x, z_x = x.quant.scalar()
        s_y, z_y = y.quant.scalar()
        if node.attrs["global"]:
            count = int(np.prod(node.attrs["in_hw"]))
            node.params["acc_const"] = int(wrap_int32(-z_x * count))
            # ORT: f32(s_x / f32(s_y * f32(n)))
            node.params["requant"] = prepare_requant(node, graph, np.float32(s_x) / (np.float32(s_y) * np.float32(count)),
                                                 np.float64(s_x) / (np.float64(s_y) * count))
            return
        qmin, qmax = DTYPE_RANGE[y.dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        out_scale = float32_parts(s_y)
        exponent = ort_float32_sum.input_unit_exponent(s_x)
        node.params.update({
            "table": ort_float32_sum.dequantize_table(s_x, z_x, x.dtype), "input_exponent": exponent,
            "exponent_offset": exponent - out_scale.exponent, "output_significand": out_scale.significand,
            "qmin": qmin, "qmax": qmax, "lo": max(lo, qmin), "hi": min(hi, qmax),
        })

    # --- reference semantics --------------------------------------------------------------------
    def _window_counts(self, node: Node) -> np.ndarray:
        """count per output position: the kernel size, or the taps inside the map (ORT's hend - hstart)."""
        a = node.attrs
        if a["count_include_pad"]:
            return np.full(a["out_hw"], a["kernel"][0] * a["kernel"][1], dtype=np.int64)
        inside = []
        for axis in range(2):
            start = np.arange(a["out_hw"][axis]) * a["strides"][axis] - a["pads_begin"][axis]
            end = np.minimum(start + a["kernel"][axis], a["in_hw"][axis])
            inside.append(end - np.maximum(start, 0))
        return np.outer(inside[0], inside[1])

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        y = graph.tensor(node.outputs[0])
        a = node.attrs
        # As NCHW with a 2-D map.
        nchw = np.moveaxis(x, -1, 1) if a["channels_last"] else x
        nchw = nchw.reshape(a["batch"], a["channels"], *a["in_hw"])
        if a["global"]:
            _, z_x = graph.tensor(node.inputs[0]).quant.scalar()
            acc = centered_maps(x, a["channels_last"], z_x).sum(axis=2)  # (batch, channels)
            result = requantize(wrap_int32(acc), node.params["requant"], 1, y.dtype)
        else:
            result = self._float_path(node, graph, nchw)
        result = result.reshape(a["batch"], a["channels"], *a["out_hw"])
        return [(np.moveaxis(result, 1, -1) if a["channels_last"] else result).reshape(y.shape).astype(y.dtype)]

    def _float_path(self, node: Node, graph: Graph, x: np.ndarray) -> np.ndarray:
        a, p = node.attrs, node.params
        s_x, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        s_y, z_y = graph.tensor(node.outputs[0]).quant.scalar()
        (k_h, k_w), (st_h, st_w), (top, left) = a["kernel"], a["strides"], a["pads_begin"]
        out_h, out_w = a["out_hw"]
        xf = np.float32(s_x) * (x.astype(np.int32) - z_x).astype(np.float32)
        # auto_pad SAME with a stride larger than the kernel can ask for a negative begin pad (ORT
        # does not clamp it): the first window then starts inside the map, as if it were cropped.
        xf = xf[:, :, max(0, -top):, max(0, -left):]
        top, left = max(0, top), max(0, left)
        # Taps outside the map read +0.0, which leaves a float32 sum unchanged: summing every tap of
        # the padded map in row-major order is ORT's sequential sum over the taps inside.
        bottom = max(0, (out_h - 1) * st_h + k_h - xf.shape[2] - top)
        right = max(0, (out_w - 1) * st_w + k_w - xf.shape[3] - left)
        padded = np.pad(xf, [(0, 0), (0, 0), (top, bottom), (left, right)])
        total = np.zeros((*x.shape[:2], out_h, out_w), dtype=np.float32)
        for i in range(k_h):
            for j in range(k_w):
                total = total + padded[:, :, i: i + (out_h - 1) * st_h + 1: st_h, j: j + (out_w - 1) * st_w + 1: st_w]
        with np.errstate(over="ignore"):
            mean = total / self._window_counts(node).astype(np.float32)
            v = mean / np.float32(s_y) + np.float32(z_y)
        r = np.rint(v)  # nearbyintf: ties to even
        r = np.where(r < 2.0**31, r, -2.0**31)  # x86 float -> int32 gives INT32_MIN out of range
        code = np.clip(r, p["qmin"], p["qmax"])
        return np.clip(code, p["lo"], p["hi"]).astype(np.int64)  # a folded Relu/Clip

    # --- cost and C -----------------------------------------------------------------------------
    def macs(self, node: Node, graph: Graph) -> int:
        a = node.attrs
        if a["global"]:
            return graph.tensor(node.inputs[0]).size
        return graph.tensor(node.outputs[0]).size * a["kernel"][0] * a["kernel"][1]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        if node.attrs["global"]:  # ORT's integer global pool
            return GlobalPoolExplanation(node, graph, int(np.prod(node.attrs["in_hw"])))
        return Explanation("ort_arithmetic", "a window smaller than the map (or padded): ORT averages in float32 "
                                             "(sequential float32 sum, division, z_y added before rounding); the C "
                                             "reproduces it with integers (qcc/numerics/ort_float32_sum.py); " + KEEPS_ORT)

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        a, p = node.attrs, node.params
        suffix = "s8" if x.dtype == "int8" else "u8"
        if a["global"]:
            fields = {"batch": a["batch"], "channels": a["channels"], "count": int(np.prod(a["in_hw"])),
                      "channels_last": int(a["channels_last"]), "acc_const": p["acc_const"],
                      "requant": emit_requant(c, prefix, p["requant"])}
            params = c.struct("qcc_global_avgpool_params", f"{prefix}_params", fields)
            return f"qcc_global_avgpool_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
        table = c.const_array(f"{prefix}_table", "int64_t", p["table"])
        fields = {**window_fields(a["batch"], a["channels"], a["in_hw"], a["out_hw"], a),
                  "count_include_pad": int(a["count_include_pad"]), "channels_last": int(a["channels_last"]),
                  "table": table, "exponent_offset": p["exponent_offset"], "output_significand": p["output_significand"],
                  "output_zero": graph.tensor(node.outputs[0]).quant.scalar()[1], "qmin": p["qmin"], "qmax": p["qmax"],
                  "lo": p["lo"], "hi": p["hi"]}
        params = c.struct("qcc_avgpool_params", f"{prefix}_params", fields)
        return f"qcc_avgpool_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"


def _inside_counts(in_hw, out_hw, kernel, strides, pads_begin) -> np.ndarray:
    """(out_h, out_w): the taps of each window that lie inside the map."""
    inside = []
    for axis in range(2):
        start = np.arange(out_hw[axis]) * strides[axis] - pads_begin[axis]
        inside.append(np.minimum(start + kernel[axis], in_hw[axis]) - np.maximum(start, 0))
    return np.outer(inside[0], inside[1]).astype(np.int64)


def divide_half_away(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """C's (total +- count / 2) / count with truncating division: the quotient rounded half away from zero."""
    total, count = np.asarray(total, np.int64), np.asarray(count, np.int64)
    magnitude = (np.abs(total) + count // 2) // count
    return np.where(total > 0, magnitude, -magnitude)


@register
class TflmAveragePool(Op):
    """TFLite's AVERAGE_POOL_2D as TFLM's int8 kernel computes it (reference_integer_ops::AveragePool):
    the sum of the raw codes of the window's taps inside the map, divided by their count with halves
    away from zero, then the fused activation's clamp. There is no requantization: TFLite requires the
    input's and output's scale and zero point to be equal. ONNX Runtime's QLinearAveragePool averages in
    float32 instead (QLinearAveragePool above): the two differ on ties and near them."""
    runtime_sources = ("qcc_average_pool.c",)
    runtime_header = "qcc_average_pool.h"
    folds_clamp = True
    name = "TflmAveragePool"
    tflite_ops = (TfliteOp("AVERAGE_POOL_2D", 1, 3),)
    summary = "TFLM's integer window mean: codes summed, divided by the taps inside, halves away from zero"

    def import_tflite(self, operator, model) -> None:
        x, kernel, strides, begins, out_hw = pool_window(model)
        y_quant = model.quant(model.output_tensor(0))
        model.require(float(y_quant.scale) == float(x.quant.scale) and int(y_quant.zero_point) == int(x.quant.zero_point),
                      "the output's scale and zero point differ from the input's; TFLite's AVERAGE_POOL_2D requires "
                      "them equal")
        y = model.output(0, (*x.shape[:2], *out_hw), "nchw", dtypes=(x.dtype,))
        node = model.add_node(self.name, [x.name], [y], {"kernel": kernel, "strides": strides, "pads_begin": begins})
        node.attrs["clamp"] = fused_clamp(model, y_quant, x.dtype)

    def _clamp(self, node: Node, graph: Graph) -> tuple[int, int]:
        qmin, qmax = CODE_RANGE[graph.tensor(node.outputs[0]).dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        return max(lo, qmin), min(hi, qmax)

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        y = graph.tensor(node.outputs[0])
        a = node.attrs
        (k_h, k_w), (s_h, s_w), (top, left) = a["kernel"], a["strides"], a["pads_begin"]
        out_h, out_w = y.shape[2:]
        bottom = max(0, (out_h - 1) * s_h + k_h - x.shape[2] - top)
        right = max(0, (out_w - 1) * s_w + k_w - x.shape[3] - left)
        padded = np.pad(x.astype(np.int64), [(0, 0), (0, 0), (top, bottom), (left, right)])  # 0: adds nothing
        total = np.zeros(y.shape, np.int64)
        for i in range(k_h):
            for j in range(k_w):
                total += padded[:, :, i: i + (out_h - 1) * s_h + 1: s_h, j: j + (out_w - 1) * s_w + 1: s_w]
        counts = _inside_counts(x.shape[2:], (out_h, out_w), a["kernel"], a["strides"], a["pads_begin"])
        return [np.clip(divide_half_away(total, counts), *self._clamp(node, graph)).astype(y.dtype)]

    def macs(self, node: Node, graph: Graph) -> int:
        return graph.tensor(node.outputs[0]).size * node.attrs["kernel"][0] * node.attrs["kernel"][1]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's integer average: the codes of the window's taps inside the map "
                                           "summed, divided by their count with halves away from zero; no requantization "
                                           "(input and output share scale and zero point)")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        a = node.attrs
        lo, hi = self._clamp(node, graph)
        fields = {**window_fields(x.shape[0], x.shape[1], x.shape[2:], y.shape[2:], a), "lo": lo, "hi": hi}
        params = c.struct("qcc_avgpool_tflm_params", f"{c.symbol(node.name)}_params", fields)
        return f"qcc_avgpool_tflm_{KERNEL_SUFFIX[x.dtype]}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
