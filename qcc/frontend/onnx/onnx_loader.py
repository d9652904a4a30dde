"""ONNX file -> qcc IR: load, check, fix input shapes, run onnx.shape_inference, import each node
through its op module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from qcc import ops
from qcc.errors import FloatNodeError, QccError, malformed
from qcc.frontend.onnx.subgraph import worked_out
from qcc.frontend.onnx.validate import validate
from qcc.ir import MAX_TENSOR_ELEMENTS, Graph, Tensor
from qcc.onnx_graph import GraphIndex, default_opset, opset_of

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
}
# Ops whose presence shows that a model is quantized at all.
_QUANTIZED_MARKERS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                      "QLinearGlobalAveragePool", "QLinearAdd", "QLinearMul", "ConvInteger", "MatMulInteger"}


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]]:
    """--input-shape NAME=1,3,96,96 (repeatable) -> {NAME: [1, 3, 96, 96]}."""
    shapes = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            name = ""
        if not name or any(d <= 0 for d in shapes.get(name, [0])):
            raise QccError(f"--input-shape {spec!r}: expected NAME=D0,D1,... with positive integers")
    return shapes


def load_model(path: str | Path, input_shapes: dict[str, list[int]] | None = None,
               cut_inputs: list[str] | None = None) -> onnx.ModelProto:
    """The model, validated, its inputs' shapes fixed (--input-shape) and ONNX shape inference run. An
    --input-shape may also name a tensor the model computes, the input of a cut (--inputs): it gives that
    tensor's shape where shape inference gives none (cut_inputs, when given, are the names allowed so)."""
    path = Path(path)
    if not path.is_file():
        raise QccError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for non-ONNX bytes
        raise QccError(f"{path}: not an ONNX model ({type(exc).__name__}); give a .onnx file") from None
    if not model.graph.node and not model.graph.input:
        raise QccError(f"{path}: not an ONNX model (no graph); give a .onnx file")
    _check_text(model, path)
    validate(model, str(path))
    input_shapes = dict(input_shapes or {})
    tensor_shapes = _computed_tensor_shapes(model, path, input_shapes, cut_inputs)
    _fix_input_shapes(model, path, input_shapes)
    model = _infer(model, path)
    if tensor_shapes:
        _give_tensor_shapes(model, path, tensor_shapes)
        model = _infer(model, path)
    return model


def _check_text(message, path: Path) -> None:
    """Every string field (names, op types, domains, attribute names) holds UTF-8 text: protobuf hands bytes that
    are not UTF-8 (a corrupted file) back as bytes, which no name can be."""
    for field, value in message.ListFields():
        # (protobuf's newer descriptors say is_repeated, older ones label)
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if field.type == field.TYPE_MESSAGE:
            for item in (value if repeated else [value]):
                _check_text(item, path)
        elif field.type == field.TYPE_STRING:
            for item in (value if repeated else [value]):
                if not isinstance(item, str):
                    raise QccError(f"{path}: not a valid ONNX model: a {field.containing_type.name} {field.name} holds "
                                   f"bytes that are not UTF-8 text ({bytes(item)[:40]!r}); the file is corrupt")


