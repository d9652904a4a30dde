"""ONNX Runtime's float32 average of a pooling window, emulated with integers.

ORT's QLinearAveragePool (outside its integer global-pool path) computes, in float32,

    xf  = f32(s_x * (x - z_x))                    one of 256 values per op
    sum = f32(... f32(f32(xf0 + xf1) + xf2) ...)  sequentially over the window
    y   = f32(sum / f32(count))
    v   = f32(f32(y / s_y) + f32(z_y))
    q   = clamp(nearbyint(v) as int32, qmin, qmax)

where a float-to-int32 conversion out of range gives INT32_MIN (x86), so v >= 2^31 yields qmin.
Every step is a rounding of an exact rational number, so integers reproduce it:

- every xf is a multiple of 2^E, E the exponent of the last significand bit of s_x
  (s_x = m * 2^E, m an integer < 2^24), so xf is held as the integer a = RN24((x - z_x) * m);
- every partial sum is then a multiple of 2^E too: an exact integer addition followed by a
  rounding to 24 significant bits, ties to even, is float32 addition (subnormals included,
  since 2^E >= 2^-149 is never finer than float32's own grid);
- the two divisions are long divisions of 24-bit significands with a guard bit and a sticky
  bit from the remainder;
- the last addition and rounding to an integer are done in fixed point.

The emulation assumes scales that keep every intermediate in float32's normal range where
that matters (see `check_scales`); the op refuses the others. This module is the twin of the
helpers in runtime_c/qcc_average_pool.c: the two must stay bit-identical.
"""

from __future__ import annotations

import numpy as np

from qcc.numerics.ort_float32 import (SIGNIFICAND_BITS, bit_length, float32_parts, round_shift_right_even,
                                      round_to_significand)

INT32_LIMIT = 2**31
# Scales for which every float32 step of the average stays exactly emulated (module docstring).
MIN_OUTPUT_SCALE = 2.0**-120
MAX_INPUT_SCALE = 2.0**96
MAX_COUNT = 2**20


def input_unit_exponent(s_x) -> int:
    """E: every xf = f32(s_x * d) is an integer multiple of 2**E (the weight of s_x's last bit)."""
    return max(float32_parts(s_x).exponent, -149)


def dequantize_table(s_x, z_x: int, dtype: str) -> np.ndarray:
    """int64[256]: f32(s_x * (code - z_x)) / 2**E for each code, indexed by the code's byte."""
    exponent = input_unit_exponent(s_x)
    m = int(np.float64(np.float32(s_x)) * 2.0**-exponent)  # exact: s_x = m * 2**E
    codes = np.arange(256).astype(np.uint8).view(dtype).astype(np.int64)
    d = codes - z_x
    magnitude = round_to_significand((np.abs(d) * m).astype(np.uint64)).astype(np.int64)
    return np.where(d < 0, -magnitude, magnitude)


def round24(s) -> np.ndarray:
    """RN24 of signed int64 values: float32 rounding of an exact integer sum, ties to even."""
    s = np.asarray(s, dtype=np.int64)
    magnitude = round_to_significand(np.abs(s).astype(np.uint64)).astype(np.int64)
    return np.where(s < 0, -magnitude, magnitude)


def sequential_sum(terms: np.ndarray) -> np.ndarray:
    """The float32 sum of each row of `terms` (int64 multiples of 2**E), added left to right."""
    terms = np.asarray(terms, dtype=np.int64)
    total = np.zeros(terms.shape[:-1], dtype=np.int64)
    for k in range(terms.shape[-1]):
        total = round24(total + terms[..., k])
    return total


def normalize(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sig, shift) with u = sig * 2**shift and 2**23 <= sig < 2**24, for u > 0 with at most
    24 significant bits (sums after RN24, counts below 2**24); 0 maps to (2**23, 0)."""
    u = np.asarray(u, dtype=np.int64)
    shift = np.where(u > 0, bit_length(u) - SIGNIFICAND_BITS, 0)
    sig = np.where(shift >= 0, u >> np.maximum(shift, 0), u << np.maximum(-shift, 0))
    return np.where(u > 0, sig, 1 << 23), shift


def divide24(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sig, e) with f32(a / b) = sig * 2**e, 2**23 <= sig < 2**24, for 2**23 <= a, b < 2**24."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ge = a >= b
    a2 = np.where(ge, a, 2 * a)  # b <= a2 < 2b
    quotient, remainder = np.divmod(a2 << SIGNIFICAND_BITS, b)  # 2**24 <= quotient < 2**25
    sig = quotient >> 1
    guard = (quotient & 1) == 1
    up = guard & ((remainder != 0) | ((sig & 1) == 1))
    sig = sig + up
    exponent = np.where(ge, -SIGNIFICAND_BITS, -SIGNIFICAND_BITS - 1) + 1
    carry = sig == 1 << SIGNIFICAND_BITS
    return np.where(carry, sig >> 1, sig), exponent + carry


def finish(total: np.ndarray, count: np.ndarray, input_exponent: int, s_y, z_y: int, qmin: int, qmax: int) -> np.ndarray:
    """ORT's output code for window sums `total` (multiples of 2**input_exponent) over `count` elements:
    clamp(nearbyint(f32(f32(f32(total / count) / s_y) + z_y)), qmin, qmax), with v >= 2**31 -> qmin."""
    total = np.asarray(total, dtype=np.int64)
    total, count = np.broadcast_arrays(total, np.asarray(count, dtype=np.int64))
    out_scale = float32_parts(s_y)
    negative = total < 0
    sum_sig, sum_shift = normalize(np.abs(total))
    count_sig, count_shift = normalize(count)
    y_sig, y_exp = divide24(sum_sig, count_sig)
    q_sig, q_exp = divide24(y_sig, out_scale.significand)
    eq = input_exponent + sum_shift - count_shift + y_exp - out_scale.exponent + q_exp  # Q = q_sig * 2**eq
    signed_q = np.where(negative, -q_sig, q_sig)

    # eq >= 0: Q is an integer (eq > 32 means |Q| >= 2**55: v is out of int32 range either way).
    big = np.clip(eq, 0, 32)
    v_int = round24(signed_q * (np.int64(1) << big) + z_y)
    code_int = np.where((eq > 32) | (v_int >= INT32_LIMIT), qmin, np.clip(v_int, qmin, qmax))

    # eq < 0: T = Q + z_y in units of 2**eq; below 2**-25 units |Q| < 1/4 and the answer is z_y.
    frac = np.clip(-eq, 1, 25)
    t = round24(signed_q + z_y * (np.int64(1) << frac))
    rounded = round_shift_right_even(np.abs(t).astype(np.uint64), frac.astype(np.uint64)).astype(np.int64)
    code_frac = np.where(-eq >= 26, z_y, np.clip(np.where(t < 0, -rounded, rounded), qmin, qmax))

    code = np.where(eq >= 0, code_int, code_frac)
    return np.where(total == 0, z_y, code)


def check_scales(s_x, s_y, count: int) -> str | None:
    """Why the emulation cannot be trusted for these parameters, or None."""
    if np.float32(s_x) > MAX_INPUT_SCALE:
        return f"the input scale {float(s_x):g} exceeds 2^96"
    if np.float32(s_y) < MIN_OUTPUT_SCALE:
        return f"the output scale {float(s_y):g} is below 2^-120"
    if count > MAX_COUNT:
        return f"a window of {count} elements exceeds 2^20"
    return None
