/*
 * insn_count: a QEMU TCG plugin (API version 1, QEMU 7.2) that counts executed guest
 * instructions exactly, estimates the cycles a Cortex-M4 takes for them (cortex_m4_timing.h,
 * docs/cycle_model.md), and records both each time execution reaches a marked address.
 *
 * Arguments (QEMU 7.2 passes each "key=value" after the plugin's path as one argv entry):
 *   mark=ADDR        a guest address (0x... hex or decimal), repeated once per mark; the marks are
 *                    numbered 0, 1, ... in the order given
 *   out=PATH         the file written at exit
 *   flash_wait=W     wait states of each data read below flash_end (default 0: none)
 *   flash_end=ADDR   the end of the flash region (the code and constants), with flash_wait
 *
 * The file has one line per time a marked instruction executed, in execution order:
 *   "<mark index> <count> <cycles>", where count is the number of guest instructions executed
 *   before that instruction and cycles the estimated cycles they took (so the difference between
 *   two lines is the number of instructions, or cycles, from the first marked instruction,
 *   included, to the second, excluded).
 *
 * Exactness: every translated instruction adds 1 to the counter when it executes. A marked
 * instruction does not get the inline add: its callback records the counter and then adds the
 * 1 itself, so the recorded value does not depend on the order in which QEMU runs an
 * instruction's callbacks and inline operations. The cycles follow the same rule; a taken
 * conditional branch's refill is added when the block it led to starts, before that block's
 * instructions (QEMU runs a block's callbacks before its instructions').
 *
 * One vCPU: the counters are plain globals that every vCPU's inline add would race on, so the
 * plugin refuses a system with more than one.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cortex_m4_timing.h"
#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

typedef struct {
    uint32_t mark;
    uint64_t count;
    uint64_t cycles;
} Record;

/* A translated block: where it starts, where execution falls through after it, and whether its
 * last instruction writes the PC only if its condition holds (a conditional branch). */
typedef struct {
    uint64_t start, fallthrough;
    bool conditional_end;
} Block;

static uint64_t *marks;
static size_t n_marks;
static const char *out_path;
static uint64_t flash_end;
static unsigned flash_wait;

static uint64_t executed, cycles;
static const Block *previous_block;

static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;
static Record *records;
static size_t n_records, records_capacity;
static bool out_of_memory;

/* A marked instruction's callback data: the mark's index and the instruction's cycles (below 2^16: at
 * most 1 + 256 + P, a VLDM of 256 words), in one word. */
#define MARK_SITE(mark, insn_cycles) ((void *)(((uintptr_t)(mark) << 16) | (uintptr_t)(insn_cycles)))

static void mark_reached(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    uint32_t mark = (uint32_t)((uintptr_t)userdata >> 16);
    unsigned insn_cycles = (unsigned)((uintptr_t)userdata & 0xFFFF);
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
        records[n_records++] = (Record){mark, executed, cycles};
    }
    executed += 1; /* the marked instruction itself, which has no inline add */
    cycles += insn_cycles;
    pthread_mutex_unlock(&records_lock);
}

/* A block starts: if the one before it ended in a conditional branch and execution did not fall
 * through, the branch was taken and the pipeline refilled. */
static void block_entered(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    const Block *block = userdata;
    if (previous_block && previous_block->conditional_end && block->start != previous_block->fallthrough) {
        cycles += M4_REFILL;
    }
    previous_block = block;
}

/* A data access: a read below flash_end waits the flash's wait states. */
static void memory_read(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    if (!qemu_plugin_mem_is_store(info) && vaddr < flash_end) {
        cycles += flash_wait;
    }
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    /* Kept for as long as the block may run: QEMU gives no call when it drops a translation, and a
     * run translates each block a few times at most. */
    Block *block = calloc(1, sizeof *block);
    M4Decoder decoder = {0};
    bool after_load_single = false;
    if (!block) {
        out_of_memory = true;
        return;
    }
    block->start = qemu_plugin_tb_vaddr(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        M4Cost cost = m4_cost(&decoder, qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn));
        /* a single load or store directly after a single load, in the same block */
        unsigned insn_cycles = cost.mem_single && after_load_single ? 1u : cost.cycles;
        after_load_single = cost.load_single;
        size_t m = 0;
        while (m < n_marks && marks[m] != vaddr) {
            m++;
        }
        if (m < n_marks) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark_reached, QEMU_PLUGIN_CB_NO_REGS,
                                                   MARK_SITE(m, insn_cycles));
        } else {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &executed, 1);
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &cycles, insn_cycles);
        }
        if (flash_wait) {
            /* on each access, the reads told apart in the callback: with QEMU_PLUGIN_MEM_R, QEMU 7.2
             * calls it for some accesses only, stores among them (measured) */
            qemu_plugin_register_vcpu_mem_cb(insn, memory_read, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
        }
        if (i + 1 == n) {
            block->fallthrough = vaddr + qemu_plugin_insn_size(insn);
            block->conditional_end = cost.conditional_pc;
        }
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_entered, QEMU_PLUGIN_CB_NO_REGS, block);
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
        fprintf(out, "%" PRIu32 " %" PRIu64 " %" PRIu64 "\n", records[i].mark, records[i].count, records[i].cycles);
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
        } else if (strncmp(argv[i], "flash_end=", 10) == 0) {
            if (parse_mark(argv[i] + 10, &flash_end) != 0) {
                return 1;
            }
        } else if (strncmp(argv[i], "flash_wait=", 11) == 0) {
            char *end;
            unsigned long value = strtoul(argv[i] + 11, &end, 10);
            if (end == argv[i] + 11 || *end != '\0' || value > 15) {
                fprintf(stderr, "insn_count: flash_wait=%s is not a number of wait states (0 to 15)\n", argv[i] + 11);
                return 1;
            }
            flash_wait = (unsigned)value;
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (expected mark=ADDR, out=PATH, flash_wait=W or flash_end=ADDR)\n",
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
