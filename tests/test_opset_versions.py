"""Ops whose inputs, attributes or meaning changed across opsets, at each version qcc registers
(qcc/ops/base.py: OnnxOp(domain, op_type, first, last)) and at the versions just outside.

Each case is one of two things, whichever is true for ONNX Runtime:
(a) qcc compiles it and C == reference == ORT on every value (helpers.check_exact: seeded random,
    extreme and, where cheap, every-code inputs);
(b) qcc refuses it with a one-line QccError naming the node, and the test shows why that is right:
    ORT refuses the model, or ORT runs that op in float (qdq_builder.ort_float_ops).
Models are written node by node the way exporters write them. The last tests check the registry
itself: two rules for one (domain, op type) at overlapping opsets, or two ops of one name, are
programming errors that registering raises."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import check_exact, make_model, scalar
from onnx import helper
from qdq_builder import QdqGraph, ort_float_ops, ort_runs_as_integers

from qcc.errors import QccError
from qcc.ops import base
from qcc.ops.base import OnnxOp, RegistryError, TfliteOp, op_for_onnx, op_named, register
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference

ZERO = {"uint8": 7, "int8": -7}
NP = {"uint8": np.uint8, "int8": np.int8}


# --- the two outcomes --------------------------------------------------------------------------


def exact(model: onnx.ModelProto, tmp_path, *, every_code: bool = False, **kwargs):
    """(a): C == reference == ORT on every value. every_code: one more input set in which every
    8-bit input takes each of its 256 codes (repeated to fill the tensor)."""
    if every_code:
        cases = [[]]
        for graph_input in model.graph.input:
            elem = graph_input.type.tensor_type.elem_type
            shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
            dtype = {onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT8: np.int8}[elem]
            size = int(np.prod(shape))
            cases[0].append((np.arange(size) % 256).astype(np.uint8).view(dtype).reshape(shape))
        kwargs["extra_cases"] = list(kwargs.get("extra_cases") or []) + cases
    kwargs.setdefault("n_random", 2)
    return check_exact(model, tmp_path, **kwargs)


def refused(model: onnx.ModelProto, tmp_path, node: str) -> str:
    """(b): qcc refuses the model in one line that names the node; returns the message."""
    path = tmp_path / "refused.onnx"
    onnx.save(model, str(path))
    with pytest.raises(QccError) as info:
        compile_model(path, Options())
    message = str(info.value)
    assert f"'{node}'" in message, message
    assert "\n" not in message, message
    return message


def ort_refuses(model: onnx.ModelProto) -> None:
    """ORT cannot load the model (a type the op does not take at that opset, an input or attribute
    the opset does not have)."""
    with pytest.raises(QccError, match="ONNX Runtime cannot load the model: INVALID_GRAPH"):
        ort_reference.session(model)


# --- model builders ----------------------------------------------------------------------------


def qdq(op: str, opset: int, shape, dtype="uint8", consts=(), outputs=1, name="op", out=None, **attrs):
    """x (codes) -> DequantizeLinear -> op(x, *consts) -> QuantizeLinear -> y0, y1, ...: the QDQ
    form. The QuantizeLinear has the DequantizeLinear's parameters (ORT's QDQ rules then drop the
    pair of a byte mover) unless out = (scale, zero point). consts: numpy arrays (initializers) or
    None (an omitted optional input)."""
    g = QdqGraph(opset)
    x = g.dequantize(g.input("x", shape, NP[dtype]), 0.05, ZERO[dtype], NP[dtype])
    inputs = [x] + ["" if c is None else g.const(c) for c in consts]
    y = g.node(op, inputs, name=name, outputs=outputs, **attrs)
    scale, zero = out or (0.05, ZERO[dtype])
    for i, o in enumerate(y if outputs > 1 else [y]):
        g.output(g.quantize(o, scale, zero, NP[dtype]), f"y{i}")
    return g.model()


def constant_inputs(first: str, consts) -> tuple[dict, list[str]]:
    """Initializers c0, c1, ... for the constants after `first` (None: an omitted optional input)."""
    inits, inputs = {}, [first]
    for k, c in enumerate(consts):
        if c is not None:
            inits[f"c{k}"] = c
        inputs.append("" if c is None else f"c{k}")
    return inits, inputs


def on_codes(op: str, opset: int, shape, dtype="uint8", consts=(), outputs=1, name="op", out_type=None, **attrs):
    """The QOperator form: the op reads the int8/uint8 codes directly."""
    inits, inputs = constant_inputs("x", consts)
    names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, inputs, names, name=name, **attrs)
    return make_model([node], [("x", dtype, list(shape))], [(n, out_type or dtype, None) for n in names], inits, opset=opset)


def conv_then(op: str, opset: int, dtype, consts=(), channels=4, **attrs):
    """A per-channel 1x1 QLinearConv, then `op` on its output codes (Relu/Clip fold into its clamp)."""
    rng = np.random.default_rng(0)
    inits = {"xs": scalar(0.05, np.float32), "xz": scalar(ZERO[dtype], dtype),
             "w": rng.integers(-128, 128, (channels, channels, 1, 1)).astype(np.int8),
             "ws": np.full(channels, 0.01, np.float32), "wz": np.zeros(channels, np.int8),
             "ys": scalar(0.04, np.float32), "yz": scalar(120 if dtype == "uint8" else -10, dtype)}
    conv = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["c"], name="conv")
    extra, inputs = constant_inputs("c", consts)
    inits.update(extra)
    act = helper.make_node(op, inputs, ["y"], name="act", **attrs)
    shape = [1, channels, 5, 5]
    return make_model([conv, act], [("x", dtype, shape)], [("y", dtype, shape)], inits, opset=opset)


def f32(*values):
    return np.array(values, np.float32)


def i64(*values):
    return np.array(values, np.int64)


def ort_outputs(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort_reference.session(model)
    return sess.run(None, {sess.get_inputs()[0].name: x})


# --- Clip: min/max attributes (Clip-6) and inputs (Clip-11+) -----------------------------------


CLIP_IN, CLIP_OUT = (0.05, 128), (0.025, 34)  # uint8 [-6.4, 6.35] in; out codes 0..255 = [-0.85, 5.525]


def clip_island(opset: int, lo, hi, shape) -> onnx.ModelProto:
    """DequantizeLinear -> Clip(lo, hi) -> QuantizeLinear with other parameters: a float island.
    Before opset 11 the bounds are attributes, from 11 optional inputs (None: not given)."""
    g = QdqGraph(opset)
    x = g.dequantize(g.input("x", shape, np.uint8), CLIP_IN[0], CLIP_IN[1], np.uint8)
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        y = g.node("Clip", [x], name="clip", **attrs)
    else:
        inputs = [x, "" if lo is None else g.const(np.float32(lo)), "" if hi is None else g.const(np.float32(hi))]
        while not inputs[-1]:
            inputs.pop()
        y = g.node("Clip", inputs, name="clip")
    g.output(g.quantize(y, CLIP_OUT[0], CLIP_OUT[1], np.uint8), "y")
    return g.model()


def test_clip_6_attributes_in_a_float_island_are_kept(tmp_path):
    """Clip-6 (opset 10) reads min and max from attributes: a qcc that looked for bound inputs would
    lose the clamp, up to 141 LSB off ORT here (max 2.0 -> code 114; unclamped 6.35 -> 255)."""
    shape = (1, 8, 48, 48)
    model = clip_island(10, -0.5, 2.0, shape)
    every_code = (np.arange(int(np.prod(shape))) % 256).astype(np.uint8).reshape(shape)
    clamped = ort_outputs(model, every_code)[0]
    unclamped = ort_outputs(clip_island(10, None, None, shape), every_code)[0]
    assert int(np.abs(clamped.astype(np.int16) - unclamped.astype(np.int16)).max()) == 141
    compiled = exact(model, tmp_path, extra_cases=[[every_code]])
    assert [n.op for n in compiled.graph.nodes] == ["FloatIsland"]
    assert not ort_runs_as_integers(model)  # ORT runs this Clip in float: it is an island


@pytest.mark.parametrize("opset, lo, hi", [(10, -0.5, None), (10, None, 2.0), (11, -0.5, 2.0), (11, None, 2.0),
                                           (12, -0.5, 2.0), (13, -0.5, None), (13, None, 2.0)],
                         ids=["Clip-6 min", "Clip-6 max", "Clip-11 min max", "Clip-11 max", "Clip-12 min max",
                              "Clip-13 min", "Clip-13 max"])
def test_clip_bounds_in_a_float_island_at_each_opset(tmp_path, opset, lo, hi):
    model = clip_island(opset, lo, hi, (1, 4, 8, 8))
    compiled = exact(model, tmp_path, every_code=True)
    assert [n.op for n in compiled.graph.nodes] == ["FloatIsland"]


def qdq_conv_clip(opset: int, lo: float, hi: float) -> onnx.ModelProto:
    """DQ -> Conv -> Clip -> Q, a ReLU6 as exporters write it: ORT drops the Clip (and fuses the Conv
    into QLinearConv) only where the Q's range lies inside [lo, hi]; bounds as the opset writes them."""
    g = QdqGraph(opset)
    x = g.dequantize(g.input("x", [1, 4, 5, 5], np.uint8), 0.02, 128, np.uint8)
    y = g.node("Conv", [x, g.weights((6, 4, 1, 1), 0.01)], name="conv")
    if opset < 11:
        y = g.node("Clip", [y], name="clip", min=lo, max=hi)
    else:
        y = g.node("Clip", [y, g.const(np.float32(lo)), g.const(np.float32(hi))], name="clip")
    g.output(g.quantize(y, 0.05, 0, np.uint8), "y")  # codes 0..255 = [0, 12.75]
    return g.model()


