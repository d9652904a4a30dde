"""Pieces shared by the requantizing ops: reading quantization inputs, the folded accumulator
constant, and the per-channel requantization parameters with their clamp."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx

from qcc.errors import QccError
from qcc.ir import CODE_RANGE, MAX_TENSOR_ELEMENTS, QUANTIZED_DTYPES, Graph, Node, QuantParams, Tensor
from qcc.numerics import SCHEMES, ort_float32
from qcc.numerics.accumulator_range import F32_EXACT_LIMIT, INT32_MAX, INT32_MIN, AccumulatorRange
from qcc.ops.base import const_input, node_label


def read_quant(
    graph: Graph, onnx_node: onnx.NodeProto, scale_index: int, zero_index: int, what: str, axis: int | None = None
) -> QuantParams:
    """Quantization parameters from a node's (scale, zero point) inputs; a missing zero point is 0."""
    scale = np.asarray(const_input(graph, onnx_node, scale_index, f"{what} scale"), dtype=np.float32)
    if zero_index < len(onnx_node.input) and onnx_node.input[zero_index]:
        zero = np.asarray(const_input(graph, onnx_node, zero_index, f"{what} zero point")).astype(np.int64)
    else:
        zero = np.zeros_like(scale, dtype=np.int64)
    for name, value in (("scale", scale), ("zero point", zero)):
        if value.ndim > 1:  # ORT's kernels and schemas: "must be a scalar or 1D tensor of size 1" (or 1-D per axis)
            raise QccError(f"{node_label(graph, onnx_node)}: the {what} {name} has shape {list(value.shape)}; ONNX "
                           "Runtime takes a scalar or a 1-D tensor and refuses this model")
    if scale.size != 1 and axis is None:
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} scale must be a scalar (got shape {scale.shape})")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} scale must be positive and finite")
    if np.any(scale < np.finfo(np.float32).tiny):
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} scale {float(scale.min()):g} is subnormal "
                       "(below 2^-126); give a normal float32 scale")
    if zero_index < len(onnx_node.input) and onnx_node.input[zero_index]:
        zero_type = graph.tensors[onnx_node.input[zero_index]].dtype
        if zero_type not in ("uint8", "int8"):
            raise QccError(f"{node_label(graph, onnx_node)}: the {what} zero point is {zero_type}; it must be int8 or "
                           "uint8 (so that it lies in the codes' range)")
    if zero.size not in (1, scale.size):
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} zero point has {zero.size} values for "
                       f"{scale.size} scales")
    if scale.size == 1:
        return QuantParams(scale.reshape(()), zero.reshape(()), None)
    return QuantParams(scale.reshape(-1), np.broadcast_to(zero.reshape(-1), scale.reshape(-1).shape).copy(), axis)


def quantized_input(graph: Graph, onnx_node: onnx.NodeProto, index: int, what: str) -> Tensor:
    if index >= len(onnx_node.input) or not onnx_node.input[index]:
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} is missing")
    tensor = graph.tensors.get(onnx_node.input[index])
    if tensor is None:
        raise QccError(f"{node_label(graph, onnx_node)}: input '{onnx_node.input[index]}' is not produced by any node")
    if tensor.dtype not in QUANTIZED_DTYPES:
        raise QccError(
            f"{node_label(graph, onnx_node)}: the {what} '{tensor.name}' is {tensor.dtype}; qcc supports int8 and uint8"
        )
    return tensor


def same_quant(a: QuantParams, b: QuantParams) -> bool:
    return (a.axis == b.axis and a.scale.shape == b.scale.shape and bool(np.all(a.scale == b.scale))
            and bool(np.all(a.zero_point == b.zero_point)))


def bind_quant(graph: Graph, onnx_node: onnx.NodeProto, index: int, quant: QuantParams) -> str:
    """The tensor a QOperator node reads its input `index` as, quantized with the node's own
    parameters. ORT lets each node read codes with its own scale and zero point, whatever the
    producer (or another reader) wrote or read them with: the same bytes, interpreted otherwise,
    no requantization. Parameters live on tensors in qcc, so a reader whose parameters differ
    from the tensor's gets a view: a Reinterpret node that shares the bytes (or, for a constant,
    a copy of the constant) carrying its parameters."""
    name = onnx_node.input[index]
    tensor = graph.tensors[name]
    if tensor.quant is None or same_quant(tensor.quant, quant):
        tensor.quant = quant
        return name
    k = 1
    while f"{name}__read_as_{k}" in graph.tensors:
        k += 1
    view = f"{name}__read_as_{k}"
    graph.tensors[view] = Tensor(view, tensor.dtype, tensor.shape, tensor.data, quant)
    if not tensor.is_const:
        graph.nodes.append(Node("Reinterpret", view, [name], [view], attrs={"onnx_op": "Reinterpret"}))
    return view


