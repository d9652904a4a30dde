/* Test scaffolding for tests/test_cycle_model.py: a bare-metal Cortex-M4 program for QEMU's
 * mps2-an386 whose regions' cycles are known by hand from the Cortex-M4 TRM's table (with the
 * pipeline refill P = 2 of qemu_plugin/cortex_m4_timing.h).
 *
 * Each region runs between `bl mark_begin` and `bl mark_end`; the records of the two marks differ
 * by the region's cycles plus mark_begin's `bx lr` and the `bl mark_end`, 1 + P each. The regions,
 * in order, with their hand counts (tests/test_cycle_model.py holds the same numbers):
 *   empty                                                                   0
 *   4 x adds                                                                4
 *   ldr; ldr; adds                (the second load pipelines)   2 + 1 + 1 = 4
 *   ldr; adds; ldr                (not adjacent)                2 + 1 + 2 = 5
 *   ldr; str                      (a store after a load pipelines)  2 + 1 = 3
 *   str; str                      (nothing pipelines after a store) 2 + 2 = 4
 *   push {r4-r7}; pop {r4-r7}     (1 + N each)                  5 + 5     = 10
 *   ldrd; ldm {r0, r1, r3}        (1 + N each)                  3 + 4     = 7
 *   movs #3; 3 x (subs; bne)      (bne taken twice: 1 + P)  1 + 3 + 2 x 3 + 1 = 11
 *   sdiv                          (the most: 12)                            12
 *   smlad; sxtb16; smlal          (1 each)                                  3
 *   movs #1; cbz (not taken); movs #0; cbz (taken, over a nop)  1 + 1 + 1 + 3 = 6
 *   cmp; ite eq; moveq; movne     (the skipped movne: 1)        1 + 1 + 1 + 1 = 4
 *   ldr.w; ldr.w                  (32-bit encodings, pipelined)  2 + 1     = 3
 *   push.w {r4-r11}; pop.w {r4-r11}                               9 + 9     = 18
 *   bl f; f: push {r4, lr}; pop {r4, pc}      (1 + P) + 3 + (1 + 2 + P)  = 11
 *   cmp; beq.w (taken, over a nop)                                1 + 3     = 4
 *   bl g; g: cmp; it eq; bxeq lr  (taken in the IT block)  3 + 1 + 1 + 3  = 8
 *   ldr from flash (a constant in .text)   2, + the flash wait states
 *   ldr from SRAM                          2 whatever the flash's wait states
 */

    .syntax unified
    .cpu cortex-m4
    .thumb

    .text                       /* linked at 0: the vector table comes first */
    .word 0x20010000            /* initial stack pointer, in the SRAM at 0x20000000 */
    .word reset

    .global reset, mark_begin, mark_end

    .macro region
    bl mark_begin
    .endm
    .macro end_region
    bl mark_end
    .endm

    .thumb_func
reset:
    ldr r2, =0x20000100         /* a word-aligned SRAM buffer */
    ldr r4, =constant           /* a word in flash */
    movs r3, #7

    region                      /* empty */
    end_region

    region                      /* 4 x adds */
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    end_region

    region                      /* ldr; ldr; adds */
    ldr r1, [r2]
    ldr r5, [r2, #4]
    adds r0, r1, r5
    end_region

    region                      /* ldr; adds; ldr */
    ldr r1, [r2]
    adds r0, r1, r1
    ldr r5, [r2, #4]
    end_region

    region                      /* ldr; str */
    ldr r1, [r2]
    str r1, [r2, #8]
    end_region

    region                      /* str; str */
    str r1, [r2]
    str r1, [r2, #4]
    end_region

    region                      /* push; pop */
    push {r4, r5, r6, r7}
    pop {r4, r5, r6, r7}
    end_region

    region                      /* ldrd; ldm */
    ldrd r0, r1, [r2]
    ldm r2, {r0, r1, r3}
    end_region
    movs r3, #7

    region                      /* a loop of 3 */
    movs r0, #3
loop:
    subs r0, r0, #1
    bne loop
    end_region

    region                      /* sdiv */
    sdiv r0, r1, r3
    end_region

    region                      /* smlad; sxtb16; smlal */
    smlad r0, r1, r3, r0
    sxtb16 r1, r1
    smlal r0, r1, r5, r3
    end_region

    region                      /* cbz not taken, then taken */
    movs r0, #1
    cbz r0, 1f
    movs r0, #0
    cbz r0, 1f
    nop
1:
    end_region

    region                      /* an IT block */
    cmp r0, r0
    ite eq
    moveq r1, #1
    movne r1, #2
    end_region

    region                      /* 32-bit loads */
    ldr.w r1, [r2, #256]
    ldr.w r5, [r2, #260]
    end_region

    region                      /* 32-bit push and pop */
    push.w {r4, r5, r6, r7, r8, r9, r10, r11}
    pop.w {r4, r5, r6, r7, r8, r9, r10, r11}
    end_region

    region                      /* a call, its frame pushed and popped into the PC */
    bl f
    end_region

    region                      /* a 32-bit conditional branch, taken */
    cmp r0, r0
    beq.w 2f
    nop
2:
    end_region

    region                      /* a return in an IT block, taken */
    bl g
    end_region

    region                      /* a load from flash */
    ldr r1, [r4]
    end_region

    region                      /* a load from SRAM */
    ldr r1, [r2]
    end_region

    movs r0, #0x18              /* SYS_EXIT */
    ldr r1, =0x20026            /* ADP_Stopped_ApplicationExit: QEMU exits with status 0 */
    bkpt 0xab
    b .

    .thumb_func
f:
    push {r4, lr}
    pop {r4, pc}

    .thumb_func
g:
    cmp r0, r0
    it eq
    bxeq lr
    bx lr

    .thumb_func
mark_begin:
    bx lr

    .thumb_func
mark_end:
    bx lr

    .align 2
constant:
    .word 0x12345678

    .pool
