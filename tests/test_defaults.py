"""Optional inputs, attribute defaults and opset versions: every default the ops read, once absent
and once given explicitly, in graphs shaped as exporters write them, each held to C == reference ==
ONNX Runtime on every value (or, where ORT runs the group in float and qcc has no exact form, refused
by name). ORT's numbers are the truth: a default that qcc read differently would show here."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_exact
from qdq_builder import QdqGraph
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model

S = 0.05  # the scale of every activation here


def around(op_builder, *, opset=13, dtype=np.int8, zero=-128, shape=(1, 3, 5, 5), out_scale=S, out_zero=None):
    """x -> Q -> DQ -> [op] -> Q -> DQ -> y: the op between quantization nodes, as a QDQ exporter writes it."""
    g = QdqGraph(opset, seed=3)
    x = g.qdq(g.input("x", shape), S, zero, dtype)
    out_zero = zero if out_zero is None else out_zero
    g.output(g.dequantize(g.quantize(op_builder(g, x), out_scale, out_zero, dtype), out_scale, out_zero, dtype))
    return g.model()


def exact(model, tmp_path, **kwargs):
    return check_exact(model, tmp_path, n_random=3, **kwargs)


# --- Pad: the float pad value (0.0 when absent) is quantized; on codes the default value is code 0 ---


@pytest.mark.parametrize("dtype, zero", [(np.int8, -128), (np.uint8, 7)])
@pytest.mark.parametrize("value", ["absent", "empty name", 0.0, 1.5])
def test_qdq_pad_value_default_is_real_zero(tmp_path, dtype, zero, value):
    def pad(g, x):
        inputs = [x, g.const(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))]
        if value == "empty name":
            inputs.append("")
        elif value != "absent":
            inputs.append(g.const(np.float32(value)))
        return g.node("Pad", inputs, mode="constant")
    compiled = exact(around(pad, dtype=dtype, zero=zero), tmp_path)
    node = next(n for n in compiled.graph.nodes if n.op == "Pad")
    assert node.attrs["value"] == (zero if value in ("absent", "empty name", 0.0) else zero + 30)


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_qdq_pad_modes_without_value(tmp_path, mode):
    exact(around(lambda g, x: g.node("Pad", [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode=mode)),
          tmp_path)


@pytest.mark.parametrize("value", [None, 9])
def test_pad_on_codes_default_is_code_zero(tmp_path, value):
    """In a QOperator graph Pad works on the codes: its default value is the code 0 (ONNX), not Z."""
    g = QdqGraph(13)
    x = g.input("x", [1, 2, 3, 3], np.uint8)
    inputs = [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]
    if value is not None:
        inputs.append(g.const(np.uint8(value)))
    g.output(g.node("Pad", inputs))
    compiled = exact(g.model(), tmp_path)
    assert compiled.graph.nodes[0].attrs["value"] == (value or 0)


# --- Clip: attributes before opset 11, optional inputs after; absent bounds are float32's limits ---

CLIPS = {
    "opset 10, min and max attributes": (10, {"min": -0.5, "max": 0.7}, None),
    "opset 10, max attribute only": (10, {"max": 0.7}, None),
    "opset 10, no attributes": (10, {}, None),
    "opset 13, min and max inputs": (13, {}, (-0.5, 0.7)),
    "opset 13, min input only": (13, {}, (-0.5, None)),
    "opset 13, max input only": (13, {}, (None, 0.7)),
    "opset 13, no inputs": (13, {}, (None, None)),
}


@pytest.mark.parametrize("case", list(CLIPS))
def test_clip_in_a_float_island_reads_its_bounds_by_opset(tmp_path, case):
    """DQ -> Clip -> Q with another output scale: a float Clip in ORT, a table in qcc. Before opset
    11 the bounds are attributes: reading inputs there dropped the clamp (up to 141 LSB off)."""
    opset, attrs, inputs = CLIPS[case]

    def clip(g, x):
        names = [x]
        if inputs is not None:
            names += ["" if v is None else g.const(np.float32(v)) for v in inputs]
            while names[-1] == "" and len(names) > 1:
                names.pop()
        return g.node("Clip", names, **attrs)
    compiled = exact(around(clip, opset=opset, out_scale=0.01, out_zero=0), tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["FloatIsland"]


@pytest.mark.parametrize("opset, attrs, inputs", [(10, {"min": 0.0, "max": 6.0}, None), (13, {}, (0.0, 6.0)),
                                                  (13, {}, ("", 6.0))])
def test_clip_after_conv_is_dropped_when_the_quantize_covers_it(tmp_path, opset, attrs, inputs):
    """ORT's redundant-Clip rule reads the bounds the same way (an absent min is float32's lowest)."""
    def conv_clip(g, x):
        y = g.node("Conv", [x, g.weights((4, 3, 3, 3), 0.01)], pads=[1, 1, 1, 1])
        names = [y] + ([] if inputs is None else [n if n == "" else g.const(np.float32(n)) for n in inputs])
        return g.node("Clip", names, **attrs)
    compiled = exact(around(conv_clip, opset=opset, dtype=np.uint8, zero=0, out_scale=6 / 255, out_zero=0), tmp_path)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


# --- QuantizeLinear / DequantizeLinear: zero point absent (uint8 0) or given ---


@pytest.mark.parametrize("zero", ["absent", "explicit"])
def test_quantize_linear_zero_point_default(tmp_path, zero):
    g = QdqGraph(13)
    x = g.input("x", [1, 3, 4, 4])
    if zero == "absent":
        q = g.node("QuantizeLinear", [x, g.const(np.float32(S))])
        d = g.node("DequantizeLinear", [q, g.const(np.float32(S))])
    else:
        d = g.qdq(x, S, 0, np.uint8)
    y = g.node("Conv", [d, g.weights((4, 3, 1, 1), 0.01)])
    g.output(g.dequantize(g.quantize(y, S, 3), S, 3))
    compiled = exact(g.model(), tmp_path)
    assert compiled.graph.tensor(compiled.graph.inputs[0]).dtype == "uint8"


def test_quantize_linear_output_dtype_attribute_opset_21(tmp_path):
    """Opset 21: without a zero point, QuantizeLinear's output_dtype says the type (int8 here)."""
    g = QdqGraph(21)
    x = g.input("x", [1, 3, 4, 4])
    q = g.node("QuantizeLinear", [x, g.const(np.float32(S))], output_dtype=3)  # INT8
    d = g.node("DequantizeLinear", [q, g.const(np.float32(S))])
    y = g.node("Conv", [d, g.weights((4, 3, 1, 1), 0.01)])
    g.output(g.dequantize(g.quantize(y, S, 3, np.int8), S, 3, np.int8))
    compiled = exact(g.model(), tmp_path)
    assert compiled.graph.tensor(compiled.graph.inputs[0]).dtype == "int8"


