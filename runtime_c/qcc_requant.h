/* Selects the rounding scheme the model was compiled for (qcc_config.h names it).
 * Kernels call qcc_requantize() and never a scheme directly, so a scheme is one header. */
#ifndef QCC_REQUANT_H
#define QCC_REQUANT_H

#include "qcc_config.h"
#include "qcc_kernels.h"

#if defined(QCC_ROUNDING_ORT_FPU)
#include "qcc_requant_ort_fpu.h" /* --fpu: the `ort` scheme in float32 instructions */
#elif defined(QCC_ROUNDING_ORT)
#include "qcc_requant_ort.h"
#elif defined(QCC_ROUNDING_TFLM)
#include "qcc_requant_tflm.h"
#define QCC_CHANNEL_TYPE qcc_tflm_channel /* (M0, e) per channel, constants worked out once */
#define QCC_CHANNEL_OF qcc_tflm_channel_of
#define QCC_CHANNEL_APPLY qcc_tflm_apply
#define QCC_CHANNEL_IS_COMMON qcc_tflm_is_common
#define QCC_CHANNEL_APPLY_COMMON qcc_tflm_apply_common
#define QCC_CHANNEL_APPLY_BYTE qcc_tflm_apply_byte
#define QCC_CHANNEL_APPLY_FAST_BYTE qcc_tflm_apply_signed_byte
#define QCC_CHANNEL_IS_FAST(ch) ((ch)->k > 0) /* M < 1/4, any clamp: qcc_tflm_apply_signed */
#define QCC_CHANNEL_APPLY_FAST qcc_tflm_apply_signed
#elif defined(QCC_ROUNDING_SINGLE)
#include "qcc_requant_single.h"
#define QCC_CHANNEL_TYPE qcc_single_channel
#define QCC_CHANNEL_OF qcc_single_channel_of
#define QCC_CHANNEL_APPLY qcc_single_apply
#define QCC_CHANNEL_IS_COMMON qcc_single_is_common
#define QCC_CHANNEL_APPLY_COMMON qcc_single_apply_common
#define QCC_CHANNEL_APPLY_BYTE qcc_single_apply_byte
#define QCC_CHANNEL_APPLY_FAST_BYTE qcc_single_apply_byte /* single's fast case is its common one */
#define QCC_CHANNEL_IS_FAST qcc_single_is_common /* single's common case has no condition on the clamp */
#define QCC_CHANNEL_APPLY_FAST qcc_single_apply_common
#else
#error "qcc_config.h names no rounding scheme"
#endif

/* One output channel's requantization, loaded once for a run of outputs of that channel (a
 * kernel's output loop), so that each output costs only the scheme's arithmetic. Each scheme
 * defines qcc_requant_channel, qcc_requant_channel_of and qcc_requantize_channel. */
#if defined(QCC_ROUNDING_ORT_FPU)
typedef struct {
    float scale, lo, hi;
    int32_t zero;
} qcc_requant_channel;

static inline qcc_requant_channel qcc_requant_channel_of(const qcc_requant_params *rq, int32_t c)
{
    qcc_requant_channel ch;
    ch.scale = rq->scale[c * rq->per_channel];
    ch.lo = (float)rq->lo; /* exact: |lo|, |hi| < 2^24 */
    ch.hi = (float)rq->hi;
    ch.zero = rq->zero;
    return ch;
}

/* The requantized output code of accumulator acc in channel ch. */
static inline int32_t qcc_requantize_channel(const qcc_requant_channel *ch, int32_t acc)
{
    return qcc_requantize_ort_fpu(acc, ch->scale, ch->lo, ch->hi) + ch->zero;
}
#elif defined(QCC_ROUNDING_ORT)
typedef struct {
    qcc_ort_fast fast;
    int32_t zero;                 /* the zero point minus 2^(30-j): added to the fast path's r' */
    int32_t lo_zero;              /* fast.lo + zero: added to qcc_requantize_ort_fast_byte's code */
    const qcc_requant_params *rq; /* the exact path's parameters: channel i of rq */
    int32_t i;
} qcc_requant_channel;

static inline qcc_requant_channel qcc_requant_channel_of(const qcc_requant_params *rq, int32_t c)
{
    const int32_t i = c * rq->per_channel;
    qcc_requant_channel ch;
    ch.fast.fast_mult = (int32_t)rq->mult[i]; /* M < 2^31 */
    ch.fast.bias_hi = rq->fast_bias;
    ch.fast.window = rq->fast_window;
    ch.fast.shift = (int)rq->fast_shift;
    ch.fast.lo = rq->fast_lo;
    ch.fast.hi = rq->fast_hi;
    ch.zero = rq->fast_zero;
    ch.lo_zero = rq->fast_lo + rq->fast_zero;
    ch.rq = rq;
    ch.i = i;
    return ch;
}

