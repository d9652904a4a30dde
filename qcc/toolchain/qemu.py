"""Running a bare-metal ELF on its target's QEMU board: the one place qcc starts qemu-system-arm
(qcc verify --target, the tests, and qcc.toolchain.insn_count with its TCG plugin through extra_args).
The image reports through semihosting: its console, and pass or fail as qemu's exit status."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from qcc.errors import QccError
from qcc.toolchain.targets import QEMU, Target, require_tools

DEFAULT_TIMEOUT = 300.0  # seconds: a golden test or a verify run of a small model takes a few


@dataclass(frozen=True)
class QemuRun:
    status: int  # qemu's exit status: 0 when the image exited with ADP_Stopped_ApplicationExit
    console: str  # everything the image wrote through semihosting, then anything qemu itself said


def command(elf: Path, target: Target, extra_args: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [QEMU, *target.qemu_arguments(), *extra_args, "-kernel", str(elf)]


def run_elf(elf: Path, target: Target, extra_args: list[str] | tuple[str, ...] = (),
            timeout: float = DEFAULT_TIMEOUT) -> QemuRun:
    """Run elf on target's machine until it exits; a run longer than timeout is an error (an image
    that faults exits through its fault handler, so only a hang gets here)."""
    if target.is_host:
        raise QccError(f"{elf}: the host target runs its programs directly, not on QEMU")
    require_tools(target)
    try:
        # QEMU writes the semihosting console to stderr; read both streams as one, in order.
        result = subprocess.run(command(elf, target, extra_args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise QccError(f"{elf}: no exit after {timeout:g} s on QEMU's {target.machine} ({target.name})") from None
    return QemuRun(result.returncode, result.stdout)
