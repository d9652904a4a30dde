"""TFLM's int16 lookup tables with interpolation, and the int16 SOFTMAX built on them (16x8 models).

TFLM's LUTPopulateInt16 (kernels/internal/common.h), run at Prepare in float32, samples a function at 512
steps over the input range and biases each sample by half the error its linear interpolation makes at the
step's midpoint; LUTLookup interpolates between two entries with 7 fractional bits. qcc computes the same
tables at compile time: every operation is one float32 operation in the same order (numpy float32, which is
IEEE-754 exact for + - * /), std::round is halves away from zero, and expf is exp correctly rounded to float32
(f32 of the double exp; glibc's expf, which the pinned wheel calls, rounds these arguments the same way: the
tests compare every int16 input through TFLM).

SOFTMAX int16 (reference_ops::SoftmaxInt16; prepared in micro/kernels/softmax_common.cc): per row,
    d = x - max(row);  e = LUTLookup(clamp(MBQM(d, M0, e_x) + 32767), exp_lut)     (exp on [-10, 0])
    sum = sum(e) (int32); h = CLZ(sum); s = ((sum << (h - 1)) + 2^13) >> 14
    r = LUTLookup(clamp(s - 98304), one_over_one_plus_x_lut)                       (1 / (1 + x) on [0, 1])
    y = clamp((e * r + 2^(30 - h)) >> (31 - h), 0, 32767)
with (M0, e_x) = QuantizeMultiplier(s_x * beta / (10 / 65535)) in double, and MBQM TFLM's int32
MultiplyByQuantizedMultiplier (qcc/numerics/tflm.py). Twin of runtime_c/qcc_softmax.c (qcc_softmax_tflm_s16).
"""

from __future__ import annotations

import math

import numpy as np

from qcc.numerics import tflm

LUT_SIZE = 513  # 512 steps and the end point
_F = np.float32


def _round(v):
    """TfLiteRound on float32: halves away from zero."""
    return tflm.round_half_away(v)


def _expf(x):
    return _F(np.exp(np.float64(x)))


def _one_over_one_plus_x(x):
    return _F(1) / (_F(1) + _F(x))


def lut_populate_int16(input_scale, input_zero: int, output_scale, output_zero: int, transform) -> np.ndarray:
    """LUTPopulateInt16<float>: the 513 int16 entries, computed in float32 as TFLM computes them."""
    s_in, s_out = _F(input_scale), _F(output_scale)
    input_min, input_max = s_in * _F(-32768 - input_zero), s_in * _F(32767 - input_zero)
    output_min, output_max = s_out * _F(-32768 - output_zero), s_out * _F(32767 - output_zero)
    step = (input_max - input_min) / _F(512)
    half_step = step / _F(2)
    inverse = _F(65536) / (output_max - output_min)
    lut = np.empty(LUT_SIZE, np.int64)
    for i in range(512):
        at = input_min + _F(i) * step
        val, val_next = transform(at), transform(input_min + _F(i + 1) * step)
        val_midpoint = transform(at + half_step)
        sample = _round(val * inverse)
        midpoint_interpolated = _round((val_next * inverse + _round(val * inverse)) / _F(2))
        midpoint_err = midpoint_interpolated - _round(val_midpoint * inverse)
        bias = _round(midpoint_err / _F(2))
        lut[i] = int(min(max(sample - bias, _F(-32768)), _F(32767)))
    lut[512] = int(min(max(_round(transform(input_max) * inverse), _F(-32768)), _F(32767)))
    return lut


def wrap_int16(v):
    return ((np.asarray(v, np.int64) + 32768) & 0xFFFF) - 32768


def lut_lookup_int16(values, lut: np.ndarray) -> np.ndarray:
    """LUTLookup(int16): base lut[256 + (v >> 7)] plus (slope * (v & 127) + 64) >> 7, the slope and the
    result wrapped to int16 as TFLM's int16_t variables hold them."""
    v = np.asarray(values, np.int64)
    index = 256 + (v >> 7)
    base = lut[index]
    slope = wrap_int16(lut[index + 1] - base)
    return wrap_int16(base + ((slope * (v & 0x7F) + 64) >> 7))


def softmax_luts() -> tuple[np.ndarray, np.ndarray]:
    """TFLM's two int16 SOFTMAX tables: exp on [-10, 0] and 1 / (1 + x) on [0, 1] (softmax_common.cc)."""
    span = 32767 - (-32768)
    exp_lut = lut_populate_int16(_F(10.0) / _F(span), 32767, _F(2.0) / _F(span), 0, _expf)
    reciprocal_lut = lut_populate_int16(_F(1.0) / _F(span), -32768, _F(2.0) / _F(span), 0, _one_over_one_plus_x)
    return exp_lut, reciprocal_lut


def softmax_multiplier(s_x, beta: float) -> tuple[int, int]:
    """(M0, e) of QuantizeMultiplier(s_x * beta / (10 / 65535)), in double; ValueError where TFLM's left
    shift by e would be undefined."""
    real = float(np.float32(s_x)) * float(beta) / (10.0 / 65535.0)
    if not math.isfinite(real) or real <= 0:
        raise ValueError(f"s_x * beta = {real:g} must be positive and finite")
    m0, e = tflm.quantize_multiplier(real)
    if e > 31:
        raise ValueError(f"s_x * beta / (10 / 65535) = {real:g} is 2^31 or more: TFLM's left shift by {e} is undefined")
    return m0, e


def softmax_int16(x: np.ndarray, m0: int, e: int, exp_lut: np.ndarray, reciprocal_lut: np.ndarray) -> np.ndarray:
    """SoftmaxInt16 over the last axis of int16 codes (the module's docstring)."""
    rows = np.asarray(x, np.int64).reshape(-1, x.shape[-1] if x.ndim else 1)
    out = np.empty(rows.shape, np.int64)
    mbqm = np.vectorize(lambda d: tflm.multiply_by_quantized_multiplier(int(d), m0, e), otypes=[np.int64])
    for r, row in enumerate(rows):
        scaled = np.clip(mbqm(row - row.max()) + 32767, -32768, 32767)
        exps = lut_lookup_int16(scaled, exp_lut)
        total = int(exps.sum())
        headroom_plus_one = 32 - total.bit_length()  # CountLeadingZeros of the (positive) uint32 sum
        shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
        reciprocal = int(lut_lookup_int16(min(max(shifted - (1 << 15) - (1 << 16), -32768), 32767), reciprocal_lut))
        right_shift = 31 - headroom_plus_one
        out[r] = np.clip((exps * reciprocal + (1 << (right_shift - 1))) >> right_shift, 0, 32767)
    return out.reshape(np.shape(x)).astype(np.int16)
