"""QDQ models: DequantizeLinear -> op -> QuantizeLinear groups become the integer ops ORT fuses them
into, bit-exact to ORT; groups ORT leaves in float are refused by name."""

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import check_exact, make_model, scalar
from models import cnn96, quantize
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model
from test_op_movement_and_activation import conv1x1


@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_cnn96_qdq_is_fused_and_exact(tmp_path, activation, per_channel):
    path = quantize(cnn96(), tmp_path / "cnn_qdq.onnx", activation=activation, per_channel=per_channel, quant_format="QDQ")
    compiled = check_exact(path, tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"] * 3 + ["QLinearGlobalAveragePool", "Reshape", "QGemm"]


@pytest.mark.parametrize("quant_format, options", [
    ("QDQ", {"WeightSymmetric": False}), ("QOperator", {"WeightSymmetric": False}), ("QDQ", {"ActivationSymmetric": True})],
    ids=["weight-asym-QDQ", "weight-asym-QOperator", "act-sym-QDQ"])
def test_cnn96_quantizer_options(tmp_path, quant_format, options):
    """uint8 weights with non-zero zero points (the Z_w * sum(x) term at run time); symmetric uint8
    activations (zero point 128, so each Relu stays a float op: an island, compiled to a table)."""
    weight = "uint8" if options.get("WeightSymmetric") is False else "int8"
    # (per channel, ORT 1.32's quantizer writes uint8 weights with zero point 128 whatever WeightSymmetric says)
    path = quantize(cnn96(), tmp_path / "cnn.onnx", activation="uint8", weight=weight, quant_format=quant_format,
                    per_channel=weight != "uint8", extra_options=options)
    compiled = check_exact(path, tmp_path, n_random=3)
    conv = compiled.graph.nodes[0]
    if weight == "uint8":
        assert conv.params["weight_zero"] is not None and conv.params["weight_zero"].any()


def test_float_global_pool_left_by_the_quantizer_is_refused(tmp_path):
    """With symmetric activations the QOperator quantizer leaves Relu -> GlobalAveragePool -> Flatten in
    float; ORT runs them in float32, which qcc has no exact integer form for: the first one is named."""
    path = quantize(cnn96(), tmp_path / "cnn.onnx", activation="uint8", quant_format="QOperator",
                    extra_options={"ActivationSymmetric": True})
    with pytest.raises(QccError, match=r"node 'relu2' \(Relu\) computes in float here"):
        compile_model(path, Options())


def qdq_conv_model(*, weight_dtype="int8", weight_zero=0, with_bias=True, output_q=True, activation="uint8"):
    """input -> Q -> DQ -> Conv(DQ(w), DQ(b)) -> Q -> DQ -> output, written by hand."""
    rng = np.random.default_rng(1)
    lo, hi = (0, 255) if weight_dtype == "uint8" else (-128, 127)
    x_zero = 10 if activation == "uint8" else -10
    inits = {"xs": scalar(0.02, np.float32), "xz": scalar(x_zero, activation),
             "w": rng.integers(lo, hi, (4, 3, 3, 3), endpoint=True).astype(weight_dtype),
             "ws": np.full(4, 0.01, np.float32), "wz": np.full(4, weight_zero, weight_dtype),
             "b": rng.integers(-500, 500, 4).astype(np.int32), "bs": np.full(4, np.float32(0.02) * np.float32(0.01), np.float32),
             "bz": np.zeros(4, np.int32), "ys": scalar(0.05, np.float32), "yz": scalar(x_zero + 3, activation)}
    conv_inputs = ["xd", "wd", "bd"] if with_bias else ["xd", "wd"]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w", axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="dq_b", axis=0),
             helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1])]
    if output_q:
        nodes += [helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"], name="q_out"),
                  helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"], name="dq_out")]
        out = "y"
    else:
        out = "c"
    return make_model(nodes, [("x", "float32", [1, 3, 8, 8])], [(out, "float32", [1, 4, 8, 8])], inits)


@pytest.mark.parametrize("weight_dtype, weight_zero", [("int8", 0), ("uint8", 128), ("uint8", 37)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_hand_written_qdq_conv(tmp_path, weight_dtype, weight_zero, with_bias):
    model = qdq_conv_model(weight_dtype=weight_dtype, weight_zero=weight_zero, with_bias=with_bias)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


def test_qdq_maxpool_and_reshape_run_on_codes(tmp_path):
    conv, inits = conv1x1("uint8", 4, x="x", y="c")
    inits["shape"] = np.array([1, -1], np.int64)
    nodes = [conv,
             helper.make_node("DequantizeLinear", ["c", "conv_ys", "conv_yz"], ["cd"], name="dq1"),
             helper.make_node("MaxPool", ["cd"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "conv_ys", "conv_yz"], ["pq"], name="q1"),
             helper.make_node("DequantizeLinear", ["pq", "conv_ys", "conv_yz"], ["pd"], name="dq2"),
             helper.make_node("Reshape", ["pd", "shape"], ["r"], name="reshape"),
             helper.make_node("QuantizeLinear", ["r", "conv_ys", "conv_yz"], ["y"], name="q2")]
    model = make_model(nodes, [("x", "uint8", [1, 4, 6, 6])], [("y", "uint8", [1, 36])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv", "MaxPool", "Reshape"]


def compile_error(model, tmp_path) -> str:
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(QccError) as error:
        compile_model(path, Options())
    return str(error.value)


def test_conv_without_output_quantize_is_refused(tmp_path):
    message = compile_error(qdq_conv_model(output_q=False), tmp_path)
    assert "node 'conv' (Conv) stays in float in ONNX Runtime because its output does not go to exactly one QuantizeLinear" in message


def test_maxpool_between_different_quantizations_is_refused(tmp_path):
    conv, inits = conv1x1("uint8", 4, x="x", y="c")
    inits.update({"s2": scalar(0.5, np.float32), "z2": scalar(3, "uint8")})
    nodes = [conv, helper.make_node("DequantizeLinear", ["c", "conv_ys", "conv_yz"], ["cd"], name="dq1"),
             helper.make_node("MaxPool", ["cd"], ["p"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "s2", "z2"], ["y"], name="q1")]
    message = compile_error(make_model(nodes, [("x", "uint8", [1, 4, 6, 6])], [("y", "uint8", [1, 4, 5, 5])], inits), tmp_path)
    assert "node 'pool' (MaxPool) stays in float" in message and "different scales or zero points" in message


def test_exporter_shape_arithmetic_is_folded(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, a Constant, ConstantOfShape and Cast: all folded."""
    conv, inits = conv1x1("int8", 4, x="x", y="c")
    inits.update({"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "one_dim": np.array([1], np.int64)})
    nodes = [conv,
             helper.make_node("Shape", ["c"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsqueeze"),
             helper.make_node("Constant", [], ["minus_one"], name="const", value=onnx.numpy_helper.from_array(np.array([-1], np.int64))),
             helper.make_node("ConstantOfShape", ["one_dim"], ["ones"], name="cos", value=onnx.numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Cast", ["ones"], ["ones_i"], name="cast", to=onnx.TensorProto.INT64),
             helper.make_node("Mul", ["minus_one", "ones_i"], ["m1"], name="mul"),
             helper.make_node("Concat", ["batch1", "m1"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["c", "target"], ["y"], name="reshape")]
    model = make_model(nodes, [("x", "int8", [2, 4, 3, 3])], [("y", "int8", [2, 36])], inits)
    compiled = check_exact(model, tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv", "Reshape"]


def test_double_qdq_pair_is_refused(tmp_path):
    inits = {"s1": scalar(0.05, np.float32), "z1": scalar(128, "uint8"), "s2": scalar(0.1, np.float32), "z2": scalar(128, "uint8")}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s1", "z1"], ["a"], name="q1"),
             helper.make_node("DequantizeLinear", ["a", "s1", "z1"], ["b"], name="dq1"),
             helper.make_node("QuantizeLinear", ["b", "s2", "z2"], ["c"], name="q2"),
             helper.make_node("DequantizeLinear", ["c", "s2", "z2"], ["y"], name="dq2")]
    message = compile_error(make_model(nodes, [("x", "float32", [4])], [("y", "float32", [4])], inits), tmp_path)
    assert "'q1' -> 'dq1' -> 'q2' -> 'dq2' is a double QuantizeLinear/DequantizeLinear pair" in message


def test_conv_with_a_relu_the_quantize_does_not_make_redundant_is_refused(tmp_path):
    model = qdq_conv_model()
    graph = model.graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    conv.output[0] = "c0"
    graph.node.insert(list(graph.node).index(conv) + 1, helper.make_node("Relu", ["c0"], ["c"], name="relu"))
    message = compile_error(model, tmp_path)  # the output zero point is 13, not qmin: ORT keeps a float FusedConv
    assert "node 'conv' (Conv) stays in float" in message and "Relu before its QuantizeLinear clamps inside" in message


def test_conv_with_a_redundant_relu_is_fused(tmp_path):
    model = qdq_conv_model()
    for init in model.graph.initializer:
        if init.name == "yz":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array(0, np.uint8), "yz"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.output[0] = "c0"
    model.graph.node.insert(list(model.graph.node).index(conv) + 1, helper.make_node("Relu", ["c0"], ["c"], name="relu"))
    compiled = check_exact(model, tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConv"]


def test_conv_bias_with_a_wrong_scale_is_refused(tmp_path):
    model = qdq_conv_model()
    for init in model.graph.initializer:
        if init.name == "bs":
            init.CopyFrom(onnx.numpy_helper.from_array(np.full(4, 0.02 * 0.01 * 1.05, np.float32), "bs"))
    assert "its bias is not quantized with zero point 0 and scale s_x * s_w" in compile_error(model, tmp_path)


def test_byte_movers_at_the_float_boundary_run_on_codes(tmp_path):
    """float NHWC input -> Transpose -> Q ... DQ -> Reshape -> float output: as ORT does, the
    Transpose and the Reshape run on the codes, and the C takes and returns codes; the convolution then reads
    the channels-last codes in place (the Transpose a view, no copy)."""
    model = qdq_conv_model()
    graph = model.graph
    q_in = next(n for n in graph.node if n.name == "q_in")
    q_in.input[0] = "x_nchw"
    dq_out = next(n for n in graph.node if n.name == "dq_out")
    dq_out.output[0] = "y_flat"
    graph.node.insert(0, helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    graph.node.append(helper.make_node("Reshape", ["y_flat", "flat_shape"], ["y"], name="flatten"))
    graph.input[0].CopyFrom(helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 8, 3]))
    graph.output[0].CopyFrom(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 256]))
    compiled = check_exact(model, tmp_path, n_random=3)
    assert [n.op for n in compiled.graph.nodes] == ["ChannelsFirstView", "QLinearConv", "Reshape"]
    assert compiled.graph.tensor(compiled.graph.inputs[0]).dtype == "uint8"


def test_zero_pad_before_conv_is_absorbed_like_ort_pad_fusion(tmp_path):
    model = qdq_conv_model()
    graph = model.graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    conv.input[0] = "xp"
    del conv.attribute[:]
    conv.attribute.append(helper.make_attribute("pads", [0, 1, 0, 0]))
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64), "pad_amounts"))
    graph.node.insert(list(graph.node).index(conv), helper.make_node("Pad", ["xd", "pad_amounts"], ["xp"], name="pad"))
    graph.output[0].CopyFrom(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 9, 8]))
    compiled = check_exact(model, tmp_path, n_random=3)
    (conv_node,) = compiled.graph.nodes
    assert conv_node.op == "QLinearConv"
    assert conv_node.attrs["pads_begin"] == [1, 1] and conv_node.attrs["pads_end"] == [2, 1]


@pytest.mark.parametrize("opset, axis", [(13, None), (13, 1), (11, None), (11, 1)])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_softmax_is_fused_with_its_opset_semantics(tmp_path, opset, axis, dtype):
    zero_in, zero_out = (100, 0) if dtype == "uint8" else (-20, -128)
    inits = {"s": scalar(0.07, np.float32), "z": scalar(zero_in, dtype), "so": scalar(1 / 256, np.float32), "zo": scalar(zero_out, dtype)}
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node("Softmax", ["xd"], ["p"], name="softmax", **attrs),
             helper.make_node("QuantizeLinear", ["p", "so", "zo"], ["y"], name="q")]
    model = make_model(nodes, [("x", dtype, [2, 10, 3])], [("y", dtype, [2, 10, 3])], inits, opset=opset)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearSoftmax"]


def test_per_channel_activation_dequantize_is_refused(tmp_path):
    model = qdq_conv_model()
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.full(3, 0.02, np.float32), "xs3"),
                                    onnx.numpy_helper.from_array(np.full(3, 10, np.uint8), "xz3")])
    dq_in = next(n for n in model.graph.node if n.name == "dq_in")
    dq_in.input[1], dq_in.input[2] = "xs3", "xz3"
    dq_in.attribute.append(helper.make_attribute("axis", 1))
    assert "its input is quantized per channel" in compile_error(model, tmp_path)


def test_float_weights_are_refused(tmp_path):
    model = qdq_conv_model()
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w_float"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.input[1] = "w_float"
    assert "its weights are float: ORT quantizes them itself" in compile_error(model, tmp_path)


def test_gemm_with_bias_and_alpha_is_refused(tmp_path):
    inits = {"s": scalar(0.1, np.float32), "z": scalar(3, "uint8"), "w": np.ones((4, 2), np.int8), "ws": scalar(0.01, np.float32),
             "wz": scalar(0, "int8"), "b": np.ones(2, np.int32), "bs": scalar(0.001, np.float32), "bz": scalar(0, "int32")}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dqw"),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="dqb"),
             helper.make_node("Gemm", ["xd", "wd", "bd"], ["g"], name="gemm", alpha=0.5),
             helper.make_node("QuantizeLinear", ["g", "s", "z"], ["y"], name="q")]
    model = make_model(nodes, [("x", "uint8", [1, 4])], [("y", "uint8", [1, 2])], inits)
    assert "node 'gemm' (Gemm) stays in float" in compile_error(model, tmp_path)


def test_drop_op_without_explicit_zero_points_is_refused(tmp_path):
    conv, inits = conv1x1("uint8", 4, x="x", y="c")
    nodes = [conv, helper.make_node("DequantizeLinear", ["c", "conv_ys"], ["cd"], name="dq1"),
             helper.make_node("MaxPool", ["cd"], ["p"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "conv_ys"], ["y"], name="q1")]
    message = compile_error(make_model(nodes, [("x", "uint8", [1, 4, 6, 6])], [("y", "uint8", [1, 4, 5, 5])], inits), tmp_path)
    assert "node 'pool' (MaxPool) stays in float" in message


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_split_and_pad_run_on_codes(tmp_path, dtype):
    """Split (fused by ORT when every output's Q matches the DQ) and Pad (a float Pad in ORT, equal
    to a Pad on codes with the pad value quantized when the parameters match)."""
    zero = 3 if dtype == "uint8" else -3
    inits = {"s": scalar(0.1, np.float32), "z": scalar(zero, dtype), "sizes": np.array([2, 4], np.int64),
             "pads": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64), "value": np.array(0.73, np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node("Split", ["xd", "sizes"], ["a", "b"], name="split", axis=1),
             helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="qa"),
             helper.make_node("QuantizeLinear", ["b", "s", "z"], ["y1"], name="qb"),
             helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"], name="dqa"),
             helper.make_node("Pad", ["ad", "pads", "value"], ["p"], name="pad"),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["y0"], name="qp")]
    model = make_model(nodes, [("x", dtype, [1, 6, 4, 5])], [("y0", dtype, [1, 2, 7, 7]), ("y1", dtype, [1, 4, 4, 5])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["Split", "Pad"]


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_add_and_mul_with_broadcast_constant(tmp_path, op, dtype):
    lo = 0 if dtype == "uint8" else -128
    rng = np.random.default_rng(2)
    inits = {"sa": scalar(0.05, np.float32), "za": scalar(lo + 30, dtype), "sb": scalar(0.02, np.float32),
             "zb": scalar(lo + 200, dtype), "sy": scalar(0.08, np.float32), "zy": scalar(lo + 90, dtype),
             "b": rng.integers(lo, lo + 256, (4, 1, 1)).astype(dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "sa", "za"], ["xd"], name="dqa"),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bd"], name="dqb"),
             helper.make_node(op, ["bd", "xd"], ["s"], name="op"),
             helper.make_node("QuantizeLinear", ["s", "sy", "zy"], ["y"], name="q")]
    model = make_model(nodes, [("x", dtype, [2, 4, 3, 5])], [("y", dtype, [2, 4, 3, 5])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == [f"QLinear{op}"]


def test_qdq_add_of_mixed_types_is_refused(tmp_path):
    inits = {"s": scalar(0.05, np.float32), "zu": scalar(3, "uint8"), "zs": scalar(3, "int8")}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "zu"], ["xd"], name="dqa"),
             helper.make_node("DequantizeLinear", ["w", "s", "zs"], ["wd"], name="dqb"),
             helper.make_node("Add", ["xd", "wd"], ["s1"], name="add"),
             helper.make_node("QuantizeLinear", ["s1", "s", "zu"], ["y"], name="q")]
    model = make_model(nodes, [("x", "uint8", [4]), ("w", "int8", [4])], [("y", "uint8", [4])], inits)
    assert "node 'add' (Add) stays in float" in compile_error(model, tmp_path)


@pytest.mark.parametrize("op, attrs", [("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {})])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_leakyrelu_and_sigmoid_become_tables(tmp_path, op, attrs, dtype):
    lo = 0 if dtype == "uint8" else -128
    inits = {"s": scalar(0.06, np.float32), "z": scalar(lo + 128, dtype), "so": scalar(1 / 200, np.float32), "zo": scalar(lo + 20, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node(op, ["xd"], ["a"], name="act", **attrs),
             helper.make_node("QuantizeLinear", ["a", "so", "zo"], ["y"], name="q")]
    model = make_model(nodes, [("x", dtype, [1, 256])], [("y", dtype, [1, 256])], inits)
    every_code = np.arange(256, dtype=np.uint8).view(dtype).reshape(1, 256)
    compiled = check_exact(model, tmp_path, n_random=2, extra_cases=[[every_code]])
    assert [n.op for n in compiled.graph.nodes] == ["Lookup"]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_matmul_and_transpose(tmp_path, dtype):
    """DQ -> MatMul(DQ(constant B)) -> Q becomes QLinearMatMul; DQ -> Transpose -> Q with equal
    parameters runs on the codes."""
    rng = np.random.default_rng(4)
    lo = 0 if dtype == "uint8" else -128
    inits = {"s": scalar(0.03, np.float32), "z": scalar(lo + 100, dtype), "b": rng.integers(-128, 128, (6, 5)).astype(np.int8),
             "bs": np.exp(rng.uniform(-6, -3, 5)).astype(np.float32), "bz": np.zeros(5, np.int8),
             "sy": scalar(0.2, np.float32), "zy": scalar(lo + 60, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="dqb", axis=1),
             helper.make_node("MatMul", ["xd", "bd"], ["m"], name="matmul"),
             helper.make_node("QuantizeLinear", ["m", "sy", "zy"], ["mq"], name="q"),
             helper.make_node("DequantizeLinear", ["mq", "sy", "zy"], ["md"], name="dq2"),
             helper.make_node("Transpose", ["md"], ["t"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("QuantizeLinear", ["t", "sy", "zy"], ["y"], name="q2")]
    model = make_model(nodes, [("x", dtype, [2, 3, 6])], [("y", dtype, [2, 5, 3])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearMatMul", "Transpose"]


def test_int16_activations_are_refused_where_ort_runs_them_in_float(tmp_path):
    """ORT's quantizer writes 16-bit activations (QInt16) in QDQ form; ORT 1.32 fuses no such group into an
    integer kernel: its optimized graph keeps Conv, MaxPool, Add, Mul and Sigmoid in float between
    DequantizeLinear and QuantizeLinear, moves codes through Reshape, and turns MatMul into MatMulNBits (int
    weights, float activations). No integer arithmetic to be exact to: qcc refuses the node by name, saying why."""
    from qcc.runtimes import ort as ort_reference
    rng = np.random.default_rng(0)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                        helper.make_node("Relu", ["c"], ["r"]),
                        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                        helper.make_node("Add", ["p", "p"], ["a"]),
                        helper.make_node("Mul", ["a", "p"], ["m"]),
                        helper.make_node("Sigmoid", ["m"], ["s"]),
                        helper.make_node("Reshape", ["s", "shape"], ["f"]),
                        helper.make_node("MatMul", ["f", "wm"], ["y"])],
                       [("x", "float32", [1, 3, 8, 8])], [("y", "float32", [1, 5])],
                       {"w": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32),
                        "b": rng.normal(0, 0.1, 4).astype(np.float32), "shape": np.array([1, 64], np.int64),
                        "wm": rng.normal(0, 0.2, (64, 5)).astype(np.float32)})
    path = quantize(model, tmp_path / "int16.onnx", quant_format="QDQ", activation="int16")
    ops = {n.op_type for n in ort_reference.optimized_model(str(path)).graph.node}
    assert {"Conv", "MaxPool", "Add", "Mul", "Sigmoid"} <= ops  # ORT runs them in float
    assert not ops & {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "ConvInteger",
                      "MatMulInteger", "QGemm"}  # and nothing as integers
    with pytest.raises(QccError) as error:
        compile_model(path, Options())
    assert "stays in float in ONNX Runtime" in str(error.value) and "\n" not in str(error.value)

