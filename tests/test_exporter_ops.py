"""Ops exporters write around quantized networks: ArgMax/ArgMin on codes, matrix products with a
constant N-D (batched) right side, a float input reshaped, flattened or transposed before its
QuantizeLinear (and dequantized codes moved before a graph output), and the float ReduceMean
refused with what to write instead. (PRelu and Max(x, alpha*x) are float islands:
tests/test_float_islands.py.)"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from helpers import check_exact
from models import quantize
from qdq_builder import QdqGraph
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE
from qcc.numerics.quantize_linear import quantize_linear
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


def realistic_case(path, float_io: bool = False) -> list[np.ndarray]:
    """A smooth image with a little noise over the input's real range: as codes (its QuantizeLinear
    applied) or, with float_io, as the floats themselves."""
    graph = compile_model(path, Options(float_io=float_io)).graph
    case = []
    for name in graph.inputs:
        tensor = graph.tensor(name)
        quantized = tensor if tensor.dtype != "float32" else graph.tensor(graph.consumers(name)[0].outputs[0])
        scale, zero = quantized.quant.scalar()
        lo, hi = DTYPE_RANGE[quantized.dtype]
        grid = np.indices(tensor.shape).sum(axis=0) if tensor.shape else np.zeros(())
        wave = 0.5 + 0.45 * np.sin(grid * 0.37) + np.random.default_rng(3).normal(0, 0.03, tensor.shape)
        real = (np.float32(scale) * ((lo - zero) + wave * (hi - lo))).astype(np.float32)
        case.append(real if tensor.dtype == "float32" else quantize_linear(real, scale, zero, tensor.dtype))
    return case


def qlinear_matmul(g, q, k, n, dtype, zero=None):
    zero = (128 if dtype == np.uint8 else 0) if zero is None else zero
    out_zero = 100 if dtype == np.uint8 else -28
    w = g.const(g.rng.integers(-127, 128, (k, n)).astype(np.int8))
    y = g.node("QLinearMatMul", [q, g.const(np.float32(0.05)), g.const(np.asarray(zero, dtype)), w,
                                 g.const(np.float32(0.01)), g.const(np.int8(0)), g.const(np.float32(0.1)),
                                 g.const(np.asarray(out_zero, dtype))], name="mm")
    return g.dequantize(y, 0.1, out_zero, dtype)


def qlinear_conv(g, q, cin, dtype):
    zero = 128 if dtype == np.uint8 else 0
    w = g.const(g.rng.integers(-127, 128, (6, cin, 3, 3)).astype(np.int8))
    y = g.node("QLinearConv", [q, g.const(np.float32(0.05)), g.const(np.asarray(zero, dtype)), w,
                               g.const(np.float32(0.01)), g.const(np.int8(0)), g.const(np.float32(0.2)),
                               g.const(np.asarray(zero - 28, dtype))], name="conv", pads=[1, 1, 1, 1])
    return g.dequantize(y, 0.2, zero - 28, dtype)


def shape_arithmetic(g, x):
    """[batch, -1] as PyTorch's x.view(x.size(0), -1) writes it: Shape -> Gather -> Unsqueeze -> Concat."""
    batch = g.node("Gather", [g.node("Shape", [x]), g.const(np.array(0, np.int64))], axis=0)
    batch = g.node("Unsqueeze", [batch, g.const(np.array([0], np.int64))])
    return g.node("Concat", [batch, g.const(np.array([-1], np.int64))], axis=0)


