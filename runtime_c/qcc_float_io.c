#include "qcc_float_io.h"

/* rne(v) for |v| <= 255, without libm: truncate, then compare the exact fraction with 1/2. */
static int32_t qcc_round_half_even_small(float v)
{
    const int32_t t = (int32_t)v;  /* toward zero, exact for |v| < 2^31 */
    const float fraction = v - (float)t; /* exact: both share the binade's grid */
    if (fraction > 0.5f || (fraction == 0.5f && (t & 1))) {
        return t + 1;
    }
    if (fraction < -0.5f || (fraction == -0.5f && (t & 1))) {
        return t - 1;
    }
    return t;
}

static int32_t qcc_quantize_one(float x, float scale, int32_t zero, int32_t qmin, int32_t qmax)
{
    const float lo = (float)(qmin - zero), hi = (float)(qmax - zero);
    float v = x / scale;
    if (!(v >= lo)) { /* also NaN, which ORT maps to qmin */
        v = lo;
    } else if (v > hi) {
        v = hi;
    }
    return qcc_round_half_even_small(v) + zero;
}

void qcc_quantize_f32_s8(const float *x, int8_t *q, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        q[i] = (int8_t)qcc_quantize_one(x[i], scale, zero, -128, 127);
    }
}

void qcc_quantize_f32_u8(const float *x, uint8_t *q, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        q[i] = (uint8_t)qcc_quantize_one(x[i], scale, zero, 0, 255);
    }
}

/* TFLM's AffineQuantize: std::round(x / scale) (halves away from zero) + zero, clamped; the quotient
 * is clamped first (the same, both ends being integers), which also saturates where TFLM's cast to
 * int32 is undefined; NaN gives the zero point (Arm's conversion of NaN is 0). */
static int32_t qcc_quantize_tflm_one(float x, float scale, int32_t zero, int32_t qmin, int32_t qmax)
{
    const float lo = (float)(qmin - zero), hi = (float)(qmax - zero);
    float v = x / scale, fraction;
    int32_t t;
    if (v != v) {
        return zero;
    }
    if (v < lo) {
        v = lo;
    } else if (v > hi) {
        v = hi;
    }
    t = (int32_t)v;          /* toward zero, exact for |v| <= 65535 */
    fraction = v - (float)t; /* exact: both share the binade's grid */
    if (fraction >= 0.5f) {
        return t + 1 + zero;
    }
    if (fraction <= -0.5f) {
        return t - 1 + zero;
    }
    return t + zero;
}

void qcc_quantize_f32_s8_tflm(const float *x, int8_t *q, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        q[i] = (int8_t)qcc_quantize_tflm_one(x[i], scale, zero, -128, 127);
    }
}

void qcc_quantize_f32_s16_tflm(const float *x, int16_t *q, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        q[i] = (int16_t)qcc_quantize_tflm_one(x[i], scale, zero, -32768, 32767);
    }
}

void qcc_dequantize_s16_f32(const int16_t *q, float *r, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        r[i] = (float)((int32_t)q[i] - zero) * scale; /* exact product (< 2^41), rounded once, as TFLM's double */
    }
}

void qcc_dequantize_s8_f32(const int8_t *q, float *r, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        r[i] = (float)((int32_t)q[i] - zero) * scale;
    }
}

void qcc_dequantize_u8_f32(const uint8_t *q, float *r, size_t n, float scale, int32_t zero)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        r[i] = (float)((int32_t)q[i] - zero) * scale;
    }
}
