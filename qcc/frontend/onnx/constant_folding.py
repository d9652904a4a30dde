"""Fold constant subgraphs of the ONNX model before import.

Exporters leave shape arithmetic in real graphs (Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
Constant, ConstantOfShape, Cast, ...). Every node whose inputs are all known at compile time is
evaluated here with onnx's reference implementation, Shape of a statically shaped tensor included,
and becomes an initializer. QuantizeLinear and DequantizeLinear are left alone: the QDQ pass
reads them as patterns.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from qcc.errors import QccError
from qcc.onnx_graph import attribute

_KEEP = {"QuantizeLinear", "DequantizeLinear"}


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = [d.dim_value for d in t.shape.dim]
    return shapes


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], opset: list) -> list[np.ndarray]:
    inputs = [helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for i, v in enumerate(values)]
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    names = iter(f"in{i}" for i in range(len(values)))
    for i, name in enumerate(copy.input):
        if name:
            copy.input[i] = next(names)
    outputs = [helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None) for i in range(len(copy.output))]
    for i in range(len(copy.output)):
        copy.output[i] = f"out{i}"
    model = helper.make_model(helper.make_graph([copy], "fold", inputs, outputs), opset_imports=opset)
    return ReferenceEvaluator(model).run(None, {f"in{i}": v for i, v in enumerate(values)})


def fold(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    graph = model.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes = _static_shapes(model)
    kept, folded_any = [], False
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Shape" and node.input[0] in shapes and node.domain in ("", "ai.onnx"):
            start, end = int(attribute(node, "start", 0)), attribute(node, "end")
            known[node.output[0]] = np.array(shapes[node.input[0]][start:end], dtype=np.int64)
        elif node.op_type not in _KEEP and node.domain in ("", "ai.onnx") and all(name in known for name in inputs):
            try:
                results = _evaluate(node, [known[name] for name in inputs], list(model.opset_import))
            except Exception as exc:
                raise QccError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) has only constant "
                               f"inputs but could not be folded: {str(exc).splitlines()[0]}") from None
            for name, value in zip(node.output, results):
                known[name] = np.asarray(value)
        else:
            kept.append(node)
            continue
        folded_any = True
    if not folded_any:
        return model
    read = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    initializers = [numpy_helper.from_array(value, name) for name, value in known.items() if name in read]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return model
