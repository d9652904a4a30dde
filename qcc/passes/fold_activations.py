"""Fold Relu and Clip into the clamp of the integer op that produces their input.

In a QOperator model Relu and Clip act on the codes, and clamp(clamp(v, a, b), c, d) equals
clamp(v, max(a, c), min(b, d)), so folding is exact. Anything else has no integer kernel here
and is refused by name.
"""

from __future__ import annotations

from qcc.errors import QccError
from qcc.ir import Graph
from qcc.ops import all_ops, op_named


def apply(graph: Graph) -> None:
    for node in [n for n in graph.nodes if n.op == "ClampCodes"]:
        source, result = node.inputs[0], node.outputs[0]
        producer = graph.producer(source)
        if (producer is None or not op_named(producer.op).folds_clamp or len(graph.consumers(source)) != 1
                or source in graph.outputs):
            raise QccError(
                f"{graph.source}: node '{node.name}' ({node.attrs['onnx_op']}) does not directly follow an integer "
                f"op ({', '.join(sorted(op.name for op in all_ops() if op.folds_clamp))}) as its only reader; qcc folds {node.attrs['onnx_op']} "
                "only into such an op's clamp"
            )
        lo, hi = node.attrs["clamp"]
        old_lo, old_hi = producer.attrs.get("clamp", (lo, hi))
        producer.attrs["clamp"] = (max(lo, old_lo), min(hi, old_hi))
        producer.outputs = [result]
        graph.tensor(result).quant = graph.tensor(source).quant
        graph.nodes.remove(node)
        del graph.tensors[source]
