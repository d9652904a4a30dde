/* QLinearAdd and QLinearMul kernels: see qcc_add_mul.h and qcc/numerics/ort_add_mul.py. */
#include "qcc_add_mul.h"
#include "qcc_requant_ort.h" /* qcc_bit_length_u64 */
#include "qcc_requant_tflm.h"

/* Fractions within this many 2^-32 units of 1/2 take the exact rounding rule (half a float32 ulp
 * at n + 1/2 is at most 2^15 units while |n| < 256); all others round by comparison with 1/2. */
#define QCC_NEAR_HALF 0x8000u
#define QCC_CODE_BIAS 0x80000000u

#if defined(__GNUC__) || defined(__clang__)
#define QCC_NOINLINE __attribute__((noinline))
#else
#define QCC_NOINLINE
#endif

/* Leading zeros of v != 0. */
static inline int qcc_clz32(uint32_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_clz(v);
#else
    int n = 0;
    while (!(v & 0x80000000u)) {
        v <<= 1;
        ++n;
    }
    return n;
#endif
}

/* 1 when rne(f32(E)) is n + 1 for E = n + r * 2^-32 (n = hb - 2^31; r jammed: odd when the exact
 * value lies strictly between two grid points). f32() moves every value within half an ulp of
 * n + 1/2 onto it, and rne() takes n + 1/2 to the even neighbour. */
static uint32_t qcc_round_up_near_half(uint32_t hb, uint32_t r)
{
    /* w = n + 512, n clamped to [-512, 511] (beyond, the code saturates either way) */
    const uint32_t w = hb < QCC_CODE_BIAS - 512u ? 0u : hb > QCC_CODE_BIAS + 511u ? 1023u : hb - (QCC_CODE_BIAS - 512u);
    const uint32_t m = w >= 512u ? w - 512u : 511u - w;                /* |n + 1/2| - 1/2 */
    const uint32_t half_ulp = 0x80u << (31 - qcc_clz32(2u * m + 1u)); /* 2^(k-24) in 2^-32 units */
    const uint32_t threshold = (w & 1u) ? 0x80000000u - half_ulp - 1u : 0x80000000u + half_ulp;
    return r > threshold ? 1u : 0u;
}

/* The output byte for the grid value E * 2^32 + 2^63 = hb * 2^32 + r, E jammed at 2^-32. */
static inline uint8_t qcc_code_from_grid(uint32_t hb, uint32_t r, uint32_t lo, uint32_t hi)
{
    uint32_t q = hb + (r >> 31); /* hb = floor(E) + 2^31; r = the fraction in 2^-32 units */
    if ((uint32_t)(r - (0x80000000u - QCC_NEAR_HALF)) <= 2u * QCC_NEAR_HALF) {
        q = hb + qcc_round_up_near_half(hb, r);
    }
    q = q < lo ? lo : q;
    q = q > hi ? hi : q;
    return (uint8_t)q; /* the low byte of code + 2^31 */
}

static inline uint8_t qcc_code_from_grid64(uint64_t e, uint32_t lo, uint32_t hi)
{
    return qcc_code_from_grid((uint32_t)(e >> 32), (uint32_t)e, lo, hi);
}

/* Step the outer (all but the innermost) output dimensions, keeping both input offsets. */
static void qcc_broadcast_next(const qcc_broadcast_params *s, int32_t *count, size_t *xo, size_t *yo)
{
    int32_t d;
    for (d = s->rank - 2; d >= 0; --d) {
        *xo += (size_t)s->x_strides[d];
        *yo += (size_t)s->y_strides[d];
        if (++count[d] < s->dims[d]) {
            return;
        }
        count[d] = 0;
        *xo -= (size_t)s->x_strides[d] * (size_t)s->dims[d];
        *yo -= (size_t)s->y_strides[d] * (size_t)s->dims[d];
    }
}

static size_t qcc_broadcast_rows(const qcc_broadcast_params *s)
{
    size_t rows = 1;
    int32_t d;
    for (d = 0; d < s->rank - 1; ++d) {
        rows *= (size_t)s->dims[d];
    }
    return rows;
}

static inline uint64_t qcc_table_entry(const uint32_t *table, uint32_t index)
{
    return ((uint64_t)table[2u * index + 1u] << 32) | table[2u * index];
}

