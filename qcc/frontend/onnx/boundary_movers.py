"""Byte movers at the float boundary of a QOperator-style model: a float graph input that passes
through Flatten (or another op that only moves values) before its QuantizeLinear, or a
DequantizeLinear whose floats pass through one before a graph output.

ORT's QDQ propagation moves Q/DQ across Reshape, Transpose, Squeeze, Unsqueeze and Slice
(qdq_propagation.py) but not across Flatten; ORT then flattens the floats. Quantizing commutes
with moving values, so the codes ORT produces equal those of quantizing first and flattening the
codes, which is what qcc compiles: `input -> Flatten -> Q` becomes `input -> Q -> Flatten`, and
`DQ -> Flatten -> output` becomes `Flatten -> DQ -> output`.
"""

from __future__ import annotations

import onnx

from qcc import ops
from qcc.onnx_graph import GraphIndex, default_opset, topological_sort



def _moves_values_only(node: onnx.NodeProto, opset: int) -> bool:
    op = ops.op_for_onnx(node.domain, node.op_type, opset)
    return op is not None and op.moves_values_only


def move(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    index = GraphIndex(graph, default_opset(model))
    inputs = {i.name for i in graph.input} - set(index.initializers)
    moved = False
    for mover in [n for n in graph.node if _moves_values_only(n, index.opset)]:
        reader = index.single_consumer(mover.output[0])
        source = mover.input[0]
        if source in inputs and reader is not None and reader.op_type == "QuantizeLinear" \
                and index.single_consumer(source) is mover:
            # input -> mover -> Q(params)  becomes  input -> Q(params) -> mover
            codes = f"{source}_quantized_before_{mover.op_type.lower()}"
            quantized = reader.output[0]
            reader.input[0], reader.output[0] = source, codes
            mover.input[0], mover.output[0] = codes, quantized
            moved = True
        producer = index.producer.get(source)
        if producer is not None and producer.op_type == "DequantizeLinear" and mover.output[0] in index.graph_outputs \
                and not index.consumers.get(mover.output[0]) and index.single_consumer(source) is mover:
            # DQ -> mover -> output  becomes  mover (codes) -> DQ -> output
            result = mover.output[0]
            mover.input[0], mover.output[0] = producer.input[0], f"{result}_codes"
            producer.input[0], producer.output[0] = mover.output[0], result
            moved = True
    if moved:
        topological_sort(graph)
    return model
