"""ONNX Runtime's level-1 rewrite rules that delete nodes computing nothing: EliminateIdentity,
EliminateDropout, CastElimination (a Cast to the type it already has) and NoopElimination (x + 0,
0 + x, x - 0, x * 1, 1 * x, x / 1 with a one-element constant). They run before ORT's QDQ fusion,
so `DQ -> Identity -> Conv -> Dropout -> Q` is fused into a QLinearConv; qcc removes the same
nodes under the same conditions so that it fuses the same groups (and refuses the same others).

ORT's condition for removing a node (graph_utils::CanRemoveNode), reproduced: only one of its
outputs is read, none is a graph output, and its input is either the output of one node (other
inputs may be constants) or its only input. An Identity that feeds a graph output may still go
when the tensor it copies is read by nothing else and is no graph output itself: that tensor's
producer then writes the graph output directly.
"""

from __future__ import annotations

import numpy as np
import onnx

from qcc.onnx_graph import GraphIndex


def _can_remove(index: GraphIndex, node: onnx.NodeProto) -> bool:
    used = [name for name in node.output if index.consumers.get(name)]
    if len(used) > 1 or any(name in index.graph_outputs for name in node.output):
        return False
    from_nodes = [name for name in node.input if name in index.producer]
    return len(from_nodes) == 1 or (not from_nodes and len([n for n in node.input if n]) == 1)


def _is_noop(index: GraphIndex, node: onnx.NodeProto) -> bool:
    if node.op_type not in ("Add", "Sub", "Mul", "Div") or len(node.input) != 2:
        return False
    constant = [name in index.initializers for name in node.input]
    if constant[0] == constant[1] or (node.op_type in ("Sub", "Div") and not constant[1]):
        return False
    value = index.constant(node.input[0 if constant[0] else 1])
    other = index.shapes.get(node.input[1 if constant[0] else 0])
    if other is None or value.ndim > len(other) or value.size > 1:
        return False
    if value.size == 0:
        return True
    if value.dtype not in (np.float32, np.float16, np.float64, np.int32, np.int64):
        return False
    neutral = 0.0 if node.op_type in ("Add", "Sub") else 1.0
    return float(np.float32(value.reshape(()))) == neutral


def _removable(index: GraphIndex, node: onnx.NodeProto) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Identity" or (node.op_type == "Cast" and any(
            a.name == "to" and a.i == index.elem_type(node.input[0]) for a in node.attribute)):
        return _can_remove(index, node)
    if node.op_type == "Dropout":
        return _can_remove(index, node) and not (len(node.output) > 1 and index.consumers.get(node.output[1]))
    return _is_noop(index, node) and _can_remove(index, node)


def eliminate(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    while True:
        index = GraphIndex(graph)
        node = next((n for n in graph.node if _removable(index, n)), None)
        if node is not None:
            kept = next(name for name in node.input if name in index.producer) if any(
                name in index.producer for name in node.input) else next(name for name in node.input if name)
            for reader in index.consumers.get(node.output[0], []):
                reader.input[:] = [kept if name == node.output[0] else name for name in reader.input]
            graph.node.remove(node)
            continue
        identity = next((n for n in graph.node if n.op_type == "Identity" and _copies_into_output(index, n)), None)
        if identity is None:
            return model
        producer = index.producer[identity.input[0]]
        producer.output[:] = [identity.output[0] if name == identity.input[0] else name for name in producer.output]
        graph.node.remove(identity)


def _copies_into_output(index: GraphIndex, identity: onnx.NodeProto) -> bool:
    """An Identity whose output is a graph output read by no node, copying a node's output that
    nothing else reads and that is no graph output."""
    source, out = identity.input[0], identity.output[0]
    return (out in index.graph_outputs and not index.consumers.get(out) and source in index.producer
            and len(index.consumers.get(source, [])) == 1 and source not in index.graph_outputs)
