/* qcc runtime: com.microsoft QLinearSoftmax, bit-exact to ONNX Runtime, in integers only.
 *
 * ORT looks each code up in a float32 exp table (entry i for a code i - 255 below the row's
 * maximum), sums a row in float32 one element after another, and rounds
 * q = nearbyint(t * Y / sum) in double precision (Y = floor(1 / s_y)); y = saturate(q + z_y).
 * Here every table value is an exact integer pair: its 24-bit significand m and its biased
 * float32 exponent E, packed as (E << 24) | m with value m * 2^(E - 150) (E = 0 only for 0.0).
 * The row sum repeats float32's round-half-to-even additions on those pairs, and q is the exact
 * rational t * Y / sum rounded half to even, which is what ORT's double arithmetic yields.
 *
 * The tensor is viewed as [outer][depth][inner]; a softmax runs over depth elements at stride
 * inner, summed in increasing index order. x and y may be the same buffer. */
#ifndef QCC_SOFTMAX_H
#define QCC_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t outer;             /* product of the dimensions before the axis */
    int32_t depth;             /* elements of one softmax */
    int32_t inner;             /* their stride: product of the dimensions after the axis (1 for 2-D coercion) */
    const uint32_t *exp_table; /* [256]: entry i, as (E << 24) | m, for a code i - 255 below the maximum */
    uint32_t y_factor;         /* Y = floor(1 / s_y), below 2^24 */
    int32_t zero;              /* z_y */
    int32_t lo, hi;            /* output clamp, in codes (the type's range, narrowed by a folded Relu/Clip) */
} qcc_softmax_params;

void qcc_softmax_u8(const qcc_softmax_params *p, const uint8_t *x, uint8_t *y);
void qcc_softmax_s8(const qcc_softmax_params *p, const int8_t *x, int8_t *y);

/* TFLite's SOFTMAX on int8 as TFLM computes it (reference_ops::Softmax, gemmlowp fixed point):
 * per row of depth codes, with d = max - code, sum = the row's sum of sum_table[d] (Q12.19), its
 * reciprocal r in Q0.31 with bits = 12 - clz(sum) (GetReciprocal: Newton-Raphson in Q2.29), and
 * y = RDBPOT(SRDHM(r, exp_table[d]), bits + 23) - 128, clamped to int8. The tables hold 0 where
 * TFLM skips a difference (below diff_min). Twin of qcc/ops/softmax.py's TflmSoftmax.reference. */
typedef struct {
    int32_t rows, depth;
    const int32_t *exp_table; /* [256]: exp of the scaled difference d, Q0.31 */
    const int32_t *sum_table; /* [256]: the same, Q12.19 */
} qcc_softmax_tflm_params;

void qcc_softmax_tflm_s8(const qcc_softmax_tflm_params *p, const int8_t *x, int8_t *y);

/* TFLite's SOFTMAX on int16 (16x8 models) as TFLM computes it (reference_ops::SoftmaxInt16): per row, each
 * code's difference from the row's maximum scaled by MBQM(d, m0, e) (TFLM's int32 MultiplyByQuantizedMultiplier,
 * wrapping where it does), + 32767, looked up with interpolation in exp_lut; the row's int32 sum normalised
 * by its leading zeros h, looked up in reciprocal_lut; y = clamp((exp * r + 2^(30 - h)) >> (31 - h), 0, 32767).
 * The 513-entry tables are TFLM's LUTPopulate, computed by the compiler (qcc/numerics/tflm_int16.py, the twin).
 * y must not overlap x (the exponentials wait in y for the row's sum). */
typedef struct {
    int32_t rows, depth;
    int32_t m0, left, right;       /* MBQM: M0 and max(e, 0), max(-e, 0) */
    const int16_t *exp_lut;        /* [513]: exp on [-10, 0] */
    const int16_t *reciprocal_lut; /* [513]: 1 / (1 + x) on [0, 1] */
} qcc_softmax_tflm16_params;

void qcc_softmax_tflm_s16(const qcc_softmax_tflm16_params *p, const int16_t *x, int16_t *y);

#endif
