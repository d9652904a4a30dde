/* com.microsoft QLinearAdd and QLinearMul with numpy-style broadcasting, bit-exact to ONNX
 * Runtime's float32 arithmetic on x86, computed with integers only (twin of
 * qcc/numerics/ort_add_mul.py, which explains the arithmetic).
 *
 * Both kernels work on bytes: int8 codes are read as code + 128 (byte ^ 0x80), and an output code
 * is held as code + 2^31, whose low byte is the code's byte. Tensors are row-major; the compiler
 * merges dimensions, so `dims` are the output's after merging and a stride of 0 broadcasts. */
#ifndef QCC_ADD_MUL_H
#define QCC_ADD_MUL_H

#include <stddef.h>
#include <stdint.h>

#define QCC_BROADCAST_MAX_RANK 8

typedef struct {
    int32_t rank; /* 1..QCC_BROADCAST_MAX_RANK */
    int32_t dims[QCC_BROADCAST_MAX_RANK];      /* output dims, outermost first */
    int32_t x_strides[QCC_BROADCAST_MAX_RANK]; /* in elements; 0 where the input is broadcast */
    int32_t y_strides[QCC_BROADCAST_MAX_RANK];
} qcc_broadcast_params;

/* QLinearAdd: v = fma(x, rX, T(y)), held exactly as E = v * 2^(32 + fine_shift) + 2^63 (uint64):
 * E = table[y] + (x ^ x_flip) * x_mult. T(y) = fma(y, rY, F) is the one rounding that depends on
 * y alone, so it is a table of the 256 codes (2 KB; for a constant Y, only the codes it holds,
 * and y is then an index). x and y are the operands in ORT's X and Y roles. */
typedef struct {
    qcc_broadcast_params shape;
    const uint32_t *table; /* per y: low word, high word */
    uint64_t x_mult;       /* rX in units of 2^-(32 + fine_shift) */
    uint32_t x_flip;       /* 0x80 for int8, 0 for uint8 */
    int32_t fine_shift;    /* 0 unless rX < 2^-8 */
    uint32_t lo, hi;       /* output clamp as code + 2^31 (saturation, folded Relu/Clip) */
} qcc_qlinear_add_params;

/* QLinearMul: v = f32(f32(p * r) + zC), p = (a - zA)(b - zB), r = r_mult * 2^(r_shift - 32). */
typedef struct {
    qcc_broadcast_params shape;
    uint32_t flip;          /* 0x80 for int8, 0 for uint8 */
    int32_t a_zero, b_zero; /* zero points + 128 for int8 */
    uint32_t r_mult;        /* float32 significand of r */
    int32_t r_shift;
    uint64_t c_offset;      /* zC * 2^32 + 2^63 */
    uint64_t overflow_at;   /* 2^31 - 64 - zC: f32(p * r) at or above it makes v >= 2^31 (qmin) */
    uint32_t lo, hi;        /* output clamp as code + 2^31 */
} qcc_qlinear_mul_params;

/* The `tflm` rounding scheme: TensorFlow Lite Micro's integer ADD and MUL kernels (reference/
 * integer_ops/add.h, mul.h), the same for uint8 and int8 (qcc/ops/add_mul.py states the formulas).
 * Multipliers and shifts are TFLM's (M0 in [2^30, 2^31) or 0; shift = TFLM's exponent). */
#define QCC_TFLM_ADD_LEFT_SHIFT 20

typedef struct {
    qcc_broadcast_params shape;
    /* per input byte (the code's byte, 256 entries): MBQMSTOE((code - Z) * 2^20, M, e) of that input,
     * computed at compile time (TFLM's two input scalings depend on the code alone) */
    const int32_t *a_scaled, *b_scaled;
    int32_t c_zero;
    int32_t c_mult, c_shift; /* QuantizeMultiplierSmallerThanOneExp of 2 max(sA, sB) / (2^20 sC); shift <= 0 */
    int32_t lo, hi;          /* output clamp (saturation, folded Relu/Clip) */
} qcc_add_tflm_params;

typedef struct {
    qcc_broadcast_params shape;
    int32_t a_zero, b_zero, c_zero;
    int32_t mult, shift; /* QuantizeMultiplier of sA sB / sC; shift <= 31 */
    int32_t lo, hi;      /* output clamp */
} qcc_mul_tflm_params;

/* int16 codes (TFLite's 16x8 models): TFLM's same ADD with left_shift 15 instead of 20, the inputs scaled in C
 * (MBQMSTOE((code - Z) * 2^15, M, e)) rather than through tables; MUL as for 8 bits (|product| < 2^31: the
 * importer requires zero points of 0). */
typedef struct {
    qcc_broadcast_params shape;
    int32_t a_zero, b_zero, c_zero;
    int32_t a_mult, a_shift, b_mult, b_shift; /* QuantizeMultiplierSmallerThanOneExp of sX / (2 max(sA, sB)) */
    int32_t c_mult, c_shift;                  /* ... of 2 max(sA, sB) / (2^15 sC) */
    int32_t b_sign;                           /* 1: ADD; -1: SUB (a' - b') */
    int32_t lo, hi;
} qcc_add_tflm16_params;

void qcc_add_tflm_s16(const qcc_add_tflm16_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void qcc_mul_tflm_s16(const qcc_mul_tflm_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void qcc_add_tflm_s8(const qcc_add_tflm_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void qcc_add_tflm_u8(const qcc_add_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out);
void qcc_mul_tflm_s8(const qcc_mul_tflm_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void qcc_mul_tflm_u8(const qcc_mul_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out);

void qcc_qlinear_add_8bit(const qcc_qlinear_add_params *p, const uint8_t *x, const uint8_t *y, uint8_t *out);
void qcc_qlinear_mul_8bit(const qcc_qlinear_mul_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out);

#endif /* QCC_ADD_MUL_H */
