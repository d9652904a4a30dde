"""A float island compiled to lookup tables (see qcc/frontend/float_islands.py for how the tables
are computed): the ONNX node ai.qcc.Lookup that pass writes becomes a Lookup with its tables."""

from __future__ import annotations

import numpy as np

from qcc.frontend.float_islands import EVALUATORS
from qcc.ir import Graph, Node
from qcc.ops.base import attribute, const_input, register
from qcc.ops.explanation import KEEPS_ORT, Explanation
from qcc.ops.lookup_table import Lookup
from qcc.ops.quantized import add_output, quantized_input, read_quant


@register
class FloatIsland(Lookup):
    name = "FloatIsland"
    onnx_ops = (("ai.qcc", "Lookup"),)
    qdq_float_ops = ()  # written by qcc.frontend.float_islands, not matched as a QDQ group
    summary = ("elementwise float ops between DequantizeLinear and QuantizeLinear ("
               + ", ".join(sorted(EVALUATORS)) + "; constant operands, one quantized input, a chain or a small graph): "
               "one 256-byte table per channel, computed with ORT's float32 arithmetic")

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        table = const_input(graph, onnx_node, 1, "table")
        y_quant = read_quant(graph, onnx_node, 2, 3, "output")
        zero_name = onnx_node.input[3] if len(onnx_node.input) > 3 else ""
        out_dtype = graph.tensor(zero_name).dtype if zero_name else "uint8"
        axis = int(attribute(onnx_node, "axis", -1))
        y = add_output(graph, onnx_node, 0, out_dtype, x.shape, y_quant)
        ops = attribute(onnx_node, "float_ops", b"")
        return Node(self.name, onnx_node.name or y, [x.name], [y],
                    attrs={"axis": axis if axis >= 0 else None, "onnx_op": ops.decode() if isinstance(ops, bytes) else ops},
                    params={"table": np.ascontiguousarray(table, dtype=np.uint8)})

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("table", "a float chain between DequantizeLinear and QuantizeLinear, turned into a "
                                    "256-entry table per channel computed at compile time with ORT's float32 "
                                    "arithmetic; " + KEEPS_ORT)
