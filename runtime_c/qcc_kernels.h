/* qcc runtime: the kernels that generated models call.
 *
 * Each kernel takes one const parameter struct per layer, computed by the compiler and stored
 * in flash, so code size does not grow with the number of layers. Names end with the
 * activation type: _s8 for int8, _u8 for uint8. Weights are always int8 (the compiler moves
 * uint8 weights and their zero points down by 128, which leaves every product sum unchanged).
 * Tensors are in ONNX layout (NCHW), row-major. */
#ifndef QCC_KERNELS_H
#define QCC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "qcc_config.h" /* the rounding scheme: with --fpu, qcc_requant_params has a float scale */
#include "qcc_dsp_blocks.h" /* the assembly blocks that layers' parameters may name */

/* y = clamp(requantize(acc, mult[c], shift[c]), lo, hi) + zero, channel c = index * per_channel.
 * lo and hi are the output clamp with the zero point already subtracted (Relu/Clip folded in).
 * The ort scheme stores the fast path's multipliers in mult (qcc_requant_ort.h; the parameters come
 * from qcc/numerics/ort_float32.py fast_path): M = m * 2^(32 + fast_shift - shift) with m the scale's
 * float32 significand, or 0 where that channel always takes the exact path; every m is then
 * M >> (32 + fast_shift - shift), or exact_mult[c] when exact_mult is not NULL (some M is 0 with
 * m > 0). The other schemes leave exact_mult NULL and the fast_ fields 0. */
typedef struct {
    const uint32_t *mult; /* tflm, single: M0; ort: M, see above */
    const int8_t *shift; /* the scheme's shift (ort: right shift 15..57; tflm, single: exponent e) */
    int32_t per_channel; /* 1: one mult/shift per output channel; 0: one for the tensor */
    int32_t zero;
    int32_t lo;
    int32_t hi;
    int32_t acc_f32_exact; /* 1: range analysis proved |acc| <= 2^24 (the ort scheme skips rounding f32(acc)) */
    const uint32_t *exact_mult; /* ort: each channel's m when M cannot give it back, else NULL */
    int32_t fast_shift;         /* ort: j, 1..14; tflm, single: k = -e - 1 > 0 where every channel has the
                                 * one exponent e <= -2 (M < 1/4), else 0 */
    uint32_t fast_bias;         /* ort: 2^30 + 2^(j-1); tflm, single: 2^(k-1), the rounding's high word */
    uint32_t fast_window;       /* ort: 2^(15+j) + 1 */
    int32_t fast_lo;            /* ort: lo + 2^(30-j) */
    int32_t fast_hi;            /* ort: hi + 2^(30-j) */
    int32_t fast_zero;          /* ort: zero - 2^(30-j) */
#if defined(QCC_ROUNDING_ORT_FPU)
    const float *scale; /* --fpu: the float32 scale ORT multiplies by, per channel (mult and shift are NULL) */
#endif
} qcc_requant_params;

#define QCC_GEMM_MAX_PIXELS 16
/* qcc_fully_connected reads A in place, with no scratch, for layers of at most this many columns whose A has
 * its depth contiguous (qcc/ops/fully_connected.py NARROW_COLUMNS) */
#define QCC_FC_NARROW 4

