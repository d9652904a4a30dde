"""Graph inputs and outputs that are the same tensor, models that only quantize or copy, and
QOperator nodes that read codes with other quantization parameters than they were written
with (ORT honours each node's own): all C == reference == ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from helpers import check_exact
from models import cnn96, quantize
from qdq_builder import QdqGraph


def io_model(case: str) -> onnx.ModelProto:
    g = QdqGraph(13)
    if case == "QuantizeLinear only":
        g.output(g.quantize(g.input("x", [1, 8]), 0.05, 128), "y")
    elif case == "QuantizeLinear -> DequantizeLinear":
        g.output(g.dequantize(g.quantize(g.input("x", [1, 8]), 0.05, 128), 0.05, 128), "y")
    elif case == "Identity":
        g.output(g.node("Identity", [g.input("x", [1, 8], np.uint8)]), "y")
    elif case == "an output named twice":
        g.output(g.node("Identity", [g.input("x", [1, 8], np.uint8)]), "y")
        model = g.model()
        model.graph.output.append(model.graph.output[0])
        return model
    else:  # the input itself is an output
        x = g.input("x", [1, 8], np.uint8)
        g.output(g.node("Identity", [x]), "y")
        model = g.model()
        model.graph.output.append(onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 8]))
        return model
    return g.model()


@pytest.mark.parametrize("case", ["QuantizeLinear only", "QuantizeLinear -> DequantizeLinear", "Identity",
                                  "an output named twice", "the input is an output"])
def test_outputs_that_are_inputs_or_each_other_get_their_own_copy(tmp_path, case):
    compiled = check_exact(io_model(case), tmp_path, n_random=3)  # the golden test fills every output
    graph = compiled.graph
    assert len(set(graph.inputs + graph.outputs)) == len(graph.inputs) + len(graph.outputs)
    assert all(n.op == "Reshape" for n in graph.nodes)  # copies, no float
    assert [graph.public_name(o) for o in graph.outputs] == [o.name for o in io_model(case).graph.output]


def qlinear_conv(g, x, x_params, w, w_scale, y_params, name):
    return g.node("QLinearConv", [x, g.const(np.float32(x_params[0])), g.const(np.uint8(x_params[1])), w,
                                  g.const(np.float32(w_scale)), g.const(np.int8(0)), g.const(np.float32(y_params[0])),
                                  g.const(np.uint8(y_params[1]))], name=name, pads=[1, 1, 1, 1], kernel_shape=[3, 3])


def reread_model(case: str) -> onnx.ModelProto:
    g = QdqGraph(13, seed=3)
    x = g.input("x", [1, 4, 6, 6], np.uint8)
    w = g.const(g.rng.integers(-64, 65, (4, 4, 3, 3)).astype(np.int8))  # (|w| <= 64: exact on every x86 CPU, see SEMANTICS)
    if case == "a consumer reads the codes with its own parameters":
        a = qlinear_conv(g, x, (0.02, 128), w, 0.01, (0.05, 100), "a")
        g.output(qlinear_conv(g, a, (0.06, 97), g.const(g.rng.integers(-64, 65, (4, 4, 3, 3)).astype(np.int8)), 0.01,
                              (0.05, 110), "b"))
    elif case == "two nodes share weights with other scales":
        g.output(qlinear_conv(g, x, (0.02, 128), w, 0.01, (0.05, 100), "a"), "ya")
        g.output(qlinear_conv(g, x, (0.02, 128), w, 0.013, (0.05, 100), "b"), "yb")
    elif case == "two nodes read the input with other parameters":
        g.output(qlinear_conv(g, x, (0.02, 128), w, 0.01, (0.05, 100), "a"), "ya")
        g.output(qlinear_conv(g, x, (0.03, 120), w, 0.01, (0.05, 100), "b"), "yb")
    else:  # the output's DequantizeLinear uses other parameters than the producer wrote with
        g.output(g.dequantize(qlinear_conv(g, x, (0.02, 128), w, 0.01, (0.05, 100), "a"), 0.07, 90), "y")
    return g.model()


@pytest.mark.parametrize("case", ["a consumer reads the codes with its own parameters",
                                  "two nodes share weights with other scales",
                                  "two nodes read the input with other parameters",
                                  "the output DequantizeLinear reads with its own parameters"])
def test_each_node_reads_codes_with_its_own_parameters(tmp_path, case):
    check_exact(reread_model(case), tmp_path, n_random=3)


def test_a_changed_zero_point_in_a_real_network_is_honoured(tmp_path):
    """The 96x96 CNN with one consumer's x_zero_point moved from its producer's (-128) to -125
    and its x_scale changed: ORT reads the codes with the consumer's values, and so must qcc."""
    path = quantize(cnn96(), tmp_path / "cnn.onnx", activation="int8")
    model = onnx.load(str(path))
    init = {i.name: i for i in model.graph.initializer}
    conv = [n for n in model.graph.node if n.op_type == "QLinearConv"][1]
    zero, scale = init[conv.input[2]], init[conv.input[1]]
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.int8(onnx.numpy_helper.to_array(zero) + 3), "moved_zero"),
                                    onnx.numpy_helper.from_array(np.float32(onnx.numpy_helper.to_array(scale) * 1.3),
                                                                 "moved_scale")])
    conv.input[1], conv.input[2] = "moved_scale", "moved_zero"
    compiled = check_exact(model, tmp_path, n_random=4)
    assert "Reinterpret" in [n.op for n in compiled.graph.nodes]
