"""ONNX Runtime's QDQPropagationTransformer (graph optimization level 1, after MatMulAddFusion and
before the QDQ fusion): QuantizeLinear/DequantizeLinear pairs are copied across ops that only move
or select values, so that the ops around them find their Q and DQ.

- Backward: a QuantizeLinear after a chain of such ops (each the only reader of its input, which
  is no graph output) gets a copy of itself, with a DequantizeLinear, in front of every op of the
  chain, up to a DequantizeLinear or an op of another kind. `Conv -> Reshape -> Q` becomes
  `Conv -> Q -> DQ -> Reshape -> Q`, and `input -> Transpose -> Q` becomes `input -> Q -> DQ -> Transpose -> Q`.
- Forward: a DequantizeLinear before such ops gets a Q -> DQ copy after each of them, through
  fan-out, up to an edge that already ends in a QuantizeLinear. `DQ -> Transpose -> Conv` becomes
  `DQ -> Transpose -> Q -> DQ -> Conv`.

Only DequantizeLinear/QuantizeLinear with a constant scalar scale and zero point propagate. The
copies are lossless (values already on the grid, and these ops commute with quantization); what
they change is which groups ORT then fuses into integer kernels, so qcc must insert the same ones.
The ops and versions are those ORT 1.32 propagates across (measured: Flatten and MaxPool-11 do not);
each op module lists them (Op.qdq_propagation_ops).
"""

from __future__ import annotations

import itertools

import onnx
from onnx import helper

from qcc import ops
from qcc.onnx_graph import GraphIndex, default_opset, topological_sort

def _propagates(node: onnx.NodeProto, opset: int) -> bool:
    return ops.qdq_propagates_across(node.domain, node.op_type, opset)


def _constant_scalar_parameters(index: GraphIndex, node: onnx.NodeProto) -> bool:
    names = [node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    values = [index.constant(name) if name in index.initializers else None for name in names]
    return all(v is not None and v.size == 1 for v in values)


class _Inserter:
    """Adds Q -> DQ pairs with a given node's scale and zero point on tensors of the graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        taken = {n for node in graph.node for n in [*node.input, *node.output, node.name]}
        taken |= {v.name for v in [*graph.input, *graph.output, *graph.initializer]}
        self.taken = taken

    def fresh(self, base: str) -> str:
        for i in itertools.count():
            name = f"{base}_qdq_propagated" + (f"{i}" if i else "")
            if name not in self.taken:
                self.taken.add(name)
                return name

    def pair(self, params: onnx.NodeProto, source: str, readers: list[onnx.NodeProto],
             output_of: onnx.NodeProto | None = None) -> None:
        """Make `source` pass through Q -> DQ before each reader; with output_of (its producer),
        `source` is a graph output instead, which then comes out of the DQ (and keeps its name)."""
        q_input = source
        if output_of is not None:
            q_input = self.fresh(source)
            output_of.output[:] = [q_input if name == source else name for name in output_of.output]
        q_out = self.fresh(f"{source}_q")
        self.graph.node.append(helper.make_node("QuantizeLinear", [q_input, *params.input[1:]], [q_out],
                                                name=self.fresh(f"{source}_q_node")))
        for reader in readers:
            dq_out = self.fresh(f"{source}_dq")
            self.graph.node.append(helper.make_node("DequantizeLinear", [q_out, *params.input[1:]], [dq_out],
                                                    name=self.fresh(f"{source}_dq_node")))
            reader.input[:] = [dq_out if name == source else name for name in reader.input]
        if output_of is not None:
            self.graph.node.append(helper.make_node("DequantizeLinear", [q_out, *params.input[1:]], [source],
                                                    name=self.fresh(f"{source}_dq_node")))


def propagate(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return model
    opset = default_opset(model)
    index = GraphIndex(graph, opset)
    inserter = _Inserter(graph)
    original = list(graph.node)
    for q in [n for n in original if n.op_type == "QuantizeLinear" and _constant_scalar_parameters(index, n)]:
        _backward(index, inserter, q)
    index = GraphIndex(graph, opset)
    for dq in [n for n in original if n.op_type == "DequantizeLinear" and _constant_scalar_parameters(index, n)]:
        # ORT first gives each reader of a DequantizeLinear its own copy (EnsureUniqueDQForNodeUnit).
        for reader in list(index.consumers.get(dq.output[0], [])):
            _forward(index, inserter, dq, reader)
    topological_sort(graph)
    return model


def _backward(index: GraphIndex, inserter: _Inserter, q: onnx.NodeProto) -> None:
    """Copy q in front of each op of the byte-moving chain that ends in it."""
    op = index.producer.get(q.input[0])
    if op is None or index.single_consumer(q.input[0]) is not q:
        return
    while _propagates(op, index.opset):
        source = op.input[0]
        before = index.producer.get(source)
        if before is not None and (before.op_type == "DequantizeLinear" or index.single_consumer(source) is not op):
            return
        if before is None and source not in {i.name for i in index.graph.input}:
            return  # an initializer: constant folding has already computed it
        inserter.pair(q, source, [op])
        if before is None:
            return
        op = before


def _forward(index: GraphIndex, inserter: _Inserter, dq: onnx.NodeProto, reader: onnx.NodeProto) -> None:
    """Copy dq after each byte-moving op downstream of its edge into `reader`."""
    pending = [reader]
    while pending:
        op = pending.pop()
        if not _propagates(op, index.opset):
            continue
        out = op.output[0]
        readers = index.consumers.get(out, [])
        is_output = out in index.graph_outputs
        if readers and is_output:
            continue  # ORT propagates neither to the readers nor to the output then
        readers = [r for r in readers if r.op_type != "QuantizeLinear"]
        if not readers and not is_output:
            continue
        inserter.pair(dq, out, readers, output_of=op if is_output else None)
        pending.extend(readers)
