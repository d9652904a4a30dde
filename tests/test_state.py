"""State kept between inferences: TFLite resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE)
and their CALL_ONCE initialisation, in the shape the streaming layers of Keras export: each stream
layer reads its state, concatenates the new frame to it over time, keeps the newest frames with a
STRIDED_SLICE that ASSIGN_VARIABLE stores, and runs its layer on the concatenation.

Every test runs a sequence of frames through the pinned TFLM interpreter (one interpreter, state
carried) and through the reference interpreter, then the same frames again after a reset, and
compares every output of every frame; the C runs the same sequence in its golden test, which passes
only on an exact match (reset included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import STRICT_CFLAGS
from qcc import reference
from qcc.cli import main
from qcc.commands.compile import compile_to_folder
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model
from qcc.runtimes import tflm
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make
from tflite_builder import _BUILTIN_CODES as BUILTIN_CODES, TfliteBuilder

DATA = Path(__file__).resolve().parent / "data" / "tflite"
FRAME = (1, 1, 8, 4)  # one time step of 8 features x 4 channels (N, T, W, C)


def stream_layer(b: TfliteBuilder, x: int, name: str, frames: int, channels: int, out_channels: int, rng, *,
                 zero: int, scale: float = 0.05, out_scale: float = 0.1, out_zero: int = 2, relu: bool = False) -> int:
    """One Keras stream layer on `x` ((1, 1, W, channels), quantized as scale/zero): its state holds the
    last `frames` - 1 frames; a (frames x 1) convolution over the concatenation. Returns its output."""
    width = b.tensors[x]["shape"][2]
    res = b.tensor(f"{name}/res", (), "resource")
    state = b.tensor(f"{name}/state", (1, frames - 1, width, channels), "int8", scale=scale, zero_point=zero)
    cat = b.tensor(f"{name}/cat", (1, frames, width, channels), "int8", scale=scale, zero_point=zero)
    new = b.tensor(f"{name}/new_state", (1, frames - 1, width, channels), "int8", scale=scale, zero_point=zero)
    w = b.const(f"{name}/w", rng.integers(-127, 128, (out_channels, frames, 1, channels)).astype(np.int8), "int8",
                scale=[0.01] * out_channels, zero_point=[0] * out_channels, quantized_dimension=0)
    bias = b.const(f"{name}/b", rng.integers(-500, 500, out_channels).astype(np.int32), "int32",
                   scale=[scale * 0.01] * out_channels, zero_point=[0] * out_channels)
    y = b.tensor(f"{name}/y", (1, 1, width, out_channels), "int8", scale=out_scale, zero_point=out_zero)
    b.op("VAR_HANDLE", [], [res], options=dict(container="", shared_name=f"{name}/state"))
    b.op("READ_VARIABLE", [res], [state])
    b.op("CONCATENATION", [state, x], [cat], options=dict(axis=1))
    b.op("STRIDED_SLICE", [cat, b.const(f"{name}/begin", np.array([0, 1, 0, 0], np.int32)),
                           b.const(f"{name}/end", np.array([1, frames, width, channels], np.int32)),
                           b.const(f"{name}/strides", np.array([1, 1, 1, 1], np.int32))], [new])
    b.op("ASSIGN_VARIABLE", [res, new], [])
    b.op("CONV_2D", [cat, w, bias], [y], version=3, options=dict(
        padding="VALID", stride_h=1, stride_w=1, fused_activation_function="RELU" if relu else "NONE"))
    return y


def initialise(init: TfliteBuilder, name: str, shape, value: int, zero: int, scale: float = 0.05) -> None:
    """The initialisation subgraph's part for one variable: a constant assigned to it."""
    res = init.tensor(f"{name}/res", (), "resource")
    const = init.const(f"{name}/init", np.full(shape, value, np.int8), "int8", scale=scale, zero_point=zero)
    init.op("VAR_HANDLE", [], [res], options=dict(container="", shared_name=f"{name}/state"))
    init.op("ASSIGN_VARIABLE", [res, const], [])


