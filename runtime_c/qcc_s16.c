/* qcc runtime: TFLM's 16x8 kernels (qcc_s16.h). */
#include "qcc_s16.h"

#include <stddef.h>

#include "qcc_dsp.h"
#include "qcc_requant.h"
#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32 */
#include "qcc_requant_tflm.h"   /* qcc_tflm_scale */

/* floor(v / 2^k) without shifting a negative value (0 < k < 63) */
static inline int64_t qcc_floor_shift_i64(int64_t v, int k)
{
    return v >= 0 ? v >> k : -((-(v + 1)) >> k) - 1;
}

/* TFLM's MultiplyByQuantizedMultiplier(int64_t acc, M0, e) as reduced_multiplier() folds it, clamped */
static inline int32_t qcc_requantize_wide(int64_t acc, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    const int64_t y = qcc_floor_shift_i64(acc * mult + ((int64_t)1 << (shift - 1)), shift);
    return y < lo ? lo : y > hi ? hi : (int32_t)y;
}

/* sum(w[k] * col[k], k < taps4) + acc, weights in the order 0, 2, 1, 3 by groups of 4 */
static int64_t qcc_dot_s16(const int8_t *w, const int16_t *col, int32_t taps4, int64_t acc)
{
    int32_t k;
#if QCC_DSP
    for (k = 0; k < taps4; k += 4) {
        const uint32_t packed = qcc_load_u32(w + k);
        acc = __smlald((int32_t)qcc_load_u32(col + k), __sxtb16(packed), acc);
        acc = __smlald((int32_t)qcc_load_u32(col + k + 2), qcc_sxtb16_ror8(packed), acc);
    }
#else
    for (k = 0; k < taps4; k += 4) {
        acc += (int32_t)w[k] * col[k] + (int32_t)w[k + 2] * col[k + 1] + (int32_t)w[k + 1] * col[k + 2]
               + (int32_t)w[k + 3] * col[k + 3];
    }
#endif
    return acc;
}

/* the output code of accumulator acc in channel oc, the kernel's path (wide or narrow) */
static inline int32_t qcc_conv16_code(const qcc_conv16_params *p, int32_t oc, int64_t acc)
{
    if (p->wide) {
        return qcc_requantize_wide(acc, p->wide_mult[oc], p->wide_shift[oc], p->lo, p->hi);
    } else {
        const qcc_requant_channel ch = qcc_requant_channel_of(&p->requant, oc);
        return qcc_requantize_channel(&ch, qcc_wrap_u32_to_i32((uint32_t)(uint64_t)acc)); /* TFLM's int32 sum */
    }
}

void qcc_conv_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y, int32_t *scratch)
{
    int16_t *col = (int16_t *)(void *)scratch;
    const int32_t in_per_group = p->in_c / p->groups, out_per_group = p->out_c / p->groups;
    const int32_t taps = in_per_group * p->kernel_h * p->kernel_w;
    const size_t in_plane = (size_t)p->in_h * (size_t)p->in_w, out_plane = (size_t)p->out_h * (size_t)p->out_w;
    int32_t n, g, oh, ow, ic, kh, kw, oc, k;
    for (k = taps; k < p->taps4; ++k) {
        col[k] = 0;
    }
    for (n = 0; n < p->batch; ++n) {
        const int16_t *image = x + (size_t)n * (size_t)p->in_c * in_plane;
        int16_t *out = y + (size_t)n * (size_t)p->out_c * out_plane;
        for (g = 0; g < p->groups; ++g) {
            for (oh = 0; oh < p->out_h; ++oh) {
                for (ow = 0; ow < p->out_w; ++ow) {
                    const int32_t top = oh * p->stride_h - p->pad_top, left = ow * p->stride_w - p->pad_left;
                    k = 0;
                    for (ic = 0; ic < in_per_group; ++ic) {
                        const int16_t *plane = image + (size_t)(g * in_per_group + ic) * in_plane;
                        for (kh = 0; kh < p->kernel_h; ++kh) {
                            const int32_t ih = top + kh * p->dilation_h;
                            for (kw = 0; kw < p->kernel_w; ++kw) {
                                const int32_t iw = left + kw * p->dilation_w;
                                const int inside = ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
                                col[k++] = inside ? plane[(size_t)ih * (size_t)p->in_w + (size_t)iw] : 0;
                            }
                        }
                    }
                    for (oc = g * out_per_group; oc < (g + 1) * out_per_group; ++oc) {
                        const int64_t acc = qcc_dot_s16(p->weights + (size_t)oc * (size_t)p->taps4, col, p->taps4,
                                                         p->bias != NULL ? p->bias[oc] : 0);
                        out[(size_t)oc * out_plane + (size_t)oh * (size_t)p->out_w + (size_t)ow] =
                            (int16_t)qcc_conv16_code(p, oc, acc);
                    }
                }
            }
        }
    }
}


