"""TFLM's int8 elementwise kernels as 256-entry tables: for each input code, the output code the
pinned TFLite Micro computes, emulated step by step on Python integers at compile time.

Each function returns the output codes' bytes, uint8 of shape (256,) indexed by the input code's byte
(qcc's Lookup table layout), or of shape (n, 256) for PRELU's n alpha codes. Each states its formula
and the TFLM source it follows (tensorflow/lite/micro/kernels/ for the preparation, and
tensorflow/lite/kernels/internal/reference/ for the kernel); tests/test_tflite_activations.py holds
every entry equal to the wheel's on all 256 codes over many scales and zero points.

Notation: x = q - z_x (the input code minus its zero point); MBQM(v, M0, e) is TFLM's
MultiplyByQuantizedMultiplier, RDBPOT and SRDHM gemmlowp's (qcc/numerics/tflm.py); QM(r) is
QuantizeMultiplier(r) -> (M0, e); f32(...) is a float32 operation and every clamp is to
[-128, 127]. Where TFLM's arithmetic is undefined in C++ (a shift by 32 or more, a float too large
for int32), ValueError says so: the op refuses such scales rather than guess what a build does.
"""

from __future__ import annotations

import math

import numpy as np

from qcc.numerics import tflm
from qcc.numerics.tflm import multiply_by_quantized_multiplier as mbqm
from qcc.numerics.tflm import wrap_int32

INT8_MIN, INT8_MAX = -128, 127
CODES = [b if b < 128 else b - 256 for b in range(256)]  # the int8 code whose byte is b


def _bytes(codes) -> np.ndarray:
    return (np.asarray(codes, np.int64) & 0xFF).astype(np.uint8)


def _clamp8(v: int) -> int:
    return min(max(v, INT8_MIN), INT8_MAX)


# --- LOGISTIC and TANH: gemmlowp's fixed-point functions on a Q4.27 input ----------------------

INPUT_INTEGER_BITS = 4


