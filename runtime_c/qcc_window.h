/* qcc runtime: the part of a kernel window that lands inside the input, shared by the kernels that clip each
 * window once instead of testing each tap. */
#ifndef QCC_WINDOW_H
#define QCC_WINDOW_H

#include <stdint.h>

/* The taps t in [0, count) of a window starting at `start` with step `step` that land in [0, size): [*lo, *hi). */
static inline void qcc_window_inside(int32_t start, int32_t step, int32_t count, int32_t size, int32_t *lo, int32_t *hi)
{
    int32_t first = 0, end = 0;
    if (start < size) {
        end = step == 1 ? size - start : (size - 1 - start) / step + 1;
        end = end < count ? end : count;
        first = start >= 0 ? 0 : step == 1 ? -start : (-start + step - 1) / step;
        first = first < end ? first : end;
    }
    *lo = first;
    *hi = end;
}

/* The outputs [first, last) of a 1-D window (count taps, step apart, stride, pad before) over size inputs
 * that lie wholly inside, of out outputs: the same for every channel of a layer. */
typedef struct {
    int32_t first, last;
} qcc_inside_rows;

static inline qcc_inside_rows qcc_window_inside_outputs(int32_t size, int32_t count, int32_t step, int32_t stride,
                                                        int32_t pad, int32_t out)
{
    const int32_t reach = size - 1 - (count - 1) * step + pad;
    qcc_inside_rows rows;
    rows.first = (pad + stride - 1) / stride;
    rows.last = reach < 0 ? 0 : (reach / stride + 1 < out ? reach / stride + 1 : out);
    return rows;
}

#endif /* QCC_WINDOW_H */
