"""The reference interpreter: runs the compiled IR in numpy, op by op, with each op's reference
semantics (integer arithmetic and the same rounding scheme as the C). It is the oracle the
generated C must equal bit for bit, and its own tests hold it equal to ONNX Runtime."""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.ir import Graph
from qcc.ops import op_named


def run(graph: Graph, inputs: list[np.ndarray], keep_all: bool = False):
    """Outputs (in graph.outputs order) for inputs given in graph.inputs order. With keep_all,
    instead a dict of every tensor the run holds (the inputs and each node's outputs), by name."""
    if len(inputs) != len(graph.inputs):
        raise QccError(f"{graph.source}: the model takes {len(graph.inputs)} inputs, got {len(inputs)}")
    values: dict[str, np.ndarray] = {}
    for name, value in zip(graph.inputs, inputs):
        tensor = graph.tensor(name)
        value = np.asarray(value)
        if value.dtype != np.dtype(tensor.dtype) or value.size != tensor.size:
            raise QccError(f"input '{graph.public_name(name)}' must be {tensor.dtype} with {tensor.size} "
                           f"elements, got {value.dtype} with {value.size}")
        values[name] = value.reshape(tensor.shape)
    for node in graph.nodes:
        args = [values[n] if n in values else graph.tensor(n).data for n in node.inputs]
        for name, value in zip(node.outputs, op_named(node.op).reference(node, graph, args)):
            values[name] = value
    if keep_all:
        return values
    return [values[name] for name in graph.outputs]
