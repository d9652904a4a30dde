"""Building and running a generated folder: with the host compiler, or as a bare-metal image on a
target's QEMU board (for verify and tests)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from qcc.errors import QccError
from qcc.toolchain import qemu
from qcc.toolchain.targets import Target


def make(out_dir: Path, target: str, cflags: str | None = None, variables: dict[str, str] | None = None) -> None:
    """make TARGET in out_dir; cflags sets CFLAGS through the environment, variables are given on
    make's command line (they override the Makefile's, e.g. CC or ARM_CFLAGS)."""
    env = dict(os.environ)
    if cflags is not None:
        env["CFLAGS"] = cflags
    assignments = [f"{key}={value}" for key, value in (variables or {}).items()]
    result = subprocess.run(["make", "-s", "-C", str(out_dir), target, *assignments], capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise QccError(f"building {out_dir} ({target}) failed:\n{result.stdout}{result.stderr}")


def run_runner(out_dir: Path, manifest: dict, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ./qcc_runner on one input set; the runner must have been built."""
    outputs, _ = _run(out_dir, "qcc_runner", manifest, inputs)
    return outputs


def run_runner_trace(out_dir: Path, manifest: dict, inputs: list[np.ndarray]) -> dict[tuple[int, int], bytes]:
    """Run ./qcc_runner_trace (make runner-trace) on one input set: the bytes of every layer's
    outputs, by (layer index, output index)."""
    _, trace = _run(out_dir, "qcc_runner_trace", manifest, inputs)
    records, offset = {}, 0
    while offset < len(trace):
        layer, output, size = np.frombuffer(trace, dtype=np.uint32, count=3, offset=offset).tolist()
        offset += 12
        records[(layer, output)] = trace[offset:offset + size]
        offset += size
    return records


def _run(out_dir: Path, program: str, manifest: dict, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], bytes]:
    with tempfile.TemporaryDirectory(prefix="qcc-run-") as tmp:
        tmp = Path(tmp)
        paths = []
        for i, (entry, value) in enumerate(zip(manifest["inputs"], inputs)):
            path = tmp / f"in{i}.bin"
            np.ascontiguousarray(value, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).tofile(path)
            paths.append(str(path))
        out_paths = [str(tmp / f"out{i}.bin") for i in range(len(manifest["outputs"]))]
        trace_path = tmp / "trace.bin"
        result = subprocess.run([str(out_dir / program), *paths, *out_paths], capture_output=True, text=True,
                                env={**os.environ, "QCC_TRACE_FILE": str(trace_path)})
        if result.returncode != 0:
            raise QccError(f"{program} failed: {result.stderr.strip()}")
        outputs = [np.fromfile(p, dtype=np.dtype(e["dtype"]).newbyteorder("<")).reshape(e["shape"])
                   for p, e in zip(out_paths, manifest["outputs"])]
        return outputs, trace_path.read_bytes() if trace_path.exists() else b""


def run_target_runner(elf: Path, target: Target, manifest: dict, cases: int) -> list[list[np.ndarray]]:
    """Run the target runner image (qcc_target_runner.c, built for target) on QEMU: every output
    of every input set, parsed from its console lines `qcc-output CASE OUTPUT HEX`."""
    run = qemu.run_elf(elf, target)
    found: dict[tuple[int, int], bytes] = {}
    for line in run.console.splitlines():
        fields = line.split()
        if len(fields) in (3, 4) and fields[0] == "qcc-output":
            found[(int(fields[1]), int(fields[2]))] = bytes.fromhex(fields[3] if len(fields) == 4 else "")
    wanted = [(c, o) for c in range(cases) for o in range(len(manifest["outputs"]))]
    if run.status != 0 or any(key not in found for key in wanted):
        raise QccError(f"{elf.name} failed on QEMU's {target.machine} (status {run.status}): {run.console.strip()[-300:]}")
    return [[np.frombuffer(found[(c, o)], dtype=np.dtype(e["dtype"]).newbyteorder("<")).reshape(e["shape"])
             for o, e in enumerate(manifest["outputs"])] for c in range(cases)]
