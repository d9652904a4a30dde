/* qcc_syscalls.c: the newlib(-nano) system calls a bare-metal image needs for printf and exit:
 * console output through semihosting, a heap between two linker-script symbols, and stubs for
 * the calls stdio makes on stdout. No file system and no input. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "qcc_baremetal.h"
#include "qcc_semihosting.h"

int _write(int fd, const char *data, int length);
int _read(int fd, char *data, int length);
int _close(int fd);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
int _lseek(int fd, int offset, int whence);
void *_sbrk(ptrdiff_t increment);
void _exit(int status);

/* stdout and stderr both go to the semihosting console, in chunks for SYS_WRITE0 (which stops at
 * a NUL, so a NUL byte goes alone through SYS_WRITEC). */
int _write(int fd, const char *data, int length)
{
    char chunk[65];
    int done = 0;
    (void)fd;
    while (done < length) {
        int n = 0;
        if (data[done] == '\0') {
            qcc_semihosting_call(QCC_SYS_WRITEC, &data[done]);
            ++done;
            continue;
        }
        while (n < 64 && done + n < length && data[done + n] != '\0') {
            chunk[n] = data[done + n];
            ++n;
        }
        chunk[n] = '\0';
        qcc_semihosting_call(QCC_SYS_WRITE0, chunk);
        done += n;
    }
    return length;
}

int _read(int fd, char *data, int length)
{
    (void)fd;
    (void)data;
    (void)length;
    return 0; /* end of file: the images read no input */
}

int _close(int fd)
{
    (void)fd;
    return -1;
}

/* A character device: newlib line-buffers it. */
int _fstat(int fd, struct stat *st)
{
    (void)fd;
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd)
{
    (void)fd;
    return 1;
}

int _lseek(int fd, int offset, int whence)
{
    (void)fd;
    (void)offset;
    (void)whence;
    return 0;
}

/* malloc's memory (stdio's buffers): the heap region the linker script reserves, never beyond. */
void *_sbrk(ptrdiff_t increment)
{
    static char *brk = (char *)__qcc_heap_start;
    char *previous = brk;
    if (increment < 0 || (char *)__qcc_heap_end - brk < increment) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += increment;
    return previous;
}

void _exit(int status)
{
    qcc_semihosting_exit(status == 0);
    for (;;) {
    }
}