@pytest.mark.parametrize("opset", [10, 13])
def test_clip_the_quantize_makes_redundant_is_fused_at_each_opset(tmp_path, opset):
    model = qdq_conv_clip(opset, 0.0, 20.0)
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


@pytest.mark.parametrize("opset", [10, 13])
def test_clip_inside_the_quantized_range_keeps_the_conv_in_float_at_each_opset(tmp_path, opset):
    """ReLU6 with a Q up to 12.75: ORT leaves Conv (and Clip) in float; read as absent bounds, the
    attributes of Clip-6 would make the Clip look redundant and the Conv fusable."""
    model = qdq_conv_clip(opset, 0.0, 6.0)
    assert ort_float_ops(model) & {"Conv", "FusedConv"}  # (ORT's float Conv, with the Clip fused in or not)
    message = refused(model, tmp_path, "conv")
    assert "Clip before its QuantizeLinear clamps inside the quantized range" in message


@pytest.mark.parametrize("opset", [12, 13, 21])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("bounds", ["min max", "min", "max"])
def test_clip_on_codes_from_opset_12(tmp_path, opset, dtype, bounds):
    """QOperator form: Clip-12+ on the int8/uint8 codes after an integer op folds into its clamp."""
    lo, hi = (110, 160) if dtype == "uint8" else (-20, 30)
    consts = {"min max": [scalar(lo, dtype), scalar(hi, dtype)], "min": [scalar(lo, dtype)],
              "max": [None, scalar(hi, dtype)]}[bounds]
    compiled = exact(conv_then("Clip", opset, dtype, consts=consts), tmp_path, every_code=True)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


