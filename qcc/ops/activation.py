"""Relu and Clip on a quantized tensor. In a QOperator model they act on the raw codes
(Relu: max(q, 0); Clip: clamp(q, min, max)), so after an integer op they fold exactly into that
op's output clamp (see qcc/passes/fold_activations.py); nothing of them is left to run. Between a
DequantizeLinear and a QuantizeLinear that ORT does not fuse, they are float ops of an island."""

from __future__ import annotations

import numpy as np

from qcc.ir import DTYPE_RANGE, Graph, Node
from qcc.ops.base import OnnxOp, Op, const_input, register
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.quantized import add_output, quantized_input


@register
class ClampCodes(Op):
    name = "ClampCodes"
    # On codes: ONNX (and ORT) run Relu on int8 from opset 14 and Clip on 8-bit types from 12.
    onnx_ops = (OnnxOp("", "Relu", 14), OnnxOp("", "Clip", 12))
    summary = "Relu and Clip after an integer op: folded into its output clamp"
    # In float (a Relu whose QuantizeLinear zero point is not qmin, a Clip inside the quantized
    # range), ORT computes them on the dequantized values: they become part of a float island.
    island_float_ops = (OnnxOp("", "Relu", 6), OnnxOp("", "Clip", 6))

    def evaluate_float(self, node, inputs, opset):
        if node.op_type == "Relu":
            return np.maximum(inputs[0], np.float32(0))
        x, lo, hi = inputs  # the bounds as ORT reads them at this opset (attributes before 11)
        return np.minimum(np.maximum(x, lo), hi)

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        lo, hi = DTYPE_RANGE[x.dtype]
        if onnx_node.op_type == "Relu":
            lo = max(lo, 0)
        else:
            if len(onnx_node.input) > 1 and onnx_node.input[1]:
                lo = max(lo, int(const_input(graph, onnx_node, 1, "min")))
            if len(onnx_node.input) > 2 and onnx_node.input[2]:
                hi = min(hi, int(const_input(graph, onnx_node, 2, "max")))
        y = add_output(graph, onnx_node, 0, x.dtype, x.shape, x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"clamp": (lo, hi), "onnx_op": onnx_node.op_type})

    def reference(self, node: Node, graph: Graph, inputs):
        lo, hi = node.attrs["clamp"]
        return [np.clip(inputs[0], lo, hi).astype(inputs[0].dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES
