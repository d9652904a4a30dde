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

LOGISTIC and TANH int16 (reference_integer_ops::Logistic and Tanh for int16; prepared in
micro/kernels/logistic_common.cc and tanh.cc) interpolate in TFLM's 256-entry table of sigmoid(i / 24) in 0.16
fixed point (tanh(x) = 2 sigmoid(2x) - 1): the input is rescaled to 1/(3 * 4096) per code by (x * M + round) >> n
(M = 3 << n for a power-of-two input scale), then
    LOGISTIC: a = |v|, h = a >> 9; r = h >= 255 ? 0x7FFF << 10 : (T[h] << 9) + (a & 511) (T[h + 1] - T[h]);
              y = (v >= 0 ? r + 2^9 : 2^25 - r + 2^9 - 1) >> 10
    TANH:     a = |v|, h = a >> 8; r = h >= 255 ? 0xFFFF << 8 : (T[h] << 8) + (a & 255) (T[h + 1] - T[h]);
              y = (v >= 0 ? r - 2^23 + 2^7 : 2^23 + 2^7 - 1 - r) >> 8
with zero points 0 and an output scale of 2^-15. Twin of runtime_c/qcc_s16.c (qcc_sigmoid_s16).
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


# TFLM's sigmoid_table_uint16 (tensorflow/lite/kernels/internal/common.h, Apache-2.0): sigmoid(i / 24) in 0.16
# fixed point, the last entry 65535. These are data of TFLM's arithmetic, not a formula qcc can recompute: 212
# entries equal round(65536 sigmoid(i / 24)), the others are one above it. The tests run every int16 code
# through the pinned wheel's LOGISTIC and TANH.
SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
], np.int64)


def checked_log2(x) -> tuple[int, bool]:
    """TFLM's CheckedLog2 on a float32 scale: (round(log2 x), whether x is within 1e-3 of a power of two in log2),
    in float32 with logf taken correctly rounded."""
    log2 = _F(np.log(np.float64(_F(x)))) * (_F(1) / _F(np.log(np.float64(2.0))))
    rounded = _round(log2)
    return int(rounded), bool(abs(log2 - rounded) < _F(1e-3))


def sigmoid_scaling(s_x, s_y, tanh: bool) -> tuple[int, int]:
    """(M, n) of TFLM's int16 LOGISTIC / TANH prepare (zero points 0 checked by the caller): M = 0 with n the
    power-of-two scale's shift, or the multiplier to 1/(3 * 4096) per code doubled up to above 16383.5 (n times).
    ValueError where TFLM refuses the scales or its arithmetic would be undefined."""
    log2_y, pot_y = checked_log2(s_y)
    if not pot_y or log2_y != -15:
        raise ValueError(f"the output's scale {float(s_y):g} must be 2^-15 (TFLM refuses others)")
    log2_x, pot_x = checked_log2(s_x)
    shift = 12 + log2_x
    if pot_x and (shift == 0 or (tanh and shift == 1)):
        return 0, shift
    multiplier, shift = float(_F(s_x)) * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    if multiplier > 32767:
        raise ValueError(f"the input scale {float(s_x):g} is above 32767 / 12288: TFLM's multiplier would not fit "
                         "its 16 bits")
    return int(multiplier), shift


def sigmoid_int16(x, multiplier: int, shift: int, tanh: bool) -> np.ndarray:
    """TFLM's int16 LOGISTIC (tanh False) or TANH of int16 codes (the module's docstring)."""
    if multiplier == 0:
        multiplier, shift = 3 << shift, 0
    rounding = 1 << (shift - 1) if shift > 0 else 0
    v = (np.asarray(x, np.int64) * multiplier + rounding) >> shift
    a = np.abs(v)
    fraction_bits = 8 if tanh else 9
    h = a >> fraction_bits
    inside = np.minimum(h, 254)
    low, high = SIGMOID_TABLE_UINT16[inside], SIGMOID_TABLE_UINT16[inside + 1]
    r = (low << fraction_bits) + (a & ((1 << fraction_bits) - 1)) * (high - low)
    if tanh:
        r = np.where(h >= 255, 0xFFFF << 8, r)
        y = np.where(v >= 0, r - (1 << 23) + (1 << 7), (1 << 23) + (1 << 7) - 1 - r) >> 8
    else:
        r = np.where(h >= 255, 0x7FFF << 10, r)
        y = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1) >> 10
    return y.astype(np.int16)
