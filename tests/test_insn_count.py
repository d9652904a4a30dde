"""The instruction-counting instrument (qcc.toolchain.insn_count, qemu_plugin/insn_count.c) against a
bare-metal Cortex-M4 program whose counts are known by hand (tests/data/insn_count/program.S)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from qcc.errors import QccError
from qcc.toolchain.insn_count import build_plugin, count_instructions, elf_symbols

PROGRAM = Path(__file__).parent / "data" / "insn_count" / "program.S"

# From program.S, by hand: between the entry of mark_begin and the entry of mark_end run
# mark_begin's `bx lr` and the `bl mark_end` (the call overhead), and with a loop its setup
# (`ldr r0, =N`) and N iterations of `subs; bne`.
CALL_OVERHEAD = 2
LOOP_SETUP = 1
INSNS_PER_ITERATION = 2


def build_program(tmp_path: Path, iterations: int) -> Path:
    gcc = shutil.which("arm-none-eabi-gcc")
    assert gcc, "arm-none-eabi-gcc is missing: install Debian's gcc-arm-none-eabi"
    elf = tmp_path / f"program_{iterations}.elf"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles", "-Wl,-Ttext=0", "-Wl,-e,reset",
                    f"-DITERATIONS={iterations}", str(PROGRAM), "-o", str(elf)], check=True)
    return elf


def region(elf: Path) -> int:
    """Instructions from the entry of mark_begin to the entry of mark_end."""
    records = count_instructions(elf, ["mark_begin", "mark_end"])
    assert [record.mark for record in records] == [0, 1]
    return records[1].count - records[0].count


def test_the_count_between_two_marks_is_exact(tmp_path):
    empty = region(build_program(tmp_path, 0))
    assert empty == CALL_OVERHEAD
    n1, n2 = 10, 1000
    count1, count2 = region(build_program(tmp_path, n1)), region(build_program(tmp_path, n2))
    # The overhead around the region is the same whatever the region holds...
    assert count1 - (LOOP_SETUP + n1 * INSNS_PER_ITERATION) == empty
    assert count2 - (LOOP_SETUP + n2 * INSNS_PER_ITERATION) == empty
    # ... so it cancels out of a difference.
    assert count2 - count1 == (n2 - n1) * INSNS_PER_ITERATION


def test_a_mark_inside_a_loop_is_recorded_at_each_iteration_in_order(tmp_path):
    iterations = 25
    records = count_instructions(build_program(tmp_path, iterations), ["mark_begin", "loop", "mark_end"])
    assert [record.mark for record in records] == [0] + [1] * iterations + [2]
    counts = [record.count for record in records]
    # mark_begin's `bx lr` and the setup, then one iteration per record, then the `bl mark_end`.
    assert counts[1] - counts[0] == CALL_OVERHEAD - 1 + LOOP_SETUP
    assert {b - a for a, b in zip(counts[1:-1], counts[2:-1])} == {INSNS_PER_ITERATION}
    assert counts[-1] - counts[-2] == INSNS_PER_ITERATION + 1


def test_thumb_function_symbols_and_labels_both_mark_their_instruction(tmp_path):
    """A Thumb function's symbol has bit 0 set; a plain label's does not. The test above marks
    both kinds, and both are found."""
    symbols = elf_symbols(build_program(tmp_path, 1))
    assert symbols["mark_begin"] % 2 == 1
    assert symbols["loop"] % 2 == 0


def test_a_mark_never_reached_is_an_error(tmp_path):
    with pytest.raises(QccError, match=r"execution never reached 'never_called' \(0x[0-9a-f]+\)$"):
        count_instructions(build_program(tmp_path, 0), ["mark_begin", "never_called"])


def test_a_missing_symbol_is_an_error(tmp_path):
    elf = build_program(tmp_path, 0)
    with pytest.raises(QccError, match=f"^{elf} has no symbol 'no_such_function' to mark$"):
        count_instructions(elf, ["mark_begin", "no_such_function"])


def test_the_plugin_is_built_once_per_source_version(tmp_path):
    library = build_plugin(tmp_path)
    built = library.stat().st_mtime_ns
    assert build_plugin(tmp_path) == library
    assert library.stat().st_mtime_ns == built
    assert [path.name for path in tmp_path.iterdir()] == [library.name]
