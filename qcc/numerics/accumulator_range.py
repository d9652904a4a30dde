"""Exact ranges of integer sums: the int32 accumulator of an op that sums (x - Z_x)(w - Z_w) + bias
with x free in its type's range, and the int16 pair sums of ONNX Runtime's uint8 x int8 GEMM on
x86 without VNNI. The op modules give their ranges through Op.accumulator_range; the range
analysis pass (qcc/passes/range_analysis.py) records and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcc.ir import CODE_RANGE

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
    qmin, qmax = CODE_RANGE[x_dtype]
    d = weights.astype(np.int64) - np.asarray(weight_zero, np.int64).reshape(-1, 1)
    ends = np.stack([(qmin - x_zero) * d, (qmax - x_zero) * d])
    b = np.zeros(weights.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    if b.ndim == 2:  # a bias that varies by row as well (QGemm C of shape (M, N)): the worst row
        return AccumulatorRange(b.min(axis=0) + ends.min(axis=0).sum(axis=1), b.max(axis=0) + ends.max(axis=0).sum(axis=1))
    return AccumulatorRange(b + ends.min(axis=0).sum(axis=1), b + ends.max(axis=0).sum(axis=1))


def sum_range(count: int, x_zero: int, x_dtype: str) -> AccumulatorRange:
    """Range of sum_{i<count} (x_i - Z_x)."""
    qmin, qmax = CODE_RANGE[x_dtype]
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
    qmin, qmax = CODE_RANGE[x_dtype]
    w = weights.astype(np.int64)
    if w.shape[1] % 2:
        w = np.pad(w, ((0, 0), (0, 1)))
    top, bottom = np.maximum(qmin * w, qmax * w), np.minimum(qmin * w, qmax * w)
    pair_high, pair_low = top[:, 0::2] + top[:, 1::2], bottom[:, 0::2] + bottom[:, 1::2]
    excess = np.maximum(pair_high - INT16_MAX, INT16_MIN - pair_low)
    return PairSumRange(pair_low.min(axis=1), pair_high.max(axis=1), 2 * np.argmax(excess, axis=1))
