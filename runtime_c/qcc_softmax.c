/* qcc runtime: com.microsoft QLinearSoftmax (see qcc_softmax.h). Integer arithmetic only. */
#include "qcc_softmax.h"
#include "qcc_requant_tflm.h" /* qcc_srdhm, qcc_rounding_divide_by_pot, qcc_tflm_scale */

#define QCC_SOFTMAX_SIGNIFICAND 0xFFFFFFu

/* a + b rounded to float32 (half to even), for values a, b >= 0 held as (E << 24) | m with
 * value m * 2^(E - 150): what one float32 addition (addss) gives. Zero is 0; a subnormal has
 * E = 1 and m < 2^23, and stays exact when it grows past 2^23 (E = 1 is also the smallest
 * normal exponent). Sums here stay far below FLT_MAX (ORT's table sees to it). */
static uint32_t qcc_softmax_add(uint32_t a, uint32_t b)
{
    uint32_t big = a, small = b, e, d, sum, low, m;
    if ((a >> 24) < (b >> 24)) {
        big = b;
        small = a;
    }
    e = big >> 24;
    d = e - (small >> 24);
    if (d > 25u) {
        return big; /* small < 2^(E - 151), below half an ulp of big (normal, E >= 26): big is the sum */
    }
    big = (big & QCC_SOFTMAX_SIGNIFICAND) << 3; /* three guard bits below the last place */
    small = (small & QCC_SOFTMAX_SIGNIFICAND) << 3;
    /* align small; the bits shifted out leave a sticky 1 */
    sum = big + ((small >> d) | (uint32_t)((small & ((1u << d) - 1u)) != 0u));
    if (sum >= (1u << 27)) { /* a carry out of 24 bits: one place right, keeping the sticky bit */
        sum = (sum >> 1) | (sum & 1u);
        e += 1u;
    }
    low = sum & 7u;
    m = sum >> 3;
    if (low > 4u || (low == 4u && (m & 1u) != 0u)) {
        m += 1u;
        if (m == (1u << 24)) {
            m = 1u << 23;
            e += 1u;
        }
    }
    return (e << 24) | m;
}

/* q = t * Y / s rounded half to even, or 256 once it is 255.5 or more (the output saturates then).
 * t <= s (t is one of the summands), s = s_m * 2^(s_e - 150) normal; recip = floor(Y * 2^25 / s_m),
 * two_y = 2 * Y, Y < 2^24. With t = t_m * 2^(t_e - 150) and d = s_e - t_e:
 * 2q' = 2 t Y / s = t_m * 2Y / (s_m * 2^d) exactly; h = floor of it, then q from h. */
static uint32_t qcc_softmax_round(uint32_t t, uint32_t s_m, uint32_t s_e, uint32_t recip, uint32_t two_y)
{
    const uint32_t t_m = t & QCC_SOFTMAX_SIGNIFICAND;
    const uint32_t d = s_e - (t >> 24);
    uint64_t h, two_n, m_d;
    uint32_t q;
    if (d > 25u) {
        return 0u; /* t * Y / s < 2^24 * 2^24 / (2^23 * 2^26) = 1/2 */
    }
    /* t_m * recip / 2^(24 + d) is below 2 t Y / s by less than t_m / 2^(24 + d) < 1 */
    h = ((uint64_t)t_m * recip) >> (24u + d);
    if (h >= 511u) {
        return 256u;
    }
    two_n = (uint64_t)t_m * two_y; /* < 2^49 */
    m_d = (uint64_t)s_m << d;      /* < 2^49; (h + 1) * m_d < 2^58 */
    if ((h + 1u) * m_d <= two_n) {
        h += 1u;
    }
    q = (uint32_t)((h + 1u) >> 1); /* floor(t Y / s + 1/2) */
    if ((h & 1u) != 0u && h * m_d == two_n && (q & 1u) != 0u) {
        q -= 1u; /* exactly halfway: to even */
    }
    return q;
}

