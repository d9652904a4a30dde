/* qcc runtime: byte-moving kernels (see qcc_data_movement.h). No arithmetic on the codes, so one
 * version serves int8 and uint8. Offsets are int32_t element indices that always name an element
 * of the tensor they index (the compiler checks that every tensor has fewer than 2^31 elements). */
#include <string.h>

#include "qcc_data_movement.h"

#define QCC_INNER (QCC_MAX_RANK - 1)

void qcc_copy_8bit(const qcc_copy_params *p, const uint8_t *x, uint8_t *y)
{
    int32_t index[QCC_MAX_RANK] = {0, 0, 0, 0, 0, 0};
    const int32_t n = p->dims[QCC_INNER];
    const int32_t src_step = p->src_strides[QCC_INNER];
    const int32_t dst_step = p->dst_strides[QCC_INNER];
    int32_t src = p->src_offset;
    int32_t dst = p->dst_offset;
    int32_t i;
    int axis;
    for (;;) {
        /* One run along the innermost axis. */
        if (p->table != NULL) {
            for (i = 0; i < n; ++i) {
                y[dst + i * dst_step] = p->table[x[src + i * src_step]];
            }
        } else if (src_step == 1 && dst_step == 1) {
            memcpy(&y[dst], &x[src], (size_t)n);
        } else {
            for (i = 0; i < n; ++i) {
                y[dst + i * dst_step] = x[src + i * src_step];
            }
        }
        /* Advance the outer axes like an odometer, moving both offsets with them. */
        for (axis = QCC_INNER - 1; axis >= 0; --axis) {
            if (++index[axis] < p->dims[axis]) {
                src += p->src_strides[axis];
                dst += p->dst_strides[axis];
                break;
            }
            index[axis] = 0;
            src -= p->src_strides[axis] * (p->dims[axis] - 1);
            dst -= p->dst_strides[axis] * (p->dims[axis] - 1);
        }
        if (axis < 0) {
            return;
        }
    }
}

static int32_t qcc_gather_offset(const qcc_gather_params *p, int axis, int32_t i)
{
    return p->tables[axis] != NULL ? p->tables[axis][i] : i * p->in_strides[axis];
}

void qcc_gather_8bit(const qcc_gather_params *p, const uint8_t *x, uint8_t *y)
{
    int32_t index[QCC_MAX_RANK] = {0, 0, 0, 0, 0, 0};
    const int32_t n = p->out_dims[QCC_INNER];
    const int32_t *inner = p->tables[QCC_INNER];
    int32_t previous_row = -1; /* the source offset of the last row written, -1 before the first */
    int32_t i;
    int axis;
    for (;;) {
        int32_t row = 0;
        for (axis = 0; axis < QCC_INNER; ++axis) {
            row += qcc_gather_offset(p, axis, index[axis]);
        }
        if (row == previous_row) {
            /* Same source row as the output row just written (nearest upsampling repeats rows). */
            memcpy(y, y - n, (size_t)n);
        } else if (inner != NULL) {
            const uint8_t *xr = x + row;
            for (i = 0; i < n; ++i) {
                y[i] = xr[inner[i]];
            }
        } else {
            const uint8_t *xr = x + row;
            const int32_t step = p->in_strides[QCC_INNER];
            for (i = 0; i < n; ++i) {
                y[i] = xr[i * step];
            }
        }
        previous_row = row;
        y += n;
        for (axis = QCC_INNER - 1; axis >= 0; --axis) {
            if (++index[axis] < p->out_dims[axis]) {
                break;
            }
            index[axis] = 0;
        }
        if (axis < 0) {
            return;
        }
    }
}

/* One body for both code types: codes compare as their C type (signed for int8). */
#define QCC_ARG_EXTREME_BODY                                                            \
    int32_t o, i, k;                                                                  \
    for (o = 0; o < p->outer; ++o) {                                                  \
        for (i = 0; i < p->inner; ++i) {                                              \
            int32_t best = 0;                                                         \
            int32_t base = o * p->axis_len * p->inner + i;                            \
            for (k = 1; k < p->axis_len; ++k) {                                       \
                int32_t v = x[base + k * p->inner], b = x[base + best * p->inner];    \
                int32_t better = p->largest ? (v > b) : (v < b);                      \
                if (better || (p->last && v == b)) {                                  \
                    best = k;                                                         \
                }                                                                     \
            }                                                                         \
            y[o * p->inner + i] = best;                                               \
        }                                                                             \
    }

void qcc_arg_extreme_u8(const qcc_arg_extreme_params *p, const uint8_t *x, int64_t *y)
{
    QCC_ARG_EXTREME_BODY
}

void qcc_arg_extreme_s8(const qcc_arg_extreme_params *p, const int8_t *x, int64_t *y)
{
    QCC_ARG_EXTREME_BODY
}

void qcc_arg_extreme_s8_i32(const qcc_arg_extreme_params *p, const int8_t *x, int32_t *y)
{
    QCC_ARG_EXTREME_BODY
}

void qcc_band_shift(uint8_t *band, int32_t planes, int32_t plane, int32_t drop, int32_t keep)
{
    int32_t c;
    for (c = 0; c < planes; ++c, band += plane) {
        memmove(band, band + drop, (size_t)keep);
    }
}

void qcc_band_row_copy(const uint8_t *from, int32_t from_plane, uint8_t *to, int32_t to_plane, int32_t planes,
                       int32_t row)
{
    int32_t c;
    for (c = 0; c < planes; ++c, from += from_plane, to += to_plane) {
        memcpy(to, from, (size_t)row);
    }
}

void qcc_resize_bilinear_s8(const qcc_resize_bilinear_params *p, const int8_t *x, int8_t *y)
{
    const int32_t inner = p->inner, in_row = p->in_w * inner;
    int32_t o, h, w, c;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *xo = x + (size_t)o * p->in_h * in_row;
        for (h = 0; h < p->out_h; ++h) {
            const int8_t *lower = xo + (size_t)p->row_lower[h] * in_row, *upper = xo + (size_t)p->row_upper[h] * in_row;
            const int32_t fy = p->row_frac[h];
            for (w = 0; w < p->out_w; ++w) {
                const int32_t left = p->col_lower[w] * inner, right = p->col_upper[w] * inner, fx = p->col_frac[w];
                const int32_t w_ll = (1024 - fy) * (1024 - fx), w_lu = fy * (1024 - fx);
                const int32_t w_rl = (1024 - fy) * fx, w_ru = fy * fx;
                for (c = 0; c < inner; ++c) {
                    const int32_t v = lower[left + c] * w_ll + upper[left + c] * w_lu + lower[right + c] * w_rl +
                                      upper[right + c] * w_ru;
                    /* halves away from zero: C's division rounds toward zero */
                    *y++ = (int8_t)((v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
                }
            }
        }
    }
}
