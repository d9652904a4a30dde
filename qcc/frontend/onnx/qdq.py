"""QDQ models -> QOperator nodes, for the groups where ONNX Runtime's QDQ fusion runs integer kernels.

A QDQ model wraps float ops in DequantizeLinear -> op -> QuantizeLinear. With default graph
optimizations (and session.qdqisint8allowed = 1) ORT replaces such a group by the integer
kernel of the matching QOperator op (QLinearConv, QGemm, ...) or, for ops that only move
bytes, drops the DQ/Q pair and runs the op on the codes. This pass does the same rewriting on
the ONNX graph, so the rest of qcc sees a QOperator model. Each op module says, through
Op.qdq_float_ops and Op.from_qdq, which float ops it replaces and how; this module finds the
groups and splices the replacements in. A float op next to DQ/Q that no rule fuses is refused
by name, unless it has a float operand and may belong to an elementwise island that
qcc/frontend/onnx/float_islands.py turns into tables: qcc never computes something else than ORT.
"""

from __future__ import annotations

import onnx

from qcc import ops
from qcc.errors import FloatNodeError, QccError, malformed
from qcc.onnx_graph import GraphIndex, default_opset
from qcc.ops.qdq_group import NotFused, QdqGroup


def fuse(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Rewrite every DQ -> op -> Q group that ORT fuses into its QOperator form."""
    graph = model.graph
    if not any(n.op_type == "DequantizeLinear" for n in graph.node):
        return model
    opset = default_opset(model)
    index = GraphIndex(graph, opset)
    _refuse_double_pairs(index, source)
    new_nodes: list[onnx.NodeProto] = []
    removed: set[int] = set()
    fused_any = False
    for node in graph.node:
        op = ops.qdq_op_for(node.domain, node.op_type, opset)
        if op is None or not any(index.producer_of(name, "DequantizeLinear") for name in node.input if name):
            new_nodes.append(node)
            continue
        group = QdqGroup(index, node)
        try:
            with malformed(source, node.name or node.output[0], node.op_type):
                replacement = op.from_qdq(group)
        except NotFused as why:
            if ops.island_op_for(node.domain, node.op_type, opset) is not None and any(
                    dq is None for dq, name in zip(group.dq, node.input) if name):
                new_nodes.append(node)  # a float operand: ORT runs it in float, maybe as part of an island
                continue
            raise FloatNodeError(
                f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) stays in float in ONNX Runtime "
                f"because {why}; qcc compiles only what ORT runs as integer kernels", node.output[0]
            ) from None
        new_nodes.extend(replacement)
        removed.update(id(n) for n in group.removed() if n not in replacement)
        graph.initializer.extend(group.new_initializers)
        fused_any = True
    if not fused_any:
        return model
    kept = [n for n in new_nodes if id(n) not in removed]
    # DequantizeLinear nodes whose outputs nobody reads any more disappear with their groups.
    while True:
        read = {name for n in kept for name in n.input} | {o.name for o in graph.output}
        dead = [n for n in kept if n.op_type == "DequantizeLinear" and n.output[0] not in read]
        if not dead:
            break
        kept = [n for n in kept if n not in dead]
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _refuse_double_pairs(index: GraphIndex, source: str) -> None:
    """ORT's DoubleQDQPairsRemover merges Q1 -> DQ1 -> Q2 -> DQ2 into one pair with newly computed
    parameters, which changes the numbers; qcc does not reproduce that and says so."""
    for q1 in index.graph.node:
        if q1.op_type != "QuantizeLinear":
            continue
        dq1 = index.single_consumer(q1.output[0])
        q2 = index.single_consumer(dq1.output[0]) if dq1 is not None and dq1.op_type == "DequantizeLinear" else None
        dq2 = index.single_consumer(q2.output[0]) if q2 is not None and q2.op_type == "QuantizeLinear" else None
        if dq2 is not None and dq2.op_type == "DequantizeLinear":
            raise QccError(f"{source}: '{q1.name}' -> '{dq1.name}' -> '{q2.name}' -> '{dq2.name}' is a double "
                           "QuantizeLinear/DequantizeLinear pair, which ONNX Runtime merges with recomputed scale and "
                           "zero point; qcc does not reproduce that: remove one pair from the model")
