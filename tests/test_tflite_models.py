"""Real .tflite models, as TensorFlow's converter wrote them (tests/data/tflite/README.md): the MLPerf
Tiny reference models and TFLM's examples compile, and the C equals the reference interpreter (in the
tflm and single schemes) which equals the pinned TFLite Micro, on every output value of seeded random
and extreme inputs; `qcc verify --layers` finds every layer equal to TFLM's own tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import check_tflite_exact
from qcc.cli import main
from qcc.runtimes.tflm import PINNED_TFLM_VERSION
from test_generated_c import CORTEX_M4, STRICT, compile_for_mcu, copy_of, files_of, make, mcu_sources, soft_float_calls, tool

MODELS = Path(__file__).resolve().parent / "data" / "tflite"
NAMES = sorted(p.name for p in MODELS.glob("*.tflite"))


def test_the_models_are_there():
    assert {"kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite",
            "person_detect.tflite", "micro_speech_quantized.tflite", "hello_world_int8.tflite"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_exact_to_tflm(name, tmp_path):
    compiled = check_tflite_exact(MODELS / name, tmp_path, n_random=3)
    assert compiled.graph.frontend == "tflite"


@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_verify_layers(name, capsys):
    """Every layer's output (TFLM's own tensors, read back from its interpreter) equals the reference and the C."""
    assert main(["verify", str(MODELS / name), "-n", "2", "--layers"]) == 0
    printed = capsys.readouterr().out
    assert "C == reference == TFLite Micro on every value" in printed
    assert "ref = TFLM" in printed and "no divergence" in printed


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resnet") / "out"
    assert main(["compile", str(MODELS / "pretrainedResnet_quant.tflite"), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_builds_strictly_with_host_compilers(resnet_folder, tmp_path, cc):
    folder = copy_of(resnet_folder, tmp_path)
    result = make(folder, "check", f"CC={tool(cc)}", "CFLAGS=" + " ".join(STRICT + ["-O2"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every output value exact" in result.stdout


def test_compiles_for_cortex_m4_without_float(resnet_folder, tmp_path):
    objects = compile_for_mcu(mcu_sources(resnet_folder), CORTEX_M4, tmp_path)
    assert soft_float_calls(objects) == set()


def test_compiling_twice_gives_identical_files(resnet_folder, tmp_path):
    again = tmp_path / "again"
    assert main(["compile", str(MODELS / "pretrainedResnet_quant.tflite"), "-o", str(again)]) == 0
    assert files_of(again) == files_of(resnet_folder)


def test_manifest_names_the_tflm_build(resnet_folder):
    manifest = json.loads((resnet_folder / "model.json").read_text())
    assert manifest["ground_truth"] == {"runtime": "tflite-micro", "version": PINNED_TFLM_VERSION}
    assert manifest["rounding"] == "tflm"
    # the C's I/O is the model's own: channels-last int8 input, its scale and zero point
    assert manifest["inputs"][0]["shape"] == [1, 32, 32, 3] and manifest["inputs"][0]["dtype"] == "int8"
    assert manifest["outputs"][0]["shape"] == [1, 10]
