"""Benchmark models side by side with ONNX Runtime: arena and weight bytes, `qcc compile` wall
time, the generated C's time per inference (gcc -O2 and -O3 -march=native) and ONNX Runtime's
single-threaded time per inference on the same model and input, measured in one run.

    python benchmarks/bench_models.py                 # every model below
    python benchmarks/bench_models.py cnn96-u8 resnet8-qdq-u8

Timings are informative only; nothing asserts them."""

from __future__ import annotations

import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from models import cnn96, quantize  # noqa: E402
from networks import NETWORKS  # noqa: E402

from qcc.commands.compile import compile_to_folder  # noqa: E402
from qcc.pipeline import Options  # noqa: E402
from qcc.runtimes import ort as ort_reference  # noqa: E402
from qcc.sample_inputs import random_inputs  # noqa: E402
from qcc.toolchain.host_timing import REPS, build_harness, time_c, time_ort, write_harness  # noqa: E402

# label -> (float model builder, quantize() options)
MODELS = {
    "cnn96-u8": (cnn96, dict(activation="uint8")),
    "cnn96-s8": (cnn96, dict(activation="int8")),
    **{f"{name}-qdq-u8": (build, dict(activation="uint8", quant_format="QDQ")) for name, build in NETWORKS.items()},
    **{f"{name}-qdq-s8": (build, dict(activation="int8", quant_format="QDQ")) for name, build in NETWORKS.items()},
}
CFLAGS = {"C -O2": "-std=c99 -O2", "C -O3 native": "-std=c99 -O3 -march=native"}
COMPILE_REPS = 3


def bench(label: str, work: Path) -> dict:
    build, options = MODELS[label]
    model = quantize(build(), work / f"{label}.onnx", **options)
    out_dir = work / label
    compile_times = []
    for _ in range(COMPILE_REPS):
        start = time.perf_counter()
        compiled, manifest = compile_to_folder(model, out_dir, Options())
        compile_times.append(time.perf_counter() - start)

    codes = random_inputs(compiled.graph, 1, seed=0)[0]
    in_paths = [out_dir / f"in{i}.bin" for i in range(len(codes))]
    for path, value, entry in zip(in_paths, codes, manifest["inputs"]):
        np.ascontiguousarray(value, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).tofile(path)
    out_paths = [out_dir / f"out{i}.bin" for i in range(len(manifest["outputs"]))]

    sess = ort_reference.session(model)
    expected = ort_reference.run_on_codes(sess, compiled.graph, codes)
    write_harness(out_dir, manifest)
    row = {"model": label, "arena": manifest["arena_bytes"], "weights": manifest["weights_bytes"],
           "compile_ms": statistics.median(compile_times) * 1e3}
    for column, cflags in CFLAGS.items():
        row[column] = time_c(build_harness(out_dir, cflags), in_paths, out_paths)
        for path, entry, want in zip(out_paths, manifest["outputs"], expected):
            got = np.fromfile(path, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(want.shape)
            if not np.array_equal(got, want):  # a fast wrong answer is no benchmark
                raise SystemExit(f"{label} {column}: the C output differs from ORT")
    row["ORT"] = time_ort(sess, ort_reference.feeds_for(compiled.graph, codes))
    return row


def environment() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    import onnxruntime

    kernels = ("uint8 x int8 pairs saturate in int16 here, so ORT runs its slower exact uint8 x uint8 kernels"
               if ort_reference.cpu_saturates_u8s8_pairs() else "uint8 x int8 kernels exact here")
    return [f"CPU: {cpu}", f"gcc: {gcc}", f"onnxruntime: {onnxruntime.__version__} (CPU provider, 1 thread, the ground "
            f"truth's session config, session.x64quantprecision=1 among it: {kernels})"]


def main() -> None:
    logging.disable(logging.WARNING)  # quantize_static's pre-processing advice would interleave with the table
    labels = sys.argv[1:] or list(MODELS)
    unknown = [label for label in labels if label not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        rows = [bench(label, Path(tmp)) for label in labels]
    print("\n".join(environment()))
    print(f"times are per inference, median of {REPS} (compile: of {COMPILE_REPS})\n")
    header = ["model", "arena B", "weights B", "compile ms", *CFLAGS, "ORT",
              *(f"{c} / ORT" for c in CFLAGS)]
    lines = [[r["model"], str(r["arena"]), str(r["weights"]), f"{r['compile_ms']:.0f}",
              *(f"{r[c] / 1e6:.2f} ms" for c in CFLAGS), f"{r['ORT'] / 1e6:.2f} ms",
              *(f"{r[c] / r['ORT']:.2f}" for c in CFLAGS)] for r in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    for line in [header, *lines]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))


if __name__ == "__main__":
    main()
