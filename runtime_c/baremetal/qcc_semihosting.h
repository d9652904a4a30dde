/* qcc_semihosting.h: Arm semihosting for the bare-metal images qcc builds for QEMU (make run-BOARD,
 * qcc verify --target). A `bkpt 0xab` with the operation in r0 and its argument in r1 is trapped by
 * the debugger or, here, by QEMU (-semihosting-config enable=on,target=native): the console output
 * and the exit status of an image need no UART driver per board. */
#ifndef QCC_SEMIHOSTING_H
#define QCC_SEMIHOSTING_H

#include <stdint.h>

#define QCC_SYS_WRITEC 0x03u
#define QCC_SYS_WRITE0 0x04u
#define QCC_SYS_EXIT 0x18u
/* SYS_EXIT reasons: QEMU exits with status 0 for ApplicationExit and 1 for any other reason, so
 * the shell (make, qcc verify) reads pass or fail from qemu's exit status. */
#define QCC_ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define QCC_ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023u

static inline uint32_t qcc_semihosting_call(uint32_t operation, const void *argument)
{
    register uint32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* On AArch32, SYS_EXIT takes the reason itself in r1, not a pointer to a block. */
static inline void qcc_semihosting_exit(int success)
{
    register uint32_t r0 __asm__("r0") = QCC_SYS_EXIT;
    register uint32_t r1 __asm__("r1") = success ? QCC_ADP_STOPPED_APPLICATION_EXIT : QCC_ADP_STOPPED_RUNTIME_ERROR_UNKNOWN;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

#endif /* QCC_SEMIHOSTING_H */
