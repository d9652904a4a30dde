"""QLinearMatMul with a constant N-D right side (batched: B of shape (..., K, N), as ONNX's own
node tests and attention-like blocks write it), split into the 2-D matrix products qcc compiles.

ORT runs one QLinearMatMul over the broadcast batch: each output matrix is A's matching (M, K)
slice times B's matching (K, N) matrix, requantized with the same scales. This pass writes that
out in QOperator form: A reshaped to (batches, M, K) and sliced per batch (on codes), one 2-D
QLinearMatMul per output matrix with its B matrix as a constant, and the results concatenated
and reshaped to the broadcast shape. Every step but the products only moves codes, so the
result equals ORT's whatever the batch layout.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.onnx_graph import GraphIndex, topological_sort


def split(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    index = GraphIndex(graph)
    changed = False
    for node in [n for n in graph.node if n.op_type == "QLinearMatMul" and n.domain in ("", "ai.onnx")]:
        b = index.constant(node.input[3])
        a_shape = index.shapes.get(node.input[0])
        if b is None or b.ndim <= 2 or not a_shape or not all(d > 0 for d in a_shape) or not matches(a_shape, b.shape):
            continue  # (a product ORT refuses stays whole: qcc.ops.fully_connected refuses it by name)
        _split_one(graph, node, list(a_shape), b)
        changed = True
    if changed:
        topological_sort(graph)
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    return model


def matches(a_shape, b_shape) -> bool:
    """Whether ORT runs A times a batched B: A's depth is B's rows and the batch dimensions broadcast."""
    a_rows = [1, *a_shape] if len(a_shape) == 1 else list(a_shape)
    try:
        np.broadcast_shapes(tuple(a_rows[:-2]), tuple(b_shape[:-2]))
    except ValueError:
        return False
    return a_rows[-1] == b_shape[-2]


def _split_one(graph: onnx.GraphProto, node: onnx.NodeProto, a_shape: list[int], b: np.ndarray) -> None:
    base = node.name or node.output[0]
    vector = len(a_shape) == 1  # ONNX: a 1-D A is a row, and that axis leaves the result
    a_rows = [1, *a_shape] if vector else a_shape
    m, k = a_rows[-2:]
    n = b.shape[-1]
    batch = list(np.broadcast_shapes(tuple(a_rows[:-2]), b.shape[:-2]))
    a_batches = int(np.prod(a_rows[:-2], dtype=np.int64))
    a_index = np.broadcast_to(np.arange(a_batches).reshape(a_rows[:-2] or [1]), batch).reshape(-1)
    b_flat = b.reshape(-1, k, n)
    b_index = np.broadcast_to(np.arange(b_flat.shape[0]).reshape(b.shape[:-2]), batch).reshape(-1)
    names = (f"{base}_batch_{i}" for i in itertools.count())
    new_nodes, inits = [], []

    def const(value):
        name = next(names)
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    a3 = next(names)
    new_nodes.append(helper.make_node("Reshape", [node.input[0], const(np.array([a_batches, m, k], np.int64))], [a3],
                                      name=a3))
    a_slices = {}
    products = []
    for i, (ai, bi) in enumerate(zip(a_index.tolist(), b_index.tolist())):
        if ai not in a_slices:
            sliced, matrix = next(names), next(names)
            new_nodes += [helper.make_node("Slice", [a3, const(np.array([ai], np.int64)), const(np.array([ai + 1], np.int64)),
                                                     const(np.array([0], np.int64))], [sliced], name=sliced),
                          helper.make_node("Reshape", [sliced, const(np.array([m, k], np.int64))], [matrix], name=matrix)]
            a_slices[ai] = matrix
        product, row = f"{base}_{i}", next(names)
        inputs = list(node.input)
        inputs[0], inputs[3] = a_slices[ai], const(b_flat[bi])
        new_nodes += [helper.make_node("QLinearMatMul", inputs, [product], name=product),
                      helper.make_node("Reshape", [product, const(np.array([1, m, n], np.int64))], [row], name=row)]
        products.append(row)
    joined = next(names)
    new_nodes.append(helper.make_node("Concat", products, [joined], name=joined, axis=0))
    shape = batch + ([n] if vector else [m, n])
    new_nodes.append(helper.make_node("Reshape", [joined, const(np.array(shape, np.int64))], [node.output[0]],
                                      name=next(names)))
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(new_nodes):
        graph.node.insert(position + offset, new)
    graph.initializer.extend(inits)
