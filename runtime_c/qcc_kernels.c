/* qcc runtime kernels. The bodies live in qcc_kernels_impl.inc, instantiated here once per
 * activation type; link with --gc-sections to drop the ones a model does not call. */
#include "qcc_kernels.h"
#include "qcc_requant.h"

#include "qcc_dsp.h" /* QCC_DSP, and on DSP cores qcc_sxtb16_ror8 and qcc_load_u32 */

#ifndef QCC_CONV_WIDE /* qcc_config.h defines it for --wide-weights: else the int16-pair gemm is not compiled */
#define QCC_CONV_WIDE 0
#endif
#include "qcc_window.h"

#if QCC_DSP
/* The 2 x 2 blocks' loop around the instructions of one group of 4 taps: two groups per turn, an odd count
 * entering at the second (LSRS leaves the odd one out in the carry); and the operands both blocks name. */
#define QCC_GEMM_2X2_LOOP(GROUP)                                                                                  \
    "lsrs    %[n], %[n], #1\n\t"                                                                                 \
    "bcc     1f\n\t"                                                                                              \
    "adds    %[n], %[n], #1\n\t"                                                                                 \
    "b       2f\n\t"                                                                                              \
    "1:\n\t" GROUP "2:\n\t" GROUP "subs    %[n], %[n], #1\n\t"                                                  \
    "bne     1b"
/* A group's products once (w01, w23) hold a channel's taps as int16 pairs: channel a with both columns (the second
 * column's pointer moving on), then channel b with the second column still in (x0, x1) and the first (its pointer
 * moving on). */
#define QCC_GEMM_2X2_CHANNEL_A                                                                                    \
    "ldrd    %[x0], %[x1], [%[xa]]\n\t"                                                                          \
    "smlad   %[aa], %[x0], %[w01], %[aa]\n\t"                                                                    \
    "smlad   %[aa], %[x1], %[w23], %[aa]\n\t"                                                                    \
    "ldrd    %[x0], %[x1], [%[xb]], #8\n\t"                                                                      \
    "smlad   %[ab], %[x0], %[w01], %[ab]\n\t"                                                                    \
    "smlad   %[ab], %[x1], %[w23], %[ab]\n\t"
#define QCC_GEMM_2X2_CHANNEL_B                                                                                    \
    "smlad   %[bb], %[x0], %[w01], %[bb]\n\t"                                                                    \
    "smlad   %[bb], %[x1], %[w23], %[bb]\n\t"                                                                    \
    "ldrd    %[x0], %[x1], [%[xa]], #8\n\t"                                                                      \
    "smlad   %[ba], %[x0], %[w01], %[ba]\n\t"                                                                    \
    "smlad   %[ba], %[x1], %[w23], %[ba]\n\t"
#define QCC_GEMM_2X2_OPERANDS                                                                                     \
    [w] "+r"(w), [xa] "+r"(xa), [xb] "+r"(xb), [n] "+r"(groups), [aa] "+r"(*aa), [ab] "+r"(*ab), [ba] "+r"(*ba),   \
        [bb] "+r"(*bb), [x0] "=&r"(x0), [x1] "=&r"(x1), [w01] "=&r"(w01), [w23] "=&r"(w23)
/* The 2 x 1 blocks' products once (w01, w23) hold a channel's 4 taps as int16 pairs and (x0, x1) the column's. */
#define QCC_GEMM_2X1_PRODUCTS(ACC)                                                                                \
    "smlad   %[" ACC "], %[x0], %[w01], %[" ACC "]\n\t"                                                              \
    "smlad   %[" ACC "], %[x1], %[w23], %[" ACC "]\n\t"
#define QCC_GEMM_2X1_OPERANDS                                                                                     \
    [w] "+r"(w), [x] "+r"(x), [n] "+r"(groups), [a] "+r"(*a), [b] "+r"(*b), [x0] "=&r"(x0), [x1] "=&r"(x1),         \
        [w01] "=&r"(w01), [w23] "=&r"(w23)

/* qcc_conv_gemm's 2 x 2 block over `groups` groups of 4 taps: channels a and b (their filters
 * interleaved by groups of 4 at w), pixels a and b (their int16 columns at xa and xb, word-aligned). */
