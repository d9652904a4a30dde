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
 * outputs), the same numbers as qcc_requantize_tflm in fewer instructions:
 *  - SRDHM(x, m0) with 0 <= m0 < 2^31 is floor((x * m0 + 2^30) / 2^31): for x * m0 < 0, truncating
 *    (x * m0 + 1 - 2^30) / 2^31 toward zero is rounding it up, which is that floor. Bits 31..62 of
 *    the 64-bit sum, whatever the shift's kind, and the value fits an int32.
 *  - RDBPOT(s, n), n >= 1, is floor((s + 2^(n-1) - [s < 0]) / 2^n), halves away from zero: one
 *    arithmetic shift (qcc_floor_shift_i32) where s + 2^(n-1) fits an int32; above that, with
 *    v = s + 2^31 >= 0 (unsigned), (v >> n) + (((v & mask) + half - [s < 0]) >> n) - 2^(31-n). */
typedef struct {
    int32_t m0;
    int left;         /* e > 0: acc * 2^e, saturated, before SRDHM */
    int n;            /* e <= 0: RDBPOT's exponent -e */
    uint32_t mask;    /* 2^n - 1 */
    uint32_t half;    /* 2^(n-1), 0 when n = 0 */
    uint32_t negative; /* 1 when n > 0: RDBPOT's ties of negative values go down */
    uint32_t offset;  /* 2^(31-n) */
    int32_t safe;     /* INT32_MAX - half: SRDHM results up to it take the one-ASR path */
    int32_t lo, hi, zero;
} qcc_tflm_channel;

static inline qcc_tflm_channel qcc_tflm_channel_of(uint32_t m0, int e, int32_t lo, int32_t hi, int32_t zero)
{
    qcc_tflm_channel ch;
    ch.m0 = (int32_t)m0;
    ch.left = e > 0 ? e : 0;
    ch.n = e > 0 ? 0 : -e;
    ch.mask = (UINT32_C(1) << ch.n) - 1u; /* n <= 31 */
    ch.half = ch.n > 0 ? UINT32_C(1) << (ch.n - 1) : 0u;
    ch.negative = ch.n > 0 ? 1u : 0u;
    ch.offset = UINT32_C(1) << (31 - ch.n);
    ch.safe = (int32_t)(UINT32_C(0x7FFFFFFF) - ch.half);
    ch.lo = lo;
    ch.hi = hi;
    ch.zero = zero;
    return ch;
}

static inline int32_t qcc_tflm_apply(const qcc_tflm_channel *ch, int32_t acc)
{
    int32_t x = acc, y;
    uint64_t sum;
    uint32_t v, q;
    if (ch->left > 0) { /* acc * 2^left, saturated to int32 */
        const int64_t wide = (int64_t)acc * (INT64_C(1) << ch->left);
        x = wide > INT32_MAX ? INT32_MAX : wide < INT32_MIN ? INT32_MIN : (int32_t)wide;
    }
    sum = (uint64_t)((int64_t)x * (int64_t)ch->m0) + (UINT64_C(1) << 30);
    y = qcc_wrap_u32_to_i32((uint32_t)(sum >> 31)); /* SRDHM */
    if (y <= ch->safe) { /* y + half cannot overflow: RDBPOT is one arithmetic shift */
        y = qcc_floor_shift_i32(y + (int32_t)ch->half - (int32_t)(((uint32_t)y >> 31) & ch->negative), ch->n);
    } else {
        v = (uint32_t)y + UINT32_C(0x80000000); /* SRDHM + 2^31 */
        q = (v >> ch->n) + (((v & ch->mask) + ch->half - ((v >> 31) ^ 1u) * ch->negative) >> ch->n);
        y = qcc_wrap_u32_to_i32(q - ch->offset);
    }
    return (y < ch->lo ? ch->lo : y > ch->hi ? ch->hi : y) + ch->zero;
}

/* The gemmlowp definition above, SRDHM then RDBPOT, through the per-channel path. */
static inline int32_t qcc_requantize_tflm(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    const qcc_tflm_channel ch = qcc_tflm_channel_of(m0, shift, lo, hi, 0);
    return qcc_tflm_apply(&ch, acc);
}

#endif /* QCC_REQUANT_TFLM_H */