@pytest.mark.parametrize("opset, form", [(10, "attributes"), (11, "inputs")])
def test_clip_on_codes_before_opset_12_is_refused(tmp_path, opset, form):
    """Clip-6 and Clip-11 are defined on float types only: ORT refuses the model."""
    if form == "attributes":
        model = conv_then("Clip", opset, "uint8", min=100.0, max=200.0)
    else:
        model = conv_then("Clip", opset, "uint8", consts=[scalar(100, "uint8"), scalar(200, "uint8")])
    ort_refuses(model)
    assert f"opset {opset}" in refused(model, tmp_path, "act")


# --- Relu on codes -----------------------------------------------------------------------------


def test_relu_on_int8_codes_from_opset_14(tmp_path):
    compiled = exact(conv_then("Relu", 14, "int8"), tmp_path, every_code=True)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


@pytest.mark.parametrize("opset", [10, 13])
def test_relu_on_int8_codes_before_opset_14_is_refused(tmp_path, opset):
    """Relu-6 and Relu-13 are defined on float types only: ORT refuses the model."""
    model = conv_then("Relu", opset, "int8")
    ort_refuses(model)
    refused(model, tmp_path, "act")


# --- Resize-10 (X, scales) and Resize-11+ (X, roi, scales, sizes), QDQ form ---------------------


