"""--state INPUT=OUTPUT: a streaming model that passes its state through an input and an output keeps it
inside the C, one call per frame. The model's runtime is run as an application would run it, each frame's
state input the output the frame before gave (ONNX Runtime on the float model boundary: the application
feeds the float output back), the C with the state inside, both over the same frames and again after a
reset; every output of every frame must agree (qcc verify), and the C's golden test runs the sequence."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from helpers import STRICT_CFLAGS, make_model
from models import quantize
from qcc.cli import main
from qcc.commands.compile import compile_to_folder
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model
from qcc.toolchain.build import make


def ring_buffer_model(tmp_path, activation: str, quant_format: str):
    """A stream layer as exporters write it with explicit state: the state's two past frames concatenated with
    the new one over time, a 3x1 convolution over them, and the newest two frames as the next state."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Concat", ["state_in", "x"], ["cat"], axis=2),
             helper.make_node("Conv", ["cat", "w", "b"], ["c"], kernel_shape=[3, 1]),
             helper.make_node("Relu", ["c"], ["y"]),
             helper.make_node("Slice", ["cat", "starts", "ends", "axes"], ["state_out"])]
    inits = {"w": rng.normal(0, 0.3, (6, 4, 3, 1)).astype(np.float32), "b": rng.normal(0, 0.1, 6).astype(np.float32),
             "starts": np.array([1], np.int64), "ends": np.array([3], np.int64), "axes": np.array([2], np.int64)}
    model = make_model(nodes, [("x", "float32", [1, 4, 1, 8]), ("state_in", "float32", [1, 4, 2, 8])],
                       [("y", "float32", [1, 6, 1, 8]), ("state_out", "float32", [1, 4, 2, 8])], inits)
    return quantize(model, tmp_path / f"ring_{activation}_{quant_format}.onnx", quant_format=quant_format,
                    activation=activation)


