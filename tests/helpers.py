"""Shared test machinery: building small ONNX models, and the one check every model test makes:
the generated C equals the reference interpreter (its golden test, run by `make check`) and the
reference interpreter equals ONNX Runtime, bit for bit, on seeded random and extreme inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcc import reference
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Compiled, Options
from qcc.runtimes import ort as ort_reference
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make

REPO = Path(__file__).resolve().parent.parent
STRICT_CFLAGS = "-std=c99 -O1 -Wall -Wextra -Wpedantic -Werror"
ONNX_TYPES = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "float32": TensorProto.FLOAT,
              "int32": TensorProto.INT32, "int64": TensorProto.INT64}


def make_model(nodes, inputs, outputs, initializers: dict[str, np.ndarray], opset: int = 13) -> onnx.ModelProto:
    """inputs/outputs: (name, dtype, shape) triples; initializers: name -> numpy array."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, ONNX_TYPES[d], s) for n, d, s in inputs],
        [helper.make_tensor_value_info(n, ONNX_TYPES[d], s) for n, d, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def scalar(value, dtype) -> np.ndarray:
    return np.array(value, dtype=dtype)


OTHER_SCHEMES = ("tflm", "single")


def check_exact(model: onnx.ModelProto | Path, tmp_path: Path, *, n_random: int = 4, seed: int = 0,
                float_io: bool = False, extra_cases=None, io_in_arena: bool = False,
                wide_weights: bool = False) -> Compiled:
    """Compile, prove C == reference with the golden test, and reference == ORT on the same inputs.
    Where the model requantizes, also prove C == reference in the other rounding schemes. io_in_arena:
    the build with the inputs and outputs in the arena (--io-in-arena); wide_weights: --wide-weights."""
    if isinstance(model, onnx.ModelProto):
        path = tmp_path / "model.onnx"
        onnx.save(model, str(path))
    else:
        path = Path(model)
    options = Options(float_io=float_io, io_in_arena=io_in_arena, wide_weights=wide_weights)
    from qcc.pipeline import compile_model

    graph = compile_model(path, options).graph
    cases = random_inputs(graph, n_random, seed) + extreme_inputs(graph) + list(extra_cases or [])
    compiled, _ = compile_to_folder(path, tmp_path / "out", options, golden=cases)
    make(tmp_path / "out", "check", cflags=STRICT_CFLAGS)  # fails unless C == reference on every value
    sess = ort_reference.session(path)
    for i, case in enumerate(cases):
        expected = ort_reference.run_on_codes(sess, compiled.graph, case)
        got = reference.run(compiled.graph, case)
        for name, e, g in zip(compiled.graph.outputs, expected, got):
            if not np.array_equal(e, g):
                diff = np.abs(e.astype(np.int64) - g.astype(np.int64)) if e.dtype != np.float32 else np.abs(e - g)
                raise AssertionError(
                    f"case {i}, output '{name}': reference differs from ORT in {int((diff != 0).sum())} of {e.size} "
                    f"values, max |diff| {diff.max()}; first at {np.argwhere(diff != 0)[0].tolist()}: "
                    f"ORT {e.reshape(-1)[np.flatnonzero(diff)[0]]}, reference {g.reshape(-1)[np.flatnonzero(diff)[0]]}")
    if any("requant" in node.params for node in compiled.graph.nodes):
        for scheme in OTHER_SCHEMES:
            out = tmp_path / f"out_{scheme}"
            compile_to_folder(path, out, Options(float_io=float_io, rounding=scheme, io_in_arena=io_in_arena,
                                                 wide_weights=wide_weights), golden=cases)
            make(out, "check", cflags=STRICT_CFLAGS)  # C == reference in that scheme, on every value
    return compiled


def straddling_accumulators(scale: np.float32, other: np.float32, lo: int, hi: int, limit: int = 2**22) -> np.ndarray:
    """Accumulators in [lo, hi] that ORT's float32 requantization maps to different integers under
    `scale` and under `other`: they tell a right scale formula from a near miss."""
    acc = np.arange(lo, hi + 1, dtype=np.int64)[: limit]
    f = acc.astype(np.float32)
    first = np.rint(f * np.float32(scale))
    second = np.rint(f * np.float32(other))
    return acc[first != second]


def check_tflite_exact(model: bytes | Path, tmp_path: Path, *, n_random: int = 4, seed: int = 0, extra_cases=None,
                       schemes=("tflm", "single"), golden_only_cases=None, io_in_arena: bool = False) -> Compiled:
    """A .tflite model's one check: C == reference (the golden test, `make check`, in every scheme given)
    and reference == the pinned TFLite Micro (the default `tflm` scheme) on seeded random and extreme
    inputs, every output value (float32 outputs bit for bit). golden_only_cases: inputs where TFLM's
    result is undefined C++ (a float -> int32 cast out of range): only C == reference is checked.
    io_in_arena: the build with the inputs and outputs in the arena (--io-in-arena)."""
    from qcc.pipeline import compile_model
    from qcc.runtimes import tflm

    if isinstance(model, bytes):
        path = tmp_path / "model.tflite"
        path.write_bytes(model)
    else:
        path = Path(model)
    graph = compile_model(path, Options(io_in_arena=io_in_arena)).graph
    cases = random_inputs(graph, n_random, seed) + extreme_inputs(graph) + list(extra_cases or [])
    compiled = None
    for scheme in schemes:
        out = tmp_path / f"out_{scheme}"
        result, _ = compile_to_folder(path, out, Options(rounding=scheme, io_in_arena=io_in_arena),
                                      golden=cases + list(golden_only_cases or []))
        make(out, "check", cflags=STRICT_CFLAGS)  # fails unless C == reference on every value
        compiled = compiled or (result if scheme == "tflm" else None)
    compiled = compiled or compile_model(path, Options(io_in_arena=io_in_arena))
    expected_cases = tflm.run_many(path.read_bytes(), cases)
    for i, (case, expected) in enumerate(zip(cases, expected_cases)):
        got = reference.run(compiled.graph, case)
        for name, e, g in zip(compiled.graph.outputs, expected, got):
            g = np.asarray(g).reshape(e.shape)
            if e.dtype == np.float32:  # bit for bit: -0.0 is not 0.0
                e, g = e.view(np.uint32), np.asarray(g, np.float32).view(np.uint32)
            if not np.array_equal(e, g):
                diff = np.abs(e.astype(np.int64) - g.astype(np.int64))
                first = np.flatnonzero(diff)[0]
                raise AssertionError(
                    f"case {i}, output '{name}': reference differs from TFLM in {int((diff != 0).sum())} of {e.size} "
                    f"values, max |diff| {diff.max()}; first at flat index {first}: TFLM {e.reshape(-1)[first]}, "
                    f"reference {g.reshape(-1)[first]}")
    return compiled
