"""The `ort` rounding scheme: ONNX Runtime's float32 requantization, emulated with integers.

ORT's CPU kernels (QLinearConv, QLinearMatMul, QGemm, QLinearGlobalAveragePool) compute

    v = f32(f32(acc) * scale)          scale is a float32 computed once per channel
    q = clamp(rne(v), qmin - z, qmax - z) + z

where f32() rounds to float32 (nearest, ties to even) and rne() rounds to an integer, ties to
even. Every step is a rounding of an exact dyadic number, so it can be reproduced with integers:

    scale = mult * 2**-shift            mult < 2**24 (the float32 significand), exact
    A     = round24(|acc|)              f32(acc): |acc| < 2**32 kept to 24 significant bits
    P     = round24(A * mult)           f32(product): A * mult < 2**56 fits in 64 bits
    r     = rne(P * 2**-shift)          the final rounding to an integer
    q     = clamp(sign(acc) * r, lo, hi) + z

Rounding to nearest even is symmetric, so the magnitude is rounded and the sign put back after.
This module is the oracle-side twin of runtime_c/qcc_requant_ort.h; the two must stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNIFICAND_BITS = 24
# With |acc| >= 1, a scale of 2**8 or more saturates every 8-bit output, so any larger scale is
# replaced by exactly 2**8: same result for every accumulator, and the shift stays >= 15.
SATURATING_SCALE_LOG2 = 8
# P < 2**56, so P * 2**-shift < 1/2 whenever shift >= 57: every value rounds to 0.
VANISHING_SHIFT = 57


@dataclass(frozen=True)
class Float32Parts:
    """A positive float32 as significand * 2**exponent with 2**23 <= significand < 2**24."""

    significand: int
    exponent: int


def float32_parts(value) -> Float32Parts:
    """The exact (significand, exponent) of a positive finite float32, normalized even when subnormal."""
    value = np.float32(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{value!r} is not a positive finite float32")
    mantissa, exponent = np.frexp(np.float64(value))  # exact: float64 holds every float32
    return Float32Parts(int(mantissa * 2**SIGNIFICAND_BITS), int(exponent) - SIGNIFICAND_BITS)


def fixed_point_from_float32(scale: float) -> tuple[int, int]:
    """Exact (mult, shift) with scale == mult * 2**-shift, mult < 2**24, 15 <= shift <= 57."""
    scale = np.float32(scale)
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"requantization scale {scale!r} is not a finite non-negative float32")
    if scale >= np.float32(2.0**SATURATING_SCALE_LOG2):
        scale = np.float32(2.0**SATURATING_SCALE_LOG2)
    if scale == 0:
        return 0, VANISHING_SHIFT
    parts = float32_parts(scale)
    if -parts.exponent >= VANISHING_SHIFT:
        return 0, VANISHING_SHIFT
    return parts.significand, -parts.exponent


def fixed_point(ort_scale, real_scale) -> tuple[int, int]:
    """(multiplier, shift) stored for this scheme: the float32 scale ORT multiplies by, exactly."""
    return fixed_point_from_float32(ort_scale)


def bit_length(x) -> np.ndarray:
    """Significant bits of each element of a non-negative integer array (uint64, or int64 >= 0), 0 for 0:
    int.bit_length elementwise, as an int64 array."""
    x = np.asarray(x).astype(np.uint64)
    # float64 keeps 53 bits: a value just below 2**k may round up to 2**k and overstate by one
    # (at most 64: a uint64 just below 2**64 rounds up to 2**64).
    estimate = np.minimum(np.frexp(x.astype(np.float64))[1].astype(np.int64), 64)
    too_long = (estimate > 0) & ((x >> np.maximum(estimate - 1, 0).astype(np.uint64)) == 0)
    return estimate - too_long


def round_shift_right_even(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """rne(x * 2**-shift) for uint64 x and shift >= 0 (elementwise), ties to even."""
    x = x.astype(np.uint64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.uint64), x.shape)
    positive = shift > 0
    s = np.where(positive, shift, 1).astype(np.uint64)
    quotient = x >> s
    remainder = x & ((np.uint64(1) << s) - np.uint64(1))
    half = np.uint64(1) << (s - np.uint64(1))
    up = (remainder > half) | ((remainder == half) & ((quotient & np.uint64(1)) == 1))
    return np.where(positive, quotient + up.astype(np.uint64), x)


def round_to_significand(x: np.ndarray) -> np.ndarray:
    """Each uint64 rounded to 24 significant bits, ties to even: the magnitude of f32(x)."""
    x = x.astype(np.uint64)
    excess = np.maximum(bit_length(x) - SIGNIFICAND_BITS, 0).astype(np.uint64)
    return round_shift_right_even(x, excess) << excess


def requantize(acc, mult, shift, lo, hi) -> np.ndarray:
    """clamp(rne(f32(f32(acc) * scale)), lo, hi) for int32 acc and scale == mult * 2**-shift.

    mult and shift broadcast against acc (per-channel parameters); lo and hi are the clamp
    bounds with the zero point already subtracted. Returns int32 (the caller adds the zero point).
    """
    acc = np.asarray(acc, dtype=np.int64)
    magnitude = round_to_significand(np.abs(acc).astype(np.uint64))
    product = round_to_significand(magnitude * np.asarray(mult, dtype=np.uint64))
    rounded = round_shift_right_even(product, np.asarray(shift, dtype=np.uint64)).astype(np.int64)
    signed = np.where(acc < 0, -rounded, rounded)
    return np.clip(signed, lo, hi).astype(np.int32)


# --- one accumulator, step by step (for `qcc explain`) --------------------------------------


def _round_shift_right_even_int(x: int, shift: int) -> int:
    """rne(x * 2**-shift) for Python ints x >= 0, shift >= 0."""
    if shift <= 0:
        return x
    quotient, remainder, half = x >> shift, x & ((1 << shift) - 1), 1 << (shift - 1)
    return quotient + (remainder > half or (remainder == half and quotient & 1))


def _round_to_significand_int(x: int) -> int:
    excess = max(x.bit_length() - SIGNIFICAND_BITS, 0)
    return _round_shift_right_even_int(x, excess) << excess


def trace(acc, mult, shift, lo, hi, acc_f32_exact: bool = False) -> list[tuple[str, int | float]]:
    """The steps of requantize() for one accumulator as (step, value) pairs, in Python integers;
    the last value is requantize()'s result (before the zero point is added). Values are integers
    except the one marked "exact value", the real number the last rounding starts from."""
    acc, mult, shift = int(acc), int(mult), int(shift)
    magnitude = abs(acc)
    a = _round_to_significand_int(magnitude)
    product = a * mult
    p = _round_to_significand_int(product)
    r = _round_shift_right_even_int(p, shift)
    v = -r if acc < 0 else r
    skipped = " (exact here: |acc| <= 2^24 is proven, so the C skips this step)" if acc_f32_exact else ""
    return [
        ("|acc| (the sign is put back after rounding: rne is symmetric)", magnitude),
        (f"a = f32(|acc|): kept to 24 significant bits, ties to even{skipped}", a),
        (f"a * M0 = a * {mult} (exact, below 2^56: the 64-bit product)", product),
        ("p = f32(a * M0): kept to 24 significant bits, ties to even", p),
        (f"p * 2^-{shift} (exact value before the last rounding)", p / 2.0**shift),  # p has 24 bits: exact in a double
        (f"r = rne(p * 2^-{shift}): round half to even", r),
        ("sign of acc restored", v),
        (f"clamp to [{int(lo)}, {int(hi)}] (the output range minus Z_y)", min(max(v, int(lo)), int(hi))),
    ]


# --- the C's fast path (runtime_c/qcc_requant_ort.h, qcc_requantize_ort_fast) ----------------
#
# With the clamp window inside [-255, 255], requantize() equals, for every int32 acc,
#
#     Y = acc * M                      M = mult * 2**k < 2**31, k = t - shift >= 0, t = 32 + j
#     r = floor((Y + 2**(t-1)) / 2**t)  one rounding, halves up, on the signed product
#
# except where Y's fraction (in units of 2**t) lies within 2**-17 of 1/2, where the exact path is
# taken. Why: an output that is not clamped has |P| = |acc| * mult < 2**(shift+8) (and |acc| <= 2**24,
# see fast_path), so rounding P to 24 significant bits moves it by at most 2**(shift-17) on a grid
# that contains every half-integer of the last rounding: both roundings together give the single
# rounding of P (ties and all) unless P is that close to a half (ties included). A clamped output
# has |P| >= 2**(shift+8) or so, and then both results are at least 256 in magnitude, of one sign.
#
# The C adds B = 2**62 + 2**(t-1) + w (w = 2**(15+j) + 1) to Y in 64 bits: the low word of Y + B is
# below 2w whenever the fraction is that close to 1/2 (and sometimes when it is not, at a rate of
# about 2**(j-16)), and the high word shifted right by j is r + 2**(30-j), never negative.

FAST_CLAMP = 255  # |lo| and |hi| of every 8-bit output (qmin - z, qmax - z)
FAST_SHIFTS = range(1, 15)  # j: the high word's shift


def fast_window(j: int) -> int:
    """w: the low word of Y + B below 2w sends an output to the exact path."""
    return (1 << (15 + j)) + 1


def _fast_channel_ok(mult: int, shift: int, j: int, acc_f32_exact: bool) -> bool:
    k = 32 + j - shift
    if mult <= 0 or k < 0 or (mult << k) >= 2**31:
        return False
    # Without the proof |acc| <= 2**24, f32(acc) may round: harmless only if every |acc| > 2**24
    # clamps, in both computations (2**24 * mult * 2**-shift >= 256).
    return acc_f32_exact or (mult << 24) >= (1 << (shift + 8))


@dataclass(frozen=True)
class FastPath:
    """The fast path's parameters for one layer: the high word's shift j and, per channel, M
    (0: that channel always takes the exact path)."""

    shift: int
    mult: np.ndarray  # int32

    def fields(self, lo: int, hi: int, zero: int) -> dict[str, int]:
        """The per-layer fields of qcc_requant_params (runtime_c/qcc_kernels.h) besides fast_mult,
        for the clamp [lo, hi] and zero point `zero`."""
        j = self.shift
        offset = 1 << (30 - j)  # r' = r + offset, never negative
        # no channel is fast with lo or hi outside [-255, 255]: any in-range bounds will do then
        lo, hi = (min(max(v, -FAST_CLAMP), FAST_CLAMP) for v in (lo, hi))
        return {"fast_shift": j, "fast_bias": (1 << 30) + (1 << (j - 1)), "fast_window": fast_window(j),
                "fast_lo": lo + offset, "fast_hi": hi + offset, "fast_zero": zero - offset}


def fast_path(mult, shift, lo: int, hi: int, acc_f32_exact) -> FastPath:
    """The fast path's parameters for a layer's channels (mult, shift) and clamp [lo, hi]: the j
    that sends the fewest outputs to the exact path, and each channel's M at that j. acc_f32_exact:
    |acc| <= 2**24 is proven, for the layer (a bool) or per channel (one bool each)."""
    mult = [int(m) for m in np.asarray(mult).reshape(-1)]
    shift = [int(s) for s in np.asarray(shift).reshape(-1)]
    exact = [bool(e) for e in np.broadcast_to(np.asarray(acc_f32_exact, bool).reshape(-1), (len(mult),))]
    if not (-FAST_CLAMP <= lo <= FAST_CLAMP and -FAST_CLAMP <= hi <= FAST_CLAMP):
        return FastPath(FAST_SHIFTS[0], np.zeros(len(mult), np.int32))

    def cost(j: int) -> float:  # expected exact-path outputs per output of each channel, summed
        rate = 2 * fast_window(j) / 2**32
        return sum(rate if _fast_channel_ok(m, s, j, e) else 1.0 for m, s, e in zip(mult, shift, exact))

    j = min(FAST_SHIFTS, key=lambda j: (cost(j), j))
    fast = [m << (32 + j - s) if _fast_channel_ok(m, s, j, e) else 0 for m, s, e in zip(mult, shift, exact)]
    return FastPath(j, np.array(fast, np.int32))


def fast_requantize(acc, fast_mult, j: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The C fast path, elementwise: (result, exact) where `exact` marks the outputs it hands to the
    exact path (their result here is meaningless). For tests; the C is the one that runs."""
    acc = np.asarray(acc, np.int64)
    y = (acc * np.asarray(fast_mult, np.int64)).astype(np.uint64)  # |acc * M| < 2**62: exact in int64
    w = fast_window(j)
    biased = y + np.uint64((1 << 62) + (1 << (31 + j)) + w)  # wraps like the C's uint64_t
    exact = (biased & np.uint64(0xFFFFFFFF)) < np.uint64(2 * w)
    r = ((biased >> np.uint64(32 + j)).astype(np.int64)) - (1 << (30 - j))
    return np.clip(r, lo, hi).astype(np.int32), exact
