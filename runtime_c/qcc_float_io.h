/* Float32 graph inputs and outputs (qcc compile --float-io), computed as ONNX Runtime does:
 *   QuantizeLinear:   q = clamp(rne(x / scale), qmin - zero, qmax - zero) + zero, NaN -> qmin
 *   DequantizeLinear: r = (float)(q - zero) * scale
 * and a .tflite model's float32 inputs, as TFLite Micro's QUANTIZE computes them (AffineQuantize):
 *   qcc_quantize_f32_s8_tflm: q = clamp(round_half_away(x / scale) + zero, -128, 127), NaN -> zero
 *   (qcc_quantize_f32_s16_tflm: the same to int16, for 16x8 models)
 *   (TFLM's float -> int32 cast is undefined beyond int32 and for NaN: this saturates; see qcc/numerics/tflm.py).
 * TFLM's DEQUANTIZE, (float)((double)scale * (q - zero)), is DequantizeLinear's value: the double
 * product is exact, so both are the exact product rounded once to float32.
 * Needs an FPU, or the compiler's soft-float; no libm. Evaluated in float32, so the target must
 * have FLT_EVAL_METHOD == 0 (true of Cortex-M FPUs and of x86-64 with SSE). */
#ifndef QCC_FLOAT_IO_H
#define QCC_FLOAT_IO_H

#include <stddef.h>
#include <stdint.h>

void qcc_quantize_f32_s8(const float *x, int8_t *q, size_t n, float scale, int32_t zero);
void qcc_quantize_f32_u8(const float *x, uint8_t *q, size_t n, float scale, int32_t zero);
void qcc_quantize_f32_s8_tflm(const float *x, int8_t *q, size_t n, float scale, int32_t zero);
void qcc_quantize_f32_s16_tflm(const float *x, int16_t *q, size_t n, float scale, int32_t zero);
void qcc_dequantize_s8_f32(const int8_t *q, float *r, size_t n, float scale, int32_t zero);
void qcc_dequantize_s16_f32(const int16_t *q, float *r, size_t n, float scale, int32_t zero);
void qcc_dequantize_u8_f32(const uint8_t *q, float *r, size_t n, float scale, int32_t zero);

#endif /* QCC_FLOAT_IO_H */
