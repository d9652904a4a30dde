/* Test scaffolding for tests/test_insn_count.py: a bare-metal Cortex-M4 program for QEMU's
 * mps2-an386 whose instruction counts are known by hand.
 *
 * reset calls mark_begin, runs ITERATIONS times a two-instruction loop (none when ITERATIONS is
 * 0: the empty region), calls mark_end and stops QEMU through semihosting. Between the entry of
 * mark_begin and the entry of mark_end execute:
 *   bx lr (mark_begin's return)                                     1
 *   ldr r0, =ITERATIONS (assembled as mov.w)  (only if ITERATIONS)  1
 *   ITERATIONS x (subs r0, r0, #1; bne loop)                        2 x ITERATIONS
 *   bl mark_end                                                     1
 * never_called is a function that never runs. */

    .syntax unified
    .cpu cortex-m4
    .thumb

    .text                       /* linked at 0: the vector table comes first */
    .word 0x20010000            /* initial stack pointer, in the SRAM at 0x20000000 */
    .word reset                 /* a .thumb_func symbol: bit 0 set, as the M profile requires */

    .global reset, mark_begin, mark_end, loop, never_called

    .thumb_func
reset:
    bl mark_begin
#if ITERATIONS
    ldr r0, =ITERATIONS
loop:
    subs r0, r0, #1
    bne loop
#endif
    bl mark_end
    movs r0, #0x18              /* SYS_EXIT */
    ldr r1, =0x20026            /* ADP_Stopped_ApplicationExit: QEMU exits with status 0 */
    bkpt 0xab
    b .

    .thumb_func
mark_begin:
    bx lr

    .thumb_func
mark_end:
    bx lr

    .thumb_func
never_called:
    bx lr

    .pool
