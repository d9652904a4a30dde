"""Real .tflite models, as TensorFlow's converter wrote them (tests/data/tflite/README.md): the MLPerf
Tiny reference models and TFLM's examples compile, and the C equals the reference interpreter (in the
tflm and single schemes) which equals the pinned TFLite Micro, on every output value of seeded random
and extreme inputs; `qcc verify --layers` finds every layer equal to TFLM's own tensor."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import check_tflite_exact
from qcc.cli import main

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
