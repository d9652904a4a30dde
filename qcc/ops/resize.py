"""Resize in nearest mode on 8-bit codes (upsampling in detector heads, any rank up to 6).

Nearest resizing moves codes, so the whole op is an index table per axis, computed here exactly as
ONNX Runtime computes it (core/providers/cpu/tensor/upsamplebase.h, upsample.cc), in float32:

- output shape: from `sizes`, or from `scales` as int64(f32(scale * f32(in))) (truncated);
  opset 18 `axes` and `keep_aspect_ratio_policy` adjust both as ORT does. With sizes, the scale
  used for coordinates is f32(f32(out) / f32(in)).
- when every output dimension equals the input's, ORT copies the input whatever the scales.
- on an axis whose scale is exactly 1 (rank 2 and up), output index i reads input index i.
- otherwise x = original coordinate of output index i (float32):
      half_pixel           (i + 0.5) / s - 0.5
      pytorch_half_pixel   out > 1 ? (i + 0.5) / s - 0.5 : 0
      align_corners        out == 1 ? 0 : i * (in - 1) / (out - 1)
      asymmetric           i / s
      tf_half_pixel_for_nn (i + 0.5) / s
      half_pixel_symmetric (opset 19) offset + (i + 0.5) / s - 0.5, in double as ORT has it
  then the nearest pixel: round_prefer_floor (halves down), round_prefer_ceil (halves up), where
  ORT 1.32 counts a coordinate within 1e-6 of k + 0.5 as a half (measured against ORT: the
  published sources round the float32 value exactly); floor; ceil; opset 10 has no nearest_mode:
  trunc, or ceil when downsampling (s < 1); then clamped to [0, in - 1].
tf_crop_and_resize (extrapolation), linear, cubic and antialias are refused.

TFLite's RESIZE_NEAREST_NEIGHBOR is the same gather with TFLM's tables (reference
resize_nearest_neighbor.h, GetNearestNeighbor), in float32: scale = f32(in - 1) / f32(out - 1) with
align_corners (and out > 1), else f32(in) / f32(out); x = f32(f32(i + offset) * scale), offset 0.5
with half_pixel_centers; index = round(x) (halves away from zero) with align_corners, else floor(x);
at most in - 1, and at least 0 with half_pixel_centers.
"""

from __future__ import annotations

import math

import numpy as np

from qcc.ops.qdq_group import NotFused
from qcc.ir import Graph, Node
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, const_input, register, require
from qcc.ops.tflite_import import in_layout, own_layout, tflite_int32s
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.quantized import add_output, quantized_input
from qcc.ops.slice_split_pad import (MAX_RANK, RUNTIME_HEADER, RUNTIME_SOURCES, byte_source, emit_gather,
                                     normalize_axis, require_nonempty)

F32 = np.float32
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                    "half_pixel_symmetric")
ROUND_TIE_TOLERANCE = 1e-6
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")  # opset 10 has its own, "simple"


