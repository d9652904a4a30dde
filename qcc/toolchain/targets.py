"""What qcc knows about each target (--target): the cross compiler and its CPU flags, the QEMU
board that emulates it and that board's memory map, from which the linker script of its bare-metal
image is written (templates/baremetal.ld.j2). `host` is the machine qcc runs on.

The memory maps are QEMU 7.2's (`info mtree` on each machine; hw/arm/microbit.c and nrf51_soc.c,
hw/arm/mps2.c, hw/arm/mps2-tz.c). On the MPS2/MPS3 boards every region is RAM to QEMU: the one
the ELF's code and constants go to is called flash here, as on a microcontroller."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace

from qcc.errors import QccError

KIB = 1024
CROSS_COMPILER = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
# What Debian calls the packages that provide them (the error messages say what to install).
CROSS_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
QEMU_PACKAGE = "qemu-system-arm"

# Room the fit check reserves for what qcc cannot count before linking: the runtime kernels,
# the startup code and newlib-nano's printf in flash, and newlib's own data in RAM. The linker
# script's regions are the final check.
CODE_FLASH_BYTES = 32 * KIB
LIBC_RAM_BYTES = 1 * KIB


@dataclass(frozen=True)
class Region:
    origin: int
    length: int
    qemu_name: str  # the region's name in QEMU's memory tree

    @property
    def end(self) -> int:
        return self.origin + self.length


@dataclass
class FlashPlan:
    """Where a bare-metal image's constants go on a board with more than one read-only region: the
    model's arrays stay in the first (the one the code runs from, often the fastest: an ITCM) until it
    is full; the largest then move, each to the first further region with room. The test data (golden
    cases, the runners' input sets) goes after the model's arrays, in the first region with room."""
    moved: list[list[str]]  # per further region (Target.more_flash): the model's arrays it holds
    model_bytes: list[int]  # per region, the first included: the model's constants in it
    test_region: int = 0  # where the test data goes: 0 the first region, k more_flash[k - 1]
    test_bytes: int = 0

    @property
    def used(self) -> bool:
        """Whether anything goes beyond the first region (the linker script then names the further ones)."""
        return self.test_region > 0 or any(self.moved)

    def with_test_data(self, target: Target, test_bytes: int) -> FlashPlan | None:
        """The same placement of the model's arrays with test_bytes of test data in the first region with
        room, or None when no region has it."""
        rooms = target.flash_rooms()
        region = next((k for k in range(len(rooms)) if self.model_bytes[k] + test_bytes <= rooms[k]), None)
        return None if region is None else replace(self, test_region=region, test_bytes=test_bytes)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    compiler: str
    cpu_flags: tuple[str, ...]
    machine: str | None = None  # QEMU's -M
    flash: Region | None = None  # code and constants
    # Further read-only regions for the constants the first cannot hold, in order of preference (FlashPlan).
    more_flash: tuple[Region, ...] = ()
    ram: Region | None = None  # .data, .bss (the arena), heap, stack
    stack_bytes: int = 0
    heap_bytes: int = 0  # newlib's stdio buffers (printf in the golden test)
    # A single-precision FPU that cpu_flags let the compiler use (--fpu). The host: its C compiler's
    # float is IEEE binary32 evaluated in float (FLT_EVAL_METHOD 0; qcc_requant_ort_fpu.h checks).
    fpu: bool = False

    @property
    def is_host(self) -> bool:
        return self.machine is None

    def qemu_arguments(self) -> list[str]:
        """Arguments to qemu-system-arm before `-kernel IMAGE.elf`: no display, monitor or UART;
        console and exit status through semihosting (runtime_c/baremetal/qcc_semihosting.h)."""
        return ["-M", self.machine, "-nographic", "-monitor", "none", "-serial", "none",
                "-semihosting-config", "enable=on,target=native"]

    def ram_need(self, data_bytes: int) -> int:
        """RAM for data_bytes of static data (arena, I/O buffers) with the stack, heap and libc."""
        return data_bytes + self.stack_bytes + self.heap_bytes + LIBC_RAM_BYTES

    def flash_rooms(self) -> list[int]:
        """The bytes for constants in each read-only region: the first keeps CODE_FLASH_BYTES for the code."""
        return [self.flash.length - CODE_FLASH_BYTES] + [region.length for region in self.more_flash]

    def plan_flash(self, arrays: dict[str, int], test_bytes: int, pinned_bytes: int = 0) -> FlashPlan | None:
        """Where the model's constant arrays (C symbol -> bytes) and test_bytes of test data go (FlashPlan), or None
        when they do not fit. pinned_bytes: constants that stay in the first region (--weights-section's)."""
        rooms = self.flash_rooms()
        used = [pinned_bytes + sum(arrays.values())] + [0] * len(self.more_flash)
        moved: list[list[str]] = [[] for _ in self.more_flash]
        for name, size in sorted(arrays.items(), key=lambda item: (-item[1], item[0])):  # the largest first
            if used[0] <= rooms[0]:
                break
            further = next((k for k in range(1, len(rooms)) if used[k] + _aligned(size) <= rooms[k]), None)
            if further is None:
                return None
            moved[further - 1].append(name)
            used[0] -= size
            used[further] += _aligned(size)
        if used[0] > rooms[0]:
            return None
        return FlashPlan(moved, used).with_test_data(self, test_bytes)

    def refusal(self, data_bytes: int, arrays: dict[str, int], test_bytes: int, pinned_bytes: int = 0) -> str | None:
        """Why a model with these static RAM bytes, constant arrays and test data cannot run on this board, or None."""
        if self.is_host:
            return None
        ram = self.ram_need(data_bytes)
        if ram > self.ram.length:
            return (f"--target {self.name}: the model needs {ram} bytes of RAM ({data_bytes} of arena and buffers, "
                    f"{self.stack_bytes} of stack, {self.heap_bytes} of heap, {LIBC_RAM_BYTES} for the C library) but "
                    f"{self.machine} has {self.ram.length} ({self.ram.length // KIB} KiB)")
        if self.plan_flash(arrays, test_bytes, pinned_bytes) is None:
            return self.flash_refusal(pinned_bytes + sum(arrays.values()) + test_bytes)
        return None

    def flash_refusal(self, constant_bytes: int) -> str:
        regions = [self.flash, *self.more_flash]
        has = " and ".join(f"{r.length} in {r.qemu_name}" for r in regions)
        return (f"--target {self.name}: the model needs {constant_bytes + CODE_FLASH_BYTES} bytes of flash "
                f"({constant_bytes} of constants and test data, {CODE_FLASH_BYTES} for code) but {self.machine} has "
                f"{has} ({sum(r.length for r in regions) // KIB} KiB)")


def _aligned(size: int) -> int:
    return (size + 3) // 4 * 4  # each array starts on a word


def _mps2(name: str, description: str, cpu_flags: tuple[str, ...], machine: str, fpu: bool, psram: int) -> Target:
    # hw/arm/mps2.c: ZBT SSRAM1 (4 MiB at 0, the code memory) and SSRAM2/3 (4 MiB at 0x20000000); the
    # 16 MiB PSRAM (at 0x21000000 on AN385/AN386, 0x60000000 on AN500) holds the constants beyond the
    # first 4 MiB, as an external flash would
    return Target(name, description, CROSS_COMPILER, cpu_flags, machine,
                  flash=Region(0x00000000, 4096 * KIB, "mps.ssram1"), ram=Region(0x20000000, 4096 * KIB, "mps.ssram23"),
                  more_flash=(Region(psram, 16384 * KIB, "mps.ram"),),
                  stack_bytes=16 * KIB, heap_bytes=16 * KIB, fpu=fpu)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("host", "the machine qcc runs on (cc)", "cc", (), fpu=True),
    # hw/arm/nrf51_soc.c: 256 KiB flash at 0, 16 KiB SRAM at 0x20000000 (the micro:bit's nRF51822)
    Target("cortex-m0", "armv6-m: no DSP, no 64-bit multiply instruction (BBC micro:bit, nRF51)", CROSS_COMPILER,
           ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"), "microbit",
           flash=Region(0x00000000, 256 * KIB, "nrf51_soc.flash"), ram=Region(0x20000000, 16 * KIB, "nrf51.sram"),
           stack_bytes=2 * KIB, heap_bytes=2 * KIB),
    _mps2("cortex-m3", "armv7-m (MPS2 AN385)", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), "mps2-an385", fpu=False,
          psram=0x21000000),
    # soft-float ABI: the calling convention of code built without an FPU, while the compiler may
    # still use the FPU inside functions
    _mps2("cortex-m4", "armv7e-m with the DSP extension and a single-precision FPU, soft-float ABI (MPS2 AN386)",
          ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"), "mps2-an386", fpu=True,
          psram=0x21000000),
    _mps2("cortex-m7", "armv7e-m with a double-precision FPU, soft-float ABI (MPS2 AN500)",
          ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv5-d16"), "mps2-an500", fpu=True,
          psram=0x60000000),
    # hw/arm/mps2-tz.c (SSE-300): ITCM 512 KiB at 0, DTCM 512 KiB at 0x20000000, and the board's 8 MiB QSPI
    # flash at 0x28000000 for the constants the ITCM cannot hold (as on real Cortex-M55 parts: a small TCM
    # beside a large flash)
    Target("cortex-m55", "armv8.1-m with the MVE vector extension (MPS3 AN547)", CROSS_COMPILER,
           ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), "mps3-an547",
           flash=Region(0x00000000, 512 * KIB, "sse300-itcm"), ram=Region(0x20000000, 512 * KIB, "sse300-dtcm"),
           more_flash=(Region(0x28000000, 8192 * KIB, "QSPI"),),
           stack_bytes=16 * KIB, heap_bytes=16 * KIB, fpu=True),
)}
CORTEX_M = tuple(name for name, t in TARGETS.items() if not t.is_host)


