"""Issue 25, points 1 and 2: a cut must know every shape it relies on (never a silent scalar), and the
inputs that reached qcc's catch-all internal error ("qcc failed on this model") each get their own
one-line refusal, or work where ONNX Runtime runs the model.

For every refusal the test also shows what ORT does with the model: qcc refuses what ORT refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import qcc
from helpers import check_exact, make_model, scalar
from qdq_builder import QdqGraph
from qcc.cli import main
from qcc.errors import QccError
from qcc.frontend.onnx.onnx_loader import load_model
from qcc.runtimes import ort as ort_reference

INTERNAL_ERROR = "qcc failed on this model"


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def refusal(argv: list[str], capsys) -> str:
    """`qcc ARGV` in-process: exit 2, one 'qcc: error: ' line, no folder left; never the catch-all line."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("qcc: error: "), lines
    assert INTERNAL_ERROR not in lines[0], lines[0]
    if "-o" in argv:
        assert not Path(argv[argv.index("-o") + 1]).exists()
    return lines[0]


def compiles(argv: list[str], capsys) -> dict:
    """`qcc compile ... -o OUT` in-process: exit 0; the manifest."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((Path(argv[argv.index("-o") + 1]) / "model.json").read_text())


def ort_refusal(path: Path, feeds: dict) -> str:
    """ORT's own error for the model on these inputs (the test fails if ORT runs it)."""
    with pytest.raises(QccError) as error:
        ort_reference.session(path).run(None, feeds)
    return str(error.value)


# --- 1. a cut input's shape ----------------------------------------------------------------------------------


def after_a_contrib_op(first: str) -> tuple[onnx.ModelProto, dict[str, str]]:
    """x -> `first` (a com.microsoft op ONNX shape inference does not know) -> DequantizeLinear -> QuantizeLinear
    -> Relu (a float island) -> output: every tensor after `first` has a type but no shape."""
    g = QdqGraph(13, seed=1)
    if first == "QLinearSigmoid":
        x = g.input("x", [1, 40], np.uint8)
        s = g.node("QLinearSigmoid", [x, g.const(np.float32(0.05)), g.const(np.uint8(128)), g.const(np.float32(1 / 256)),
                                      g.const(np.uint8(0))], name="sig", domain="com.microsoft")
        real = g.node("DequantizeLinear", [s, g.const(np.float32(1 / 256)), g.const(np.uint8(0))], name="real")
    else:  # Gelu: a float op qcc does not know either
        real = g.node("Gelu", [g.input("x", [1, 40])], name="gelu", domain="com.microsoft")
    codes = g.node("QuantizeLinear", [real, g.const(np.float32(0.01)), g.const(np.uint8(3))], name="codes")
    relu = g.node("Relu", [g.dequantize(codes, 0.01, 3)], name="relu")
    g.output(g.dequantize(g.quantize(relu, 0.01, 3), 0.01, 3), "y")
    model = g.model()
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    assert inferred["codes"].type.tensor_type.elem_type and not inferred["codes"].type.tensor_type.HasField("shape")
    return model, {"real": real, "codes": codes}


@pytest.mark.parametrize("cut", ["real", "codes"])
def test_a_cut_after_a_contrib_op_gets_its_shape_through_the_ops_before_it(tmp_path, capsys, cut):
    """It compiled to a scalar model (shapes [], one value of 40) with exit 0; now the cut input has ORT's
    shape, worked out through QLinearSigmoid's own import, and C == reference == ORT on the cut model."""
    model, names = after_a_contrib_op("QLinearSigmoid")
    path = save(model, tmp_path / "m.onnx")
    assert ort_reference.session(path).run(None, {"x": np.zeros((1, 40), np.uint8)})[0].shape == (1, 40)
    manifest = compiles(["compile", str(path), "-o", str(tmp_path / "out"), "--inputs", names[cut]], capsys)
    assert manifest["inputs"][0]["shape"] == [1, 40] and manifest["outputs"][0]["shape"] == [1, 40]
    report = qcc.verify(path, n=3, inputs=[names[cut]])
    assert report["ok"], report["table"]
    assert all(a["compared"] == a["exact"] > 0 for pairs in report["outputs"].values() for a in pairs.values())


def test_a_cut_input_whose_shape_nobody_knows_is_refused_with_the_flag_that_gives_it(tmp_path, capsys):
    model, names = after_a_contrib_op("Gelu")
    path = save(model, tmp_path / "m.onnx")
    message = refusal(["compile", str(path), "-o", str(tmp_path / "out"), "--inputs", names["codes"]], capsys)
    assert (f"--inputs {names['codes']}: ONNX shape inference gives '{names['codes']}' no shape (it stops at node "
            "'gelu', com.microsoft.Gelu), and qcc cannot work it out; give it with --input-shape "
            f"{names['codes']}=D0,D1,...") in message


