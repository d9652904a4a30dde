/* The `single` rounding scheme (CMSIS-NN single rounding, TVM QNN UPWARD):
 *   y = (acc * M0 + 2^(30 - e)) >> (31 - e)  in 64 bits, halves rounded up.
 * One 32x32->64 multiply-accumulate and a shift. The arithmetic right shift of a possibly
 * negative int64 is written as a floor division on the unsigned bit pattern (no UB, no
 * implementation-defined shift). Twin of qcc/numerics/single_rounding.py. */
#ifndef QCC_REQUANT_SINGLE_H
#define QCC_REQUANT_SINGLE_H

#include <stdint.h>

static inline int32_t qcc_requantize_single(int32_t acc, uint32_t m0, int shift, int32_t lo, int32_t hi)
{
    const int total_shift = 31 - shift; /* 1..62 */
    /* m0 < 2^31: a signed operand lets Cortex-M use one SMLAL */
    const int64_t product = (int64_t)acc * (int64_t)(int32_t)m0;
    if (total_shift > 32) {
        /* |product + rounding| < 2^62, so adding 2^63 makes it positive without wrapping: its high
         * word, shifted right by k logically, is floor(sum / 2^total_shift) + 2^(31 - k). Only an
         * SMLAL and one shift, no branch on the sign (the usual scales, M < 1/4, take this path). */
        const int k = total_shift - 32; /* 1..30 */
        const uint64_t biased = (uint64_t)product + (UINT64_C(1) << (total_shift - 1)) + (UINT64_C(1) << 63);
        const int32_t y = (int32_t)((uint32_t)(biased >> 32) >> k) - (int32_t)(UINT32_C(1) << (31 - k));
        return y < lo ? lo : y > hi ? hi : y;
    } else {
        const int64_t sum = product + (INT64_C(1) << (total_shift - 1));
        const int64_t y = sum >= 0 ? (sum >> total_shift) : -(int64_t)((~(uint64_t)sum) >> total_shift) - 1;
        return y < lo ? lo : y > hi ? hi : (int32_t)y;
    }
}

#endif /* QCC_REQUANT_SINGLE_H */
