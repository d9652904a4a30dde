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
    """TFLM's QuantizeMultiplier: (M0, e) with real ~= M0 * 2**(e - 31). A negative real (LEAKY_RELU's
    negative alpha) gives a negative M0, as TFLM's: frexp keeps the sign in q, and only a positive
    M0 of 2**31 is halved."""
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    m0 = int(math.floor(abs(q) * 2**31 + 0.5))  # std::round: halves away from zero
    if real > 0 and m0 == 2**31:
        m0 //= 2
        e += 1
    if e < -31:
        return 0, 0
    return (m0 if real > 0 else -m0), e


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


# --- TFLM's 16x8 kernels: an int64 accumulator, requantized through a 16-bit multiplier ---------


WIDE_ACC_LIMIT = 2**47  # MultiplyByQuantizedMultiplier(int64_t x, ...) requires -2^47 <= x < 2^47


def reduced_multiplier(m0: int, e: int) -> tuple[int, int]:
    """TFLM's MultiplyByQuantizedMultiplier(int64_t x, M0, e) (kernels/internal/common.cc) in two
    constants: the reduced multiplier min((M0 + 2^15) >> 16, 0x7FFF) (0x7FFF from M0 >= 0x7FFF0000 on)
    and the right shift 15 - e. ValueError for e > 7, outside TFLM's asserted range (-31..7: the
    shift would be 8 or less, and at 16 or more undefined)."""
    if e > 7:
        raise ValueError(f"the multiplier is 2^{e - 1} or more; TFLM's 64-bit requantization takes multipliers "
                         "below 2^7")
    reduced = (m0 + (1 << 15)) >> 16 if m0 < 0x7FFF0000 else 0x7FFF
    return reduced, 15 - e


def requantize_wide(acc, reduced, right_shift) -> np.ndarray:
    """(acc * reduced + 2^(right_shift - 1)) >> right_shift in int64, the shift flooring: TFLM's int64
    MultiplyByQuantizedMultiplier given reduced_multiplier()'s constants (per element or per channel by
    broadcasting). acc must be within +-2^47 (the importer proves it), so the product fits in int64."""
    acc = np.asarray(acc, np.int64)
    right_shift = np.asarray(right_shift, np.int64)
    return (acc * np.asarray(reduced, np.int64) + (np.int64(1) << (right_shift - 1))) >> right_shift


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


# --- TFLM's float32 QUANTIZE (reference_ops::AffineQuantize, reference/quantize.h) ----------


def round_half_away(v) -> np.ndarray:
    """std::round on float32 values (TfLiteRound): the nearest integer, halves away from zero. Not
    floor(|v| + 0.5), which rounds 0.49999997 up (the sum rounds to 1.0 in float32)."""
    v = np.asarray(v, np.float32)
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= np.float32(0.5), np.sign(v), np.float32(0))  # v - t is exact


def affine_quantize(x, scale, zero: int, qmin: int, qmax: int) -> np.ndarray:
    """TFLM's QUANTIZE from float32: clamp(round_half_away(f32(x / f32(scale))) + zero, qmin, qmax), as int64.
    Where TFLM's int32 cast of the rounded quotient is undefined in C++ (|x / scale| at 2^31 or
    beyond, infinities, NaN) the wheel on x86 returns INT32_MIN, which with the zero point added
    gives qmin or (wrapping) qmax; an Arm build saturates. qcc saturates monotonically (huge
    positive values and +inf to qmax, huge negative and -inf to qmin) and gives NaN the zero point
    (what Arm's conversion, NaN -> 0, gives): clamping the quotient to [qmin - zero, qmax - zero]
    before rounding is the same as clamping after, since both ends are integers."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = np.asarray(x, np.float32) / np.float32(scale)
    v = np.where(np.isnan(v), np.float32(0), np.clip(v, np.float32(qmin - zero), np.float32(qmax - zero)))
    return round_half_away(v).astype(np.int64) + zero


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


# --- gemmlowp's fixed-point functions (fixedpoint/fixedpoint.h), on Python integers ----------
# TFLM's SOFTMAX, LOGISTIC and TANH for 8-bit types compute through these. Raw values are int32
# fixed-point numbers with a stated count of integer bits; + and - are plain int32 additions.


def srdhm(a: int, b: int) -> int:
    """saturating_rounding_doubling_high_mul on two Python integers (int32 values)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    total = a * b + ((1 << 30) if a * b >= 0 else 1 - (1 << 30))
    return total >> 31 if total >= 0 else -((-total) >> 31)


def rdbpot(x: int, exponent: int) -> int:
    """rounding_divide_by_pot on a Python integer."""
    mask = (1 << exponent) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def saturating_rounding_multiply_by_pot(x: int, exponent: int) -> int:
    """gemmlowp's SaturatingRoundingMultiplyByPOT: a left shift saturating to int32 above
    2^(31 - exponent) - 1 in magnitude, or a rounding right shift for a negative exponent."""
    if exponent <= 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: a Taylor expansion around -1/8."""
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8), 1/3
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(srdhm(x4_over_4 + x3, one_third) + x2, -1)
    return constant_term + srdhm(constant_term, x + poly)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
               (4, 242))


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """exp(a) for a <= 0 given with `integer_bits` integer bits, as Q0.31 (gemmlowp's exp_on_negative_values)."""
    fractional_bits = 31 - integer_bits
    quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_quarter = (a & (quarter - 1)) - quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_quarter, integer_bits))
    remainder = a_mod_quarter_minus_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent and remainder & (1 << (fractional_bits + exponent)):
            result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    return INT32_MAX if a == 0 else result


