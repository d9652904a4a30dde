"""Timing a generated folder's C on the host beside ONNX Runtime, in one process and on the same
input: a C harness that calls NAME_run in a loop (built against the Makefile's own objects) and
ORT's session.run, each the median of REPS repetitions of about TARGET_REP_SECONDS. Used by
`qcc bench --target host` and benchmarks/bench_models.py; the numbers are informative, never asserted."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from qcc.ir import C_TYPES
from qcc.toolchain.build import make

REPS = 5
TARGET_REP_SECONDS = 0.2  # each repetition runs ~this long, so timer and scheduler noise stay small

HARNESS = """\
/* bench.c: written by qcc/toolchain/host_timing.py.
 *   ./bench ITERS REPS IN0.bin ... OUT0.bin ...
 * One warm-up call, then REPS times ITERS calls; prints ns per call for each repetition and
 * writes the last outputs, so the script can check the timed build computes the right thing. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "{name}.h"

{buffers}

static double now_ns(void)
{{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}}

static int transfer(const char *path, const char *mode, void *data, size_t size)
{{
    FILE *f = fopen(path, mode);
    size_t done = 0;
    if (f) {{
        done = mode[0] == 'r' ? fread(data, 1, size, f) : fwrite(data, 1, size, f);
        fclose(f);
    }}
    if (done != size) {{
        fprintf(stderr, "bench: cannot %s %s\\n", mode[0] == 'r' ? "read" : "write", path);
        return 1;
    }}
    return 0;
}}

int main(int argc, char **argv)
{{
    long iters, i;
    int reps, r;
    if (argc != {argc}) {{
        fprintf(stderr, "usage: %s ITERS REPS inputs... outputs...\\n", argv[0]);
        return 2;
    }}
    iters = atol(argv[1]);
    reps = atoi(argv[2]);
{reads}
    if ({name}_run({args}) != 0) {{
        return 1;
    }}
    /* the first inference's outputs (a model with state gives others later) */
{writes}
    for (r = 0; r < reps; r++) {{
        double start = now_ns();
        for (i = 0; i < iters; i++) {{
            {name}_run({args});
        }}
        printf("%.0f\\n", (now_ns() - start) / (double)iters);
    }}
    return 0;
}}
"""


def write_harness(out_dir: Path, manifest: dict) -> None:
    name, ins, outs = manifest["name"], manifest["inputs"], manifest["outputs"]
    buffers = [f"static {C_TYPES[e['dtype']]} in{i}[{int(np.prod(e['shape']))}];" for i, e in enumerate(ins)]
    buffers += [f"static {C_TYPES[e['dtype']]} out{i}[{int(np.prod(e['shape']))}];" for i, e in enumerate(outs)]
    reads = [f'    if (transfer(argv[{3 + i}], "rb", in{i}, sizeof in{i})) {{\n        return 1;\n    }}'
             for i in range(len(ins))]
    writes = [f'    if (transfer(argv[{3 + len(ins) + i}], "wb", out{i}, sizeof out{i})) {{\n        return 1;\n    }}'
              for i in range(len(outs))]
    args = ", ".join([f"in{i}" for i in range(len(ins))] + [f"out{i}" for i in range(len(outs))])
    (out_dir / "bench.c").write_text(HARNESS.format(
        name=name, buffers="\n".join(buffers), reads="\n".join(reads), writes="\n".join(writes),
        args=args, argc=3 + len(ins) + len(outs)))


def build_harness(out_dir: Path, cflags: str) -> Path:
    """The model objects come from the generated Makefile (so they build as users build them),
    then the harness is linked against exactly those objects."""
    make(out_dir, "clean")
    make(out_dir, "all", cflags=f"{cflags} -Wall -Wextra -Wpedantic")
    objects = sorted(str(p) for p in out_dir.glob("*.o"))
    exe = out_dir / "bench"
    subprocess.run(["gcc", *cflags.split(), str(out_dir / "bench.c"), *objects, "-o", str(exe)], check=True)
    return exe


def time_c(exe: Path, in_paths: list[Path], out_paths: list[Path]) -> float:
    """Median ns per inference over REPS repetitions; ITERS is sized from a one-call probe."""
    def run(iters: int, reps: int) -> list[float]:
        result = subprocess.run([str(exe), str(iters), str(reps), *map(str, in_paths), *map(str, out_paths)],
                                capture_output=True, text=True, check=True)
        return [float(line) for line in result.stdout.split()]

    iters = max(1, int(TARGET_REP_SECONDS * 1e9 / run(1, 1)[0]))
    return statistics.median(run(iters, REPS))


def time_ort(sess, feeds: dict) -> float:
    """Median ns per sess.run over REPS repetitions, after a warm-up sized like the C's (an ONNX Runtime
    session with its feeds, or qcc.runtimes.tflm.Session with its inputs)."""
    start = time.perf_counter_ns()
    sess.run(None, feeds)
    iters = max(1, int(TARGET_REP_SECONDS * 1e9 / (time.perf_counter_ns() - start)))
    for _ in range(min(iters, 10)):
        sess.run(None, feeds)
    per_rep = []
    for _ in range(REPS):
        start = time.perf_counter_ns()
        for _ in range(iters):
            sess.run(None, feeds)
        per_rep.append((time.perf_counter_ns() - start) / iters)
    return statistics.median(per_rep)