def _q4_rescaling(s_x) -> tuple[int, int, int]:
    """(M0, e, radius) of micro/kernels/logistic_common.cc and tanh.cc: frexp(f64(s_x) * 2^27) = q * 2^e,
    M0 = round(q * 2^31) (no QuantizeMultiplier clean-up), radius = floor(15 * 2^27 / 2^e)
    (CalculateInputRadius). A negative e (s_x below 2^-28) makes TFLM shift by a negative amount."""
    real = float(np.float32(s_x)) * float(1 << (31 - INPUT_INTEGER_BITS))
    q, e = math.frexp(real)
    if e < 0:
        raise ValueError(f"the input scale {float(s_x):g} is below 2^-28, where TFLM's input radius shifts by a "
                         f"negative amount ({e}), which is undefined")
    m0 = int(math.floor(q * 2**31 + 0.5))
    radius = math.floor(((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) / (1 << e))
    return m0, e, radius


def _q4_table(s_x, z_x: int, inside) -> np.ndarray:
    """The table of LOGISTIC and TANH: for x = q - z_x, -128 at or below -radius, 127 at or above radius,
    else inside(x rescaled to Q4.27 by MBQM(x, M0, e))."""
    m0, e, radius = _q4_rescaling(s_x)

    def code(q: int) -> int:
        x = q - z_x
        if x <= -radius:
            return INT8_MIN
        if x >= radius:
            return INT8_MAX
        return _clamp8(inside(mbqm(x, m0, e)))

    return _bytes([code(q) for q in CODES])


def logistic_table(s_x, z_x: int) -> np.ndarray:
    """int8 LOGISTIC (reference/integer_ops/logistic.h, prepared in micro/kernels/logistic_common.cc):
    x <= -radius -> -128; x >= radius -> 127; else
    y = clamp(RDBPOT(gemmlowp::logistic(MBQM(x, M0, e) as Q4.27), 23) - 128).
    The output scale is not read: the codes are those of scale 1/256, zero point -128 (TFLM checks
    only the zero point)."""
    return _q4_table(s_x, z_x, lambda v: tflm.rdbpot(tflm.logistic(v, INPUT_INTEGER_BITS), 31 - 8) - 128)


def tanh_table(s_x, z_x: int) -> np.ndarray:
    """int8 TANH (reference/integer_ops/tanh.h, prepared in micro/kernels/tanh.cc): x <= -radius -> -128;
    x >= radius -> 127; else y = clamp(RDBPOT(gemmlowp::tanh(MBQM(x, M0, e) as Q4.27), 24)).
    No output zero point is added and the output's quantization is never read: the codes are those of
    scale 1/128, zero point 0, whatever the model declares."""
    return _q4_table(s_x, z_x, lambda v: tflm.rdbpot(tflm.tanh(v, INPUT_INTEGER_BITS), 31 - 7))


# --- HARD_SWISH: int16 fixed point (reference/hard_swish.h) --------------------------------------

def _wrap16(v: int) -> int:
    return ((v + 2**15) & 0xFFFF) - 2**15


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul<int16_t>: (a * b + nudge) / 2^15 truncated toward zero,
    nudge 2^14 or 1 - 2^14 below zero; -32768 * -32768 saturates to 32767."""
    if a == b == -(2**15):
        return 2**15 - 1
    total = a * b + ((1 << 14) if a * b >= 0 else 1 - (1 << 14))
    return _wrap16(total >> 15 if total >= 0 else -((-total) >> 15))


def _sdhm16(a: int, b: int) -> int:
    """hard_swish.h's SaturatingDoublingHighMul: a * b / 2^15 truncated toward zero (no nudge)."""
    if a == b == -(2**15):
        return 2**15 - 1
    ab = a * b
    return _wrap16(ab >> 15 if ab >= 0 else -((-ab) >> 15))


def _rdbpot16(x: int, exponent: int) -> int:
    """gemmlowp's RoundingDivideByPOT<int16_t>, whose mask (1 << exponent) - 1 is truncated to int16:
    from exponent 16 on it is -1, and the rounding term follows that mask, as TFLM's build computes it."""
    mask = _wrap16((1 << exponent) - 1)
    remainder = _wrap16(x & mask)
    threshold = _wrap16((mask >> 1) + (x < 0))
    return _wrap16((x >> exponent) + (remainder > threshold))


def _saturating_left_shift16(v: int, amount: int) -> int:
    return min(max(v * (1 << amount), -(2**15)), 2**15 - 1)


def _int16_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier, then DownScaleInt32ToInt16Multiplier (common.h): (M0 + 2^15) >> 16, or 32767
    from M0 >= INT32_MAX - 2^15 on."""
    m0, e = tflm.quantize_multiplier(real)
    return (2**15 - 1 if m0 >= tflm.INT32_MAX - 2**15 else (m0 + 2**15) >> 16), e


def hard_swish_multipliers(s_x, s_y) -> tuple[int, int, int, int]:
    """(output M, output e, reluish M, reluish e) as micro/kernels/hard_swish_common.cc prepares them, in
    float32: hires = f32(s_x / 128); output = QM(f32(hires / s_y)), reluish = QM(f32(hires / f32(3 / 32768))),
    each M0 down-scaled to int16. ValueError where TFLM refuses (output e > 0) or shifts by 32 or more."""
    hires = np.float32(1.0 / 128.0) * np.float32(s_x)
    out_m, out_e = _int16_multiplier(float(hires / np.float32(s_y)))
    if out_e > 0:
        raise ValueError(f"s_x / 128 / s_y = {float(hires / np.float32(s_y)):g} must stay below 1: TFLM refuses a "
                         f"positive output exponent ({out_e})")
    relu_m, relu_e = _int16_multiplier(float(hires / (np.float32(3.0) / np.float32(32768.0))))
    if relu_e > 31:
        raise ValueError(f"the input scale {float(s_x):g} makes TFLM shift left by {relu_e - 1}, which is undefined")
    return out_m, out_e, relu_m, relu_e


def hard_swish_table(s_x, z_x: int, s_y, z_y: int) -> np.ndarray:
    """int8 HARD_SWISH (reference/hard_swish.h), in int16: h = x * 2^7; p = SRDHM16(h, output M);
    r = h, shifted left saturating by reluish e - 1, SRDHM16 by reluish M, shifted left by 1 more
    (saturating) or RDBPOT16 by -e; r = (r + 2^15) >> 1 (from [-1, 1] to [0, 1]);
    y = clamp(RDBPOT16(SDHM16(r, p), -output e) + z_y), SDHM16 truncating instead of rounding."""
    out_m, out_e, relu_m, relu_e = hard_swish_multipliers(s_x, s_y)

    def code(q: int) -> int:
        hires = _wrap16(_wrap16(q - z_x) * (1 << 7))
        preshift = _srdhm16(hires, out_m)
        reluish = hires
        if relu_e > 0:
            reluish = _saturating_left_shift16(reluish, relu_e - 1)
        reluish = _srdhm16(reluish, relu_m)
        if relu_e > 0:
            reluish = _saturating_left_shift16(reluish, 1)
        if relu_e < 0:
            reluish = _rdbpot16(reluish, -relu_e)
        reluish = _wrap16((reluish + (1 << 15)) >> 1)
        out = _rdbpot16(_sdhm16(reluish, preshift), -out_e)
        return _clamp8(_wrap16(out + z_y))

    return _bytes([code(q) for q in CODES])


# --- requantizing kernels: MultiplyByQuantizedMultiplier on the code ----------------------------

def checked_multiplier(real: float, what: str) -> tuple[int, int]:
    if not math.isfinite(real):
        raise ValueError(f"the multiplier {what} = {real} is not finite")
    m0, e = tflm.quantize_multiplier(real)
    if e > 31:
        raise ValueError(f"the multiplier {what} = {real:g} is 2^31 or more: TFLM's left shift by {e} is undefined")
    return m0, e


def _f32_ratio(a, b) -> float:
    """f64(f32(a / b)): a float32 division, as TFLM's kernels divide two float scales."""
    return float(np.float32(a) / np.float32(b))


def leaky_relu_table(s_x, z_x: int, s_y, z_y: int, alpha: float) -> np.ndarray:
    """int8 LEAKY_RELU (reference/leaky_relu.h, prepared in micro/kernels/leaky_relu_common.cc):
    identity = QM(f32(s_x / s_y)), alpha = QM(f32(f32(s_x * alpha) / s_y)), a negative alpha giving a
    negative M0 whose magnitude is used and whose sign is applied after; y = clamp(z_y + MBQM(x, identity))
    for x >= 0 and clamp(z_y +- MBQM(x, |alpha M0|, alpha e)) below, in wrapping int32."""
    ident_m, ident_e = checked_multiplier(_f32_ratio(s_x, s_y), "s_x / s_y")
    alpha_real = float((np.float32(s_x) * np.float32(alpha)) / np.float32(s_y))
    alpha_m, alpha_e = checked_multiplier(alpha_real, "s_x * alpha / s_y")
    negative, safe = alpha_m < 0, wrap_int32(-alpha_m) if alpha_m < 0 else alpha_m

    def code(q: int) -> int:
        x = q - z_x
        if x >= 0:
            return _clamp8(wrap_int32(z_y + mbqm(x, ident_m, ident_e)))
        v = mbqm(x, safe, alpha_e)
        return _clamp8(wrap_int32(z_y + (wrap_int32(-v) if negative else v)))

    return _bytes([code(q) for q in CODES])


def prelu_tables(s_x, z_x: int, s_a, z_a: int, s_y, z_y: int, alpha_codes) -> np.ndarray:
    """int8 PRELU (reference/prelu.h BroadcastPrelu4DSlow, prepared in micro/kernels/prelu_common.cc), one
    table per alpha code a: M1 = QM(s_x / s_y), M2 = QM(s_x * s_a / s_y), both in double;
    y = clamp(MBQM(x, M1) + z_y) for x >= 0, clamp(MBQM(x * (a - z_a), M2) + z_y) below."""
    m1, e1 = checked_multiplier(float(np.float32(s_x)) / float(np.float32(s_y)), "s_x / s_y")
    m2, e2 = checked_multiplier(float(np.float32(s_x)) * float(np.float32(s_a)) / float(np.float32(s_y)),
                                 "s_x * s_alpha / s_y")
    positive = {q: _clamp8(wrap_int32(mbqm(q - z_x, m1, e1) + z_y)) for q in CODES if q - z_x >= 0}
    tables = []
    for a in alpha_codes:
        codes = [positive[q] if q in positive else _clamp8(wrap_int32(mbqm((q - z_x) * (int(a) - z_a), m2, e2) + z_y))
                 for q in CODES]
        tables.append(_bytes(codes))
    return np.stack(tables) if tables else np.zeros((0, 256), np.uint8)


def relu_table(s_x, z_x: int, s_y, z_y: int) -> np.ndarray:
    """int8 RELU (micro/kernels/activations.h ReluQuantized, prepared in activations_common.cc):
    M = QM(f32(s_x / s_y)); y = clamp(z_y + MBQM(x, M), max(-128, z_y), 127): a requantization, then the
    clamp at real 0."""
    m0, e = checked_multiplier(_f32_ratio(s_x, s_y), "s_x / s_y")
    return _bytes([min(max(wrap_int32(z_y + mbqm(q - z_x, m0, e)), max(INT8_MIN, z_y)), INT8_MAX) for q in CODES])


def relu6_table(s_x, z_x: int) -> np.ndarray:
    """int8 RELU6 (micro/kernels/activations.h Relu6Quantized, prepared in activations_common.cc): the input
    codes clamped to [z_x, six], six = clamp(round(f32(6 / s_x)) + z_x), halves away from zero. No
    requantization: TFLM never reads the output's scale or zero point."""
    ratio = float(np.float32(6.0) / np.float32(s_x))
    if ratio >= 2.0**31:
        raise ValueError(f"6 / s_x = {ratio:g} does not fit TFLM's int32 conversion (undefined there)")
    six = _clamp8(int(math.floor(ratio + 0.5)) + z_x)
    return _bytes([six if q > six else z_x if q < z_x else q for q in CODES])


def requantize_table(s_x, z_x: int, s_y, z_y: int, x_dtype: str = "int8", y_dtype: str = "int8") -> np.ndarray:
    """QUANTIZE between 8-bit types: int8 -> int8, a model's uint8 input to int8, int8 to a model's uint8 output
    (reference/requantize.h, prepared in micro/kernels/quantize_common.cc): M = QM(f64(s_x) / f64(s_y));
    y = clamp(MBQM(x - z_x, M) + z_y) to y's type. Its fast path between uint8 and int8 at one scale with the zero
    points 128 apart, x ^ 0x80, is this formula's value there."""
    m0, e = checked_multiplier(float(np.float32(s_x)) / float(np.float32(s_y)), "s_x / s_y")
    codes = CODES if x_dtype == "int8" else range(256)  # the code whose byte is b
    lo, hi = (INT8_MIN, INT8_MAX) if y_dtype == "int8" else (0, 255)
    return _bytes([min(max(wrap_int32(mbqm(q - z_x, m0, e) + z_y), lo), hi) for q in codes])
