/* com.microsoft QLinearAveragePool: ORT's float32 window mean, emulated with integers (see the header).
 * Twin of qcc/numerics/ort_float32_sum.py: the two must stay bit-identical. */
#include "qcc_average_pool.h"
#include "qcc_requant_ort.h" /* qcc_bit_length_u64, qcc_shift_right_rne_u64, qcc_round_to_f32_significand */
#include "qcc_dsp.h"         /* QCC_DSP: the int8 sums by SXTAB16 */

#define QCC_AVGPOOL_SIG_BITS 24

/* RN24(s): a signed integer rounded to 24 significant bits, ties to even, |s| < 2^62. */
static inline int64_t qcc_avgpool_round24(int64_t s)
{
    const uint64_t magnitude = s < 0 ? 0u - (uint64_t)s : (uint64_t)s;
    uint64_t rounded;
    if (magnitude < (UINT64_C(1) << QCC_AVGPOOL_SIG_BITS)) {
        return s;
    }
    rounded = qcc_round_to_f32_significand(magnitude);
    return s < 0 ? -(int64_t)rounded : (int64_t)rounded;
}

int64_t qcc_avgpool_add(int64_t total, int64_t term)
{
    return qcc_avgpool_round24(total + term);
}

/* u = sig * 2^shift with 2^23 <= sig < 2^24, for 0 < u < 2^62 with at most 24 significant bits. */
static inline uint32_t qcc_avgpool_normalize(uint64_t u, int32_t *shift)
{
    const int32_t s = qcc_bit_length_u64(u) - QCC_AVGPOOL_SIG_BITS;
    *shift = s;
    return (uint32_t)(s >= 0 ? u >> s : u << -s);
}

/* f32(a / b) = sig * 2^exponent with 2^23 <= sig < 2^24, for 2^23 <= a, b < 2^24: a long division
 * in 8-bit digits (32-bit operations only), a guard bit and the remainder as sticky bit. */
static inline uint32_t qcc_avgpool_divide24(uint32_t a, uint32_t b, int32_t *exponent)
{
    const int a_ge_b = a >= b;
    /* a2 = a or 2a lies in [b, 2b): the quotient's integer part is 1 */
    uint32_t r = (a_ge_b ? a : a << 1) - b; /* < b < 2^24 */
    uint32_t q = 1u, sig, digit;
    int i;
    for (i = 0; i < 3; ++i) {
        r <<= 8; /* < 2^32 */
        digit = r / b;
        r -= digit * b;
        q = (q << 8) | digit;
    }
    /* q = floor(a2 * 2^24 / b), in [2^24, 2^25) */
    sig = q >> 1;
    if ((q & 1u) && (r != 0u || (sig & 1u))) {
        ++sig;
    }
    *exponent = a_ge_b ? -23 : -24;
    if (sig == (1u << QCC_AVGPOOL_SIG_BITS)) {
        sig >>= 1;
        ++*exponent;
    }
    return sig;
}

static inline int32_t qcc_avgpool_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* ORT's code before the folded clamp: clamp(nearbyint(f32(f32(f32(total * 2^E / count) / s_y) + z_y))),
 * with values at or above 2^31 giving qmin. */
static int32_t qcc_avgpool_ort_code(const qcc_avgpool_params *p, int64_t total, int32_t count)
{
    const int negative = total < 0;
    const int32_t zero = p->output_zero;
    int32_t sum_shift, count_shift, y_exp, q_exp, eq;
    uint32_t sum_sig, count_sig, y_sig, q_sig;
    int64_t t, v;
    if (total == 0) {
        return zero;
    }
    sum_sig = qcc_avgpool_normalize(negative ? 0u - (uint64_t)total : (uint64_t)total, &sum_shift);
    count_sig = qcc_avgpool_normalize((uint64_t)count, &count_shift);
    y_sig = qcc_avgpool_divide24(sum_sig, count_sig, &y_exp);
    q_sig = qcc_avgpool_divide24(y_sig, (uint32_t)p->output_significand, &q_exp);
    eq = p->exponent_offset + sum_shift - count_shift + y_exp + q_exp; /* y / s_y = q_sig * 2^eq */
    if (eq > 32) {
        return p->qmin; /* |y / s_y| >= 2^55: out of int32 range */
    }
    if (eq >= 0) {
        t = (int64_t)((uint64_t)q_sig << eq); /* < 2^56 */
        v = qcc_avgpool_round24((negative ? -t : t) + zero);
        return v >= ((int64_t)1 << 31) ? p->qmin : qcc_avgpool_clamp(v, p->qmin, p->qmax);
    }
    if (eq <= -26) {
        return zero; /* |y / s_y| < 1/4: the sum rounds back to z_y */
    }
    /* In units of 2^eq: t = y / s_y + z_y exactly, then f32, then round to an integer. */
    t = (negative ? -(int64_t)q_sig : (int64_t)q_sig) + (int64_t)zero * ((int64_t)1 << -eq);
    v = qcc_avgpool_round24(t);
    {
        const uint64_t r = qcc_shift_right_rne_u64(v < 0 ? 0u - (uint64_t)v : (uint64_t)v, -eq);
        return qcc_avgpool_clamp(v < 0 ? -(int64_t)r : (int64_t)r, p->qmin, p->qmax);
    }
}

