"""Byte-moving ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose) and Relu/Clip folded into the
producer's clamp, against ONNX Runtime; C against the reference."""

import numpy as np
import pytest
from onnx import helper

from helpers import check_exact, make_model, scalar
from qcc.pipeline import Options, compile_model


def conv1x1(dtype, channels, name="conv", x="x", y="c"):
    """A per-channel 1x1 QLinearConv: the integer op that the tests' byte movers and clamps follow."""
    rng = np.random.default_rng(0)
    inits = {f"{name}_xs": scalar(0.05, np.float32), f"{name}_xz": scalar(3 if dtype == "uint8" else -3, dtype),
             f"{name}_w": rng.integers(-128, 128, (channels, channels, 1, 1)).astype(np.int8),
             f"{name}_ws": np.full(channels, 0.01, np.float32), f"{name}_wz": np.zeros(channels, np.int8),
             f"{name}_ys": scalar(0.04, np.float32), f"{name}_yz": scalar(120 if dtype == "uint8" else -10, dtype)}
    node = helper.make_node("QLinearConv", [x, f"{name}_xs", f"{name}_xz", f"{name}_w", f"{name}_ws", f"{name}_wz",
                                            f"{name}_ys", f"{name}_yz"], [y], name=name)
    return node, inits


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [3, 1, 0, 2], [0, 1, 3, 2]])
def test_transpose_then_reshape_family(tmp_path, dtype, perm):
    shape = [2, 4, 3, 5]
    conv, inits = conv1x1(dtype, 4)
    transposed = [shape[p] for p in perm]
    inits["new_shape"] = np.array([0, -1], np.int64)
    inits["axes"] = np.array([1], np.int64)
    nodes = [conv, helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=perm),
             helper.make_node("Reshape", ["t", "new_shape"], ["r"], name="reshape"),
             helper.make_node("Unsqueeze", ["r", "axes"], ["u"], name="unsqueeze"),
             helper.make_node("Squeeze", ["u", "axes"], ["s"], name="squeeze"),
             helper.make_node("Flatten", ["s"], ["y"], name="flatten", axis=1)]
    rest = int(np.prod(transposed)) // transposed[0]
    model = make_model(nodes, [("x", dtype, shape)], [("y", dtype, [transposed[0], rest])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    # The reshape family moves no bytes: only the conv and the transpose run, the rest share storage.
    assert compiled.plan.same_storage("t", "y")


def test_reshape_of_graph_input_to_graph_output_is_a_copy(tmp_path):
    conv, inits = conv1x1("uint8", 2)
    inits["shape"] = np.array([2, 4], np.int64)
    nodes = [conv, helper.make_node("Reshape", ["x", "shape"], ["x2"], name="reshape")]
    model = make_model(nodes, [("x", "uint8", [1, 2, 2, 2])], [("c", "uint8", [1, 2, 2, 2]), ("x2", "uint8", [2, 4])], inits)
    compiled = check_exact(model, tmp_path, n_random=2)
    assert not compiled.plan.same_storage("x", "x2")


# ONNX defines Relu on int8 but not on uint8 (where it would be the identity anyway).
@pytest.mark.parametrize("dtype, activation", [("int8", "Relu"), ("uint8", "Clip"), ("int8", "Clip"),
                                               ("uint8", "Clip-min-only"), ("int8", "Clip-min-only")])
def test_relu_and_clip_fold_into_the_conv_clamp(tmp_path, dtype, activation):
    conv, inits = conv1x1(dtype, 6)
    inputs = ["c"]
    if activation.startswith("Clip"):
        inits["lo"] = scalar(100 if dtype == "uint8" else -20, dtype)
        inits["hi"] = scalar(200 if dtype == "uint8" else 40, dtype)
        inputs = ["c", "lo"] if activation == "Clip-min-only" else ["c", "lo", "hi"]
    nodes = [conv, helper.make_node(activation.split("-")[0], inputs, ["y"], name="act")]
    opset = 14 if activation == "Relu" else 13
    model = make_model(nodes, [("x", dtype, [1, 6, 5, 5])], [("y", dtype, [1, 6, 5, 5])], inits, opset=opset)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


def test_relu_not_after_an_integer_op_is_refused(tmp_path):
    from qcc.errors import QccError

    inits = {"s": scalar(0.1, np.float32), "z": scalar(-5, "int8")}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("Relu", ["q"], ["r"], name="relu"),
             helper.make_node("DequantizeLinear", ["r", "s", "z"], ["y"], name="dq")]
    model = make_model(nodes, [("x", "float32", [4])], [("y", "float32", [4])], inits, opset=14)
    path = tmp_path / "m.onnx"
    import onnx

    onnx.save(model, str(path))
    with pytest.raises(QccError, match=r"node 'relu' \(Relu\) does not directly follow an integer op"):
        compile_model(path, Options())
