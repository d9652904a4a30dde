"""`qcc compile`: the output folder appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from qcc.backend.writer import MANIFEST, write_output
from qcc.errors import QccError
from qcc.pipeline import Compiled, Options, compile_model
from qcc.sample_inputs import random_inputs


# The golden test holds every case's inputs and expected outputs as C initializers (about four
# characters of source per byte): beyond this many bytes it would be a slow, huge file.
MAX_GOLDEN_BYTES = 8 * 2**20
DEFAULT_GOLDEN_CASES = 4


def _case_bytes(compiled: Compiled) -> int:
    graph = compiled.graph
    return sum(graph.tensor(name).nbytes for name in graph.inputs + graph.outputs)


def golden_cases(compiled: Compiled, golden) -> list[list[np.ndarray]]:
    """--golden N (seeded random input sets) or --golden FILE.npz (arrays named after the inputs);
    from Python, also a list of input sets. None: DEFAULT_GOLDEN_CASES, or as many as
    MAX_GOLDEN_BYTES holds."""
    graph = compiled.graph
    if isinstance(golden, list):
        return golden
    per_case = max(_case_bytes(compiled), 1)
    fitting = MAX_GOLDEN_BYTES // per_case
    if golden is None:
        return random_inputs(graph, min(DEFAULT_GOLDEN_CASES, fitting), seed=0)
    if golden.isdigit():
        count = int(golden)
        if count > fitting:
            raise QccError(f"--golden {golden}: {count} cases of {per_case} bytes exceed the golden test's limit of "
                           f"{MAX_GOLDEN_BYTES // 2**20} MiB; give at most {fitting}")
        return random_inputs(graph, count, seed=0)
    path = Path(golden)
    if not path.is_file():
        raise QccError(f"{golden}: no such file (--golden takes a count or an .npz file)")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception:
        raise QccError(f"{golden}: not an .npz file") from None
    cases = None
    for name in graph.inputs:
        public = graph.public_name(name)
        if public not in data:
            raise QccError(f"{golden}: no array named '{public}' (the model's inputs are "
                           f"{[graph.public_name(n) for n in graph.inputs]})")
        tensor = graph.tensor(name)
        try:
            array = data[public]
        except ValueError:  # np.load never unpickles: an array of Python objects cannot be read
            raise QccError(f"{golden}: '{public}' is an array of Python objects; give an array of "
                           f"{tensor.dtype} values (np.savez of a numeric array)") from None
        if array.dtype != np.dtype(tensor.dtype):
            raise QccError(f"{golden}: '{public}' is {array.dtype}; the compiled model takes {tensor.dtype}")
        batch = array.reshape(-1, tensor.size) if array.size % tensor.size == 0 else None
        if batch is None:
            raise QccError(f"{golden}: '{public}' has {array.size} elements, not a multiple of {tensor.size}")
        if cases is None:
            cases = [[] for _ in range(len(batch))]
        if len(batch) != len(cases):
            raise QccError(f"{golden}: the input arrays hold different numbers of cases")
        for case, row in zip(cases, batch):
            case.append(row.reshape(tensor.shape))
    if cases and len(cases) * per_case > MAX_GOLDEN_BYTES:
        raise QccError(f"{golden}: {len(cases)} cases of {per_case} bytes exceed the golden test's limit of "
                       f"{MAX_GOLDEN_BYTES // 2**20} MiB; give at most {fitting}")
    return cases or []


def golden_record(golden) -> int | str | None:
    """--golden as model.json records it: the count, the .npz's file name (not its path), "python" for input
    sets given through the API, None for the default."""
    if golden is None or isinstance(golden, list):
        return None if golden is None else "python"
    return int(golden) if golden.isdigit() else Path(golden).name


def compile_to_folder(model, out, options: Options, golden=None) -> tuple[Compiled, dict]:
    out_dir = Path(out)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())):
        raise QccError(f"{out_dir}: exists and is not a qcc output folder; choose another -o or remove it")
    compiled = compile_model(model, options)
    cases = golden_cases(compiled, golden)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.qcc-", dir=out_dir.parent))
    umask = os.umask(0)  # mkdtemp makes 0700; the folder gets the mode any new folder would
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        manifest = write_output(compiled, staging, cases, golden_record(golden))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return compiled, manifest
