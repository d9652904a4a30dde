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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcc.ir import DTYPE_RANGE, Graph, Node

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
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


def analyze(graph: Graph) -> list[str]:
    """Attach node.params["acc_range"] where an op defines one; return the overflow warnings."""
    from qcc.ops import op_named

    warnings = []
    for node in graph.nodes:
        acc_range = op_named(node.op).accumulator_range(node, graph)
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


def describe(node: Node) -> str:
    r = node.params.get("acc_range")
    if r is None:
        return "-"
    return f"{r.bits} bits, {'int32 safe' if r.int32_safe else 'CAN OVERFLOW'}{', f32 exact' if r.f32_exact else ''}"
