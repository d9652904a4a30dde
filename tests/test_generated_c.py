"""Properties of the generated C folder for the quantized 96x96 CNN (uint8 and int8 activations):
it builds warning-free with gcc, clang and arm-none-eabi-gcc for a Cortex-M4; the model and its
kernels hold no float at all; output is deterministic; model.json describes the model truthfully;
the host runner and the golden test work; --name renames everything.

The folders the fixtures compile are never built in: every build happens in a copy, so that
object files from one compiler cannot leak into another test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from pycparser import c_ast, c_parser

from models import cnn96, quantize
from qcc import reference
from qcc.cli import main
from qcc.pipeline import Options, compile_model

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
CORTEX_M4 = ["-mcpu=cortex-m4", "-mthumb"]
CORTEX_M4_HARD_FLOAT = CORTEX_M4 + ["-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
APT_PACKAGE = {"gcc": "gcc", "clang": "clang", "arm-none-eabi-gcc": "gcc-arm-none-eabi",
               "arm-none-eabi-nm": "binutils-arm-none-eabi", "make": "make"}
HOST_FILES = {"test_model.c", "qcc_runner.c"}  # use stdio; everything else must build for the MCU


def tool(name: str) -> str:
    """The path of a required tool; a missing one fails the test (never skips it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; install it (apt-get install {APT_PACKAGE.get(name, name)}) "
                    "to run these tests")
    return path


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)


def make(folder: Path, target: str, *variables: str) -> subprocess.CompletedProcess:
    return run([tool("make"), "-s", "-C", folder, target, *variables])


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def qcc_compile(model: Path, out: Path, *extra: str) -> dict:
    assert main(["compile", str(model), "-o", str(out), *extra]) == 0
    return json.loads((out / "model.json").read_text())


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- the models and their compiled folders, once per module -------------------------------------


@dataclass
class Build:
    activation: str
    model: Path  # the quantized .onnx
    out: Path  # qcc compile MODEL -o out
    float_out: Path  # qcc compile MODEL -o float_out --float-io


@pytest.fixture(scope="module", params=["uint8", "int8"])
def build(request, tmp_path_factory) -> Build:
    root = tmp_path_factory.mktemp(f"cnn96_{request.param}")
    model = quantize(cnn96(), root / f"cnn96_{request.param}.onnx", activation=request.param)
    qcc_compile(model, root / "out")
    qcc_compile(model, root / "float_out", "--float-io")
    return Build(request.param, model, root / "out", root / "float_out")