# --- per-channel weights: the DequantizeLinear axis (default 1) ---


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_per_channel_weight_axis_of_a_matrix_product(tmp_path, op, axis):
    """B of shape (K, N) with a per-channel scale of length K == N: axis 1 (the default) is per
    column and ORT fuses it; MatMul with axis 0 (per row) stays float in ORT, Gemm's is fused and
    read per column (measured)."""
    g = QdqGraph(13, seed=5)
    x = g.qdq(g.input("x", [3, 4]), S, 128)
    attrs = {} if axis is None else {"axis": axis}
    w = g.node("DequantizeLinear", [g.const(g.rng.integers(-127, 128, (4, 4)).astype(np.int8)),
                                    g.const(np.array([0.01, 0.02, 0.005, 0.03], np.float32)), g.const(np.zeros(4, np.int8))],
               **attrs)
    g.output(g.dequantize(g.quantize(g.node(op, [x, w], name="fc"), S, 100), S, 100))
    model = g.model()
    if op == "MatMul" and axis == 0:
        path = tmp_path / "m.onnx"
        path.write_bytes(model.SerializeToString())
        with pytest.raises(QccError, match=r"'fc' \(MatMul\) stays in float in ONNX Runtime because its B is quantized per row"):
            compile_model(path, Options())
    else:
        exact(model, tmp_path)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_per_channel_conv_weight_axis(tmp_path, axis):
    """Conv weights (4, 4, 3, 3) with 4 scales: ORT fuses every axis into QLinearConv and reads the
    scales per output channel, axis 1 (the default, per input channel in ONNX) included; qcc
    computes what ORT does (measured)."""
    g = QdqGraph(13, seed=6)
    x = g.qdq(g.input("x", [1, 4, 6, 6]), S, 128)
    attrs = {} if axis is None else {"axis": axis}
    w = g.node("DequantizeLinear", [g.const(g.rng.integers(-127, 128, (4, 4, 3, 3)).astype(np.int8)),
                                    g.const(np.array([0.01, 0.02, 0.005, 0.03], np.float32)), g.const(np.zeros(4, np.int8))],
               **attrs)
    g.output(g.dequantize(g.quantize(g.node("Conv", [x, w], name="conv", pads=[1, 1, 1, 1]), S, 100), S, 100))
    assert [n.op for n in exact(g.model(), tmp_path).graph.nodes] == ["QLinearConv"]


# --- byte movers whose inputs and attributes changed across opsets ---