static inline void qcc_gemm_2x2_dsp(const int8_t *w, const int16_t *xa, const int16_t *xb, int32_t groups, int32_t *aa,
                                    int32_t *ab, int32_t *ba, int32_t *bb)
{
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(QCC_NO_INLINE_ASM) /* else the C below */
    /* GCC spills this loop's accumulators (24 instructions per group); written out it takes 18 (and the
     * loop's 2 per pair of groups) and 12 registers. Unoptimized builds (-O0) keep too many registers for
     * themselves with the hard-float ABI, so they take the C. LDRD reads the columns: the arena plans scratch
     * word-aligned and each column is k4 * 2 bytes, a multiple of 8. */
    int32_t x0, x1, w01, w23;
#define QCC_GEMM_2X2_GROUP                                                                                  \
    "ldr     %[w23], [%[w]], #4\n\t" /* channel a's 4 taps, widened */                                          \
    "sxtb16  %[w01], %[w23]\n\t"                                                                                 \
    "sxtb16  %[w23], %[w23], ror #8\n\t" QCC_GEMM_2X2_CHANNEL_A                                                  \
    "ldr     %[w23], [%[w]], #4\n\t" /* channel b's */                                                          \
    "sxtb16  %[w01], %[w23]\n\t"                                                                                 \
    "sxtb16  %[w23], %[w23], ror #8\n\t" QCC_GEMM_2X2_CHANNEL_B
    __asm__(QCC_GEMM_2X2_LOOP(QCC_GEMM_2X2_GROUP) : QCC_GEMM_2X2_OPERANDS : : "cc", "memory");
#undef QCC_GEMM_2X2_GROUP
#else
    int32_t g;
    for (g = 0; g < groups; ++g, w += 8, xa += 4, xb += 4) {
        const uint32_t wa4 = qcc_load_u32(w), wb4 = qcc_load_u32(w + 4);
        const int32_t xa01 = (int32_t)qcc_load_u32(xa), xa23 = (int32_t)qcc_load_u32(xa + 2);
        const int32_t xb01 = (int32_t)qcc_load_u32(xb), xb23 = (int32_t)qcc_load_u32(xb + 2);
        int32_t w01 = __sxtb16(wa4), w23 = qcc_sxtb16_ror8(wa4);
        *aa = __smlad(xa01, w01, *aa);
        *ab = __smlad(xb01, w01, *ab);
        *aa = __smlad(xa23, w23, *aa);
        *ab = __smlad(xb23, w23, *ab);
        w01 = __sxtb16(wb4);
        w23 = qcc_sxtb16_ror8(wb4);
        *ba = __smlad(xa01, w01, *ba);
        *bb = __smlad(xb01, w01, *bb);
        *ba = __smlad(xa23, w23, *ba);
        *bb = __smlad(xb23, w23, *bb);
    }
#endif
}

/* qcc_gemm_2x2_dsp for one pixel, its column at x: a chunk of 1 (where the arena is tight, a column of a deep
 * layer is as many bytes as two of a shallower one) or an odd last pixel. The 2 x 2 block would read the same
 * column twice and take 18 instructions per group for 8 products; this takes 11. */
static inline void qcc_gemm_2x1_dsp(const int8_t *w, const int16_t *x, int32_t groups, int32_t *a, int32_t *b)
{
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(QCC_NO_INLINE_ASM) /* else the C below */
    int32_t x0, x1, w01, w23;
#define QCC_GEMM_2X1_GROUP                                                                                  \
    "ldrd    %[x0], %[x1], [%[x]], #8\n\t"                                                                       \
    "ldr     %[w23], [%[w]], #4\n\t" /* channel a's 4 taps, widened */                                          \
    "sxtb16  %[w01], %[w23]\n\t"                                                                                 \
    "sxtb16  %[w23], %[w23], ror #8\n\t"                                                                         \
    QCC_GEMM_2X1_PRODUCTS("a")                                                                                   \
    "ldr     %[w23], [%[w]], #4\n\t" /* channel b's */                                                          \
    "sxtb16  %[w01], %[w23]\n\t"                                                                                 \
    "sxtb16  %[w23], %[w23], ror #8\n\t"                                                                         \
    QCC_GEMM_2X1_PRODUCTS("b")
    __asm__(QCC_GEMM_2X2_LOOP(QCC_GEMM_2X1_GROUP) : QCC_GEMM_2X1_OPERANDS : : "cc", "memory");
#undef QCC_GEMM_2X1_GROUP
#else
    int32_t g;
    for (g = 0; g < groups; ++g, w += 8, x += 4) {
        const uint32_t wa4 = qcc_load_u32(w), wb4 = qcc_load_u32(w + 4);
        const int32_t x01 = (int32_t)qcc_load_u32(x), x23 = (int32_t)qcc_load_u32(x + 2);
        *a = __smlad(x23, qcc_sxtb16_ror8(wa4), __smlad(x01, __sxtb16(wa4), *a));
        *b = __smlad(x23, qcc_sxtb16_ror8(wb4), __smlad(x01, __sxtb16(wb4), *b));
    }
#endif
}

