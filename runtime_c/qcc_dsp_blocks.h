/* qcc runtime: assembly blocks for DSP cores (Cortex-M4, M7, M33, M55) whose addressing is a layer's shape, one
 * function per shape, which model.c defines for its layers: qcc_conv_gemm's 2 x 4 block and qcc_fully_connected's
 * block of 4 columns. Each keeps every value in registers, the distances between the data it reads being the
 * constant offsets of its loads (LDRD reaches 1020 bytes, LDR 4095). The kernels call them through a pointer in
 * their parameters, NULL where a shape is beyond them. Elsewhere (no DSP, no GNU assembly, -Os, or
 * -DQCC_NO_INLINE_ASM) every such pointer is NULL and the kernels take their C loops; -Os builds keep to those:
 * the blocks and their paths in the kernels cost about 1 KB of code per activation type, plus some 200 bytes per
 * shape.
 *
 * qcc_conv_gemm's 2 x 4 block. The 2 x 2 block (qcc_kernels.c) takes 18 instructions per group of 4 taps for 16
 * products: it loads and widens both channels' weights for only two pixels. This block takes channels a and b at
 * four pixels: 29 instructions for 32 products (25 with --wide-weights' int16 pairs, 2 more where k4 > 255), and
 * 14 registers (8 accumulators, the weights and a column as int16 pairs, two pointers), the loop's end on the
 * stack. The four columns are k4 int16 apart, so they are read at fixed offsets from one pointer (pixel 1's
 * column: pixels 0, 2, 3 at -2 * k4, +2 * k4 and +4 * k4 bytes). The compiler writes
 * QCC_GEMM_2X4_DEFINE(name, k4) (or QCC_GEMM_2X4_WIDE_DEFINE) once for each depth of at most QCC_GEMM_2X4_MAX_K4
 * its layers have, the name prefixed as model.c's other symbols, and QCC_DSP_BLOCK(name) in their parameters. The
 * function, void f(const int8_t *w, const int16_t *cols, int32_t *acc), adds to acc[0..3] channel a's products at
 * pixels 0..3 and to acc[4..7] channel b's, modulo 2^32 (SMLAD wraps as the 2 x 2 block's sums do), with w the
 * pair's weights in qcc_conv_gemm's layout (each group of 4 taps a's 4, then b's 4: int8 stored in the order
 * 0, 2, 1, 3, or int16 in tap order) and cols pixel 0's column, word-aligned.
 *
 * qcc_fully_connected's block of 4 columns: a row of A, expanded (int16 pairs), with 4 columns whose int8 weights
 * lie kp bytes apart: 44 instructions per 8 depths for 32 products, where its loop of 2 columns takes 25 for 16.
 * QCC_FC_4COL_DEFINE(name, kp) for kp <= QCC_FC_4COL_MAX_KP. The function, void f(const int32_t *row,
 * const int8_t *w, int32_t *acc), adds to acc[0..3] the dot products of the row's kp depths with columns 0..3
 * (column 0's weights at w, in qcc_fully_connected's order: groups of 4 stored as 0, 2, 1, 3), modulo 2^32. */
#ifndef QCC_DSP_BLOCKS_H
#define QCC_DSP_BLOCKS_H

#include <stddef.h>

#include "qcc_dsp.h"

/* 2 * k4 bytes, the columns' distance, is at most 1020 (LDRD's offsets) */
#define QCC_GEMM_2X4_MAX_K4 510
/* 3 * kp + 4, the farthest weights' offset, is at most 4095 (LDR's) */
#define QCC_FC_4COL_MAX_KP 1360

#if QCC_DSP && defined(__GNUC__) && defined(__thumb2__) && !defined(QCC_NO_INLINE_ASM) && !defined(__OPTIMIZE_SIZE__)
#define QCC_DSP_BLOCKS 1
#define QCC_DSP_BLOCK(NAME) NAME

/* A naked function's head: its body is all the code (AAPCS: the three pointers in r0, r1, r2; r4-r11 saved) */
#define QCC_DSP_BLOCK_HEAD(NAME, FIRST, SECOND)                                                                    \
    __attribute__((naked, noinline)) static void NAME(FIRST __attribute__((unused)),                              \
                                                      SECOND __attribute__((unused)),                             \
                                                      int32_t *acc __attribute__((unused)))

/* A channel's 4 taps: int8 weights widened (qcc_conv_gemm's layout: stored in the order 0, 2, 1, 3, so that SXTB16 gives
 * the int16 pairs (w0, w1) and (w2, w3)), or int16 pairs as they are (--wide-weights) */