# QOperator models: float input [1, 8, 16] -> (value movers) -> QuantizeLinear -> QLinearMatMul or
# QLinearConv -> DequantizeLinear -> (value movers) -> output. Each: (opset, input side, output side).
RESHAPES = {
    "constant shape": (13, lambda g, x: g.node("Reshape", [x, g.const(np.array([8, 16], np.int64))], name="reshape"), None),
    "0 copies a dimension, -1 inferred": (13, lambda g, x: g.node("Reshape", [x, g.const(np.array([0, -1], np.int64))],
                                                                    name="reshape"), None),
    # (with allowzero=1 a 0 would be an empty dimension, which qcc's static shapes do not have)
    "allowzero": (14, lambda g, x: g.node("Reshape", [x, g.const(np.array([-1, 16], np.int64))], name="reshape",
                                          allowzero=1), None),
    "shape from Shape -> Gather -> Concat": (13, lambda g, x: g.node("Reshape", [x, shape_arithmetic(g, x)],
                                                                     name="reshape"), None),
    "to 4-D before a QLinearConv": (13, lambda g, x: g.node("Reshape", [x, g.const(np.array([1, 8, 4, 4], np.int64))],
                                                            name="reshape"), None),
    # ORT copies the QuantizeLinear across the Reshape, but not across the Flatten after it
    "Reshape -> Flatten": (13, lambda g, x: g.node("Flatten", [g.node(
        "Reshape", [x, g.const(np.array([1, 2, 4, 16], np.int64))], name="reshape")], name="flatten", axis=2), None),
    "Flatten -> Reshape": (13, lambda g, x: g.node("Reshape", [g.node("Flatten", [x], name="flatten", axis=2),
                                                                g.const(np.array([8, 16], np.int64))], name="reshape"), None),
    "Reshape -> Transpose -> Reshape": (13, lambda g, x: g.node("Reshape", [g.node("Transpose", [g.node(
        "Reshape", [x, g.const(np.array([2, 4, 16], np.int64))], name="reshape")], perm=[1, 0, 2]),
        g.const(np.array([4, 32], np.int64))], name="reshape2"), None),
    "output: Reshape": (13, None, lambda g, y: g.node("Reshape", [y, g.const(np.array([1, -1], np.int64))], name="reshape")),
    "output: Flatten -> Reshape": (13, None, lambda g, y: g.node("Reshape", [g.node("Flatten", [y], name="flatten"),
                                                                               g.const(np.array([4, 16], np.int64))],
                                                                  name="reshape")),
}


def boundary_model(case: str, dtype):
    opset, before, after = RESHAPES[case]
    g = QdqGraph(opset, seed=5)
    x = g.input("x", [1, 8, 16])
    x = before(g, x) if before else g.node("Reshape", [x, g.const(np.array([8, 16], np.int64))])
    q = g.quantize(x, 0.05, 128 if dtype == np.uint8 else 0, dtype)
    if case == "to 4-D before a QLinearConv":
        y = qlinear_conv(g, q, 8, dtype)
    else:
        k = {"0 copies a dimension, -1 inferred": 128, "shape from Shape -> Gather -> Concat": 128,
             "Reshape -> Flatten": 64, "Reshape -> Transpose -> Reshape": 32}
        y = qlinear_matmul(g, q, k.get(case, 16), 8, dtype)
    g.output(after(g, y) if after else y)
    return g.model()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("case", list(RESHAPES))
def test_reshape_at_the_float_boundary_moves_onto_the_codes(tmp_path, case, dtype):
    """A QOperator model whose float input is reshaped before its QuantizeLinear (or whose dequantized
    output is reshaped): ORT moves floats, qcc the codes; C == reference == ORT on every value."""
    path = tmp_path / "model.onnx"
    path.write_bytes(boundary_model(case, dtype).SerializeToString())
    compiled = check_exact(path, tmp_path, n_random=3, extra_cases=[realistic_case(path)])
    graph = compiled.graph
    assert all(graph.tensor(n).dtype == np.dtype(dtype).name for n in graph.inputs + graph.outputs)
    assert all(n.op not in ("QuantizeLinear", "DequantizeLinear") for n in graph.nodes)


