/* The `tflm` rounding scheme: TensorFlow Lite Micro / gemmlowp requantization with two roundings.
 *   y = RDBPOT(SRDHM(acc * 2^max(e,0), M0), max(-e,0))
 * SRDHM: high 32 bits of 2*a*b with rounding (nudge, division by 2^31 truncating toward zero),
 * saturating a = b = INT32_MIN. RDBPOT: right shift rounding halves away from zero.
 * Where TFLM shifts acc left in int32 and may wrap (M >= 1), this saturates instead.
 * Twin of qcc/numerics/tflm.py. No undefined behaviour: shifts of negative values are done on
 * unsigned bit patterns or replaced by divisions. */
#ifndef QCC_REQUANT_TFLM_H
#define QCC_REQUANT_TFLM_H

#include <stdint.h>

#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32 */

static inline int32_t qcc_srdhm(int32_t a, int32_t b)
{
    int64_t ab, total;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    total = ab + (ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30)));
    return (int32_t)(total / (INT64_C(1) << 31)); /* C division truncates toward zero, as gemmlowp's */
}

static inline int32_t qcc_rounding_divide_by_pot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    const int32_t remainder = (int32_t)((uint32_t)x & (uint32_t)mask);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* floor(x / 2^exponent) without shifting a negative value */
    const int32_t floored = x >= 0 ? (x >> exponent) : -(int32_t)((~(uint32_t)x) >> exponent) - 1;
    return floored + (remainder > threshold ? 1 : 0);
}

/* One channel's requantization with its constants worked out once per channel (a kernel's run of
 * outputs), the same numbers as qcc_requantize_tflm in fewer instructions.
 *
 * Fast path, M < 1/4 (e <= -2, so no left shift and n = -e >= 2): both roundings in one. With
 * s = SRDHM(x, m0) = floor((x * m0 + 2^30) / 2^31) and RDBPOT(s, n) = floor((s + 2^(n-1) - [s < 0]) / 2^n),
 * floor(floor(a / b) / c) = floor(a / (b * c)) and an integer moved inside a floor give
 *   RDBPOT(SRDHM(x, m0), n) = floor((x * m0 + 2^30 + 2^(30+n) - 2^31 [s < 0]) / 2^(31+n)).
 * [s < 0] may be replaced by [x < 0]: they differ only where x < 0 and s = 0, where both sums'
 * quotients are 0. The sum's high word is floor(sum / 2^32), shifted right by k = n - 1 more: one
 * SMLAL onto a constant whose two words follow x's sign bit, and one ASR, as in `single`.
 *
 * Elsewhere (M >= 1/4, rare):
 *  - SRDHM(x, m0) with 0 <= m0 < 2^31 is floor((x * m0 + 2^30) / 2^31): for x * m0 < 0, truncating
 *    (x * m0 + 1 - 2^30) / 2^31 toward zero is rounding it up, which is that floor. Bits 31..62 of
 *    the 64-bit sum, whatever the shift's kind, and the value fits an int32.
 *  - RDBPOT(s, n), n >= 1, is floor((s + 2^(n-1) - [s < 0]) / 2^n), halves away from zero: one
 *    arithmetic shift (qcc_floor_shift_i32) where s + 2^(n-1) fits an int32; above that, with
 *    v = s + 2^31 >= 0 (unsigned), (v >> n) + (((v & mask) + half - [s < 0]) >> n) - 2^(31-n).
 * Out of line: a channel with M >= 1/4 is rare. The result is clamped to [lo, hi]. */
static int32_t qcc_tflm_general(int32_t acc, int32_t m0, int e, int32_t lo, int32_t hi)
{
    const int n = e > 0 ? 0 : -e; /* RDBPOT's exponent */
    const uint32_t mask = (UINT32_C(1) << n) - 1u; /* n <= 31 */
    const uint32_t half = n > 0 ? UINT32_C(1) << (n - 1) : 0u;
    const uint32_t negative = n > 0 ? 1u : 0u; /* RDBPOT's ties of negative values go down */
    int32_t x = acc, y;
    uint64_t sum;
    uint32_t v, q;
    if (e > 0) { /* acc * 2^e, saturated to int32 */
        const int64_t wide = (int64_t)acc * (INT64_C(1) << e);
        x = wide > INT32_MAX ? INT32_MAX : wide < INT32_MIN ? INT32_MIN : (int32_t)wide;
    }
    sum = (uint64_t)((int64_t)x * (int64_t)m0) + (UINT64_C(1) << 30);
    y = qcc_wrap_u32_to_i32((uint32_t)(sum >> 31)); /* SRDHM */
    if (y <= (int32_t)(UINT32_C(0x7FFFFFFF) - half)) { /* y + half cannot overflow: one arithmetic shift */
        y = qcc_floor_shift_i32(y + (int32_t)half - (int32_t)(((uint32_t)y >> 31) & negative), n);
    } else {
        v = (uint32_t)y + UINT32_C(0x80000000); /* SRDHM + 2^31 */
        q = (v >> n) + (((v & mask) + half - ((v >> 31) ^ 1u) * negative) >> n);
        y = qcc_wrap_u32_to_i32(q - (UINT32_C(1) << (31 - n)));
    }
    return y < lo ? lo : y > hi ? hi : y;
}

typedef struct {
    int32_t m0;
    int e;
    int k;            /* n - 1 = -e - 1 on the fast path (> 0), else 0 */
    int32_t round_hi; /* 2^(n-2): the high word of 2^30 + 2^(30+n), on the fast path */
    int32_t lo, hi, zero;
} qcc_tflm_channel;

static inline qcc_tflm_channel qcc_tflm_channel_of(uint32_t m0, int e, int32_t lo, int32_t hi, int32_t zero)
{
    qcc_tflm_channel ch;
    ch.m0 = (int32_t)m0; /* m0 < 2^31 */
    ch.e = e;
    ch.k = e <= -2 ? -e - 1 : 0;
    ch.round_hi = (int32_t)(UINT32_C(1) << ((-e - 2) & 31)); /* branch-free; used only where k > 0 */
    ch.lo = lo;
    ch.hi = hi;
    ch.zero = zero;
    return ch;
}

static inline int32_t qcc_tflm_apply(const qcc_tflm_channel *ch, int32_t acc)
{
    int32_t y;
    if (ch->k > 0) {
        /* 2^30 + 2^(30+n) - 2^31 [x < 0], whose words are (2^(n-2), 2^30) or (2^(n-2) - 1, 3 * 2^30);
         * |x * m0| < 2^62, so the sum and its high word cannot overflow */
        const uint32_t negative = (uint32_t)acc >> 31;
        const uint64_t rounding = ((uint64_t)((uint32_t)ch->round_hi - negative) << 32) | (UINT32_C(0x40000000) | (negative << 31));
        const uint64_t sum = (uint64_t)((int64_t)acc * (int64_t)ch->m0) + rounding;
        y = qcc_floor_shift_i32(qcc_wrap_u32_to_i32((uint32_t)(sum >> 32)), ch->k);
        y = y < ch->lo ? ch->lo : y > ch->hi ? ch->hi : y;
    } else {
        y = qcc_tflm_general(acc, ch->m0, ch->e, ch->lo, ch->hi);
    }
    return y + ch->zero;
}

/* The gemmlowp definition above, SRDHM then RDBPOT, through the per-channel path. */
static inline int32_t qcc_requantize_tflm(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    const qcc_tflm_channel ch = qcc_tflm_channel_of(m0, shift, lo, hi, 0);
    return qcc_tflm_apply(&ch, acc);
}

#endif /* QCC_REQUANT_TFLM_H */
