/* qcc runtime: kernels that move 8-bit codes without arithmetic (Concat, QLinearConcat, Split,
 * Slice, Pad, Resize in nearest mode), and ArgMax/ArgMin, which select an index.
 *
 * The ops only move bytes, so int8 and uint8 tensors share the same byte kernels (the generated
 * code passes them as uint8_t pointers). Every offset, size and index table is computed by the
 * compiler and stored in a const parameter struct (flash); the kernels only walk them.
 * Tensors are row-major; ranks below QCC_MAX_RANK are padded with leading axes of size 1. */
#ifndef QCC_DATA_MOVEMENT_H
#define QCC_DATA_MOVEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "qcc_kernels.h" /* QCC_MAX_RANK */

/* A strided block copy: for every index i in dims,
 *     y[dst_offset + sum_k i[k] * dst_strides[k]] = f(x[src_offset + sum_k i[k] * src_strides[k]])
 * with f the identity, or f(b) = table[b] when table is not NULL (QLinearConcat's requantization
 * of each code, a 256-entry table indexed by the code's byte). Strides are in elements and may be
 * negative (a Slice with negative steps); every offset the walk visits is an element of x or y. */
typedef struct {
    int32_t dims[QCC_MAX_RANK];
    int32_t src_strides[QCC_MAX_RANK];
    int32_t dst_strides[QCC_MAX_RANK];
    int32_t src_offset;
    int32_t dst_offset;
    const uint8_t *table; /* NULL: copy the bytes */
} qcc_copy_params;

/* A gather by per-axis index tables: for every output index i in out_dims (written in order),
 *     y[...] = x[sum_k offset_k(i[k])],  offset_k(j) = tables[k] ? tables[k][j] : j * in_strides[k]
 * where tables[k] holds out_dims[k] input element offsets (source index times input stride).
 * A row whose source row equals the previous row's is copied from the previous output row. */
typedef struct {
    int32_t out_dims[QCC_MAX_RANK];
    int32_t in_strides[QCC_MAX_RANK];       /* used where tables[k] is NULL */
    const int32_t *tables[QCC_MAX_RANK];    /* per axis: out_dims[k] offsets, or NULL */
} qcc_gather_params;

/* ArgMax / ArgMin: y[o * inner + i] = the index k < axis_len of the largest (largest = 1) or
 * smallest code x[(o * axis_len + k) * inner + i]; ties give the first index, or the last with
 * last = 1. Selects an index; no arithmetic on the codes. */
typedef struct {
    int32_t outer;
    int32_t axis_len;
    int32_t inner;
    int32_t largest;
    int32_t last;
} qcc_arg_extreme_params;

/* TFLM's int8 RESIZE_BILINEAR (reference ResizeBilinearInteger): output (o, h, w, c) of element
 * ((o * out_h + h) * out_w + w) * inner + c is the four input codes around it weighted by 1/1024 fractions,
 * ((o * in_h + r) * in_w + q) * inner + c for r in {row_lower[h], row_upper[h]} and q in {col_lower[w],
 * col_upper[w]}: sum x * (1024 - fy or fy) * (1024 - fx or fx), then divided by 2^20, halves away from zero
 * (TFLM built without TFLITE_SINGLE_ROUNDING, as the pinned wheel is). Channels first: inner = 1,
 * outer = N * C; channels last: inner = C, outer = N. Every |v| is below 2^30: int32 throughout. */
typedef struct {
    int32_t outer, inner, in_h, in_w, out_h, out_w;
    const int16_t *row_lower, *row_upper, *row_frac; /* out_h each: the fraction of row_upper, in 1/1024 */
    const int16_t *col_lower, *col_upper, *col_frac; /* out_w each */
} qcc_resize_bilinear_params;

void qcc_resize_bilinear_s8(const qcc_resize_bilinear_params *p, const int8_t *x, int8_t *y);

void qcc_copy_8bit(const qcc_copy_params *p, const uint8_t *x, uint8_t *y);
void qcc_gather_8bit(const qcc_gather_params *p, const uint8_t *x, uint8_t *y);
/* Streamed execution: a band holds consecutive rows of every channel, each channel's rows `plane`
 * bytes after the previous one's. Drops the first `drop` bytes of each channel's rows and moves the
 * `keep` bytes after them to the channel's start, making room for the next rows. */
void qcc_band_shift(uint8_t *band, int32_t planes, int32_t plane, int32_t drop, int32_t keep);
/* Streamed execution with a lag: copies `row` bytes of each of `planes` channels from a band (its channels
 * `from_plane` bytes apart) to a whole tensor (its channels `to_plane` bytes apart): a held-back output row to
 * its place, once the input rows under it are read for the last time. */
void qcc_band_row_copy(const uint8_t *from, int32_t from_plane, uint8_t *to, int32_t to_plane, int32_t planes,
                       int32_t row);
void qcc_arg_extreme_u8(const qcc_arg_extreme_params *p, const uint8_t *x, int64_t *y);
void qcc_arg_extreme_s8(const qcc_arg_extreme_params *p, const int8_t *x, int64_t *y);
/* int32 indices (TFLite's ARG_MAX / ARG_MIN) */
void qcc_arg_extreme_s8_i32(const qcc_arg_extreme_params *p, const int8_t *x, int32_t *y);

#endif /* QCC_DATA_MOVEMENT_H */