@pytest.mark.parametrize("op", ["Reshape", "Transpose", "Flatten"])
def test_a_quantize_without_zero_point_after_a_value_mover(tmp_path, op):
    """ORT copies such a QuantizeLinear across Reshape and Transpose but leaves the copy's
    DequantizeLinear -> op -> QuantizeLinear in float (no explicit zero point); moving floats is exact,
    so its result is that of the codes moved, as across Flatten, which ORT does not copy it across."""
    g = QdqGraph(13, seed=6)
    x = g.input("x", [1, 8, 16])
    x = {"Reshape": lambda: g.node("Reshape", [x, g.const(np.array([8, 16], np.int64))], name="mover"),
         "Transpose": lambda: g.node("Transpose", [x], perm=[0, 2, 1], name="mover"),
         "Flatten": lambda: g.node("Flatten", [x], axis=2, name="mover")}[op]()
    q = g.node("QuantizeLinear", [x, g.const(np.float32(0.05))])
    g.output(qlinear_matmul(g, q, 8 if op == "Transpose" else 16, 4, np.uint8, zero=0))
    path = tmp_path / "model.onnx"
    path.write_bytes(g.model().SerializeToString())
    compiled = check_exact(path, tmp_path, n_random=3, extra_cases=[realistic_case(path)])
    assert [n.op for n in compiled.graph.nodes] == [op if op != "Flatten" else "Reshape", "QLinearMatMul"]


@pytest.mark.parametrize("case, why", [
    ("read by two QuantizeLinear", r"'reshape' is read by 2 nodes \(node 'q_a' \(QuantizeLinear\), node 'q_b'"),
    ("also a graph output", r"'floats' is also a graph output"),
    ("input read twice", r"'x' is read by 2 nodes \(node 'reshape' \(Reshape\), node 'q_b' \(QuantizeLinear\)\)"),
    ("into a float op", r"'reshape' goes to node 'relu' \(Relu\), which neither only moves values nor is a QuantizeLinear"),
    ("per-axis QuantizeLinear", r"its QuantizeLinear node 'q_a' \(QuantizeLinear\) does not have a constant scalar scale"),
])
def test_a_reshaped_float_input_that_cannot_move_is_refused_by_name(tmp_path, case, why):
    g = QdqGraph(13)
    x = g.input("x", [1, 8, 16])
    r = g.node("Reshape", [x, g.const(np.array([8, 16], np.int64))], name="reshape")
    if case == "per-axis QuantizeLinear":
        q = g.node("QuantizeLinear", [r, g.const(np.full(16, 0.05, np.float32)), g.const(np.full(16, 128, np.uint8))],
                   name="q_a", axis=1)
    else:
        q = g.node("QuantizeLinear", [g.node("Relu", [r], name="relu") if case == "into a float op" else r,
                                      g.const(np.float32(0.05)), g.const(np.uint8(128))], name="q_a")
    g.output(g.dequantize(q, 0.05, 128), "y")
    if case == "read by two QuantizeLinear":
        g.output(g.dequantize(g.node("QuantizeLinear", [r, g.const(np.float32(0.1)), g.const(np.uint8(128))],
                                     name="q_b"), 0.1, 128), "y_b")
    elif case == "input read twice":
        g.output(g.dequantize(g.node("QuantizeLinear", [x, g.const(np.float32(0.1)), g.const(np.uint8(128))],
                                     name="q_b"), 0.1, 128), "y_b")
    elif case == "also a graph output":
        g.output(r, "floats")
    with pytest.raises(QccError) as refused:
        compile_model(save(g.model(), tmp_path), Options())
    message = str(refused.value)
    assert "\n" not in message and "node 'reshape' (Reshape) moves the values of the float graph input 'x'" in message
    assert re.search(why, message), message


def test_a_reshape_with_a_shape_computed_at_run_time_is_refused_by_name(tmp_path):
    g = QdqGraph(13)
    g.inputs.append(onnx.helper.make_tensor_value_info("shape", onnx.TensorProto.INT64, [2]))
    r = g.node("Reshape", [g.input("x", [1, 8, 16]), "shape"], name="reshape")
    g.output(qlinear_matmul(g, g.quantize(r, 0.05, 128), 16, 4, np.uint8))
    with pytest.raises(QccError, match=r"^[^\n]*node 'reshape' \(Reshape\): the shape 'shape' must be a constant initializer"):
        compile_model(save(g.model(), tmp_path), Options())


