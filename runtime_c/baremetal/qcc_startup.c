/* qcc_startup.c: vector table and reset handler of the bare-metal images (make run-BOARD). Written
 * for every Cortex-M from M0 to M55: only instructions of armv6-m, plus what the compiler's own
 * predefined macros say this build may use. */
#include <stdint.h>
#include <stdlib.h>

#include "qcc_baremetal.h"
#include "qcc_semihosting.h"

int main(void);
void qcc_reset_handler(void);

/* System Control Block: Coprocessor Access Control Register (armv7-m and armv8-m only). */
#define QCC_CPACR (*(volatile uint32_t *)0xE000ED88u)

void qcc_reset_handler(void)
{
    uint32_t *dst, *src, *sp;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* The compiler may emit FPU or MVE instructions (CP10 and CP11): they fault until full access
     * is granted, and the core resets with it denied. First, since even the loops below may be
     * vectorized. */
    QCC_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    for (src = __qcc_data_load, dst = __qcc_data_start; dst < __qcc_data_end; ++src, ++dst) {
        *dst = *src;
    }
    for (dst = __qcc_bss_start; dst < __qcc_bss_end; ++dst) {
        *dst = 0;
    }
    /* Paint the stack below this frame; everything above the current stack pointer is in use. */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = __qcc_stack_bottom; dst < sp - 16; ++dst) {
        *dst = QCC_STACK_PAINT;
    }
    exit(main()); /* exit() flushes stdout, then _exit() reports the status through semihosting */
}

/* Any fault or unexpected exception ends the run as a failure instead of hanging until a timeout. */
static void qcc_unexpected_exception(void)
{
    qcc_semihosting_exit(0);
    for (;;) {
    }
}

/* The initial stack pointer, then the 15 system exceptions; no device interrupt is enabled. */
struct qcc_vector_table {
    uint32_t *initial_stack_pointer;
    void (*handlers[15])(void);
};

__attribute__((section(".qcc_vectors"), used)) const struct qcc_vector_table qcc_vectors = {
    __qcc_stack_top,
    {qcc_reset_handler, qcc_unexpected_exception, qcc_unexpected_exception, qcc_unexpected_exception,
     qcc_unexpected_exception, qcc_unexpected_exception, qcc_unexpected_exception, 0, 0, 0, qcc_unexpected_exception,
     qcc_unexpected_exception, 0, qcc_unexpected_exception, qcc_unexpected_exception},
};
