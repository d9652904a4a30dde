"""A float island compiled to lookup tables: the ONNX node ai.qcc.Lookup that
qcc/frontend/onnx/float_islands.py writes becomes a Lookup with its tables.

This module also gives the float32 semantics of the ops that ORT only ever runs in float (they
have no integer kernel here): BatchNormalization, PRelu, HardSigmoid, HardSwish, Sub, Div, Max and
Min. Ops that also have an integer kernel (Relu, Clip, LeakyRelu, Add, Mul) give theirs in their own
modules. Each evaluation is checked against ORT on every code of every channel by the tests.
"""

from __future__ import annotations

import functools

import numpy as np

from qcc.ir import Graph, Node
from qcc.ops.base import ISLAND_RULES, NotElementwise, OnnxOp, attribute, const_input, register
from qcc.ops.explanation import KEEPS_ORT, Explanation
from qcc.ops.lookup_table import Lookup
from qcc.ops.quantized import add_output, quantized_input, read_quant


def _batch_normalization(node, inputs):
    x, scale, bias, mean, var = inputs
    if attribute(node, "training_mode", 0):
        raise NotElementwise(f"node '{node.name}' has training_mode = 1 (batch statistics)")
    eps = np.float32(attribute(node, "epsilon", 1e-5))
    # core/providers/cpu/nn/batch_norm.h: inv_std = 1/sqrt(var + eps); new_scale = inv_std * scale;
    # new_bias = B - mean * new_scale; y = x * new_scale + new_bias (each step rounded to float32)
    inv_std = np.float32(1) / np.sqrt(var + eps)
    new_scale = inv_std * scale
    new_bias = bias - mean * new_scale
    return x * new_scale + new_bias


def _prelu(node, inputs):
    x, slope = inputs  # core/providers/cpu/activation/activations.h: x > 0 ? x : x * slope
    return np.where(x > 0, x, x * slope)


def _hard_sigmoid(x, alpha, beta):
    return np.maximum(np.minimum(np.float32(alpha) * x + np.float32(beta), np.float32(1)), np.float32(0))


def _hard_swish(node, inputs):
    # ORT has no HardSwish kernel: it inlines ONNX's function body, Mul(X, HardSigmoid(X)) with
    # alpha = f32(1/6) and beta = 0.5 (tests/test_float_islands.py checks ORT's optimized graph).
    x = inputs[0]
    return x * _hard_sigmoid(x, np.float32(1 / 6), np.float32(0.5))


_FLOAT_ONLY = {
    "BatchNormalization": _batch_normalization,
    "PRelu": _prelu,
    "HardSigmoid": lambda node, inputs: _hard_sigmoid(inputs[0], attribute(node, "alpha", 0.2), attribute(node, "beta", 0.5)),
    "HardSwish": _hard_swish,
    "Sub": lambda node, inputs: np.subtract(inputs[0], inputs[1]),
    "Div": lambda node, inputs: np.divide(inputs[0], inputs[1]),
    "Max": lambda node, inputs: functools.reduce(np.maximum, inputs),  # in input order, as ORT folds them
    "Min": lambda node, inputs: functools.reduce(np.minimum, inputs),
}


@register
class FloatIsland(Lookup):
    name = "FloatIsland"
    onnx_ops = (OnnxOp("ai.qcc", "Lookup"),)
    qdq_float_ops = ()  # written by qcc.frontend.onnx.float_islands, not matched as a QDQ group
    tflite_ops = ()  # Lookup's TFLite ops are Lookup's, not inherited
    # BatchNormalization from 9 (no `spatial`), PRelu and Sub/Div from 7 and Max/Min from 8
    # (numpy-style broadcasting from those versions), HardSigmoid from 6, HardSwish since it exists (14).
    island_float_ops = (OnnxOp("", "BatchNormalization", 9), OnnxOp("", "PRelu", 7), OnnxOp("", "HardSigmoid", 6),
                        OnnxOp("", "HardSwish", 14), OnnxOp("", "Sub", 7), OnnxOp("", "Div", 7), OnnxOp("", "Max", 8),
                        OnnxOp("", "Min", 8))

    @property
    def summary(self) -> str:
        return ("elementwise float ops between DequantizeLinear and QuantizeLinear ("
                + ", ".join(ISLAND_RULES.names()) + "; constant operands, one quantized input, a chain or a small "
                "graph): one 256-byte table per channel, computed with ORT's float32 arithmetic")

    def evaluate_float(self, node, inputs, opset):
        return _FLOAT_ONLY[node.op_type](node, inputs)

    def island_refusal(self, node, shapes, channels):
        if node.op_type != "BatchNormalization" or channels is None:
            return None
        # core/providers/cpu/nn/batch_norm_helper.h: "Invalid input scale: NumDimensions() != 1", and for B, mean
        # and var; then "0th dimension != num_channels"
        for name, shape in zip(("scale", "B", "mean", "var"), shapes[1:]):
            if shape is not None and tuple(shape) != (channels,):
                return (f"its {name} has shape {list(shape)}; ONNX Runtime's BatchNormalization takes a 1-D {name} of "
                        f"{channels} values (one per channel) and refuses this model")
        return None

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        table = const_input(graph, onnx_node, 1, "table")
        y_quant = read_quant(graph, onnx_node, 2, 3, "output")
        zero_name = onnx_node.input[3] if len(onnx_node.input) > 3 else ""
        out_dtype = graph.tensor(zero_name).dtype if zero_name else "uint8"
        axis = int(attribute(onnx_node, "axis", -1))
        y = add_output(graph, onnx_node, 0, out_dtype, x.shape, y_quant)
        ops = attribute(onnx_node, "float_ops", "")
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"axis": axis if axis >= 0 else None, "onnx_op": ops},
                    params={"table": np.ascontiguousarray(table, dtype=np.uint8)})

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("table", "a float chain between DequantizeLinear and QuantizeLinear, turned into a "
                                    "256-entry table per channel computed at compile time with ORT's float32 "
                                    "arithmetic; " + KEEPS_ORT)