def streaming_model(initial: int | None = None, layers: int = 1, seed: int = 0) -> bytes:
    """A frame through `layers` stream layers (3 frames of context each), CALL_ONCE first; `initial`: the value
    the initialisation assigns (None: its zero point, as Keras writes zeros)."""
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    zero = -3
    x = b.input("frame", FRAME, "int8", scale=0.05, zero_point=zero)
    b.op("CALL_ONCE", [], [], options=dict(init_subgraph_index=1))
    init = b.subgraph()
    channels, scale = FRAME[3], 0.05
    for k in range(layers):
        name = f"stream{k}"
        x = stream_layer(b, x, name, 3, channels, 6, rng, zero=zero, scale=scale, out_zero=-128 if k < layers - 1 else 2,
                         relu=k < layers - 1)
        initialise(init, name, (1, 2, FRAME[2], channels), zero if initial is None else initial, zero, scale)
        channels, zero, scale = 6, -128 if k < layers - 1 else 2, 0.1
    b.output(x)
    return b.build()


def frames_of(graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    return random_inputs(graph, count, seed) + extreme_inputs(graph)


def check_frames(model: bytes, tmp_path, count: int = 6, io_in_arena: bool = False):
    """The frames, then again after a reset: reference == TFLM on every output of every frame, and the C's
    golden test (the same sequence, reset included) passes. Returns the compiled model."""
    path = tmp_path / "stream.tflite"
    path.write_bytes(model)
    options = Options(io_in_arena=io_in_arena)
    graph = compile_model(path, options).graph
    frames = frames_of(graph, count)
    sequence = frames + frames
    expected = tflm.run_frames(model, sequence, reset_before=len(frames))
    got = reference.run_frames(graph, sequence, reset_before=len(frames))
    for number, (e, g) in enumerate(zip(expected, got)):
        for name, a, b in zip(graph.outputs, e, g):
            assert np.array_equal(np.asarray(a).reshape(b.shape), b), f"frame {number}, output {name}"
    # the outputs do depend on the state: some frame's outputs differ from the same input's first inference
    fresh = [reference.run(graph, f) for f in sequence]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(fresh, got))
    compiled, _ = compile_to_folder(path, tmp_path / "out", options, golden=frames)
    make(tmp_path / "out", "check", cflags=STRICT_CFLAGS)  # the C on the same sequence, every value
    return compiled


@pytest.mark.parametrize("initial", [None, 7])
def test_a_stream_layer_keeps_its_frames_between_inferences(tmp_path, initial):
    """One Keras stream layer; the initialisation assigns the zero point (as Keras writes zeros) or another
    value, which the first inference starts from and a reset does not bring back (TFLM's Reset())."""
    compiled = check_frames(streaming_model(initial), tmp_path)
    (state,) = compiled.graph.states
    assert state.fill == (-3) & 0xFF
    assert (state.first_call is not None) and int(state.first_call.reshape(-1)[0]) == (-3 if initial is None else initial)
    text = (tmp_path / "out" / "model.c").read_text()
    assert ("model_state_first_call" in text) == (initial is not None)  # only where it differs from the fill


def test_stacked_stream_layers_each_keep_their_own_state(tmp_path):
    compiled = check_frames(streaming_model(layers=3, seed=4), tmp_path, count=8)
    assert len(compiled.graph.states) == 3
    offsets, size = compiled.graph.state_offsets()
    assert size == 2 * 8 * 4 + 2 * 2 * 8 * 6  # each variable once, on a word: nothing else in the state buffer


def test_the_new_state_is_written_in_place_by_its_slice(tmp_path):
    """The STRIDED_SLICE of the concatenation runs after the state's only read (the CONCATENATION): it
    writes the next state straight into the state's bytes, and the assignment copies nothing."""
    path = tmp_path / "stream.tflite"
    path.write_bytes(streaming_model())
    compiled = compile_model(path, Options())
    plan, graph = compiled.plan, compiled.graph
    (state,) = graph.states
    assign = graph.producer(state.written)
    assert assign is graph.nodes[-1]  # after every other node
    assert plan.storage[assign.inputs[0]] == plan.storage[state.written] == plan.storage[state.name]
    assert plan.storage[state.name].kind == "state"
    compile_to_folder(path, tmp_path / "out", Options(), golden="2")
    assert "memcpy((int8_t *)&model_state" not in (tmp_path / "out" / "model.c").read_text()