/* Four channels at one pixel, its column at x: the channel pairs' weights at wa and wb (each pair's interleaved
 * by groups of 4, as qcc_gemm_2x2_dsp takes them). The column's words are loaded once for four channels: 21
 * instructions per group for 16 products, against the 2 x 1 block's 22. */
static inline void qcc_gemm_4x1_dsp(const int8_t *wa, const int8_t *wb, const int16_t *x, int32_t groups, int32_t acc[4])
{
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(QCC_NO_INLINE_ASM) /* else the C below */
    int32_t x0, x1, w01, w23, a = acc[0], b = acc[1], c = acc[2], d = acc[3];
#define QCC_GEMM_4X1_CHANNEL(W, ACC)                                                                          \
    "ldr     %[w23], [%[" W "]], #4\n\t"                                                                           \
    "sxtb16  %[w01], %[w23]\n\t"                                                                                 \
    "sxtb16  %[w23], %[w23], ror #8\n\t" QCC_GEMM_2X1_PRODUCTS(ACC)
#define QCC_GEMM_4X1_GROUP                                                                                  \
    "ldrd    %[x0], %[x1], [%[x]], #8\n\t" QCC_GEMM_4X1_CHANNEL("wa", "a") QCC_GEMM_4X1_CHANNEL("wa", "b")           \
        QCC_GEMM_4X1_CHANNEL("wb", "c") QCC_GEMM_4X1_CHANNEL("wb", "d")
    __asm__(QCC_GEMM_2X2_LOOP(QCC_GEMM_4X1_GROUP)
            : [wa] "+r"(wa), [wb] "+r"(wb), [x] "+r"(x), [n] "+r"(groups), [a] "+r"(a), [b] "+r"(b), [c] "+r"(c),
              [d] "+r"(d), [x0] "=&r"(x0), [x1] "=&r"(x1), [w01] "=&r"(w01), [w23] "=&r"(w23)
            :
            : "cc", "memory");
#undef QCC_GEMM_4X1_GROUP
#undef QCC_GEMM_4X1_CHANNEL
    acc[0] = a;
    acc[1] = b;
    acc[2] = c;
    acc[3] = d;
#else
    qcc_gemm_2x1_dsp(wa, x, groups, &acc[0], &acc[1]);
    qcc_gemm_2x1_dsp(wb, x, groups, &acc[2], &acc[3]);
#endif
}

#if QCC_CONV_WIDE
/* qcc_gemm_2x2_dsp with the weights stored as int16 pairs (--wide-weights): each group of 4 taps is a's
 * words (w0, w1), (w2, w3), then b's, so LDRD gives SMLAD its operands with no SXTB16. Written out: 13
 * instructions per group and the loop's 2 per pair of groups, against 18 and 2 for the int8 weights. */
static inline void qcc_gemm_2x2_wide_dsp(const int8_t *w, const int16_t *xa, const int16_t *xb, int32_t groups,
                                         int32_t *aa, int32_t *ab, int32_t *ba, int32_t *bb)
{
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(QCC_NO_INLINE_ASM) /* else the C below */
    /* LDRD needs word-aligned addresses: the weights are a uint32_t array whose pairs start every 16 * groups
     * bytes, and the columns are word-aligned (qcc_gemm_2x2_dsp) */
    int32_t x0, x1, w01, w23;
#define QCC_GEMM_2X2_WIDE_GROUP                                                                             \
    "ldrd    %[w01], %[w23], [%[w]], #8\n\t" QCC_GEMM_2X2_CHANNEL_A                                              \
    "ldrd    %[w01], %[w23], [%[w]], #8\n\t" QCC_GEMM_2X2_CHANNEL_B
    __asm__(QCC_GEMM_2X2_LOOP(QCC_GEMM_2X2_WIDE_GROUP) : QCC_GEMM_2X2_OPERANDS : : "cc", "memory");
#undef QCC_GEMM_2X2_WIDE_GROUP
#else
    int32_t g;
    for (g = 0; g < groups; ++g, w += 16, xa += 4, xb += 4) {
        const int32_t wa01 = (int32_t)qcc_load_u32(w), wa23 = (int32_t)qcc_load_u32(w + 4);
        const int32_t wb01 = (int32_t)qcc_load_u32(w + 8), wb23 = (int32_t)qcc_load_u32(w + 12);
        const int32_t xa01 = (int32_t)qcc_load_u32(xa), xa23 = (int32_t)qcc_load_u32(xa + 2);
        const int32_t xb01 = (int32_t)qcc_load_u32(xb), xb23 = (int32_t)qcc_load_u32(xb + 2);
        *aa = __smlad(xa23, wa23, __smlad(xa01, wa01, *aa));
        *ab = __smlad(xb23, wa23, __smlad(xb01, wa01, *ab));
        *ba = __smlad(xa23, wb23, __smlad(xa01, wb01, *ba));
        *bb = __smlad(xb23, wb23, __smlad(xb01, wb01, *bb));
    }
#endif
}