def original_coordinates(mode: str, out_len: int, scale: np.float32, in_len: int) -> np.ndarray:
    """ORT's get_original_coordinate_ for every output index, each step rounded to float32 as ORT
    computes it (numpy float32 arithmetic is the same IEEE arithmetic, element by element)."""
    x, s, lo, li = np.arange(out_len, dtype=np.float32), F32(scale), F32(out_len), F32(in_len)
    with np.errstate(all="ignore"):
        if mode == "asymmetric":
            result = x / s
        elif mode == "half_pixel":
            result = (x + F32(0.5)) / s - F32(0.5)
        elif mode == "pytorch_half_pixel":
            result = (x + F32(0.5)) / s - F32(0.5) if lo > 1 else np.zeros_like(x)
        elif mode == "tf_half_pixel_for_nn":
            result = (x + F32(0.5)) / s
        elif mode == "align_corners":
            result = np.zeros_like(x) if lo == 1 else x * (li - F32(1)) / (lo - F32(1))
        elif mode == "half_pixel_symmetric":
            output_width = s * li
            adjustment = lo / output_width
            center = li / F32(2)
            offset = center * (F32(1) - adjustment)
            # offset + (x + 0.5) / s - 0.5 with double literals: evaluated in double, then to float
            result = (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(np.float32)
        else:
            raise ValueError(mode)
    return result.astype(np.float64)


def nearest_pixels(mode: str, x: np.ndarray, downsampling: bool) -> np.ndarray:
    """ORT's get_nearest_pixel_ on float32 coordinates (held exactly in float64)."""
    if mode == "simple":  # opset 10: truncation, or ceil when downsampling
        return np.ceil(x) if downsampling else np.trunc(x)
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    # round_prefer_floor / round_prefer_ceil. ORT 1.32 takes a coordinate within 1e-6 of a half as
    # a tie (measured: 0.98e-6 below k + 0.5 is a tie, 1.01e-6 above is not; floor, ceil and opset
    # 10 have no such tolerance). Anything else goes to the nearest integer.
    lower = np.floor(x)
    tie = np.abs((x - lower) - 0.5) <= ROUND_TIE_TOLERANCE
    return np.where(tie, lower if mode == "round_prefer_floor" else lower + 1, np.floor(x + 0.5))


def source_indices(in_shape, out_shape, scales, coordinate_mode: str, nearest_mode: str) -> list[np.ndarray]:
    """For each axis, the input index every output index reads (ORT's UpsampleNearest mappings)."""
    if tuple(out_shape) == tuple(in_shape):  # ORT copies the input unchanged
        return [np.arange(n) for n in in_shape]
    result = []
    for in_len, out_len, scale in zip(in_shape, out_shape, scales):
        if F32(scale) == F32(1) and len(in_shape) > 1:
            result.append(np.arange(out_len))
            continue
        coordinates = original_coordinates(coordinate_mode, out_len, scale, in_len)
        idx = nearest_pixels(nearest_mode, coordinates, scale < 1)
        idx = np.nan_to_num(idx, nan=0.0, posinf=in_len - 1, neginf=0.0)
        result.append(np.clip(idx, 0, in_len - 1).astype(np.int64))
    return result


def tflm_nearest_indices(in_len: int, out_len: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """The input index TFLM's GetNearestNeighbor gives each output index, with its float32 arithmetic."""
    if align_corners and out_len > 1:
        scale = F32(F32(in_len - 1) / F32(out_len - 1))
    else:
        scale = F32(F32(in_len) / F32(out_len))
    x = (np.arange(out_len, dtype=np.float32) + F32(0.5 if half_pixel_centers else 0.0)) * scale  # float32 steps
    x = x.astype(np.float64)  # exact; +0.5 and floor are exact in float64 for these magnitudes
    index = np.floor(x + 0.5) if align_corners else np.floor(x)  # std::round: halves away from zero (x >= 0)
    index = np.minimum(index, in_len - 1)
    if half_pixel_centers:
        index = np.maximum(index, 0)
    return index.astype(np.int64)


def tflm_bilinear_taps(in_len: int, out_len: int, align_corners: bool, half_pixel_centers: bool):
    """Per output index, TFLM's ResizeBilinearInteger (reference resize_bilinear.h): the scale in 1/1024,
    scale = round(1024 * in / out) ((in - 1) / (out - 1) with align_corners), the scaled coordinate
    v = i * scale (+ scale / 2 - 512 with half_pixel_centers), lower = max(v / 1024, 0), upper =
    min((v + 1023) / 1024, in - 1) (C++ division, toward zero; v >= -512, so both are floors after the clamp),
    and the upper tap's weight frac = v - 1024 * lower (negative at the first output with half_pixel_centers,
    where lower = upper). Returns (lower, upper, frac) as int64 arrays."""
    if align_corners and out_len > 1:
        scale = ((1 << 10) * (in_len - 1) + (out_len - 1) // 2) // (out_len - 1)
    else:
        scale = ((1 << 10) * in_len + out_len // 2) // out_len
    i = np.arange(out_len, dtype=np.int64)
    v = i * scale + scale // 2 - (1 << 9) if half_pixel_centers else i * scale
    lower = np.maximum(v // (1 << 10), 0)
    upper = np.minimum((v + (1 << 10) - 1) // (1 << 10), in_len - 1)
    return lower, upper, v - (1 << 10) * lower


def _tflite_resize(model):
    """The operands TFLite's two resizes share: the 4-D image in the layout it already has, the constant int32 size
    (height, width), the options, and the output in that layout. Returns (input shape as TFLite's, size,
    align_corners, half_pixel_centers, layout, x, y)."""
    in_shape = model.input_tensor(0, "input").shape
    model.require(len(in_shape) == 4 and min(in_shape) > 0, f"the input must be a non-empty 4-D image (N, H, W, C), "
                  f"got {list(in_shape)}")
    size = tflite_int32s(model, 1, "size")
    model.require(len(size) == 2 and min(size) > 0, f"the size must be 2 positive values (height, width), got {size}")
    align, half = bool(model.options.get("align_corners")), bool(model.options.get("half_pixel_centers"))
    layout = own_layout(model, 0)
    x = model.activation(0, layout)
    y = model.output(0, tuple(in_layout([in_shape[0], *size, in_shape[3]], layout)), layout)
    return in_shape, size, align, half, layout, x, y


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@register
class Resize(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "Resize"
    onnx_ops = (OnnxOp("", "Resize", 10, 10), OnnxOp("", "Resize", 11))  # (X, scales); then (X, roi, scales, sizes)
    summary = ("nearest mode: scales or sizes (axes, keep_aspect_ratio_policy), every coordinate transformation "
               "but tf_crop_and_resize, every nearest_mode")

    # QDQ models: ORT drops a DQ -> Resize -> Q pair with equal parameters and resizes the codes,
    # in nearest mode only (linear and cubic stay float).
    qdq_float_ops = onnx_ops

    tflite_ops = (TfliteOp("RESIZE_NEAREST_NEIGHBOR", 1, 4),)  # 2: int8, 3: align_corners / half_pixel_centers

    def import_tflite(self, operator, model) -> None:
        """A 4-D image resized to the constant int32 size (height, width), in the layout it already has; the
        codes are copied (TFLM does not compare the output's quantization with the input's)."""
        in_shape, size, align, half, layout, x, y = _tflite_resize(model)
        rows, cols = (tflm_nearest_indices(n, m, align, half) for n, m in zip(in_shape[1:3], size))
        sources = in_layout([np.arange(in_shape[0]), rows, cols, np.arange(in_shape[3])], layout)
        model.add_node(self.name, [x.name], [y], {"align_corners": align, "half_pixel_centers": half, "sources": sources})

    def from_qdq(self, group):
        mode = _text(group.attributes().get("mode"), "nearest")
        if mode != "nearest":
            raise NotFused(f"its mode is '{mode}' (ORT resizes codes in nearest mode only)")
        return [group.on_codes()]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        require(1 <= rank <= MAX_RANK, graph, onnx_node, f"rank {rank} is outside 1..{MAX_RANK}")
        mode = _text(attribute(onnx_node, "mode"), "nearest")
        require(mode == "nearest", graph, onnx_node,
                f"mode '{mode}' is not supported; qcc resizes codes in nearest mode only")
        require(not attribute(onnx_node, "antialias", 0), graph, onnx_node, "antialias is not supported")
        opset10 = graph.opset < 11  # Resize-10: (X, scales); from opset 11: (X, roi, scales, sizes)
        if opset10:
            coordinate_mode, nearest_mode = "asymmetric", "simple"
            scales_index, sizes_index = 1, None
        else:
            coordinate_mode = _text(attribute(onnx_node, "coordinate_transformation_mode"), "half_pixel")
            nearest_mode = _text(attribute(onnx_node, "nearest_mode"), "round_prefer_floor")
            scales_index, sizes_index = 2, 3
        require(coordinate_mode in COORDINATE_MODES, graph, onnx_node,
                f"coordinate_transformation_mode '{coordinate_mode}' is not supported "
                f"(supported: {', '.join(COORDINATE_MODES)})")
        require(nearest_mode in NEAREST_MODES or opset10, graph, onnx_node,
                f"nearest_mode '{nearest_mode}' is not one of {', '.join(NEAREST_MODES)}")
        axes = attribute(onnx_node, "axes")
        policy = _text(attribute(onnx_node, "keep_aspect_ratio_policy"), "stretch")
        require(policy in ("stretch", "not_larger", "not_smaller"), graph, onnx_node,
                f"keep_aspect_ratio_policy '{policy}' is not supported")
        # ORT matches keep_aspect_ratio_policy's axes without normalizing them: a negative axis is
        # silently left unscaled there. Refused rather than imitated.
        require(policy == "stretch" or axes is None or all(int(a) >= 0 for a in axes), graph, onnx_node,
                f"negative axes {list(axes or [])} with keep_aspect_ratio_policy '{policy}': ORT ignores them; "
                "write the axes as non-negative numbers")
        axes = list(range(rank)) if axes is None else [normalize_axis(int(a), rank, graph, onnx_node) for a in axes]

        scales = self._optional(graph, onnx_node, scales_index, "scales")
        sizes = self._optional(graph, onnx_node, sizes_index, "sizes")
        require((scales is None) != (sizes is None), graph, onnx_node, "exactly one of scales and sizes must be given")
        if scales is not None:
            values = scales.astype(np.float32).reshape(-1)
            require(values.size == len(axes), graph, onnx_node, f"{values.size} scales for {len(axes)} axes")
            require(bool(np.all(values > 0)), graph, onnx_node, f"scales {values.tolist()} must be positive")
            scale = [F32(1)] * rank
            for a, v in zip(axes, values):
                scale[a] = F32(v)
            out_shape = [int(F32(s) * F32(n)) for s, n in zip(scale, x.shape)]  # int64(f32(scale * f32(in)))
        else:
            values = [int(v) for v in sizes.reshape(-1)]
            require(len(values) == len(axes), graph, onnx_node, f"{len(values)} sizes for {len(axes)} axes")
            require(all(v > 0 for v in values), graph, onnx_node, f"sizes {values} must be positive")
            out_shape = list(x.shape)
            for a, v in zip(axes, values):
                out_shape[a] = v
            scale = [F32(F32(o) / F32(n)) for o, n in zip(out_shape, x.shape)]
            if policy != "stretch":
                chosen = [scale[a] for a in axes]
                common = min(chosen) if policy == "not_larger" else max(chosen)
                for a in range(rank):
                    if a in axes:
                        scale[a] = common
                        out_shape[a] = math.floor(float(common * F32(x.shape[a])) + 0.5)  # std::round(f32(s * in))
                    else:
                        scale[a], out_shape[a] = F32(1), x.shape[a]
        require_nonempty(out_shape, graph, onnx_node, "output")
        y = add_output(graph, onnx_node, 0, x.dtype, out_shape, x.quant)
        sources = source_indices(x.shape, out_shape, scale, coordinate_mode, nearest_mode)
        return Node(self.name, onnx_node.name or y, [x.name], [y],
                    attrs={"coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode,
                           "scales": [float(s) for s in scale], "sources": sources})

    @staticmethod
    def _optional(graph: Graph, onnx_node, index, what: str):
        """A constant scales/sizes input, or None when absent or empty."""
        if index is None or index >= len(onnx_node.input) or not onnx_node.input[index]:
            return None
        value = np.asarray(const_input(graph, onnx_node, index, what))
        return value if value.size else None

    def reference(self, node: Node, graph: Graph, inputs):
        return [inputs[0][np.ix_(*node.attrs["sources"])]]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        return emit_gather(c, node, f"{prefix}_params", x.shape, node.attrs["sources"],
                           byte_source(c, graph, x.name, f"{prefix}_x"), c.tensor(y.name, "uint8"))


@register
class TflmResizeBilinear(Op):
    """TFLite's int8 RESIZE_BILINEAR as TFLM computes it (tflm_bilinear_taps, runtime_c qcc_resize_bilinear_s8): each
    output code the four input codes around it weighted by products of 1/1024 fractions, in integers, divided by
    2^20, halves away from zero: the pinned wheel is built without TFLITE_SINGLE_ROUNDING, whose floor(v + 1/2)
    differs on negative halves (tests/test_tflite_movement.py fails with it). The codes are interpolated as they
    are: TFLM does not requantize to the output's parameters."""
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "TflmResizeBilinear"
    summary = "TFLM's int8 bilinear resize: 10-bit fixed-point fractions, the codes interpolated in integers"
    tflite_ops = (TfliteOp("RESIZE_BILINEAR", 1, 3),)  # 2: int8, 3: half_pixel_centers (4: int16, refused)

    def import_tflite(self, operator, model) -> None:
        """A 4-D int8 image resized to the constant int32 size (height, width), in the layout it already has."""
        in_shape, size, align, half, layout, x, y = _tflite_resize(model)
        model.require(not (align and half), "align_corners and half_pixel_centers are both set; TFLM requires at "
                      "most one")
        rows, cols = (tflm_bilinear_taps(n, m, align, half) for n, m in zip(in_shape[1:3], size))
        model.add_node(self.name, [x.name], [y], {"align_corners": align, "half_pixel_centers": half,
                                                  "rows": rows, "cols": cols, "channels_last": layout == "tflite"})

    def _planes(self, node: Node, x: np.ndarray) -> np.ndarray:
        """The input as (outer, H, W, inner): channels first (N * C planes, inner 1) or last (N, inner C)."""
        if node.attrs["channels_last"]:
            return x
        n, c, h, w = x.shape
        return x.reshape(n * c, h, w, 1)

    def reference(self, node: Node, graph: Graph, inputs):
        x = self._planes(node, np.asarray(inputs[0]).astype(np.int64))
        (yl, yu, fy), (xl, xu, fx) = node.attrs["rows"], node.attrs["cols"]
        fy, fx = fy[None, :, None, None], fx[None, None, :, None]
        lower, upper = x[:, yl], x[:, yu]
        v = ((lower[:, :, xl] * (1024 - fy) + upper[:, :, xl] * fy) * (1024 - fx)
             + (lower[:, :, xu] * (1024 - fy) + upper[:, :, xu] * fy) * fx)
        r = v + np.where(v > 0, 1 << 19, -(1 << 19))  # halves away from zero: (v +- 2^19) / 2^20 toward zero
        codes = np.sign(r) * (np.abs(r) >> 20)
        y = graph.tensor(node.outputs[0])
        return [codes.astype(y.dtype).reshape(y.shape)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's integer bilinear resize: four input codes weighted by 1/1024 "
                                           "fractions, summed in integers and divided by 2^20, halves away from zero; "
                                           "the same in every scheme")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        if node.attrs["channels_last"]:
            (outer, in_h, in_w, inner), (out_h, out_w) = x.shape, y.shape[1:3]
        else:
            (n, ch, in_h, in_w), (out_h, out_w) = x.shape, y.shape[2:4]
            outer, inner = n * ch, 1
        taps = {f"{axis}_{part}": c.const_array(f"{prefix}_{axis}_{part}", "int16_t", values)
                for axis, values3 in (("row", node.attrs["rows"]), ("col", node.attrs["cols"]))
                for part, values in zip(("lower", "upper", "frac"), values3)}
        fields = {"outer": outer, "inner": inner, "in_h": in_h, "in_w": in_w, "out_h": out_h, "out_w": out_w, **taps}
        params = c.struct("qcc_resize_bilinear_params", f"{prefix}_params", fields)
        return f"qcc_resize_bilinear_s8({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