typedef struct {
    int32_t batch, in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    /* Elements from one channel's rows to the next's: in_h * in_w and out_h * out_w for whole tensors;
     * a band of rows (streamed execution) is in_h or out_h rows of a plane that holds more. */
    int32_t in_plane, out_plane;
    /* 1: the input is channels last (N, H, W, C), read in place: a model's input image, which
     * qcc_conv_gemm reads without a channels-first copy (the other kernels take 0 only) */
    int32_t in_channels_last;
    /* NULL, or with in_channels_last the 256 codes (of the kernel's type) that the input's bytes stand for,
     * indexed by byte: a model's uint8 image that the convolution requantizes as it loads each code */
    const void *in_table;
    int32_t groups;
    int32_t gemm_pixels;        /* qcc_conv_gemm: output pixels whose columns are built at once (even,
                                 * 2..QCC_GEMM_MAX_PIXELS); 0 for the other kernels */
    int32_t plane_rows;         /* qcc_conv_depthwise_3x3: 0 for its ring of 3 padded rows in scratch; else
                                 * (out_h - 1) * stride_h + 3, the padded rows of a whole input plane that
                                 * scratch holds (small maps); 0 for the other kernels */
    int32_t plane_transposed;   /* qcc_conv_depthwise_3x3 with plane_rows: 1 where the plane is held transposed
                                 * (its rows the input's columns; plane_rows (out_w - 1) * stride_w + 3, and the
                                 * compiler stores each filter transposed); else 0 */
    int32_t input_zero;         /* Z_x: the code that padded taps read */
    const int8_t *weights;      /* [out_c][in_c / groups][kernel_h][kernel_w]; qcc_conv_gemm: its own layout */
    /* qcc_conv_gemm on DSP cores: NULL, or the 2 x 4 block for this layer's depth (qcc_dsp_blocks.h), which chunks of
     * 4 pixels or more take (for the layer's weights: int8, or int16 pairs with weights_wide) */
    void (*gemm_block_2x4)(const int8_t *w, const int16_t *cols, int32_t *acc);
    int32_t weights_wide;       /* qcc_conv_gemm with QCC_CONV_WIDE (--wide-weights): 1 where its weights are int16
                                 * pairs, the operands SMLAD takes (qcc/ops/conv.py gemm_wide_layout); else 0 */
    const int32_t *acc_const;   /* per out channel: bias - Z_x*sum(w - Z_w) */
    const int32_t *weight_zero; /* per out channel Z_w, or NULL when all are 0 */
    /* tflm and single on DSP cores: the doubled requantization (qcc_requantize_doubled), its constants worked out by
     * the compiler (qcc/ops/quantized.py doubled_requant): doubled_case QCC_DOUBLED_COMMON or QCC_DOUBLED_SIGNED for
     * the layer, and per channel (those computed) C and the shift k + 1, 0 where the channel keeps the general
     * requantization; QCC_DOUBLED_NONE and NULLs where no channel takes it. */
    int32_t doubled_case;
    const int32_t *doubled_round;
    const int8_t *doubled_shift;
    /* qcc_conv_gemm: output channels whose code is the same for every input (the compiler's proof: the
     * requantization gives one code at both ends of the channel's accumulator range), written as that code and not
     * computed: constant_c of them, constant_channel[i] written as constant_code[i]. The others are computed, the
     * i-th being output channel computed_channel[i] (NULL where none is constant: channel i); weights, acc_const,
     * weight_zero and requant hold only the computed channels. 0 and NULLs for the other kernels. */
    int32_t constant_c;
    const uint16_t *constant_channel;
    const int16_t *constant_code;
    const uint16_t *computed_channel;
    qcc_requant_params requant;
} qcc_conv_params;

typedef struct {
    int32_t rows, depth, cols;
    int32_t a_row_stride, a_depth_stride; /* a[m][k] is a[m * a_row_stride + k * a_depth_stride] */
    int32_t depth_chunk;                  /* depths of a row expanded into scratch at once, a multiple of 8:
                                           * kp (the whole row, fastest) or fewer, with one int32
                                           * accumulator per column kept in scratch between chunks */
    const int8_t *weights;                /* [cols][kp], laid out for qcc_fully_connected; with weights_wide,
                                           * words, each the int16 pair (w[k], w[k + 1]) (w[k] low) that SMLAD
                                           * takes as it is, a pair of columns' words interleaved (a zero column
                                           * after an odd last one): [cols / 2][kp / 2][2] (--wide-weights) */
    int32_t weights_wide;                 /* 1: the weights as int16 pairs (rows of A whole, expanded in scratch) */
    /* on DSP cores: NULL, or the block of 4 columns for this layer's kp (qcc_dsp_blocks.h), which rows expanded whole
     * take, int8 weights */
    void (*block_4col)(const int32_t *row, const int8_t *w, int32_t *acc);
    const int32_t *acc_const;             /* per column: bias - Z_a*sum(w) + depth*Z_a*Z_w */
    int32_t acc_const_row_stride;         /* 0: one row for all rows; cols: one row per row */
    const int32_t *weight_zero;           /* per column Z_w, or NULL when all are 0 */
    qcc_requant_params requant;
} qcc_fc_params;

typedef struct {
    int32_t batch, channels, count; /* count: elements averaged per channel */
    int32_t channels_last;
    int32_t acc_const;              /* -Z_x * count */
    qcc_requant_params requant;
} qcc_global_avgpool_params;

typedef struct {
    int32_t batch, channels, in_h, in_w;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t in_plane, out_plane; /* as in qcc_conv_params */
    int32_t clamp_lo, clamp_hi;  /* each maximum clamped to these codes (a TFLite fused activation) */
} qcc_maxpool_params;

