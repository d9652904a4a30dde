"""Two models in one bare-metal image (examples/firmware): compiled with --name kws and --name vww
and the same rounding scheme, linked with one copy of the runtime for the Cortex-M4, their
constants and arenas in the sections --weights-section / --arena-section name, both bit-exact on
QEMU. Also: a folder of another rounding scheme is refused, and so is a bad section name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from models import quantize
from qcc import reference
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options
from qcc.sample_inputs import random_inputs
from qcc.toolchain.targets import TARGETS
from test_targets import fire_cnn, table_cnn

FIRMWARE = REPO / "examples" / "firmware"
ARM_CFLAGS = "ARM_CFLAGS=-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror"
SECTIONS = {"weights_section": ".model_weights", "arena_section": ".model_arena"}  # what sections.ld places
# name -> (network, activation, output C type): uint8 with tables and Softmax, int8 with Concat and MaxPool,
# so the image needs runtime sources that only one of the two folders has
MODELS = {"kws": (table_cnn, "uint8", "uint8_t"), "vww": (fire_cnn, "int8", "int8_t")}


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(FIRMWARE), *args], capture_output=True, text=True)


def nm(path: Path, *flags: str) -> list[tuple[int, str, str]]:
    """(address, type, name) of every symbol nm lists."""
    out = subprocess.run(["arm-none-eabi-nm", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return [(int(a, 16), t, n) for a, t, n in (line.split() for line in out.splitlines() if len(line.split()) == 3)]


def compile_models(tmp: Path, rounding: dict[str, str] | None = None) -> tuple[list[str], dict[str, tuple]]:
    """Compile each model for the Cortex-M4 with its input as its one golden case; returns the
    make arguments that build the firmware of all of them, and name -> (folder, input, output)."""
    args, built, lines = [], {}, []
    for name, (network, activation, out_ctype) in MODELS.items():
        model = quantize(network(), tmp / f"{name}.onnx", quant_format="QDQ", activation=activation)
        options = Options(name=name, target="cortex-m4", rounding=(rounding or {}).get(name, "ort"), **SECTIONS)
        compiled, manifest = compile_to_folder(model, tmp / name, options, golden=[])
        (x,) = random_inputs(compiled.graph, 1, seed=3)[0]
        (expected,) = reference.run(compiled.graph, [x])
        (tmp / f"{name}.bin").write_bytes(x.tobytes())
        (inp,), (out,) = manifest["inputs"], manifest["outputs"]
        lines.append(f"MODEL({name}, {name.upper()}_INPUT_{inp['c_name'].upper()}_COUNT, {out_ctype}, "
                     f"{name.upper()}_OUTPUT_{out['c_name'].upper()}_COUNT)")
        args.append(f"INPUT_{name}={tmp / f'{name}.bin'}")
        built[name] = (tmp / name, manifest, expected)
    (tmp / "models.def").write_text("\n".join(lines) + "\n")
    args += [f"MODELS={' '.join(str(tmp / n) for n in MODELS)}", f"FIRMWARE_MODELS={tmp / 'models.def'}",
             f"BUILD={tmp / 'build'}", ARM_CFLAGS]
    return args, built


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("firmware")
    args, built = compile_models(tmp)
    result = make("run", *args)
    return tmp / "build", built, result


def test_both_models_are_exact_on_qemu(firmware):
    build, built, result = firmware
    assert result.returncode == 0, result.stdout + result.stderr
    for name, (_, _, expected) in built.items():
        line = re.search(rf"^{name}:(.*)$", result.stdout + result.stderr, re.M)
        assert line, result.stdout + result.stderr
        assert [int(v) for v in line.group(1).split()] == expected.reshape(-1).tolist()


def test_the_runtime_is_linked_once_and_every_symbol_is_prefixed(firmware):
    build, built, result = firmware
    assert result.returncode == 0, result.stdout + result.stderr
    # qcc_syscalls.o excepted: it defines what newlib calls by name (_write, _sbrk, ...)
    runtime = sorted(p for p in build.glob("qcc_*.o") if p.name != "qcc_syscalls.o")
    # one object per runtime source, though both folders hold qcc_kernels.c
    assert {p.name for p in runtime} >= {"qcc_kernels.o", "qcc_lookup.o", "qcc_softmax.o", "qcc_data_movement.o"}
    for path in runtime:
        assert [n for _, t, n in nm(path, "-g", "--defined-only") if not n.startswith("qcc_")] == [], path
    for name in built:
        symbols = nm(build / f"{name}.o", "--defined-only")
        assert [n for _, t, n in symbols if t.isupper()] == [f"{name}_run"]
        assert [n for _, t, n in symbols if not n.startswith(f"{name}_")] == []
        assert f"{name}_arena" in {n for _, _, n in symbols}
    image = {n for _, _, n in nm(build / "firmware.elf")}
    assert {"kws_run", "vww_run", "kws_conv2_weights", "vww_conv2_weights"} <= image
    assert "conv2_weights" not in image


def test_weights_and_arenas_are_in_their_sections(firmware):
    build, built, result = firmware
    assert result.returncode == 0, result.stdout + result.stderr
    headers = subprocess.run(["arm-none-eabi-objdump", "-h", str(build / "firmware.elf")], capture_output=True,
                             text=True, check=True).stdout
    sections = {m[1]: (int(m[3], 16), int(m[2], 16))  # name -> (address, size)
                for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)", headers, re.M)}
    board = TARGETS["cortex-m4"]
    weights, arena = sections[".model_weights"], sections[".model_arena"]
    assert board.flash.origin <= weights[0] and weights[0] + weights[1] <= board.flash.end
    assert board.ram.origin <= arena[0] and arena[0] + arena[1] <= board.ram.end
    assert weights[1] >= sum(m["weights_bytes"] for _, m, _ in built.values())
    assert arena[1] >= sum(m["arena_bytes"] for _, m, _ in built.values())
    # every data symbol of each model's object: its arena in the arena's section, its constants in the weights'
    image = {n: a for a, _, n in nm(build / "firmware.elf")}
    for name in built:
        data = [n for _, t, n in nm(build / f"{name}.o", "--defined-only") if t.lower() in "bdr"]
        assert len(data) > 5
        for symbol in data:
            where = arena if symbol == f"{name}_arena" else weights
            assert where[0] <= image[symbol] < where[0] + where[1], symbol
    for name in ("kws_input", "main"):  # the firmware's own data and code stay where qcc's script puts them
        address = next(a for a, _, n in nm(build / "firmware.elf") if n == name)
        assert not weights[0] <= address < weights[0] + weights[1]


def test_folders_of_two_rounding_schemes_are_refused(tmp_path):
    args, _ = compile_models(tmp_path, rounding={"vww": "tflm"})
    result = make(*args)
    assert result.returncode != 0
    assert "different rounding schemes" in result.stderr and "--rounding" in result.stderr
    assert not (tmp_path / "build" / "firmware.elf").exists()


def qcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcc", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("flags", [["--weights-section", '.w");int x;("'], ["--arena-section", "9arena"],
                                   ["--arena-section", "." + "a" * 64], ["--weights-section", ".s", "--arena-section", ".s"]])
def test_a_bad_section_name_is_one_line_and_exit_2(tmp_path, flags):
    result = qcc("compile", str(REPO / "examples" / "cnn96_uint8.onnx"), "-o", str(tmp_path / "out"), *flags)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("qcc: error: --")
    assert not (tmp_path / "out").exists()


def test_sections_are_absent_by_default(tmp_path):
    plain = qcc("compile", str(REPO / "examples" / "cnn96_uint8.onnx"), "-o", str(tmp_path / "plain"), "--golden", "1")
    placed = qcc("compile", str(REPO / "examples" / "cnn96_uint8.onnx"), "-o", str(tmp_path / "placed"), "--golden",
                 "1", "--weights-section", ".w", "--arena-section", ".a")
    assert plain.returncode == 0 and placed.returncode == 0, plain.stderr + placed.stderr
    assert "__attribute__" not in (tmp_path / "plain" / "model.c").read_text()
    assert "sections" not in (tmp_path / "plain" / "model.json").read_text()
    text = (tmp_path / "placed" / "model.c").read_text()
    # every constant declaration names the weights section, and the arena its own
    declarations = re.findall(r"^static const [^=]*=", text, re.M)
    assert declarations and all('__attribute__((section(".w")))' in d for d in declarations)
    assert re.search(r'\} model_arena __attribute__\(\(section\("\.a"\)\)\);', text)
    assert '"sections": {\n    "weights": ".w",\n    "arena": ".a"\n  }' in (tmp_path / "placed" / "model.json").read_text()
