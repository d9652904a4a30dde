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

static inline int32_t qcc_requantize_tflm(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    int32_t x = acc, y;
    if (shift > 0) { /* acc * 2^shift, saturated to int32 */
        const int64_t wide = (int64_t)acc * (INT64_C(1) << shift);
        x = wide > INT32_MAX ? INT32_MAX : wide < INT32_MIN ? INT32_MIN : (int32_t)wide;
    }
    y = qcc_rounding_divide_by_pot(qcc_srdhm(x, (int32_t)m0), shift > 0 ? 0 : -shift);
    return y < lo ? lo : y > hi ? hi : y;
}

#endif /* QCC_REQUANT_TFLM_H */
