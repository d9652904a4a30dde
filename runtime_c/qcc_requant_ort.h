/* The `ort` rounding scheme: ONNX Runtime's float32 requantization, emulated with integers.
 *
 * ORT computes v = f32(f32(acc) * scale), then clamp(rne(v), lo, hi), where f32() rounds to
 * float32 (nearest, ties to even) and rne() rounds to an integer, ties to even. With the scale
 * held exactly as mult * 2^-shift (mult < 2^24, its float32 significand; 15 <= shift <= 57):
 *
 *   a = |acc| kept to 24 significant bits     f32(acc)
 *   p = a * mult kept to 24 significant bits  f32(f32(acc) * scale), p < 2^56
 *   r = rne(p * 2^-shift)
 *
 * Rounding to nearest even is symmetric, so magnitudes are rounded and the sign restored last.
 * Twin of qcc/numerics/ort_float32.py: the two must stay bit-identical. */
#ifndef QCC_REQUANT_ORT_H
#define QCC_REQUANT_ORT_H

#include <stdint.h>

/* Number of significant bits of x (0 for 0). */
static inline int qcc_bit_length_u64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return x ? 64 - __builtin_clzll(x) : 0;
#else
    int n = 0;
    while (x) {
        ++n;
        x >>= 1;
    }
    return n;
#endif
}

/* rne(x * 2^-shift) for 1 <= shift <= 63: round half to even. */
static inline uint64_t qcc_shift_right_rne_u64(uint64_t x, int shift)
{
    const uint64_t quotient = x >> shift;
    const uint64_t remainder = x & ((UINT64_C(1) << shift) - 1u);
    const uint64_t half = UINT64_C(1) << (shift - 1);
    return quotient + (uint64_t)(remainder > half || (remainder == half && (quotient & 1u)));
}

/* x rounded to 24 significant bits, ties to even: the magnitude of f32(x). */
static inline uint64_t qcc_round_to_f32_significand(uint64_t x)
{
    const int excess = qcc_bit_length_u64(x) - 24;
    return excess > 0 ? qcc_shift_right_rne_u64(x, excess) << excess : x;
}

/* clamp(rne(f32(f32(acc) * mult * 2^-shift)), lo, hi). acc_f32_exact: the compiler proved
 * |acc| <= 2^24 for this layer, so f32(acc) == acc and its rounding is skipped. */
static inline int32_t qcc_requantize_ort(int32_t acc, uint32_t mult, int shift, int32_t lo, int32_t hi, int acc_f32_exact)
{
    /* 0u - (uint32_t)acc is |acc| for every int32, INT32_MIN included, without overflow. */
    const uint32_t magnitude = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
    const uint64_t exact = (uint64_t)magnitude * mult; /* < 2^55 */
    uint64_t a, p, r;
    int64_t v;
    /* A value below 1/2 rounds to 0 whatever the two float32 roundings do: each scales it by at most
     * 1 + 2^-24, so p < exact * (1 + 2^-22) <= exact + (exact >> 22) + 1. Channels whose scale is far below
     * their accumulators' (ones the fast path cannot take) answer here in a few instructions. */
    if (exact + (exact >> 22) + 1u < (UINT64_C(1) << (shift - 1))) {
        return 0 < lo ? lo : 0 > hi ? hi : 0;
    }
    a = acc_f32_exact ? magnitude : qcc_round_to_f32_significand(magnitude);
    p = qcc_round_to_f32_significand(a * mult);
    r = qcc_shift_right_rne_u64(p, shift); /* < 2^41: fits int64 */
    v = acc < 0 ? -(int64_t)r : (int64_t)r;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* The fast path: one signed 32x32->64 multiply-accumulate, a shift and the clamp, bit-identical to
 * qcc_requantize_ort() wherever it answers (the Python twin, fast_path and fast_requantize in
 * qcc/numerics/ort_float32.py, proves it and chooses the parameters at compile time).
 *
 * For a clamp window inside [-255, 255], an output that is not clamped has |acc| * mult < 2^(shift+8):
 * rounding that product to 24 significant bits moves it by at most 2^(shift-17), on a grid holding
 * every half-integer of the last rounding, so the two roundings give the one rounding of
 * acc * mult * 2^-shift, halves up, unless the product lies within 2^(shift-17) of a half. With
 * t = 32 + j and M = mult * 2^(t - shift) < 2^31 (fast_mult), the product acc * M is added to
 *   B = 2^62 + 2^(t-1) + w,   w = 2^(15+j) + 1   (bias_hi: B's high word, window: w)
 * in 64 bits, without wrapping (|acc * M| < 2^62): its high word shifted right by j is the rounded
 * value plus 2^(30-j) (r', so that no negative value is shifted), and its low word below 2w marks
 * every product near a half (and a few others, about 2^(j-16) of all). Those, and every output of a
 * channel with fast_mult 0, take qcc_requantize_ort(). A clamped output has |r'-2^(30-j)| >= 256
 * on both paths, so clamps alike. lo and hi here are the clamp bounds plus 2^(30-j). */
typedef struct {
    int32_t fast_mult; /* M, or 0: always the exact path */
    uint32_t bias_hi;  /* 2^30 + 2^(j-1) */
    uint32_t window;   /* w = 2^(15+j) + 1 */
    int shift;         /* j, 1..14 */
    int32_t lo, hi;    /* the clamp bounds plus 2^(30-j) */
} qcc_ort_fast;

/* 1 with *y = qcc_requantize_ort(acc, ...) + 2^(30-j), or 0: the caller takes qcc_requantize_ort(). */
static inline int qcc_requantize_ort_fast(const qcc_ort_fast *f, int32_t acc, int32_t *y)
{
    const uint64_t sum = (uint64_t)((int64_t)acc * f->fast_mult) + (((uint64_t)f->bias_hi << 32) | f->window);
    int32_t r;
    if ((uint32_t)sum < 2u * f->window) {
        return 0;
    }
    r = (int32_t)((uint32_t)(sum >> 32) >> f->shift);
    *y = r < f->lo ? f->lo : r > f->hi ? f->hi : r;
    return 1;
}

/* qcc_requantize_ort_fast where hi = lo + 255 (an 8-bit output's clamp): r - lo clamped to [0, 255], one USAT
 * on Arm; *y is that, to which the caller adds lo (r < 2^31 and lo > 0: r - lo cannot overflow). Written out
 * rather than sharing the sum with qcc_requantize_ort_fast: both ways tried cost the M4 loops 0.4% and 4%. */
static inline int qcc_requantize_ort_fast_byte(const qcc_ort_fast *f, int32_t acc, int32_t *y)
{
    const uint64_t sum = (uint64_t)((int64_t)acc * f->fast_mult) + (((uint64_t)f->bias_hi << 32) | f->window);
    int32_t t;
    if ((uint32_t)sum < 2u * f->window) {
        return 0;
    }
    t = (int32_t)((uint32_t)(sum >> 32) >> f->shift) - f->lo;
    *y = t < 0 ? 0 : t > 255 ? 255 : t;
    return 1;
}

#endif /* QCC_REQUANT_ORT_H */