def test_input_shape_gives_a_cut_input_its_shape(tmp_path, capsys):
    model, names = after_a_contrib_op("Gelu")
    path = save(model, tmp_path / "m.onnx")
    manifest = compiles(["compile", str(path), "-o", str(tmp_path / "out"), "--inputs", names["codes"],
                         "--input-shape", f"{names['codes']}=1,40"], capsys)
    assert manifest["inputs"][0]["shape"] == [1, 40]
    report = qcc.verify(path, n=3, inputs=[names["codes"]], input_shape={names["codes"]: [1, 40]})
    assert report["ok"], report["table"]


def test_input_shape_that_contradicts_what_the_ops_compute_is_refused(tmp_path, capsys):
    model, names = after_a_contrib_op("QLinearSigmoid")
    path = save(model, tmp_path / "m.onnx")
    message = refusal(["compile", str(path), "-o", str(tmp_path / "out"), "--inputs", names["real"],
                       "--input-shape", f"{names['real']}=1,4,10"], capsys)
    assert f"--input-shape {names['real']}=1,4,10: '{names['real']}' has the shape [1, 40]" in message


def test_input_shape_of_a_computed_tensor_is_only_for_a_cut_input(tmp_path):
    """(load_model refuses it where it is told the cut inputs: qcc.pipeline passes them once it calls
    load_model(path, shapes, cut_inputs); without them it takes the shape of any computed tensor.)"""
    model, names = after_a_contrib_op("Gelu")
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(QccError, match=rf"--input-shape names '{names['codes']}', but the graph inputs are \['x'\]; "
                                       r"a tensor the model computes takes --input-shape only as a cut input"):
        load_model(path, {names["codes"]: [1, 40]}, cut_inputs=[])
    shaped = load_model(path, {names["codes"]: [1, 40]}, cut_inputs=[names["codes"]])
    info = next(vi for vi in shaped.graph.value_info if vi.name == names["codes"])
    assert [d.dim_value for d in info.type.tensor_type.shape.dim] == [1, 40]


def unshaped_input_model() -> onnx.ModelProto:
    nodes = [helper.make_node("QLinearSigmoid", ["x", "s", "z", "s_y", "z_y"], ["y"], name="sig", domain="com.microsoft")]
    model = make_model(nodes, [("x", "uint8", [1, 8])], [("y", "uint8", [1, 8])],
                       {"s": scalar(0.05, np.float32), "z": scalar(128, np.uint8), "s_y": scalar(1 / 256, np.float32),
                        "z_y": scalar(0, np.uint8)})
    model.graph.input[0].type.tensor_type.ClearField("shape")  # a type, no shape: ORT takes any shape
    return model


def test_a_graph_input_without_a_shape_is_refused_not_compiled_as_a_scalar(tmp_path, capsys):
    path = save(unshaped_input_model(), tmp_path / "m.onnx")
    assert ort_reference.session(path).run(None, {"x": np.zeros((2, 5), np.uint8)})[0].shape == (2, 5)
    message = refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    assert "input 'x' has no shape in the model (not even a rank); give it with --input-shape x=D0,D1,..." in message
    manifest = compiles(["compile", str(path), "-o", str(tmp_path / "out"), "--input-shape", "x=2,5"], capsys)
    assert manifest["inputs"][0]["shape"] == [2, 5] and manifest["outputs"][0]["shape"] == [2, 5]