/* The rare outputs the fast path hands over. Not inline: one copy, called from the kernels. */
static int32_t qcc_requantize_ort_exact(const qcc_requant_params *rq, int32_t i, int32_t acc)
{
    const uint32_t fast_mult = rq->mult[i];
    const int shift = rq->shift[i];
    const uint32_t mult = rq->exact_mult ? rq->exact_mult[i] : fast_mult ? fast_mult >> (32 + rq->fast_shift - shift) : 0u;
    return qcc_requantize_ort(acc, mult, shift, rq->lo, rq->hi, rq->acc_f32_exact) + rq->zero;
}

/* The requantized output code of accumulator acc in channel ch. */
static inline int32_t qcc_requantize_channel(const qcc_requant_channel *ch, int32_t acc)
{
    int32_t y;
    return qcc_requantize_ort_fast(&ch->fast, acc, &y) ? y + ch->zero : qcc_requantize_ort_exact(ch->rq, ch->i, acc);
}
#else /* tflm, single: each scheme header's channel type, built from (M0, e) */
typedef QCC_CHANNEL_TYPE qcc_requant_channel;

static inline qcc_requant_channel qcc_requant_channel_of(const qcc_requant_params *rq, int32_t c)
{
    const int32_t i = c * rq->per_channel;
    return QCC_CHANNEL_OF(rq->mult[i], rq->shift[i], rq->lo, rq->hi, rq->zero);
}

/* The requantized output code of accumulator acc in channel ch. */
static inline int32_t qcc_requantize_channel(const qcc_requant_channel *ch, int32_t acc)
{
    return QCC_CHANNEL_APPLY(ch, acc);
}

/* The cases a kernel's loop may be specialised for, each the arithmetic of its channels alone:
 * QCC_CASE_COMMON, the scheme's common case (M < 1/4 and, for tflm, a clamp at or above the zero
 * point); QCC_CASE_FAST, M < 1/4 with any clamp (tflm: the rounding constant follows the sign);
 * QCC_CASE_ANY, every channel. */
#define QCC_CASE_ANY 0
#define QCC_CASE_COMMON 1
#define QCC_CASE_FAST 2
#define QCC_CASE_BYTE 3 /* the common case with a clamp of 256 codes: an 8-bit output's whole range, or all of
                         * it above its zero point (Relu, and Relu6 where 6 is at or above the top code) */
#define QCC_CASE_FAST_BYTE 4 /* the fast case with a clamp of 256 codes (an 8-bit output with no activation) */

static inline int qcc_requant_channel_is_common(const qcc_requant_channel *ch)
{
    return QCC_CHANNEL_IS_COMMON(ch);
}

/* The common case with hi = lo + 255: qcc_smlal_high_shift_byte's one USAT for the clamp. */
static inline int qcc_requant_channel_is_byte(const qcc_requant_channel *ch)
{
    return QCC_CHANNEL_IS_COMMON(ch) && ch->hi - ch->lo == 255;
}

static inline int qcc_requant_channel_is_fast_byte(const qcc_requant_channel *ch)
{
    return QCC_CHANNEL_IS_FAST(ch) && ch->hi - ch->lo == 255;
}

/* The narrowest case both channels are in (a kernel's pair of output channels). */
static inline int qcc_requant_pair_case(const qcc_requant_channel *a, const qcc_requant_channel *b)
{
    if (qcc_requant_channel_is_byte(a) && qcc_requant_channel_is_byte(b)) {
        return QCC_CASE_BYTE;
    }
    if (qcc_requant_channel_is_fast_byte(a) && qcc_requant_channel_is_fast_byte(b)) {
        return QCC_CASE_FAST_BYTE;
    }
    if (QCC_CHANNEL_IS_COMMON(a) && QCC_CHANNEL_IS_COMMON(b)) {
        return QCC_CASE_COMMON;
    }
    return QCC_CHANNEL_IS_FAST(a) && QCC_CHANNEL_IS_FAST(b) ? QCC_CASE_FAST : QCC_CASE_ANY;
}

static inline int32_t qcc_requantize_channel_case(const qcc_requant_channel *ch, int32_t acc, int which)
{
    return which == QCC_CASE_BYTE      ? QCC_CHANNEL_APPLY_BYTE(ch, acc)
         : which == QCC_CASE_FAST_BYTE ? QCC_CHANNEL_APPLY_FAST_BYTE(ch, acc)
         : which == QCC_CASE_COMMON ? QCC_CHANNEL_APPLY_COMMON(ch, acc)
         : which == QCC_CASE_FAST   ? QCC_CHANNEL_APPLY_FAST(ch, acc)
                                    : QCC_CHANNEL_APPLY(ch, acc);
}
#endif

