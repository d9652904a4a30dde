"""--outputs / --inputs: compiling the integer part of a model whose ends ORT runs in float (a
detector's box decoding, a float pre-processing), and the refusal that says where to cut."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qdq_builder import QdqGraph
from qcc.commands.verify import verify
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model


def detector(tmp_path: Path) -> tuple[str, dict]:
    """A QDQ backbone with two heads: class scores quantized to the end (an integer output), box
    offsets decoded in float (Exp, then Mul by anchors), as detectors end."""
    g = QdqGraph(13, seed=4)
    x = g.qdq(g.input("image", [1, 3, 8, 8]), 0.02, 128)
    feat = g.qdq(g.node("Conv", [x, g.weights((8, 3, 3, 3), 0.01)], name="backbone", pads=[1, 1, 1, 1]), 0.04, 110)
    scores = g.node("Conv", [feat, g.weights((4, 8, 1, 1), 0.02)], name="class_head")
    g.output(g.dequantize(g.quantize(scores, 0.05, 100), 0.05, 100), "scores")
    box_codes = g.quantize(g.node("Conv", [feat, g.weights((4, 8, 1, 1), 0.02)], name="box_head"), 0.03, 128)
    box_real = g.dequantize(box_codes, 0.03, 128)
    decoded = g.node("Mul", [g.node("Exp", [box_real], name="decode_exp"),
                             g.const(g.rng.uniform(8, 32, (1, 4, 1, 1)).astype(np.float32))], name="decode_anchors")
    g.output(decoded, "boxes")
    path = tmp_path / "detector.onnx"
    path.write_bytes(g.model().SerializeToString())
    return str(path), {"box_codes": box_codes, "box_real": box_real}


def test_a_float_tail_is_refused_with_the_tensors_to_cut_at(tmp_path):
    path, names = detector(tmp_path)
    with pytest.raises(QccError, match=r"node 'decode_exp' \(Exp\) computes in float here") as info:
        compile_model(path, Options())
    assert str(info.value).endswith(f"cut there: --outputs scores,{names['box_codes']}")


@pytest.mark.parametrize("box", ["box_codes", "box_real"])
def test_the_integer_part_compiles_and_equals_ort_on_the_whole_model(tmp_path, box):
    path, names = detector(tmp_path)
    options = Options(cut_outputs=["scores", names[box]])
    compiled = compile_model(path, options)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv", "QLinearConv", "QLinearConv"]
    box_out = compiled.graph.tensor(compiled.graph.outputs[1])
    assert box_out.dtype == "uint8" and box_out.quant.scalar() == (np.float32(0.03), 128)
    left_out = {"box_codes": "left out 3 node(s) (DequantizeLinear, Exp, Mul)", "box_real": "left out 2 node(s) (Exp, Mul)"}
    assert compiled.cut_summary.endswith(left_out[box] + " for the application to run")
    report = verify(path, options, count=4, layers=True)
    assert report.ok, report.table()
    for pairs in report.per_output.values():  # the cut tensors equal ORT's in the whole model, too
        whole = pairs["C vs ORT, whole model"]
        assert whole.compared > 0 and whole.exact == whole.compared
    assert report.layers.first_divergence().startswith("no divergence")


def test_cli_reports_the_cut_and_the_manifest_records_it(tmp_path):
    path, names = detector(tmp_path)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "qcc.cli", "compile", path, "-o", str(out), "--outputs",
                          f"scores,{names['box_codes']}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("qcc: compiled the part from 'image' to 'scores', ") and "(DequantizeLinear, Exp, Mul)" in run.stdout
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["cut"]["outputs"] == ["scores", names["box_codes"]]
    assert [o["name"] for o in manifest["outputs"]] == ["scores", names["box_codes"]]
    assert manifest["outputs"][1]["scale"] == pytest.approx(0.03) and manifest["outputs"][1]["zero_point"] == 128
    assert subprocess.run(["make", "-s", "-C", str(out), "check"], capture_output=True).returncode == 0


@pytest.mark.parametrize("outputs, message", [
    ("nothing_called_this", r"--outputs names 'nothing_called_this', which is no tensor computed by the model"),
    ("box_head", r"--outputs names 'box_head', a float tensor that Conv computes; the C returns codes: cut at its "
                 r"QuantizeLinear's output"),
    (",", r"give tensor names separated by commas"),
])
def test_bad_cuts_get_one_line(tmp_path, outputs, message):
    path, _ = detector(tmp_path)
    run = subprocess.run([sys.executable, "-m", "qcc.cli", "compile", path, "-o", str(tmp_path / "o"), "--outputs", outputs],
                         capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert re.search(message, run.stderr) and not (tmp_path / "o").exists()


def test_inputs_cut_off_a_float_preprocessing(tmp_path):
    """image -> Sub(mean) -> Div(std) -> Q -> DQ -> Conv: the normalization stays with the
    application; the C takes the codes of its result."""
    g = QdqGraph(13, seed=6)
    x = g.input("image", [1, 3, 6, 6])
    normalized = g.node("Div", [g.node("Sub", [x, g.const(np.float32(0.5))], name="mean"), g.const(np.float32(0.25))],
                        name="std")
    y = g.node("Conv", [g.qdq(normalized, 0.02, 128), g.weights((4, 3, 3, 3), 0.01)], name="conv")
    g.output(g.dequantize(g.quantize(y, 0.05, 100), 0.05, 100))
    path = tmp_path / "prep.onnx"
    path.write_bytes(g.model().SerializeToString())
    with pytest.raises(QccError):
        compile_model(path, Options())
    options = Options(cut_inputs=["std"])
    compiled = compile_model(path, options)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"] and compiled.graph.public_name(compiled.graph.inputs[0]) == "std"
    assert verify(str(path), options, count=3).ok
