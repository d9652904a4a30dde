/* qcc runtime: TFLM's 16x8 kernels (qcc_s16.h). */
#include "qcc_s16.h"

#include <stddef.h>

#include "qcc_dsp.h"
#include "qcc_window.h"
#include "qcc_requant.h"
#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32 */
#include "qcc_requant_tflm.h"   /* qcc_tflm_scale */

/* TFLM's MultiplyByQuantizedMultiplier(int64_t acc, M0, e) as reduced_multiplier() folds it, clamped:
 * floor((acc * mult + 2^(shift - 1)) / 2^shift) without shifting a negative value. |acc * mult| < 2^62 (|acc| <
 * 2^47, mult < 2^15): nothing overflows. (A branch-free form, adding 2^62 first, ran 5% slower on the M4.) */
static inline int32_t qcc_requantize_wide(int64_t acc, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    const int64_t v = acc * mult + ((int64_t)1 << (shift - 1));
    const int64_t y = v >= 0 ? v >> shift : -((-(v + 1)) >> shift) - 1;
    return y < lo ? lo : y > hi ? hi : (int32_t)y;
}

/* The products of two output channels' weights (a and b, each in the order 0, 2, 1, 3 by groups of 4) with one
 * int16 column: *sa += sum(a[k] * col[k]), *sb likewise, over `taps` taps (the last group may be partial: its
 * missing taps are never read). Two products per SMLALD on DSP cores, each column pair loaded once for both. */
