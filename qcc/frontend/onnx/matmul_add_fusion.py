"""ONNX Runtime's MatMulAddFusion (graph optimization level 1, before the QDQ propagation and
fusion): a MatMul whose only reader is an Add becomes a Gemm with the Add's other input as C.
In a QDQ model `DQ -> MatMul -> Add(DQ(int32 bias)) -> Q` (tf2onnx's form of every TFLite
FULLY_CONNECTED) thereby becomes a Gemm group, which ORT runs as com.microsoft.QGemm; left as
MatMul + Add, it would run in float.

ORT's conditions, reproduced (onnxruntime/core/optimizer/matmul_add_fusion.cc, and observed with
ORT 1.32): the MatMul's output has one reader and is no graph output; the reader is Add (opset 7
or later); both take float tensors; the shapes of A and B are known and B is 2-D. When A is not
2-D its shape must be static: A is reshaped to (M, K) before the Gemm and the result back to
A's leading dimensions and N after it. C must be 1-D of length N, or, only when A is 2-D, (1, N),
(M, 1) or (M, N). A MatMul whose A comes from an attention block's Softmax -> MatMul -> Transpose
-> Reshape is left alone, as ORT leaves it to its attention fusion.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.onnx_graph import GraphIndex, default_opset, topological_sort

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _shape(index: GraphIndex, name: str) -> list[int] | None:
    if name in index.initializers:
        return list(index.initializers[name].dims)
    return index.shapes.get(name)


def _is_attention_projection(index: GraphIndex, matmul: onnx.NodeProto) -> bool:
    chain = [index.producer.get(matmul.input[0])]
    for op_type in ("Reshape", "Transpose", "MatMul", "Softmax"):
        node = chain[-1]
        if node is None or node.op_type != op_type:
            return False
        chain.append(index.producer.get(node.input[0]) if op_type != "Softmax" else None)
    return True


def fuse(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    opset = default_opset(model)
    if opset < 7 or not any(n.op_type == "MatMul" for n in graph.node):
        return model
    index = GraphIndex(graph, opset)
    taken = {name for node in graph.node for name in [*node.input, *node.output, node.name]} | set(index.initializers)
    unused = (name for name in (f"matmul_add_fusion_{i}" for i in itertools.count()) if name not in taken)
    changed = False
    for matmul in [n for n in graph.node if n.op_type == "MatMul" and n.domain in ("", "ai.onnx")]:
        add = index.single_consumer(matmul.output[0])
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
            continue
        a_type, add_type = index.elem_type(matmul.input[0]), index.elem_type(add.input[0])
        if a_type != add_type or a_type not in _FLOAT_TYPES:
            continue
        a_shape, b_shape = _shape(index, matmul.input[0]), _shape(index, matmul.input[1])
        if a_shape is None or b_shape is None or len(b_shape) != 2:
            continue
        reshape = len(a_shape) != 2
        if reshape and (not all(d > 0 for d in a_shape) or not all(d > 0 for d in b_shape)
                        or _is_attention_projection(index, matmul)):
            continue
        bias = add.input[1] if add.input[0] == matmul.output[0] else add.input[0]
        c_shape = _shape(index, bias)
        n = b_shape[1]
        if c_shape is None or not (c_shape == [n] or (not reshape and len(c_shape) == 2 and (
                (c_shape[0] == 1 and c_shape[1] == n) or (c_shape[0] == a_shape[0] and c_shape[1] in (1, n))))):
            continue
        a, y = matmul.input[0], add.output[0]
        new_nodes, new_inits = [], []
        if reshape:
            m = int(np.prod(a_shape[:-1], dtype=np.int64))
            in_shape, out_shape, a_2d, y_2d = next(unused), next(unused), next(unused), next(unused)
            new_inits += [numpy_helper.from_array(np.array([m, b_shape[0]], np.int64), in_shape),
                          numpy_helper.from_array(np.array([*a_shape[:-1], n], np.int64), out_shape)]
            new_nodes.append(helper.make_node("Reshape", [a, in_shape], [a_2d], name=next(unused)))
            a, y = a_2d, y_2d
        new_nodes.append(helper.make_node("Gemm", [a, matmul.input[1], bias], [y], name=matmul.name or next(unused)))
        if reshape:
            new_nodes.append(helper.make_node("Reshape", [y, out_shape], [add.output[0]], name=next(unused)))
        position = list(graph.node).index(matmul)
        graph.node.remove(matmul)
        graph.node.remove(add)
        for offset, node in enumerate(new_nodes):
            graph.node.insert(position + offset, node)
        graph.initializer.extend(new_inits)
        changed = True
    if not changed:
        return model
    topological_sort(graph)
    return onnx.shape_inference.infer_shapes(model, strict_mode=False)
