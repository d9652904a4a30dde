"""User errors on the command line: each one exits with code 2 and prints exactly one line,
"qcc: error: ...", that names the file, node or tensor at fault and says what to do; no
traceback, and no output folder (nor a half-written staging folder) is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import make_model
from models import cnn96, quantize
from qcc.cli import main

SCALE, ZERO = np.array(0.05, np.float32), np.array(128, np.uint8)


# --- models -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    """A valid QOperator model: the 96x96 CNN with uint8 activations."""
    return quantize(cnn96(), tmp_path_factory.mktemp("cnn") / "cnn96.onnx")


@pytest.fixture(scope="module")
def dynamic_cnn(cnn, tmp_path_factory) -> Path:
    """The same CNN with its batch dimension made dynamic ('N'), as exported models often are."""
    model = onnx.load(str(cnn))
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "N"
    path = tmp_path_factory.mktemp("dynamic") / "dynamic_cnn.onnx"
    onnx.save(model, str(path))
    return path


def quantized_wrapper(op_type: str, node_name: str, **attrs) -> onnx.ModelProto:
    """float x -> QuantizeLinear -> <op_type> on the uint8 codes -> DequantizeLinear -> float y."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="quantize_x"),
        helper.make_node(op_type, ["xq"], ["yq"], name=node_name, **attrs),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dequantize_y"),
    ]
    return make_model(nodes, [("x", "float32", [1, 8])], [("y", "float32", [1, 8])], {"s": SCALE, "z": ZERO})


def qlinear_where_model() -> onnx.ModelProto:
    """A QOperator model whose middle op is com.microsoft.QLinearWhere, which qcc does not register."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="quantize_x"),
        helper.make_node("Constant", [], ["cond"], name="cond", value=onnx.numpy_helper.from_array(np.ones((1, 8), bool))),
        helper.make_node("QLinearWhere", ["cond", "xq", "s", "z", "xq", "s", "z", "s", "z"], ["yq"], name="select",
                         domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dequantize_y"),
    ]
    return make_model(nodes, [("x", "float32", [1, 8])], [("y", "float32", [1, 8])], {"s": SCALE, "z": ZERO})


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# --- the contract every user error keeps ----------------------------------------------------------


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under folder, with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Staging folders of an interrupted compile (`.<out>.qcc-XXXX`)."""
    return [p.name for p in folder.iterdir() if ".qcc-" in p.name]