def test_input_shape_cannot_change_a_fixed_dimension(tmp_path, capsys):
    """ORT refuses an input whose shape differs from a dimension the model fixes; qcc compiled it."""
    path = save(unshaped_input_model(), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_param = "N"
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 8
    save(model, path)
    assert "Got invalid dimensions for input: x" in ort_refusal(path, {"x": np.zeros((2, 5), np.uint8)})
    message = refusal(["compile", str(path), "-o", str(tmp_path / "out"), "--input-shape", "x=2,5"], capsys)
    assert ("--input-shape x=2,5: dimension 1 of input 'x' is 8 in the model, and ONNX Runtime takes no other; "
            "--input-shape gives the dynamic dimensions only") in message
    assert compiles(["compile", str(path), "-o", str(tmp_path / "out"), "--input-shape", "x=2,8"],
                    capsys)["inputs"][0]["shape"] == [2, 8]


# --- 2. each former internal error ---------------------------------------------------------------------------


def constant_output_model() -> onnx.ModelProto:
    """y = Relu's codes, and the graph output `wd`: a weight's DequantizeLinear output, a constant ORT returns."""
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
             helper.make_node("Relu", ["xd"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["y"], name="q"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="wdq")]
    inits = {"s": scalar(0.05, np.float32), "z": scalar(10, np.uint8), "w": np.arange(-6, 6, dtype=np.int8).reshape(3, 4),
             "ws": scalar(0.1, np.float32), "wz": scalar(-2, np.int8)}
    return make_model(nodes, [("x", "uint8", [1, 4])], [("y", "uint8", [1, 4]), ("wd", "float32", [3, 4])], inits)


@pytest.mark.parametrize("options", [{}, {"float_io": True}, {"io_in_arena": True}])
def test_a_constant_graph_output_is_written_by_the_c(tmp_path, options):
    """It reached the C emitter (a copy from a tensor with no run-time storage); now the C copies the
    constant's codes (or with --float-io its float32 values) from flash, exact to ORT."""
    compiled = check_exact(constant_output_model(), tmp_path, **options)
    graph = compiled.graph
    out = graph.tensor(graph.outputs[1])
    assert graph.public_name(graph.outputs[1]) == "wd"
    if options.get("float_io"):
        assert out.dtype == "float32"
    else:
        assert out.dtype == "int8" and out.quant.scalar() == (np.float32(0.1), -2)


def test_a_constant_named_by_outputs_is_written_by_the_c(tmp_path, capsys):
    """--outputs naming a weight's DequantizeLinear output (beside a computed output)."""
    g = QdqGraph(13, seed=4)
    x = g.qdq(g.input("image", [1, 3, 6, 6]), 0.02, 128)
    weights = g.weights((4, 3, 3, 3), 0.01)
    y = g.node("Conv", [x, weights], name="conv", pads=[1, 1, 1, 1])
    g.output(g.dequantize(g.quantize(y, 0.05, 100), 0.05, 100), "scores")
    path = save(g.model(), tmp_path / "m.onnx")
    manifest = compiles(["compile", str(path), "-o", str(tmp_path / "out"), "--outputs", f"scores,{weights}"], capsys)
    assert [o["name"] for o in manifest["outputs"]] == ["scores", weights]
    assert manifest["outputs"][1]["shape"] == [4, 3, 3, 3] and manifest["outputs"][1]["dtype"] == "int8"
    report = qcc.verify(path, n=2, outputs=["scores", weights])
    assert report["ok"], report["table"]
    assert report["outputs"][weights]["C vs ORT"]["exact"] == report["outputs"][weights]["C vs ORT"]["compared"] > 0
    # --outputs naming the constant alone: a model without inputs, verified against ORT's cut model
    alone = qcc.verify(path, n=1, outputs=[weights])
    assert alone["ok"], alone["table"]
    assert alone["outputs"][weights]["C vs ORT"]["exact"] == alone["outputs"][weights]["C vs ORT"]["compared"] == 108 * 4


def island_model(**changes) -> onnx.ModelProto:
    """x -> DequantizeLinear -> HardSigmoid -> QuantizeLinear (a float island), parameters as given."""
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["xd"], name="dq"),
             helper.make_node("HardSigmoid", ["xd"], ["h"], name="hs"),
             helper.make_node("QuantizeLinear", ["h", "s_out", "z_out"], ["y"], name="q")]
    inits = {"s_in": scalar(0.037, np.float32), "z_in": scalar(7, np.uint8), "s_out": scalar(0.021, np.float32),
             "z_out": scalar(3, np.uint8), **changes}
    return make_model(nodes, [("x", "uint8", [1, 8])], [("y", "uint8", [1, 8])], inits)


@pytest.mark.parametrize("changes, message", [
    ({"z_in": np.full((1, 1), 7, np.uint8)}, "node 'dq' (DequantizeLinear): its zero point 'z_in' has shape [1, 1]"),
    ({"z_out": np.full((1, 1), 3, np.uint8)}, "node 'q' (QuantizeLinear): its zero point 'z_out' has shape [1, 1]"),
    ({"s_in": np.full((1, 1), 0.037, np.float32)}, "node 'dq' (DequantizeLinear): its scale 's_in' has shape [1, 1]"),
])
def test_a_two_dimensional_island_parameter_is_refused_as_ort_refuses_it(tmp_path, capsys, changes, message):
    """A (1, 1) zero point reached int() in the island's table (TypeError). ORT does not take it as per tensor:
    its QuantizeLinear/DequantizeLinear kernels take a scalar or a 1-D tensor only, and fail when the model runs."""
    path = save(island_model(**changes), tmp_path / "m.onnx")
    assert "quantizelinear node" in ort_refusal(path, {"x": np.zeros((1, 8), np.uint8)}).lower()
    line = refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    assert message in line and "ONNX Runtime takes a scalar" in line and "refuses this model" in line


