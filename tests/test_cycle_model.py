"""The Cortex-M4 cycle estimate (qemu_plugin/cortex_m4_timing.h, docs/cycle_model.md) against a bare-metal
program whose regions' cycles are counted by hand from the Cortex-M4 TRM's table
(tests/data/insn_count/cycles.S), with and without flash wait states."""

import shutil
import subprocess
from pathlib import Path

import pytest

from qcc.commands.bench import REFILL_CYCLES
from qcc.toolchain.insn_count import FlashWaits, count_instructions

PROGRAM = Path(__file__).parent / "data" / "insn_count" / "cycles.S"
FLASH_END = 0x400000  # mps2-an386's code memory, where the program's constant lies

# (region, hand-counted cycles, instructions), in the program's order; P = 2 (REFILL_CYCLES)
REGIONS = [
    ("empty", 0, 0),
    ("4 x adds", 4, 4),
    ("ldr; ldr; adds: the second load pipelines", 2 + 1 + 1, 3),
    ("ldr; adds; ldr: no pipelining", 2 + 1 + 2, 3),
    ("ldr; str: a store after a load pipelines", 2 + 1, 2),
    ("str; str: nothing pipelines after a store", 2 + 2, 2),
    ("push {r4-r7}; pop {r4-r7}: 1 + N each", 5 + 5, 2),
    ("ldrd: 1 + 2; ldm of 3 registers: 1 + 3", 3 + 4, 2),
    ("movs #3, then 3 x (subs; bne), bne taken twice", 1 + 3 * 1 + 2 * 3 + 1, 7),
    ("sdiv: the most, 12", 12, 1),
    ("smlad; sxtb16; smlal", 3, 3),
    ("cbz not taken, then taken over a nop", 1 + 1 + 1 + 3, 4),
    ("cmp; ite eq; moveq; movne skipped", 4, 4),
    ("ldr.w; ldr.w: 32-bit loads pipeline too", 2 + 1, 2),
    ("push.w and pop.w of 8 registers", 9 + 9, 2),
    ("bl f; f: push {r4, lr}; pop {r4, pc}", 3 + 3 + 5, 3),
    ("cmp; beq.w taken", 1 + 3, 2),
    ("bl g; g: cmp; it eq; bxeq lr taken", 3 + 1 + 1 + 3, 4),
    ("ldr from flash", 2, 1),
    ("ldr from SRAM", 2, 1),
]
FLASH_LOAD = [name for name, _, _ in REGIONS].index("ldr from flash")
# Around each region: mark_begin's `bx lr` and the `bl mark_end`, each a branch: 1 + P.
MARK_OVERHEAD = 2 * (1 + REFILL_CYCLES)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    gcc = shutil.which("arm-none-eabi-gcc")
    assert gcc, "arm-none-eabi-gcc is missing: install Debian's gcc-arm-none-eabi"
    elf = tmp_path_factory.mktemp("cycles") / "cycles.elf"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles", "-Wl,-Ttext=0", "-Wl,-e,reset",
                    str(PROGRAM), "-o", str(elf)], check=True)
    return elf


def regions(elf: Path, flash_waits: FlashWaits | None = None) -> list[tuple[int, int]]:
    """(cycles, instructions) of each region, the marks' overhead taken off."""
    records = count_instructions(elf, ["mark_begin", "mark_end"], flash_waits=flash_waits)
    assert [record.mark for record in records] == [0, 1] * len(REGIONS)
    return [(end.cycles - begin.cycles - MARK_OVERHEAD, end.count - begin.count - 2)
            for begin, end in zip(records[0::2], records[1::2])]


def test_each_region_takes_its_hand_counted_cycles(program):
    measured = regions(program)
    for (name, cycles, instructions), (got_cycles, got_instructions) in zip(REGIONS, measured):
        assert (got_cycles, got_instructions) == (cycles, instructions), name


@pytest.mark.parametrize("wait_states", [1, 3])
def test_flash_wait_states_delay_the_reads_from_flash_only(program, wait_states):
    plain = regions(program)
    waiting = regions(program, FlashWaits(wait_states, FLASH_END))
    for k, ((name, _, _), before, after) in enumerate(zip(REGIONS, plain, waiting)):
        expected = before[0] + wait_states if k == FLASH_LOAD else before[0]
        assert after == (expected, before[1]), name