def test_inputs_and_outputs_in_the_arena_with_state(tmp_path):
    check_frames(streaming_model(layers=2, seed=1), tmp_path, count=4, io_in_arena=True)


def test_header_manifest_and_an_application_that_resets(tmp_path):
    """model.h gives NAME_reset() and the state's size; the manifest counts the state in the RAM; an
    application written against the header runs frames, resets, and runs them again."""
    model = tmp_path / "stream.tflite"
    model.write_bytes(streaming_model(7))
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    header = (out / "model.h").read_text()
    manifest = json.loads((out / "model.json").read_text())
    assert "void model_reset(void);" in header and "#define MODEL_STATE_BYTES 64" in header
    assert manifest["state_bytes"] == 64
    assert manifest["ram_bytes"] == manifest["arena_bytes"] + manifest["io_bytes"] + 64
    graph = compile_model(model, Options()).graph
    frames = frames_of(graph, 3)
    expected = tflm.run_frames(model.read_bytes(), frames + frames, reset_before=len(frames))

    def values(a):
        return ", ".join(str(int(v)) for v in np.asarray(a).reshape(-1))
    rows_in = ",\n".join("{ " + values(f[0]) + " }" for f in frames)
    rows_out = ",\n".join("{ " + values(e[0]) + " }" for e in expected)
    n, size_in, size_out = len(frames), np.asarray(frames[0][0]).size, np.asarray(expected[0][0]).size
    (out / "app.c").write_text(f"""
#include <stdio.h>
#include <string.h>
#include "model.h"
static const int8_t frames[{n}][{size_in}] = {{ {rows_in} }};
static const int8_t expected[{2 * n}][{size_out}] = {{ {rows_out} }};
int main(void)
{{
    int8_t y[{size_out}];
    int k;
    for (k = 0; k < {2 * n}; ++k) {{
        if (k == {n}) {{
            model_reset();
        }}
        if (model_run(frames[k % {n}], y) != 0 || memcmp(y, expected[k], sizeof y) != 0) {{
            printf("frame %d differs\\n", k);
            return 1;
        }}
    }}
    printf("OK\\n");
    return 0;
}}
""")
    sources = [str(p) for p in out.glob("*.c") if p.name not in ("test_model.c", "qcc_runner.c")]
    subprocess.run(["gcc", *STRICT_CFLAGS.split(), "-o", str(out / "app"), *sources], check=True)
    result = subprocess.run([str(out / "app")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stdout


def test_verify_compares_frames_with_tflm(tmp_path, capsys):
    model = tmp_path / "stream.tflite"
    model.write_bytes(streaming_model(5, layers=2, seed=2))
    assert main(["verify", str(model), "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "C == reference == TFLite Micro on every value" in out


# --- what qcc refuses, by name ------------------------------------------------------------------


def _model_with(edit) -> bytes:
    """The one-layer stream model with `edit(b, init)` applied before it is written."""
    rng = np.random.default_rng(0)
    b = TfliteBuilder()
    x = b.input("frame", FRAME, "int8", scale=0.05, zero_point=-3)
    b.op("CALL_ONCE", [], [], options=dict(init_subgraph_index=1))
    init = b.subgraph()
    y = stream_layer(b, x, "s", 3, 4, 6, rng, zero=-3)
    initialise(init, "s", (1, 2, 8, 4), -3, -3)
    b.output(y)
    edit(b, init)
    return b.build()


def _refusal(tmp_path, model: bytes) -> str:
    path = tmp_path / "bad.tflite"
    path.write_bytes(model)
    with pytest.raises(QccError) as error:
        compile_model(path, Options())
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_second_assignment_is_refused(tmp_path):
    def edit(b, init):
        res = next(i for i, t in enumerate(b.tensors) if t["name"] == "s/res")
        new = next(i for i, t in enumerate(b.tensors) if t["name"] == "s/new_state")
        b.op("ASSIGN_VARIABLE", [res, new], [])
    assert "after an ASSIGN_VARIABLE of it" in _refusal(tmp_path, _model_with(edit))


def test_an_initialisation_that_computes_is_refused(tmp_path):
    def edit(b, init):
        c = init.ops[-1]["inputs"][1]
        doubled = init.tensor("doubled", (1, 2, 8, 4), "int8", scale=0.05, zero_point=-3)
        init.op("ADD", [c, c], [doubled], options=dict())
        init.ops[-2], init.ops[-1] = init.ops[-1], init.ops[-2]
    message = _refusal(tmp_path, _model_with(edit))
    assert "subgraph 1" in message and "ADD" in message


def test_a_subgraph_no_call_once_runs_is_refused(tmp_path):
    def edit(b, init):
        b.subgraph().tensors.append(dict(b.tensors[0]))
    assert "subgraph 2 is run by no CALL_ONCE" in _refusal(tmp_path, _model_with(edit))


def test_a_variable_nothing_assigns_is_refused(tmp_path):
    def edit(b, init):
        assign = BUILTIN_CODES["ASSIGN_VARIABLE"]
        b.ops[:] = [op for op in b.ops if op["code"] != assign]
        init.ops[:] = [op for op in init.ops if op["code"] != assign]
    assert "is read but nothing assigns it" in _refusal(tmp_path, _model_with(edit))


def test_call_once_after_a_variable_op_is_refused(tmp_path):
    def edit(b, init):
        call = b.ops.pop(0)
        b.ops.insert(2, call)
    assert "comes after operators that use variables" in _refusal(tmp_path, _model_with(edit))


def test_a_state_of_another_size_is_refused(tmp_path):
    def edit(b, init):
        value = init.ops[-1]["inputs"][1]
        init.tensors[value]["shape"] = [1, 1, 8, 4]
        init.tensors[value]["data"] = np.full((1, 1, 8, 4), -3, np.int8).tobytes()
    assert "initialises variable 's/state' with int8 [1, 1, 8, 4]" in _refusal(tmp_path, _model_with(edit))


# --- models TensorFlow's converter wrote (tests/data/tflite/export_streaming.py) --------------------


def test_a_converter_written_streaming_model_is_exact_frame_by_frame(tmp_path):
    """Two stream layers as TensorFlow 2.21 writes them with int8 variables (the converter's own operator
    order: every ASSIGN_VARIABLE last, the slices after the convolutions)."""
    compiled = check_frames((DATA / "streaming_int8_variables.tflite").read_bytes(), tmp_path, count=8)
    assert len(compiled.graph.states) == 2
    for state in compiled.graph.states:  # the slices write the next state in place
        assign = compiled.graph.producer(state.written)
        assert compiled.plan.storage[assign.inputs[0]] == compiled.plan.storage[state.name]


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_a_converter_written_streaming_ds_cnn_is_exact_frame_by_frame(tmp_path, io_in_arena):
    """A streaming keyword spotter as kws_streaming builds one: three stream states in front of a convolution
    and two depthwise convolutions, pointwise convolutions, a mean and a dense head. The frame (channels
    last) is read in place by the first concatenation, the states are kept channels first: no transposes."""
    model = (DATA / "streaming_ds_cnn_int8_variables.tflite").read_bytes()
    compiled = check_frames(model, tmp_path, count=6, io_in_arena=io_in_arena)
    assert len(compiled.graph.states) == 3
    ops = [n.op for n in compiled.graph.nodes]
    assert "Transpose" not in ops and "ChannelsFirstView" in ops
    assert {n.attrs.get("onnx_op") for n in compiled.graph.nodes} >= {"DEPTHWISE_CONV_2D", "MEAN", "ASSIGN_VARIABLE"}


def test_float_variables_are_refused_by_name(tmp_path):
    """The converter's default keeps the variables float32: the concatenations run in float in TFLM."""
    with pytest.raises(QccError) as error:
        compile_model(DATA / "streaming_float_variables.tflite", Options())
    message = str(error.value)
    assert "float32 variable" in message and "_experimental_variable_quantization" in message and "\n" not in message


def test_frames_on_the_emulated_cortex_m4(capsys):
    """One bare-metal image runs the frames in order on QEMU's Cortex-M4 board, its state in its own .data."""
    assert main(["verify", str(DATA / "streaming_int8_variables.tflite"), "-n", "2", "--target", "cortex-m4"]) == 0
    assert "5 frames in order: C == reference == TFLite Micro on every value" in capsys.readouterr().out