#define QCC_GEMM_2X4_INT8_WEIGHTS                                                                                  \
    "ldr     r11, [r0], #4\n\t"                                                                                     \
    "sxtb16  r10, r11\n\t"                                                                                          \
    "sxtb16  r11, r11, ror #8\n\t"
#define QCC_GEMM_2X4_WIDE_WEIGHTS "ldrd    r10, r11, [r0], #8\n\t"

/* One group of 4 taps, S the bytes of a column, the pointer at pixel 1's, WEIGHTS the instructions that load a
 * channel's 4 taps as int16 pairs into (r10, r11): channel a at pixels 0, 1, 2, 3, then channel b back from pixel 3,
 * whose column is still in (r12, lr), to pixel 1, whose load moves the pointer to the next group. Where pixel 3's
 * offset, 2 * S, is beyond LDRD's reach (S > 510), the pointer steps to pixel 2 and back (two instructions more). */
#define QCC_GEMM_2X4_GROUP(S, WEIGHTS)                                                                             \
    WEIGHTS                                                                                                         \
    "ldrd    r12, lr, [r1, #-" S "]\n\t"                                                                           \
    "smlad   r2, r12, r10, r2\n\t"                                                                                  \
    "smlad   r2, lr, r11, r2\n\t"                                                                                   \
    "ldrd    r12, lr, [r1]\n\t"                                                                                     \
    "smlad   r3, r12, r10, r3\n\t"                                                                                  \
    "smlad   r3, lr, r11, r3\n\t"                                                                                   \
    "ldrd    r12, lr, [r1, #" S "]\n\t"                                                                            \
    "smlad   r4, r12, r10, r4\n\t"                                                                                  \
    "smlad   r4, lr, r11, r4\n\t"                                                                                   \
    ".if 2*" S " <= 1020\n\t"                                                                                      \
    "ldrd    r12, lr, [r1, #2*" S "]\n\t"                                                                          \
    ".else\n\t"                                                                                                     \
    "addw    r1, r1, #" S "\n\t"                                                                                   \
    "ldrd    r12, lr, [r1, #" S "]\n\t"                                                                            \
    ".endif\n\t"                                                                                                    \
    "smlad   r5, r12, r10, r5\n\t"                                                                                  \
    "smlad   r5, lr, r11, r5\n\t"                                                                                   \
    WEIGHTS /* channel b's */                                                                                       \
    "smlad   r9, r12, r10, r9\n\t"                                                                                  \
    "smlad   r9, lr, r11, r9\n\t"                                                                                   \
    ".if 2*" S " <= 1020\n\t"                                                                                      \
    "ldrd    r12, lr, [r1, #" S "]\n\t"                                                                            \
    ".else\n\t"                                                                                                     \
    "ldrd    r12, lr, [r1]\n\t"                                                                                     \
    "subw    r1, r1, #" S "\n\t"                                                                                   \
    ".endif\n\t"                                                                                                    \
    "smlad   r8, r12, r10, r8\n\t"                                                                                  \
    "smlad   r8, lr, r11, r8\n\t"                                                                                   \
    "ldrd    r12, lr, [r1, #-" S "]\n\t"                                                                           \
    "smlad   r6, r12, r10, r6\n\t"                                                                                  \
    "smlad   r6, lr, r11, r6\n\t"                                                                                   \
    "ldrd    r12, lr, [r1], #8\n\t"                                                                                 \
    "smlad   r7, r12, r10, r7\n\t"                                                                                  \
    "smlad   r7, lr, r11, r7\n\t"

/* The 2 x 4 block (w, cols, acc in r0, r1, r2). Two groups a turn, an odd count (known here) entering at the second;
 * the loop ends when w reaches its end (W bytes of weights per group of 4 taps of the pair), kept on the stack. */