static void qcc_dot2_s16(const int8_t *a, const int8_t *b, const int16_t *col, int32_t taps, int64_t *sa, int64_t *sb)
{
    static const uint8_t stored[4] = {0, 2, 1, 3}; /* where tap j of a group of 4 is stored */
    const int32_t whole = taps & ~3;
    int64_t acc_a = *sa, acc_b = *sb;
    int32_t k;
#if QCC_DSP
    for (k = 0; k < whole; k += 4) {
        const int32_t x01 = (int32_t)qcc_load_u32(col + k), x23 = (int32_t)qcc_load_u32(col + k + 2);
        const uint32_t pa = qcc_load_u32(a + k), pb = qcc_load_u32(b + k);
        acc_a = __smlald(x01, __sxtb16(pa), acc_a);
        acc_b = __smlald(x01, __sxtb16(pb), acc_b);
        acc_a = __smlald(x23, qcc_sxtb16_ror8(pa), acc_a);
        acc_b = __smlald(x23, qcc_sxtb16_ror8(pb), acc_b);
    }
#else
    for (k = 0; k < whole; k += 4) {
        acc_a += (int32_t)a[k] * col[k] + (int32_t)a[k + 2] * col[k + 1] + (int32_t)a[k + 1] * col[k + 2]
                 + (int32_t)a[k + 3] * col[k + 3];
        acc_b += (int32_t)b[k] * col[k] + (int32_t)b[k + 2] * col[k + 1] + (int32_t)b[k + 1] * col[k + 2]
                 + (int32_t)b[k + 3] * col[k + 3];
    }
#endif
    for (k = whole; k < taps; ++k) {
        acc_a += (int32_t)a[whole + stored[k - whole]] * col[k];
        acc_b += (int32_t)b[whole + stored[k - whole]] * col[k];
    }
    *sa = acc_a;
    *sb = acc_b;
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

/* One output pixel of one group: the channels' products with the window `col` (taps values), requantized into
 * y at `at` (each channel's plane `out_plane` apart) */
static void qcc_conv16_pixel(const qcc_conv16_params *p, const int16_t *col, int32_t taps, int32_t first,
                             int32_t count, int16_t *y, size_t out_plane)
{
    int32_t oc;
    for (oc = first; oc < first + count; oc += 2) {
        const int32_t ob = oc + 1 < first + count ? oc + 1 : oc; /* an odd last channel: computed twice */
        int64_t acc_a = p->bias != NULL ? p->bias[oc] : 0, acc_b = p->bias != NULL ? p->bias[ob] : 0;
        qcc_dot2_s16(p->weights + (size_t)oc * (size_t)p->taps4, p->weights + (size_t)ob * (size_t)p->taps4, col, taps,
                     &acc_a, &acc_b);
        y[(size_t)oc * out_plane] = (int16_t)qcc_conv16_code(p, oc, acc_a);
        y[(size_t)ob * out_plane] = (int16_t)qcc_conv16_code(p, ob, acc_b);
    }
}

/* One output channel's requantization with its constants loaded once (the kernels' runs of outputs); the
 * narrow path (an int32 bias, rare) goes through qcc_conv16_code */
typedef struct {
    const qcc_conv16_params *p;
    int32_t oc, wide, mult, shift, lo, hi;
} qcc_conv16_channel;

static inline qcc_conv16_channel qcc_conv16_channel_of(const qcc_conv16_params *p, int32_t oc)
{
    qcc_conv16_channel ch;
    ch.p = p;
    ch.oc = oc;
    ch.wide = p->wide;
    ch.mult = p->wide ? p->wide_mult[oc] : 0;
    ch.shift = p->wide ? p->wide_shift[oc] : 0;
    ch.lo = p->lo;
    ch.hi = p->hi;
    return ch;
}

static inline int16_t qcc_conv16_apply(const qcc_conv16_channel *ch, int64_t acc)
{
    if (ch->wide) {
        return (int16_t)qcc_requantize_wide(acc, ch->mult, ch->shift, ch->lo, ch->hi);
    }
    return (int16_t)qcc_conv16_code(ch->p, ch->oc, acc);
}

/* The window of output pixel (oh, ow) of group g into col (taps values, in the weights' order) */
static void qcc_conv16_gather(const qcc_conv16_params *p, const int16_t *image, int32_t g, int32_t oh, int32_t ow,
                              int16_t *col)
{
    const int32_t in_per_group = p->in_c / p->groups, k_h = p->kernel_h, k_w = p->kernel_w;
    const int32_t in_h = p->in_h, in_w = p->in_w;
    const size_t in_plane = (size_t)in_h * (size_t)in_w;
    const int32_t top = oh * p->stride_h - p->pad_top, left = ow * p->stride_w - p->pad_left;
    const int inside = top >= 0 && top + (k_h - 1) * p->dilation_h < in_h && left >= 0
                       && left + (k_w - 1) * p->dilation_w < in_w;
    int32_t ic, kh, kw, k = 0;
    for (ic = 0; ic < in_per_group; ++ic) {
        const int16_t *plane = image + (size_t)(g * in_per_group + ic) * in_plane;
        for (kh = 0; kh < k_h; ++kh) {
            const int32_t ih = top + kh * p->dilation_h;
            if (inside) { /* the window lies in the image: no test per tap */
                const int16_t *row = plane + (size_t)ih * (size_t)in_w + left;
                for (kw = 0; kw < k_w; ++kw) {
                    col[k++] = row[kw * p->dilation_w];
                }
                continue;
            }
            for (kw = 0; kw < k_w; ++kw) {
                const int32_t iw = left + kw * p->dilation_w;
                const int in = ih >= 0 && ih < in_h && iw >= 0 && iw < in_w;
                col[k++] = in ? plane[(size_t)ih * (size_t)in_w + (size_t)iw] : 0;
            }
        }
    }
}

/* Two pixels' columns (ca, cb: taps4 values each, zeros after the taps) by two channels' weights (wa, wb), in
 * int32: exact where taps4 < 512 (|w x| <= 2^22), which the caller checks. s[0..3]: (a, ca), (a, cb), (b, ca),
 * (b, cb). On DSP cores each loaded pair feeds two SMLADs. */
static void qcc_dot2x2_s16(const int8_t *wa, const int8_t *wb, const int16_t *ca, const int16_t *cb, int32_t taps4,
                           int32_t *s)
{
    int32_t aa = 0, ab = 0, ba = 0, bb = 0, k;
#if QCC_DSP
    for (k = 0; k < taps4; k += 4) {
        const uint32_t pa = qcc_load_u32(wa + k), pb = qcc_load_u32(wb + k);
        const int32_t a01 = __sxtb16(pa), a23 = qcc_sxtb16_ror8(pa), b01 = __sxtb16(pb), b23 = qcc_sxtb16_ror8(pb);
        const int32_t x01 = (int32_t)qcc_load_u32(ca + k), x23 = (int32_t)qcc_load_u32(ca + k + 2);
        const int32_t y01 = (int32_t)qcc_load_u32(cb + k), y23 = (int32_t)qcc_load_u32(cb + k + 2);
        aa = __smlad(x01, a01, aa);
        aa = __smlad(x23, a23, aa);
        ab = __smlad(y01, a01, ab);
        ab = __smlad(y23, a23, ab);
        ba = __smlad(x01, b01, ba);
        ba = __smlad(x23, b23, ba);
        bb = __smlad(y01, b01, bb);
        bb = __smlad(y23, b23, bb);
    }
#else
    for (k = 0; k < taps4; k += 4) {
        static const uint8_t stored[4] = {0, 2, 1, 3};
        int32_t j;
        for (j = 0; j < 4; ++j) {
            aa += wa[k + stored[j]] * ca[k + j];
            ab += wa[k + stored[j]] * cb[k + j];
            ba += wb[k + stored[j]] * ca[k + j];
            bb += wb[k + stored[j]] * cb[k + j];
        }
    }
#endif
    s[0] = aa;
    s[1] = ab;
    s[2] = ba;
    s[3] = bb;
}

void qcc_conv_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y, int32_t *scratch)
{
    int16_t *col = (int16_t *)(void *)scratch, *col_b = col + p->taps4;
    const int32_t in_per_group = p->in_c / p->groups, out_per_group = p->out_c / p->groups;
    const int32_t taps = in_per_group * p->kernel_h * p->kernel_w, taps4 = p->taps4;
    const size_t in_plane = (size_t)p->in_h * (size_t)p->in_w, out_plane = (size_t)p->out_h * (size_t)p->out_w;
    /* FULLY_CONNECTED (a 1x1 window over a 1x1 image): each row is its own column, read in place */
    const int rows_in_place = in_plane == 1 && p->kernel_h == 1 && p->kernel_w == 1 && p->groups == 1;
    /* two pixels at a time in int32 where no window's sum can overflow it (scratch: two columns) */
    const int pairs = taps4 < 512 && p->out_w > 1;
    int32_t n, g, oh, ow, oc, k;
    if (!rows_in_place) {
        for (k = taps; k < taps4; ++k) {
            col[k] = 0; /* the gathered columns' tails: whole groups of 4 for the dot products */
            if (pairs) {
                col_b[k] = 0;
            }
        }
    }
    for (n = 0; n < p->batch; ++n) {
        const int16_t *image = x + (size_t)n * (size_t)p->in_c * in_plane;
        int16_t *out = y + (size_t)n * (size_t)p->out_c * out_plane;
        if (rows_in_place) {
            qcc_conv16_pixel(p, image, taps, 0, p->out_c, out, 1);
            continue;
        }
        for (g = 0; g < p->groups; ++g) {
            const int32_t first = g * out_per_group, end = first + out_per_group;
            for (oh = 0; oh < p->out_h; ++oh) {
                int16_t *row = out + (size_t)oh * (size_t)p->out_w;
                for (ow = 0; pairs && ow + 1 < p->out_w; ow += 2) {
                    qcc_conv16_gather(p, image, g, oh, ow, col);
                    qcc_conv16_gather(p, image, g, oh, ow + 1, col_b);
                    for (oc = first; oc < end; oc += 2) {
                        const int32_t ob = oc + 1 < end ? oc + 1 : oc; /* an odd last channel: computed twice */
                        const qcc_conv16_channel cha = qcc_conv16_channel_of(p, oc), chb = qcc_conv16_channel_of(p, ob);
                        const int64_t bias_a = p->bias != NULL ? p->bias[oc] : 0;
                        const int64_t bias_b = p->bias != NULL ? p->bias[ob] : 0;
                        int32_t sums[4];
                        qcc_dot2x2_s16(p->weights + (size_t)oc * (size_t)taps4, p->weights + (size_t)ob * (size_t)taps4,
                                       col, col_b, taps4, sums);
                        row[(size_t)oc * out_plane + (size_t)ow] = qcc_conv16_apply(&cha, bias_a + sums[0]);
                        row[(size_t)oc * out_plane + (size_t)ow + 1] = qcc_conv16_apply(&cha, bias_a + sums[1]);
                        row[(size_t)ob * out_plane + (size_t)ow] = qcc_conv16_apply(&chb, bias_b + sums[2]);
                        row[(size_t)ob * out_plane + (size_t)ow + 1] = qcc_conv16_apply(&chb, bias_b + sums[3]);
                    }
                }
                for (; ow < p->out_w; ++ow) {
                    qcc_conv16_gather(p, image, g, oh, ow, col);
                    qcc_conv16_pixel(p, col, taps4, first, out_per_group, row + ow, out_plane);
                }
            }
        }
    }
}

