/* The `ort` rounding scheme with float32 instructions (qcc compile --fpu): ONNX Runtime's own
 * requantization, computed the way MLAS computes it (MlasRequantizeOutput, scalar path):
 *
 *   v = f32(f32(acc) * scale)     scale: the float32 ratio ORT computes, per channel
 *   v = min(max(v, lo), hi)       lo, hi: the clamp with the zero point subtracted (integers, so
 *                                 clamping before rounding is the same as after)
 *   r = rne(v)                    v + 1.5 * 2^23 rounds to an integer, ties to even, and the bits of
 *                                 the sum less those of 1.5 * 2^23 are that integer (|v| <= 2^22)
 *
 * The zero point is added by the caller. This is ORT's arithmetic exactly when float is IEEE
 * binary32 evaluated in float (FLT_EVAL_METHOD 0) in the default rounding mode (to nearest, ties
 * to even) and the multiply is not fused with the add (-ffp-contract=off, in the Makefile of a
 * --fpu build); the checks below stop a build where it would not be. No libm.
 * Same numbers as the integer emulation of qcc_requant_ort.h and qcc/numerics/ort_float32.py. */
#ifndef QCC_REQUANT_ORT_FPU_H
#define QCC_REQUANT_ORT_FPU_H

#include <float.h>
#include <stdint.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "qcc --fpu: float expressions must be evaluated in float (FLT_EVAL_METHOD 0), e.g. SSE rather than x87"
#endif
#if defined(__FAST_MATH__)
#error "qcc --fpu: -ffast-math changes float results; build without it"
#endif
#if defined(__arm__) && !(defined(__ARM_FP) && (__ARM_FP & 4))
#error "qcc --fpu: this build has no single-precision FPU; use the target's flags (-mfloat-abi=softfp or hard, -mfpu=...)"
#endif

#define QCC_RNE_MAGIC 12582912.0f         /* 1.5 * 2^23: the float32 values around it are integers */
#define QCC_RNE_MAGIC_BITS INT32_C(0x4B400000) /* its bits */

/* clamp(rne(f32(f32(acc) * scale)), lo, hi), as ONNX Runtime computes it. */
static inline int32_t qcc_requantize_ort_fpu(int32_t acc, float scale, float lo, float hi)
{
    union {
        float f;
        uint32_t u;
    } rounded;
    float v = (float)acc * scale;
    v = v < lo ? lo : v; /* std::max(v, lo), then std::min(v, hi), as MLAS */
    v = hi < v ? hi : v;
    rounded.f = v + QCC_RNE_MAGIC;
    return (int32_t)rounded.u - QCC_RNE_MAGIC_BITS;
}

#endif /* QCC_REQUANT_ORT_FPU_H */