@pytest.mark.parametrize("op", ["QLinearSigmoid", "QLinearAdd", "QLinearMatMul"])
def test_a_two_dimensional_zero_point_of_a_qoperator_op_is_refused_as_ort_refuses_it(tmp_path, capsys, op):
    """These compiled (exit 0) though ORT refuses them: a per-tensor parameter is a scalar or a 1-D tensor."""
    z11 = np.full((1, 1), 128, np.uint8)
    inputs = {"QLinearSigmoid": ["x", "s", "z", "sy", "zy"], "QLinearAdd": ["x", "s", "z", "x", "s", "zb", "sy", "zy"],
              "QLinearMatMul": ["x", "s", "z", "w", "ws", "wz", "sy", "zy"]}[op]
    node = helper.make_node(op, inputs, ["y"], name="n", domain="" if op == "QLinearMatMul" else "com.microsoft")
    inits = {"s": scalar(0.05, np.float32), "z": z11, "zb": scalar(128, np.uint8), "sy": scalar(0.1, np.float32),
             "zy": scalar(0, np.uint8), "w": np.ones((8, 8), np.int8), "ws": scalar(0.01, np.float32),
             "wz": scalar(0, np.int8)}
    model = make_model([node], [("x", "uint8", [1, 8])], [("y", "uint8", [1, 8])],
                       {k: v for k, v in inits.items() if k in inputs})
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(QccError):
        ort_reference.session(path).run(None, {"x": np.zeros((1, 8), np.uint8)})
    line = refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    what = "input" if op == "QLinearSigmoid" else "A"
    assert (f"node 'n' ({op}): the {what} zero point has shape [1, 1]; ONNX Runtime takes a scalar or a 1-D tensor "
            "and refuses this model") in line


def test_a_one_element_vector_parameter_still_works(tmp_path):
    """(1,) is per tensor for ORT, as a scalar is."""
    check_exact(island_model(z_in=np.full((1,), 7, np.uint8), s_out=np.full((1,), 0.021, np.float32)), tmp_path)


def batchnorm_model(scale_shape, behind_dequantize: bool) -> onnx.ModelProto:
    channels = 4
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["xd"], name="dq"),
             helper.make_node("BatchNormalization", ["xd", "bn_s", "bn_b", "bn_m", "bn_v"], ["b"], name="bn", epsilon=1e-3),
             helper.make_node("QuantizeLinear", ["b", "s_out", "z_out"], ["y"], name="q")]
    inits = {"s_in": scalar(0.037, np.float32), "z_in": scalar(7, np.uint8), "s_out": scalar(0.021, np.float32),
             "z_out": scalar(3, np.uint8), "bn_b": rng.standard_normal(channels).astype(np.float32),
             "bn_m": rng.standard_normal(channels).astype(np.float32),
             "bn_v": rng.uniform(0.5, 2, channels).astype(np.float32)}
    if behind_dequantize:  # the 1-D weight's codes, dequantized with a scale of another shape
        nodes.insert(1, helper.make_node("DequantizeLinear", ["bn_q", "bn_qs", "bn_qz"], ["bn_s"], name="dq_bn"))
        inits.update(bn_q=np.array([50, 60, 70, 80], np.uint8), bn_qs=np.full(scale_shape, 0.02, np.float32),
                     bn_qz=scalar(0, np.uint8))
    else:
        inits["bn_s"] = np.full(scale_shape, 1.1, np.float32)
    return make_model(nodes, [("x", "uint8", [1, channels, 3, 3])], [("y", "uint8", [1, channels, 3, 3])], inits)


@pytest.mark.parametrize("scale_shape, behind_dequantize, message", [
    ((1, 4), True, "node 'dq_bn' (DequantizeLinear): its scale 'bn_qs' has shape [1, 4]; ONNX Runtime takes a "
                   "scalar scale (per tensor) or a 1-D one (per axis)"),
    ((4,), True, "node 'dq_bn' (DequantizeLinear): axis 1 is outside its input 'bn_q' of shape [4]"),
    ((1, 4), False, "node 'bn' (BatchNormalization): its scale has shape [1, 4]; ONNX Runtime's BatchNormalization "
                    "takes a 1-D scale of 4 values (one per channel)"),
])
def test_a_batchnorm_weight_of_the_wrong_shape_is_refused_as_ort_refuses_it(tmp_path, capsys, scale_shape,
                                                                            behind_dequantize, message):
    """A 2-D (or per-axis) scale on the 1-D weight ended in an IndexError; a 2-D BatchNormalization scale
    compiled (exit 0) though ORT refuses the model."""
    path = save(batchnorm_model(scale_shape, behind_dequantize), tmp_path / "m.onnx")
    ort_refusal(path, {"x": np.zeros((1, 4, 3, 3), np.uint8)})
    assert message in refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)