def add_output(graph: Graph, onnx_node: onnx.NodeProto, index: int, dtype: str, shape, quant=None) -> str:
    name = onnx_node.output[index]
    count = int(np.prod([int(d) for d in shape], dtype=np.int64)) if len(shape) else 1
    if count > MAX_TENSOR_ELEMENTS:
        raise QccError(f"{node_label(graph, onnx_node)}: its output would have {count} elements; qcc's limit is 2^28 "
                       "per tensor (more does not fit a microcontroller, and would not compile in reasonable time)")
    graph.tensors[name] = Tensor(name, dtype, tuple(int(d) for d in shape), None, quant)
    return name


def as_int8_weights(values: np.ndarray, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights as int8 whatever their stored type: uint8 codes and zero points move down by 128,
    which leaves every difference q_w - Z_w, and so every accumulator, unchanged."""
    if values.dtype == np.uint8:
        return (values.astype(np.int16) - 128).astype(np.int8), zero.astype(np.int64) - 128
    return values.astype(np.int8), zero.astype(np.int64)


def wrap_int32(values) -> np.ndarray:
    """Reduce modulo 2**32 into int32: ORT's accumulators wrap, and so does qcc's folding."""
    return (np.asarray(values, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


@dataclass
class Requant:
    """Per-channel requantization in one rounding scheme: y = clamp(round(acc * M[c]), lo, hi) + zero,
    with M[c] held as (mult, shift) as the scheme defines them (qcc/numerics)."""

    scheme: str
    scale: np.ndarray  # float32, the exact value ORT multiplies by
    real_scale: np.ndarray  # float64, the same ratio of scales in double precision
    mult: np.ndarray  # uint32
    shift: np.ndarray  # int8
    zero: int
    lo: int  # clamp bounds with the zero point subtracted
    hi: int
    acc_f32_exact: bool = False  # range analysis proved |acc| <= 2**24: f32(acc) == acc
    fast: ort_float32.FastPath | None = None  # the ort scheme's fast path in C (ort_float32.fast_path)

    @property
    def channels(self) -> int:
        return int(self.mult.size)


def prepare_requant(node: Node, graph: Graph, scales: np.ndarray, real_scales: np.ndarray) -> Requant:
    """Requantization parameters for the node's single quantized output, with any folded clamp, in
    the graph's rounding scheme. scales: the float32 scales ORT computes for the op; real_scales:
    the same ratios in double precision."""
    out = graph.tensor(node.outputs[0])
    _, zero = out.quant.scalar()
    qmin, qmax = CODE_RANGE[out.dtype]
    lo_code, hi_code = node.attrs.get("clamp", (qmin, qmax))
    lo_code, hi_code = max(lo_code, qmin), min(hi_code, qmax)
    scales = np.asarray(scales, dtype=np.float32).reshape(-1)
    real_scales = np.broadcast_to(np.asarray(real_scales, dtype=np.float64).reshape(-1), scales.shape)
    scheme = SCHEMES[graph.rounding]
    pairs = [scheme.fixed_point(s, r) for s, r in zip(scales, real_scales)]
    rq = Requant(
        scheme=graph.rounding,
        scale=scales,
        real_scale=np.array(real_scales),
        mult=np.array([m for m, _ in pairs], dtype=np.uint32),
        shift=np.array([s for _, s in pairs], dtype=np.int8),
        zero=zero,
        lo=lo_code - zero,
        hi=hi_code - zero,
        acc_f32_exact=bool(node.params.get("acc_range") is not None and node.params["acc_range"].f32_exact),
    )
    if rq.scheme == "ort":
        rq.fast = ort_float32.fast_path(rq.mult, rq.shift, rq.lo, rq.hi, _f32_exact_channels(node.params.get("acc_range"), rq.channels))
    return rq


def fold_constant_channels(params: dict) -> dict:
    """The C's parameters of a layer (weights, acc_const, weight_zero, requant), with each channel that the
    `ort` fast path cannot take but whose output is one code over its whole accumulator range computed as that
    code: weights 0, acc_const the code times 2^(s - 23) and scale 2^(23 - s), s a fast channel's shift. ORT's
    requantization is monotonic in acc, so equal codes at both ends of the range analysis's bound prove the
    code. Such channels are near-dead filters beside a bias of about
    2^30 (TFLite quantizes the bias with the filter's tiny scale): |acc| passes 2^24, so ORT's f32(acc) rounds
    and every output took the exact path (up to 234 of a layer's 256 channels in MLPerf VWW). The reference
    interpreter keeps the model's own arithmetic; the golden tests hold the two equal."""
    rq, acc_range = params["requant"], params.get("acc_range")
    if rq.scheme != "ort" or rq.fast is None or acc_range is None or rq.channels == 1:
        return params
    if acc_range.low.size != rq.channels:
        return params
    # the codes (the zero point taken off) of the channels with one code that the fast path cannot take
    constant = {c: code - rq.zero for c, code in constant_channels(params).items() if rq.fast.mult[c] == 0}
    if not constant:
        return params
    weights, acc_const = params["weights"].copy(), params["acc_const"].copy()
    w_zero = None if params["weight_zero"] is None else params["weight_zero"].copy()
    mult, shift, scale, real = rq.mult.copy(), rq.shift.copy(), rq.scale.copy(), rq.real_scale.copy()
    # The scale 2^(23 - s), s the median shift of the channels already fast (31: 2^-8 where none is): on the
    # layer's fast path like them, and code * 2^(s - 23) requantizes to the code exactly.
    fast_shifts = np.sort(rq.shift[rq.fast.mult != 0])
    s_fold = int(fast_shifts[fast_shifts.size // 2]) if fast_shifts.size else 31
    exact = _f32_exact_channels(acc_range, rq.channels)
    for c, code in constant.items():
        acc = code << (s_fold - 23) if code >= 0 else -((-code) << (s_fold - 23))
        if abs(acc) > F32_EXACT_LIMIT:
            continue
        weights[c], acc_const[c], mult[c], shift[c], exact[c] = 0, acc, 1 << 23, s_fold, True
        scale[c] = real[c] = 2.0 ** (23 - s_fold)
        if w_zero is not None:
            w_zero[c] = 0
    folded = replace(rq, mult=mult, shift=shift, scale=scale, real_scale=real)
    folded.fast = ort_float32.fast_path(mult, shift, rq.lo, rq.hi, exact)
    return params | {"weights": weights, "acc_const": acc_const, "weight_zero": w_zero, "requant": folded}


def _f32_exact_channels(acc_range, channels: int) -> list[bool]:
    """Per requantization channel: range analysis proved |acc| <= 2**24 for it (f32(acc) == acc). A layer whose
    bound passes 2**24 through some channels (a large bias, a wide filter) keeps the others on the fast path."""
    if acc_range is None:
        return [False] * channels
    per_channel = np.maximum(np.abs(acc_range.low), np.abs(acc_range.high)).reshape(-1) <= F32_EXACT_LIMIT
    if channels == 1 or per_channel.size != channels:  # one requantization for every channel
        return [bool(per_channel.all())] * channels
    return [bool(v) for v in per_channel]


def requantize(acc: np.ndarray, rq: Requant, channel_axis: int, out_dtype: str) -> np.ndarray:
    """Reference requantization of an int32 accumulator array, channels along `channel_axis`."""
    shape = [1] * acc.ndim
    shape[channel_axis] = rq.channels
    # The reference always takes the general path: the C's shortcut where |acc| <= 2**24 is proven
    # (no rounding of f32(acc)) must give the same numbers, and the golden tests check that it does.
    y = SCHEMES[rq.scheme].requantize(acc, rq.mult.reshape(shape), rq.shift.reshape(shape), rq.lo, rq.hi)
    return (y + rq.zero).astype(out_dtype)


def constant_channels(params: dict) -> dict[int, int]:
    """The output channels whose code is the same for every input, with that code (the zero point added). Every
    scheme's requantization is monotonic in acc, so one code at both ends of the range analysis's accumulator bound
    proves it (where the bound stays within int32: past it the C's sum wraps). TFLite's near-dead filters beside a
    bias of about 2^30 are such channels: 42% of MLPerf VWW's products."""
    rq, acc_range = params["requant"], params.get("acc_range")
    if acc_range is None:
        return {}
    low, high = acc_range.low.reshape(-1), acc_range.high.reshape(-1)
    channels = low.size
    mult = np.broadcast_to(rq.mult.reshape(-1), (channels,)).reshape(1, -1)
    shift = np.broadcast_to(rq.shift.reshape(-1), (channels,)).reshape(1, -1)
    codes = SCHEMES[rq.scheme].requantize(np.stack([low, high]), mult, shift, rq.lo, rq.hi)
    constant = (codes[0] == codes[1]) & (low >= INT32_MIN) & (high <= INT32_MAX)
    return {int(c): int(codes[0, c]) + rq.zero for c in np.flatnonzero(constant)}


def select_channels(params: dict, keep: np.ndarray) -> dict:
    """The C's parameters of a layer (weights, acc_const, weight_zero, requant, and the range analysis's acc_range) for
    the output channels `keep` alone, in that order."""
    rq = params["requant"]
    if rq.channels > 1:
        rq = replace(rq, scale=rq.scale[keep], real_scale=rq.real_scale[keep], mult=rq.mult[keep], shift=rq.shift[keep],
                     fast=None if rq.fast is None else replace(rq.fast, mult=rq.fast.mult[keep]))
    w_zero, acc_range = params["weight_zero"], params.get("acc_range")
    return params | {"weights": params["weights"][keep], "acc_const": params["acc_const"][keep],
                     "weight_zero": None if w_zero is None else w_zero[keep], "requant": rq,
                     "acc_range": None if acc_range is None else AccumulatorRange(acc_range.low[keep], acc_range.high[keep])}


DOUBLED_MAX_K = 21  # runtime_c/qcc_requant.h QCC_DOUBLED_MAX_K
DOUBLED_NONE, DOUBLED_COMMON, DOUBLED_SIGNED = 0, 1, 2  # runtime_c/qcc_requant.h QCC_DOUBLED_*


@dataclass
class Doubled:
    """The doubled requantization's constants (runtime_c/qcc_requant.h qcc_requantize_doubled, docs/arithmetic.md
    section 10), per channel: C = 2^k + Z_y * 2^(k+1) and the shift k + 1, or shift 0 where the channel keeps the
    general path; `case` DOUBLED_COMMON, or DOUBLED_SIGNED (`tflm` with a clamp below the zero point)."""

    case: int
    round: np.ndarray  # int32 per channel
    shift: np.ndarray  # int8 per channel: 0 where the channel does not take the path


def doubled_requant(params: dict, out_dtype: str) -> Doubled | None:
    """The doubled path's constants for a layer's channels (tflm, single), or None where no channel takes it. A
    channel takes it where M < 1/4 with k = -e - 1 in 1..DOUBLED_MAX_K, the clamp is the output type's whole range
    (the saturation is then the clamp), and the range analysis's exact bound keeps |acc| below 2^30 for every
    input, so that the C may carry 2 * acc in int32 exactly."""
    rq, acc_range = params["requant"], params.get("acc_range")
    out_c = params["weights"].shape[0]
    if rq.scheme not in ("tflm", "single") or acc_range is None or acc_range.low.size != out_c:
        return None
    within = (acc_range.low.reshape(-1) > -2**30) & (acc_range.high.reshape(-1) < 2**30)
    k = -1 - np.broadcast_to(rq.shift.astype(np.int64), (out_c,))
    qmin, qmax = CODE_RANGE[out_dtype]
    takes = (k >= 1) & (k <= DOUBLED_MAX_K) & within & (rq.lo + rq.zero == qmin) & (rq.hi + rq.zero == qmax)
    if not takes.any():
        return None
    k = np.where(takes, k, 0)
    rounds = np.where(takes, (1 << k) + rq.zero * (2 << k), 0)
    return Doubled(DOUBLED_SIGNED if rq.scheme == "tflm" and rq.lo < 0 else DOUBLED_COMMON,
                   rounds.astype(np.int32), np.where(takes, k + 1, 0).astype(np.int8))


def emit_doubled(c, prefix: str, doubled: Doubled | None) -> dict:
    """The qcc_conv_params fields of the doubled path's constants (none: QCC_DOUBLED_NONE and NULLs)."""
    if doubled is None:
        return {"doubled_case": DOUBLED_NONE, "doubled_round": "NULL", "doubled_shift": "NULL"}
    return {"doubled_case": doubled.case, "doubled_round": c.const_array(f"{prefix}_doubled_round", "int32_t", doubled.round),
            "doubled_shift": c.const_array(f"{prefix}_doubled_shift", "int8_t", doubled.shift)}


def requant_fields(rq: Requant) -> dict:
    """The values of a qcc_requant_params (runtime_c/qcc_kernels.h) for `rq`: numpy arrays for the
    array fields (None for NULL), integers for the others."""
    fast = rq.fast
    fields = {"mult": rq.mult if fast is None else fast.mult.astype(np.uint32), "shift": rq.shift,
              "per_channel": 1 if rq.channels > 1 else 0, "zero": rq.zero, "lo": rq.lo, "hi": rq.hi,
              "acc_f32_exact": int(rq.acc_f32_exact)}
    if fast is None:
        fields |= {"exact_mult": None, "fast_shift": 0, "fast_bias": 0, "fast_window": 0, "fast_lo": 0,
                   "fast_hi": 0, "fast_zero": 0}
        if np.all(rq.mult == rq.mult[0]) and np.all(rq.shift == rq.shift[0]):
            # one (M0, e) for the layer (a per-tensor weight scale): stored once
            fields |= {"mult": rq.mult[:1], "shift": rq.shift[:1], "per_channel": 0}
        if rq.scheme in ("tflm", "single") and np.all(rq.shift == rq.shift[0]) and int(rq.shift[0]) <= -2:
            # M < 1/4 with one exponent e: qcc_requantize's layer-wide fast path, k = -e - 1 and its
            # rounding's high word 2^(k - 1) (as qcc_tflm_channel_of and qcc_single_channel_of work out per channel)
            k = -int(rq.shift[0]) - 1
            fields |= {"fast_shift": k, "fast_bias": 1 << (k - 1)}
        return fields
    # ort: mult holds the fast path's M, and the significands (exact_mult) only where M cannot give them back
    lost = np.any((fast.mult == 0) & (rq.mult != 0))
    return fields | {"exact_mult": rq.mult if lost else None, **fast.fields(rq.lo, rq.hi, rq.zero)}


def emit_requant(c, prefix: str, rq: Requant) -> dict:
    """The fields of a qcc_requant_params for `rq` (a nested struct for CEmitter.struct). With --fpu
    (the `ort` scheme only) the float32 scales ORT multiplies by replace the multipliers and shifts."""
    fields = requant_fields(rq)
    if c.graph.fpu:
        assert rq.scheme == "ort", rq.scheme
        fields |= {"mult": "NULL", "shift": "NULL", "exact_mult": "NULL", "fast_shift": 0, "fast_bias": 0,
                   "fast_window": 0, "fast_lo": 0, "fast_hi": 0, "fast_zero": 0,
                   "scale": c.const_float_array(f"{prefix}_scale", rq.scale)}
        return fields
    fields["mult"] = c.const_array(f"{prefix}_mult", "uint32_t", fields["mult"])
    fields["shift"] = c.const_array(f"{prefix}_shift", "int8_t", fields["shift"])
    exact = fields["exact_mult"]
    fields["exact_mult"] = "NULL" if exact is None else c.const_array(f"{prefix}_exact_mult", "uint32_t", exact)
    return fields


def sxtb16_tap_order(weights: np.ndarray, depth: int) -> np.ndarray:
    """[out_c][depth] int8: each filter's taps in ONNX order (input channel, kernel row, kernel column;
    for a matrix product, B's column) then zeros up to depth (a multiple of 4), each group of 4 stored
    in the order 0, 2, 1, 3, so that SXTB16 of one word gives the int16 pairs (w0, w1) and (w2, w3).
    qcc_fully_connected's weights."""
    out_c = weights.shape[0]
    flat = weights.reshape(out_c, -1)
    padded = np.zeros((out_c, depth), np.int8)
    padded[:, :flat.shape[1]] = flat
    return padded.reshape(out_c, depth // 4, 4)[:, :, [0, 2, 1, 3]].reshape(out_c, depth)
