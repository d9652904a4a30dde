"""The generated C on the microcontrollers it is for: every Cortex-M target (qcc/toolchain/targets.py) runs the
golden test of three small networks bit-exact on its QEMU board, built with -Werror; `qcc verify
--target` compares the C run on a board with ONNX Runtime; every rounding scheme's requantization
equals its Python twin on a grid of edge values on the Cortex-M0 (64-bit products from libgcc's
__aeabi_lmul) and the Cortex-M4 (SMULL/UMULL); a board too small for a model is refused by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO
from models import cnn96, quantize
from networks import NetBuilder
from qcc.commands.compile import compile_to_folder
from qcc.commands.verify import verify
from qcc.numerics import ort_float32, single_rounding, tflm
from qcc.ops.c_emitter import format_values
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain import qemu
from qcc.toolchain.targets import CODE_FLASH_BYTES, CORTEX_M, TARGETS

ARM_CFLAGS = "ARM_CFLAGS=-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --- three networks small enough for the micro:bit's 16 KiB of RAM --------------------------------


def residual_cnn(seed=0):
    """uint8 activations: Conv, depthwise Conv, a residual Add, a strided Conv, AveragePool, Gemm."""
    net = NetBuilder("residual_cnn", [1, 3, 12, 12], seed)
    x = net.conv("input", 8, 3)
    y = net.conv(net.conv(x, 8, 3, group=8), 8, 1, act=None)
    x = net.conv(net.add(x, y, act="relu"), 16, 3, stride=2)
    x = net.avgpool(x, net.shapes[x][2:])
    return net.build([net.dense(net.flatten(x), 10, act=None)])


def fire_cnn(seed=0):
    """int8 activations: Conv + Clip(0, 6), MaxPool, a fire module's Concat, GlobalAveragePool, Gemm."""
    net = NetBuilder("fire_cnn", [1, 3, 12, 12], seed)
    x = net.maxpool(net.conv("input", 8, 3, act="relu6"))
    s = net.conv(x, 4, 1)
    x = net.concat([net.conv(s, 8, 1), net.conv(s, 8, 3)])
    return net.build([net.dense(net.flatten(net.global_pool(x)), 6, act=None)])


def table_cnn(seed=0):
    """Lookup tables and Softmax: Conv + LeakyRelu, Sigmoid, GlobalAveragePool, Gemm, Softmax."""
    net = NetBuilder("table_cnn", [1, 3, 8, 8], seed)
    x = net.sigmoid(net.conv("input", 8, 3, act="leaky"))
    x = net.dense(net.flatten(net.global_pool(x)), 10, act=None)
    return net.build([net.softmax(x)])


NETWORKS = {"uint8-residual": (residual_cnn, "uint8"), "int8-fire": (fire_cnn, "int8"),
            "uint8-tables-softmax": (table_cnn, "uint8")}


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(folder), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> dict[str, tuple[Path, Path, int]]:
    """Each network quantized in QDQ form and compiled once for the smallest board (the Cortex-M0),
    which gives the folder the rules of every board: (model, folder, golden cases)."""
    built = {}
    for name, (build, activation) in NETWORKS.items():
        tmp = tmp_path_factory.mktemp(name)
        model = quantize(build(), tmp / f"{name}.onnx", quant_format="QDQ", activation=activation)
        graph = compile_model(model).graph
        cases = random_inputs(graph, 3, seed=1) + extreme_inputs(graph)
        compile_to_folder(model, tmp / "out", Options(target="cortex-m0"), golden=cases)
        built[name] = (model, tmp / "out", len(cases))
    return built


