/* qcc runtime: 8-bit elementwise ops as 256-entry lookup tables.
 *
 * The compiler computes, for each of the 256 input bytes, the byte of the output code (the way
 * ONNX Runtime builds its own tables), and stores the table in flash; a run only indexes it.
 * The kernels move bytes: int8 and uint8 tensors are passed as uint8_t pointers to their bytes. */
#ifndef QCC_LOOKUP_H
#define QCC_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

/* One table per channel along an axis: the element at (o, c, i) of a tensor viewed as
 * [outer][channels][inner] reads tables[c * 256 + x]. */
typedef struct {
    int32_t outer;         /* product of the dimensions before the axis */
    int32_t channels;      /* the axis' size: one table each */
    int32_t inner;         /* product of the dimensions after the axis */
    const uint8_t *tables; /* [channels][256] */
} qcc_lookup_params;

/* y[i] = table[x[i]] for i < count. x and y may be the same buffer. */
void qcc_lookup_8bit(const uint8_t table[256], const uint8_t *x, uint8_t *y, size_t count);

/* Per-channel tables; x and y may be the same buffer. */
void qcc_lookup_channels_8bit(const qcc_lookup_params *p, const uint8_t *x, uint8_t *y);

#endif