#define QCC_MAX_RANK 6
typedef struct {
    int32_t out_dims[QCC_MAX_RANK];   /* leading dims of 1 pad lower ranks */
    int32_t in_strides[QCC_MAX_RANK]; /* input stride of each output axis, in elements */
} qcc_transpose_params;

/* One group, any kernel, stride, dilation and padding, as a matrix product over im2col columns
 * (the compiler picks it). Its weights are laid out for it (qcc/ops/conv.py gemm_weight_layout):
 * per pair of output channels (a zero filter after an odd last one), their k4 taps each (k4 =
 * in_c * kernel_h * kernel_w rounded up to 4, zeros after the taps) interleaved by groups of 4,
 * each group stored in the order 0, 2, 1, 3. scratch: 2 * k4 int16 (the columns of two output
 * pixels), word-aligned. */
void qcc_conv_gemm_s8(const qcc_conv_params *p, const int8_t *x, int8_t *y, int32_t *scratch);
void qcc_conv_gemm_u8(const qcc_conv_params *p, const uint8_t *x, uint8_t *y, int32_t *scratch);
/* Depthwise 3x3: groups == in_c == out_c, kernel 3x3, dilation 1, strides 1 or 2, any padding
 * (the compiler picks it). scratch: 3 padded input rows of ((out_w - 1) * stride_w + 7) / 2 * 2
 * int16, word-aligned. */
void qcc_conv_depthwise_3x3_s8(const qcc_conv_params *p, const int8_t *x, int8_t *y, int32_t *scratch);
void qcc_conv_depthwise_3x3_u8(const qcc_conv_params *p, const uint8_t *x, uint8_t *y, int32_t *scratch);
/* Depthwise, any kernel (1-D ones too), stride, dilation, multiplier and padding (the compiler picks it where the
 * 3x3 kernel does not apply): each window clipped to the input once. scratch: out_w int32 words. */
void qcc_conv_depthwise_s8(const qcc_conv_params *p, const int8_t *x, int8_t *y, int32_t *scratch);
void qcc_conv_depthwise_u8(const qcc_conv_params *p, const uint8_t *x, uint8_t *y, int32_t *scratch);
/* y = A times the weights. Weights [cols][kp], kp = depth rounded up to 8, zeros after depth, each
 * group of 4 stored in the order 0, 2, 1, 3 (qcc/ops/conv.py sxtb16_tap_order). scratch: kp int16 (one row
 * of A), word-aligned. */
void qcc_fully_connected_s8(const qcc_fc_params *p, const int8_t *a, int8_t *y, int32_t *scratch);
void qcc_fully_connected_u8(const qcc_fc_params *p, const uint8_t *a, uint8_t *y, int32_t *scratch);
/* A fully connected layer whose input arrives in `chunks` parts (a streamed chain's rows: part c is
 * depth codes c * depth .. c * depth + depth - 1 of the layer's input, in the order its weights were laid
 * out for, one [cols][kp] block per part, the blocks one after the other). Part 0 sets acc (cols uint32
 * words that live across the calls) to acc_const, each part adds its products, and the last part writes
 * y = requant(acc): the same sums modulo 2^32 as qcc_fully_connected. rows 1, weight_zero NULL.
 * scratch: depth_chunk int16, word-aligned. */
void qcc_fully_connected_part_s8(const qcc_fc_params *p, const int8_t *a, uint32_t *acc, int8_t *y, int32_t *scratch,
                                 int32_t part, int32_t parts);
void qcc_fully_connected_part_u8(const qcc_fc_params *p, const uint8_t *a, uint32_t *acc, uint8_t *y, int32_t *scratch,
                                 int32_t part, int32_t parts);
void qcc_global_avgpool_s8(const qcc_global_avgpool_params *p, const int8_t *x, int8_t *y);
void qcc_global_avgpool_u8(const qcc_global_avgpool_params *p, const uint8_t *x, uint8_t *y);
void qcc_maxpool_s8(const qcc_maxpool_params *p, const int8_t *x, int8_t *y);
void qcc_maxpool_u8(const qcc_maxpool_params *p, const uint8_t *x, uint8_t *y);
void qcc_maxpool_s16(const qcc_maxpool_params *p, const int16_t *x, int16_t *y); /* TFLM's 16x8 models */
void qcc_global_avgpool_s16(const qcc_global_avgpool_params *p, const int16_t *x, int16_t *y); /* and their MEAN */
void qcc_transpose_8bit(const qcc_transpose_params *p, const uint8_t *x, uint8_t *y);

#endif /* QCC_KERNELS_H */
