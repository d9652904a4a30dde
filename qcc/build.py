"""Building and running a generated folder with the host compiler (for verify and tests)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from qcc.errors import QccError


def make(out_dir: Path, target: str, cflags: str | None = None) -> None:
    env = dict(os.environ)
    if cflags is not None:
        env["CFLAGS"] = cflags
    result = subprocess.run(["make", "-s", "-C", str(out_dir), target], capture_output=True, text=True, env=env)
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