#if defined(QCC_ROUNDING_ORT_FPU) || defined(QCC_ROUNDING_ORT)
/* ort and --fpu have one case per channel: their fast path's fallback depends on the value; ort's byte case
 * clamps its fast path's code with one USAT where the clamp spans 256 codes. */
#define QCC_CASE_ANY 0
#define QCC_CASE_COMMON 1
#define QCC_CASE_FAST 2
#define QCC_CASE_BYTE 3
#define QCC_CASE_FAST_BYTE 4

static inline int qcc_requant_channel_is_common(const qcc_requant_channel *ch)
{
    (void)ch;
    return 1;
}

static inline int qcc_requant_channel_is_byte(const qcc_requant_channel *ch)
{
#if defined(QCC_ROUNDING_ORT)
    return ch->fast.hi - ch->fast.lo == 255;
#else
    (void)ch;
    return 0;
#endif
}

static inline int qcc_requant_channel_is_fast_byte(const qcc_requant_channel *ch)
{
    return qcc_requant_channel_is_byte(ch);
}

static inline int qcc_requant_pair_case(const qcc_requant_channel *a, const qcc_requant_channel *b)
{
    return qcc_requant_channel_is_byte(a) && qcc_requant_channel_is_byte(b) ? QCC_CASE_BYTE : QCC_CASE_COMMON;
}

static inline int32_t qcc_requantize_channel_case(const qcc_requant_channel *ch, int32_t acc, int which)
{
#if defined(QCC_ROUNDING_ORT)
    if (which == QCC_CASE_BYTE || which == QCC_CASE_FAST_BYTE) {
        int32_t y;
        return qcc_requantize_ort_fast_byte(&ch->fast, acc, &y) ? y + ch->lo_zero
                                                                : qcc_requantize_ort_exact(ch->rq, ch->i, acc);
    }
#endif
    (void)which;
    return qcc_requantize_channel(ch, acc);
}
#endif

/* A layer's requantization case, worked out once per kernel call so that its output loop can be
 * specialised: QCC_LAYER_ONE_SHIFT where the compiler found every channel on the fast path with one
 * exponent (tflm, single: fast_shift = k > 0, fast_bias = 2^(k-1)), nothing then being worked out per
 * output (a fully connected layer has one output per channel); QCC_LAYER_ONE_SHIFT_SIGNED the same
 * where tflm's rounding constant must follow acc's sign (lo < 0, see qcc_tflm_is_common);
 * QCC_LAYER_PER_CHANNEL otherwise. */
#define QCC_LAYER_PER_CHANNEL 0
#define QCC_LAYER_ONE_SHIFT 1
#define QCC_LAYER_ONE_SHIFT_SIGNED 2

static inline int qcc_requant_layer_case(const qcc_requant_params *rq)
{
#if defined(QCC_ROUNDING_TFLM)
    return rq->fast_shift <= 0 ? QCC_LAYER_PER_CHANNEL : rq->lo >= 0 ? QCC_LAYER_ONE_SHIFT : QCC_LAYER_ONE_SHIFT_SIGNED;
#elif defined(QCC_ROUNDING_SINGLE)
    return rq->fast_shift > 0 ? QCC_LAYER_ONE_SHIFT : QCC_LAYER_PER_CHANNEL;
#else
    (void)rq;
    return QCC_LAYER_PER_CHANNEL;
#endif
}

/* The requantized output code for accumulator acc of output channel c, in the layer's case `which`
 * (qcc_requant_layer_case). */
static inline int32_t qcc_requantize_case(const qcc_requant_params *rq, int32_t acc, int32_t c, int which)
{
#if defined(QCC_ROUNDING_TFLM) || defined(QCC_ROUNDING_SINGLE)
    if (which != QCC_LAYER_PER_CHANNEL) {
        const int32_t m0 = (int32_t)rq->mult[c * rq->per_channel];
#if defined(QCC_ROUNDING_TFLM)
        /* qcc_tflm_apply_signed's constant (2^(n-2), 2^30), or (2^(n-2) - 1, 3 * 2^30) where acc < 0 */
        const uint32_t negative = which == QCC_LAYER_ONE_SHIFT_SIGNED ? (uint32_t)acc >> 31 : 0u;
        const uint64_t rounding = ((uint64_t)(rq->fast_bias - negative) << 32) | (UINT32_C(0x40000000) | (negative << 31));
#else
        const uint64_t rounding = (uint64_t)rq->fast_bias << 32;
#endif
        return qcc_smlal_high_shift(acc, m0, rounding, rq->fast_shift, rq->lo, rq->hi, rq->zero);
    }
#else
    (void)which;
#endif
    {
        const qcc_requant_channel ch = qcc_requant_channel_of(rq, c);
        return qcc_requantize_channel(&ch, acc);
    }
}

