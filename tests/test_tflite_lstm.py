"""UNIDIRECTIONAL_SEQUENCE_LSTM in TFLM's integer form: the reference interpreter equals the pinned TFLM on every
output value of every frame of a sequence of inferences (the LSTM's hidden and cell states carried from one to
the next, as TFLM keeps its variable tensors), then of the same frames after a reset, and the generated C equals
the reference on them (tests/test_state.py, check_frames). TFLM's own mnist_lstm example, and LSTMs built with
the flatbuffers builder the way the converter writes them over the variants qcc compiles; the others are refused
by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcc.errors import QccError
from qcc.pipeline import compile_model
from test_state import check_frames
from tflite_builder import TfliteBuilder

DATA = Path(__file__).parent / "data" / "tflite"
GATES = ("input", "forget", "cell", "output")  # TFLite's order of the weights, recurrent weights and biases


def lstm_model(*, batch=1, steps=5, features=6, units=4, time_major=False, activation="TANH", cell_clip=0.0,
               x_zero=-3, h_zero=0, h_scale=0.008, seed=0, omit: tuple[int, ...] = (), extra: dict | None = None,
               per_channel=False, x_dtype="int8") -> bytes:
    """An int8 LSTM as the converter writes it: per-tensor int8 weights of zero point 0, int32 biases, an int8
    hidden state and an int16 cell state (scale 2^-11) as variable tensors, the output with the hidden state's
    quantization. omit: input positions left out (-1); extra: positions given a tensor that should be absent."""
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x_shape = (steps, batch, features) if time_major else (batch, steps, features)
    x = b.input("x", x_shape, x_dtype, scale=np.float32(0.02), zero_point=x_zero if x_dtype == "int8" else 0)
    inputs = [x]
    for k, (rows, cols) in enumerate([(units, features)] * 4 + [(units, units)] * 4):
        w = rng.integers(-127, 128, (rows, cols)).astype(np.int8)
        scale = rng.uniform(0.004, 0.02, units if per_channel else 1).astype(np.float32)
        inputs.append(b.const(f"w{k}", w, scale=scale, zero_point=np.zeros(scale.size, np.int64)))
    inputs += [-1, -1, -1]  # peepholes
    for gate in GATES:
        bias = rng.integers(-3000, 3000, units).astype(np.int32)
        inputs.append(b.const(f"b_{gate}", bias, scale=np.float32(0.0001), zero_point=0))
    inputs += [-1, -1]  # projection
    inputs.append(b.tensor("h", (batch, units), "int8", scale=np.float32(h_scale), zero_point=h_zero, is_variable=True))
    inputs.append(b.tensor("c", (batch, units), "int16", scale=np.float32(2**-11), zero_point=0, is_variable=True))
    inputs += [-1, -1, -1, -1]  # layer norms
    for k in omit:
        inputs[k] = -1
    for k, tensor in (extra or {}).items():
        inputs[k] = tensor(b)
    y = b.tensor("y", (*x_shape[:2], units), "int8", scale=np.float32(h_scale), zero_point=h_zero)
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], version=1, options=dict(
        fused_activation_function=activation, cell_clip=cell_clip, time_major=time_major))
    b.output(y)
    return b.build()


def test_tflms_mnist_lstm_example(tmp_path):
    """TFLM's mnist_lstm example (28 steps of 28 features, 20 units, cell clip 10), its state carried across frames."""
    compiled = check_frames((DATA / "mnist_lstm_int8.tflite").read_bytes(), tmp_path, count=4)
    assert [n.op for n in compiled.graph.nodes].count("TflmLstm") == 1
    assert compiled.graph.state_offsets()[1] == 20 + 2 * 20  # the hidden and cell states, nothing else


LSTM_CASES = {
    "batch-major": {},
    "time-major, two rows": dict(time_major=True, batch=2),
    "two rows": dict(batch=2, steps=3),
    "cell clip": dict(cell_clip=0.7),
    "hidden zero point": dict(h_zero=-9, x_zero=11),
    "large multipliers": dict(h_scale=0.0004, units=9, features=3),
}


@pytest.mark.parametrize("case", list(LSTM_CASES))
def test_lstm_variants(case, tmp_path):
    check_frames(lstm_model(seed=len(case), **LSTM_CASES[case]), tmp_path, count=3)


def test_the_state_is_updated_in_place(tmp_path):
    """The kernel writes the new hidden and cell states over the old ones: no copy, no arena bytes for them."""
    path = tmp_path / "lstm.tflite"
    path.write_bytes(lstm_model())
    compiled = compile_model(path)
    assert {compiled.plan.storage[n].kind for n in compiled.graph.nodes[0].outputs[1:]} == {"state"}


@pytest.mark.parametrize("variant, kwargs, words", [
    ("CIFG", dict(omit=(1, 5)), "CIFG"),
    ("peephole", dict(extra={9: lambda b: b.const("peep", np.ones(4, np.int16), scale=np.float32(0.01))}), "peephole"),
    ("projection", dict(extra={16: lambda b: b.const("proj", np.ones((4, 4), np.int8), scale=np.float32(0.01))}),
     "projection"),
    ("layer norm", dict(extra={20: lambda b: b.const("ln", np.ones(4, np.int16), scale=np.float32(0.01))}),
     "layer normalisation"),
    ("per-channel weights", dict(per_channel=True), "per axis"),
    ("relu cell gate", dict(activation="RELU"), "with TANH"),
    ("16x8 (int16 input)", dict(x_dtype="int16"), "int16"),
])
def test_a_variant_qcc_does_not_compile_is_refused_by_name(variant, kwargs, words, tmp_path):
    path = tmp_path / "lstm.tflite"
    path.write_bytes(lstm_model(**kwargs))
    with pytest.raises(QccError) as info:
        compile_model(path)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in str(info.value) and words in str(info.value)
