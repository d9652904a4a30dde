/* qcc_baremetal.h: what the startup code and the linker script (qcc_BOARD.ld) share with tools that
 * inspect a bare-metal image: the stack bounds and the word the unused stack is painted with, so
 * that the stack's high-water mark can be measured after a run (the first word from the bottom
 * that is no longer the paint). */
#ifndef QCC_BAREMETAL_H
#define QCC_BAREMETAL_H

#include <stdint.h>

#define QCC_STACK_PAINT 0x5afec0deu

/* Defined by the linker script. */
extern uint32_t __qcc_data_load[], __qcc_data_start[], __qcc_data_end[];
extern uint32_t __qcc_bss_start[], __qcc_bss_end[];
extern uint32_t __qcc_heap_start[], __qcc_heap_end[];
extern uint32_t __qcc_stack_bottom[], __qcc_stack_top[];

#endif /* QCC_BAREMETAL_H */