/* A grid of 2^-(32 + s) back to 2^-32: floor, with the dropped bits kept as a sticky lowest bit,
 * and the bias 2^63 >> s restored to 2^63. */
static inline uint64_t qcc_jam_shift(uint64_t e, int32_t s)
{
    const uint64_t coarse = (e >> s) | (uint64_t)((e & ((UINT64_C(1) << s) - 1u)) != 0u);
    return coarse + (UINT64_C(0x8000000000000000) - (UINT64_C(0x8000000000000000) >> s));
}

/* The output byte for table entry t and x: E = t + x * mult as one multiply-accumulate (low word)
 * and one multiply-add (high word). */
static inline uint8_t qcc_add_code(uint64_t t, uint32_t x, uint32_t mult_lo, uint32_t mult_hi, uint32_t lo, uint32_t hi)
{
    const uint64_t e = t + (uint64_t)x * mult_lo;
    return qcc_code_from_grid((uint32_t)(e >> 32) + x * mult_hi, (uint32_t)e, lo, hi);
}

/* The row loops, one per stride pattern of the innermost output dimension, so that each runs with
 * constant steps; they are kept out of line because, inlined into the broadcast loop, gcc for
 * Cortex-M loses the multiply-accumulate forms to register pressure. */

/* x and y both step by 1 */
static QCC_NOINLINE void qcc_add_row(const uint32_t *table, uint32_t mult_lo, uint32_t mult_hi, uint32_t flip,
                                     uint32_t lo, uint32_t hi, const uint8_t *x, const uint8_t *y,
                                     uint8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = qcc_add_code(qcc_table_entry(table, y[i]), x[i] ^ flip, mult_lo, mult_hi, lo, hi);
    }
}

/* y is the scalar of the row: t is its table entry */
static QCC_NOINLINE void qcc_add_row_y_scalar(uint64_t t, uint32_t mult_lo, uint32_t mult_hi, uint32_t flip,
                                              uint32_t lo, uint32_t hi, const uint8_t *x, uint8_t *out,
                                              int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = qcc_add_code(t, x[i] ^ flip, mult_lo, mult_hi, lo, hi);
    }
}

/* x is the scalar of the row: t is its term x * mult */
static QCC_NOINLINE void qcc_add_row_x_scalar(const uint32_t *table, uint64_t t, uint32_t lo, uint32_t hi,
                                              const uint8_t *y, uint8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = qcc_code_from_grid64(qcc_table_entry(table, y[i]) + t, lo, hi);
    }
}

/* Any strides, on the finer grid 2^-(32 + fine_shift) (rX < 2^-8) */
static QCC_NOINLINE void qcc_add_row_fine(const qcc_qlinear_add_params *p, const uint8_t *x, ptrdiff_t xs,
                                          const uint8_t *y, ptrdiff_t ys, uint8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, x += xs, y += ys) {
        const uint64_t e = qcc_table_entry(p->table, *y) + (uint64_t)(*x ^ p->x_flip) * p->x_mult;
        out[i] = qcc_code_from_grid64(qcc_jam_shift(e, p->fine_shift), p->lo, p->hi);
    }
}

