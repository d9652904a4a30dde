"""ONNX Runtime's level-1 graph rewrites that decide which QDQ groups become integer kernels:
MatMulAddFusion (MatMul + Add -> Gemm -> QGemm), the QDQ propagation across byte movers, and
WeightBiasQuantization (a float bias quantized by ORT). Each graph is shaped as an exporter writes
it; ORT's own optimized graph is the oracle: where ORT runs it as integers, qcc compiles it and
C == reference == ORT on every value; where ORT leaves float inside, qcc refuses it by name."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_exact
from qdq_builder import QdqGraph, ort_runs_as_integers
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model

S_X, S_W, S_Y = 0.02, 0.01, 0.05


def fully_connected(a_shape, bias_shape, *, bias="int32", bias_first=False, activation=np.uint8, opset=13,
                    relu=False, second_reader=False, per_column=False):
    """A -> [Q -> DQ] -> MatMul(DQ(W)) -> Add(bias) -> [Relu] -> Q -> DQ -> y."""
    g = QdqGraph(opset)
    zero = 128 if activation == np.uint8 else 0
    a = g.qdq(g.input("a", a_shape), S_X, zero, activation)
    k, n = a_shape[-1], 8
    w = g.weights((k, n), S_W, axis=1 if per_column else None)
    mm = g.node("MatMul", [a, w], name="fc")
    if bias == "int32":
        b = g.int32_bias(bias_shape, np.float32(S_X) * np.float32(S_W))
    else:  # a float constant, as PyTorch's QDQ export writes it
        b = g.const((g.rng.standard_normal(bias_shape) * 0.3).astype(np.float32), "bias")
    y = g.node("Add", [b, mm] if bias_first else [mm, b], name="bias_add")
    if relu:
        y = g.node("Relu", [y])
        zero = 0 if activation == np.uint8 else -128
    if second_reader:
        g.output(g.node("Relu", [mm]), "also")
    g.output(g.dequantize(g.quantize(y, S_Y, zero, activation), S_Y, zero, activation))
    return g.model()


def tf2onnx_fully_connected():
    """tf2onnx's TFLite FULLY_CONNECTED: int8 input without a Q, Reshape to 2-D, MatMul + Add of an
    int32 bias, an int8 output without a DQ."""
    g = QdqGraph(17)
    x = g.dequantize(g.input("x", [1, 4, 4, 3], np.int8), S_X, -3, np.int8)
    flat = g.node("Reshape", [x, g.const(np.array([1, 48], np.int64))])
    mm = g.node("MatMul", [flat, g.weights((48, 10), S_W, axis=1)], name="fc")
    scale = np.float32(S_X) * (g.rng.uniform(0.5, 1.5, 10).astype(np.float32) * np.float32(S_W))
    y = g.node("Add", [mm, g.int32_bias((10,), scale, axis=0)])
    g.output(g.quantize(y, S_Y, 5, np.int8))
    return g.model()


FULLY_CONNECTED = {
    "bias (N)": fully_connected([1, 16], [8]),
    "bias first": fully_connected([1, 16], [8], bias_first=True),
    "bias (1, N)": fully_connected([1, 16], [1, 8]),
    "bias (M, N)": fully_connected([3, 16], [3, 8]),
    "bias (M, 1)": fully_connected([3, 16], [3, 1]),
    "3-D A, bias (N)": fully_connected([1, 5, 16], [8]),
    "3-D A, bias (1, N)": fully_connected([1, 5, 16], [1, 8]),
    "1-D A": fully_connected([16], [8]),
    "int8 activations": fully_connected([2, 16], [8], activation=np.int8, per_column=True),
    "float bias (N)": fully_connected([2, 16], [8], bias="float", per_column=True),
    "float bias (1, N)": fully_connected([1, 16], [1, 8], bias="float"),
    "float bias, 3-D A": fully_connected([1, 5, 16], [8], bias="float"),
    "redundant Relu": fully_connected([1, 16], [8], relu=True),
    "MatMul read twice": fully_connected([1, 16], [8], second_reader=True),
    "opset 11": fully_connected([1, 16], [8], opset=11),
    "opset 21": fully_connected([1, 16], [8], opset=21),
    "tf2onnx": tf2onnx_fully_connected(),
}


def conv_with_float_bias(*, per_channel=False, axis=0, relu_zero=None):
    """PyTorch's QDQ export: DQ(x) -> Conv(DQ(W), float bias) [-> Relu] -> Q."""
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 6, 6]), S_X, 128)
    if per_channel:
        codes = g.const(g.rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8))
        attrs = {} if axis is None else {"axis": axis}
        w = g.node("DequantizeLinear", [codes, g.const(g.rng.uniform(0.005, 0.02, 8).astype(np.float32)),
                                        g.const(np.zeros(8, np.int8))], **attrs)
    else:
        w = g.weights((8, 4, 3, 3), S_W)
    y = g.node("Conv", [x, w, g.const((g.rng.standard_normal(8) * 0.5).astype(np.float32))], name="conv", pads=[1, 1, 1, 1])
    zero = 100
    if relu_zero is not None:
        y, zero = g.node("Relu", [y]), relu_zero
    g.output(g.dequantize(g.quantize(y, S_Y, zero), S_Y, zero))
    return g.model()


