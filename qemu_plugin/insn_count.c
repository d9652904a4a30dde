/*
 * insn_count: a QEMU TCG plugin (API version 1, QEMU 7.2) that counts executed guest
 * instructions exactly and records the count each time execution reaches a marked address.
 *
 * Arguments (QEMU 7.2 passes each "key=value" after the plugin's path as one argv entry):
 *   mark=ADDR   a guest address (0x... hex or decimal), repeated once per mark; the marks are
 *               numbered 0, 1, ... in the order given
 *   out=PATH    the file written at exit
 *
 * The file has one line per time a marked instruction executed, in execution order:
 *   "<mark index> <count>", where count is the number of guest instructions executed before
 *   that instruction (so the difference between two lines is the number of instructions from
 *   the first marked instruction, included, to the second, excluded).
 *
 * Exactness: every translated instruction adds 1 to the counter when it executes. A marked
 * instruction does not get the inline add: its callback records the counter and then adds the
 * 1 itself, so the recorded value does not depend on the order in which QEMU runs an
 * instruction's callbacks and inline operations.
 *
 * One vCPU: the counter is a plain global that every vCPU's inline add would race on, so the
 * plugin refuses a system with more than one.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

typedef struct {
    uint32_t mark;
    uint64_t count;
} Record;

static uint64_t *marks;
static size_t n_marks;
static const char *out_path;

static uint64_t executed;

static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;
static Record *records;
static size_t n_records, records_capacity;
static bool out_of_memory;

static void mark_reached(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    uint32_t mark = (uint32_t)(uintptr_t)userdata;
    pthread_mutex_lock(&records_lock);
    if (n_records == records_capacity && !out_of_memory) {
        size_t capacity = records_capacity ? 2 * records_capacity : 1024;
        Record *grown = realloc(records, capacity * sizeof *grown);
        if (grown) {
            records = grown;
            records_capacity = capacity;
        } else {
            out_of_memory = true; /* reported at exit rather than writing a silently short file */
        }
    }
    if (n_records < records_capacity) {
        records[n_records++] = (Record){mark, executed};
    }
    executed += 1; /* the marked instruction itself, which has no inline add */
    pthread_mutex_unlock(&records_lock);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        size_t m = 0;
        while (m < n_marks && marks[m] != vaddr) {
            m++;
        }
        if (m < n_marks) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark_reached, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)m);
        } else {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &executed, 1);
        }
    }
}

static void write_records(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "insn_count: cannot write %s: %s\n", out_path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < n_records; i++) {
        fprintf(out, "%" PRIu32 " %" PRIu64 "\n", records[i].mark, records[i].count);
    }
    if (out_of_memory) {
        /* A last line that is not a record, so that a reader cannot take the file as complete. */
        fprintf(out, "error: out of memory after %zu records\n", n_records);
    }
    if (fclose(out) != 0) {
        fprintf(stderr, "insn_count: cannot write %s: %s\n", out_path, strerror(errno));
    }
}

/* A mark address, or 1 with a message. ARM symbol tables give a Thumb function's address with
 * bit 0 set, while the instruction's vaddr has it clear; no ARM instruction starts at an odd
 * address, so bit 0 is dropped. */
static int parse_mark(const char *text, uint64_t *address)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "insn_count: mark=%s is not an address\n", text);
        return 1;
    }
    *address = (uint64_t)value & ~(uint64_t)1;
    return 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    if (info->system_emulation && info->system.smp_vcpus > 1) {
        fprintf(stderr, "insn_count: counts a single vCPU, this system has %d (use -smp 1)\n",
                info->system.smp_vcpus);
        return 1;
    }
    marks = calloc(argc > 0 ? (size_t)argc : 1, sizeof *marks);
    if (!marks) {
        fprintf(stderr, "insn_count: out of memory\n");
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "mark=", 5) == 0) {
            uint64_t address;
            if (parse_mark(argv[i] + 5, &address) != 0) {
                return 1;
            }
            for (size_t m = 0; m < n_marks; m++) {
                if (marks[m] == address) {
                    /* One instruction gets one callback, which records one mark index. */
                    fprintf(stderr, "insn_count: mark 0x%" PRIx64 " is given twice\n", address);
                    return 1;
                }
            }
            marks[n_marks++] = address;
        } else if (strncmp(argv[i], "out=", 4) == 0 && argv[i][4] != '\0') {
            out_path = argv[i] + 4;
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (expected mark=ADDR or out=PATH)\n",
                    argv[i]);
            return 1;
        }
    }
    if (!out_path) {
        fprintf(stderr, "insn_count: no out=PATH argument\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, write_records, NULL);
    return 0;
}
