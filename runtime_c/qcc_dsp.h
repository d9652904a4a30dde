/* qcc runtime: what the kernels of several files need on cores with the DSP extension (Cortex-M4,
 * M7, M33, M55), which take the SMLAD/SMLALD paths (two 16x16 multiply-accumulates per instruction).
 * QCC_DSP is 1 there and 0 elsewhere, where the kernels take the portable C beside those paths. */
#ifndef QCC_DSP_H
#define QCC_DSP_H

#include <stdint.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#include <string.h>
#define QCC_DSP 1
/* SXTB16 of x rotated right by 8 bits: bytes 1 and 3 sign-extended to two int16. One instruction
 * (SXTB16 with ROR #8); GCC 12 does not fold the rotation into it, so it is spelt out for GCC. */
static inline int32_t qcc_sxtb16_ror8(uint32_t x)
{
#if defined(__GNUC__) && !defined(__clang__)
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return __sxtb16((x >> 8) | (x << 24));
#endif
}

/* UXTB16 of x rotated right by 8 bits: bytes 1 and 3 zero-extended to two int16 (as qcc_sxtb16_ror8). */
static inline int32_t qcc_uxtb16_ror8(uint32_t x)
{
#if defined(__GNUC__) && !defined(__clang__)
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return (int32_t)__uxtb16((x >> 8) | (x << 24));
#endif
}

/* SXTAB16 of x rotated right by 8 bits: acc's two int16 lanes plus bytes 1 and 3 of x, sign-extended (each lane
 * wraps modulo 2^16). One instruction, spelt out for GCC as qcc_sxtb16_ror8. */
static inline uint32_t qcc_sxtab16_ror8(uint32_t acc, uint32_t x)
{
#if defined(__GNUC__) && !defined(__clang__)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
#else
    return (uint32_t)__sxtab16((int32_t)acc, (int32_t)((x >> 8) | (x << 24)));
#endif
}

/* The 32 bits at p, of any alignment (one LDR: Cortex-M3 and up load unaligned words). */
static inline uint32_t qcc_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
#else
#define QCC_DSP 0
#endif

#endif /* QCC_DSP_H */