#define QCC_GEMM_2X4_FUNCTION(NAME, K4, WEIGHTS, W)                                                                \
    QCC_DSP_BLOCK_HEAD(NAME, const int8_t *w, const int16_t *cols)                                                \
    {                                                                                                               \
        __asm__("push    {r2, r4-r11, lr}\n\t"                                                                     \
                "addw    r1, r1, #2*" #K4 "\n\t"                                                                   \
                "addw    r12, r0, #" #W "*" #K4 "/4\n\t"                                                           \
                "push    {r12}\n\t"                                                                                \
                "ldm     r2, {r2-r9}\n\t"                                                                          \
                ".if (" #K4 " / 4) % 2\n\t"                                                                        \
                "b       2f\n\t"                                                                                   \
                ".endif\n"                                                                                         \
                "1:\n\t" QCC_GEMM_2X4_GROUP("2*" #K4, WEIGHTS) "2:\n\t" QCC_GEMM_2X4_GROUP("2*" #K4, WEIGHTS)      \
                "ldr     r12, [sp]\n\t"                                                                            \
                "cmp     r0, r12\n\t"                                                                              \
                "bne     1b\n\t"                                                                                   \
                "add     sp, sp, #4\n\t"                                                                           \
                "pop     {r12}\n\t"                                                                                \
                "stm     r12, {r2-r9}\n\t"                                                                         \
                "pop     {r4-r11, pc}");                                                                           \
    }
#define QCC_GEMM_2X4_DEFINE(NAME, K4) QCC_GEMM_2X4_FUNCTION(NAME, K4, QCC_GEMM_2X4_INT8_WEIGHTS, 8)
#define QCC_GEMM_2X4_WIDE_DEFINE(NAME, K4) QCC_GEMM_2X4_FUNCTION(NAME, K4, QCC_GEMM_2X4_WIDE_WEIGHTS, 16)

/* One column's 4 depths: its weights' word at WORD, multiplied with the row's words LO and HI, added into ACC */
#define QCC_FC_4COL_DEPTHS(ACC, WORD, LO, HI)                                                                       \
    "ldr     r10, " WORD "\n\t"                                                                                     \
    "sxtb16  r11, r10\n\t"                                                                                          \
    "sxtb16  r10, r10, ror #8\n\t"                                                                                  \
    "smlad   " ACC ", " LO ", r11, " ACC "\n\t"                                                                     \
    "smlad   " ACC ", " HI ", r10, " ACC "\n\t"

/* The block of 4 columns (row, w, acc in r0, r1, r2): 8 depths a turn, the row's 4 words in r6..r9, columns 1, 2, 3 at
 * KP, 2 * KP and 3 * KP bytes from column 0's weights, whose last load moves the pointer on; the row's end in r12. */
#define QCC_FC_4COL_DEFINE(NAME, KP)                                                                               \
    QCC_DSP_BLOCK_HEAD(NAME, const int32_t *row, const int8_t *w)                                                 \
    {                                                                                                               \
        __asm__("push    {r2, r4-r11, lr}\n\t"                                                                     \
                "addw    r12, r0, #2*" #KP "\n\t"                                                                  \
                "ldm     r2, {r2-r5}\n"                                                                            \
                "1:\n\t"                                                                                           \
                "ldrd    r6, r7, [r0], #8\n\t"                                                                     \
                "ldrd    r8, r9, [r0], #8\n\t"                                                                     \
                QCC_FC_4COL_DEPTHS("r3", "[r1, #" #KP "]", "r6", "r7")                                               \
                QCC_FC_4COL_DEPTHS("r3", "[r1, #" #KP "+4]", "r8", "r9")                                             \
                QCC_FC_4COL_DEPTHS("r4", "[r1, #2*" #KP "]", "r6", "r7")                                             \
                QCC_FC_4COL_DEPTHS("r4", "[r1, #2*" #KP "+4]", "r8", "r9")                                           \
                QCC_FC_4COL_DEPTHS("r5", "[r1, #3*" #KP "]", "r6", "r7")                                             \
                QCC_FC_4COL_DEPTHS("r5", "[r1, #3*" #KP "+4]", "r8", "r9")                                           \
                QCC_FC_4COL_DEPTHS("r2", "[r1, #4]", "r8", "r9")                                                     \
                QCC_FC_4COL_DEPTHS("r2", "[r1], #8", "r6", "r7") /* column 0's first word last: the pointer moves */ \
                "cmp     r0, r12\n\t"                                                                              \
                "bne     1b\n\t"                                                                                   \
                "pop     {r12}\n\t"                                                                                \
                "stm     r12, {r2-r5}\n\t"                                                                         \
                "pop     {r4-r11, pc}");                                                                           \
    }

#else
#define QCC_DSP_BLOCKS 0
#define QCC_DSP_BLOCK(NAME) NULL
#define QCC_GEMM_2X4_DEFINE(NAME, K4)
#define QCC_GEMM_2X4_WIDE_DEFINE(NAME, K4)
#define QCC_FC_4COL_DEFINE(NAME, KP)
#endif

#endif /* QCC_DSP_BLOCKS_H */
