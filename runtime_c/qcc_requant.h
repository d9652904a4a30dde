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
#define QCC_REQUANTIZE_SCHEME(acc, m, s, lo, hi, f32_exact) qcc_requantize_ort(acc, m, s, lo, hi, f32_exact)
#elif defined(QCC_ROUNDING_TFLM)
#include "qcc_requant_tflm.h"
#define QCC_REQUANTIZE_SCHEME(acc, m, s, lo, hi, f32_exact) qcc_requantize_tflm(acc, m, s, lo, hi)
#elif defined(QCC_ROUNDING_SINGLE)
#include "qcc_requant_single.h"
#define QCC_REQUANTIZE_SCHEME(acc, m, s, lo, hi, f32_exact) qcc_requantize_single(acc, m, s, lo, hi)
#else
#error "qcc_config.h names no rounding scheme"
#endif

/* One output channel's requantization parameters, loaded once for a run of outputs of that channel
 * (a kernel's output loop), so that each output costs only the scheme's arithmetic. */
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
#else
typedef struct {
    uint32_t mult;
    int shift;
    int32_t lo, hi, zero;
    int acc_f32_exact;
} qcc_requant_channel;

static inline qcc_requant_channel qcc_requant_channel_of(const qcc_requant_params *rq, int32_t c)
{
    const int32_t i = c * rq->per_channel;
    qcc_requant_channel ch;
    ch.mult = rq->mult[i];
    ch.shift = rq->shift[i];
    ch.lo = rq->lo;
    ch.hi = rq->hi;
    ch.zero = rq->zero;
    ch.acc_f32_exact = rq->acc_f32_exact;
    return ch;
}

/* The requantized output code of accumulator acc in channel ch. */
static inline int32_t qcc_requantize_channel(const qcc_requant_channel *ch, int32_t acc)
{
    return QCC_REQUANTIZE_SCHEME(acc, ch->mult, ch->shift, ch->lo, ch->hi, ch->acc_f32_exact) + ch->zero;
}
#endif

/* The requantized output code for accumulator acc of output channel c. */
static inline int32_t qcc_requantize(const qcc_requant_params *rq, int32_t acc, int32_t c)
{
    const qcc_requant_channel ch = qcc_requant_channel_of(rq, c);
    return qcc_requantize_channel(&ch, acc);
}

#endif /* QCC_REQUANT_H */
