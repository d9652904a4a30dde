/*
 * The Cortex-M4 timing model of insn_count's cycle estimate (docs/cycle_model.md): each Thumb
 * instruction's cycles from its encoding, after the Cortex-M4 Technical Reference Manual (ARM 100166,
 * table 3-1, "Processor instruction set summary", and the FPU's instruction table), with
 * zero-wait-state memory.
 *
 * The cost is worked out once per instruction, when QEMU translates it, from its bytes (the ARMv7-M
 * Architecture Reference Manual's Thumb encodings; QEMU's disassembly is not used: asking for it
 * stops QEMU 7.2 from calling the block's memory callbacks, measured). What depends on execution is
 * left to insn_count.c: whether a conditional branch was taken (M4_REFILL more cycles then), and the
 * wait states of data reads from flash. Everything the table gives 1 cycle, and every encoding not
 * singled out below, takes 1.
 */

#ifndef QCC_CORTEX_M4_TIMING_H
#define QCC_CORTEX_M4_TIMING_H

#include <stdbool.h>
#include <stdint.h>

/* P, the cycles of a pipeline refill after a taken branch: 1 to 3 in the TRM ("depending on the
 * alignment and width of the target instruction, and whether the processor manages to speculate
 * the address early"); the model takes the middle. */
#define M4_REFILL 2u

/* SDIV and UDIV: 2 to 12 cycles, by the operands' leading zeros and ones (early termination); the
 * operands are not known when the instruction is translated, so the model takes the most. */
#define M4_DIVIDE 12u

typedef struct {
    unsigned cycles;      /* static: all but a conditional branch's refill and flash wait states */
    bool load_single;     /* LDR, LDRB, LDRH, LDRSB, LDRSH: a single load or store right after pipelines */
    bool mem_single;      /* a single load or store: 1 cycle directly after a load_single */
    bool conditional_pc;  /* writes the PC only if its condition holds: M4_REFILL when it did */
} M4Cost;

/* The instructions still to come in the current IT block (translation state, per block). */
typedef struct {
    unsigned it_remaining;
} M4Decoder;

static unsigned m4_popcount(uint32_t bits)
{
    unsigned n = 0;
    for (; bits; bits &= bits - 1) {
        n++;
    }
    return n;
}

/* A branch-like instruction: 1 + P when it is unconditional, else 1 now and P when taken. */
static M4Cost m4_branch(unsigned cycles, bool conditional)
{
    M4Cost cost = {cycles + (conditional ? 0u : M4_REFILL), false, false, conditional};
    return cost;
}

static M4Cost m4_cost16(uint32_t hw, bool in_it)
{
    M4Cost cost = {1u, false, false, false};
    if ((hw & 0xF000u) == 0x5000u) { /* load/store register offset: opB 011..111 are loads */
        cost.cycles = 2u;
        cost.mem_single = true;
        cost.load_single = ((hw >> 9) & 7u) >= 3u;
    } else if ((hw & 0xE000u) == 0x6000u || (hw & 0xF000u) == 0x8000u || (hw & 0xF000u) == 0x9000u) {
        /* STR/LDR, STRB/LDRB, STRH/LDRH immediate, STR/LDR SP-relative: bit 11 is L */
        cost.cycles = 2u;
        cost.mem_single = true;
        cost.load_single = (hw >> 11) & 1u;
    } else if ((hw & 0xF800u) == 0x4800u) { /* LDR literal */
        cost.cycles = 2u;
        cost.mem_single = cost.load_single = true;
    } else if ((hw & 0xFE00u) == 0xB400u) { /* PUSH {rlist, lr?}: 1 + N */
        cost.cycles = 1u + m4_popcount(hw & 0x1FFu);
    } else if ((hw & 0xFE00u) == 0xBC00u) { /* POP {rlist, pc?}: 1 + N, + P with the PC */
        cost.cycles = 1u + m4_popcount(hw & 0x1FFu);
        if (hw & 0x100u) {
            cost = m4_branch(cost.cycles, in_it);
        }
    } else if ((hw & 0xF000u) == 0xC000u) { /* STM, LDM: 1 + N */
        cost.cycles = 1u + m4_popcount(hw & 0xFFu);
    } else if ((hw & 0xF000u) == 0xD000u && (hw & 0x0E00u) != 0x0E00u) { /* B<cond> */
        cost = m4_branch(1u, true);
    } else if ((hw & 0xF800u) == 0xE000u) { /* B */
        cost = m4_branch(1u, in_it);
    } else if ((hw & 0xF500u) == 0xB100u) { /* CBZ, CBNZ */
        cost = m4_branch(1u, true);
    } else if ((hw & 0xFF00u) == 0x4700u) { /* BX, BLX register */
        cost = m4_branch(1u, in_it);
    } else if ((hw & 0xFC00u) == 0x4400u && (hw & 0x0300u) != 0x0100u && ((hw & 0x80u) >> 4 | (hw & 7u)) == 15u) {
        cost = m4_branch(1u, in_it); /* ADD or MOV (high registers) into the PC */
    }
    return cost;
}