CONV_FLOAT_BIAS = {
    "per tensor": conv_with_float_bias(),
    "per channel, axis 0": conv_with_float_bias(per_channel=True),
    "per channel, axis -4": conv_with_float_bias(per_channel=True, axis=-4),
    "per channel, no axis (means 1)": conv_with_float_bias(per_channel=True, axis=None),
    "redundant Relu": conv_with_float_bias(relu_zero=0),
    "Relu inside the range": conv_with_float_bias(relu_zero=100),
}


def movers(case: str, opset: int = 13):
    """Byte movers between QDQ groups, where only ORT's Q/DQ propagation finds the groups."""
    g = QdqGraph(opset)
    if case == "NHWC int8 input: DQ -> Transpose -> Conv":
        x = g.node("Transpose", [g.dequantize(g.input("x", [1, 6, 6, 4], np.int8), S_X, -5, np.int8)], perm=[0, 3, 1, 2])
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
        g.output(g.quantize(y, S_Y, 3, np.int8))
        return g.model()
    x = g.input("x", [1, 4, 6, 6])
    if case == "input -> Reshape -> Q":
        x = g.qdq(g.node("Reshape", [x, g.const(np.array([1, 4, 3, 12], np.int64))]), S_X, 128)
    else:
        x = g.qdq(x, S_X, 128)
    if case == "Conv -> Reshape -> Q":
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
        y = g.node("Reshape", [y, g.const(np.array([1, 8, 36], np.int64))])
    elif case in ("DQ -> MaxPool -> Conv", "DQ -> Slice -> Unsqueeze -> Conv"):
        if case.startswith("DQ -> MaxPool"):
            x = g.node("MaxPool", [x], kernel_shape=[2, 2])
        else:
            x = g.node("Slice", [x, *(g.const(np.array([v], np.int64)) for v in (1, 5, 3))])
            x = g.node("Squeeze", [g.node("Unsqueeze", [x, g.const(np.array([0], np.int64))]), g.const(np.array([0], np.int64))])
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
    elif case == "DQ -> Transpose -> inverse Transpose -> Conv":
        x = g.node("Transpose", [g.node("Transpose", [x], perm=[0, 2, 3, 1])], perm=[0, 3, 1, 2])
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
    elif case == "DQ -> Reshape -> Reshape -> Conv":
        x = g.node("Reshape", [g.node("Reshape", [x, g.const(np.array([1, 4, 36], np.int64))]),
                               g.const(np.array([1, 4, 6, 6], np.int64))])
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
    elif case == "DQ -> Flatten -> Gemm":
        y = g.node("Gemm", [g.node("Flatten", [x]), g.weights((144, 8), S_W)], name="gemm")
    elif case == "DQ -> Transpose -> two Convs":
        t = g.node("Transpose", [x], perm=[0, 1, 3, 2])
        y = g.node("Add", [g.qdq(g.node("Conv", [t, g.weights((8, 4, 1, 1), S_W)], name="conv_a"), S_Y, 100),
                           g.qdq(g.node("Conv", [t, g.weights((8, 4, 1, 1), S_W)], name="conv_b"), S_Y, 100)])
    elif case == "DQ -> Transpose -> output":
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
        g.output(g.node("Transpose", [g.qdq(y, S_Y, 100)], perm=[0, 2, 3, 1]))
        return g.model()
    else:
        y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
    g.output(g.dequantize(g.quantize(y, S_Y, 100), S_Y, 100))
    return g.model()


MOVERS = {name: movers(name) for name in [
    "NHWC int8 input: DQ -> Transpose -> Conv", "input -> Reshape -> Q", "Conv -> Reshape -> Q", "DQ -> MaxPool -> Conv",
    "DQ -> Slice -> Unsqueeze -> Conv", "DQ -> Transpose -> inverse Transpose -> Conv", "DQ -> Reshape -> Reshape -> Conv",
    "DQ -> Flatten -> Gemm", "DQ -> Transpose -> two Convs", "DQ -> Transpose -> output"]}
