"""Validation of an untrusted model before any pass reads it: each problem is refused in one line
that names the file and the node, tensor or attribute at fault.

onnx.checker covers what ONNX itself defines for each node (attribute types of known ops, opset
rules); qcc then checks what its passes rely on: every tensor defined exactly once and
before it is read, at least one graph output and each one defined, initializers whose data
matches their dims, element types qcc can read, and sizes that fit 32-bit offsets.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from qcc.errors import QccError

# Elements of one tensor, and bytes of all initializers together: both must fit the 32-bit offsets
# the runtime kernels and a microcontroller's address space use.
MAX_ELEMENTS = 2**31 - 1
MAX_CONSTANT_BYTES = 2**31 - 1
_READABLE_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.INT32,
                   onnx.TensorProto.INT64, onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.FLOAT16, onnx.TensorProto.BOOL, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}


def _type_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"type {elem}"


def _check_nodes(model: onnx.ModelProto, source: str) -> None:
    """onnx.checker on each node (attribute types and counts of known ops, opset rules). Not
    check_model: it also refuses graph outputs without a shape, which ORT runs and exporters write."""
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version or onnx.IR_VERSION
    context.opset_imports = {o.domain: o.version for o in model.opset_import}
    scope = onnx.checker.C.LexicalScopeContext()
    for node in model.graph.node:
        try:
            onnx.checker.check_node(node, context, scope)
        except (onnx.checker.ValidationError, ValueError) as error:
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            label = node.name or (node.output[0] if node.output else "?")
            raise QccError(f"{source}: node '{label}' ({node.op_type}) is not valid ONNX: {first[:300]}") from None


def validate(model: onnx.ModelProto, source: str) -> None:
    if not model.opset_import:
        raise QccError(f"{source}: the model declares no opset; give a model an exporter wrote")
    _check_nodes(model, source)
    graph = model.graph
    if not graph.output:
        raise QccError(f"{source}: the graph has no outputs; there is nothing to compute")
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        if name in defined:
            raise QccError(f"{source}: tensor '{name}' is defined twice ({defined[name]} and {what}); "
                           "every tensor must have one producer")
        defined[name] = what

    constant_bytes = 0
    for init in graph.initializer:
        define(init.name, f"initializer '{init.name}'")
        if init.data_type not in _READABLE_TYPES:
            raise QccError(f"{source}: initializer '{init.name}' has element {_type_name(init.data_type)}, which qcc "
                           "does not read")
        count = 1
        for d in init.dims:
            if d < 0:
                raise QccError(f"{source}: initializer '{init.name}' has a negative dimension {list(init.dims)}")
            count *= d
        if count > MAX_ELEMENTS:
            raise QccError(f"{source}: initializer '{init.name}' has {count} elements; qcc's limit is 2^31 - 1")
        try:
            value = numpy_helper.to_array(init)
        except Exception as error:  # data that disagrees with dims, an unreadable type, external data
            raise QccError(f"{source}: initializer '{init.name}' cannot be read ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:200] if str(error) else 'no detail'})") from None
        if value.size != count:
            raise QccError(f"{source}: initializer '{init.name}' holds {value.size} values for dims {list(init.dims)}")
        constant_bytes += value.nbytes
        if constant_bytes > MAX_CONSTANT_BYTES:
            raise QccError(f"{source}: the initializers hold more than 2^31 - 1 bytes, beyond any microcontroller")
    initializer_names = {i.name for i in graph.initializer}
    input_names: set[str] = set()
    for graph_input in graph.input:
        if graph_input.name in input_names:
            raise QccError(f"{source}: graph input '{graph_input.name}' is listed twice")
        input_names.add(graph_input.name)
        if graph_input.name in initializer_names:  # an initializer listed as an input too (older IR versions)
            continue
        define(graph_input.name, f"graph input '{graph_input.name}'")
        elem = graph_input.type.tensor_type.elem_type
        if elem not in _READABLE_TYPES:
            raise QccError(f"{source}: graph input '{graph_input.name}' has element {_type_name(elem)}, which qcc "
                           "does not read")
    for node in graph.node:
        label = f"node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"
        for name in node.input:
            if name and name not in defined:
                raise QccError(f"{source}: {label} reads '{name}', which no graph input, initializer or earlier "
                               "node defines")
        for name in node.output:
            if name:
                define(name, label)
    for output in graph.output:
        if output.name not in defined:
            raise QccError(f"{source}: graph output '{output.name}' is computed by no node")
