"""A seeded mutation fuzzer for `qcc compile`: small valid models, each mutated as an attacker or
a careless exporter would (corrupted bytes, initializers whose dims disagree with their data, bad
scales and zero points, wrong attribute types and values, missing or undefined inputs, tensors
defined twice, hostile names, huge shapes, cycles, no outputs, unknown types and opsets), and
compiled with options a user gives by accident (names and sections the toolchains use, --outputs
naming a constant or an input, --inputs where shape inference knows no shape, conflicting
--input-shape, odd --golden files, other boards and plans); besides the mutants, random small CNNs
(convolutions, depthwise, pools, residual Adds, Concats) stress the memory planner.

Every mutant must end in exit 0, or in exit 2 with exactly one line on stderr ("qcc: error: ...")
and no output folder left; never a traceback, a timeout, a warning, or the catch-all line of an
internal error ("qcc failed on this model"). A sample of the mutants that compile is built with
-Werror and run under ASan and UBSan on extreme inputs, where the C must equal the reference
interpreter with no sanitizer report; for a random CNN also the build with every tensor whole.

    python tests/fuzz.py [--mutants 5000] [--seed 1] [--sanitize 200]   (the long run)
tests/test_fuzz.py runs a short one in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qdq_builder import QdqGraph  # noqa: E402

from qcc.cli import main  # noqa: E402
from qcc.commands.compile import compile_to_folder  # noqa: E402
from qcc.pipeline import Options  # noqa: E402
from qcc.sample_inputs import extreme_inputs, random_inputs  # noqa: E402

HOSTILE = ["*/ int injected = 42; /*", "\n#define x 1\n", 'q"uote\\', "ünï??/cødé", "x" * 10000, "uint8_t", "EOF",
           "main", "model_run", "qcc_conv_params", "", " ", "a b", "0digit", "INT8_MAX"]
BAD_SCALES = [0.0, -1.0, float("nan"), float("inf"), 1e-45, 1e30, 1e-30, 3.4e38]
SANITIZE_CFLAGS = "-std=c99 -O1 -g -Wall -Wextra -Wpedantic -Werror -fsanitize=address,undefined -fno-sanitize-recover=all"
MUTANT_SECONDS = 60


# --- seed models --------------------------------------------------------------------------------------


def _qlinear_conv(g, x, x_params, w, w_scale, y_params, **attrs):
    return g.node("QLinearConv", [x, g.const(np.float32(x_params[0])), g.const(np.uint8(x_params[1])), w,
                                  g.const(np.float32(w_scale)), g.const(np.int8(0)), g.const(np.float32(y_params[0])),
                                  g.const(np.uint8(y_params[1]))], **attrs)


def seeds() -> list[onnx.ModelProto]:
    models = []
    g = QdqGraph(13, seed=1)  # QDQ: conv, relu, maxpool, gemm-like matmul + add
    x = g.qdq(g.input("input", [1, 3, 8, 8]), 0.02, 128)
    y = g.qdq(g.node("Relu", [g.node("Conv", [x, g.weights((4, 3, 3, 3), 0.01), g.int32_bias((4,), np.float32(2e-4))],
                                     pads=[1, 1, 1, 1])]), 0.03, 0)
    y = g.qdq(g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2]), 0.03, 0)
    y = g.qdq(g.node("Reshape", [y, g.const(np.array([1, 64], np.int64))]), 0.03, 0)
    y = g.node("Add", [g.node("MatMul", [y, g.weights((64, 10), 0.01)]), g.int32_bias((10,), np.float32(3e-4))])
    g.output(g.dequantize(g.quantize(y, 0.05, 100), 0.05, 100), "logits")
    models.append(g.model())

    g = QdqGraph(13, seed=2)  # QOperator: conv, add, global pool, gemm
    x = g.input("image", [1, 4, 6, 6], np.uint8)
    a = _qlinear_conv(g, x, (0.02, 128), g.const(g.rng.integers(-64, 65, (4, 4, 3, 3)).astype(np.int8)), 0.01, (0.05, 100),
                      pads=[1, 1, 1, 1], kernel_shape=[3, 3], strides=[1, 1])
    s = g.node("QLinearAdd", [a, g.const(np.float32(0.05)), g.const(np.uint8(100)), x, g.const(np.float32(0.02)),
                              g.const(np.uint8(128)), g.const(np.float32(0.06)), g.const(np.uint8(90))], domain="com.microsoft")
    p = g.node("QLinearGlobalAveragePool", [s, g.const(np.float32(0.06)), g.const(np.uint8(90)), g.const(np.float32(0.04)),
                                            g.const(np.uint8(80))], domain="com.microsoft", channels_last=0)
    f = g.node("Flatten", [p])
    out = g.node("QGemm", [f, g.const(np.float32(0.04)), g.const(np.uint8(80)),
                           g.const(g.rng.integers(-64, 65, (5, 4)).astype(np.int8)), g.const(np.float32(0.02)),
                           g.const(np.int8(0)), g.const(g.rng.integers(-100, 100, 5).astype(np.int32)),
                           g.const(np.float32(0.1)), g.const(np.uint8(128))], domain="com.microsoft", transB=1)
    g.output(out, "scores", np.uint8, [1, 5])
    models.append(g.model())

    g = QdqGraph(13, seed=3)  # QDQ: pad, concat, softmax, resize, mul, leaky relu, a float island
    x = g.qdq(g.input("x", [1, 2, 4, 4]), 0.05, 10)
    padded = g.qdq(g.node("Pad", [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]), 0.05, 10)
    both = g.qdq(g.node("Concat", [padded, padded], axis=1), 0.05, 10)
    up = g.qdq(g.node("Resize", [both, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest"), 0.05, 10)
    prod = g.qdq(g.node("Mul", [up, g.qdq(g.const(np.full((1, 4, 1, 1), 0.5, np.float32)), 0.01, 0)]), 0.03, 20)
    leaky = g.qdq(g.node("LeakyRelu", [prod], alpha=0.2), 0.03, 20)
    island = g.qdq(g.node("HardSigmoid", [leaky]), 0.004, 0)
    flat = g.qdq(g.node("Reshape", [island, g.const(np.array([1, 576], np.int64))]), 0.004, 0)
    g.output(g.dequantize(g.quantize(g.node("Softmax", [flat], axis=-1), 1 / 256, 0), 1 / 256, 0), "probs")
    models.append(g.model())
    return models


# --- mutations ----------------------------------------------------------------------------------------


def _pick(rng, items):
    items = list(items)
    return items[int(rng.integers(len(items)))] if items else None


def _value(init) -> np.ndarray | None:
    try:
        return numpy_helper.to_array(init)
    except Exception:  # an earlier mutation broke it
        return None


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    graph = model.graph
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def mutate(model: onnx.ModelProto, rng: np.random.Generator):
    """One mutant: a ModelProto, or bytes for a byte-level corruption, and the mutation's name."""
    m = copy.deepcopy(model)
    g = m.graph
    kind = _pick(rng, ["bytes", "init_dims", "init_type", "scale", "zero_point", "attribute", "drop_input",
                       "undefined_input", "duplicate_output", "hostile_name", "cycle", "input_shape", "no_outputs",
                       "op_type", "elem_type", "opset", "per_channel_length", "hostile_node_name"])
    inits = list(g.initializer)
    if kind == "bytes":
        data = bytearray(m.SerializeToString())
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        if rng.random() < 0.3:
            data = data[:int(rng.integers(len(data)))]
        return bytes(data), kind
    if kind == "init_dims" and inits:
        init = _pick(rng, inits)
        dims = list(init.dims)
        choice = rng.integers(4)
        dims = [] if choice == 0 else dims + [int(rng.integers(1, 4))] if choice == 1 else \
            [max(d - 1, 0) for d in dims] if choice == 2 else [int(rng.integers(0, 2**33))]
        del init.dims[:]
        init.dims.extend(dims)
    elif kind == "init_type" and inits:
        _pick(rng, inits).data_type = int(_pick(rng, [999, onnx.TensorProto.STRING, onnx.TensorProto.FLOAT16,
                                                      onnx.TensorProto.INT16, onnx.TensorProto.DOUBLE]))
    elif kind == "scale":
        scales = [i for i in inits if i.data_type == onnx.TensorProto.FLOAT and (v := _value(i)) is not None and v.size <= 16]
        init = _pick(rng, scales)
        if init is not None:
            value = _value(init).copy()
            value.reshape(-1)[int(rng.integers(value.size))] = _pick(rng, BAD_SCALES)
            init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), init.name))
    elif kind == "zero_point":
        zeros = [i for i in inits if i.data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
                 and (v := _value(i)) is not None and v.size <= 16]
        init = _pick(rng, zeros)
        if init is not None:
            dtype = _pick(rng, [np.int32, np.int64, np.uint8, np.int8])
            value = rng.integers(-2**31 if dtype in (np.int32, np.int64) else -128, 2**31 if dtype != np.int8 else 128,
                                 _value(init).shape or ())
            init.CopyFrom(numpy_helper.from_array(np.asarray(value).astype(dtype), init.name))
    elif kind == "attribute":
        nodes = [n for n in g.node if n.attribute]
        node = _pick(rng, nodes)
        if node is not None:
            attr = _pick(rng, node.attribute)
            new = _pick(rng, [helper.make_attribute(attr.name, 0), helper.make_attribute(attr.name, -1),
                              helper.make_attribute(attr.name, 2**40), helper.make_attribute(attr.name, 0.5),
                              helper.make_attribute(attr.name, "text"), helper.make_attribute(attr.name, [0, 0]),
                              helper.make_attribute(attr.name, [1] * 9), helper.make_attribute(attr.name, [-3, 7]),
                              helper.make_attribute(attr.name, b"\xff\xfe")])
            attr.CopyFrom(new)
    elif kind == "drop_input":
        node = _pick(rng, [n for n in g.node if n.input])
        if node is not None:
            i = int(rng.integers(len(node.input)))
            if rng.random() < 0.5:
                node.input[i] = ""
            else:
                del node.input[i:]
    elif kind == "undefined_input":
        node = _pick(rng, [n for n in g.node if n.input])
        if node is not None:
            node.input[int(rng.integers(len(node.input)))] = "never_defined"
    elif kind == "duplicate_output" and len(g.node) > 1:
        a, b = (g.node[int(i)] for i in rng.choice(len(g.node), 2, replace=False))
        b.output[0] = a.output[0]
    elif kind == "hostile_name":
        names = [o for n in g.node for o in n.output] + [i.name for i in g.input]
        old = _pick(rng, names)
        if old:
            _rename(m, old, _pick(rng, HOSTILE))
    elif kind == "hostile_node_name":
        for node in g.node:
            if rng.random() < 0.5:
                node.name = _pick(rng, HOSTILE)
    elif kind == "cycle" and len(g.node) > 2:
        i = int(rng.integers(1, len(g.node)))
        node = g.node[int(rng.integers(i))]
        if node.input:
            node.input[0] = g.node[i].output[0]
    elif kind == "input_shape" and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[int(rng.integers(len(dims)))]
            d.Clear()
            d.dim_value = int(_pick(rng, [0, 2**31, 2**32 + 1, 100000]))
    elif kind == "no_outputs":
        del g.output[:]
    elif kind == "op_type":
        node = _pick(rng, g.node)
        if node is not None:
            node.op_type = _pick(rng, ["Conv", "NoSuchOp", "QLinearConv", "Gemm", "Softmax", "TopK"])
            if rng.random() < 0.3:
                node.domain = _pick(rng, ["", "com.microsoft", "ai.qcc", "evil.domain"])
    elif kind == "elem_type" and g.input:
        g.input[0].type.tensor_type.elem_type = int(_pick(rng, [999, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT32]))
    elif kind == "opset":
        m.opset_import[0].version = int(_pick(rng, [1, 7, 9, 10, 25, 999]))
    elif kind == "per_channel_length":
        scales = [i for i in inits if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 1 and i.dims[0] > 1]
        init = _pick(rng, scales)
        if init is not None and _value(init) is not None and _value(init).size:
            value = _value(init)
            init.CopyFrom(numpy_helper.from_array(np.concatenate([value, value[:1]]), init.name))
    return m, kind