def user_error(argv: list[str], capsys) -> str:
    """Run qcc in-process; assert exit code 2, one 'qcc: error: ' line on stderr, nothing on stdout,
    no traceback; return that line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, f"exit code {code}; stderr: {captured.err!r}"
    assert "Traceback" not in captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines}"
    assert lines[0].startswith("qcc: error: "), lines[0]
    return lines[0]


def compile_fails(model: Path | str, tmp_path: Path, capsys, *extra: str) -> str:
    """`qcc compile MODEL -o tmp_path/out ...` must be a user error that writes nothing."""
    out = tmp_path / "out"
    before = listing(tmp_path)
    message = user_error(["compile", str(model), "-o", str(out), *extra], capsys)
    assert not out.exists(), f"{out} was created"
    assert leftovers(tmp_path) == []
    assert listing(tmp_path) == before, "the failed compile wrote or changed files"
    return message


# --- the model file ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["compile", "verify", "inspect"])
def test_missing_model_file(tmp_path, capsys, command):
    missing = tmp_path / "no_such_model.onnx"
    if command == "compile":
        message = compile_fails(missing, tmp_path, capsys)
    else:
        message = user_error([command, str(missing)], capsys)
    assert "no_such_model.onnx" in message
    assert "no such file" in message


def test_random_bytes_are_not_an_onnx_model(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(512))
    message = compile_fails(junk, tmp_path, capsys)
    assert "junk.onnx" in message
    assert "not an ONNX model" in message
    assert ".onnx file" in message  # what to give instead


def test_float_model_must_be_quantized_first(tmp_path, capsys):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                       [("x", "float32", [1, 8])], [("y", "float32", [1, 8])], {})
    message = compile_fails(save(model, tmp_path / "float_only.onnx"), tmp_path, capsys)
    assert "float_only.onnx" in message
    assert "not quantized" in message
    assert "quantize it first" in message


def test_dynamically_quantized_model_is_told_to_quantize_statically(tmp_path, capsys):
    """quantize_dynamic's output (DynamicQuantizeLinear + MatMulInteger): the message says why a
    microcontroller build needs static quantization and how to get it."""
    from onnxruntime.quantization import quantize_dynamic

    weights = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "fc",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])], [weights])
    float_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    float_model.ir_version = 8
    onnx.save(float_model, str(tmp_path / "fc.onnx"))
    quantize_dynamic(str(tmp_path / "fc.onnx"), str(tmp_path / "fc_dynamic.onnx"))
    message = compile_fails(tmp_path / "fc_dynamic.onnx", tmp_path, capsys)
    assert "fc_dynamic.onnx: the model is dynamically quantized (node '" in message
    assert "quantize_static" in message and "CalibrationDataReader" in message


# --- unsupported ops ---------------------------------------------------------------------------


@pytest.mark.parametrize("model, node_name, op_type", [
    (quantized_wrapper("Softmax", "head_softmax", axis=1), "head_softmax", "Softmax"),
    (quantized_wrapper("LeakyRelu", "leaky", alpha=0.1), "leaky", "LeakyRelu"),
    (qlinear_where_model(), "select", "QLinearWhere"),
], ids=["Softmax", "LeakyRelu", "com.microsoft.QLinearWhere"])
def test_unsupported_op_is_named_with_the_supported_ones(tmp_path, capsys, model, node_name, op_type):
    message = compile_fails(save(model, tmp_path / "unsupported.onnx"), tmp_path, capsys)
    assert "unsupported.onnx" in message
    assert f"'{node_name}'" in message
    assert op_type in message
    assert "supported:" in message
    for supported in ("QLinearConv", "MaxPool", "com.microsoft.QGemm"):
        assert supported in message


# --- input shapes ---------------------------------------------------------------------------------


def test_dynamic_input_dimension_asks_for_input_shape(dynamic_cnn, tmp_path, capsys):
    message = compile_fails(dynamic_cnn, tmp_path, capsys)
    assert "dynamic_cnn.onnx" in message
    assert "'input'" in message
    assert "'N'" in message
    assert "--input-shape input=" in message


def test_input_shape_makes_the_dynamic_model_compile(dynamic_cnn, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(dynamic_cnn), "-o", str(out), "--input-shape", "input=1,3,96,96"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["inputs"][0]["shape"] == [1, 3, 96, 96]
    assert manifest["outputs"][0]["shape"] == [1, 10]
    assert (out / "model.c").is_file()
    assert leftovers(tmp_path) == []


def test_input_shape_naming_a_nonexistent_input(cnn, tmp_path, capsys):
    message = compile_fails(cnn, tmp_path, capsys, "--input-shape", "images=1,3,96,96")
    assert "cnn96.onnx" in message
    assert "'images'" in message
    assert "'input'" in message  # the inputs there are


@pytest.mark.parametrize("spec", ["input=1,3,96", "input=1,3,x,96", "input=0,3,96,96", "1,3,96,96"])
def test_malformed_input_shape(cnn, tmp_path, capsys, spec):
    message = compile_fails(cnn, tmp_path, capsys, "--input-shape", spec)
    assert "--input-shape" in message


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["9lives", "my-model", "two words", ""])
def test_name_must_be_a_c_identifier(cnn, tmp_path, capsys, name):
    message = compile_fails(cnn, tmp_path, capsys, "--name", name)
    assert f"--name {name!r}" in message
    assert "C identifier" in message


@pytest.mark.parametrize("name", ["qcc_kernels", "qcc_runner", "qcc_config"])
def test_name_that_collides_with_a_runtime_file_is_refused(cnn, tmp_path, capsys, name):
    """--name qcc_kernels would write the model to qcc_kernels.c and then overwrite it with the
    runtime's; the folder would not build. It must be refused up front."""
    message = compile_fails(cnn, tmp_path, capsys, "--name", name)
    assert f"{name}" in message
    assert "--name" in message


def test_golden_pointing_to_a_missing_file(cnn, tmp_path, capsys):
    message = compile_fails(cnn, tmp_path, capsys, "--golden", str(tmp_path / "cases.npz"))
    assert "cases.npz" in message
    assert "no such file" in message
    assert "--golden" in message


def test_golden_npz_without_the_input_array(cnn, tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((1, 3, 96, 96), np.uint8))
    message = compile_fails(cnn, tmp_path, capsys, "--golden", str(tmp_path / "wrong.npz"))
    assert "wrong.npz" in message
    assert "'input'" in message


# --- the output folder ------------------------------------------------------------------------


def test_existing_folder_that_is_not_a_qcc_output_is_left_untouched(cnn, tmp_path, capsys):
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "notes.txt").write_text("my own work\n")
    (out / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    before = listing(out)
    message = user_error(["compile", str(cnn), "-o", str(out)], capsys)
    assert str(out) in message
    assert "not a qcc output folder" in message
    assert "choose another -o or remove it" in message
    assert listing(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "src"]
    assert leftovers(tmp_path) == []


def test_output_path_that_is_a_file_is_left_untouched(cnn, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder\n")
    message = user_error(["compile", str(cnn), "-o", str(out)], capsys)
    assert str(out) in message
    assert "choose another -o" in message
    assert out.read_text() == "not a folder\n"
    assert leftovers(tmp_path) == []


# --- through a real process -------------------------------------------------------------------


@pytest.mark.parametrize("case", ["junk", "unsupported"])
def test_real_process_exits_2_without_traceback(tmp_path, case):
    if case == "junk":
        model = tmp_path / "junk.onnx"
        model.write_bytes(b"\x00\xffnot a protobuf" * 40)
        expected = ["junk.onnx", "not an ONNX model"]
    else:
        model = save(quantized_wrapper("Softmax", "head_softmax", axis=1), tmp_path / "softmax.onnx")
        expected = ["softmax.onnx", "'head_softmax'", "Softmax", "supported:"]
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "qcc", "compile", str(model), "-o", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qcc: error: "), result.stderr
    for text in expected:
        assert text in lines[0]
    assert not out.exists()
    assert leftovers(tmp_path) == []
