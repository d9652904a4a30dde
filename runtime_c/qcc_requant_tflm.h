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

#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32, qcc_smlal_high_shift */

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

/* RDBPOT(SRDHM(x, m0), n) for 0 <= m0 < 2^31 and 0 <= n <= 31, both roundings in one. With
 * s = SRDHM(x, m0) = floor((x * m0 + 2^30) / 2^31) (for x * m0 < 0, truncating (x * m0 + 1 - 2^30) / 2^31
 * toward zero is rounding it up, which is that floor) and, for n >= 1,
 * RDBPOT(s, n) = floor((s + 2^(n-1) - [s < 0]) / 2^n) (halves away from zero), the rules
 * floor(floor(a / b) / c) = floor(a / (b * c)) and "an integer moves inside a floor" give
 *   RDBPOT(SRDHM(x, m0), n) = floor((x * m0 + 2^30 + 2^(30+n) - 2^31 [s < 0]) / 2^(31+n)).
 * [s < 0] may be replaced by [x < 0]: they differ only where x < 0 and s = 0, where the numerator lies
 * in [0, 2^(30+n)) either way and the quotient is 0. |x * m0| < 2^62 and the sum fits an int64; its
 * quotient fits an int32. For n >= 1 that quotient is the sum's high word (floor(sum / 2^32)) shifted
 * right by n - 1 more; for n = 0, bits 31..62 of the sum. qcc_tflm_scaler holds the constants of one
 * (m0, n), qcc_tflm_scale(x, m0, n) is the function. */
typedef struct {
    int32_t m0;
    int n;
    uint64_t rounding[2]; /* by x's sign bit: 2^30 + 2^(30+n) - 2^31 [x < 0] for n >= 1, 2^30 for n = 0 */
} qcc_tflm_scaler;

/* (m0, n)'s constants, worked out once for a kernel's run of values */
static inline qcc_tflm_scaler qcc_tflm_scaler_of(int32_t m0, int n)
{
    qcc_tflm_scaler sc;
    sc.m0 = m0;
    sc.n = n;
    sc.rounding[0] = (UINT64_C(1) << 30) + (n > 0 ? UINT64_C(1) << (30 + n) : 0u);
    sc.rounding[1] = sc.rounding[0] - (n > 0 ? UINT64_C(1) << 31 : 0u);
    return sc;
}

static inline int32_t qcc_tflm_scaler_apply(const qcc_tflm_scaler *sc, int32_t x)
{
    const uint64_t sum = (uint64_t)((int64_t)x * (int64_t)sc->m0) + sc->rounding[(uint32_t)x >> 31];
    if (sc->n == 0) {
        return qcc_wrap_u32_to_i32((uint32_t)(sum >> 31));
    }
    return qcc_floor_shift_i32(qcc_wrap_u32_to_i32((uint32_t)(sum >> 32)), sc->n - 1);
}

static inline int32_t qcc_tflm_scale(int32_t x, int32_t m0, int n)
{
    const qcc_tflm_scaler sc = qcc_tflm_scaler_of(m0, n);
    return qcc_tflm_scaler_apply(&sc, x);
}

/* TFLM's MultiplyByQuantizedMultiplier with qcc's saturation of acc * 2^e (e > 0), clamped to [lo, hi].
 * Out of line: the kernels' channels take the path below, where M < 1/4. Cold (GNU C): the kernels that can call
 * it keep their loops' registers for the common path (GCC stopped inlining it once qcc_kernels.c grew, and the
 * call then cost the depthwise 3x3 kernel 1.6%). */
#if defined(__GNUC__) && defined(__OPTIMIZE__) /* (optimizing builds: where it matters, as QCC_ALWAYS_INLINE) */
__attribute__((cold))
#endif
static int32_t qcc_tflm_general(int32_t acc, int32_t m0, int e, int32_t lo, int32_t hi)
{
    int32_t x = acc, y;
    if (e > 0) { /* acc * 2^e, saturated to int32 */
        const int64_t wide = (int64_t)acc * (INT64_C(1) << e);
        x = wide > INT32_MAX ? INT32_MAX : wide < INT32_MIN ? INT32_MIN : (int32_t)wide;
    }
    y = qcc_tflm_scale(x, m0, e > 0 ? 0 : -e);
    return y < lo ? lo : y > hi ? hi : y;
}

