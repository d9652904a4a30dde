/* Selects the rounding scheme the model was compiled for (qcc_config.h names it).
 * Kernels call qcc_requantize() and never a scheme directly, so a scheme is one header. */
#ifndef QCC_REQUANT_H
#define QCC_REQUANT_H

#include "qcc_config.h"
#include "qcc_kernels.h"

#if defined(QCC_ROUNDING_ORT)
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

/* The requantized output code for accumulator acc of output channel c. */
static inline int32_t qcc_requantize(const qcc_requant_params *rq, int32_t acc, int32_t c)
{
    const int32_t i = c * rq->per_channel;
    return QCC_REQUANTIZE_SCHEME(acc, rq->mult[i], rq->shift[i], rq->lo, rq->hi, rq->acc_f32_exact) + rq->zero;
}

#endif /* QCC_REQUANT_H */