/* A doubled accumulator's requantization: for kernels that carry acc2 = 2 * acc, which is exact where the
 * compiler bounded |acc| below 2^30 (qcc/ops/quantized.py doubled_requant, which works out the constants below per
 * channel), and costs nothing where the weights are int16 (doubled once per channel). Where M < 1/4 (k > 0 in the
 * scheme's channel) and the clamp is the output type's whole range, the code is
 *   floor(T / 2^(k+1)), T = floor((C * 2^32 + acc2 * m0 [+ 2^31]) / 2^32), C = 2^k + Z * 2^(k+1),
 * saturated to the type: one SMMLA (`single`) or SMMLAR (`tflm`: the + 2^31), one ASR and one SSAT/USAT.
 * Since floor(floor(a / 2^32) / 2^(k+1)) = floor(a / 2^(33+k)), T / 2^(k+1) is
 * floor((acc * m0 + C * 2^31 [+ 2^30]) / 2^(32+k)): `single`'s (acc * m0 + 2^(31+k)) / 2^(32+k) + Z, and `tflm`'s
 * (acc * m0 + 2^30 + 2^(30+n)) / 2^(31+n) + Z for n = k + 1 (qcc_tflm_scale's sum, x >= 0). QCC_DOUBLED_SIGNED:
 * `tflm` with a clamp below the zero point (lo < 0), whose constant for acc < 0 is 2^31 less (qcc_tflm_apply_signed):
 * T - 1 there. k <= 21 keeps C an int32 (|Z| <= 255) and the 64-bit sum below 2^63 (|acc2 * m0| < 2^62). */
#define QCC_DOUBLED_NONE 0
#define QCC_DOUBLED_COMMON 1
#define QCC_DOUBLED_SIGNED 2
#define QCC_DOUBLED_MAX_K 21

typedef struct {
    int32_t m0, round; /* m0 and C */
    int shift;         /* k + 1 */
} qcc_requant_doubled;

/* Channel c's constants (m0 from rq, C and the shift from the compiler's arrays): whether it takes the path. */
static inline int qcc_requant_doubled_channel(const qcc_requant_params *rq, const int32_t *rounds, const int8_t *shifts,
                                              int32_t c, qcc_requant_doubled *d)
{
    d->m0 = (int32_t)rq->mult[c * rq->per_channel]; /* m0 < 2^31 */
    d->round = rounds[c];
    d->shift = shifts[c];
    return d->shift != 0;
}

#if defined(QCC_ROUNDING_TFLM) || defined(QCC_ROUNDING_SINGLE)
/* floor((acc * 2^32 + a * b + round) / 2^32) for round 0 (SMMLA) or 2^31 (SMMLAR), |acc| < 2^30, |a * b| < 2^62 */
static inline int32_t qcc_smmla_round(int32_t a, int32_t b, int32_t acc, int round)
{
#if defined(__GNUC__) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(QCC_NO_INLINE_ASM)
    int32_t r;
    if (round) {
        __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    } else {
        __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    }
    return r;
#else
    const uint64_t sum = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * (int64_t)b) +
                         (round ? UINT64_C(0x80000000) : 0u);
    return qcc_wrap_u32_to_i32((uint32_t)(sum >> 32));
#endif
}

/* The doubled accumulator acc2's code before the type's saturation, in case `which` (QCC_DOUBLED_COMMON or
 * QCC_DOUBLED_SIGNED, a constant where inlined). */
static inline int32_t qcc_requantize_doubled(const qcc_requant_doubled *d, int32_t acc2, int which)
{
#if defined(QCC_ROUNDING_TFLM)
    int32_t t = qcc_smmla_round(acc2, d->m0, d->round, 1);
    if (which == QCC_DOUBLED_SIGNED) {
        t -= (int32_t)((uint32_t)acc2 >> 31);
    }
#else
    const int32_t t = qcc_smmla_round(acc2, d->m0, d->round, 0);
    (void)which;
#endif
    return qcc_floor_shift_i32(t, d->shift);
}
#else
/* ort and --fpu: the compiler never gives a layer the path, so no kernel reaches this */
static inline int32_t qcc_requantize_doubled(const qcc_requant_doubled *d, int32_t acc2, int which)
{
    (void)d;
    (void)which;
    return acc2;
}
#endif

/* The requantized output code for accumulator acc of output channel c. */
static inline int32_t qcc_requantize(const qcc_requant_params *rq, int32_t acc, int32_t c)
{
    return qcc_requantize_case(rq, acc, c, qcc_requant_layer_case(rq));
}

#endif /* QCC_REQUANT_H */