/* One channel's requantization with its constants worked out once per channel (a kernel's run of
 * outputs), the same numbers as qcc_requantize_tflm in fewer instructions. Where M < 1/4 (e <= -2,
 * n = -e >= 2, the usual scales), qcc_tflm_scale's sum is one SMLAL onto a constant whose two words
 * follow x's sign bit, (2^(n-2), 2^30) or (2^(n-2) - 1, 3 * 2^30), and its high word takes one ASR by
 * k = n - 1, as in `single`. Elsewhere, qcc_tflm_general. */
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

/* M < 1/4: qcc_tflm_scale's sum constant, chosen by x's sign. */
static inline uint64_t qcc_tflm_signed_rounding(const qcc_tflm_channel *ch, int32_t acc)
{
    const uint32_t negative = (uint32_t)acc >> 31;
    return ((uint64_t)((uint32_t)ch->round_hi - negative) << 32) | (UINT32_C(0x40000000) | (negative << 31));
}

static inline int32_t qcc_tflm_apply_signed(const qcc_tflm_channel *ch, int32_t acc)
{
    return qcc_smlal_high_shift(acc, ch->m0, qcc_tflm_signed_rounding(ch, acc), ch->k, ch->lo, ch->hi, ch->zero);
}

/* The common case (qcc_tflm_is_common): M < 1/4 and a clamp whose lower end is at or above the zero
 * point (lo >= 0: every Relu-like output, and int8 outputs with Z = -128). There the x >= 0 constant
 * serves every x: for x < 0, x * m0 <= -2^30 (m0 >= 2^30, or m0 = 0 and x * m0 = 0), so both
 * constants give a quotient <= 0, and the clamp takes both to lo. One SMLAL onto a constant, one ASR. */
static inline int qcc_tflm_is_common(const qcc_tflm_channel *ch)
{
    return ch->k > 0 && ch->lo >= 0;
}

static inline uint64_t qcc_tflm_common_rounding(const qcc_tflm_channel *ch)
{
    return ((uint64_t)(uint32_t)ch->round_hi << 32) | UINT32_C(0x40000000);
}

static inline int32_t qcc_tflm_apply_common(const qcc_tflm_channel *ch, int32_t acc)
{
    return qcc_smlal_high_shift(acc, ch->m0, qcc_tflm_common_rounding(ch), ch->k, ch->lo, ch->hi, ch->zero);
}

/* The two where hi = lo + 255 (QCC_CASE_FAST_BYTE, QCC_CASE_BYTE): the clamp as one USAT. */
static inline int32_t qcc_tflm_apply_signed_byte(const qcc_tflm_channel *ch, int32_t acc)
{
    return qcc_smlal_high_shift_byte(acc, ch->m0, qcc_tflm_signed_rounding(ch, acc), ch->k, ch->lo, ch->zero);
}

static inline int32_t qcc_tflm_apply_byte(const qcc_tflm_channel *ch, int32_t acc)
{
    return qcc_smlal_high_shift_byte(acc, ch->m0, qcc_tflm_common_rounding(ch), ch->k, ch->lo, ch->zero);
}

static inline int32_t qcc_tflm_apply(const qcc_tflm_channel *ch, int32_t acc)
{
    if (ch->k > 0) {
        return qcc_tflm_apply_signed(ch, acc);
    }
    return qcc_tflm_general(acc, ch->m0, ch->e, ch->lo, ch->hi) + ch->zero;
}

/* The gemmlowp definition above, SRDHM then RDBPOT, through the per-channel path. */
static inline int32_t qcc_requantize_tflm(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    const qcc_tflm_channel ch = qcc_tflm_channel_of(m0, shift, lo, hi, 0);
    return qcc_tflm_apply(&ch, acc);
}

#endif /* QCC_REQUANT_TFLM_H */