# --- running a mutant ---------------------------------------------------------------------------------


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


INTERNAL_ERROR = "qcc failed on this model"  # the catch-all line (qcc/api.py): a bug, not a refusal


def run_mutant(payload, workdir: Path, suffix: str = ".onnx", flags: list[str] | tuple = ()) -> tuple[str, str]:
    """('ok', path) or ('refused', line) when the promise holds, else (problem, detail)."""
    path = workdir / f"mutant{suffix}"
    path.write_bytes(payload if isinstance(payload, bytes) else payload.SerializeToString())
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(MUTANT_SECONDS)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("always")
            golden = [] if "--golden" in flags else ["--golden", "1"]
            code = main(["compile", str(path), "-o", str(out), *golden, *flags])
    except _Timeout:
        return "timeout", f"over {MUTANT_SECONDS} s"
    except BaseException as error:  # what would be a traceback for a user
        import traceback
        return "traceback", "".join(traceback.format_exception(error))[-1500:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = stderr.getvalue().strip().splitlines()
    leftovers = [p.name for p in workdir.iterdir() if p.name.startswith(".out.qcc-")]
    if code == 2:
        if len(err) != 1 or not err[0].startswith("qcc: error: "):
            return "not one line", "\n".join(err)[:1500]
        if out.exists() or leftovers:
            return "folder left", err[0]
        if INTERNAL_ERROR in err[0]:
            return "internal error", err[0]
        return "refused", err[0]
    if code != 0:
        return f"exit {code}", "\n".join(err)[:1500]
    if any(not line.startswith("qcc: warning: ") for line in err):
        return "stderr on success", "\n".join(err)[:1500]
    return "ok", str(path)


def sanitize(path: Path, workdir: Path, whole_tensors_too: bool = False) -> tuple[str, str]:
    """Build a compiled mutant with -Werror, ASan and UBSan and run it on extreme and random
    inputs: the golden test must pass with no sanitizer report (with `whole_tensors_too`, also the
    build that keeps every tensor whole: both plans give the reference's outputs)."""
    from qcc.pipeline import compile_model

    compiled = compile_model(path, Options())
    cases = extreme_inputs(compiled.graph) + random_inputs(compiled.graph, 2, seed=0)
    for whole in (False, True) if whole_tensors_too else (False,):
        out = workdir / "sanitized"
        shutil.rmtree(out, ignore_errors=True)
        compile_to_folder(path, out, Options(whole_tensors=whole), golden=cases)
        build = subprocess.run(["make", "-s", "-C", str(out), "check"], capture_output=True, text=True, timeout=300,
                               env={"PATH": "/usr/bin:/bin", "CC": "clang", "CFLAGS": SANITIZE_CFLAGS,
                                    "ASAN_OPTIONS": "detect_leaks=0"})
        if build.returncode != 0:
            plan = " (every tensor whole)" if whole else ""
            return "sanitizer or build failure", f"{plan}{(build.stdout + build.stderr)[-1500:]}"
    return "clean", ""


NAMES = ["net", "Makefile", "GNUmakefile", "stdio", "CON", "_x", "qcc_x", "int", "main", "model_run", "test_model",
         "a" * 300, "x-y", "", "9lives"]
SECTIONS = [".model_weights", ".model_arena", ".init_array", ".preinit_array", ".fini_array", ".text", ".tdata",
            ".tbss", ".eh_frame", ".bss", ".comment", ".symtab", ".rodata.w", ".bss.a", ".noinit", ".text.a", "x y",
            ".s", "." + "s" * 70]
BOARDS = ["host", "cortex-m0", "cortex-m4", "cortex-m55", "z80"]


def _tensor_names(model: onnx.ModelProto) -> tuple[list[str], list[str], list[str]]:
    """(graph inputs, node outputs, initializers) of a model."""
    return ([i.name for i in model.graph.input], [o for n in model.graph.node for o in n.output],
            [i.name for i in model.graph.initializer])


def option_mutation(model: onnx.ModelProto, rng: np.random.Generator, workdir: Path) -> tuple[list[str], str]:
    """Flags a user gives by accident, for `qcc compile` of `model`, and what they are."""
    inputs, outputs, constants = _tensor_names(model)
    kind = _pick(rng, ["name", "section", "outputs", "inputs", "input-shape", "state", "golden", "target", "plan"])
    if kind == "name":
        return ["--name", _pick(rng, NAMES)], kind
    if kind == "section":
        flags = ["--weights-section", _pick(rng, SECTIONS)] if rng.random() < 0.6 else []
        return flags + (["--arena-section", _pick(rng, SECTIONS)] if not flags or rng.random() < 0.5 else []), kind
    if kind == "outputs":  # a constant (a weight's DequantizeLinear output), an input, any tensor, nothing
        pool = constants + inputs + outputs + ["no_such_tensor", ","]
        return ["--outputs", ",".join(_pick(rng, pool) for _ in range(int(rng.integers(1, 3))))], kind
    if kind == "inputs":  # a cut from an intermediate tensor: its shape may be unknown to shape inference
        flags = ["--inputs", _pick(rng, outputs + inputs + constants)]
        if rng.random() < 0.3:
            flags += ["--input-shape", f"{flags[1]}={','.join(str(int(d)) for d in rng.integers(1, 9, int(rng.integers(1, 5))))}"]
        return flags, kind
    if kind == "input-shape":  # possibly conflicting with what the graph fixes
        dims = ",".join(str(int(d)) for d in rng.integers(0, 40, int(rng.integers(0, 6))))
        return ["--input-shape", f"{_pick(rng, inputs + ['nope'])}={dims}"], kind
    if kind == "state":
        return ["--state", f"{_pick(rng, inputs + outputs)}={_pick(rng, outputs + inputs)}"], kind
    if kind == "golden":
        return ["--golden", _golden_file(model, rng, workdir)], kind
    if kind == "target":
        return ["--target", _pick(rng, BOARDS)] + (["--fpu"] if rng.random() < 0.3 else []), kind
    return [_pick(rng, ["--whole-tensors", "--io-in-arena", "--float-io"]), "--rounding",
            _pick(rng, ["ort", "single", "tflm"])], kind


def _golden_file(model: onnx.ModelProto, rng: np.random.Generator, workdir: Path) -> str:
    """A --golden value: a count, a missing file, or an .npz of object, wrong-typed, misnamed or misshapen arrays."""
    choice = _pick(rng, ["count", "missing", "objects", "float64", "misnamed", "short", "not npz"])
    if choice == "count":
        return _pick(rng, ["0", "1", "3", "100000000", "-1", "x"])
    if choice == "missing":
        return str(workdir / "missing.npz")
    path = workdir / "golden.npz"
    names = [i.name for i in model.graph.input] or ["x"]
    if choice == "not npz":
        path.write_bytes(b"PK\x03\x04 not a zip")
        return str(path)
    arrays = {}
    for name in names:
        if choice == "objects":
            arrays[name] = np.array([None, "a", 1], dtype=object)
        elif choice == "float64":
            arrays[name] = rng.random((1, 7))
        elif choice == "short":
            arrays[name] = np.zeros(5, np.uint8)
        else:
            arrays[f"{name}_"] = np.zeros(4, np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return str(path)


def random_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """A small QDQ CNN of random shape for the memory planner: convolutions (1x1, 3x3, strided, depthwise,
    with or without Relu), pools, residual Adds, Concats and branches, uint8 or int8 activations, quantized
    as ORT's quantizer writes them (a Relu's output zero point at the type's minimum, a pool's output
    parameters its input's), so that ONNX Runtime runs them as integer kernels."""
    dtype = np.uint8 if rng.random() < 0.5 else np.int8
    zero, relu_zero = (128, 0) if dtype == np.uint8 else (0, -128)
    g = QdqGraph(13, seed=int(rng.integers(1 << 30)))
    channels, size = int(rng.integers(1, 6)), int(rng.integers(4, 13))
    # (tensor, channels, size, scale, zero point)
    alive = [(g.qdq(g.input("input", [1, channels, size, size]), 0.02, zero, dtype), channels, size, 0.02, zero)]
    for _ in range(int(rng.integers(2, 9))):
        t, c, s, x_scale, x_zero = alive[int(rng.integers(len(alive)))] if rng.random() < 0.3 else alive[-1]
        op = _pick(rng, ["conv", "conv", "depthwise", "pool", "add", "concat"])
        scale = float(rng.uniform(0.01, 0.08))
        if op in ("conv", "depthwise"):
            k = int(_pick(rng, [1, 3]))
            stride = int(_pick(rng, [1, 1, 2])) if s >= 4 else 1
            out_c = c if op == "depthwise" else int(rng.integers(1, 9))
            group = c if op == "depthwise" else 1
            w = g.weights((out_c, c // group, k, k), 0.02)
            y = g.node("Conv", [t, w, g.int32_bias((out_c,), np.float32(x_scale * 0.02))], pads=[k // 2] * 4,
                       strides=[stride, stride], group=group)
            y_zero = zero
            if rng.random() < 0.5:
                y, y_zero = g.node("Relu", [y]), relu_zero
            alive.append((g.qdq(y, scale, y_zero, dtype), out_c, (s + 2 * (k // 2) - k) // stride + 1, scale, y_zero))
        elif op == "pool" and s >= 2:
            kind = _pick(rng, ["MaxPool", "AveragePool"])
            pooled = g.node(kind, [t], kernel_shape=[2, 2], strides=[2, 2])
            alive.append((g.qdq(pooled, x_scale, x_zero, dtype), c, s // 2, x_scale, x_zero))
        elif op == "add":
            same = [a for a in alive if a[1:3] == (c, s) and a[0] != t]
            if same:
                alive.append((g.qdq(g.node("Add", [t, same[-1][0]]), scale, zero, dtype), c, s, scale, zero))
        elif op == "concat":
            same = [a for a in alive if a[2] == s]
            other = same[int(rng.integers(len(same)))]
            alive.append((g.qdq(g.node("Concat", [t, other[0]], axis=1), scale, zero, dtype), c + other[1], s, scale,
                          zero))
    g.output(alive[-1][0], "y")  # the last DequantizeLinear: float out, as exporters write it
    return g.model()


def onnx_mutant(i: int, rng: np.random.Generator, bases=None):
    """The i-th ONNX mutant: a random small CNN (one in five, unmutated), or a seed model mutated once or (30%)
    twice."""
    if i % 5 == 4:
        return random_cnn(rng), "random CNN"
    bases = bases or seeds()
    payload, kind = mutate(bases[i % len(bases)], rng)
    if rng.random() < 0.3 and not isinstance(payload, bytes):  # a second mutation on top
        payload, second = mutate(payload, rng)
        kind = f"{kind}+{second}"
    return payload, kind


OPTION_SHARE = 0.3  # of the ONNX mutants, compiled with accidental options (option_mutation)


def fuzz(mutants: int, seed: int, sanitize_count: int, report=print, make_mutant=None, suffix: str = ".onnx") -> Counter:
    """Run `mutants` mutants (make_mutant(i, rng) -> (payload, kind); ONNX ones by default) through
    `qcc compile`, some ONNX ones with accidental options, and the first `sanitize_count` that
    compile (without options) under ASan and UBSan."""
    rng = np.random.default_rng(seed)
    if make_mutant is None:
        bases = seeds()
        make_mutant = lambda i, rng: onnx_mutant(i, rng, bases)  # noqa: E731
    outcomes: Counter = Counter()
    sanitized = 0
    with tempfile.TemporaryDirectory(prefix="qcc-fuzz-") as tmp:
        workdir = Path(tmp)
        for i in range(mutants):
            payload, kind = make_mutant(i, rng)
            flags = []
            if isinstance(payload, onnx.ModelProto) and rng.random() < OPTION_SHARE:
                flags, option_kind = option_mutation(payload, rng, workdir)
                kind = f"{kind} with --{option_kind}: {' '.join(flags)[:200]!r}"
            outcome, detail = run_mutant(payload, workdir, suffix, flags)
            outcomes[outcome] += 1
            if outcome not in ("ok", "refused"):
                report(f"mutant {i} ({kind}): {outcome}: {detail}")
            elif outcome == "ok" and not flags and sanitized < sanitize_count:
                sanitized += 1
                result, detail = sanitize(Path(detail), workdir, whole_tensors_too=kind == "random CNN")
                outcomes[f"sanitized {result}"] += 1
                if result != "clean":
                    report(f"mutant {i} ({kind}): {result}: {detail}")
    return outcomes


def command_line(description: str, mutants: int, sanitize_count: int, **fuzz_options) -> None:
    """The long run from the command line (fuzz.py and fuzz_tflite.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mutants", type=int, default=mutants)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sanitize", type=int, default=sanitize_count,
                        help="how many compiled mutants to build with sanitizers")
    args = parser.parse_args()
    start = time.time()
    outcomes = fuzz(args.mutants, args.seed, args.sanitize, **fuzz_options)
    print(f"{args.mutants} mutants in {time.time() - start:.0f} s: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))


if __name__ == "__main__":
    command_line(__doc__.splitlines()[0], mutants=5000, sanitize_count=200)