def test_networks_use_what_they_are_meant_to(networks):
    graphs = {name: compile_model(model).graph for name, (model, _, _) in networks.items()}
    ops = {name: {n.op for n in graph.nodes} for name, graph in graphs.items()}
    dtypes = {name: graph.tensor(graph.inputs[0]).dtype for name, graph in graphs.items()}
    assert dtypes == {"uint8-residual": "uint8", "int8-fire": "int8", "uint8-tables-softmax": "uint8"}
    assert {"QLinearAdd", "QLinearConv"} <= ops["uint8-residual"]
    assert {"QLinearConcat", "MaxPool"} <= ops["int8-fire"] or {"Concat", "MaxPool"} <= ops["int8-fire"]
    assert "QLinearSoftmax" in ops["uint8-tables-softmax"]
    assert ops["uint8-tables-softmax"] & {"QLinearLeakyRelu", "QLinearSigmoid", "Lookup"}


@pytest.mark.parametrize("board", CORTEX_M)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_golden_test_is_exact_on_every_board(networks, network, board):
    _, folder, cases = networks[network]
    result = make(folder, f"run-{board}", ARM_CFLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK: {cases} case(s), every output value exact" in result.stdout + result.stderr


def test_a_wrong_value_fails_on_the_board(networks, tmp_path):
    """qemu's exit status carries the golden test's verdict: one changed expected value fails the run."""
    _, folder, _ = networks["uint8-residual"]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    source = (broken / "test_model.c").read_text()
    start = source.index("case0_out_")
    first = source.index("{", start) + 1
    value = int(source[first:source.index(",", first)].strip())
    (broken / "test_model.c").write_text(source[:first] + f"\n    {value ^ 1}" + source[source.index(",", first):])
    result = make(broken, "run-cortex-m0", ARM_CFLAGS)
    assert result.returncode != 0
    assert "FAIL: 1 mismatch(es)" in result.stdout + result.stderr


def test_image_layout(networks):
    """The vectors at the flash origin, the stack bounds exported, the stack painted at reset; the
    M0 image takes 64-bit products from libgcc (no SMULL on armv6-m)."""
    _, folder, _ = networks["uint8-residual"]
    symbols = {}
    for line in subprocess.run(["arm-none-eabi-nm", str(folder / "test_model-cortex-m0.elf")], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        address, _, symbol = line.split()
        symbols[symbol] = int(address, 16)
    m0 = TARGETS["cortex-m0"]
    assert symbols["qcc_vectors"] == m0.flash.origin
    assert symbols["__qcc_stack_top"] - symbols["__qcc_stack_bottom"] == m0.stack_bytes
    assert symbols["__qcc_stack_top"] <= m0.ram.end and symbols["__qcc_heap_start"] >= m0.ram.origin
    assert "__aeabi_lmul" in symbols
    assert "QCC_STACK_PAINT" in (folder / "qcc_baremetal.h").read_text()


def test_host_folder_has_no_bare_metal_files(networks, tmp_path):
    model, _, _ = networks["uint8-residual"]
    compile_to_folder(model, tmp_path / "default", Options())
    compile_to_folder(model, tmp_path / "host", Options(target="host"))
    files = sorted(str(p.relative_to(tmp_path / "host")) for p in (tmp_path / "host").rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(tmp_path / "default")) for p in (tmp_path / "default").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "host" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()
    assert not [f for f in files if f.endswith((".ld", ".cmake")) or f.startswith(("qcc_startup", "qcc_syscalls", "qcc_semi"))]
    assert "run-" not in (tmp_path / "host" / "Makefile").read_text()
    assert "qcc_baremetal" not in (tmp_path / "host" / "CMakeLists.txt").read_text()


# --- qcc verify --target -------------------------------------------------------------------------


def test_verify_on_the_cortex_m0_equals_ort(networks):
    model, _, _ = networks["uint8-tables-softmax"]
    report = verify(str(model), Options(target="cortex-m0"), count=5)
    assert report.cases == 8 and report.ok
    for pairs in report.per_output.values():
        for pair, agreement in pairs.items():
            assert agreement.compared == 8 * 10 and agreement.exact == agreement.compared, pair
    assert "bare-metal image on QEMU's microbit" in report.table()


def test_verify_command_on_the_cortex_m4(networks):
    model, _, _ = networks["int8-fire"]
    result = subprocess.run([sys.executable, "-m", "qcc", "verify", str(model), "--target", "cortex-m4", "-n", "4"],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "C run on: cortex-m4, a bare-metal image on QEMU's mps2-an386" in result.stdout
    assert "7 input sets: C == reference == ONNX Runtime on every value" in result.stdout


# --- refusals -------------------------------------------------------------------------------------


def qcc(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "qcc", *args], capture_output=True, text=True, cwd=REPO, env=env)


def test_a_model_too_big_for_the_board_is_refused(tmp_path):
    model = quantize(cnn96(), tmp_path / "cnn96.onnx")  # a 221 KB arena
    result = qcc("compile", str(model), "-o", str(tmp_path / "out"), "--target", "cortex-m0")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "--target cortex-m0: the model needs" in result.stderr and "bytes of RAM" in result.stderr
    assert "microbit has 16384 (16 KiB)" in result.stderr
    assert not (tmp_path / "out").exists()
    # a board it fits gets its rules; the micro:bit does not
    assert qcc("compile", str(model), "-o", str(tmp_path / "m4"), "--target", "cortex-m4").returncode == 0
    makefile = (tmp_path / "m4" / "Makefile").read_text()
    assert "run-cortex-m4:" in makefile and "run-cortex-m0" not in makefile
    assert not (tmp_path / "m4" / "qcc_cortex-m0.ld").exists()


def big_fully_connected(seed=0):
    """932 KB of int8 weights: more than the Cortex-M55 board's 512 KiB ITCM."""
    net = NetBuilder("big_fully_connected", [1, 640], seed)
    x = net.dense(net.dense("input", 512), 512)
    return net.build([net.dense(x, 640, act=None)])


def test_constants_beyond_the_first_flash_region_go_to_the_next(tmp_path):
    """The Cortex-M55 board runs code from its 512 KiB ITCM; the model's largest arrays move to the 8 MiB QSPI
    flash until the rest fits, the linker script places them by name, model.json says which region holds
    what, and the golden test is exact with the weights read from there. --weights-section keeps every
    constant in the user's section (qcc does not place them): then the model does not fit, and says so."""
    model = quantize(big_fully_connected(), tmp_path / "big.onnx", quant_format="QDQ", activation="int8")
    result = qcc("compile", str(model), "-o", str(tmp_path / "out"), "--target", "cortex-m55")
    assert result.returncode == 0, result.stderr
    flash = json.loads((tmp_path / "out" / "model.json").read_text())["flash"]
    itcm, qspi = flash["regions"]
    m55 = TARGETS["cortex-m55"]
    assert (itcm["name"], qspi["name"], qspi["origin"]) == ("sse300-itcm", "QSPI", "0x28000000")
    assert itcm["model_bytes"] + itcm["test_bytes"] <= m55.flash.length - CODE_FLASH_BYTES < itcm["model_bytes"] + qspi["model_bytes"]
    assert qspi["arrays"] == ["model_gemm2_weights", "model_gemm8_weights"]  # the largest: 640 x 512 each
    run = make(tmp_path / "out", "run-cortex-m55", ARM_CFLAGS)
    assert run.returncode == 0 and "every output value exact" in run.stdout + run.stderr, run.stdout + run.stderr
    symbols = {line.split()[2]: int(line.split()[0], 16) for line in subprocess.run(
        ["arm-none-eabi-nm", str(tmp_path / "out" / "test_model-cortex-m55.elf")], capture_output=True, text=True,
        check=True).stdout.splitlines() if len(line.split()) == 3}
    region = m55.more_flash[0]
    assert all(region.origin <= symbols[name] < region.end for name in qspi["arrays"])
    assert symbols["model_gemm5_weights"] < m55.flash.end
    refused = qcc("compile", str(model), "-o", str(tmp_path / "pinned"), "--target", "cortex-m55",
                  "--weights-section", ".model_weights")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "--target cortex-m55: the model needs" in refused.stderr and "8388608 in QSPI" in refused.stderr
    assert not (tmp_path / "pinned").exists()


def test_unknown_target_and_missing_tools(networks, tmp_path):
    model, _, _ = networks["uint8-residual"]
    result = qcc("compile", str(model), "-o", str(tmp_path / "out"), "--target", "cortex-m9")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "unknown target; choose one of host, cortex-m0" in result.stderr
    bare = tmp_path / "bin"  # make only: no cross compiler, no QEMU
    bare.mkdir()
    (bare / "make").symlink_to(shutil.which("make"))
    result = qcc("verify", str(model), "--target", "cortex-m3", path=str(bare))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "arm-none-eabi-gcc not found" in result.stderr and "gcc-arm-none-eabi" in result.stderr
    (bare / "arm-none-eabi-gcc").symlink_to(shutil.which("arm-none-eabi-gcc"))
    result = qcc("verify", str(model), "--target", "cortex-m3", path=str(bare))
    assert result.returncode == 2 and "qemu-system-arm not found" in result.stderr
    assert "apt-get install qemu-system-arm" in result.stderr


# --- requantization on the M0 and the M4 against the Python twins -----------------------------------


def accumulators(rng) -> list[int]:
    """int32's ends, 2^24 (where f32(acc) stops being exact) and its neighbours, small values, random."""
    edges = [INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1, 0, 1, -1, 2, -2, 3, -3, 127, -128, 255, -255]
    edges += [s * (2**24 + d) for s in (1, -1) for d in (-1, 0, 1, 2, 3)]
    edges += [s * 2**k for s in (1, -1) for k in (16, 20, 25, 28, 30)]
    drawn = rng.integers(INT32_MIN, INT32_MAX, 12, endpoint=True).tolist() + rng.integers(-2**20, 2**20, 8).tolist()
    return edges + drawn


def ties(mult: int, total_shift: int, odd: list[int]) -> list[int]:
    """Accumulators with acc * mult == odd * 2^(total_shift - 1): exact halves before the final rounding."""
    if mult == 0 or total_shift < 1:
        return []
    zeros = (mult & -mult).bit_length() - 1
    k = total_shift - 1 - zeros
    return [o << k for o in odd if k >= 0 and INT32_MIN <= o << k <= INT32_MAX]


def grid(scheme: str, rng) -> tuple[list[int], list[tuple[int, int]], list[list[int]]]:
    """(accumulators, (multiplier, shift) pairs, per pair the accumulators of its exact ties): every shift the
    scheme allows, each with the smallest, largest and odd multipliers."""
    if scheme == "ort":  # 24-bit float32 significands (subnormal scales give smaller ones), shift 15..57
        shifts = range(15, 58)
        mults = lambda: [2**23, 2**24 - 1, 2**23 + 1, int(rng.integers(2**23, 2**24)) | 1, 12345]  # noqa: E731
        total = lambda s: s  # noqa: E731
    elif scheme == "tflm":  # Q31 multipliers in [2^30, 2^31), exponent -31..31 (qcc clamps it to 31)
        shifts = range(-31, 32)
        mults = lambda: [2**30, 2**31 - 1, int(rng.integers(2**30, 2**31)) | 1, 0]  # noqa: E731
        total = lambda s: 31 - s if s <= 0 else 31  # SRDHM's own rounding at 2^31, then RDBPOT  # noqa: E731
    else:  # single: exponent -31..30
        shifts = range(-31, 31)
        mults = lambda: [2**30, 2**31 - 1, int(rng.integers(2**30, 2**31)) | 1]  # noqa: E731
        total = lambda s: 31 - s  # noqa: E731
    pairs = [(m, s) for s in shifts for m in mults()]
    odd = [1, -1, 3, -3, 2 * int(rng.integers(1, 1000)) + 1]
    return accumulators(rng), pairs, [ties(m, total(s), odd) for m, s in pairs]


TWINS = {"ort": ort_float32, "tflm": tflm, "single": single_rounding}
CALLS = {"ort": "qcc_requantize_ort(acc, mult, shift, lo, hi, exact)", "tflm": "qcc_requantize_tflm(acc, mult, shift, lo, hi)",
         "single": "qcc_requantize_single(acc, mult, shift, lo, hi)"}
# Clamp bounds (lo, hi): none (the raw arithmetic), an int8 output, a uint8 output with zero point 255.
CLAMPS = [(INT32_MIN, INT32_MAX), (-128, 127), (-255, 0)]


def c_array(ctype: str, name: str, values) -> str:
    values = np.asarray(values, dtype=np.int64).ravel()
    literal = format_values(values).replace("-2147483648", "INT32_MIN")  # the literal 2147483648 is not an int
    return f"static const {ctype} {name}[{max(len(values), 1)}] = {{\n    {literal or '0'}\n}};"


def harness(rng) -> tuple[str, int]:
    """The C program and the number of values it compares. Each scheme: every (multiplier, shift) pair
    against every accumulator, clamp (pair + accumulator) % 3, then each pair's exact ties unclamped;
    expected values from the Python twin. `ort` also through its |acc| <= 2^24 shortcut."""
    parts = ["#include <stdint.h>", "#include <stdio.h>", '#include "qcc_requant_ort.h"', '#include "qcc_requant_tflm.h"',
             '#include "qcc_requant_single.h"', "",
             c_array("int32_t", "clamp_lo", [lo for lo, _ in CLAMPS]), c_array("int32_t", "clamp_hi", [hi for _, hi in CLAMPS])]
    body, compared = [], 0
    for scheme, twin in TWINS.items():
        accs, pairs, tie_accs = grid(scheme, rng)
        mults, shifts = np.array([m for m, _ in pairs]), np.array([s for _, s in pairs])
        clamp = (np.arange(len(pairs))[:, None] + np.arange(len(accs))[None, :]) % len(CLAMPS)
        lo, hi = np.array(CLAMPS)[clamp, 0], np.array(CLAMPS)[clamp, 1]
        expected = twin.requantize(np.array(accs)[None, :], mults[:, None], shifts[:, None], lo, hi)
        tie_pair = [p for p, extra in enumerate(tie_accs) for _ in extra]
        tie_acc = [a for extra in tie_accs for a in extra]
        tie_expected = twin.requantize(np.array(tie_acc), mults[tie_pair], shifts[tie_pair], *CLAMPS[0])
        parts += [c_array("int32_t", f"{scheme}_acc", accs), c_array("uint32_t", f"{scheme}_mult", mults),
                  c_array("int8_t", f"{scheme}_shift", shifts), c_array("int32_t", f"{scheme}_expected", expected),
                  c_array("int32_t", f"{scheme}_tie_acc", tie_acc), c_array("int16_t", f"{scheme}_tie_pair", tie_pair),
                  c_array("int32_t", f"{scheme}_tie_expected", tie_expected)]
        shortcut = "acc >= -(INT32_C(1) << 24) && acc <= (INT32_C(1) << 24)" if scheme == "ort" else "0"
        check = f"""            for (exact = 0; exact <= ({shortcut}); ++exact) {{
                const int32_t got = {CALLS[scheme]};
                ++compared;
                if (got != want && failures++ < 10) {{
                    printf("{scheme} acc %ld mult %lu shift %d lo %ld hi %ld exact %d: expected %ld, got %ld\\n", (long)acc,
                           (unsigned long)mult, shift, (long)lo, (long)hi, exact, (long)want, (long)got);
                }}
            }}"""
        body.append(f"""    for (p = 0; p < {len(pairs)}L; ++p) {{
        for (a = 0; a < {len(accs)}L; ++a) {{
            const int32_t acc = {scheme}_acc[a], lo = clamp_lo[(p + a) % 3], hi = clamp_hi[(p + a) % 3];
            const uint32_t mult = {scheme}_mult[p];
            const int shift = {scheme}_shift[p];
            const int32_t want = {scheme}_expected[p * {len(accs)}L + a];
            int exact;
{check}
        }}
    }}
    for (t = 0; t < {len(tie_acc)}L; ++t) {{
        {{
            const int32_t acc = {scheme}_tie_acc[t], lo = INT32_MIN, hi = INT32_MAX;
            const uint32_t mult = {scheme}_mult[{scheme}_tie_pair[t]];
            const int shift = {scheme}_shift[{scheme}_tie_pair[t]];
            const int32_t want = {scheme}_tie_expected[t];
            int exact;
{check}
        }}
    }}""")
        all_accs = np.concatenate([np.repeat(np.array(accs)[None, :], len(pairs), 0).ravel(), np.array(tie_acc, np.int64)])
        compared += len(all_accs) + (int(np.sum(np.abs(all_accs) <= 2**24)) if scheme == "ort" else 0)
    parts += ["int main(void)", "{", "    long p, a, t, compared = 0, failures = 0;", *body,
              '    printf("compared %ld, failures %ld\\n", compared, failures);', "    return failures != 0;", "}", ""]
    return "\n".join(parts), compared


@pytest.mark.parametrize("board", ["cortex-m0", "cortex-m4"])
def test_requantization_equals_the_python_twins_on_the_board(networks, tmp_path, board):
    _, folder, _ = networks["uint8-residual"]
    work = tmp_path / "grid"
    shutil.copytree(folder, work)  # its Makefile builds any %.c as a bare-metal image for each board
    source, compared = harness(np.random.default_rng(7))
    (work / "requant_grid.c").write_text(source)
    image = f"requant_grid-{board}.elf"
    result = make(work, image, ARM_CFLAGS)
    assert result.returncode == 0, result.stderr
    run = qemu.run_elf(work / image, TARGETS[board], timeout=120)
    assert run.status == 0, run.console[-3000:]
    assert f"compared {compared}, failures 0" in run.console
    assert compared > 20000
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(work / image)], capture_output=True, text=True,
                                 check=True).stdout
    if board == "cortex-m0":  # armv6-m has no 32x32->64 multiply: libgcc's routine does every product
        assert "<__aeabi_lmul>:" in disassembly and "smull" not in disassembly and "umull" not in disassembly
    else:
        assert "smull" in disassembly or "umull" in disassembly


