"""--name and the section options refuse what the toolchains already use (issue 25, points 3 and 4):
a name whose NAME.c make would turn into its makefile, whose NAME.h would stand in for a C library
header, that Windows cannot hold, or that C reserves; a section the toolchains give a meaning of their
own, or that cannot hold constants (never loaded) or the arena (read-only). Each was accepted before
with exit 0. Names and sections of the user's own still work, on the board too."""

from __future__ import annotations

import subprocess

import pytest

import qcc
from helpers import REPO
from qcc.cli import main
from qcc.toolchain.build import make

EXAMPLE = REPO / "examples" / "cnn96_uint8.onnx"


def refused(argv: list[str], out, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("qcc: error: ") and captured.err.count("\n") == 1
    assert not out.exists()
    return captured.err


@pytest.mark.parametrize("name, why", [
    ("Makefile", "make rebuilds its makefile"), ("makefile", "make rebuilds"), ("GNUmakefile", "make rebuilds"),
    ("stdio", "<stdio.h>"), ("String", "<string.h>"), ("stdint", "<stdint.h>"), ("math", "<math.h>"),
    ("unistd", "<unistd.h>"), ("CON", "device name"), ("lpt1", "device name"), ("Nul", "device name"),
    ("_model", "underscore"), ("__x", "underscore"), ("qcc_model", "qcc_ prefix"),
    ("all", "CMake has a target"), ("test", "CMake has a target"), ("Install", "CMake has a target"),
    ("ExperimentalBuild", "CMake has a target"), ("Nightly", "CMake has a target"),
])
def test_names_the_folder_or_the_toolchain_use_are_refused(name, why, tmp_path, capsys):
    out = tmp_path / "out"
    err = refused(["compile", str(EXAMPLE), "-o", str(out), "--name", name], out, capsys)
    assert f"--name '{name}'" in err and why in err


def test_a_name_is_refused_before_the_model_is_read(tmp_path):
    with pytest.raises(qcc.QccError, match="^--name 'Makefile'"):
        qcc.compile(tmp_path / "missing.onnx", tmp_path / "out", name="Makefile")


RESERVED = [".init_array", ".preinit_array", ".fini", ".fini_array", ".init", ".text", ".data", ".bss", ".rodata",
            ".tdata", ".tbss", ".eh_frame", ".eh_frame_hdr", ".comment", ".symtab", ".strtab", ".ctors", ".dtors",
            ".init_array.00100", ".fini_array.5", ".debug_info", ".ARM.exidx", ".ARM.attributes", ".note.gnu",
            ".gnu.linkonce.t", ".stack", ".heap", ".qcc_vectors", ".tdata.x", ".got"]


@pytest.mark.parametrize("flag", ["--weights-section", "--arena-section"])
@pytest.mark.parametrize("section", RESERVED)
def test_sections_the_toolchain_reserves_are_refused(flag, section, tmp_path, capsys):
    out = tmp_path / "out"
    err = refused(["compile", str(EXAMPLE), "-o", str(out), flag, section], out, capsys)
    assert f"{flag} '{section}': the toolchain reserves this section" in err


@pytest.mark.parametrize("flag, section, why", [
    ("--weights-section", ".bss.weights", "never loaded"), ("--weights-section", ".noinit", "never loaded"),
    ("--weights-section", ".sbss", "never loaded"),
    ("--arena-section", ".text.arena", "read-only"), ("--arena-section", ".rodata.arena", "read-only"),
])
def test_sections_that_cannot_hold_the_role_are_refused(flag, section, why, tmp_path, capsys):
    out = tmp_path / "out"
    err = refused(["compile", str(EXAMPLE), "-o", str(out), flag, section], out, capsys)
    assert why in err


def test_a_section_is_refused_before_the_model_is_read(tmp_path):
    with pytest.raises(qcc.QccError, match="^--arena-section '.init_array'"):
        qcc.compile(tmp_path / "missing.onnx", tmp_path / "out", arena_section=".init_array")


def test_names_and_sections_of_ones_own_still_work_on_the_board(tmp_path):
    """Input sections the linker script gathers where the role belongs: the constants in .rodata.*, the arena
    in .bss.*; the golden test is exact on the emulated Cortex-M4."""
    out = tmp_path / "out"
    qcc.compile(EXAMPLE, out, name="makefile_model", golden=1, target="cortex-m4",
                weights_section=".rodata.model_weights", arena_section=".bss.model_arena")
    make(out, "run-cortex-m4")  # raises unless the golden test is exact
    listing = subprocess.run(["arm-none-eabi-nm", str(out / "test_makefile_model-cortex-m4.elf")], capture_output=True,
                             text=True, check=True).stdout
    symbols = {name: (int(address, 16), kind) for address, kind, name in
               (line.split() for line in listing.splitlines() if len(line.split()) == 3)}
    assert symbols["makefile_model_arena"][1] in "bB" and symbols["makefile_model_arena"][0] >= 0x20000000
    constants = [a for name, (a, kind) in symbols.items() if name.startswith("makefile_model_") and kind in "rRtT"]
    assert len(constants) > 10 and all(a < 0x20000000 for a in constants)  # in flash (its output section is .text)
