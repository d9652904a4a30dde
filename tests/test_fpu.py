"""--fpu: the `ort` scheme's requantization in float32 instructions (runtime_c/qcc_requant_ort_fpu.h).

The C must stay bit-exact: C == reference == ONNX Runtime on convolutions (im2col GEMM, depthwise
3x3, grouped), fully connected layers (one with accumulators above 2^24), Add, AveragePool,
GlobalAveragePool and MaxPool, with seeded random and extreme inputs, on the host and on the
Cortex-M4, M7 and M55 under QEMU; the float function equals its integer twin on a grid of edge
values on every one of them. --fpu is refused without an FPU (Cortex-M0, M3) and outside the ort
scheme, and without it the C holds no float and nothing changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, STRICT_CFLAGS
from models import quantize
from networks import NetBuilder
from test_c_struct_fields import check_model_c, preprocess, struct_typedefs
from test_generated_c import fake_libc, floats_in, run, tool  # noqa: F401 (fake_libc is a fixture used here)
from test_targets import ARM_CFLAGS, c_array, make

from qcc.commands.compile import compile_to_folder
from qcc.commands.verify import verify
from qcc.errors import QccError
from qcc.numerics import ort_float32
from qcc.ops.c_emitter import c_float_literal
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain import qemu
from qcc.toolchain.build import make as make_host
from qcc.toolchain.targets import TARGETS

FPU_BOARDS = ("cortex-m4", "cortex-m7", "cortex-m55")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --- the networks ---------------------------------------------------------------------------------


def every_requant_cnn(seed=0):
    """Every kernel that requantizes through qcc_requant.h: Conv as im2col GEMM (3x3 and 1x1),
    depthwise 3x3 (strides 1 and 2), a grouped Conv (a GEMM per group), Add, MaxPool, a windowed
    AveragePool (ORT's float path), an AveragePool over the whole map and a GlobalAveragePool (the
    integer global path) and two Gemm layers."""
    net = NetBuilder("every_requant", [1, 3, 12, 12], seed)
    x = net.conv("input", 8, 3)                                     # qcc_conv_gemm
    d = net.conv(x, 8, 3, group=8)                                  # qcc_conv_depthwise_3x3, stride 1
    g = net.conv(x, 8, 3, group=2, act=None)                        # qcc_conv_gemm per group
    x = net.add(d, g, act="relu")                                   # QLinearAdd
    s = net.conv(x, 8, 3, stride=2, group=8, act="relu6")           # depthwise 3x3, stride 2, Clip folded
    m = net.maxpool(x, 2, 2, ceil_mode=0)                           # MaxPool
    y = net.conv(net.add(s, m), 16, 1)                              # a 1x1 GEMM
    windowed = net.avgpool(y, (3, 3), (1, 1))                       # AveragePool, float path
    whole = net.flatten(net.avgpool(y, net.shapes[y][2:]))          # the window is the map: global path
    pooled = net.flatten(net.global_pool(windowed))                 # qcc_global_avgpool
    logits = net.dense(net.dense(pooled, 12), 5, act=None)          # qcc_fully_connected
    return net.build([logits, whole, windowed])


def wide_fc(seed=0):
    """A Gemm over 1024 inputs with positive weights: extreme inputs give accumulators above 2^24,
    where f32(acc) rounds (ORT converts every accumulator to float32 before the multiply)."""
    net = NetBuilder("wide_fc", [1, 4, 16, 16], seed)
    x = net.flatten("input")
    name = net._name("fc")
    weights = net._const(f"{name}_w", net.rng.uniform(0.5, 1.0, (1024, 6)).astype(np.float32))
    bias = net._const(f"{name}_b", np.zeros(6, np.float32))
    return net.build([net._node("Gemm", [x, weights, bias], [1, 6])])


MODELS = {"uint8-every": (every_requant_cnn, "uint8"), "int8-every": (every_requant_cnn, "int8"),
          "uint8-wide-fc": (wide_fc, "uint8")}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    built = {}
    for name, (build, activation) in MODELS.items():
        built[name] = quantize(build(), tmp_path_factory.mktemp(name) / f"{name}.onnx", activation=activation,
                               quant_format="QDQ")
    return built


def golden(model: Path) -> list[list[np.ndarray]]:
    graph = compile_model(model).graph
    return random_inputs(graph, 3, seed=11) + extreme_inputs(graph)


@pytest.fixture(scope="module")
def fpu_folders(models, tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """Each model compiled with --fpu for the Cortex-M4 (which gives the rules of every board with an
    FPU), golden cases seeded random and extreme: (folder, cases)."""
    folders = {}
    for name, model in models.items():
        cases = golden(model)
        out = tmp_path_factory.mktemp(f"{name}-fpu") / "out"
        compile_to_folder(model, out, Options(target="cortex-m4", fpu=True), golden=cases)
        folders[name] = (out, len(cases))
    return folders


def test_the_models_cover_every_requantizing_kernel(models, fpu_folders):
    source = (fpu_folders["uint8-every"][0] / "model.c").read_text() + (fpu_folders["int8-every"][0] / "model.c").read_text()
    called = set(re.findall(r"\b(qcc_\w+_[su]8)\(", source))
    for kernel in ("qcc_conv_gemm", "qcc_conv_depthwise_3x3", "qcc_fully_connected", "qcc_global_avgpool",
                   "qcc_avgpool", "qcc_maxpool"):
        assert {f"{kernel}_u8", f"{kernel}_s8"} <= called, kernel
    assert "qcc_qlinear_add" in source
    # the wide Gemm's accumulators can pass 2^24: the C may not skip the rounding of f32(acc)
    graph = compile_model(models["uint8-wide-fc"]).graph
    (fc,) = [node for node in graph.nodes if "requant" in node.params]
    assert not fc.params["acc_range"].f32_exact
    # Z_x = 0 and positive weights: the all-qmax extreme input reaches the bound, above 2^24
    assert graph.tensor(fc.inputs[0]).quant.scalar()[1] == 0 and fc.params["acc_range"].high.min() > 2**24


# --- bit-exact: C == reference == ORT -------------------------------------------------------------


@pytest.mark.parametrize("target", ("host",) + FPU_BOARDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_verify_with_fpu_is_exact(models, name, target):
    """qcc verify --fpu: the C (on the host, or a bare-metal image on the board's QEMU machine), the
    reference and ONNX Runtime agree on every value of 6 seeded random and 3 extreme input sets."""
    report = verify(str(models[name]), Options(target=target, fpu=True), count=6)
    assert report.ok, report.table()
    assert report.cases == 9
    for pairs in report.per_output.values():
        for pair, agreement in pairs.items():
            assert agreement.compared > 0 and agreement.exact == agreement.compared, (pair, report.table())
    assert "C requantizes with float32 instructions (--fpu)" in report.table()


@pytest.mark.parametrize("board", FPU_BOARDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_golden_test_with_fpu_is_exact_on_the_board(fpu_folders, name, board):
    """The folder's own golden test, built by its Makefile with -Werror for the board."""
    folder, cases = fpu_folders[name]
    result = make(folder, f"run-{board}", ARM_CFLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK: {cases} case(s), every output value exact" in result.stdout + result.stderr


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("name", list(MODELS))
def test_golden_test_with_fpu_is_exact_on_the_host(models, tmp_path, name, cc):
    """Compiled for the host, built strictly (-Werror) with gcc and clang at -O1 and -O3."""
    cases = golden(models[name])
    compile_to_folder(models[name], tmp_path / "out", Options(fpu=True), golden=cases)
    for level in ("-O1", "-O3"):
        make_host(tmp_path / "out", "clean")
        make_host(tmp_path / "out", "check", cflags=STRICT_CFLAGS.replace("-O1", level), variables={"CC": tool(cc)})


def test_the_image_uses_the_fpu(fpu_folders):
    """The board images multiply in the FPU and call no soft-float helper; the Makefile gives every
    board with an FPU and no other."""
    folder, _ = fpu_folders["int8-every"]
    makefile = (folder / "Makefile").read_text()
    assert re.findall(r"^run-(\S+):", makefile, re.MULTILINE) == list(FPU_BOARDS)
    assert "FP_FLAGS = -ffp-contract=off" in makefile
    for board in FPU_BOARDS:
        image = folder / f"test_model-{board}.elf"  # built by test_golden_test_with_fpu_is_exact_on_the_board
        if not image.exists():
            assert make(folder, image.name, ARM_CFLAGS).returncode == 0
        disassembly = run([tool("arm-none-eabi-objdump"), "-d", image]).stdout
        assert "vmul.f32" in disassembly and "vcvt.f32.s32" in disassembly
        assert not re.search(r"<__aeabi_(f|i2f|ui2f)\w*>:", disassembly), board


def test_a_build_without_the_fpu_is_stopped(fpu_folders, tmp_path):
    """The runtime refuses to compile --fpu C for a core without an FPU, or with -ffast-math, instead
    of running slowly in software or computing other numbers."""
    folder, _ = fpu_folders["int8-every"]
    kernels = folder / "qcc_kernels.c"
    for flags, message in ((["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"], "has no single-precision FPU"),
                           (["-mcpu=cortex-m0", "-mthumb"], "has no single-precision FPU"),
                           (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-ffast-math"],
                            "-ffast-math")):
        result = run([tool("arm-none-eabi-gcc"), *flags, "-std=c99", "-c", kernels, "-o", tmp_path / "k.o"])
        assert result.returncode != 0 and message in result.stderr, (flags, result.stderr)
    result = run([tool("arm-none-eabi-gcc"), *TARGETS["cortex-m4"].cpu_flags, *STRICT_CFLAGS.split(), "-c", kernels,
                  "-o", tmp_path / "k.o"])
    assert result.returncode == 0, result.stderr


# --- the float function against its integer twin, on a grid of edge values -------------------------

# Clamp bounds (lo, hi) with the zero point subtracted: int8, uint8 with zero points 255 and 0, a
# Relu-like lower bound above zero, and the widest the rounding trick takes (|v| <= 2^22).
FPU_CLAMPS = [(-128, 127), (-255, 0), (0, 255), (3, 100), (-(2**22), 2**22)]
# Scales beyond the grid: ones whose products overflow to infinity or saturate any 8-bit output (up to
# FLT_MAX), vanishing ones (below 2^-57), the smallest normal and a subnormal one.
SPECIAL_SCALES = [np.finfo(np.float32).max, 1e30, 2.0**8, 255.75, 2.0**-126, 2.0**-140, 1e-30, 2.0**-60, 2.0**-57]


def fpu_grid(rng) -> tuple[list[int], list[tuple[int, int]], list[list[int]]]:
    """(accumulators, (multiplier, shift) pairs, per pair the accumulators of its exact ties): the ort
    scheme's grid of test_targets, every shift 15..57; each pair denotes a float32 scale exactly."""
    from test_targets import grid

    accs, pairs, tie_accs = grid("ort", rng)
    for m, s in pairs:
        assert float(np.float32(m * 2.0**-s)) == m * 2.0**-s
    return accs, pairs, tie_accs


def float32_requantize(acc, scale, lo, hi) -> np.ndarray:
    """ORT's arithmetic in numpy float32 (IEEE binary32, round to nearest even): the second oracle."""
    with np.errstate(over="ignore"):
        v = np.asarray(acc, np.int64).astype(np.float32) * np.asarray(scale, np.float32)
    return np.rint(np.clip(v, np.asarray(lo, np.float32), np.asarray(hi, np.float32))).astype(np.int32)


def fpu_harness(rng) -> tuple[str, int]:
    """A C program that compares qcc_requantize_ort_fpu with the oracles' values (every scale against
    every accumulator, clamp (scale + accumulator) % len(FPU_CLAMPS), then each grid scale's ties in
    the widest clamp) and prints how many it compared and how many differed. The grid's expected
    values are the integer twin's, the special scales' numpy float32's (the two agree on the grid)."""
    accs, pairs, tie_accs = fpu_grid(rng)
    scales = np.array([m * 2.0**-s for m, s in pairs] + SPECIAL_SCALES, np.float32)
    clamp = (np.arange(len(scales))[:, None] + np.arange(len(accs))[None, :]) % len(FPU_CLAMPS)
    lo, hi = np.array(FPU_CLAMPS)[clamp, 0], np.array(FPU_CLAMPS)[clamp, 1]
    mults, shifts = np.array([m for m, _ in pairs], np.uint64), np.array([s for _, s in pairs], np.uint64)
    n = len(pairs)
    twin = ort_float32.requantize(np.array(accs)[None, :], mults[:, None], shifts[:, None], lo[:n], hi[:n])
    numpy_values = float32_requantize(np.array(accs)[None, :], scales[:, None], lo, hi)
    assert np.array_equal(twin, numpy_values[:n])
    expected = np.concatenate([twin, numpy_values[n:]])
    tie_scale = [k for k, extra in enumerate(tie_accs) for _ in extra]
    tie_acc = [a for extra in tie_accs for a in extra]
    tie_expected = ort_float32.requantize(np.array(tie_acc), mults[tie_scale], shifts[tie_scale], *FPU_CLAMPS[-1])
    assert np.array_equal(tie_expected, float32_requantize(tie_acc, scales[tie_scale], *FPU_CLAMPS[-1]))
    scale_literals = ",\n    ".join(c_float_literal(s) for s in scales)
    source = "\n".join([
        "#include <stdint.h>", "#include <stdio.h>", '#include "qcc_requant_ort_fpu.h"', "",
        c_array("int32_t", "clamp_lo", [c[0] for c in FPU_CLAMPS]), c_array("int32_t", "clamp_hi", [c[1] for c in FPU_CLAMPS]),
        c_array("int32_t", "accs", accs), f"static const float scales[{len(scales)}] = {{\n    {scale_literals}\n}};",
        c_array("int32_t", "expected", expected), c_array("int32_t", "tie_acc", tie_acc),
        c_array("int16_t", "tie_scale", tie_scale), c_array("int32_t", "tie_expected", tie_expected), "",
        "static long compared, failures;", "",
        "static void check(int32_t acc, float scale, int32_t lo, int32_t hi, int32_t want)",
        "{",
        "    const int32_t got = qcc_requantize_ort_fpu(acc, scale, (float)lo, (float)hi);",
        "    ++compared;",
        "    if (got != want && failures++ < 10) {",
        '        printf("acc %ld scale %a lo %ld hi %ld: expected %ld, got %ld\\n", (long)acc, (double)scale, (long)lo,',
        "               (long)hi, (long)want, (long)got);",
        "    }",
        "}", "",
        "int main(void)",
        "{",
        "    long s, a, t;",
        f"    for (s = 0; s < {len(scales)}L; ++s) {{",
        f"        for (a = 0; a < {len(accs)}L; ++a) {{",
        f"            const long k = (s + a) % {len(FPU_CLAMPS)}L;",
        f"            check(accs[a], scales[s], clamp_lo[k], clamp_hi[k], expected[s * {len(accs)}L + a]);",
        "        }",
        "    }",
        f"    for (t = 0; t < {len(tie_acc)}L; ++t) {{",
        f"        check(tie_acc[t], scales[tie_scale[t]], {FPU_CLAMPS[-1][0]}, {FPU_CLAMPS[-1][1]}, tie_expected[t]);",
        "    }",
        '    printf("compared %ld, failures %ld\\n", compared, failures);',
        "    return failures != 0;",
        "}", ""])
    return source, len(scales) * len(accs) + len(tie_acc)


def test_the_grid_holds_ties_and_large_accumulators():
    accs, pairs, tie_accs = fpu_grid(np.random.default_rng(7))
    assert sum(map(len, tie_accs)) > 100
    assert any(abs(a) > 2**24 for a in accs) and INT32_MIN in accs and INT32_MAX in accs
    assert sorted({s for _, s in pairs}) == list(range(15, 58))


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_requantize_ort_fpu_equals_the_twin_on_the_host(tmp_path, cc):
    source, compared = fpu_harness(np.random.default_rng(7))
    (tmp_path / "grid.c").write_text(source)
    for level in ("-O0", "-O2"):
        exe = tmp_path / f"grid{level}"
        result = run([tool(cc), *STRICT_CFLAGS.split(), level, "-ffp-contract=off", "-fsanitize=undefined",
                      "-fno-sanitize-recover=all", f"-I{REPO / 'runtime_c'}", tmp_path / "grid.c", "-o", exe])
        assert result.returncode == 0, result.stderr
        result = run([exe])
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"compared {compared}, failures 0" in result.stdout


@pytest.mark.parametrize("board", FPU_BOARDS)
def test_requantize_ort_fpu_equals_the_twin_on_the_board(fpu_folders, tmp_path, board):
    folder, _ = fpu_folders["uint8-wide-fc"]
    work = tmp_path / "grid"
    shutil.copytree(folder, work)  # its Makefile builds any %.c as a bare-metal image for each board
    source, compared = fpu_harness(np.random.default_rng(7))
    (work / "requant_fpu_grid.c").write_text(source)
    image = f"requant_fpu_grid-{board}.elf"
    result = make(work, image, ARM_CFLAGS)
    assert result.returncode == 0, result.stderr
    console = qemu.run_elf(work / image, TARGETS[board], timeout=120)
    assert console.status == 0, console.console[-3000:]
    assert f"compared {compared}, failures 0" in console.console
    assert compared > 10000


# --- the generated C ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_of_folders(models, tmp_path_factory) -> tuple[Path, Path]:
    """uint8-every compiled without and with --fpu (host target), from the same golden cases."""
    model = models["uint8-every"]
    root = tmp_path_factory.mktemp("pair")
    cases = golden(model)
    compile_to_folder(model, root / "integer", Options(), golden=cases)
    compile_to_folder(model, root / "fpu", Options(fpu=True), golden=cases)
    return root / "integer", root / "fpu"


@pytest.mark.parametrize("filename", ["model.c", "qcc_kernels.c"])
def test_without_fpu_the_c_has_no_float(pair_of_folders, fake_libc, filename):  # noqa: F811
    integer, fpu = pair_of_folders
    assert floats_in(integer / filename, fake_libc) == []
    # the same walk finds the float of the --fpu build: the check can fail
    assert any("type 'float'" in found for found in floats_in(fpu / filename, fake_libc))


def test_fpu_changes_only_the_requantization(pair_of_folders):
    """Same files; the golden test, runner and runtime identical; model.c differs by its scale arrays
    (4 bytes a channel where the multiplier and shift take 5) and the qcc_requant_params fields that
    point at them, model.h by the constants' bytes; qcc_config.h names the scheme; the Makefile adds
    -ffp-contract=off (and so does CMakeLists.txt); the manifest adds "fpu": true."""
    integer, fpu = pair_of_folders
    names = sorted(str(p.relative_to(integer)) for p in integer.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(fpu)) for p in fpu.rglob("*") if p.is_file())
    differ = [n for n in names if (integer / n).read_bytes() != (fpu / n).read_bytes()]
    assert sorted(differ) == ["CMakeLists.txt", "Makefile", "model.c", "model.h", "model.json", "qcc_config.h"]
    assert "-ffp-contract=off" in (fpu / "CMakeLists.txt").read_text()
    assert "-ffp-contract" not in (integer / "CMakeLists.txt").read_text()
    header_lines = [set((folder / "model.h").read_text().splitlines()) for folder in (integer, fpu)]
    assert [sorted(header_lines[0] - header_lines[1]), sorted(header_lines[1] - header_lines[0])] == [
        [line] for line in (f"#define MODEL_WEIGHTS_BYTES {json.loads((folder / 'model.json').read_text())['weights_bytes']}"
                            for folder in (integer, fpu))]
    assert "QCC_ROUNDING_ORT 1" in (integer / "qcc_config.h").read_text()
    assert "QCC_ROUNDING_ORT_FPU 1" in (fpu / "qcc_config.h").read_text()
    assert "QCC_ROUNDING_ORT 1" not in (fpu / "qcc_config.h").read_text()
    assert "FP_FLAGS" not in (integer / "Makefile").read_text() and "-ffp-contract" not in (integer / "Makefile").read_text()
    manifests = [json.loads((folder / "model.json").read_text()) for folder in (integer, fpu)]
    assert "fpu" not in manifests[0] and manifests[1].pop("fpu") is True
    assert manifests[1]["weights_bytes"] < manifests[0]["weights_bytes"]
    # the options recorded differ in --fpu alone
    assert manifests[0]["options"]["fpu"] is False and manifests[1]["options"]["fpu"] is True
    assert sorted(manifests[1]["command"].split()) == sorted(manifests[0]["command"].split() + ["--fpu"])
    for manifest in manifests:
        del manifest["weights_bytes"], manifest["options"]["fpu"], manifest["command"]
        for layer in manifest["layers"]:
            del layer["weights_bytes"]
    assert manifests[0] == manifests[1]
    integer_c, fpu_c = ((folder / "model.c").read_text() for folder in (integer, fpu))
    assert "_mult[" in integer_c and "_scale[" not in integer_c
    assert "static const float" in fpu_c and "_mult[" not in fpu_c and "_shift[" not in fpu_c
    assert fpu_c.count(".scale = ") == integer_c.count(".mult = ") == fpu_c.count(".mult = NULL")


def test_every_scale_is_the_float32_ort_multiplies_by(models, tmp_path):
    """The literals in model.c are exactly the scales prepare_requant computed (ORT's float32)."""
    model = models["int8-every"]
    compiled, _ = compile_to_folder(model, tmp_path / "out", Options(fpu=True), golden="0")
    text = (tmp_path / "out" / "model.c").read_text()
    for node in compiled.graph.nodes:
        rq = node.params.get("requant")
        if rq is None:
            continue
        literals = ",".join(c_float_literal(s) for s in rq.scale)
        assert "{" + literals + "}" in re.sub(r"\s+", "", text), node.name


def test_every_parameter_struct_names_the_fpu_header_fields(pair_of_folders, fake_libc, tmp_path):  # noqa: F811
    """test_c_struct_fields's check, with the runtime headers read under QCC_ROUNDING_ORT_FPU: the
    --fpu qcc_requant_params has the scale field, and model.c names it in the header's order."""
    _, fpu = pair_of_folders
    headers = tmp_path / "headers"
    headers.mkdir()
    (headers / "all_headers.c").write_text("".join(f'#include "{h.name}"\n' for h in sorted((REPO / "runtime_c").glob("*.h"))))
    (headers / "qcc_config.h").write_text("#define QCC_ROUNDING_ORT_FPU 1\n")
    from pycparser import c_parser

    text = preprocess(headers / "all_headers.c", fake_libc, REPO / "runtime_c", headers)
    structs = struct_typedefs(c_parser.CParser().parse(text, "all_headers.c"))
    assert [f.name for f in structs["qcc_requant_params"]][-1] == "scale"
    errors, seen = check_model_c(preprocess(fpu / "model.c", fake_libc, fpu), structs)
    assert errors == []
    assert {"qcc_conv_params", "qcc_fc_params", "qcc_global_avgpool_params", "qcc_requant_params"} <= seen


# --- refusals ---------------------------------------------------------------------------------------


def qcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcc", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


REFUSED = {
    "cortex-m0": (["--target", "cortex-m0"], "--fpu --target cortex-m0: the cortex-m0 has no FPU"),
    "cortex-m3": (["--target", "cortex-m3"], "--fpu --target cortex-m3: the cortex-m3 has no FPU"),
    "tflm": (["--rounding", "tflm"], "--fpu --rounding tflm: --fpu computes ONNX Runtime's float32 requantization"),
    "single": (["--rounding", "single", "--target", "cortex-m4"], "--fpu --rounding single:"),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("command", ["compile", "verify", "bench"])
def test_fpu_is_refused_without_an_fpu_or_outside_the_ort_scheme(models, tmp_path, command, case):
    args, message = REFUSED[case]
    out = tmp_path / "out"
    extra = ["-o", str(out)] if command == "compile" else []
    result = qcc(command, str(models["int8-every"]), *extra, "--fpu", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert not out.exists()
    if case.startswith("cortex"):
        assert "choose host, cortex-m4, cortex-m7 or cortex-m55" in result.stderr


def test_fpu_is_refused_through_the_python_api(models, tmp_path):
    for options in (Options(fpu=True, target="cortex-m0"), Options(fpu=True, rounding="tflm")):
        with pytest.raises(QccError, match="--fpu"):
            compile_to_folder(models["int8-every"], tmp_path / "out", options)
        assert not (tmp_path / "out").exists()


# --- qcc bench --------------------------------------------------------------------------------------


def test_bench_with_fpu_counts_fewer_instructions(models):
    """On the Cortex-M4 the float requantization costs fewer instructions than its integer emulation:
    fewer in the layers that requantize one value per element (Add, the global pool, each counted alone:
    --whole-tensors); the report says --fpu and gives the flags the image was built with. (The whole
    model is not compared: its
    convolutions' cost depends on the scratch the memory plan gives them and on the compiler's inlining
    across the kernels, which move either build by more than the requantization's share.)"""
    reports = {}
    for flag in ([], ["--fpu"]):
        # --whole-tensors: each layer counted alone (a streamed chain's last layer, an Add, would count the
        # chain's convolutions too)
        result = qcc("bench", str(models["int8-every"]), "--target", "cortex-m4", "--format", "json", "--whole-tensors",
                     *flag)
        assert result.returncode == 0, result.stderr
        reports[bool(flag)] = json.loads(result.stdout)
    assert reports[False]["fpu"] is False and reports[True]["fpu"] is True
    assert "-ffp-contract=off" in reports[True]["instructions"]["cflags"]
    assert "-ffp-contract=off" not in reports[False]["instructions"]["cflags"]
    layers = {build: {layer["name"]: layer for layer in report["instructions"]["layers"]} for build, report in reports.items()}
    elementwise = [name for name, layer in layers[False].items() if layer["op"] in ("QLinearAdd", "QLinearGlobalAveragePool")]
    assert len(elementwise) >= 3
    for name in elementwise:  # an Add whose outputs come from a table of codes costs the same in both
        assert layers[True][name]["instructions"] <= layers[False][name]["instructions"], name
    assert sum(layers[True][n]["instructions"] for n in elementwise) < sum(layers[False][n]["instructions"] for n in elementwise)
    text = qcc("bench", str(models["uint8-wide-fc"]), "--target", "cortex-m4", "--fpu")
    assert text.returncode == 0 and "rounding ort (--fpu: float32 requantization)" in text.stdout