def _newton_one_over_one_plus_x(a: int) -> int:
    """1 / ((1 + a) / 2) in Q2.29 for a in Q0.31: d = RoundingHalfSum(a, 1) (the sum +- 1, halved
    truncating toward zero), x = 48/17 - 32/17 d, then three Newton-Raphson steps x += x (1 - d x)."""
    total = a + INT32_MAX
    half_denominator = (total + 1) // 2 if total >= 0 else -((1 - total) // 2)
    x = 1515870810 + srdhm(half_denominator, -1010580540)  # Q2.29
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_denominator, x)
        x = x + saturating_rounding_multiply_by_pot(srdhm(x, one_minus), 2)
    return x


def one_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """1 / (1 + a) for a in Q0.31 in [0, 1), as Q0.31: Newton-Raphson from 48/17 - 32/17 d, three steps."""
    return saturating_rounding_multiply_by_pot(_newton_one_over_one_plus_x(a), 1)  # x / 2: Q1.30 read as Q0.31


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """(1 - a) / (1 + a) for a in Q0.31 in [0, 1), as Q0.31: the same Newton-Raphson, then
    Rescale<0>(x - 1), a saturating multiplication of the Q2.29 raw value by 4."""
    return saturating_rounding_multiply_by_pot(_newton_one_over_one_plus_x(a) - (1 << 29), 2)


def logistic(a: int, integer_bits: int) -> int:
    """gemmlowp's logistic(a) for a raw int32 with `integer_bits` integer bits, as Q0.31:
    1 / (1 + exp(-|a|)) for a > 0 (exp_on_negative_values, then one_over_one_plus_x), its
    complement INT32_MAX - that for a < 0, and exactly 1/2 (2^30) for a = 0."""
    if a == 0:
        return 1 << 30
    positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs(a), integer_bits))
    return positive if a > 0 else INT32_MAX - positive


def tanh(a: int, integer_bits: int) -> int:
    """gemmlowp's tanh(a) for a raw int32 with `integer_bits` integer bits, as Q0.31:
    (1 - exp(-2|a|)) / (1 + exp(-2|a|)) with the sign of a, 0 for a = 0. The doubling is
    ExactMulByPot<1>: the same raw value read with one more integer bit."""
    if a == 0:
        return 0
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs(a), integer_bits + 1))
    return -t if a < 0 else t


def wrap_int32(x: int) -> int:
    """x as C's int32 arithmetic leaves it where it overflows: modulo 2^32, two's complement."""
    return ((int(x) + 2**31) & 0xFFFFFFFF) - 2**31


def multiply_by_quantized_multiplier(x: int, m0: int, e: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier(int32 x, M0, e), double rounding (the wheel's build, not
    TFLITE_SINGLE_ROUNDING), on Python integers: RDBPOT(SRDHM(x * 2^max(e, 0), M0), max(-e, 0)), where
    the left shift is TFLM's int32 `x * (1 << e)` and wraps as it does (unlike requantize(), which
    saturates). ValueError for e > 31, where TFLM's shift is undefined behaviour."""
    if e > 31:
        raise ValueError(f"left shift {e}: TFLM's x * (1 << {e}) is undefined")
    left, right = max(e, 0), max(-e, 0)
    return rdbpot(srdhm(wrap_int32(x * wrap_int32(1 << left)), m0), right)


def reciprocal(x: int, integer_digits: int) -> tuple[int, int]:
    """TFLM's GetReciprocal: (1 / x as Q0.31 of x scaled into [1, 2), num_bits_over_unit) for x > 0
    with `integer_digits` integer bits."""
    headroom_plus_one = 32 - int(x).bit_length()  # CountLeadingZeros of the uint32
    shifted_sum_minus_one = ((x << headroom_plus_one) - (1 << 31)) & 0xFFFFFFFF
    if shifted_sum_minus_one >= 1 << 31:
        shifted_sum_minus_one -= 1 << 32
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), integer_digits - headroom_plus_one


def softmax_scaling(s_x: float, beta: float, integer_bits: int = 5) -> tuple[int, int, int]:
    """TFLM's int8 SOFTMAX prepare (softmax_common.cc): (M0, left_shift) of PreprocessSoftmaxScaling,
    QuantizeMultiplier of min(beta * s_x * 2^(31 - integer_bits), 2^31 - 1) in double, and diff_min =
    -CalculateInputRadius(integer_bits, left_shift) = -floor((2^integer_bits - 1) * 2^(31 - integer_bits)
    / 2^left_shift). TFLM needs left_shift >= 0 (beta * s_x at least 2^-26)."""
    real = min(float(beta) * float(s_x) * 2.0 ** (31 - integer_bits), 2.0**31 - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    diff_min = -math.floor(((1 << integer_bits) - 1) * 2.0 ** (31 - integer_bits) / 2.0**left_shift)
    return multiplier, left_shift, diff_min
