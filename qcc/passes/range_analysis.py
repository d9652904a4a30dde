"""Accumulator range analysis: the exact worst case of every int32 accumulator, per output channel.

For an op that sums (x - Z_x)(w - Z_w) + bias over K taps, with x free in [qmin, qmax] and the
weights known, each term is largest at one end of the input range, independently of the others:

    acc_max[c] = bias[c] + sum_k max((qmin - Z_x) * d_k, (qmax - Z_x) * d_k),   d_k = w[c,k] - Z_w[c]
    acc_min[c] = bias[c] + sum_k min(...)

(padded taps read Z_x and add 0). Both bounds are reached by some input, so they are exact. The
pass records them in node.params["acc_range"] (arrays per channel), proves where int32 cannot
overflow, warns where it can (the C then wraps modulo 2^32, as ORT's accumulator does), and marks
layers whose |acc| stays below 2^24, where f32(acc) is exact and the `ort` scheme can skip
rounding it.

It also bounds the int16 pair sums of ONNX Runtime's uint8 x int8 GEMM on x86 CPUs without VNNI
(node.params["u8s8_pairs"]): MLAS's AVX2 and AVX512BW kernels (vpmaddubsw) add the raw products
of K positions 2j and 2j+1 in a saturating int16 before widening, so where a pair can leave
[-32768, 32767] ORT run without session.x64quantprecision=1 on such a CPU differs from the exact
sum that qcc (and ORT with that option, or on VNNI and ARM CPUs) computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcc.ir import DTYPE_RANGE, Graph, Node

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
F32_EXACT_LIMIT = 2**24  # every integer of magnitude <= 2**24 is a float32


@dataclass
class AccumulatorRange:
    low: np.ndarray  # int64 per output channel
    high: np.ndarray

    @property
    def magnitude(self) -> int:
        return int(max(np.abs(self.low).max(), np.abs(self.high).max()))

    @property
    def bits(self) -> int:
        """Bits of a signed integer that holds every value of the range."""
        return max(int(self.magnitude).bit_length() + 1, 1)

    @property
    def int32_safe(self) -> bool:
        return bool(self.low.min() >= INT32_MIN and self.high.max() <= INT32_MAX)

    @property
    def f32_exact(self) -> bool:
        return self.magnitude <= F32_EXACT_LIMIT

    def unsafe_channels(self) -> np.ndarray:
        return np.flatnonzero((self.low < INT32_MIN) | (self.high > INT32_MAX))


def product_sum_range(weights: np.ndarray, weight_zero: np.ndarray, x_zero: int, x_dtype: str,
                      bias: np.ndarray | None) -> AccumulatorRange:
    """Range of bias[c] + sum_k (x_k - Z_x)(w[c,k] - Z_w[c]) over all inputs; weights (C, K)."""
    qmin, qmax = DTYPE_RANGE[x_dtype]
    d = weights.astype(np.int64) - np.asarray(weight_zero, np.int64).reshape(-1, 1)
    ends = np.stack([(qmin - x_zero) * d, (qmax - x_zero) * d])
    b = np.zeros(weights.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    if b.ndim == 2:  # a bias that varies by row as well (QGemm C of shape (M, N)): the worst row
        return AccumulatorRange(b.min(axis=0) + ends.min(axis=0).sum(axis=1), b.max(axis=0) + ends.max(axis=0).sum(axis=1))
    return AccumulatorRange(b + ends.min(axis=0).sum(axis=1), b + ends.max(axis=0).sum(axis=1))


def sum_range(count: int, x_zero: int, x_dtype: str) -> AccumulatorRange:
    """Range of sum_{i<count} (x_i - Z_x)."""
    qmin, qmax = DTYPE_RANGE[x_dtype]
    return AccumulatorRange(np.array([count * (qmin - x_zero)]), np.array([count * (qmax - x_zero)]))


@dataclass
class PairSumRange:
    """Per output channel, the extreme sums of two adjacent raw products x*w (K positions 2j and
    2j+1 in the order ORT's GEMM reads the weights) over every input."""

    low: np.ndarray  # int64 per output channel
    high: np.ndarray
    worst_k: np.ndarray  # per channel, the first K position (even) of the pair furthest out of int16

    def saturating_channels(self) -> np.ndarray:
        return np.flatnonzero((self.low < INT16_MIN) | (self.high > INT16_MAX))

    @property
    def can_saturate(self) -> bool:
        return bool(self.saturating_channels().size)

    @property
    def worst_channel(self) -> int:
        """The channel whose pair sums go furthest outside int16 (or come closest to leaving it)."""
        return int(np.argmax(np.maximum(self.high - INT16_MAX, INT16_MIN - self.low)))


def u8s8_pair_sum_range(weights: np.ndarray, x_dtype: str) -> PairSumRange:
    """Pair sums of raw codes for weights (C, K) in ORT's K order, x free in its type's range (MLAS
    multiplies codes before any zero point is subtracted; an odd K is padded with a zero weight)."""
    qmin, qmax = DTYPE_RANGE[x_dtype]
    w = weights.astype(np.int64)
    if w.shape[1] % 2:
        w = np.pad(w, ((0, 0), (0, 1)))
    top, bottom = np.maximum(qmin * w, qmax * w), np.minimum(qmin * w, qmax * w)
    pair_high, pair_low = top[:, 0::2] + top[:, 1::2], bottom[:, 0::2] + bottom[:, 1::2]
    excess = np.maximum(pair_high - INT16_MAX, INT16_MIN - pair_low)
    return PairSumRange(pair_low.min(axis=1), pair_high.max(axis=1), 2 * np.argmax(excess, axis=1))


def analyze(graph: Graph) -> list[str]:
    """Attach node.params["acc_range"] where an op defines one, and node.params["u8s8_pairs"] where
    ORT runs a uint8 x int8 GEMM; return the overflow warnings."""
    from qcc.ops import op_named

    warnings = []
    for node in graph.nodes:
        op = op_named(node.op)
        gemm_weights = op.ort_gemm_weights(node, graph)
        if gemm_weights is not None and gemm_weights.dtype == np.int8 and graph.tensor(node.inputs[0]).dtype == "uint8":
            node.params["u8s8_pairs"] = u8s8_pair_sum_range(gemm_weights, "uint8")
        acc_range = op.accumulator_range(node, graph)
        if acc_range is None:
            continue
        node.params["acc_range"] = acc_range
        if not acc_range.int32_safe:
            channels = acc_range.unsafe_channels()
            worst = int(channels[np.argmax(np.maximum(np.abs(acc_range.low), np.abs(acc_range.high))[channels])])
            warnings.append(
                f"{graph.source}: node '{node.name}' ({node.attrs.get('onnx_op', node.op)}): the int32 accumulator can "
                f"overflow in {len(channels)} output channel(s), worst channel {worst} reaching "
                f"[{acc_range.low[worst]}, {acc_range.high[worst]}] ({acc_range.bits} bits); the C wraps modulo 2^32 "
                "exactly as ONNX Runtime does"
            )
    return warnings


def describe_u8s8_pairs(node: Node) -> str:
    """The inspect cell: whether ORT's int16 pair sums can saturate in this layer on x86 without VNNI."""
    pairs = node.params.get("u8s8_pairs")
    if pairs is None:
        return "-"
    channels = pairs.saturating_channels()
    return f"SATURATE {channels.size}/{pairs.low.size} ch" if channels.size else "fit int16"


def describe(node: Node) -> str:
    r = node.params.get("acc_range")
    if r is None:
        return "-"
    return f"{r.bits} bits, {'int32 safe' if r.int32_safe else 'CAN OVERFLOW'}{', f32 exact' if r.f32_exact else ''}"
