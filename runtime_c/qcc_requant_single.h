/* The `single` rounding scheme (CMSIS-NN single rounding, TVM QNN UPWARD):
 *   y = (acc * M0 + 2^(30 - e)) >> (31 - e)  in 64 bits, halves rounded up.
 * One 32x32->64 multiply-accumulate and a shift (qcc_single_apply). Twin of
 * qcc/numerics/single_rounding.py. */
#ifndef QCC_REQUANT_SINGLE_H
#define QCC_REQUANT_SINGLE_H

#include <stdint.h>

/* The int32 with the bits of u (C's conversion is implementation-defined above INT32_MAX). */
static inline int32_t qcc_wrap_u32_to_i32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* floor(x / 2^k), 0 <= k <= 31. C leaves >> of a negative value to the implementation: where it
 * is the arithmetic shift (GCC, Clang and every Arm compiler document it; the test below is a
 * constant the compiler folds), it is one ASR; elsewhere the floor division of the bit pattern. */
static inline int32_t qcc_floor_shift_i32(int32_t x, int k)
{
    if ((-1 >> 1) == -1) {
        return x >> k;
    }
    return x >= 0 ? (x >> k) : -(int32_t)((~(uint32_t)x) >> k) - 1;
}

/* floor((acc * m0 + rounding) / 2^(32 + k)) (qcc_smlal_high), clamped to [lo, hi], + zero, for 0 < k <= 31 and
 * |acc * m0 + rounding| < 2^62: the sum's high word floor(sum / 2^32) is an int32, and
 * floor(floor(sum / 2^32) / 2^k) = floor(sum / 2^(32 + k)). One SMLAL and one ASR: the common case
 * of `single` and of `tflm`, which differ in the rounding constant. */
static inline int32_t qcc_smlal_high(int32_t acc, int32_t m0, uint64_t rounding, int k)
{
    const uint64_t sum = (uint64_t)((int64_t)acc * (int64_t)m0) + rounding;
    return qcc_floor_shift_i32(qcc_wrap_u32_to_i32((uint32_t)(sum >> 32)), k);
}

static inline int32_t qcc_smlal_high_shift(int32_t acc, int32_t m0, uint64_t rounding, int k, int32_t lo, int32_t hi,
                                           int32_t zero)
{
    const int32_t y = qcc_smlal_high(acc, m0, rounding, k);
    return (y < lo ? lo : y > hi ? hi : y) + zero;
}

/* qcc_smlal_high_shift where hi = lo + 255: clamp(y, lo, lo + 255) = lo + clamp(y - lo, 0, 255), which compilers
 * for Arm make one USAT (|y| < 2^30: y - lo cannot overflow). */
static inline int32_t qcc_smlal_high_shift_byte(int32_t acc, int32_t m0, uint64_t rounding, int k, int32_t lo,
                                                int32_t zero)
{
    const int32_t t = qcc_smlal_high(acc, m0, rounding, k) - lo;
    return (t < 0 ? 0 : t > 255 ? 255 : t) + (lo + zero);
}

/* One channel's requantization, its constants worked out once per channel (a kernel's run of
 * outputs). total_shift = 31 - e = 32 + k; where k > 0 (M < 1/4, the usual scales) the rounding half
 * 2^(total_shift - 1) = 2^(k - 1) * 2^32 lies in the high word of the 64-bit sum and the result is
 * that word shifted right by k: one SMLAL and one ASR per output. */
typedef struct {
    int32_t m0;
    int k;            /* 31 - e - 32: > 0 on the fast path */
    int32_t round_hi; /* 2^(k - 1) on the fast path */
    int32_t lo, hi, zero;
} qcc_single_channel;

static inline qcc_single_channel qcc_single_channel_of(uint32_t m0, int e, int32_t lo, int32_t hi, int32_t zero)
{
    qcc_single_channel ch;
    ch.m0 = (int32_t)m0; /* m0 < 2^31: a signed operand lets Cortex-M use one SMLAL */
    ch.k = -1 - e;
    ch.round_hi = (int32_t)(UINT32_C(1) << ((ch.k - 1) & 31)); /* branch-free; used only where k > 0 */
    ch.lo = lo;
    ch.hi = hi;
    ch.zero = zero;
    return ch;
}

/* The common case, k > 0 (qcc_single_is_common): one SMLAL and one ASR. */
static inline int qcc_single_is_common(const qcc_single_channel *ch)
{
    return ch->k > 0;
}

static inline int32_t qcc_single_apply_common(const qcc_single_channel *ch, int32_t acc)
{
    /* the rounding half 2^(total_shift - 1) = 2^(k - 1) * 2^32 */
    return qcc_smlal_high_shift(acc, ch->m0, (uint64_t)(uint32_t)ch->round_hi << 32, ch->k, ch->lo, ch->hi, ch->zero);
}

/* qcc_single_apply_common where hi = lo + 255 (QCC_CASE_BYTE) */
static inline int32_t qcc_single_apply_byte(const qcc_single_channel *ch, int32_t acc)
{
    return qcc_smlal_high_shift_byte(acc, ch->m0, (uint64_t)(uint32_t)ch->round_hi << 32, ch->k, ch->lo, ch->zero);
}

/* clamp(floor((acc * m0 + 2^(total_shift - 1)) / 2^total_shift), lo, hi) + zero. */
static inline int32_t qcc_single_apply(const qcc_single_channel *ch, int32_t acc)
{
    const int64_t product = (int64_t)acc * (int64_t)ch->m0;
    int32_t y;
    if (qcc_single_is_common(ch)) {
        return qcc_single_apply_common(ch, acc);
    } else { /* total_shift <= 32: floor division of the unsigned bit pattern */
        const int total_shift = 32 + ch->k;
        const int64_t sum = product + (INT64_C(1) << (total_shift - 1));
        const int64_t wide = sum >= 0 ? (sum >> total_shift) : -(int64_t)((~(uint64_t)sum) >> total_shift) - 1;
        y = wide < ch->lo ? ch->lo : wide > ch->hi ? ch->hi : (int32_t)wide;
    }
    return y + ch->zero;
}

static inline int32_t qcc_requantize_single(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    const qcc_single_channel ch = qcc_single_channel_of(m0, shift, lo, hi, 0);
    return qcc_single_apply(&ch, acc);
}

#endif /* QCC_REQUANT_SINGLE_H */
