"""`qcc verify --layers`: every layer compared between the C (traced), the reference and ONNX
Runtime (its intermediate tensors as extra outputs), and the first diverging layer named, with
whether it computes differently or only inherits a difference."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import qcc.commands.verify
from helpers import REPO
from qdq_builder import QdqGraph
from qcc.cli import main
from qcc.commands.compile import compile_to_folder
from qcc.commands.ground_truth import OnnxRuntimeTruth
from qcc.commands.layer_verify import compare_layers
from qcc.commands.verify import verify
from qcc.pipeline import Options
from qcc.sample_inputs import random_inputs
from qcc.toolchain.build import make

EXAMPLE = str(REPO / "examples" / "cnn96_uint8.onnx")


def conv_pool_conv(tmp_path: Path) -> str:
    """QDQ Conv -> MaxPool -> Conv: the MaxPool moves codes, so it can only inherit a difference.
    The first Conv's M is 2^-3 exactly, so that one accumulator in eight ends in .5, where ORT
    rounds half to even and the tflm scheme half away from zero."""
    g = QdqGraph(13, seed=2)
    x = g.qdq(g.input("x", [1, 3, 8, 8]), 2.0**-6, 128)
    w = g.dequantize(g.const(g.rng.integers(-3, 4, (8, 3, 3, 3)).astype(np.int8)), 2.0**-5, 0, np.int8)
    y = g.qdq(g.node("Conv", [x, w], name="conv_a", pads=[1, 1, 1, 1]), 2.0**-8, 120)
    y = g.qdq(g.node("MaxPool", [y], name="pool", kernel_shape=[2, 2], strides=[2, 2]), 2.0**-8, 120)
    y = g.node("Conv", [y, g.weights((4, 8, 3, 3), 0.01)], name="conv_b")
    g.output(g.dequantize(g.quantize(y, 0.05, 100), 0.05, 100))
    path = tmp_path / "conv_pool_conv.onnx"
    path.write_bytes(g.model().SerializeToString())
    return str(path)


def test_every_layer_is_compared_and_exact_in_the_ort_scheme(tmp_path):
    for model in (EXAMPLE, conv_pool_conv(tmp_path)):
        report = verify(model, Options(), count=2, layers=True)
        assert report.ok and report.layers is not None
        rows = report.layers.layers
        assert len(rows) >= 3 and all(r.c.all_exact and r.c.compared > 0 for r in rows)
        assert all(r.ort is not None and r.ort.all_exact for r in rows), report.layers.table()
        assert all(r.alone is not None and r.alone.all_exact for r in rows), report.layers.table()
        assert report.layers.first_divergence().startswith("no divergence")


def test_a_layer_that_computes_differently_is_told_from_one_that_inherits(tmp_path):
    """In the tflm scheme the convolutions round differently from ORT (the C still equals the
    reference); the MaxPool after the first one differs from ORT only because its input does."""
    report = verify(conv_pool_conv(tmp_path), Options(rounding="tflm"), count=2, layers=True)
    rows = {r.node: r for r in report.layers.layers}
    assert all(r.c.all_exact for r in rows.values())
    conv, pool = rows["conv_a"], rows["pool"]
    assert not conv.ort.all_exact and not conv.alone.all_exact
    assert not pool.ort.all_exact and pool.alone.all_exact
    text = report.layers.first_divergence()
    assert text.startswith("first divergence: layer 0 'conv_a' (QLinearConv)") and "computes differently" in text


def test_c_that_differs_from_the_reference_is_caught_at_its_layer(tmp_path, monkeypatch):
    """A weight changed in the generated C of the second convolution: verify, without --layers,
    finds the mismatch, runs the layer comparison by itself and names that layer."""
    real = qcc.commands.verify.compile_to_folder

    def tampered(model, out, options, golden="4"):
        compiled, manifest = real(model, out, options, golden)
        source = Path(out) / "model.c"
        text = source.read_text()
        text = re.sub(r"(static const int8_t model_conv1_quant_weights\[\d+\] = \{\n    )(-?\d+)",
                      lambda m: m.group(1) + str(-int(m.group(2)) or 5), text, count=1)
        source.write_text(text)
        return compiled, manifest

    monkeypatch.setattr(qcc.commands.verify, "compile_to_folder", tampered)
    report = verify(EXAMPLE, Options(), count=1)
    assert not report.ok and report.layers is not None
    rows = report.layers.layers
    assert rows[0].c.all_exact and not rows[1].c.all_exact
    assert report.layers.first_divergence().startswith(
        "first divergence: layer 1 'conv1_quant' (QLinearConv): the C differs from the reference")


def test_the_trace_build_and_the_cli(tmp_path, capsys):
    out = tmp_path / "out"
    # every tensor whole, as verify traces layers: streamed layers never hold their outputs whole
    compiled, manifest = compile_to_folder(EXAMPLE, out, Options(whole_tensors=True), golden="1")
    make(out, "runner-trace", cflags="-std=c99 -O1 -Wall -Wextra -Wpedantic -Werror")
    case = random_inputs(compiled.graph, 1, seed=3)[0]
    report = compare_layers(OnnxRuntimeTruth(EXAMPLE, compiled.graph), compiled.graph, out, manifest, case, 0)
    assert [r.node for r in report.layers] == [n.name for n in compiled.graph.nodes]
    assert all(r.c.compared == np.prod(compiled.graph.tensor(n.outputs[0]).shape)
               for r, n in zip(report.layers, compiled.graph.nodes))
    assert main(["verify", EXAMPLE, "-n", "1", "--layers"]) == 0
    printed = capsys.readouterr().out
    assert "layers, input set 0:" in printed and "alone = ORT" in printed and "no divergence" in printed


def test_an_lstm_alone_starts_from_the_state_the_inference_started_with(tmp_path):
    """TFLM updates an LSTM's variable tensors in place, so after the run they hold the state after it; the layer
    run alone must read the state before it (the reference's), or it would differ from TFLM for no fault of its own."""
    report = verify(str(REPO / "tests" / "data" / "tflite" / "mnist_lstm_int8.tflite"), Options(), count=2, layers=True)
    assert report.ok and report.layers is not None
    lstm = [r for r in report.layers.layers if r.op == "UNIDIRECTIONAL_SEQUENCE_LSTM" and r.ort is not None]
    assert lstm and all(r.ort.all_exact and r.alone is not None and r.alone.all_exact for r in lstm), \
        report.layers.table()
