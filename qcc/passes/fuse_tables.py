"""Fuse an elementwise Add or Mul of a tensor with a table of itself into one table.

SiLU (Swish), as YOLOv5/YOLOv8 and EfficientNet write it, is x * sigmoid(x): a table (LOGISTIC, or ORT's
QLinearSigmoid) and then a Mul of x by its output. Run as written, the sigmoid's output is a whole tensor
beside x, and the Mul a second pass over both. Yet every output code depends on one input code only: for
each of the 256 codes of x, the table gives the other operand's code and the Mul's own integer arithmetic
(its reference, exact to its runtime in every scheme) gives the output. So the pair is one Lookup whose
table is computed here by running the Mul's reference on all 256 codes. The same holds for x * x, x + f(x),
f(x) * g(x): both operands functions of one tensor, elementwise, no broadcasting. The C then reads x once
and can write its output over it.

Runs after each op's prepare (the binary op's reference needs its parameters; the new Lookup is prepared
here).
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node
from qcc.ops import op_named

BINARY = ("QLinearMul", "QLinearAdd")
TABLE = "Lookup"


def apply(graph: Graph) -> None:
    for node in [n for n in graph.nodes if n.op in BINARY]:
        operands = [_as_table_of(graph, name) for name in node.inputs[:2]]
        sources = {source for source, _ in operands}
        y = graph.tensor(node.outputs[0])
        if (None in sources or len(sources) != 1 or len(node.inputs) != 2 or len(node.outputs) != 1
                or any(tuple(graph.tensor(t).shape) != tuple(y.shape) for t in node.inputs)):
            continue
        (source,) = sources
        x = graph.tensor(source)
        if x.is_const or x.dtype not in ("int8", "uint8") or y.dtype not in ("int8", "uint8") or x.size == 0:
            continue  # (a constant's products are folded where the model is read, not here)
        codes = np.arange(256, dtype=np.uint8).view(x.dtype)
        table = _outputs_for_codes(graph, node, operands, codes, x.shape).view(np.uint8)
        fused = Node(TABLE, node.name, [source], list(node.outputs),
                     attrs={"axis": None, "onnx_op": " of ".join([node.attrs.get("onnx_op", node.op)]
                                                                 + [t.attrs.get("onnx_op", t.op) for _, t in operands
                                                                    if t is not None])},
                     params={"table": table.reshape(1, 256)})
        graph.nodes[graph.nodes.index(node)] = fused
        op_named(TABLE).prepare(fused, graph)
        for _, table_node in operands:
            if (table_node is not None and table_node in graph.nodes and not graph.consumers(table_node.outputs[0])
                    and table_node.outputs[0] not in graph.outputs):
                graph.nodes.remove(table_node)
                del graph.tensors[table_node.outputs[0]]


def _as_table_of(graph: Graph, name: str) -> tuple[str | None, Node | None]:
    """(x, None) for an operand that is the tensor x itself; (x, node) for a one-table Lookup of x; (None, None)
    otherwise. A tensor produced by something else is its own source."""
    producer = graph.producer(name)
    if producer is not None and producer.op == TABLE and producer.attrs.get("axis") is None:
        return producer.inputs[0], producer
    return name, None


def _outputs_for_codes(graph: Graph, node: Node, operands, codes: np.ndarray, shape) -> np.ndarray:
    """The binary op's output code for each input code of the source, through its reference on tensors of its own
    shape filled with the codes (as many times as it takes to see all 256)."""
    size = int(np.prod(shape, dtype=np.int64))
    out = np.empty(256, dtype=graph.tensor(node.outputs[0]).dtype)
    op = op_named(node.op)
    for start in range(0, 256, size):
        chunk = np.resize(np.roll(codes, -start), size).reshape(shape)
        inputs = [chunk if table is None else op_named(TABLE).reference(table, graph, [chunk])[0]
                  for _, table in operands]
        result = np.asarray(op.reference(node, graph, inputs)[0]).reshape(-1)
        count = min(size, 256 - start)
        out[(np.arange(count) + start) % 256] = result[:count]
    return out