def mlp_mixer(seed: int = 0, patch: int = 8) -> onnx.ModelProto:
    """A small MLP-Mixer as exported from PyTorch: the [1, 3, 32, 32] float image cut into 16 patches
    of 8x8 by Reshape -> Transpose -> Reshape -> Flatten (x.flatten(0, 1)), a per-patch linear stem,
    one mixer block (token mixing across the 16 patches, channel mixing; Relu for GELU, no LayerNorm,
    which ORT runs in float) and a linear head per token."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name, value):
        inits.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(onnx.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def dense(x, k, n, name):
        w = const(f"{name}_w", (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{name}_mm"),
                            const(f"{name}_b", (rng.standard_normal(n) * 0.1).astype(np.float32))], name)

    side = 32 // patch
    x = node("Reshape", ["image", const("patch_shape", np.array([1, 3, side, patch, side, patch], np.int64))], "patchify")
    x = node("Transpose", [x], "patches_first", perm=[0, 2, 4, 1, 3, 5])
    x = node("Reshape", [x, const("patch_rows_shape", np.array([1, side * side, 3, patch, patch], np.int64))], "patch_rows")
    x = node("Flatten", [x], "tokens", axis=2)  # [16, 192]
    stem = dense(x, 3 * patch * patch, 32, "stem")  # [16, 32]
    t = node("Transpose", [stem], "to_channels", perm=[1, 0])  # [32, 16]
    t = node("Relu", [dense(t, side * side, side * side, "token_mlp")], "token_relu")
    x = node("Add", [stem, node("Transpose", [t], "to_tokens", perm=[1, 0])], "token_residual")
    x = node("Relu", [dense(x, 32, 32, "channel_mlp")], "channel_relu")
    dense(x, 32, 10, "head")
    graph = onnx.helper.make_graph(
        nodes, "mlp_mixer", [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("head", onnx.TensorProto.FLOAT, [side * side, 10])], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_mlp_mixer_with_a_patchified_float_input(tmp_path, quant_format, activation):
    """quantize_static of the MLP-Mixer: its QuantizeLinear comes after the Reshape -> Transpose ->
    Reshape -> Flatten that cuts the image into patches, which qcc runs on the codes."""
    path = quantize(mlp_mixer(), tmp_path / "mixer.onnx", activation=activation, quant_format=quant_format)
    compiled = check_exact(path, tmp_path, n_random=2, extra_cases=[realistic_case(path)])
    assert [n.op for n in compiled.graph.nodes][:4] == ["Reshape", "Transpose", "Reshape", "Reshape"]
    assert compiled.graph.tensor(compiled.graph.inputs[0]).dtype == activation


def test_mlp_mixer_with_float_io_quantizes_the_image_before_patchifying(tmp_path):
    """With --float-io the C quantizes the float image itself, before the patches are cut, and equals
    ORT (which cuts floats, then quantizes) on real-valued images, not only on dequantized codes."""
    path = quantize(mlp_mixer(), tmp_path / "mixer.onnx", activation="uint8", quant_format="QOperator")
    compiled = check_exact(path, tmp_path, n_random=2, float_io=True, extra_cases=[realistic_case(path, float_io=True)])
    assert [n.op for n in compiled.graph.nodes][:2] == ["QuantizeLinear", "Reshape"]


def test_float_reduce_mean_is_refused_with_what_to_write(tmp_path):
    g = QdqGraph(13)
    x = g.qdq(g.input("x", [1, 4, 6, 6]), 0.05, 128)
    y = g.qdq(g.node("Conv", [x, g.weights((8, 4, 1, 1), 0.01)], name="conv"), 0.05, 128)
    y = g.node("ReduceMean", [y], name="pool", axes=[2, 3], keepdims=1)
    g.output(g.dequantize(g.quantize(y, 0.05, 128), 0.05, 128))
    with pytest.raises(QccError, match=r"'pool' \(ReduceMean\) .*it is a GlobalAveragePool, which ORT runs as an integer "
                                       r"kernel .*write it so in the model"):
        compile_model(save(g.model(), tmp_path), Options())
