"""Validation of an untrusted model before any pass reads it: each problem is refused in one line
that names the file and the node, tensor or attribute at fault.

onnx.checker covers what ONNX itself defines for each node (attribute types of known ops, opset
rules); qcc then checks what its passes rely on: every tensor defined exactly once and
before it is read, at least one graph output and each one defined, initializers whose data
matches their dims, element types qcc can read, and sizes that fit 32-bit offsets; and the
QuantizeLinear and DequantizeLinear nodes every ONNX-level pass reads by their op type, in any domain
(onnx.checker knows no com.microsoft schema), with the inputs and parameter shapes ORT's kernels take.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from qcc.errors import QccError
from qcc.onnx_graph import attribute

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
    check_quantize_nodes(model, source)


_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _label(node: onnx.NodeProto) -> str:
    domain = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
    return f"node '{node.name or (node.output[0] if node.output else '?')}' ({domain}{node.op_type})"


def _check_qdq_node(node: onnx.NodeProto, initializers: dict, source: str) -> None:
    """A QuantizeLinear or DequantizeLinear as ORT takes it (its schemas, ai.onnx's and com.microsoft's: x, a scale
    and an optional zero point; and PrepareForQDQ in quantize_linear.cc, which checks the parameters when the node
    runs): per tensor, a scale and a zero point that are scalars or 1-D of one value; per axis, 1-D ones as long as
    x's axis. ORT refuses every other shape (a (1, 1) zero point, a 2-D scale), so qcc refuses it by name."""
    label = _label(node)
    if len(node.input) not in (2, 3) or not node.input[0] or not node.input[1]:
        raise QccError(f"{source}: {label} has inputs {list(node.input)}; {node.op_type} takes x, a scale and an "
                       "optional zero point (ONNX Runtime refuses the model)")
    if attribute(node, "block_size", 0):  # blocked quantization (opset 21): the op's import refuses it
        return
    params = {"scale": initializers.get(node.input[1]),
              "zero point": initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None}
    for what, init in params.items():
        if init is not None and len(init.dims) > 1:
            raise QccError(f"{source}: {label}: its {what} '{init.name}' has shape {list(init.dims)}; ONNX Runtime "
                           f"takes a scalar {what} (per tensor) or a 1-D one (per axis) and refuses this model")
    scale, zero = params["scale"], params["zero point"]
    if scale is None:
        return
    count = 1
    for d in scale.dims:
        count *= d
    per_tensor = count == 1
    if not per_tensor and (x := initializers.get(node.input[0])) is not None:  # weights: their rank is known here
        axis, rank = attribute(node, "axis", 1), len(x.dims)
        if not isinstance(axis, int) or not -rank <= axis < rank:
            raise QccError(f"{source}: {label}: axis {axis} is outside its input '{x.name}' of shape {list(x.dims)} "
                           f"(a per-axis scale of {count} values); ONNX Runtime refuses this model")
        if x.dims[axis] != count:
            raise QccError(f"{source}: {label}: its scale has {count} values but its input '{x.name}' has "
                           f"{x.dims[axis]} along axis {axis}; ONNX Runtime refuses this model")
    if zero is not None:
        zero_count = 1
        for d in zero.dims:
            zero_count *= d
        if zero_count != count:
            raise QccError(f"{source}: {label}: its zero point '{zero.name}' has {zero_count} values for {count} "
                           "scale(s); ONNX Runtime refuses this model")


def check_quantize_nodes(model: onnx.ModelProto, source: str) -> None:
    initializers = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in _QDQ_OPS:
            _check_qdq_node(node, initializers, source)