def _infer(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:
        raise QccError(f"{path}: ONNX shape inference failed: {str(exc).splitlines()[0]}") from None


def _computed_tensor_shapes(model: onnx.ModelProto, path: Path, input_shapes: dict[str, list[int]],
                            cut_inputs: list[str] | None) -> dict[str, list[int]]:
    """The --input-shape entries that name a tensor a node computes (a cut input), taken out of input_shapes;
    a name that is neither a graph input nor such a tensor is refused."""
    initializers = {init.name for init in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    computed = {o for n in model.graph.node for o in n.output if o}
    taken = {}
    for name in list(input_shapes):
        if name in names:
            continue
        if name in computed and (cut_inputs is None or name in cut_inputs):
            taken[name] = input_shapes.pop(name)
            continue
        hint = ("; a tensor the model computes takes --input-shape only as a cut input (--inputs " + name + ")"
                if name in computed else "")
        raise QccError(f"{path}: --input-shape names '{name}', but the graph inputs are {names}{hint}")
    return taken


def _give_tensor_shapes(model: onnx.ModelProto, path: Path, shapes: dict[str, list[int]]) -> None:
    """Each tensor's shape from --input-shape, checked against what shape inference knows of it, and what qcc
    works out through the ops before it."""
    infos = {vi.name: vi for vi in model.graph.value_info}
    worked = worked_out(model, GraphIndex(model.graph), set(shapes))
    for name, wanted in shapes.items():
        if name in worked:
            dims = [d.dim_value for d in worked[name].type.tensor_type.shape.dim]
            if dims != list(wanted):
                raise QccError(f"{path}: --input-shape {name}={','.join(map(str, wanted))}: '{name}' has the shape "
                               f"{dims} (from the ops that compute it); give that shape, or leave it out")
        vi = infos.get(name)
        if vi is None:
            vi = model.graph.value_info.add()
            vi.name = name
        tensor_type = vi.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            if len(dims) != len(wanted):
                raise QccError(f"{path}: --input-shape {name}={','.join(map(str, wanted))}: ONNX shape inference gives "
                               f"'{name}' rank {len(dims)}")
            for i, (dim, value) in enumerate(zip(dims, wanted)):
                if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != value:
                    known = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                    raise QccError(f"{path}: --input-shape {name}={','.join(map(str, wanted))}: ONNX shape inference "
                                   f"gives '{name}' the shape {known}")
        tensor_type.ClearField("shape")
        for value in wanted:
            tensor_type.shape.dim.add().dim_value = value


def _fix_input_shapes(model: onnx.ModelProto, path: Path, input_shapes: dict[str, list[int]]) -> None:
    """Each graph input's dynamic dimensions from --input-shape. A fixed dimension stays what the model says
    (ONNX Runtime refuses an input of another shape), and every input must end with a static shape: an input
    without one (its rank unknown) would otherwise compile as a scalar."""
    initializers = {init.name for init in model.graph.initializer}
    # (every name in input_shapes is a graph input: _computed_tensor_shapes refused the others)
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        tensor_type = graph_input.type.tensor_type
        if not tensor_type.HasField("shape") and graph_input.name not in input_shapes:
            raise QccError(f"{path}: input '{graph_input.name}' has no shape in the model (not even a rank); give it "
                           f"with --input-shape {graph_input.name}=D0,D1,...")
        dims = tensor_type.shape.dim
        if graph_input.name in input_shapes:
            wanted = input_shapes[graph_input.name]
            if not tensor_type.HasField("shape"):
                for _ in wanted:
                    dims.add()
            if len(wanted) != len(dims):
                raise QccError(f"{path}: input '{graph_input.name}' has rank {len(dims)}, --input-shape gives {len(wanted)} dims")
            if int(np.prod(wanted, dtype=object)) > MAX_TENSOR_ELEMENTS:
                raise QccError(f"{path}: input '{graph_input.name}' would have {int(np.prod(wanted, dtype=object))} "
                               "elements; qcc's limit is 2^28 per tensor")
            for i, (dim, value) in enumerate(zip(dims, wanted)):
                if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != value:
                    raise QccError(
                        f"{path}: --input-shape {graph_input.name}={','.join(map(str, wanted))}: dimension {i} of input "
                        f"'{graph_input.name}' is {dim.dim_value} in the model, and ONNX Runtime takes no other; "
                        "--input-shape gives the dynamic dimensions only")
            for dim, value in zip(dims, wanted):
                dim.Clear()
                dim.dim_value = value
        count = 1
        for d in dims:
            count *= max(d.dim_value, 1)
        if count > MAX_TENSOR_ELEMENTS:
            raise QccError(f"{path}: input '{graph_input.name}' would have {count} elements; qcc's limit is 2^28 per tensor")
        for i, dim in enumerate(dims):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                label = dim.dim_param or "?"
                raise QccError(
                    f"{path}: input '{graph_input.name}' has a dynamic dimension {i} ('{label}'); "
                    f"fix it with --input-shape {graph_input.name}=" + ",".join(
                        str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else "N" for d in dims)
                )


# What to do instead, for float ops exporters write where an integer form exists.
_FLOAT_OP_HINTS = {
    "ReduceMean": "over the spatial axes with keepdims=1 it is a GlobalAveragePool, which ORT runs as an integer "
                  "kernel (QLinearGlobalAveragePool): write it so in the model",
}

# Ops that onnxruntime.quantization.quantize_dynamic writes: activations quantized at run time.
_DYNAMIC_QUANTIZATION = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM",
                         "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def refuse_dynamic_quantization(model: onnx.ModelProto, source: str) -> None:
    node = next((n for n in model.graph.node if n.op_type in _DYNAMIC_QUANTIZATION), None)
    if node is not None:
        raise QccError(
            f"{source}: the model is dynamically quantized (node '{node.name or node.output[0]}' is {node.op_type}): its "
            "activation scales are computed from each input at run time, which a microcontroller build cannot fix at "
            "compile time; quantize the float model statically instead, with onnxruntime.quantization.quantize_static "
            "and a CalibrationDataReader over representative inputs"
        )


def import_graph(model: onnx.ModelProto, source: str) -> Graph:
    onnx_graph = model.graph
    op_types = {node.op_type for node in onnx_graph.node}
    quantized_inputs = [i for i in onnx_graph.input
                        if i.type.tensor_type.elem_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]
    if not op_types & _QUANTIZED_MARKERS and not quantized_inputs:
        raise QccError(
            f"{source}: the model is not quantized (no QuantizeLinear or QLinear* op); "
            "quantize it first, for example with onnxruntime.quantization.quantize_static"
        )
    unsupported = [n for n in onnx_graph.node if _op_for(model, n) is None]
    if unsupported:
        first = unsupported[0]
        label = f"{source}: node '{first.name or first.output[0]}'"
        float_tensors = {vi.name for vi in list(onnx_graph.value_info) + list(onnx_graph.input)
                         if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        float_tensors |= {n.output[0] for n in onnx_graph.node if n.op_type == "DequantizeLinear"}
        if first.input and first.input[0] in float_tensors:
            raise FloatNodeError(
                f"{label} ({first.op_type}) computes in float here (ONNX Runtime runs it as a float kernel, outside "
                "any DequantizeLinear -> op -> QuantizeLinear group it fuses, and it is not an elementwise island); "
                "qcc compiles integer kernels only: " + _FLOAT_OP_HINTS.get(first.op_type, "quantize this op too"),
                first.output[0] if first.output else ""
            )
        versions = ops.QOPERATOR_RULES.versions(first.domain, first.op_type)
        if versions:
            raise QccError(
                f"{label} ({first.op_type}) is at opset {opset_of(model, first.domain)} of its domain, where qcc does not "
                f"import it (qcc imports {first.op_type} at {', '.join(versions)}): its inputs or meaning differ there, "
                "or ONNX Runtime has no integer kernel for it; convert the model to a supported opset "
                "(onnx.version_converter)"
            )
        names = sorted({(n.domain + "." if n.domain else "") + n.op_type for n in unsupported})
        raise QccError(
            f"{label} uses {first.op_type}, which qcc does not support "
            f"(unsupported here: {', '.join(names)}; supported: {', '.join(ops.supported_onnx_ops())})"
        )

    graph = Graph(name=onnx_graph.name or "model", source=source, tensors={}, nodes=[], inputs=[], outputs=[],
                  opset=default_opset(model))
    for init in onnx_graph.initializer:
        _add_constant(graph, init.name, numpy_helper.to_array(init))
    for graph_input in onnx_graph.input:
        if graph_input.name in graph.tensors:
            continue
        graph.tensors[graph_input.name] = Tensor(graph_input.name, _dtype(graph_input.type, source, graph_input.name),
                                                 tuple(d.dim_value for d in graph_input.type.tensor_type.shape.dim))
        graph.inputs.append(graph_input.name)

    graph.outputs = [o.name for o in onnx_graph.output]  # known to the ops as they import
    names: set[str] = set()
    for onnx_node in onnx_graph.node:
        op = _op_for(model, onnx_node)
        with malformed(source, onnx_node.name or onnx_node.output[0], onnx_node.op_type):
            node = op.import_node(onnx_node, graph)
        unique, k = node.name, 2
        while unique in names:  # ONNX does not require unique node names; qcc's C symbols and messages do
            unique, k = f"{node.name}_{k}", k + 1
        node.name = unique
        names.add(unique)
        graph.nodes.append(node)

    # Shapes come from each op's own computation, which follows ONNX Runtime where ONNX's shape
    # inference differs (MaxPool with ceil_mode drops a last window that starts in the padding).
    for name in graph.outputs:
        if name not in graph.tensors:
            raise QccError(f"{source}: graph output '{name}' is produced by no node")
    return graph


def _op_for(model: onnx.ModelProto, node: onnx.NodeProto) -> ops.Op | None:
    return ops.op_for_onnx(node.domain, node.op_type, opset_of(model, node.domain))


def _add_constant(graph: Graph, name: str, value: np.ndarray) -> None:
    value = np.asarray(value)
    dtype = str(value.dtype)
    graph.tensors[name] = Tensor(name, dtype, tuple(value.shape), value)


def _dtype(type_proto: onnx.TypeProto, source: str, name: str) -> str:
    elem = type_proto.tensor_type.elem_type
    if elem not in _DTYPES:
        raise QccError(f"{source}: tensor '{name}' has element type {onnx.TensorProto.DataType.Name(elem)}, "
                       "which qcc does not support")
    return _DTYPES[elem]
