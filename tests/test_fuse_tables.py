"""x * sigmoid(x) (SiLU) and other elementwise Add/Mul whose operands are one tensor or tables of it, fused into
one table (qcc/passes/fuse_tables.py): exact to ONNX Runtime (QLinearSigmoid + QLinearMul) and to TFLite Micro
(LOGISTIC + MUL) on every input code, with no binary op left."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_exact, check_tflite_exact
from models import quantize
from tflite_builder import TfliteBuilder

SHAPE = [1, 4, 8, 8]  # 256 elements: one input set holds every code


def every_code(dtype) -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(dtype).reshape(SHAPE)


def float_model(form: str):
    """input -> form -> a 1x1 convolution (so the fused table feeds a real layer); form: silu, x_plus_sigmoid, square."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"])]
    if form == "silu":
        nodes.append(helper.make_node("Mul", ["x", "s"], ["f"]))
    elif form == "x_plus_sigmoid":
        nodes.append(helper.make_node("Add", ["s", "x"], ["f"]))
    else:
        nodes = [helper.make_node("Mul", ["x", "x"], ["f"])]
    rng = np.random.default_rng(3)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 1, 1], rng.normal(0, 0.5, 16).astype(np.float32).tolist())
    nodes.append(helper.make_node("Conv", ["f", "w"], ["y"]))
    graph = helper.make_graph(nodes, form, [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("activation", ["int8", "uint8"])
@pytest.mark.parametrize("form", ["silu", "x_plus_sigmoid", "square"])
def test_an_add_or_mul_of_a_tensor_and_a_table_of_it_is_one_table_exact_to_ort(tmp_path, form, activation):
    path = quantize(float_model(form), tmp_path / f"{form}.onnx", quant_format="QDQ", activation=activation)
    cases = [[every_code(activation)], [np.flip(every_code(activation))]]
    compiled = check_exact(path, tmp_path, n_random=2, extra_cases=cases)
    ops = [n.op for n in compiled.graph.nodes]
    assert "QLinearMul" not in ops and "QLinearAdd" not in ops and ops.count("Lookup") == 1, ops


def test_logistic_times_its_input_is_one_table_exact_to_tflm(tmp_path):
    """TFLite's SiLU as YOLOv8 writes it: LOGISTIC (output 1/256, -128), then MUL of the input by it."""
    b = TfliteBuilder()
    x = b.input("x", (1, 256), "int8", scale=np.float32(0.05), zero_point=-10)
    s = b.tensor("s", (1, 256), "int8", scale=np.float32(1 / 256), zero_point=-128)
    b.op("LOGISTIC", [x], [s], version=2)
    y = b.tensor("y", (1, 256), "int8", scale=np.float32(0.03), zero_point=-90)
    b.op("MUL", [x, s], [y], version=2)
    b.output(y)
    codes = np.arange(256, dtype=np.uint8).view(np.int8).reshape(1, 256)
    compiled = check_tflite_exact(b.build(), tmp_path, n_random=1, extra_cases=[[codes]])
    assert [n.op for n in compiled.graph.nodes] == ["Lookup"]