/* qcc_gemm_2x1_dsp with int16-pair weights: 7 instructions per group. */
static inline void qcc_gemm_2x1_wide_dsp(const int8_t *w, const int16_t *x, int32_t groups, int32_t *a, int32_t *b)
{
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(QCC_NO_INLINE_ASM) /* else the C below */
    int32_t x0, x1, w01, w23;
#define QCC_GEMM_2X1_WIDE_GROUP                                                                             \
    "ldrd    %[x0], %[x1], [%[x]], #8\n\t"                                                                       \
    "ldrd    %[w01], %[w23], [%[w]], #8\n\t"                                                                     \
    QCC_GEMM_2X1_PRODUCTS("a")                                                                                   \
    "ldrd    %[w01], %[w23], [%[w]], #8\n\t"                                                                     \
    QCC_GEMM_2X1_PRODUCTS("b")
    __asm__(QCC_GEMM_2X2_LOOP(QCC_GEMM_2X1_WIDE_GROUP) : QCC_GEMM_2X1_OPERANDS : : "cc", "memory");
#undef QCC_GEMM_2X1_WIDE_GROUP
#else
    int32_t g;
    for (g = 0; g < groups; ++g, w += 16, x += 4) {
        const int32_t x01 = (int32_t)qcc_load_u32(x), x23 = (int32_t)qcc_load_u32(x + 2);
        *a = __smlad(x23, (int32_t)qcc_load_u32(w + 4), __smlad(x01, (int32_t)qcc_load_u32(w), *a));
        *b = __smlad(x23, (int32_t)qcc_load_u32(w + 12), __smlad(x01, (int32_t)qcc_load_u32(w + 8), *b));
    }
#endif
}
#endif
#endif

/* x86-64 hosts (SSE2 is part of it) take PMADDWD paths: eight 16x16 products added in pairs. */
#if !QCC_DSP && defined(__SSE2__)
#include <emmintrin.h>
#define QCC_SSE2 1

/* The sum of the four int32 lanes of v, modulo 2^32. */
static inline uint32_t qcc_sum_lanes_u32(__m128i v)
{
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E)); /* lanes 2, 3 onto 0, 1 */
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1)); /* lane 1 onto 0 */
    return (uint32_t)_mm_cvtsi128_si32(v);
}

#else
#define QCC_SSE2 0
#endif

/* Inlined even where the compiler would not, so that a constant argument specialises the body (GNU C,
 * optimizing); elsewhere a plain inline. */
#if defined(__GNUC__) && defined(__OPTIMIZE__)
#define QCC_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define QCC_ALWAYS_INLINE inline
#endif

/* Kept out of line where inlining it would change how the compiler allocates registers in its caller's
 * hot loops (GNU C, optimizing: as QCC_ALWAYS_INLINE). */
#if defined(__GNUC__) && defined(__OPTIMIZE__)
#define QCC_NOINLINE __attribute__((noinline))
#else
#define QCC_NOINLINE
#endif

/* The int32 with the same bits as u: the modular result of the wrapping accumulator. */
static inline int32_t qcc_wrap_i32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* The output channel of qcc_conv_gemm's i-th computed channel (qcc_conv_params.computed_channel). */
static inline int32_t qcc_computed_channel(const qcc_conv_params *p, int32_t i)
{
    return p->computed_channel != NULL ? (int32_t)p->computed_channel[i] : i;
}

/* qcc_conv_gemm's channel pair (computed channels oc and oc + pair): the doubled requantization's case where both
 * channels take it (symmetric weights), their constants in da and db, the compiler's (nothing worked out here); else
 * QCC_DOUBLED_NONE. */