static M4Cost m4_cost32(uint32_t hw1, uint32_t hw2, bool in_it)
{
    M4Cost cost = {1u, false, false, false};
    if ((hw1 & 0xFE40u) == 0xE800u) { /* LDM, STM (PUSH.W, POP.W): 1 + N, + P with the PC */
        cost.cycles = 1u + m4_popcount(hw2 & 0xFFFFu);
        if ((hw1 & 0x10u) && (hw2 & 0x8000u)) {
            cost = m4_branch(cost.cycles, in_it);
        }
    } else if ((hw1 & 0xFE40u) == 0xE840u) { /* dual, exclusive, table branch */
        if ((hw1 & 0x0120u) != 0u) { /* LDRD, STRD (P or W set): 1 + N, N = 2 */
            cost.cycles = 3u;
        } else if ((hw1 & 0xFFF0u) == 0xE8D0u && (hw2 & 0xFFE0u) == 0xF000u) { /* TBB, TBH: 2 + P */
            cost = m4_branch(2u, false);
        } else { /* LDREX, STREX: a single load or store */
            cost.cycles = 2u;
            cost.mem_single = true;
            cost.load_single = (hw1 >> 4) & 1u;
        }
    } else if ((hw1 & 0xFE00u) == 0xF800u) { /* single loads (L = bit 4) and stores */
        cost.cycles = 2u;
        cost.mem_single = true;
        cost.load_single = (hw1 >> 4) & 1u;
        if (cost.load_single && (hw1 & 0x60u) == 0x40u && (hw2 >> 12) == 15u) { /* LDR into the PC: 2 + P */
            cost = m4_branch(2u, in_it);
        }
    } else if ((hw1 & 0xEE00u) == 0xEC00u && (hw2 & 0x0E00u) == 0x0A00u && (hw1 & 0x01A0u) != 0u) {
        /* VLDR, VSTR (P = 1, W = 0): 2; VLDM, VSTM, VPUSH, VPOP: 1 + N words (imm8) */
        bool single = (hw1 & 0x0120u) == 0x0100u;
        cost.cycles = single ? 2u : 1u + (hw2 & 0xFFu);
    } else if ((hw1 & 0xF800u) == 0xF000u && (hw2 & 0x8000u)) { /* branches and miscellaneous control */
        if ((hw2 & 0x5000u) == 0x5000u || (hw2 & 0x5000u) == 0x1000u) { /* BL, B.W */
            cost = m4_branch(1u, in_it);
        } else if ((hw2 & 0x5000u) == 0x0000u && (hw1 & 0x0380u) != 0x0380u) { /* B<cond>.W */
            cost = m4_branch(1u, true);
        }
    } else if ((hw1 & 0xFFD0u) == 0xFB90u && (hw2 & 0x00F0u) == 0x00F0u) { /* SDIV, UDIV */
        cost.cycles = M4_DIVIDE;
    } else if ((hw1 & 0xFF00u) == 0xEE00u && (hw2 & 0x0E10u) == 0x0A00u) { /* VFP data processing */
        uint32_t opc1 = hw1 & 0x00B0u;
        if (opc1 == 0x0080u) { /* VDIV */
            cost.cycles = 14u;
        } else if (opc1 == 0x00B0u && (hw1 & 0x000Fu) == 0x1u && (hw2 & 0x00C0u) == 0x00C0u) { /* VSQRT */
            cost.cycles = 14u;
        } else if (opc1 == 0x0000u || opc1 == 0x0010u || opc1 == 0x00A0u || opc1 == 0x0090u) {
            cost.cycles = 3u; /* VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS */
        }
    }
    return cost;
}

/* The cost of the Thumb instruction at bytes (2 or 4 of them, little-endian halfwords), in the
 * decoder's IT block state, which it advances. */
static M4Cost m4_cost(M4Decoder *decoder, const uint8_t *bytes, size_t size)
{
    uint32_t hw1 = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8;
    bool in_it = decoder->it_remaining > 0;
    M4Cost cost;
    if (in_it) {
        decoder->it_remaining--;
    }
    if (size >= 4) {
        cost = m4_cost32(hw1, (uint32_t)bytes[2] | (uint32_t)bytes[3] << 8, in_it);
    } else {
        cost = m4_cost16(hw1, in_it);
        if ((hw1 & 0xFF00u) == 0xBF00u && (hw1 & 0xFu) != 0u) { /* IT: its mask's lowest set bit gives the length */
            uint32_t mask = hw1 & 0xFu;
            decoder->it_remaining = mask & 1u ? 4u : mask & 2u ? 3u : mask & 4u ? 2u : 1u;
        }
    }
    return cost;
}

#endif /* QCC_CORTEX_M4_TIMING_H */
