"""Ops exporters write around quantized networks: ArgMax/ArgMin on codes, matrix products with a
constant N-D (batched) right side, a float input flattened before its QuantizeLinear, and the
float ReduceMean refused with what to write instead. (PRelu and Max(x, alpha*x) are float
islands: tests/test_float_islands.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_exact
from qdq_builder import QdqGraph
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model


def save(model, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1, "keepdims": 0}, {"axis": -1, "select_last_index": 1}],
                         ids=["defaults", "axis 1 keepdims 0", "last index"])
@pytest.mark.parametrize("dtype, zero", [(np.uint8, 128), (np.int8, 0)])
def test_qdq_argmax_runs_on_codes(tmp_path, op, attrs, dtype, zero):
    """DQ -> ArgMax: ORT takes the float extreme, qcc the code's; a coarse scale makes many ties."""
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [2, 5, 3, 4]), 0.05, zero, dtype)
    y = g.node("Conv", [x, g.weights((6, 5, 1, 1), 0.01)], name="conv")
    y = g.dequantize(g.quantize(y, 0.5, zero, dtype), 0.5, zero, dtype)
    g.output(g.node(op, [y], name="arg", **attrs), "index")
    compiled = check_exact(g.model(), tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv", "ArgExtreme"]
    assert compiled.graph.tensor(compiled.graph.outputs[0]).dtype == "int64"


def test_argmax_on_codes_in_a_qoperator_model(tmp_path):
    g = QdqGraph(13)
    g.output(g.node("ArgMax", [g.input("x", [3, 10], np.uint8)], name="arg", axis=1), "index")
    check_exact(g.model(), tmp_path, n_random=4)


def test_argmax_whose_indices_feed_another_op_is_refused(tmp_path):
    g = QdqGraph(13)
    arg = g.node("ArgMax", [g.input("x", [3, 10], np.uint8)], name="arg", axis=1)
    g.output(g.node("Reshape", [arg, g.const(np.array([3], np.int64))]), "y")
    with pytest.raises(QccError, match=r"node 'arg' \(ArgMax\): its int64 indices must be a graph output"):
        compile_model(save(g.model(), tmp_path), Options())


@pytest.mark.parametrize("a_shape, b_shape", [([2, 5, 4], [2, 4, 3]), ([5, 4], [2, 4, 3]), ([3, 1, 5, 4], [2, 4, 3]),
                                              ([4], [2, 4, 3]), ([2, 5, 4], [1, 4, 3])])
def test_matmul_with_a_constant_batched_right_side(tmp_path, a_shape, b_shape):
    g = QdqGraph(13, seed=8)
    a = g.qdq(g.input("a", a_shape), 0.05, 128)
    b = g.dequantize(g.const(g.rng.integers(-127, 128, b_shape).astype(np.int8)), 0.01, 0, np.int8)
    g.output(g.dequantize(g.quantize(g.node("MatMul", [a, b], name="mm"), 0.1, 100), 0.1, 100))
    compiled = check_exact(g.model(), tmp_path, n_random=3)
    expected = np.broadcast_shapes(tuple(([1] + a_shape if len(a_shape) == 1 else a_shape)[:-2]), tuple(b_shape[:-2]))
    m = [] if len(a_shape) == 1 else [a_shape[-2]]
    assert compiled.graph.tensor(compiled.graph.outputs[0]).shape == (*expected, *m, b_shape[-1])
    assert sum(n.op == "QLinearMatMul" for n in compiled.graph.nodes) == int(np.prod(expected))


def test_qlinear_matmul_with_a_3d_constant_b_as_onnx_node_tests_write_it(tmp_path):
    """ONNX's own QLinearMatMul node test shape: A (2, 2, 4) times a constant B (2, 4, 3)."""
    g = QdqGraph(13, seed=9)
    inputs = [g.input("a", [2, 2, 4], np.uint8), g.const(np.float32(0.0066)), g.const(np.uint8(113)),
              g.const(g.rng.integers(0, 256, (2, 4, 3)).astype(np.uint8)), g.const(np.float32(0.00705)),
              g.const(np.uint8(114)), g.const(np.float32(0.0107)), g.const(np.uint8(118))]
    g.output(g.node("QLinearMatMul", inputs, name="mm"), "y", np.uint8, [2, 2, 3])
    compiled = check_exact(g.model(), tmp_path, n_random=4)
    assert sum(n.op == "QLinearMatMul" for n in compiled.graph.nodes) == 2


@pytest.mark.parametrize("where", ["input", "output", "transposed input"])
def test_flatten_at_the_float_boundary_moves_onto_the_codes(tmp_path, where):
    """A QOperator model whose float input is flattened before its QuantizeLinear (or whose
    dequantized output is flattened): ORT flattens floats, qcc the codes; the values are the same."""
    g = QdqGraph(13)
    x = g.input("x", [1, 2, 3, 4])
    if where == "transposed input":  # ORT moves this QuantizeLinear before the Transpose (QDQ propagation)
        x = g.node("Reshape", [g.node("Transpose", [x], perm=[0, 2, 3, 1]), g.const(np.array([1, 24], np.int64))])
    else:
        x = g.node("Flatten", [x], name="flatten") if where == "input" else \
            g.node("Reshape", [x, g.const(np.array([1, 24], np.int64))])
    q = g.quantize(x, 0.05, 128)
    w = g.const(g.rng.integers(-127, 128, (24, 6)).astype(np.int8))
    y = g.node("QLinearMatMul", [q, g.const(np.float32(0.05)), g.const(np.uint8(128)), w, g.const(np.float32(0.01)),
                                 g.const(np.int8(0)), g.const(np.float32(0.1)), g.const(np.uint8(100))], name="mm")
    y = g.dequantize(y, 0.1, 100)
    if where == "output":
        y = g.node("Flatten", [g.node("Reshape", [y, g.const(np.array([1, 2, 3], np.int64))])], name="flatten", axis=2)
    g.output(y)
    compiled = check_exact(g.model(), tmp_path, n_random=3)
    assert all(compiled.graph.tensor(n).dtype == "uint8" for n in compiled.graph.inputs + compiled.graph.outputs)


def test_float_reduce_mean_is_refused_with_what_to_write(tmp_path):
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 6, 6]), 0.05, 128)
    y = g.qdq(g.node("Conv", [x, g.weights((8, 4, 1, 1), 0.01)], name="conv"), 0.05, 128)
    y = g.node("ReduceMean", [y], name="pool", axes=[2, 3], keepdims=1)
    g.output(g.dequantize(g.quantize(y, 0.05, 128), 0.05, 128))
    with pytest.raises(QccError, match=r"'pool' \(ReduceMean\) .*it is a GlobalAveragePool, which ORT runs as an integer "
                                       r"kernel .*write it so in the model"):
        compile_model(save(g.model(), tmp_path), Options())