/* Both types on their bytes: flip = 0x80 turns an int8 code into code + 128, which keeps the
 * order and every difference to the row's maximum (the table index). */
static void qcc_softmax_bytes(const qcc_softmax_params *p, const uint8_t *x, uint8_t *y, uint32_t flip)
{
    const size_t depth = (size_t)p->depth, inner = (size_t)p->inner;
    const uint32_t two_y = 2u * p->y_factor;
    size_t o, i, j;
    for (o = 0; o < (size_t)p->outer; ++o) {
        for (i = 0; i < inner; ++i) {
            const size_t first = o * depth * inner + i;
            const uint8_t *xr = x + first;
            uint8_t *yr = y + first;
            const uint32_t *t;
            uint32_t top = 0, sum = 0, s_m, s_e, recip;
            for (j = 0; j < depth; ++j) {
                const uint32_t u = (uint32_t)xr[j * inner] ^ flip;
                top = u > top ? u : top;
            }
            t = p->exp_table + (255u - top); /* t[u] is the table entry of u - top + 255 */
            for (j = 0; j < depth; ++j) {
                sum = qcc_softmax_add(sum, t[(uint32_t)xr[j * inner] ^ flip]);
            }
            s_m = sum & QCC_SOFTMAX_SIGNIFICAND;
            s_e = sum >> 24;
            if (s_m == 0u) {
                continue; /* cannot happen: the maximum's entry is above 1 */
            }
            recip = (uint32_t)(((uint64_t)p->y_factor << 25) / s_m);
            for (j = 0; j < depth; ++j) {
                const uint32_t q = qcc_softmax_round(t[(uint32_t)xr[j * inner] ^ flip], s_m, s_e, recip, two_y);
                int32_t v = (int32_t)q + p->zero;
                v = v < p->lo ? p->lo : v;
                v = v > p->hi ? p->hi : v;
                yr[j * inner] = (uint8_t)v;
            }
        }
    }
}

void qcc_softmax_u8(const qcc_softmax_params *p, const uint8_t *x, uint8_t *y)
{
    qcc_softmax_bytes(p, x, y, 0u);
}

void qcc_softmax_s8(const qcc_softmax_params *p, const int8_t *x, int8_t *y)
{
    qcc_softmax_bytes(p, (const uint8_t *)x, (uint8_t *)y, 0x80u);
}