/* The sum over the part of a window inside the plane (its rows [kh_lo, kh_hi), columns [kw_lo, kw_hi)) */
static int32_t qcc_depthwise_window(const qcc_conv16_params *p, const int16_t *plane, const int8_t *w, int32_t ih0,
                                    int32_t iw0, int32_t kh_lo, int32_t kh_hi)
{
    int32_t kw_lo, kw_hi, kh, kw, sum = 0;
    qcc_window_inside(iw0, p->dilation_w, p->kernel_w, p->in_w, &kw_lo, &kw_hi);
    for (kh = kh_lo; kh < kh_hi; ++kh) {
        const int16_t *row = plane + (size_t)(ih0 + kh * p->dilation_h) * (size_t)p->in_w + iw0;
        const int8_t *taps = w + kh * p->kernel_w;
        for (kw = kw_lo; kw < kw_hi; ++kw) {
            sum += taps[kw] * row[kw * p->dilation_w];
        }
    }
    return sum;
}

void qcc_depthwise_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y)
{
    const int32_t multiplier = p->out_c / p->in_c, in_h = p->in_h, in_w = p->in_w, s_w = p->stride_w;
    const size_t in_plane = (size_t)in_h * (size_t)in_w, out_plane = (size_t)p->out_h * (size_t)p->out_w;
    /* 3x3 without dilation, the common kernel: a window inside the plane is nine fixed reads */
    const int three = p->kernel_h == 3 && p->kernel_w == 3 && p->dilation_h == 1 && p->dilation_w == 1;
    int32_t n, oc, oh, ow;
    for (n = 0; n < p->batch; ++n) {
        for (oc = 0; oc < p->out_c; ++oc) {
            const int16_t *plane = x + ((size_t)n * (size_t)p->in_c + (size_t)(oc / multiplier)) * in_plane;
            const int8_t *w = p->weights + (size_t)oc * (size_t)p->taps4;
            const int64_t bias = p->bias != NULL ? p->bias[oc] : 0;
            const qcc_conv16_channel ch = qcc_conv16_channel_of(p, oc);
            int16_t *out = y + ((size_t)n * (size_t)p->out_c + (size_t)oc) * out_plane;
            for (oh = 0; oh < p->out_h; ++oh) {
                const int32_t ih0 = oh * p->stride_h - p->pad_top;
                int32_t kh_lo, kh_hi;
                qcc_window_inside(ih0, p->dilation_h, p->kernel_h, in_h, &kh_lo, &kh_hi);
                ow = 0;
                if (three && kh_lo == 0 && kh_hi == 3) {
                    /* the columns whose window is inside: iw0 = ow * s_w - pad_left in [0, in_w - 3] */
                    const int32_t first = (p->pad_left + s_w - 1) / s_w;
                    const int32_t last = in_w - 3 + p->pad_left >= 0 ? (in_w - 3 + p->pad_left) / s_w : -1;
                    const int32_t stop = last + 1 < p->out_w ? last + 1 : p->out_w;
                    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
                                  w7 = w[7], w8 = w[8];
                    const int16_t *r0 = plane + (size_t)ih0 * (size_t)in_w, *r1 = r0 + in_w, *r2 = r1 + in_w;
                    for (; ow < first && ow < p->out_w; ++ow) {
                        const int32_t iw0 = ow * s_w - p->pad_left;
                        *out++ = qcc_conv16_apply(&ch, bias + qcc_depthwise_window(p, plane, w, ih0, iw0, 0, 3));
                    }
                    for (; ow < stop; ++ow) {
                        const int32_t iw0 = ow * s_w - p->pad_left;
                        const int32_t sum = w0 * r0[iw0] + w1 * r0[iw0 + 1] + w2 * r0[iw0 + 2] + w3 * r1[iw0]
                                            + w4 * r1[iw0 + 1] + w5 * r1[iw0 + 2] + w6 * r2[iw0] + w7 * r2[iw0 + 1]
                                            + w8 * r2[iw0 + 2];
                        *out++ = qcc_conv16_apply(&ch, bias + sum);
                    }
                }
                for (; ow < p->out_w; ++ow) {
                    const int32_t iw0 = ow * s_w - p->pad_left;
                    *out++ = qcc_conv16_apply(&ch, bias + qcc_depthwise_window(p, plane, w, ih0, iw0, kh_lo, kh_hi));
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