MOVERS["DQ -> MaxPool-11 -> Conv"] = movers("DQ -> MaxPool -> Conv", opset=11)
MOVERS["DQ -> Reshape-21 (opset 21)"] = movers("input -> Reshape -> Q", opset=21)

def noop(kind: str, where: str):
    """DQ -> [no-op] -> Conv -> [no-op] -> Q: nodes ORT's level-1 rules delete, or not."""
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 6, 6]), S_X, 128)

    def insert(t):
        if kind in ("Identity", "Dropout"):
            return g.node(kind, [t])
        if kind == "Cast to float":
            return g.node("Cast", [t], to=1)
        op, value = {"+ 0": ("Add", 0), "- 0": ("Sub", 0), "* 1": ("Mul", 1), "/ 1": ("Div", 1), "+ 0.5": ("Add", 0.5),
                     "* ones of 36 values": ("Mul", np.ones((1, 1, 6, 6))), "0 - x": ("Sub", 0)}[kind]
        const = g.const(np.asarray(value, np.float32))
        return g.node(op, [const, t] if kind == "0 - x" else [t, const])
    if where == "before":
        x = insert(x)
    y = g.node("Conv", [x, g.weights((8, 4, 1, 1), S_W)], name="conv")
    if where == "after":
        y = insert(y)
    g.output(g.dequantize(g.quantize(y, S_Y, 100), S_Y, 100))
    return g.model()


NOOPS = {f"{kind} {where} Conv": noop(kind, where)
         for kind in ("Identity", "Dropout", "Cast to float", "+ 0", "- 0", "* 1", "/ 1", "+ 0.5", "* ones of 36 values", "0 - x")
         for where in ("before", "after")}

def followed(kind: str):
    """Level-1 fusions of a Conv or Gemm with what follows it (ConvAddFusion, ConvMulFusion,
    ConvBNFusion need constant float weights, so in a QDQ graph they do not happen), and a
    Gemm's activation (the QDQ selector drops a Relu the Q makes redundant)."""
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 6, 6] if kind.startswith("Conv") else [2, 16]), S_X, 128)
    zero = 100
    if kind.startswith("Conv"):
        y = g.node("Conv", [x, g.weights((8, 4, 3, 3), S_W)], name="conv", pads=[1, 1, 1, 1])
        if kind == "Conv + Add(DQ(int32))":
            y = g.node("Add", [y, g.int32_bias((8, 1, 1), np.float32(S_X) * np.float32(S_W))])
        elif kind == "Conv + Add(float)":
            y = g.node("Add", [y, g.const(g.rng.standard_normal((8, 1, 1)).astype(np.float32))])
        elif kind == "Conv + Mul(float)":
            y = g.node("Mul", [y, g.const(g.rng.uniform(0.5, 1.5, (8, 1, 1)).astype(np.float32))])
        else:
            y = g.node("BatchNormalization", [y, *(g.const(v.astype(np.float32)) for v in (
                g.rng.uniform(0.5, 1.5, 8), g.rng.standard_normal(8), g.rng.standard_normal(8), g.rng.uniform(0.5, 1.5, 8)))])
    else:
        y = g.node("Relu", [g.node("Gemm", [x, g.weights((16, 8), S_W)], name="gemm")])
        zero = 0 if kind == "Gemm + Relu, Q zero point 0" else 100
    g.output(g.dequantize(g.quantize(y, S_Y, zero), S_Y, zero))
    return g.model()


FOLLOWED = {kind: followed(kind) for kind in ("Conv + Add(DQ(int32))", "Conv + Add(float)", "Conv + Mul(float)",
                                              "Conv + BatchNormalization", "Gemm + Relu, Q zero point 0",
                                              "Gemm + Relu, Q zero point 100")}

# What ORT 1.32 does with each graph (from its optimized graph; the test checks it still does).
ORT_LEAVES_FLOAT = {"3-D A, bias (1, N)", "float bias (1, N)", "MatMul read twice", "per channel, no axis (means 1)",
                    "Relu inside the range", "DQ -> Flatten -> Gemm", "DQ -> MaxPool-11 -> Conv",
                    "Conv + Add(DQ(int32))", "Conv + Add(float)", "Conv + Mul(float)", "Conv + BatchNormalization",
                    "Gemm + Relu, Q zero point 100",
                    *(f"{kind} {where} Conv" for kind in ("+ 0.5", "* ones of 36 values", "0 - x") for where in ("before", "after"))}
CASES = {**FULLY_CONNECTED, **CONV_FLOAT_BIAS, **MOVERS, **NOOPS, **FOLLOWED}