def target_named(name: str) -> Target:
    if name not in TARGETS:
        raise QccError(f"--target {name!r}: unknown target; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


# --fpu: what the build of every C file needs besides the target's CPU flags. No contraction: a
# multiply and an add fused into one fma rounds once where ONNX Runtime rounds twice.
FPU_CFLAGS = ("-ffp-contract=off",)


def fpu_refusal(target: Target, rounding: str) -> str | None:
    """Why --fpu cannot be given with this target and rounding scheme, or None."""
    if rounding != "ort":
        return (f"--fpu --rounding {rounding}: --fpu computes ONNX Runtime's float32 requantization, the `ort` "
                "scheme; drop --fpu or use --rounding ort")
    if not target.fpu:
        with_fpu = [name for name, t in TARGETS.items() if t.fpu]
        return (f"--fpu --target {target.name}: the {target.name} has no FPU; drop --fpu (the integer-only C is "
                f"exact there) or choose {', '.join(with_fpu[:-1])} or {with_fpu[-1]}")
    return None


def require_tools(target: Target) -> None:
    """Building and running a bare-metal image needs the cross compiler and QEMU: say what to install."""
    if target.is_host:
        return
    if shutil.which(target.compiler) is None:
        raise QccError(f"--target {target.name}: {target.compiler} not found; install the Arm GNU toolchain with "
                       f"newlib (Debian/Ubuntu: apt-get install {CROSS_PACKAGES})")
    if shutil.which(QEMU) is None:
        raise QccError(f"--target {target.name}: {QEMU} not found; install QEMU's Arm system emulator "
                       f"(Debian/Ubuntu: apt-get install {QEMU_PACKAGE})")
