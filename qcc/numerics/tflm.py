"""The `tflm` rounding scheme: TensorFlow Lite Micro's and gemmlowp's requantization.

M = s_x * s_w / s_y in double; M = q * 2**e with q in [0.5, 1) (frexp); M0 = round(q * 2**31),
halves away from zero; if M0 == 2**31 then M0 = 2**30 and e += 1; if e < -31 then M0 = e = 0.
(tensorflow/lite/kernels/internal/quantization_util.cc, QuantizeMultiplier.) Then

    y = RDBPOT(SRDHM(acc * 2**max(e, 0), M0), max(-e, 0))

SRDHM(a, b) is the high 32 bits of 2*a*b, rounded (nudge 2**30, or 1 - 2**30 for a negative
product, then a division by 2**31 that truncates toward zero), saturating the single overflow
case a = b = INT32_MIN; RDBPOT(x, n) is a right shift by n that rounds halves away from zero
(gemmlowp fixedpoint.h). Two roundings in a row. One deliberate difference: for M >= 1 TFLM
shifts acc left in int32 and can wrap; qcc saturates there instead (such scales saturate every
8-bit output anyway for all but tiny accumulators).
Twin of runtime_c/qcc_requant_tflm.h.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: (M0, e) with real ~= M0 * 2**(e - 31)."""
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    m0 = int(math.floor(abs(q) * 2**31 + 0.5))  # std::round: halves away from zero (q > 0 here)
    if m0 == 2**31:
        m0 //= 2
        e += 1
    if e < -31:
        return 0, 0
    return m0, e


def fixed_point(ort_scale, real_scale) -> tuple[int, int]:
    """(multiplier, shift) stored for this scheme: M0 and the exponent e (positive: left shift)."""
    m0, e = quantize_multiplier(float(real_scale))
    return m0, max(min(e, 31), -31)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    # division by 2**31 truncating toward zero
    quotient = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where(overflow, INT32_MAX, quotient)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc, mult, shift, lo, hi) -> np.ndarray:
    acc = np.asarray(acc, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    shifted = np.clip(acc << left, INT32_MIN, INT32_MAX)  # saturate where TFLM would wrap
    y = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, mult), np.maximum(-shift, 0))
    return np.clip(y, lo, hi).astype(np.int32)


# --- TFLM's integer ADD and MUL kernels (QLinearAdd / QLinearMul in this scheme) -------------


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplierSmallerThanOneExp: QuantizeMultiplier for 0 < real < 1, whose
    exponent e (the `left_shift`) must be <= 0; ValueError where TFLM's checks would fail."""
    if not 0 < real < 1:
        raise ValueError(f"multiplier {real!r} is not in (0, 1)")
    m0, e = quantize_multiplier(real)
    if e > 0:
        raise ValueError(f"multiplier {real!r} rounds to 1")
    return m0, e


def multiply_by_quantized_multiplier_smaller_than_one(x, m0: int, e: int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplierSmallerThanOneExp (e <= 0): RDBPOT(SRDHM(x, M0), -e)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m0), -e)


# --- one accumulator, step by step (for `qcc explain`) --------------------------------------


def trace(acc, mult, shift, lo, hi) -> list[tuple[str, int | float]]:
    """The steps of requantize() for one accumulator as (step, value) pairs, in Python integers;
    the last value is requantize()'s result (before the zero point is added). Values marked
    "real value" are the unrounded quotient a step rounds (as a double, for reading)."""
    acc, m0, e = int(acc), int(mult), int(shift)
    left, right = max(e, 0), max(-e, 0)
    steps: list[tuple[str, int | float]] = []
    x = acc
    if left:
        x = min(max(acc * 2**left, INT32_MIN), INT32_MAX)
        steps.append((f"x = acc * 2^{left}, saturated to int32 (M >= 1)", x))
    ab = x * m0
    steps.append((f"x * M0 = x * {m0} (the 64-bit product)", ab))
    if x == INT32_MIN and m0 == 2**31:
        high = INT32_MAX
        steps.append(("SRDHM saturates (x = M0 = INT32_MIN)", high))
    else:
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        total = ab + nudge
        steps.append(("x * M0 / 2^31 (real value before the first rounding)", ab / 2.0**31))
        steps.append((f"+ nudge {nudge} (2^30, or 1 - 2^30 below zero)", total))
        high = total >> 31 if total >= 0 else -((-total) >> 31)
        steps.append(("SRDHM = (x * M0 + nudge) / 2^31 truncated toward zero: first rounding", high))
    y = high
    if right:
        mask = (1 << right) - 1
        remainder, threshold = high & mask, (mask >> 1) + (high < 0)
        y = (high >> right) + (remainder > threshold)
        steps.append((f"SRDHM / 2^{right} (real value before the second rounding)", high / 2.0**right))
        steps.append((f"RDBPOT: shift right by {right}, halves away from zero: second rounding", y))
    steps.append((f"clamp to [{int(lo)}, {int(hi)}] (the output range minus Z_y)", min(max(y, int(lo)), int(hi))))
    return steps
