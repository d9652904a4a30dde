"""Counting a firmware's executed instructions under QEMU, and estimating its Cortex-M4 cycles
(docs/insn_count.md, docs/cycle_model.md).

`count_instructions` runs an ARM ELF in qemu-system-arm (through qcc.toolchain.qemu.run_elf, the project's
one QEMU runner) with the insn_count TCG plugin (qemu_plugin/insn_count.c, built here with the
host gcc and cached) and returns, in execution
order, each time execution reached one of the marked addresses, with the number of guest
instructions executed before it and the cycles a Cortex-M4 would have taken for them
(qemu_plugin/cortex_m4_timing.h: an estimate; the count is exact). The instructions between the
entry of A and the entry of B are the difference of two consecutive records.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

from qcc.assets import asset_dir
from qcc.errors import QccError
from qcc.toolchain.qemu import QemuRun, run_elf
from qcc.toolchain.targets import QEMU, TARGETS, Target

# The plugin is written against QEMU 7.2's plugin API (version 1), which QEMU 8.2 dropped.
QEMU_PACKAGE = "Debian 12's qemu-system-arm (QEMU 7.2)"
PLUGIN_SOURCES = ("insn_count.c", "cortex_m4_timing.h", "qemu_plugin_api.h")
# C11 for the anonymous union in qemu_info_t; POSIX for the pthread mutex.
PLUGIN_CFLAGS = ("-std=c11", "-D_POSIX_C_SOURCE=200809L", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra",
                 "-Werror", "-fvisibility=hidden")


class Record(NamedTuple):
    """Execution reached marks[mark] after `count` guest instructions had executed, which a
    Cortex-M4 would have taken an estimated `cycles` for."""
    mark: int
    count: int
    cycles: int


class FlashWaits(NamedTuple):
    """Wait states on each data read from flash, the addresses below `end` (the code and the
    constants): the cycle estimate's memory model beyond zero-wait-state memory."""
    states: int
    end: int


def plugin_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qcc" / "insn_count"