void qcc_depthwise_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y)
{
    const int32_t multiplier = p->out_c / p->in_c, in_h = p->in_h, in_w = p->in_w;
    const int32_t k_h = p->kernel_h, k_w = p->kernel_w, d_h = p->dilation_h, d_w = p->dilation_w;
    const size_t in_plane = (size_t)in_h * (size_t)in_w, out_plane = (size_t)p->out_h * (size_t)p->out_w;
    int32_t n, oc, oh, ow, kh, kw;
    for (n = 0; n < p->batch; ++n) {
        for (oc = 0; oc < p->out_c; ++oc) {
            const int16_t *plane = x + ((size_t)n * (size_t)p->in_c + (size_t)(oc / multiplier)) * in_plane;
            const int8_t *w = p->weights + (size_t)oc * (size_t)p->taps4;
            const int64_t bias = p->bias != NULL ? p->bias[oc] : 0;
            int16_t *out = y + ((size_t)n * (size_t)p->out_c + (size_t)oc) * out_plane;
            for (oh = 0; oh < p->out_h; ++oh) {
                const int32_t ih0 = oh * p->stride_h - p->pad_top;
                /* kernel rows inside the input: kh in [kh_lo, kh_hi) */
                const int32_t kh_lo = ih0 >= 0 ? 0 : (-ih0 + d_h - 1) / d_h;
                const int32_t kh_hi = in_h - ih0 <= 0 ? 0 : ((in_h - ih0 - 1) / d_h + 1 < k_h ? (in_h - ih0 - 1) / d_h + 1 : k_h);
                for (ow = 0; ow < p->out_w; ++ow) {
                    const int32_t iw0 = ow * p->stride_w - p->pad_left;
                    const int32_t kw_lo = iw0 >= 0 ? 0 : (-iw0 + d_w - 1) / d_w;
                    const int32_t kw_hi = in_w - iw0 <= 0 ? 0 : ((in_w - iw0 - 1) / d_w + 1 < k_w ? (in_w - iw0 - 1) / d_w + 1 : k_w);
                    int32_t sum = 0;
                    for (kh = kh_lo; kh < kh_hi; ++kh) {
                        const int16_t *row = plane + (size_t)(ih0 + kh * d_h) * (size_t)in_w;
                        const int8_t *taps = w + kh * k_w;
                        for (kw = kw_lo; kw < kw_hi; ++kw) {
                            sum += taps[kw] * row[iw0 + kw * d_w];
                        }
                    }
                    *out++ = (int16_t)qcc_conv16_code(p, oc, bias + sum);
                }
            }
        }
    }
}

/* TFLM's Requantize of one code, before the clamp */
static inline int32_t qcc_requantize_code(const qcc_requantize_params *p, int32_t x)
{
    const int32_t shifted = qcc_wrap_u32_to_i32((uint32_t)(x - p->in_zero) << p->left);
    return qcc_wrap_u32_to_i32((uint32_t)qcc_tflm_scale(shifted, p->m0, p->right) + (uint32_t)p->out_zero);
}

static inline int32_t qcc_clamp_code(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void qcc_requantize_s8_s16(const qcc_requantize_params *p, const int8_t *x, int16_t *y)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        y[i] = (int16_t)qcc_clamp_code(qcc_requantize_code(p, x[i]), INT16_MIN, INT16_MAX);
    }
}

void qcc_requantize_s16_s8(const qcc_requantize_params *p, const int16_t *x, int8_t *y)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        y[i] = (int8_t)qcc_clamp_code(qcc_requantize_code(p, x[i]), INT8_MIN, INT8_MAX);
    }
}

void qcc_requantize_s16_s16(const qcc_requantize_params *p, const int16_t *x, int16_t *y)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        y[i] = (int16_t)qcc_clamp_code(qcc_requantize_code(p, x[i]), INT16_MIN, INT16_MAX);
    }
}

void qcc_sigmoid_s16(const qcc_sigmoid16_params *p, const int16_t *x, int16_t *y)
{
    const int fraction_bits = p->tanh ? 8 : 9;
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t scaled = x[i] * p->multiplier + p->rounding; /* |x * multiplier| < 2^30 */
        const int32_t v = scaled >= 0 ? scaled >> p->shift : -((-scaled - 1) >> p->shift) - 1;
        const uint32_t a = (uint32_t)(v >= 0 ? v : -v);
        const uint32_t h = a >> fraction_bits;
        uint32_t r;
        if (h >= 255u) {
            r = p->tanh ? UINT32_C(0xFFFF) << 8 : UINT32_C(0x7FFF) << 10;
        } else { /* the table rises: T[h + 1] >= T[h] */
            const uint32_t low = p->table[h], high = p->table[h + 1];
            r = (low << fraction_bits) + (a & ((UINT32_C(1) << fraction_bits) - 1u)) * (high - low);
        }
        if (p->tanh) { /* r < 2^24: the signed forms below stay in int32 */
            const int32_t t = v >= 0 ? (int32_t)r - (1 << 23) + (1 << 7) : (1 << 23) + (1 << 7) - 1 - (int32_t)r;
            y[i] = (int16_t)(t >= 0 ? t >> 8 : -((-t - 1) >> 8) - 1);
        } else {
            y[i] = (int16_t)((v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u) >> 10);
        }
    }
}
