/* qcc runtime: com.microsoft QLinearAveragePool, the windowed mean ONNX Runtime computes in float32.
 *
 * ORT dequantizes each code to xf = f32(s_x * (x - z_x)), adds a window's xf in float32 (rows
 * outer, columns inner), divides by f32(count), divides by s_y, adds f32(z_y) and rounds to
 * the nearest integer (ties to even); a result at or above 2^31 becomes qmin (x86's float to
 * int32 conversion). This kernel reproduces every float32 rounding with integers: xf is held as
 * an integer multiple of 2^E (a 256-entry table by code), each partial sum is rounded to 24
 * significant bits as float32 addition does, and the divisions are long divisions with a guard
 * and a sticky bit. Twin of qcc/numerics/ort_float32_sum.py.
 *
 * A window that covers the whole map without padding takes ORT's integer global-pool path
 * instead: the compiler emits qcc_global_avgpool_* (qcc_kernels.h) for it. */
#ifndef QCC_AVERAGE_POOL_H
#define QCC_AVERAGE_POOL_H

#include <stdint.h>

#include "qcc_kernels.h"

typedef struct {
    int32_t batch, channels, in_h, in_w;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t count_include_pad; /* 1: divide by kernel_h * kernel_w; 0: by the window's taps inside the map */
    int32_t channels_last;     /* 1: NHWC input and output; 0: NCHW */
    const int64_t *table;      /* [256] f32(s_x * (code - z_x)) / 2^E, indexed by the code's byte */
    int32_t exponent_offset;   /* E - Ey, with s_y = output_significand * 2^Ey */
    int32_t output_significand; /* s_y's significand, in [2^23, 2^24) */
    int32_t output_zero;       /* z_y */
    int32_t qmin, qmax;        /* the output type's range: ORT's clamp */
    int32_t lo, hi;            /* Relu/Clip folded in: the code is then clamped to [lo, hi] */
} qcc_avgpool_params;

void qcc_avgpool_s8(const qcc_avgpool_params *p, const int8_t *x, int8_t *y);
void qcc_avgpool_u8(const qcc_avgpool_params *p, const uint8_t *x, uint8_t *y);

/* TFLite's AVERAGE_POOL_2D as TFLM's int8 kernel computes it: per output, the sum of the codes of the
 * window's taps inside the map, divided by their count with halves away from zero (C's truncating
 * division of sum +- count / 2), clamped to [lo, hi] (the fused activation). NCHW. Twin of
 * qcc/ops/average_pool.py's TflmAveragePool.reference. */
typedef struct {
    int32_t batch, channels, in_h, in_w;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t lo, hi;
} qcc_avgpool_tflm_params;

void qcc_avgpool_tflm_s8(const qcc_avgpool_tflm_params *p, const int8_t *x, int8_t *y);
void qcc_avgpool_tflm_s16(const qcc_avgpool_tflm_params *p, const int16_t *x, int16_t *y); /* 16x8 models */

/* The output code for a window whose float32 sum is total * 2^E over count elements (exposed for tests). */
int32_t qcc_avgpool_code(const qcc_avgpool_params *p, int64_t total, int32_t count);
/* f32(total * 2^E + table[code] * 2^E) / 2^E: one float32 addition of the window sum (exposed for tests). */
int64_t qcc_avgpool_add(int64_t total, int64_t term);

#endif /* QCC_AVERAGE_POOL_H */