MOVERS = {
    "Slice-10 no axes, no steps": (10, lambda g, x: g.node("Slice", [x, g.const(np.array([0, 1, 1, 0], np.int64)),
                                                                   g.const(np.array([1, 3, 4, 5], np.int64))])),
    "Slice-13 no axes, no steps": (13, lambda g, x: g.node("Slice", [x, g.const(np.array([0, 1, 1, 0], np.int64)),
                                                                   g.const(np.array([1, 3, 4, 5], np.int64))])),
    "Slice-13 axes and steps": (13, lambda g, x: g.node("Slice", [x, *(g.const(np.array(v, np.int64)) for v in
                                                                      ([4], [0], [3], [-2]))])),
    "Resize-10 scales": (10, lambda g, x: g.node("Resize", [x, g.const(np.array([1, 1, 2, 1.5], np.float32))])),
    "Resize-13 defaults": (13, lambda g, x: g.node("Resize", [x, "", g.const(np.array([1, 1, 2, 1.5], np.float32))])),
    "Resize-13 explicit defaults": (13, lambda g, x: g.node("Resize", [x, "", g.const(np.array([1, 1, 2, 1.5], np.float32))],
                                                            mode="nearest", coordinate_transformation_mode="half_pixel",
                                                            nearest_mode="round_prefer_floor")),
    "Resize-13 sizes": (13, lambda g, x: g.node("Resize", [x, "", "", g.const(np.array([1, 3, 9, 7], np.int64))])),
    "Flatten default axis": (13, lambda g, x: g.node("Flatten", [x])),
    "Flatten axis 2": (13, lambda g, x: g.node("Flatten", [x], axis=2)),
}


@pytest.mark.parametrize("case", list(MOVERS))
def test_byte_movers_across_opsets(tmp_path, case):
    opset, build = MOVERS[case]
    exact(around(build, opset=opset), tmp_path)


SPLITS = {
    "Split-11 equal parts": (11, [], {"axis": 2}),
    "Split-11 split attribute": (11, [], {"axis": 3, "split": [2, 3]}),
    "Split-13 default axis 0 of a batch of 2": (13, [], {}),
    "Split-13 split input": (13, [[2, 3]], {"axis": 3}),
    "Split-18 num_outputs": (18, [], {"axis": 3, "num_outputs": 2}),
}


@pytest.mark.parametrize("case", list(SPLITS))
def test_split_sizes_and_axis_across_opsets(tmp_path, case):
    """x -> Q -> DQ -> Split -> (Q -> DQ) per output."""
    opset, split_input, attrs = SPLITS[case]
    g = QdqGraph(opset)
    shape = [2, 3, 4, 4] if "batch" in case else [1, 3, 4, 5]
    x = g.qdq(g.input("x", shape), S, 3)
    inputs = [x] + [g.const(np.array(v, np.int64)) for v in split_input]
    for i, part in enumerate(g.node("Split", inputs, outputs=2, **attrs)):
        g.output(g.dequantize(g.quantize(part, S, 3), S, 3), f"y{i}")
    exact(g.model(), tmp_path)


# --- attribute defaults of ops that compute ---

COMPUTE = {
    "LeakyRelu default alpha": lambda g, x: g.node("LeakyRelu", [x]),
    "LeakyRelu alpha 0.01": lambda g, x: g.node("LeakyRelu", [x], alpha=0.01),
    "HardSigmoid defaults": lambda g, x: g.node("HardSigmoid", [x]),
    "HardSigmoid alpha 0.2, beta 0.5": lambda g, x: g.node("HardSigmoid", [x], alpha=0.2, beta=0.5),
    "Gemm without C": lambda g, x: g.node("Gemm", [x, g.weights((5, 6), 0.01)]),
    "Gemm transB and C": lambda g, x: g.node("Gemm", [x, g.weights((6, 5), 0.01), g.int32_bias((6,), np.float32(S * 0.01))],
                                              transB=1),
    "Conv without bias, default strides and pads": lambda g, x: g.node("Conv", [x, g.weights((4, 3, 3, 3), 0.01)]),
    "Conv explicit strides, pads, dilations, group": lambda g, x: g.node(
        "Conv", [x, g.weights((4, 3, 3, 3), 0.01)], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1),
    "Softmax-13 default axis": lambda g, x: g.node("Softmax", [x]),
    "Softmax-13 axis -1": lambda g, x: g.node("Softmax", [x], axis=-1),
    "AveragePool defaults": lambda g, x: g.node("AveragePool", [x], kernel_shape=[2, 2]),
    "AveragePool explicit defaults": lambda g, x: g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[1, 1],
                                                          pads=[0, 0, 0, 0], ceil_mode=0, count_include_pad=0),
    "MaxPool defaults": lambda g, x: g.node("MaxPool", [x], kernel_shape=[2, 2]),
}
SHAPES = {"Gemm without C": (3, 5), "Gemm transB and C": (3, 5), "Softmax-13 default axis": (2, 7),
          "Softmax-13 axis -1": (2, 7)}


@pytest.mark.parametrize("case", list(COMPUTE))
def test_attribute_defaults_absent_and_explicit(tmp_path, case):
    softmax = case.startswith("Softmax")
    exact(around(COMPUTE[case], shape=SHAPES.get(case, (1, 3, 5, 5)), dtype=np.uint8, zero=128,
                 out_scale=1 / 256 if softmax else S, out_zero=0 if softmax else 128), tmp_path)
