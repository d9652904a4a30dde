"""Real .tflite models, as TensorFlow's converter wrote them (tests/data/tflite/README.md): the MLPerf
Tiny reference models and TFLM's examples compile, and the C equals the reference interpreter (in the
tflm and single schemes) which equals the pinned TFLite Micro, on every output value of seeded random
and extreme inputs; `qcc verify --layers` finds every layer equal to TFLM's own tensor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import check_tflite_exact
from qcc.cli import main
from qcc.pipeline import Options, compile_model
from qcc.runtimes.tflm import PINNED_TFLM_VERSION
from test_generated_c import CORTEX_M4, STRICT, compile_for_mcu, copy_of, files_of, make, mcu_sources, soft_float_calls, tool

MODELS = Path(__file__).resolve().parent / "data" / "tflite"
REFUSED = {"streaming_float_variables.tflite"}  # by name (tests/test_state.py checks its message)
NAMES = sorted(p.name for p in MODELS.glob("*.tflite") if p.name not in REFUSED)


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


def test_inspect_shows_tflm_arena_beside_qcc(capsys):
    """TFLM's own allocations (its interpreter's, captured from a child process) beside qcc's arena, both
    counting the model's inputs and outputs; qcc's tensor bytes are below TFLM's."""
    assert main(["inspect", str(MODELS / "kws_ref_model.tflite")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{MODELS / 'kws_ref_model.tflite'}: 13 TFLite operators")
    tflm_line = next(line for line in printed.splitlines() if line.startswith("TFLM's arena"))
    ours_line = next(line for line in printed.splitlines() if line.startswith("qcc: arena"))
    tflm_total, tflm_head = (int(v) for v in re.findall(r"(\d+) bytes = tensors (\d+)", tflm_line)[0])
    ours = int(re.search(r"= (\d+) bytes", ours_line).group(1))
    assert tflm_head == 16000  # two 25x5x64 int8 maps alive at once: TFLM keeps whole tensors
    assert tflm_total > tflm_head and ours < tflm_head


def test_explain_traces_with_tflm_multipliers(capsys):
    assert main(["explain", str(MODELS / "hello_world_int8.tflite")]) == 0
    printed = capsys.readouterr().out
    assert "rounding scheme tflm" in printed and "FULLY_CONNECTED" in printed


def test_residual_adds_stream_in_tflm_arithmetic():
    """ResNet-8's blocks run a row at a time with their residual ADD (TFLM's integer ADD kernel on views of
    rows): the arena is below the bytes of whole tensors alive at once, and the C stays exact (above)."""
    compiled = compile_model(MODELS / "pretrainedResnet_quant.tflite", Options())
    streamed_ops = {stage.node.attrs.get("onnx_op") for stream in compiled.plan.streams.values()
                    for stage in stream.stages}
    assert "ADD" in streamed_ops and "CONV_2D" in streamed_ops
    assert compiled.plan.arena_bytes < compiled.plan.liveness_bytes


def test_recognised_by_its_identifier_not_its_extension(tmp_path, capsys):
    """A .tflite under another name compiles as TFLite; an ONNX file named .tflite compiles as ONNX; the
    `ort` scheme (ONNX Runtime's arithmetic) is refused for a TFLite model in one line, exit 2."""
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((MODELS / "hello_world_int8.tflite").read_bytes())
    assert main(["compile", str(renamed), "-o", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "model.json").read_text())["ground_truth"]["runtime"] == "tflite-micro"
    onnx_named_tflite = tmp_path / "example.tflite"
    onnx_named_tflite.write_bytes((MODELS.parent.parent.parent / "examples" / "cnn96_uint8.onnx").read_bytes())
    assert main(["compile", str(onnx_named_tflite), "-o", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "model.json").read_text())["ground_truth"]["runtime"] == "onnxruntime"
    capsys.readouterr()
    assert main(["compile", str(renamed), "-o", str(tmp_path / "c"), "--rounding", "ort"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rounding ort is ONNX Runtime's arithmetic" in err[0]
    assert not (tmp_path / "c").exists()
