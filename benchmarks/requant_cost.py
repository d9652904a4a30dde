"""Static code size of one requantization in each rounding scheme (ort, tflm, single).

For each scheme, compiles a C file holding one external function

    int32_t f(int32_t acc, uint32_t m, int shift, int32_t lo, int32_t hi)
    { return qcc_requantize_<scheme>(acc, m, shift, lo, hi); }   (ort: a sixth argument, see SCHEMES)

to assembly (-S) and counts the instructions of f (directives, labels and literal-pool words are
not counted), and lists the library helpers it calls (__aeabi_*, __*di3, ...). Targets:
Cortex-M4 (arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb), Cortex-M0 for contrast (no 32x32->64
multiply instruction), and x86-64 gcc for reference; each at -O2 and -Os.

    python benchmarks/requant_cost.py          # the table
    python benchmarks/requant_cost.py -v       # and the assembly of f

Instruction counts are static (the whole function, every branch), not cycles. Nothing asserts them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "runtime_c"
# label -> (header, call); ort takes a sixth argument: 1 where the compiler proved |acc| <= 2^24
# for the layer (f32(acc) == acc, its rounding skipped), 0 in general.
SCHEMES = {
    "ort": ("ort", "qcc_requantize_ort(acc, m, shift, lo, hi, 0)"),
    "ort |acc|<=2^24": ("ort", "qcc_requantize_ort(acc, m, shift, lo, hi, 1)"),
    "tflm": ("tflm", "qcc_requantize_tflm(acc, m, shift, lo, hi)"),
    "single": ("single", "qcc_requantize_single(acc, m, shift, lo, hi)"),
}
TARGETS = {  # label -> (compiler command prefix, assembly comment character)
    "cortex-m4": (["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"], "@"),
    "cortex-m0": (["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb"], "@"),
    "x86-64": (["gcc"], "#"),
}
LEVELS = ("-O2", "-Os")
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]

SOURCE = """#include <stdint.h>
#include "qcc_requant_{header}.h"
int32_t f(int32_t acc, uint32_t m, int shift, int32_t lo, int32_t hi);
int32_t f(int32_t acc, uint32_t m, int shift, int32_t lo, int32_t hi)
{{
    return {call};
}}
"""

CALLS = re.compile(r"^(bl|blx|b|call|jmp)\s+([A-Za-z_][\w.@]*)")


def function_bodies(asm: str, comment: str) -> dict[str, list[str]]:
    """The instruction lines of every function in gcc's assembly output, by name. Directives,
    labels, literal-pool words and comments are dropped."""
    bodies: dict[str, list[str]] = {}
    functions = set(re.findall(r"\.type\s+([\w.]+),\s*[%@]function", asm))
    current = None
    for line in asm.splitlines():
        text = line.split(comment, 1)[0].strip()
        if text.endswith(":") and text[:-1] in functions:
            current = bodies.setdefault(text[:-1], [])
        elif current is not None and text.startswith((".size", ".cfi_endproc")):
            current = None
        elif current is not None and text and not text.startswith(".") and not text.endswith(":"):
            current.append(text)
    return bodies


def cost(asm: str, comment: str, name: str = "f") -> tuple[int, list[str], list[str]]:
    """Instructions of `name` plus those of the file's own functions it calls (gcc may leave a
    static inline helper out of line at -Os), the local helpers so counted, and the external
    helpers called (library routines such as __aeabi_lmul)."""
    bodies = function_bodies(asm, comment)
    seen, todo, external = [name], [name], set()
    while todo:
        for line in bodies[todo.pop()]:
            match = CALLS.match(line)
            if not match or match.group(2).startswith(".L"):
                continue
            callee = match.group(2)
            if callee in bodies and callee not in seen:
                seen.append(callee)
                todo.append(callee)
            elif callee not in bodies:
                external.add(callee)
    return sum(len(bodies[f]) for f in seen), seen[1:], sorted(external)


def compile_to_asm(command: list[str], level: str, scheme: str, folder: Path) -> str:
    header, call = SCHEMES[scheme]
    source = folder / "f.c"
    source.write_text(SOURCE.format(header=header, call=call))
    out = folder / "f.s"
    subprocess.run([*command, level, *WARNINGS, f"-I{RUNTIME}", "-S", str(source), "-o", str(out)], check=True)
    return out.read_text()


def main(verbose: bool = False) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="qcc-requant-cost-") as tmp:
        folder = Path(tmp)
        for target, (command, comment) in TARGETS.items():
            if shutil.which(command[0]) is None:
                print(f"({command[0]} not found: {target} skipped)")
                continue
            for scheme in SCHEMES:
                counts, calls = [], set()
                for level in LEVELS:
                    asm = compile_to_asm(command, level, scheme, folder)
                    count, local, external = cost(asm, comment)
                    counts.append(f"{count}*" if local else str(count))
                    calls.update(external)
                    if verbose:
                        print(f"--- {target} {level} {scheme}: {count} instructions"
                              + (f" (with out-of-line {', '.join(local)})" if local else ""))
                        bodies = function_bodies(asm, comment)
                        for name in ["f", *local]:
                            print(f"  {name}:")
                            print("\n".join("    " + line for line in bodies[name]))
                rows.append((target, scheme, *counts, ", ".join(sorted(calls)) or "no"))
    header = ("target", "scheme", "instr -O2", "instr -Os", "library helper called")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(v).ljust(w) if i in (0, 1, 4) else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    print("* includes the static inline helpers gcc left out of line (counted once each)")
    for compiler in sorted({command[0] for command, _ in TARGETS.values() if shutil.which(command[0])}):
        print(subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0])


if __name__ == "__main__":
    main(verbose="-v" in sys.argv[1:])