int32_t qcc_avgpool_code(const qcc_avgpool_params *p, int64_t total, int32_t count)
{
    const int32_t code = qcc_avgpool_ort_code(p, total, count);
    const int32_t low = code < p->lo ? p->lo : code;
    return low > p->hi ? p->hi : low;
}

/* Codes as bytes: the table is indexed by the byte, and the output byte is the code mod 256. */
static void qcc_avgpool_bytes(const qcc_avgpool_params *p, const uint8_t *x, uint8_t *y)
{
    const int32_t in_map = p->in_h * p->in_w, out_map = p->out_h * p->out_w;
    const int32_t x_channel = p->channels_last ? 1 : in_map, x_pixel = p->channels_last ? p->channels : 1;
    const int32_t y_channel = p->channels_last ? 1 : out_map, y_pixel = p->channels_last ? p->channels : 1;
    const int32_t full = p->kernel_h * p->kernel_w;
    int32_t n, c, oh, ow, h, w;
    for (n = 0; n < p->batch; ++n) {
        for (c = 0; c < p->channels; ++c) {
            const uint8_t *xc = x + ((size_t)n * p->channels * in_map + (size_t)c * x_channel);
            uint8_t *yc = y + ((size_t)n * p->channels * out_map + (size_t)c * y_channel);
            for (oh = 0; oh < p->out_h; ++oh) {
                int32_t h0 = oh * p->stride_h - p->pad_top;
                int32_t h1 = h0 + p->kernel_h < p->in_h ? h0 + p->kernel_h : p->in_h;
                h0 = h0 > 0 ? h0 : 0;
                for (ow = 0; ow < p->out_w; ++ow) {
                    int32_t w0 = ow * p->stride_w - p->pad_left;
                    int32_t w1 = w0 + p->kernel_w < p->in_w ? w0 + p->kernel_w : p->in_w;
                    int64_t total = 0;
                    int32_t code;
                    w0 = w0 > 0 ? w0 : 0;
                    for (h = h0; h < h1; ++h) {
                        const uint8_t *row = xc + (size_t)h * p->in_w * x_pixel;
                        for (w = w0; w < w1; ++w) {
                            total = qcc_avgpool_round24(total + p->table[row[(size_t)w * x_pixel]]);
                        }
                    }
                    code = qcc_avgpool_code(p, total, p->count_include_pad ? full : (h1 - h0) * (w1 - w0));
                    yc[((size_t)oh * p->out_w + ow) * y_pixel] = (uint8_t)code;
                }
            }
        }
    }
}

void qcc_avgpool_s8(const qcc_avgpool_params *p, const int8_t *x, int8_t *y)
{
    qcc_avgpool_bytes(p, (const uint8_t *)x, (uint8_t *)y);
}

void qcc_avgpool_u8(const qcc_avgpool_params *p, const uint8_t *x, uint8_t *y)
{
    qcc_avgpool_bytes(p, x, y);
}

#if QCC_DSP
/* The sum of n int8 codes, 4 per word: SXTAB16 adds a word's bytes 0 and 2, then (rotated) 1 and 3, into two
 * int16 lanes, added out every 126 words (252 codes a lane: |sum| <= 252 * 128 < 2^15, no lane wraps). */
static int32_t qcc_sum_s8(const int8_t *x, int32_t n)
{
    int32_t sum = 0, j = 0;
    while (n - j >= 8) {
        const int32_t end = j + (n - j >= 4 * 126 ? 4 * 126 : (n - j) / 8 * 8);
        uint32_t lanes = 0;
        for (; j < end; j += 8) {
            const uint32_t a = qcc_load_u32(x + j), b = qcc_load_u32(x + j + 4);
            lanes = (uint32_t)__sxtab16((int32_t)lanes, (int32_t)a);
            lanes = qcc_sxtab16_ror8(lanes, a);
            lanes = (uint32_t)__sxtab16((int32_t)lanes, (int32_t)b);
            lanes = qcc_sxtab16_ror8(lanes, b);
        }
        sum += (int32_t)((lanes & 0xFFFFu) ^ 0x8000u) - 0x8000 + (int32_t)((lanes >> 16) ^ 0x8000u) - 0x8000;
    }
    for (; j < n; ++j) {
        sum += x[j];
    }
    return sum;
}
#define QCC_AVGPOOL_SUM qcc_sum_s8
#endif
#define QCC_ACT int8_t
#define QCC_NAME(base) base##_s8
#include "qcc_avgpool_tflm_impl.inc"
#undef QCC_ACT
#undef QCC_NAME
#undef QCC_AVGPOOL_SUM

#define QCC_ACT int16_t
#define QCC_NAME(base) base##_s16
#include "qcc_avgpool_tflm_impl.inc"
#undef QCC_ACT
#undef QCC_NAME