def accumulator_model(tmp_path):
    """A recurrent sum: y = conv(x) + state; the next state is y / 2, which the quantizer gives a scale of its
    own: the pair is quantized differently, and the C stores ONNX Runtime's requantization of it."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("Add", ["c", "state_in"], ["y"]),
             helper.make_node("Mul", ["y", "half"], ["state_out"])]
    inits = {"w": rng.normal(0, 0.5, (6, 4, 1, 1)).astype(np.float32), "b": rng.normal(0, 0.1, 6).astype(np.float32),
             "half": np.array(0.5, np.float32)}
    model = make_model(nodes, [("x", "float32", [1, 4, 1, 8]), ("state_in", "float32", [1, 6, 1, 8])],
                       [("y", "float32", [1, 6, 1, 8]), ("state_out", "float32", [1, 6, 1, 8])], inits)
    return quantize(model, tmp_path / "accumulator.onnx", quant_format="QDQ", activation="int8")


def check_frames(path, tmp_path, capsys, pairs=("state_in=state_out",), rounding=None):
    args = ["verify", str(path), "-n", "6"] + [a for p in pairs for a in ("--state", p)]
    assert main(args + (["--rounding", rounding] if rounding else [])) == 0
    out = capsys.readouterr().out
    assert "on every value" in out and "MISMATCH" not in out
    options = Options(state_pairs=[tuple(p.split("=")) for p in pairs], rounding=rounding)
    compiled, _ = compile_to_folder(path, tmp_path / "out", options, golden="3")
    make(tmp_path / "out", "check", cflags=STRICT_CFLAGS)
    return compiled


@pytest.mark.parametrize("activation, quant_format", [("int8", "QDQ"), ("uint8", "QDQ")])
def test_a_ring_buffer_state_stays_in_the_c(tmp_path, capsys, activation, quant_format):
    compiled = check_frames(ring_buffer_model(tmp_path, activation, quant_format), tmp_path, capsys)
    graph = compiled.graph
    assert [graph.public_name(t) for t in graph.inputs] == ["x"] and [graph.public_name(t) for t in graph.outputs] == ["y"]
    (state,) = graph.states
    assert compiled.plan.storage[state.name].kind == "state"
    header = (tmp_path / "out" / "model.h").read_text()
    assert "void model_reset(void);" in header and "state_in" not in header.split("int model_run(")[1].split(")")[0]


def test_a_pair_quantized_differently_stores_ort_s_requantization(tmp_path, capsys):
    compiled = check_frames(accumulator_model(tmp_path), tmp_path, capsys)
    (state,) = compiled.graph.states
    assign = compiled.graph.producer(state.written)
    assert "table" in assign.attrs  # the two scales differ: a table, worked out with ORT's float32 arithmetic
    assert compiled.plan.storage[assign.inputs[0]].kind != "state"  # so the value cannot be the state's bytes


def test_other_rounding_schemes_keep_c_equal_to_the_reference(tmp_path, capsys):
    path = ring_buffer_model(tmp_path, "int8", "QDQ")
    assert main(["verify", str(path), "-n", "3", "--state", "state_in=state_out", "--rounding", "single"]) == 0
    assert "C == reference (single scheme) on every value" in capsys.readouterr().out


def test_pairs_are_refused_by_name(tmp_path):
    path = ring_buffer_model(tmp_path, "int8", "QDQ")
    for pairs, words in [([("state", "state_out")], "the input 'state'"),
                         ([("state_in", "y")], "one type and shape"),
                         ([("state_in", "state_out"), ("state_in", "y")], "in another pair")]:
        with pytest.raises(QccError) as error:
            compile_model(path, Options(state_pairs=pairs))
        assert words in str(error.value) and "\n" not in str(error.value)
    assert main(["compile", str(path), "-o", str(tmp_path / "bad"), "--state", "state_in"]) == 2
    assert not (tmp_path / "bad").exists()


def test_a_tflite_pair_quantized_alike_keeps_its_codes(tmp_path, capsys):
    """A .tflite model with its state as an input/output pair (TFLM is run once per frame, fed the output)."""
    from tflite_builder import TfliteBuilder
    rng = np.random.default_rng(5)
    b = TfliteBuilder()
    x = b.input("frame", (1, 1, 8, 4), "int8", scale=0.05, zero_point=-3)
    state_in = b.input("state_in", (1, 2, 8, 4), "int8", scale=0.05, zero_point=-3)
    cat = b.tensor("cat", (1, 3, 8, 4), "int8", scale=0.05, zero_point=-3)
    state_out = b.tensor("state_out", (1, 2, 8, 4), "int8", scale=0.05, zero_point=-3)
    w = b.const("w", rng.integers(-127, 128, (6, 3, 1, 4)).astype(np.int8), "int8", scale=[0.01] * 6,
                zero_point=[0] * 6, quantized_dimension=0)
    bias = b.const("b", rng.integers(-500, 500, 6).astype(np.int32), "int32", scale=[0.0005] * 6, zero_point=[0] * 6)
    y = b.tensor("y", (1, 1, 8, 6), "int8", scale=0.1, zero_point=2)
    b.op("CONCATENATION", [state_in, x], [cat], options=dict(axis=1))
    b.op("CONV_2D", [cat, w, bias], [y], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1))
    b.op("STRIDED_SLICE", [cat, b.const("begin", np.array([0, 1, 0, 0], np.int32)),
                           b.const("end", np.array([1, 3, 8, 4], np.int32)),
                           b.const("strides", np.array([1, 1, 1, 1], np.int32))], [state_out])
    b.output(y, state_out)
    path = tmp_path / "pair.tflite"
    path.write_bytes(b.build())
    compiled = check_frames(path, tmp_path, capsys)
    (state,) = compiled.graph.states
    assert compiled.plan.storage[compiled.graph.producer(state.written).inputs[0]].kind == "state"  # in place