/* gemmlowp's SaturatingRoundingMultiplyByPOT<2> and <1>: a left shift that saturates */
static int32_t qcc_saturating_shift_left(int32_t x, int exponent)
{
    const int32_t threshold = (int32_t)((UINT32_C(1) << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* TFLM's GetReciprocal(sum, 12, &bits) for sum > 0: 1 / (sum scaled into [1, 2)) in Q0.31. */
static int32_t qcc_tflm_reciprocal(int32_t sum, int *bits)
{
    int headroom = 0, i;
    int32_t shifted_minus_one, half_denominator, x;
    int64_t total;
    while (((uint32_t)sum << headroom) < UINT32_C(0x80000000)) {
        ++headroom;
    }
    *bits = 12 - headroom;
    shifted_minus_one = (int32_t)(((uint32_t)sum << headroom) - UINT32_C(0x80000000));
    total = (int64_t)shifted_minus_one + INT32_MAX; /* RoundingHalfSum(a, 1.0): >= 0 here */
    half_denominator = (int32_t)((total + 1) / 2);
    x = 1515870810 + qcc_srdhm(half_denominator, -1010580540); /* 48/17 - 32/17 d, Q2.29 */
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = (int32_t)(UINT32_C(1) << 29) - qcc_srdhm(half_denominator, x);
        x = x + qcc_saturating_shift_left(qcc_srdhm(x, one_minus), 2);
    }
    return qcc_saturating_shift_left(x, 1);
}

void qcc_softmax_tflm_s8(const qcc_softmax_tflm_params *p, const int8_t *x, int8_t *y)
{
    int32_t r, c;
    for (r = 0; r < p->rows; ++r, x += p->depth, y += p->depth) {
        int32_t max = -128, sum = 0, reciprocal;
        int bits, shift;
        for (c = 0; c < p->depth; ++c) {
            max = x[c] > max ? x[c] : max;
        }
        for (c = 0; c < p->depth; ++c) {
            sum += p->sum_table[max - x[c]];
        }
        reciprocal = qcc_tflm_reciprocal(sum, &bits);
        shift = bits + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t product = qcc_srdhm(reciprocal, p->exp_table[max - x[c]]);
            const int32_t code = qcc_rounding_divide_by_pot(product, shift) - 128; /* shift <= 30: a row sum below 2^27 */
            y[c] = (int8_t)(code > 127 ? 127 : code);
        }
    }
}

/* TFLM's LUTLookup(int16): the entry at 256 + (v >> 7) and the slope to the next, 7 fractional bits; the slope
 * and the sum wrap to int16 as TFLM's int16_t variables do (the tables' neighbours never differ that much). */
static int32_t qcc_wrap16(int32_t v)
{
    return (int32_t)((uint32_t)(v + 32768) & 0xFFFFu) - 32768; /* |v| < 2^17 here */
}

static int32_t qcc_lut16_lookup(const int16_t *lut, int32_t v)
{
    const int32_t index = 256 + (v >= 0 ? v >> 7 : -((-v - 1) >> 7) - 1);
    const int32_t slope = qcc_wrap16(lut[index + 1] - lut[index]);
    const int32_t delta = slope * (v & 0x7F) + 64;
    return qcc_wrap16(lut[index] + (delta >= 0 ? delta >> 7 : -((-delta - 1) >> 7) - 1));
}

static int32_t qcc_clamp16(int32_t v)
{
    return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}

void qcc_softmax_tflm_s16(const qcc_softmax_tflm16_params *p, const int16_t *x, int16_t *y)
{
    int32_t row, c;
    for (row = 0; row < p->rows; ++row, x += p->depth, y += p->depth) {
        int32_t max = -32768, sum = 0, shifted, reciprocal, headroom_plus_one = 0, right_shift;
        uint32_t probe;
        for (c = 0; c < p->depth; ++c) {
            max = x[c] > max ? x[c] : max;
        }
        for (c = 0; c < p->depth; ++c) {
            /* TFLM's MBQM: (d * 2^left) in wrapping int32, then RDBPOT(SRDHM(., m0), right) */
            const int32_t d = qcc_wrap_u32_to_i32((uint32_t)(x[c] - max) << p->left);
            y[c] = (int16_t)qcc_lut16_lookup(p->exp_lut, qcc_clamp16(qcc_tflm_scale(d, p->m0, p->right) + 32767));
            sum += y[c]; /* < 2^31: the compiler limits depth */
        }
        for (probe = (uint32_t)sum; !(probe & 0x80000000u); probe <<= 1) {
            ++headroom_plus_one; /* CountLeadingZeros; sum > 0 (the maximum's exp is near 32767) */
        }
        shifted = (int32_t)(((int64_t)sum * ((int64_t)1 << (headroom_plus_one - 1)) + (1 << 13)) >> 14);
        reciprocal = qcc_lut16_lookup(p->reciprocal_lut, qcc_clamp16(shifted - (1 << 15) - (1 << 16)));
        right_shift = 31 - headroom_plus_one;
        for (c = 0; c < p->depth; ++c) {
            /* y[c] >= 0 and reciprocal >= 0 here, so the shift is of a non-negative value */
            const int64_t product = (int64_t)y[c] * reciprocal + ((int64_t)1 << (right_shift - 1));
            const int64_t result = product >= 0 ? product >> right_shift : -((-product - 1) >> right_shift) - 1;
            y[c] = (int16_t)(result < 0 ? 0 : result > 32767 ? 32767 : result);
        }
    }
}