def batched_matmul_model(b_shape, a_shape) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="mm")]
    inits = {"xs": scalar(0.02, np.float32), "xz": scalar(128, np.uint8), "w": rng.integers(-60, 60, b_shape).astype(np.int8),
             "ws": scalar(0.01, np.float32), "wz": scalar(0, np.int8), "ys": scalar(0.05, np.float32),
             "yz": scalar(100, np.uint8)}
    return make_model(nodes, [("x", "uint8", a_shape)], [("y", "uint8", None)], inits)


@pytest.mark.parametrize("b_shape, given, message", [
    ((2, 6, 5), "3,3,6", "node 'mm' (QLinearMatMul): the batch dimensions of A [3, 3, 6] and B [2, 6, 5] do not "
                         "broadcast; ONNX Runtime refuses this product"),
    ((2, 6, 5), "2,3,7", "node 'mm' (QLinearMatMul): A of shape [2, 3, 7] has depth 7 but B of shape [2, 6, 5] has 6 "
                         "rows; ONNX Runtime refuses this product"),
    ((3, 2, 6, 5), "4,2,3,6", "the batch dimensions of A [4, 2, 3, 6] and B [3, 2, 6, 5] do not broadcast"),
])
def test_an_input_shape_that_conflicts_with_a_batched_matmul_is_refused(tmp_path, capsys, b_shape, given, message):
    """numpy's broadcast or reshape failed inside the batched product's split (ValueError)."""
    a_shape = ["B", *(["M"] * (len(b_shape) - 3)), "R", "K"][-len(b_shape):]
    path = save(batched_matmul_model(b_shape, a_shape), tmp_path / "m.onnx")
    dims = [int(d) for d in given.split(",")]
    ort_refusal(path, {"x": np.zeros(dims, np.uint8)})
    assert message in refusal(["compile", str(path), "-o", str(tmp_path / "out"), "--input-shape", f"x={given}"], capsys)


def test_a_batched_matmul_that_ort_runs_still_compiles(tmp_path):
    model = batched_matmul_model((2, 6, 5), [2, 3, 6])
    check_exact(model, tmp_path)


@pytest.mark.parametrize("domain, inputs", [("com.microsoft", ["x"]), ("com.microsoft", ["x", ""]),
                                            ("com.microsoft", ["", "s"])])
def test_a_dequantize_linear_without_its_scale_is_refused(tmp_path, capsys, domain, inputs):
    """onnx.checker knows no com.microsoft schema: the Q/DQ passes read input 1 (IndexError). ORT's contrib
    schema refuses the model."""
    nodes = [helper.make_node("DequantizeLinear", inputs, ["xd"], name="dq", domain=domain),
             helper.make_node("Relu", ["xd"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["y"], name="q")]
    model = make_model(nodes, [("x", "uint8", [1, 4])], [("y", "uint8", [1, 4])],
                       {"s": scalar(0.05, np.float32), "z": scalar(10, np.uint8)})
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(QccError):
        ort_reference.session(path).run(None, {"x": np.zeros((1, 4), np.uint8)})
    line = refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    assert (f"node 'dq' (com.microsoft.DequantizeLinear) has inputs {inputs}; DequantizeLinear takes x, a scale and an "
            "optional zero point") in line


def test_an_object_array_in_the_golden_file_is_refused(tmp_path, capsys):
    path = save(island_model(), tmp_path / "m.onnx")
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=np.array([None, "a", 1], dtype=object))
    line = refusal(["compile", str(path), "-o", str(tmp_path / "out"), "--golden", str(golden)], capsys)
    assert f"{golden}: 'x' is an array of Python objects; give an array of uint8 values" in line


def test_a_name_that_is_not_utf8_is_refused(tmp_path, capsys):
    """Corrupted bytes in a name come back from protobuf as bytes, not text: they failed wherever a name was used
    (the checker's opset map, a C identifier, a copied node)."""
    data = island_model().SerializeToString()
    assert data.count(b"HardSigmoid") == 1
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(b"HardSigmoid", b"Hard\x81igmoid"))
    line = refusal(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    assert "not a valid ONNX model: a NodeProto op_type holds bytes that are not UTF-8 text (b'Hard\\x81igmoid')" in line