@pytest.mark.parametrize("name", list(CASES))
def test_qcc_compiles_exactly_what_ort_runs_as_integers(tmp_path, name):
    model = CASES[name]
    integer = ort_runs_as_integers(model)
    assert integer == (name not in ORT_LEAVES_FLOAT), f"ORT 1.32 no longer does what this test expects of '{name}'"
    if integer:
        compiled = check_exact(model, tmp_path, n_random=3)  # C == reference == ORT
        assert all(n.op not in ("QuantizeLinear", "DequantizeLinear") for n in compiled.graph.nodes)
    else:
        path = tmp_path / "model.onnx"
        path.write_bytes(model.SerializeToString())
        # (ORT leaves the per-channel weights without an axis in float, and its DequantizeLinear kernel then
        # refuses 8 scales along axis 1 of 4 channels when the model runs: qcc says that first)
        refusal = ("axis 1; ONNX Runtime refuses this model" if name == "per channel, no axis (means 1)" else
                   "stays in float in ONNX Runtime because")
        with pytest.raises(QccError, match=refusal):
            compile_model(path, Options())


def test_matmul_add_becomes_one_qgemm_with_the_reshapes_around_it(tmp_path):
    path = tmp_path / "fc.onnx"
    path.write_bytes(FULLY_CONNECTED["3-D A, bias (N)"].SerializeToString())
    assert [n.op for n in compile_model(path, Options()).graph.nodes] == ["Reshape", "QGemm", "Reshape"]
    path.write_bytes(FULLY_CONNECTED["tf2onnx"].SerializeToString())
    graph = compile_model(path, Options()).graph
    assert [n.op for n in graph.nodes] == ["Reshape", "QGemm"] and graph.nodes[1].name == "fc"


def test_a_float_bias_is_quantized_with_orts_float32_arithmetic(tmp_path):
    """round_half_even(f32(b) / f32(s_x * s_w)), independently of qcc: the compiled bias equals it."""
    model = CONV_FLOAT_BIAS["per channel, axis 0"]
    init = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w_dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    x_dq = next(n for n in model.graph.node if n.output[0] == conv.input[0])
    from onnx import numpy_helper

    value = {k: numpy_helper.to_array(v) for k, v in init.items()}
    scale = np.float32(value[x_dq.input[1]]) * value[w_dq.input[1]].astype(np.float32)
    expected = np.rint(value[conv.input[2]] / scale).astype(np.int64)
    path = tmp_path / "conv.onnx"
    path.write_bytes(model.SerializeToString())
    node = compile_model(path, Options()).graph.nodes[0]
    assert node.op == "QLinearConv" and np.array_equal(node.attrs["bias"], expected)
    check_exact(model, tmp_path, n_random=3)


def test_the_rewrites_keep_the_exporters_node_order(tmp_path):
    """The node order is the C's execution order, which the memory plan follows. A model written
    depth-first (each branch's layers together, as PyTorch and tf2onnx write them) goes through the
    QDQ propagation, which inserts nodes and restores a topological order: the branches must stay
    in the exporter's order, not be interleaved level by level."""
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 8, 8]), S_X, 128)
    branches = []
    for b in "ab":
        y = x
        for depth in range(3):
            y = g.node("Conv", [y, g.weights((4, 4, 1, 1), S_W)], name=f"{b}{depth}")
            y = g.qdq(y, S_X, 128)
        branches.append(g.node("Transpose", [y], perm=[0, 1, 3, 2]))  # Q/DQ propagate across it
    g.output(g.dequantize(g.quantize(g.node("Concat", branches, axis=1), S_X, 128), S_X, 128))
    model = g.model()
    assert ort_runs_as_integers(model)
    compiled = check_exact(model, tmp_path, n_random=2)
    convs = [n.name for n in compiled.graph.nodes if n.op == "QLinearConv"]
    assert convs == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_topological_sort_moves_only_what_must_move():
    """Nodes already in order keep it; an appended node moves to just before its first reader; a
    cycle is refused by name."""
    from onnx import TensorProto, helper

    from qcc.onnx_graph import topological_sort

    def relu(source, result, name=None):
        return helper.make_node("Relu", [source], [result], name=name or result)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([relu("x", "a1"), relu("a1q", "a2"), relu("x", "b1"), relu("b1", "b2"), relu("a1", "a1q")],
                              "g", [x], [])
    topological_sort(graph)
    assert [n.name for n in graph.node] == ["a1", "a1q", "a2", "b1", "b2"]
    cycle = helper.make_graph([relu("z", "y", "first"), relu("y", "z", "second")], "g", [x], [])
    with pytest.raises(QccError, match=r"cycle through node 'first' \(Relu\)"):
        topological_sort(cycle)