static QCC_ALWAYS_INLINE int qcc_gemm_pair_doubled(const qcc_conv_params *p, int32_t oc, int pair,
                                                  qcc_requant_doubled *da, qcc_requant_doubled *db)
{
    if (p->doubled_case == QCC_DOUBLED_NONE || p->weight_zero != NULL) {
        return QCC_DOUBLED_NONE;
    }
    return qcc_requant_doubled_channel(&p->requant, p->doubled_round, p->doubled_shift, oc, da) &&
                   qcc_requant_doubled_channel(&p->requant, p->doubled_round, p->doubled_shift, oc + pair, db)
               ? p->doubled_case : QCC_DOUBLED_NONE;
}

/* qcc_conv_depthwise_3x3's ring of 3 padded input rows: the next input row to copy in (rows above the input are
 * padding), the ring row it goes to, and the ring row holding the next row of work's top input row. */
struct qcc_ring_state {
    int32_t next_row, next_slot, top_slot;
};

/* One instance per activation type. A model's Makefile defines QCC_KERNELS_S8_ONLY or QCC_KERNELS_U8_ONLY
 * where all its kernels take one type, so that the other is not compiled at all. */
/* QCC_XTB16 and QCC_XTB16_ROR8 widen bytes 0, 2 and 1, 3 of a word of activation codes to int16 pairs
 * (SXTB16 for int8 codes, UXTB16 for uint8), as SMLAD takes them; QCC_CODE_MIN and QCC_CODE_MAX are the type's
 * codes, and QCC_SAT_CODE saturates an int32 to them (one SSAT or USAT, on DSP cores). */
#if !defined(QCC_KERNELS_U8_ONLY)
#define QCC_ACT int8_t
#define QCC_NAME(base) base##_s8
#define QCC_XTB16(x) __sxtb16(x)
#define QCC_XTB16_ROR8(x) qcc_sxtb16_ror8(x)
#define QCC_CODE_MIN (-128)
#define QCC_CODE_MAX 127
#define QCC_SAT_CODE(x) __ssat(x, 8)
#include "qcc_kernels_impl.inc"
#undef QCC_ACT
#undef QCC_NAME
#undef QCC_XTB16
#undef QCC_XTB16_ROR8
#undef QCC_CODE_MIN
#undef QCC_CODE_MAX
#undef QCC_SAT_CODE
#endif

#if !defined(QCC_KERNELS_S8_ONLY)
#define QCC_ACT uint8_t
#define QCC_NAME(base) base##_u8
#define QCC_XTB16(x) (int32_t)__uxtb16(x)
#define QCC_XTB16_ROR8(x) qcc_uxtb16_ror8(x)
#define QCC_CODE_MIN 0
#define QCC_CODE_MAX 255
#define QCC_SAT_CODE(x) (int32_t)__usat(x, 8)
#include "qcc_kernels_impl.inc"
#undef QCC_ACT
#undef QCC_NAME
#undef QCC_XTB16
#undef QCC_XTB16_ROR8
#undef QCC_CODE_MIN
#undef QCC_CODE_MAX
#undef QCC_SAT_CODE
#endif

/* int16 codes (TFLite's 16x8 models) take only the pools (MAX_POOL_2D, MEAN): their matrix kernels are qcc_s16.c's */
#define QCC_ACT int16_t
#define QCC_NAME(base) base##_s16
#include "qcc_pool_impl.inc"
#undef QCC_ACT
#undef QCC_NAME

void qcc_transpose_8bit(const qcc_transpose_params *p, const uint8_t *x, uint8_t *y)
{
    int32_t index[QCC_MAX_RANK] = {0, 0, 0, 0, 0, 0};
    size_t total = 1, i, source = 0;
    int axis;
    for (axis = 0; axis < QCC_MAX_RANK; ++axis) {
        total *= (size_t)p->out_dims[axis];
    }
    /* Walk the output in order, keeping the input offset of the current element. */
    for (i = 0; i < total; ++i) {
        y[i] = x[source];
        for (axis = QCC_MAX_RANK - 1; axis >= 0; --axis) {
            if (++index[axis] < p->out_dims[axis]) {
                source += (size_t)p->in_strides[axis];
                break;
            }
            source -= (size_t)p->in_strides[axis] * (size_t)(p->out_dims[axis] - 1);
            index[axis] = 0;
        }
    }
}
