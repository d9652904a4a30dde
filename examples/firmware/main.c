/* main.c: a bare-metal firmware that runs the qcc-compiled models listed in models.def once each,
 * on an input held in flash, prints every output code on the semihosting console and exits with
 * status 0 only if every run returned 0. qcc's startup code (qcc_startup.c) calls main after
 * copying .data and zeroing .bss; qcc_syscalls.c sends printf to the console and exit's status
 * to QEMU. The model headers come in through the Makefile's -include flags. */
#include <stdio.h>

/* Each model's input: its raw codes, as the Makefile converts them from INPUT_<name> (a .bin). */
#define MODEL(name, input_count, output_type, output_count) \
    extern const unsigned char name##_input[]; \
    extern const unsigned long name##_input_bytes; \
    static output_type name##_output[output_count];
#include FIRMWARE_MODELS
#undef MODEL

/* One inference: the input's size checked against the model's, the output printed in one line. */
#define MODEL(name, input_count, output_type, output_count) \
    if (name##_input_bytes != (input_count)) { \
        printf(#name ": the input has %lu bytes, the model takes %lu\n", name##_input_bytes, \
               (unsigned long)(input_count)); \
        ++failures; \
    } else if (name##_run((const void *)name##_input, name##_output) != 0) { \
        printf(#name ": run failed\n"); \
        ++failures; \
    } else { \
        unsigned long i; \
        printf(#name ":"); \
        for (i = 0; i < (output_count); ++i) { \
            printf(" %d", (int)name##_output[i]); \
        } \
        printf("\n"); \
    }

int main(void)
{
    int failures = 0;
#include FIRMWARE_MODELS
    return failures != 0;
}
