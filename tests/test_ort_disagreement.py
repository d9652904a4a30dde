"""`qcc verify` when ONNX Runtime disagrees with itself (issue 25, point 5): where the C equals the reference
on every value but not ORT's ground truth configuration, verify runs ORT's other configurations on the same
input sets; if the ground truth differs from one of them and the C equals it, the report says so (which
configurations, which outputs, how many values), exits non-zero all the same, writes a folder that
reproduces it with ORT alone, and the layer comparison names the layer where ORT's configurations part.

The issue's layer is a depthwise convolution with kernel 5x1, pads [3, 0, 5, 0] and dilations [2, 3]. On
the hosts this suite runs on, ORT's int8 path for it (QLinearConv<int8_t>: an indirection buffer, then
MlasConvDepthwise and MlasRequantizeOutput) computes the ONNX spec's arithmetic exactly (checked below
against a brute-force convolution of the codes), and so does its default configuration's uint8 path
(MlasConvSymDepthwise), so ORT agrees with itself there. To hold verify's behaviour anyway, the tests
give it a ground truth that really disagrees with another of ORT's configurations: ORT with its default
settings (session.qdqisint8allowed=0) as the ground truth, on an int8 model whose AveragePool ORT then
runs in float, whereas with the entry it runs its QLinearAveragePool kernel, which the C reproduces
(docs/SEMANTICS.md, "When ONNX Runtime disagrees with itself")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from onnx import numpy_helper

from qdq_builder import QdqGraph
from qcc.cli import main
from qcc.commands.verify import verify
from qcc.pipeline import Options
from qcc.runtimes import ort as ort_reference

DEPTHWISE = {"kernel_shape": [5, 1], "pads": [3, 0, 5, 0], "dilations": [2, 3]}


def dilated_depthwise_pool(tmp_path: Path) -> str:
    """int8 QDQ: the issue's depthwise convolution (16 channels, per-channel weights), then an AveragePool."""
    g = QdqGraph(13, seed=5)
    x = g.qdq(g.input("x", [1, 16, 12, 3]), 0.05, 3, np.int8)
    w = g.weights((16, 1, 5, 1), 0.01, axis=0)
    y = g.qdq(g.node("Conv", [x, w], name="depthwise", group=16, **DEPTHWISE), 0.02, -5, np.int8)
    y = g.node("AveragePool", [y], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    g.output(g.dequantize(g.quantize(y, 0.05, 3, np.int8), 0.05, 3, np.int8))
    path = tmp_path / "dilated_depthwise_pool.onnx"
    path.write_bytes(g.model().SerializeToString())
    return str(path)


@pytest.fixture
def defaults_as_ground_truth(monkeypatch):
    """ORT's default settings in place of the ground truth's session.qdqisint8allowed=1."""
    monkeypatch.setattr(ort_reference, "GROUND_TRUTH_ENTRIES", {ort_reference.QDQ_IS_INT8_ALLOWED: "0"})


def test_a_normal_model_verifies_as_before(tmp_path, capsys):
    model = dilated_depthwise_pool(tmp_path)
    assert main(["verify", model, "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "C == reference == ONNX Runtime on every value" in out and "DISAGREES" not in out
    assert "ORT defaults" not in out  # ORT's other configurations run only where the C and ORT part
    assert not (tmp_path / "dilated_depthwise_pool.ort-disagreement").exists()


def test_ort_disagreeing_with_itself_is_not_a_c_mismatch(tmp_path, capsys, defaults_as_ground_truth):
    model = dilated_depthwise_pool(tmp_path)
    assert main(["verify", model, "-n", "3"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" not in out
    verdict = next(line for line in out.splitlines() if line.startswith("6 input sets: "))
    assert "ONNX RUNTIME DISAGREES WITH ITSELF, not a C mismatch" in verdict and "ORT extended" in verdict
    said = next(line for line in out.splitlines()
                if line.startswith("ONNX Runtime disagrees with itself on output 'y'"))
    assert "the ground truth configuration (session.qdqisint8allowed=0" in said
    assert "differs from ORT extended in" in said and "the C equals ORT extended on every value" in said
    folder = tmp_path / "dilated_depthwise_pool.ort-disagreement"
    assert f"reproducer: {folder} (model.onnx, inputs.npz (input set" in out
    # the layer comparison runs by itself and names the layer where ORT's configurations part
    assert "ORT = ORT extended" in out
    assert "first divergence: layer 1 'pool' (QLinearAveragePool)" in out and "ORT's configurations disagree" in out


def test_the_report_holds_the_numbers(tmp_path, defaults_as_ground_truth):
    report = verify(dilated_depthwise_pool(tmp_path), Options(), count=3)
    assert not report.ok
    found = report.ort_disagreement
    assert found is not None and found.confirmed and found.mismatched == ["y"]
    assert set(found.configurations) == {"ORT defaults", "ORT extended", "ORT opt. off"}
    assert found.c_equals("y") == ["ORT extended"]
    assert found.c_vs["y"]["ORT extended"].all_exact and not found.truth_vs["y"]["ORT extended"].all_exact
    assert found.truth_vs["y"]["ORT defaults"].all_exact  # the ground truth here is ORT's defaults
    c_vs_truth = report.per_output["y"]["C vs ORT"]
    assert c_vs_truth.compared - c_vs_truth.exact == (found.truth_vs["y"]["ORT extended"].compared
                                                      - found.truth_vs["y"]["ORT extended"].exact)
    assert report.per_output["y"]["C vs ORT extended"].all_exact
    # With the depthwise output as an extra graph output ORT's final outputs change (so all layers at once agree
    # with the C: the issue's "--layers finds no diverging layer"); read alone, the pool's output is ORT's own.
    rows = {row.node: row for row in report.layers.layers}
    assert report.layers.ort_outputs_changed and rows["depthwise"].ort is None
    assert not rows["pool"].ort.all_exact and not rows["pool"].other.all_exact
    assert report.layers.case == found.case


def test_the_reproducer_shows_it_with_ort_alone(tmp_path, defaults_as_ground_truth):
    report = verify(dilated_depthwise_pool(tmp_path), Options(), count=3)
    folder = Path(report.ort_disagreement.reproducer)
    assert folder == tmp_path / "dilated_depthwise_pool.ort-disagreement"
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "inputs.npz", "outputs.npz", "configurations.json",
                                                  "reproduce.py"}
    configurations = json.loads((folder / "configurations.json").read_text())
    assert configurations["ground truth"]["session_config_entries"][ort_reference.QDQ_IS_INT8_ALLOWED] == "0"
    feeds = dict(np.load(folder / "inputs.npz"))
    results = {}
    for name in ("ground truth", "ORT extended"):
        settings = configurations[name]
        options = onnxruntime.SessionOptions()
        level = settings["graph_optimization_level"]
        options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
        for key, value in settings["session_config_entries"].items():
            options.add_session_config_entry(key, value)
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=settings["providers"])
        results[name] = session.run(None, feeds)[0]
    assert not np.array_equal(results["ground truth"], results["ORT extended"])
    with np.load(folder / "outputs.npz") as outputs:  # what verify saw, as codes: the C's are those of ORT extended
        codes = {name: (np.rint(value / np.float32(0.05)) + 3).astype(np.int8) for name, value in results.items()}
        assert np.array_equal(outputs["ground truth/y"], codes["ground truth"])
        assert np.array_equal(outputs["ORT extended/y"], codes["ORT extended"])
        assert np.array_equal(outputs["C/y"], codes["ORT extended"])
    run = subprocess.run([sys.executable, str(folder / "reproduce.py")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "y: ground truth vs ORT extended: " in run.stdout and "y: ground truth vs ORT defaults: 0 of" in run.stdout


def test_ort_s_int8_kernel_computes_the_spec_on_the_issue_s_depthwise_layer():
    """The evidence behind docs/SEMANTICS.md: on this host, ORT's ground truth on the dilated, asymmetrically
    padded depthwise convolution (int8, 128 channels as in the streaming wake-word model: MlasConvDepthwise on
    int8 codes, x86 having no symmetric int8 x int8 convolution kernel) equals a brute-force convolution of the
    codes with ORT's requantization; so does ORT without its layout optimizations, and its other configurations
    are at most 1 LSB away (float32 sums rounded near a half, where ORT runs the layer in float)."""
    g = QdqGraph(13, seed=11)
    channels, height, width = 128, 28, 1
    x = g.qdq(g.input("x", [1, channels, height, width]), 0.05, -128, np.int8)
    w = g.weights((channels, 1, 5, 1), 0.01, axis=0)
    y = g.node("Conv", [x, w], name="depthwise", group=channels, **DEPTHWISE)
    g.output(g.quantize(y, 0.03, 7, np.int8), "y")
    model = g.model()
    inits = {i.name: i for i in model.graph.initializer}
    weight_dq = next(n for n in model.graph.node if n.output[0] == w)
    codes = numpy_helper.to_array(inits[weight_dq.input[0]]).astype(np.int64)
    w_scale = numpy_helper.to_array(inits[weight_dq.input[1]])
    truth = ort_reference.session(model)
    others = [ort_reference.alternative_session(model, a, truth) for a in ort_reference.ALTERNATIVES]
    rng = np.random.default_rng(0)
    for _ in range(4):
        x_codes = rng.integers(-128, 128, (1, channels, height, width))
        feeds = {"x": ((x_codes + 128) * np.float32(0.05)).astype(np.float32)}
        got = truth.run(None, feeds)[0]
        padded = np.zeros((channels, height + 8, width), np.int64)
        padded[:, 3:3 + height] = x_codes[0] + 128
        acc = sum(padded[:, 2 * k:2 * k + height] * codes[:, 0, k, 0][:, None, None] for k in range(5))
        scale = (np.float32(0.05) * w_scale).astype(np.float32) / np.float32(0.03)
        v = (acc.astype(np.float32) * scale[:, None, None]).astype(np.float32)
        want = np.clip(np.rint(v), -128 - 7, 127 - 7) + 7
        assert np.array_equal(got[0], want.astype(np.int8))
        for other in others:
            theirs = other.run(None, feeds)[0].astype(np.int64)
            if other.alternative.name == "ORT extended":
                assert np.array_equal(theirs, got)
            assert np.abs(theirs - got).max() <= 1