def build_plugin(cache_dir: Path | None = None) -> Path:
    """The plugin's shared library, built once per version of its sources (and flags): the file
    name carries their hash, so an edited plugin is never served from an old build."""
    plugin_dir = asset_dir("qemu_plugin")
    digest = hashlib.sha256(" ".join(PLUGIN_CFLAGS).encode())
    for name in PLUGIN_SOURCES:
        digest.update((plugin_dir / name).read_bytes())
    cache_dir = cache_dir or plugin_cache_dir()
    library = cache_dir / f"insn_count-{digest.hexdigest()[:16]}.so"
    if library.exists():
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        raise QccError("gcc is not installed: it builds qcc's QEMU instruction-counting plugin (install Debian's gcc)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed, so that a concurrent run never loads half a file.
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        partial = Path(work) / library.name
        result = subprocess.run([gcc, *PLUGIN_CFLAGS, "-o", str(partial), str(plugin_dir / "insn_count.c"), "-lpthread"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise QccError(f"building the QEMU plugin {plugin_dir / 'insn_count.c'} failed: {_one_line(result.stderr)}")
        os.replace(partial, library)
    return library


def elf_symbols(elf: Path) -> dict[str, int | None]:
    """The defined symbols of an ELF file's symbol table, name -> value (st_value: a Thumb
    function's has bit 0 set, which the plugin ignores). A name defined at two addresses (two
    local symbols of different files) maps to None: asking for it is ambiguous."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise QccError(f"{elf} is not an ELF file")
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    header = struct.Struct(order + ("QQIHHHHHH" if is64 else "IIIHHHHHH"))  # e_phoff .. e_shstrndx
    _, shoff, _, _, _, _, shentsize, shnum, _ = header.unpack_from(data, 0x20 if is64 else 0x1C)
    section = struct.Struct(order + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"))
    sections = [section.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    symbol = struct.Struct(order + ("IBBHQQ" if is64 else "IIIBBH"))
    symbols: dict[str, int | None] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strings_offset = sections[link][4]
        for start in range(offset + entsize, offset + size, entsize):  # entry 0 is the null symbol
            if is64:
                name, _, _, shndx, value, _ = symbol.unpack_from(data, start)
            else:
                name, value, _, _, _, shndx = symbol.unpack_from(data, start)
            if shndx == 0 or name == 0:  # undefined, or nameless (a section symbol)
                continue
            text = data[strings_offset + name:data.index(b"\0", strings_offset + name)].decode()
            symbols[text] = value if symbols.get(text, value) == value else None
    return symbols


def mark_addresses(elf: Path, marks: Sequence[str | int]) -> list[int]:
    """Each mark's address: an int is one already, a str is a symbol of the ELF file."""
    symbols = elf_symbols(elf) if any(isinstance(mark, str) for mark in marks) else {}
    addresses = []
    for mark in marks:
        if isinstance(mark, int):
            addresses.append(mark)
        elif mark not in symbols:
            raise QccError(f"{elf} has no symbol '{mark}' to mark")
        elif symbols[mark] is None:
            raise QccError(f"{elf} defines '{mark}' at more than one address: mark it by address")
        else:
            addresses.append(symbols[mark])
    return addresses


def count_instructions(elf: Path, marks: Sequence[str | int], machine: str = "mps2-an386",
                       timeout: float = 120.0, flash_waits: FlashWaits | None = None) -> list[Record]:
    """Run `elf` on QEMU's `machine` until it stops QEMU (semihosting SYS_EXIT) and return the
    records of the marks (symbol names or addresses), in execution order. Every mark must be
    reached at least once."""
    boards = [target for target in TARGETS.values() if target.machine == machine]
    if not boards:
        raise QccError(f"no qcc target runs on QEMU's {machine!r}")
    records, _ = count_run(elf, boards[0], marks, timeout, flash_waits)
    return records


def count_run(elf: Path, target: Target, marks: Sequence[str | int], timeout: float = 120.0,
              flash_waits: FlashWaits | None = None) -> tuple[list[Record], QemuRun]:
    """count_instructions on target's board, also returning the run (its console: an image may
    report more than the plugin can, such as its stack high-water mark)."""
    addresses = mark_addresses(elf, marks)
    if shutil.which(QEMU) is None:
        raise QccError(f"{QEMU} is not installed: install {QEMU_PACKAGE}")
    plugin = build_plugin()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "records.txt"
        # QEMU splits -plugin's value at commas; a doubled comma is a literal one.
        options = [str(plugin), *(f"mark=0x{address:x}" for address in addresses), f"out={out}"]
        if flash_waits is not None and flash_waits.states:
            options += [f"flash_wait={flash_waits.states}", f"flash_end=0x{flash_waits.end:x}"]
        plugin_args = ["-plugin", ",".join(option.replace(",", ",,") for option in options)]
        try:
            run = run_elf(elf, target, plugin_args, timeout)
        except QccError as error:  # run_elf's only error of its own is a timeout
            raise QccError(f"{error}: it must end with a semihosting SYS_EXIT") from None
        if run.status != 0:
            raise QccError(f"{QEMU} running {elf} failed (exit status {run.status}): "
                           f"{_one_line(run.console) or 'no message'}")
        if not out.exists():
            raise QccError(f"{QEMU} ran {elf} but the insn_count plugin wrote no records: "
                           f"{_one_line(run.console) or 'no message'}")
        records = _read_records(out)
    reached = {record.mark for record in records}
    missed = [f"'{marks[i]}' (0x{address:x})" for i, address in enumerate(addresses) if i not in reached]
    if missed:
        raise QccError(f"{elf}: execution never reached {', '.join(missed)}")
    return records, run


def _read_records(path: Path) -> list[Record]:
    records = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) != 3 or not all(field.isdigit() for field in fields):
            raise QccError(f"the insn_count plugin's output is incomplete: {line}")
        records.append(Record(int(fields[0]), int(fields[1]), int(fields[2])))
    return records


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