RESIZES = {
    "Resize-10 (X, scales)": (10, [f32(1, 1, 2, 1.5)], {}),
    "Resize-10 downsampling": (10, [f32(1, 1, 0.5, 0.7)], {}),
    "Resize-11 (X, roi, scales)": (11, [f32(), f32(1, 1, 2, 1.5)], {}),
    "Resize-11 (X, roi, [], sizes)": (11, [f32(), f32(), i64(1, 2, 7, 9)], {}),
    "Resize-11 asymmetric floor": (11, [f32(), f32(1, 1, 0.5, 0.7)],
                                   {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    "Resize-13 (X, '', scales)": (13, [None, f32(1, 1, 2, 1.5)], {}),
    "Resize-13 (X, '', '', sizes)": (13, [None, None, i64(1, 2, 7, 9)], {}),
    "Resize-18 axes": (18, [None, f32(2, 1.5)], {"axes": [2, 3]}),
    "Resize-19 half_pixel_symmetric": (19, [None, f32(1, 1, 2, 1.5)], {"coordinate_transformation_mode": "half_pixel_symmetric"}),
}


@pytest.mark.parametrize("case", list(RESIZES))
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_resize_at_each_opset(tmp_path, case, dtype):
    opset, consts, attrs = RESIZES[case]
    model = qdq("Resize", opset, [1, 2, 4, 6], dtype, consts, mode="nearest", **attrs)
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path, every_code=True)
    assert [n.op for n in compiled.graph.nodes] == ["Resize"]


def test_resize_10_and_11_differ_for_the_same_scales():
    """Why Resize-10 has its own rule: ORT maps output to input pixels differently (asymmetric,
    floor) than Resize-11's defaults (half_pixel, round_prefer_floor)."""
    x = np.arange(48, dtype=np.uint8).reshape(1, 2, 4, 6)
    old = ort_outputs(qdq("Resize", 10, [1, 2, 4, 6], "uint8", [f32(1, 1, 0.5, 0.7)], mode="nearest"), x)[0]
    new = ort_outputs(qdq("Resize", 11, [1, 2, 4, 6], "uint8", [f32(), f32(1, 1, 0.5, 0.7)], mode="nearest"), x)[0]
    assert old.shape == new.shape and not np.array_equal(old, new)


# --- Pad-2 (attributes) and Pad-11+ (inputs) -----------------------------------------------------


PADS = [0, 0, 1, 2, 0, 0, 2, 0]


@pytest.mark.parametrize("value", [0.0, 0.73])
def test_qdq_pad_2_stays_float_in_ort_and_is_refused(tmp_path, value):
    model = qdq("Pad", 10, [1, 2, 4, 6], pads=PADS, value=value)
    assert ort_float_ops(model) == {"Pad"}
    refused(model, tmp_path, "op")


def test_pad_2_on_codes_is_refused(tmp_path):
    """Pad-2 is defined on float types only: ORT refuses the model."""
    model = on_codes("Pad", 10, [1, 2, 4, 6], pads=PADS)
    ort_refuses(model)
    assert "opset 10" in refused(model, tmp_path, "op")


QDQ_PADS = {
    "Pad-11 (pads, value)": (11, [i64(*PADS), f32(0.73)], {}),
    "Pad-11 reflect": (11, [i64(*PADS)], {"mode": "reflect"}),
    "Pad-13 (pads, value)": (13, [i64(*PADS), f32(-0.2)], {}),
    "Pad-13 edge": (13, [i64(*PADS)], {"mode": "edge"}),
    "Pad-18 (pads, value, axes)": (18, [i64(1, 2, 2, 0), f32(0.73), i64(2, 3)], {}),
    "Pad-19 wrap": (19, [i64(*PADS)], {"mode": "wrap"}),
}


@pytest.mark.parametrize("case", list(QDQ_PADS))
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_pad_at_each_opset(tmp_path, case, dtype):
    """ORT runs a QDQ Pad in float; with equal parameters that is a Pad of the codes, the value quantized."""
    opset, consts, attrs = QDQ_PADS[case]
    compiled = exact(qdq("Pad", opset, [1, 2, 4, 6], dtype, consts, **attrs), tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Pad"]


@pytest.mark.parametrize("opset, consts", [(11, [i64(*PADS), scalar(9, "int8")]), (13, [i64(*PADS)]),
                                           (18, [i64(1, 2, 2, 0), scalar(-9, "int8"), i64(2, -1)])],
                         ids=["Pad-11", "Pad-13", "Pad-18 axes"])
def test_pad_on_codes_at_each_opset(tmp_path, opset, consts):
    compiled = exact(on_codes("Pad", opset, [1, 2, 4, 6], "int8", consts), tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Pad"]


# --- Split-2 (split attribute), Split-13 (split input), Split-18 (num_outputs) --------------------


SPLITS = {
    "Split-2 attribute (opset 10)": (10, [], 2, {"split": [2, 5]}),
    "Split-2 equal (opset 10)": (10, [], 7, {}),
    "Split-11 attribute": (11, [], 3, {"split": [1, 4, 2]}),
    "Split-13 input": (13, [i64(2, 5)], 2, {}),
    "Split-13 equal": (13, [], 7, {}),
    "Split-18 num_outputs (uneven)": (18, [], 3, {"num_outputs": 3}),
    "Split-18 input": (18, [i64(6, 1)], 2, {}),
}


@pytest.mark.parametrize("case", list(SPLITS))
@pytest.mark.parametrize("form", ["QDQ", "codes"])
def test_split_at_each_opset(tmp_path, case, form):
    opset, consts, outputs, attrs = SPLITS[case]
    if form == "QDQ":
        model = qdq("Split", opset, [1, 2, 3, 7], "uint8", consts, outputs, axis=-1, **attrs)
        assert ort_runs_as_integers(model)
    else:
        model = on_codes("Split", opset, [1, 2, 3, 7], "int8", consts, outputs, axis=-1, **attrs)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Split"]


# --- Squeeze / Unsqueeze: axes attribute (1-12) and input (13+) ---------------------------------


SQUEEZES = {
    "Squeeze-1 axes attribute": ("Squeeze", 11, [1, 2, 1, 6], [], {"axes": [0, -2]}),
    "Squeeze-1 no axes": ("Squeeze", 11, [1, 2, 1, 6], [], {}),
    "Squeeze-13 axes input": ("Squeeze", 13, [1, 2, 1, 6], [i64(0, -2)], {}),
    "Squeeze-13 no axes": ("Squeeze", 13, [1, 2, 1, 6], [], {}),
    "Unsqueeze-1 axes attribute": ("Unsqueeze", 11, [2, 6], [], {"axes": [0, -1]}),
    "Unsqueeze-13 axes input": ("Unsqueeze", 13, [2, 6], [i64(0, -1)], {}),
}


@pytest.mark.parametrize("case", list(SQUEEZES))
@pytest.mark.parametrize("form", ["QDQ", "codes"])
def test_squeeze_unsqueeze_at_each_opset(tmp_path, case, form):
    op, opset, shape, consts, attrs = SQUEEZES[case]
    if form == "QDQ":
        model = qdq(op, opset, shape, "int8", consts, **attrs)
        assert ort_runs_as_integers(model)
    else:
        model = on_codes(op, opset, shape, "uint8", consts, **attrs)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Reshape"]


# --- Softmax: 2-D coercion at axis before 13, one axis from 13 ----------------------------------


SOFTMAX_OUT = {"uint8": (1 / 256, 0), "int8": (1 / 256, -128)}


@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize("axis", [1, None])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_softmax_at_each_opset(tmp_path, opset, axis, dtype):
    attrs = {} if axis is None else {"axis": axis}
    model = qdq("Softmax", opset, [1, 4, 8, 8], dtype, out=SOFTMAX_OUT[dtype], **attrs)
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path, every_code=True, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearSoftmax"]


def test_softmax_before_and_from_13_differ_on_4d_input():
    """axis=1 on (1, 4, 8, 8): before 13, one softmax over the 256 values flattened from axis 1;
    from 13, a softmax over the 4 channels at each of the 64 positions."""
    x = np.random.default_rng(0).integers(0, 256, (1, 4, 8, 8)).astype(np.uint8)
    old = ort_outputs(qdq("Softmax", 11, [1, 4, 8, 8], out=SOFTMAX_OUT["uint8"], axis=1), x)[0]
    new = ort_outputs(qdq("Softmax", 13, [1, 4, 8, 8], out=SOFTMAX_OUT["uint8"], axis=1), x)[0]
    assert not np.array_equal(old, new)


# --- ReduceMean: axes attribute (1-17), axes input (18): float in ORT -----------------------------


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_qdq_reduce_mean_is_refused_as_a_float_op(tmp_path, opset):
    if opset < 18:
        model = qdq("ReduceMean", opset, [1, 3, 4, 4], name="mean", axes=[2, 3], keepdims=1)
    else:
        model = qdq("ReduceMean", opset, [1, 3, 4, 4], consts=[i64(2, 3)], name="mean", keepdims=1)
    assert ort_float_ops(model) == {"ReduceMean"}
    message = refused(model, tmp_path, "mean")
    assert "GlobalAveragePool" in message


# --- Slice-1 (attributes) and Slice-10+ (inputs) -------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_slice_1_attributes_on_codes(tmp_path, dtype):
    model = on_codes("Slice", 9, [3, 2, 5], dtype, starts=[1, -3], ends=[100, -1], axes=[0, 2])
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Slice"]


SLICES = {
    "Slice-10 (starts, ends)": (10, [i64(1, 0, -3), i64(100, 2, -1)]),
    "Slice-10 (starts, ends, axes, steps)": (10, [i64(2, -1), i64(-100, -6), i64(0, 2), i64(-1, -2)]),
    "Slice-13 (starts, ends, axes, steps)": (13, [i64(0, 4), i64(3, 0), i64(-3, -1), i64(2, -3)]),
}


@pytest.mark.parametrize("case", list(SLICES))
@pytest.mark.parametrize("form", ["QDQ", "codes"])
def test_slice_inputs_at_each_opset(tmp_path, case, form):
    opset, consts = SLICES[case]
    if form == "QDQ":
        model = qdq("Slice", opset, [3, 2, 5], "int8", consts)
        assert ort_runs_as_integers(model)
    else:
        model = on_codes("Slice", opset, [3, 2, 5], "uint8", consts)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Slice"]


# --- MaxPool: float before 12, on codes from 12 --------------------------------------------------


@pytest.mark.parametrize("opset", [10, 11])
def test_qdq_maxpool_before_12_runs_in_float_in_ort_and_is_refused(tmp_path, opset):
    model = qdq("MaxPool", opset, [1, 2, 5, 5], name="pool", kernel_shape=[2, 2])
    assert ort_float_ops(model) == {"MaxPool"}
    refused(model, tmp_path, "pool")


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("opset", [12, 13])
def test_qdq_maxpool_from_12_runs_on_codes(tmp_path, dtype, opset):
    model = qdq("MaxPool", opset, [1, 2, 5, 5], dtype, name="pool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0])
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["MaxPool"]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_maxpool_12_on_codes(tmp_path, dtype):
    compiled = exact(on_codes("MaxPool", 12, [1, 2, 5, 5], dtype, name="pool", kernel_shape=[3, 2]), tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["MaxPool"]


def test_maxpool_11_on_codes_is_refused(tmp_path):
    """MaxPool-11 is defined on float types only: ORT refuses the model."""
    model = on_codes("MaxPool", 11, [1, 2, 5, 5], name="pool", kernel_shape=[2, 2])
    ort_refuses(model)
    assert "opset 11" in refused(model, tmp_path, "pool")


# --- Gemm: C required before 11 -----------------------------------------------------------------


def qdq_gemm(opset: int, bias: bool) -> onnx.ModelProto:
    g = QdqGraph(opset)
    x = g.dequantize(g.input("x", [2, 16], np.uint8), 0.02, 128, np.uint8)
    inputs = [x, g.weights((8, 16), 0.01)]
    if bias:
        inputs.append(g.int32_bias((8,), np.float32(0.02) * np.float32(0.01)))
    y = g.node("Gemm", inputs, name="gemm", transB=1)
    g.output(g.quantize(y, 0.05, 100, np.uint8), "y")
    return g.model()


@pytest.mark.parametrize("opset, bias", [(10, True), (11, False), (11, True), (13, False)])
def test_qdq_gemm_at_each_opset(tmp_path, opset, bias):
    model = qdq_gemm(opset, bias)
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["QGemm"]


# --- Concat: axis optional in Concat-1, required from 4 ------------------------------------------


def test_concat_1_on_codes_is_refused(tmp_path):
    """Concat-1 (opset 3) is defined on float types only (and its axis is optional): ORT refuses it."""
    model = on_codes("Concat", 3, [2, 3], name="concat")
    ort_refuses(model)
    assert "opset 3" in refused(model, tmp_path, "concat")


def test_concat_4_on_codes(tmp_path):
    inits = {"b": np.arange(8, dtype=np.int8).reshape(2, 4)}
    node = helper.make_node("Concat", ["x", "b"], ["y"], name="concat", axis=1)
    model = make_model([node], [("x", "int8", [2, 3])], [("y", "int8", None)], inits, opset=4)
    compiled = exact(model, tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["Concat"]


@pytest.mark.parametrize("opset", [10, 13])
def test_qdq_concat_at_each_opset(tmp_path, opset):
    g = QdqGraph(opset)
    a = g.dequantize(g.input("a", [2, 3], np.uint8), 0.05, 7, np.uint8)
    b = g.dequantize(g.input("b", [2, 4], np.uint8), 0.03, 200, np.uint8)
    g.output(g.quantize(g.node("Concat", [a, b], name="concat", axis=-1), 0.05, 7, np.uint8), "y")
    model = g.model()
    assert ort_runs_as_integers(model)
    compiled = exact(model, tmp_path, every_code=True)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConcat"]


# --- ArgMax: select_last_index from 12 -----------------------------------------------------------


TIES = [np.array([[5, 9, 9, 1, 9, 0, 0, 2, 9, 3]] * 3, np.uint8)]


@pytest.mark.parametrize("opset, attrs", [(11, {}), (12, {}), (12, {"select_last_index": 1}),
                                          (13, {"select_last_index": 1, "keepdims": 0})])
def test_argmax_on_codes_at_each_opset(tmp_path, opset, attrs):
    model = on_codes("ArgMax", opset, [3, 10], "uint8", name="arg", out_type="int64", axis=1, **attrs)
    compiled = exact(model, tmp_path, extra_cases=[TIES])
    assert [n.op for n in compiled.graph.nodes] == ["ArgExtreme"]


def test_qdq_argmax_select_last_index(tmp_path):
    g = QdqGraph(12)
    x = g.dequantize(g.input("x", [3, 10], np.uint8), 0.5, 3, np.uint8)
    g.output(g.node("ArgMax", [x], name="arg", axis=1, select_last_index=1), "index")
    compiled = exact(g.model(), tmp_path, extra_cases=[TIES])
    assert [n.op for n in compiled.graph.nodes] == ["ArgExtreme"]


# --- one opset's signature written at another opset ----------------------------------------------


WRONG_SIGNATURES = {
    "Clip-11 inputs at opset 10": lambda: qdq("Clip", 10, [1, 4], consts=[f32(-0.5), f32(2.0)], out=CLIP_OUT),
    "Clip-6 attributes at opset 11": lambda: qdq("Clip", 11, [1, 4], min=-0.5, max=2.0, out=CLIP_OUT),
    "Resize-11 (X, roi, scales) at opset 10": lambda: qdq("Resize", 10, [1, 2, 4, 6], consts=[f32(), f32(1, 1, 2, 2)]),
    "Resize-10 (X, scales) at opset 11": lambda: qdq("Resize", 11, [1, 2, 4, 6], consts=[f32(1, 1, 2, 2)]),
    "Pad-11 inputs at opset 10": lambda: qdq("Pad", 10, [1, 2, 4, 6], consts=[i64(*PADS)]),
    "Pad-2 attributes at opset 11": lambda: on_codes("Pad", 11, [1, 2, 4, 6], pads=PADS),
    "Split-13 input at opset 11": lambda: qdq("Split", 11, [1, 7], consts=[i64(2, 5)], outputs=2, axis=1),
    "Split-2 attribute at opset 13": lambda: qdq("Split", 13, [1, 7], outputs=2, axis=1, split=[2, 5]),
    "Split-18 num_outputs at opset 17": lambda: qdq("Split", 17, [1, 7], outputs=3, axis=1, num_outputs=3),
    "Squeeze-13 input at opset 11": lambda: qdq("Squeeze", 11, [1, 2, 1, 6], consts=[i64(0, 2)]),
    "Squeeze-1 attribute at opset 13": lambda: qdq("Squeeze", 13, [1, 2, 1, 6], axes=[0, 2]),
    "Unsqueeze-1 attribute at opset 13": lambda: on_codes("Unsqueeze", 13, [2, 6], axes=[0]),
    "Slice-10 inputs at opset 9": lambda: on_codes("Slice", 9, [3, 2, 5], consts=[i64(1, -3), i64(100, -1)]),
    "Slice-1 attributes at opset 10": lambda: on_codes("Slice", 10, [3, 2, 5], starts=[1, -3], ends=[100, -1], axes=[0, 2]),
    "ReduceMean-1 attribute at opset 18": lambda: qdq("ReduceMean", 18, [1, 3, 4, 4], axes=[2, 3], keepdims=1),
    "Gemm-11 without C at opset 10": lambda: qdq_gemm(10, bias=False),
    "ArgMax select_last_index at opset 11": lambda: on_codes("ArgMax", 11, [3, 10], out_type="int64", axis=1,
                                                             select_last_index=1),
}


@pytest.mark.parametrize("case", list(WRONG_SIGNATURES))
def test_a_signature_written_at_the_wrong_opset_is_refused(tmp_path, case):
    """An exporter bug or a hand edit: the node's inputs or attributes are another opset's. ORT
    refuses the model; qcc must not read it with either signature."""
    model = WRONG_SIGNATURES[case]()
    node = next(n for n in model.graph.node if n.op_type == case.split(" ")[0].split("-")[0])
    ort_refuses(model)
    refused(model, tmp_path, node.name)


# --- the registry ----------------------------------------------------------------------------


@pytest.fixture
def registry_restored():
    """Restore the registry's module state after the test (a test op that registers stays out of
    the rest of the suite); yields a check that nothing changed since the test began."""
    tables = [base.QOPERATOR_RULES, base.QDQ_RULES, base.ISLAND_RULES, base.PROPAGATION_RULES, base.TFLITE_RULES]
    saved_names = dict(base._BY_NAME)
    saved_rules = [{key: list(rules) for key, rules in table.rules.items()} for table in tables]

    def unchanged() -> bool:
        return base._BY_NAME == saved_names and all(
            {key: list(rules) for key, rules in table.rules.items() if rules} == saved
            for table, saved in zip(tables, saved_rules))

    yield unchanged
    base._BY_NAME.clear()
    base._BY_NAME.update(saved_names)
    for table, saved in zip(tables, saved_rules):
        table.rules.clear()
        table.rules.update({key: list(rules) for key, rules in saved.items()})


OVERLAPS = {  # the op whose rule is claimed again, the kind of rule, the new op's rules (the last one clashes)
    "QOperator Split 12-14 over 11-12 and 13-17": ("Split", "onnx_ops", (OnnxOp("", "Split", 12, 14),)),
    "QOperator Split 18 exactly": ("Split", "onnx_ops", (OnnxOp("", "Split", 18, 18),)),
    "QOperator Resize 1+ over 10 and 11+": ("Resize", "onnx_ops", (OnnxOp("", "Resize"),)),
    "QOperator com.microsoft QLinearAdd 3": ("QLinearAdd", "onnx_ops", (OnnxOp("com.microsoft", "QLinearAdd", 3, 3),)),
    "QOperator a new op, then Split 13": ("Split", "onnx_ops", (OnnxOp("", "GatherElements"), OnnxOp("", "Split", 13, 13))),
    "QDQ Softmax 12-13 over 1-12 and 13+": ("QLinearSoftmax", "qdq_float_ops", (OnnxOp("", "Softmax", 12, 13),)),
    "QDQ MaxPool 20+ inside 12+": ("MaxPool", "qdq_float_ops", (OnnxOp("", "MaxPool", 20),)),
    "island Clip 1-6 over 6+": ("ClampCodes", "island_float_ops", (OnnxOp("", "Clip", 1, 6),)),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_overlapping_rules_for_one_onnx_op_raise(registry_restored, case):
    existing, kind, rules = OVERLAPS[case]
    owner, rule = type(op_named(existing)), rules[-1]
    clash = type("ClashingOp", (owner,), {"name": "TestClashingOp", "onnx_ops": (), "qdq_float_ops": (),
                                          "island_float_ops": (), "qdq_propagation_ops": (), "tflite_ops": (), kind: rules})
    finder = {"onnx_ops": base.op_for_onnx, "qdq_float_ops": base.qdq_op_for, "island_float_ops": base.island_op_for}[kind]
    before = [finder(rule.domain, rule.op_type, opset) for opset in range(1, 26)]
    assert owner in {type(op) for op in before}
    with pytest.raises(RegistryError, match=rf"ClashingOp and {owner.__name__} both register {rule.qualified_name}"):
        register(clash)
    assert registry_restored()  # checked before anything was recorded: no name, no rule left behind
    # the op modules' own rules are untouched: each opset still finds the op it found before
    assert [finder(rule.domain, rule.op_type, opset) for opset in range(1, 26)] == before


def test_overlapping_tflite_versions_raise_and_adjacent_ones_do_not(registry_restored):
    """TFLite ops register like ONNX ops, by op version: CONV_2D at 8 again clashes, CONV_2D at 9+ does not."""
    owner = type(op_named("QLinearConv"))
    clash = type("ClashingOp", (owner,), {"name": "TestClashingOp", "onnx_ops": (), "qdq_float_ops": (),
                                          "tflite_ops": (TfliteOp("CONV_2D", 8, 8),)})
    with pytest.raises(RegistryError, match=r"ClashingOp and QLinearConv both register CONV_2D \(TFLite import\) at "
                                            r"version 8 / versions 1-8"):
        register(clash)
    assert registry_restored()
    adjacent = type("AdjacentOp", (owner,), {"name": "TestAdjacentOp", "onnx_ops": (), "qdq_float_ops": (),
                                             "tflite_ops": (TfliteOp("CONV_2D", 9),)})
    register(adjacent)
    assert type(base.op_for_tflite("CONV_2D", 9)).__name__ == "AdjacentOp"
    assert type(base.op_for_tflite("CONV_2D", 8)) is owner


def test_adjacent_rules_do_not_overlap(registry_restored):
    """The bounds are inclusive: Relu on codes at 1-13 beside ClampCodes' 14+ is no clash."""
    owner = type(op_named("ClampCodes"))
    adjacent = type("AdjacentOp", (owner,), {"name": "TestAdjacentOp", "onnx_ops": (OnnxOp("", "Relu", 1, 13),),
                                             "island_float_ops": (), "qdq_propagation_ops": (), "tflite_ops": ()})
    register(adjacent)
    assert type(op_for_onnx("", "Relu", 13)).__name__ == "AdjacentOp"
    assert type(op_for_onnx("", "Relu", 14)) is owner


def test_a_second_op_under_an_existing_name_raises(registry_restored):
    owner = type(op_named("Split"))
    twin = type("TwinOp", (owner,), {"onnx_ops": (), "qdq_float_ops": (), "qdq_propagation_ops": (),
                                     "tflite_ops": ()})  # name inherited
    with pytest.raises(RegistryError, match="TwinOp and .* are both named 'Split'"):
        register(twin)
    assert registry_restored()  # refused before anything was recorded
    assert type(op_named("Split")) is owner


def test_failed_registrations_left_nothing_behind():
    """After the tests above (the fixture restores what a test registration recorded), no test op
    is registered under any name or rule, so the rest of the suite sees the op modules' registry."""
    test_ops = ("ClashingOp", "AdjacentOp", "TwinOp")
    assert not any(type(op).__name__ in test_ops for op in base.all_ops())
    for table in (base.QOPERATOR_RULES, base.QDQ_RULES, base.ISLAND_RULES, base.PROPAGATION_RULES, base.TFLITE_RULES):
        assert not any(type(op).__name__ in test_ops for rules in table.rules.values() for _, op in rules)
    assert base.op_for_onnx("", "GatherElements", 13) is None