# The 16x8 and LSTM kernels have DSP paths (SMLALD, SMLAD with SXTB16) that only the Cortex-M4 and up run:
# a converter-written 16x8 model, TFLM's LSTM example and a time-major two-row LSTM with an odd unit count
# (the LSTM's matrix pairs rows) on a board without and one with the DSP extension, frames as consecutive calls.
def sixteen_and_lstm_models(tmp_path: Path) -> dict[str, Path]:
    from test_tflite_lstm import lstm_model

    odd = tmp_path / "lstm_odd.tflite"
    odd.write_bytes(lstm_model(time_major=True, batch=2, units=7, features=5, seed=3))
    data = REPO / "tests" / "data" / "tflite"
    return {"16x8": data / "net_16x8_int16_io.tflite", "mnist_lstm": data / "mnist_lstm_int8.tflite", "odd": odd}


@pytest.mark.parametrize("board", ["cortex-m3", "cortex-m4"])
def test_the_16x8_and_lstm_kernels_are_exact_on_the_board(tmp_path, board):
    for name, model in sixteen_and_lstm_models(tmp_path).items():
        graph = compile_model(model).graph
        cases = random_inputs(graph, 2, seed=5) + extreme_inputs(graph)
        folder = tmp_path / name
        compile_to_folder(model, folder, Options(target=board), golden=cases)
        result = make(folder, f"run-{board}", ARM_CFLAGS)
        assert result.returncode == 0, result.stdout + result.stderr
        runs = len(cases) * (2 if graph.states else 1)  # a model with state: the frames, then again after a reset
        assert f"OK: {runs} case(s), every output value exact" in result.stdout + result.stderr, name
