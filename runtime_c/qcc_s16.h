/* qcc runtime: TensorFlow Lite Micro's 16x8 kernels (int16 activations, int8 weights), which
 * generated models of .tflite files quantized that way call. Zero points are 0 (the importer
 * requires it), so a padded tap reads 0 and contributes nothing. Tensors are channels first (NCHW). */
#ifndef QCC_S16_H
#define QCC_S16_H

#include <stdint.h>

#include "qcc_kernels.h" /* qcc_requant_params */

/* CONV_2D, DEPTHWISE_CONV_2D (groups == in_c) and FULLY_CONNECTED (a 1x1 convolution of a 1x1 image per
 * row: batch = rows, in_c = depth) at 16x8. acc = bias[c] + sum(w * x) over the window; then
 *   wide (an int64 bias: TFLM accumulates in int64): y = clamp((acc * wide_mult[c] + 2^(wide_shift[c] - 1))
 *     >> wide_shift[c], lo, hi), TFLM's MultiplyByQuantizedMultiplier(int64_t) with its 16-bit multiplier
 *     (qcc/numerics/tflm.py reduced_multiplier); the importer proves |acc| < 2^47, so nothing overflows;
 *   narrow (an int32 bias: TFLM accumulates in int32): acc modulo 2^32, requantized by the rounding scheme
 *     (requant), like the 8-bit kernels. */
typedef struct {
    int32_t batch, in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t groups;
    int32_t taps4;             /* in_c / groups * kernel_h * kernel_w rounded up to 4 */
    const int8_t *weights;     /* [out_c][taps4]: taps (input channel, kernel row, kernel column), zeros after
                                * them, each group of 4 stored in the order 0, 2, 1, 3 (SXTB16 pairs) */
    const int64_t *bias;       /* per out channel, or NULL */
    int32_t wide;              /* 1: int64 accumulator; 0: int32 */
    const int32_t *wide_mult;  /* wide: per out channel, 0..0x7FFF */
    const int8_t *wide_shift;  /* wide: per out channel, 8..46 */
    int32_t lo, hi;            /* wide: the output clamp (zero point 0) */
    qcc_requant_params requant; /* narrow */
} qcc_conv16_params;

/* scratch: taps4 int16 (the window of one output pixel), 2 * taps4 where taps4 < 512 and out_w > 1 (two pixels'
 * windows, summed in int32), word-aligned; NULL for a FULLY_CONNECTED (1x1 image and window, one group), whose
 * rows are read in place. */
void qcc_conv_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y, int32_t *scratch);
/* DEPTHWISE_CONV_2D (groups == in_c, out_c = in_c * multiplier) reading each window in place, its rows and
 * columns clipped to the input once per output: weights [out_c][kernel_h][kernel_w] in plain order (taps4 =
 * kernel_h * kernel_w), each window's sum in int32, which cannot overflow (the compiler picks this kernel only
 * for windows below 512 taps: |w x| <= 2^22), then the int64 bias. No scratch. */
void qcc_depthwise_s16(const qcc_conv16_params *p, const int16_t *x, int16_t *y);

/* QUANTIZE between int8 and int16 (and int16 to int16): TFLM's Requantize, y = clamp(MBQM(x - in_zero, M0, e)
 * + out_zero) with MultiplyByQuantizedMultiplier(int32) as TFLM computes it, wrapping where its C++ does
 * ((x - in_zero) * 2^e and the zero point's addition). */
typedef struct {
    int32_t count;
    int32_t in_zero, out_zero;
    int32_t m0;        /* QuantizeMultiplier of s_x / s_y (double) */
    int32_t left, right; /* max(e, 0), max(-e, 0) */
} qcc_requantize_params;

void qcc_requantize_s8_s16(const qcc_requantize_params *p, const int8_t *x, int16_t *y);
void qcc_requantize_s16_s8(const qcc_requantize_params *p, const int16_t *x, int8_t *y);
void qcc_requantize_s16_s16(const qcc_requantize_params *p, const int16_t *x, int16_t *y);

/* LOGISTIC and TANH on int16: TFLM's interpolation in its table of sigmoid(i / 24) (qcc/numerics/tflm_int16.py
 * states it; the compiler emits the table). v = (x * multiplier + rounding) >> shift, then per `tanh`. */
typedef struct {
    int32_t count;
    int32_t multiplier, shift, rounding;
    int32_t tanh;             /* 0: LOGISTIC; 1: TANH */
    const uint16_t *table;    /* [256] */
} qcc_sigmoid16_params;

void qcc_sigmoid_s16(const qcc_sigmoid16_params *p, const int16_t *x, int16_t *y);

#endif /* QCC_S16_H */