void qcc_qlinear_add_8bit(const qcc_qlinear_add_params *p, const uint8_t *x, const uint8_t *y, uint8_t *out)
{
    const qcc_broadcast_params *s = &p->shape;
    const int32_t n = s->dims[s->rank - 1];
    const ptrdiff_t xs = s->x_strides[s->rank - 1], ys = s->y_strides[s->rank - 1];
    const uint32_t mult_lo = (uint32_t)p->x_mult, mult_hi = (uint32_t)(p->x_mult >> 32);
    const size_t rows = qcc_broadcast_rows(s);
    int32_t count[QCC_BROADCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t row, xo = 0, yo = 0;
    for (row = 0; row < rows; ++row, out += n) {
        const uint8_t *xr = x + xo, *yr = y + yo;
        if (p->fine_shift != 0) {
            qcc_add_row_fine(p, xr, xs, yr, ys, out, n);
        } else if (ys == 0) { /* then xs == 1: some output dimension steps one of them */
            qcc_add_row_y_scalar(qcc_table_entry(p->table, *yr), mult_lo, mult_hi, p->x_flip, p->lo, p->hi, xr, out, n);
        } else if (xs == 0) {
            const uint32_t xv = *xr ^ p->x_flip;
            const uint64_t t = (uint64_t)xv * mult_lo + ((uint64_t)(xv * mult_hi) << 32);
            qcc_add_row_x_scalar(p->table, t, p->lo, p->hi, yr, out, n);
        } else {
            qcc_add_row(p->table, mult_lo, mult_hi, p->x_flip, p->lo, p->hi, xr, yr, out, n);
        }
        qcc_broadcast_next(s, count, &xo, &yo);
    }
}

/* The output byte for the product p = (a - zA)(b - zB). */
static inline uint8_t qcc_mul_code(const qcc_qlinear_mul_params *q, int32_t prod)
{
    const uint32_t magnitude = prod < 0 ? 0u - (uint32_t)prod : (uint32_t)prod;
    const uint64_t w = (uint64_t)magnitude * q->r_mult; /* |p| * r exactly: < 2^40 */
    /* f32(|p| * r) = kept * 2^(position - 32): w rounded to 24 significant bits, ties to even */
    const int bits = qcc_bit_length_u64(w);
    const int excess = bits > 24 ? bits - 24 : 0;
    uint32_t kept = (uint32_t)(w >> excess);
    const int32_t position = excess + q->r_shift;
    uint64_t scaled, e;
    if (excess > 0) {
        const uint32_t dropped = (uint32_t)w & ((1u << excess) - 1u);
        const uint32_t half = 1u << (excess - 1);
        kept += dropped > half || (dropped == half && (kept & 1u));
    }
    if (position > 38 && kept != 0u) {
        /* |f32(p r)| >= 2^30: saturated, or qmin (so lo) once v reaches 2^31 */
        const int32_t units = position - 32;
        const int overflow = units > 39 || ((uint64_t)kept << units) >= q->overflow_at;
        return (uint8_t)(prod > 0 && !overflow ? q->hi : q->lo);
    }
    if (kept == 0u) {
        scaled = 0u; /* p == 0: the shift below may exceed 63 for a large r, which C leaves undefined */
    } else if (position >= 0) {
        scaled = (uint64_t)kept << position;
    } else if (position > -32) {
        scaled = (uint64_t)((kept >> -position) | (uint32_t)((kept & ((1u << -position) - 1u)) != 0u));
    } else {
        scaled = kept != 0u;
    }
    e = prod < 0 ? q->c_offset - scaled : q->c_offset + scaled;
    return qcc_code_from_grid64(e, q->lo, q->hi);
}

void qcc_qlinear_mul_8bit(const qcc_qlinear_mul_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out)
{
    const qcc_broadcast_params *s = &p->shape;
    const int32_t n = s->dims[s->rank - 1];
    const ptrdiff_t as = s->x_strides[s->rank - 1], bs = s->y_strides[s->rank - 1];
    const uint32_t flip = p->flip;
    const size_t rows = qcc_broadcast_rows(s);
    int32_t count[QCC_BROADCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t row, ao = 0, bo = 0;
    int32_t i;
    for (row = 0; row < rows; ++row, out += n) {
        const uint8_t *ar = a + ao;
        const uint8_t *br = b + bo;
        for (i = 0; i < n; ++i, ar += as, br += bs) {
            const int32_t av = (int32_t)(*ar ^ flip) - p->a_zero;
            const int32_t bv = (int32_t)(*br ^ flip) - p->b_zero;
            out[i] = qcc_mul_code(p, av * bv);
        }
        qcc_broadcast_next(s, count, &ao, &bo);
    }
}

/* --- the `tflm` scheme: TensorFlow Lite Micro's integer ADD and MUL --------------------------- */

/* TFLM's AddFunc on the bytes of the codes: the inputs' scalings come from the compiler's tables, the
 * sum's (MultiplyByQuantizedMultiplierSmallerThanOneExp, shift <= 0, 0 <= mult < 2^31) is a
 * qcc_tflm_channel where its fast paths apply (M < 1/4: one SMLAL and one ASR per output, with no
 * choice of constant by the sum's sign where the clamp's lower end is at or above the zero point, as
 * after a fused Relu), else a qcc_tflm_scaler. Each scaled input is below 2^27 in magnitude, so their
 * sum fits an int32. */
typedef struct {
    const int32_t *a_scaled, *b_scaled;
    qcc_tflm_scaler c;
    qcc_tflm_channel fast;
    int32_t c_zero, lo, hi;
} qcc_add_tflm_row_consts;

/* One row of n outputs, a and b stepping by as and bs (0: a broadcast scalar). Out of line, so that
 * the constants are not spilled by the broadcast loop around it; one loop per path, so that each
 * keeps its constants in registers. */
static QCC_NOINLINE void qcc_add_tflm_row(const qcc_add_tflm_row_consts *k, const uint8_t *a, ptrdiff_t as,
                                          const uint8_t *b, ptrdiff_t bs, uint8_t *out, int32_t n)
{
    const int32_t *const a_scaled = k->a_scaled, *const b_scaled = k->b_scaled;
    int32_t i;
    if (qcc_tflm_is_common(&k->fast)) {
        const qcc_tflm_channel ch = k->fast;
        for (i = 0; i < n; ++i, a += as, b += bs) {
            out[i] = (uint8_t)((uint32_t)qcc_tflm_apply_common(&ch, a_scaled[*a] + b_scaled[*b]) & 0xFFu);
        }
    } else if (k->fast.k > 0) {
        const qcc_tflm_channel ch = k->fast;
        for (i = 0; i < n; ++i, a += as, b += bs) {
            out[i] = (uint8_t)((uint32_t)qcc_tflm_apply_signed(&ch, a_scaled[*a] + b_scaled[*b]) & 0xFFu);
        }
    } else {
        for (i = 0; i < n; ++i, a += as, b += bs) {
            const int32_t y = qcc_tflm_scaler_apply(&k->c, a_scaled[*a] + b_scaled[*b]) + k->c_zero;
            out[i] = (uint8_t)((uint32_t)(y < k->lo ? k->lo : y > k->hi ? k->hi : y) & 0xFFu);
        }
    }
}

/* TFLM's MulElementwise for codes a and b: |(a - zA)(b - zB)| <= 255 * 255 fits in int32; the clamp
 * is applied before zC is added (the same result, and no int32 overflow where the product saturates). */
static inline int32_t qcc_mul_tflm_code(const qcc_mul_tflm_params *p, int32_t a, int32_t b)
{
    const int32_t lo = p->lo - p->c_zero, hi = p->hi - p->c_zero;
    return qcc_requantize_tflm((a - p->a_zero) * (b - p->b_zero), (uint32_t)p->mult, (int)p->shift, lo, hi) + p->c_zero;
}

static void qcc_add_tflm_bytes(const qcc_add_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out)
{
    const qcc_broadcast_params *s = &p->shape;
    const int32_t n = s->dims[s->rank - 1];
    const size_t rows = qcc_broadcast_rows(s);
    int32_t count[QCC_BROADCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t row, ao = 0, bo = 0;
    qcc_add_tflm_row_consts k;
    k.a_scaled = p->a_scaled;
    k.b_scaled = p->b_scaled;
    k.c = qcc_tflm_scaler_of(p->c_mult, (int)-p->c_shift);
    k.fast = qcc_tflm_channel_of((uint32_t)p->c_mult, (int)p->c_shift, p->lo - p->c_zero, p->hi - p->c_zero, p->c_zero);
    k.c_zero = p->c_zero;
    k.lo = p->lo;
    k.hi = p->hi;
    for (row = 0; row < rows; ++row, out += n) {
        qcc_add_tflm_row(&k, a + ao, s->x_strides[s->rank - 1], b + bo, s->y_strides[s->rank - 1], out, n);
        qcc_broadcast_next(s, count, &ao, &bo);
    }
}

static void qcc_mul_tflm_bytes(const qcc_mul_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out,
                               uint32_t flip)
{
    const qcc_broadcast_params *s = &p->shape;
    const int32_t n = s->dims[s->rank - 1];
    const ptrdiff_t as = s->x_strides[s->rank - 1], bs = s->y_strides[s->rank - 1];
    const size_t rows = qcc_broadcast_rows(s);
    int32_t count[QCC_BROADCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t row, ao = 0, bo = 0;
    int32_t i;
    for (row = 0; row < rows; ++row, out += n) {
        const uint8_t *ar = a + ao, *br = b + bo;
        for (i = 0; i < n; ++i, ar += as, br += bs) {
            const int32_t av = (int32_t)(*ar ^ flip) - (int32_t)flip;
            const int32_t bv = (int32_t)(*br ^ flip) - (int32_t)flip;
            out[i] = (uint8_t)((uint32_t)qcc_mul_tflm_code(p, av, bv) & 0xFFu);
        }
        qcc_broadcast_next(s, count, &ao, &bo);
    }
}

void qcc_add_tflm_s8(const qcc_add_tflm_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    qcc_add_tflm_bytes(p, (const uint8_t *)(const void *)a, (const uint8_t *)(const void *)b, (uint8_t *)(void *)out);
}

void qcc_add_tflm_u8(const qcc_add_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out)
{
    qcc_add_tflm_bytes(p, a, b, out);
}

void qcc_mul_tflm_s8(const qcc_mul_tflm_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    qcc_mul_tflm_bytes(p, (const uint8_t *)(const void *)a, (const uint8_t *)(const void *)b, (uint8_t *)(void *)out, 0x80u);
}

void qcc_mul_tflm_u8(const qcc_mul_tflm_params *p, const uint8_t *a, const uint8_t *b, uint8_t *out)
{
    qcc_mul_tflm_bytes(p, a, b, out, 0u);
}

/* --- int16 codes: one row of outputs per call, a and b stepping by as and bs (0: broadcast) --------- */

static void qcc_add_tflm16_row(const void *params, const int16_t *a, ptrdiff_t as, const int16_t *b, ptrdiff_t bs,
                               int16_t *out, int32_t n)
{
    const qcc_add_tflm16_params *p = (const qcc_add_tflm16_params *)params;
    /* the three scalings' constants, worked out once per row */
    const qcc_tflm_scaler sa = qcc_tflm_scaler_of(p->a_mult, (int)-p->a_shift);
    const qcc_tflm_scaler sb = qcc_tflm_scaler_of(p->b_mult, (int)-p->b_shift);
    const qcc_tflm_scaler sc = qcc_tflm_scaler_of(p->c_mult, (int)-p->c_shift);
    int32_t i;
    for (i = 0; i < n; ++i, a += as, b += bs) {
        /* |code - Z| < 2^16, so (code - Z) * 2^15 fits in int32 */
        const int32_t a_scaled = qcc_tflm_scaler_apply(&sa, (*a - p->a_zero) * (INT32_C(1) << 15));
        const int32_t b_scaled = qcc_tflm_scaler_apply(&sb, (*b - p->b_zero) * (INT32_C(1) << 15));
        const int32_t y = qcc_tflm_scaler_apply(&sc, a_scaled + p->b_sign * b_scaled) + p->c_zero;
        out[i] = (int16_t)(y < p->lo ? p->lo : y > p->hi ? p->hi : y);
    }
}

static void qcc_mul_tflm16_row(const void *params, const int16_t *a, ptrdiff_t as, const int16_t *b, ptrdiff_t bs,
                               int16_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, a += as, b += bs) {
        out[i] = (int16_t)qcc_mul_tflm_code((const qcc_mul_tflm_params *)params, *a, *b);
    }
}

typedef void (*qcc_row16_fn)(const void *params, const int16_t *a, ptrdiff_t as, const int16_t *b, ptrdiff_t bs,
                             int16_t *out, int32_t n);

static void qcc_broadcast_rows16(const qcc_broadcast_params *s, const void *params, qcc_row16_fn row_fn,
                                 const int16_t *a, const int16_t *b, int16_t *out)
{
    const int32_t n = s->dims[s->rank - 1];
    const size_t rows = qcc_broadcast_rows(s);
    int32_t count[QCC_BROADCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t row, ao = 0, bo = 0;
    for (row = 0; row < rows; ++row, out += n) {
        row_fn(params, a + ao, s->x_strides[s->rank - 1], b + bo, s->y_strides[s->rank - 1], out, n);
        qcc_broadcast_next(s, count, &ao, &bo);
    }
}

void qcc_add_tflm_s16(const qcc_add_tflm16_params *p, const int16_t *a, const int16_t *b, int16_t *out)
{
    qcc_broadcast_rows16(&p->shape, p, qcc_add_tflm16_row, a, b, out);
}

void qcc_mul_tflm_s16(const qcc_mul_tflm_params *p, const int16_t *a, const int16_t *b, int16_t *out)
{
    qcc_broadcast_rows16(&p->shape, p, qcc_mul_tflm16_row, a, b, out);
}