# --- compilers --------------------------------------------------------------------------------


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_builds_strictly_with_host_compiler_and_passes_golden_test(build, tmp_path, cc):
    folder = copy_of(build.out, tmp_path)
    variables = [f"CC={tool(cc)}", "CFLAGS=" + " ".join(STRICT + ["-O2"])]
    result = make(folder, "check", *variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 4 case(s), every output value exact" in result.stdout
    result = make(folder, "runner", *variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (folder / "qcc_runner").is_file()


def test_the_makefile_compiles_only_the_kernels_of_the_models_activation_type(build, tmp_path):
    """Every kernel call of the model takes one activation type: the Makefile's TYPE_FLAGS leave the other
    instance of qcc_kernels.c out of the build, and without the flag (one runtime for models of both
    types) the object holds both."""
    folder = copy_of(build.out, tmp_path)
    ours, other = ("u8", "s8") if build.activation == "uint8" else ("s8", "u8")
    assert f"TYPE_FLAGS = -DQCC_KERNELS_{ours.upper()}_ONLY" in (folder / "Makefile").read_text()
    assert make(folder, "qcc_kernels.o").returncode == 0

    def symbols() -> set[str]:
        return set(run([tool("nm"), "--defined-only", folder / "qcc_kernels.o"]).stdout.split())

    assert f"qcc_conv_gemm_{ours}" in symbols() and f"qcc_conv_gemm_{other}" not in symbols()
    (folder / "qcc_kernels.o").unlink()
    assert make(folder, "qcc_kernels.o", "TYPE_FLAGS=").returncode == 0
    assert {f"qcc_conv_gemm_{ours}", f"qcc_conv_gemm_{other}"} <= symbols()


def mcu_sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.c") if p.name not in HOST_FILES)


def compile_for_mcu(sources: list[Path], flags: list[str], obj_dir: Path) -> list[Path]:
    objects = []
    for source in sources:
        for opt in ("-O0", "-Os"):
            obj = obj_dir / f"{source.stem}{opt}.o"
            result = run([tool("arm-none-eabi-gcc"), *flags, *STRICT, opt, "-c", source, "-o", obj])
            assert result.returncode == 0, f"{source.name} ({opt}):\n{result.stderr}"
            objects.append(obj)
    return objects


# Soft-float helpers of the ARM EABI: __aeabi_fadd, __aeabi_dmul, __aeabi_f2iz, __aeabi_i2f, ...
SOFT_FLOAT_HELPER = re.compile(r"__aeabi_(?:[fd][a-z0-9]+|[a-z0-9]+2[fd])$")


def soft_float_calls(objects: list[Path]) -> set[str]:
    undefined = set()
    for obj in objects:
        result = run([tool("arm-none-eabi-nm"), "-u", obj])
        assert result.returncode == 0, result.stderr
        undefined |= {line.split()[-1] for line in result.stdout.splitlines() if line.strip()}
    return {name for name in undefined if SOFT_FLOAT_HELPER.match(name)}


def test_model_and_kernels_compile_for_cortex_m4_without_float(build, tmp_path):
    sources = mcu_sources(build.out)
    # qcc_data_movement.c: qcc_band_shift, for the model's convolutions that run streamed
    assert {p.name for p in sources} == {"model.c", "qcc_kernels.c", "qcc_data_movement.c"}
    objects = compile_for_mcu(sources, CORTEX_M4, tmp_path)
    # Without an FPU any float arithmetic would call the soft-float library.
    assert soft_float_calls(objects) == set()


def test_float_io_build_compiles_for_cortex_m4_with_fpu(build, tmp_path):
    sources = mcu_sources(build.float_out)
    assert {p.name for p in sources} == {"model.c", "qcc_kernels.c", "qcc_float_io.c", "qcc_data_movement.c"}
    compile_for_mcu(sources, CORTEX_M4_HARD_FLOAT, tmp_path)
    # Sanity for the soft-float check above: the float I/O does need float arithmetic.
    (tmp_path / "soft").mkdir()
    soft = compile_for_mcu([build.float_out / "qcc_float_io.c"], CORTEX_M4, tmp_path / "soft")
    assert soft_float_calls(soft), "expected the soft-float build of qcc_float_io.c to call __aeabi_f* helpers"


# --- no float in the integer build, by parsing the C ----------------------------------------------

FAKE_LIBC = {
    "stdint.h": """
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define UINT64_C(c) c##ULL
""",
    "stddef.h": """
typedef unsigned long size_t;
#define NULL ((void *)0)
""",
    "string.h": """
#include <stddef.h>
void *memcpy(void *dest, const void *src, size_t n);
""",
    "limits.h": """
#define CHAR_BIT 8
#define INT_MIN (-2147483647 - 1)
#define INT_MAX 2147483647
""",
    "float.h": """
#define FLT_EVAL_METHOD 0
""",
}


@pytest.fixture(scope="module")
def fake_libc(tmp_path_factory) -> Path:
    """Just enough of a C library for gcc -E -nostdinc, so that pycparser sees plain C99."""
    folder = tmp_path_factory.mktemp("fake_libc")
    for name, text in FAKE_LIBC.items():
        (folder / name).write_text(text)
    return folder


def parse(source: Path, fake_libc: Path) -> c_ast.FileAST:
    # -U__SSE2__: the portable C, not the x86 path's intrinsics header, which pycparser cannot read
    result = run([tool("gcc"), "-E", "-std=c99", "-nostdinc", "-U__SSE2__", f"-I{fake_libc}", f"-I{source.parent}", source])
    assert result.returncode == 0, result.stderr
    return c_parser.CParser().parse(result.stdout, str(source))


class FloatFinder(c_ast.NodeVisitor):
    FLOAT_TYPES = {"float", "double"}

    def __init__(self):
        self.found: list[str] = []

    def visit_IdentifierType(self, node):
        if self.FLOAT_TYPES & set(node.names):
            self.found.append(f"type '{' '.join(node.names)}' at {node.coord}")

    def visit_Constant(self, node):
        if any(word in node.type.split() for word in self.FLOAT_TYPES):
            self.found.append(f"floating constant {node.value} at {node.coord}")


def floats_in(source: Path, fake_libc: Path) -> list[str]:
    finder = FloatFinder()
    finder.visit(parse(source, fake_libc))
    return finder.found


@pytest.mark.parametrize("filename", ["model.c", "qcc_kernels.c"])
def test_integer_build_has_no_float_type_or_constant(build, fake_libc, filename):
    assert floats_in(build.out / filename, fake_libc) == []


@pytest.mark.parametrize("filename", ["model.c", "qcc_float_io.c"])
def test_float_io_build_does_contain_float(build, fake_libc, filename):
    """The check above can fail: the same walk finds the float of the --float-io build."""
    found = floats_in(build.float_out / filename, fake_libc)
    assert any("type 'float'" in f for f in found), found


# --- determinism ------------------------------------------------------------------------------


def test_compiling_twice_gives_identical_files(build, tmp_path):
    """A second compile, in another process with another hash seed, into another folder."""
    again = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = run([sys.executable, "-m", "qcc", "compile", build.model, "-o", again], env=env)
    assert result.returncode == 0, result.stderr
    first, second = files_of(build.out), files_of(again)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


# --- the manifest -----------------------------------------------------------------------------


def onnx_boundary(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """What model.json must say of the inputs and outputs, read from the ONNX file: each float
    input's QuantizeLinear and each float output's DequantizeLinear give the codes' scale,
    zero point and type."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def entry(value_info, node) -> dict:
        scale, zero = inits[node.input[1]], inits[node.input[2]]
        return {"name": value_info.name, "c_name": value_info.name, "dtype": zero.dtype.name,
                "shape": [d.dim_value for d in value_info.type.tensor_type.shape.dim],
                "scale": np.float32(scale), "zero_point": int(zero)}

    inputs = [entry(vi, next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == vi.name))
              for vi in model.graph.input if vi.name not in inits]
    outputs = [entry(vi, next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == vi.name))
               for vi in model.graph.output]
    return inputs, outputs


def check_io(entries: list[dict], expected: list[dict]) -> None:
    assert len(entries) == len(expected)
    for got, want in zip(entries, expected):
        assert set(got) == {"name", "c_name", "dtype", "shape", "scale", "zero_point"}
        assert np.float32(got["scale"]) == want["scale"], (got, want)  # exact: float32 round-trips
        assert {**got, "scale": None} == {**want, "scale": None}


def header_defines(header: Path) -> dict[str, str]:
    return dict(re.findall(r"^#define (\w+)(?:[ \t]+([^/\n]*?))?[ \t]*(?:/\*.*)?$", header.read_text(), re.M))


def test_manifest_describes_the_model(build):
    manifest = json.loads((build.out / "model.json").read_text())
    model = onnx.load(str(build.model))
    inputs, outputs = onnx_boundary(model)
    assert manifest["name"] == "model"
    assert inputs[0]["dtype"] == outputs[0]["dtype"] == build.activation
    assert inputs[0]["shape"] == [1, 3, 96, 96] and outputs[0]["shape"] == [1, 10]
    check_io(manifest["inputs"], inputs)
    check_io(manifest["outputs"], outputs)

    # The header gives the application the same numbers.
    defines = header_defines(build.out / "model.h")
    assert float.fromhex(defines["MODEL_INPUT_INPUT_SCALE"].rstrip("f")) == inputs[0]["scale"]
    assert int(defines["MODEL_INPUT_INPUT_ZERO_POINT"]) == inputs[0]["zero_point"]
    assert float.fromhex(defines["MODEL_OUTPUT_LOGITS_SCALE"].rstrip("f")) == outputs[0]["scale"]
    assert int(defines["MODEL_OUTPUT_LOGITS_ZERO_POINT"]) == outputs[0]["zero_point"]

    # Layers: the ONNX nodes between the boundary Quantize/DequantizeLinear, in order.
    onnx_layers = [(n.op_type, n.name) for n in model.graph.node
                   if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    assert [(layer["op"], layer["name"]) for layer in manifest["layers"]] == onnx_layers
    macs = {layer["name"]: layer["macs"] for layer in manifest["layers"]}
    assert macs["conv0_quant"] == 16 * 96 * 96 * 3 * 3 * 3  # out channels x out pixels x taps
    assert macs["conv1_quant"] == 32 * 48 * 48 * 16 * 3 * 3
    assert macs["conv2_quant"] == 32 * 24 * 24 * 32 * 3 * 3
    assert macs["fc_quant"] == 10 * 32
    assert macs["flatten"] == 0

    # Arena: the three convolutions run streamed, a row at a time: conv0's output (16x96x96) and
    # conv1's (32x48x48) are never whole, as they would be side by side out of place; conv2's is.
    assert 32 * 24 * 24 <= manifest["arena_bytes"] < 16 * 96 * 96 + 32 * 48 * 48
    assert "a row at a time" in (build.out / "model.c").read_text()
    assert int(defines["MODEL_ARENA_BYTES"]) == manifest["arena_bytes"]
    model_c = (build.out / "model.c").read_text()
    assert f"uint8_t bytes[{manifest['arena_bytes']}];" in model_c

    # Weights: at least every int8 weight of the ONNX model, and exactly the constant arrays of model.c.
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_count = sum(inits[n.input[3]].size for n in model.graph.node if n.op_type in ("QLinearConv", "QGemm"))
    assert weight_count == 16 * 3 * 9 + 32 * 16 * 9 + 32 * 32 * 9 + 10 * 32
    assert manifest["weights_bytes"] >= weight_count
    sizes = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4,
             "int64_t": 8, "uint64_t": 8}
    arrays = re.findall(r"^static const (\w+) \w+\[(\d+)\] = \{", model_c, re.M)
    assert arrays
    assert sum(sizes[ctype] * int(count) for ctype, count in arrays) == manifest["weights_bytes"]
    assert int(defines["MODEL_WEIGHTS_BYTES"]) == manifest["weights_bytes"]


# --- the host runner --------------------------------------------------------------------------


def random_codes(activation: str, shape, seed: int) -> np.ndarray:
    info = np.iinfo(activation)
    return np.random.default_rng(seed).integers(info.min, info.max, shape, endpoint=True).astype(activation)


def test_runner_matches_the_reference_interpreter(build, tmp_path):
    folder = copy_of(build.out, tmp_path)
    result = make(folder, "runner")
    assert result.returncode == 0, result.stdout + result.stderr
    x = random_codes(build.activation, (1, 3, 96, 96), seed=42)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    result = run([folder / "qcc_runner", tmp_path / "in.bin", tmp_path / "out.bin"])
    assert result.returncode == 0, result.stderr
    (expected,) = reference.run(compile_model(build.model, Options()).graph, [x])
    assert expected.dtype == np.dtype(build.activation) and expected.shape == (1, 10)
    assert (tmp_path / "out.bin").read_bytes() == expected.tobytes()

    for size in (x.nbytes - 1, x.nbytes + 1, 0):
        (tmp_path / "bad.bin").write_bytes(bytes(size))
        result = run([folder / "qcc_runner", tmp_path / "bad.bin", tmp_path / "bad_out.bin"])
        assert result.returncode != 0, f"qcc_runner accepted a {size}-byte input"
        assert str(x.nbytes) in result.stderr
    result = run([folder / "qcc_runner", tmp_path / "in.bin"])  # the output file is missing
    assert result.returncode != 0


# --- the golden test --------------------------------------------------------------------------


def c_array(text: str, name: str) -> tuple[re.Match, np.ndarray]:
    """The initializer values of `static const T name[N] = { ... };` in C source text."""
    match = re.search(rf"static const \w+ {name}\[(\d+)\] = \{{(.*?)\}};", text, re.S)
    assert match, f"no array {name}"
    values = np.array([int(v) for v in match.group(2).replace("\n", " ").split(",")])
    assert values.size == int(match.group(1))
    return match, values


def test_golden_npz_gives_a_passing_test_that_catches_a_wrong_value(build, tmp_path):
    cases = np.stack([random_codes(build.activation, (1, 3, 96, 96), seed) for seed in (7, 8)])
    np.savez(tmp_path / "cases.npz", input=cases)
    out = tmp_path / "out"
    manifest = qcc_compile(build.model, out, "--golden", str(tmp_path / "cases.npz"))
    assert manifest["golden_cases"] == 2
    test_c = out / "test_model.c"
    text = test_c.read_text()
    graph = compile_model(build.model, Options()).graph
    for i in range(2):  # the golden test holds our inputs, and the reference interpreter's outputs
        assert np.array_equal(c_array(text, f"case{i}_in_input")[1], cases[i].reshape(-1))
        (expected,) = reference.run(graph, [cases[i]])
        assert np.array_equal(c_array(text, f"case{i}_out_logits")[1], expected.reshape(-1))
    assert "case2_" not in text

    cflags = "CFLAGS=" + " ".join(STRICT + ["-O2"])
    result = make(out, "check", cflags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 2 case(s)" in result.stdout

    # Corrupt one expected value: the golden test must fail and say where.
    match, values = c_array(text, "case1_out_logits")
    info = np.iinfo(build.activation)
    values[3] = values[3] + 1 if values[3] < info.max else values[3] - 1
    corrupted = text[:match.start(2)] + "\n    " + ", ".join(map(str, values)) + "\n" + text[match.end(2):]
    test_c.write_text(corrupted)
    result = make(out, "check", cflags, "-B")
    assert result.returncode != 0
    assert "output 'logits'" in result.stdout and "index 3" in result.stdout, result.stdout
    assert "case 1" in result.stdout


# --- --name -----------------------------------------------------------------------------------


def test_name_prefixes_files_symbols_and_macros(build, tmp_path):
    out = tmp_path / "kws_out"
    manifest = qcc_compile(build.model, out, "--name", "kws")
    assert manifest["name"] == "kws"
    names = {p.name for p in out.iterdir()}
    assert {"kws.c", "kws.h", "test_kws.c"} <= names
    assert not names & {"model.c", "model.h", "test_model.c"}

    header = (out / "kws.h").read_text()
    assert "int kws_run(" in header
    macros = re.findall(r"^\s*#\s*define\s+(\w+)", header, re.M)
    assert len(macros) > 5
    assert [m for m in macros if not m.startswith("KWS_")] == []
    assert "int kws_run(" in (out / "kws.c").read_text()

    # The only external symbol the model defines is kws_run, and the folder builds and checks.
    folder = copy_of(out, tmp_path / "build")
    result = make(folder, "check", "CFLAGS=" + " ".join(STRICT + ["-O2"]))
    assert result.returncode == 0, result.stdout + result.stderr
    symbols = run([tool("nm"), "-g", "--defined-only", folder / "kws.o"])
    assert symbols.returncode == 0, symbols.stderr
    assert [line.split()[-1] for line in symbols.stdout.splitlines() if line.strip()] == ["kws_run"]
