"""`--outputs T1,T2` and `--inputs T3`: compile the part of a model between named tensors.

Detectors and pose models end in float post-processing that ORT runs in float (box decoding with
Exp, Sqrt, Div, ArgMax, GatherND, a float Resize); qcc compiles integer kernels only. Cutting
the model at the tensors where the integer part ends (a QuantizeLinear's codes, or the
DequantizeLinear output that reads them) makes those tensors the C outputs, with their scale and
zero point in the manifest, and leaves the rest to the application. `--inputs` does the same at
the start (float pre-processing before the first QuantizeLinear).

The cut keeps every node that the named outputs need, up to the named inputs or the graph's own
inputs; what is left out is reported in one line. A cut input must have a static shape: ONNX shape
inference gives it, or qcc works it out through the nodes before it (ONNX's inference node by node,
and qcc's own import of the com.microsoft ops ONNX does not know, whose shapes follow ORT's), or the
user gives it with --input-shape; otherwise the cut is refused by name, never compiled as a scalar.
When qcc refuses a node ORT runs in float, `suggest_outputs` names the tensors to cut at.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from qcc.errors import QccError
from qcc.ir import Graph, Tensor
from qcc.onnx_graph import GraphIndex, default_opset, opset_of
from qcc.ops import op_for_onnx

# Element types between ONNX and the IR, for working out shapes through qcc's ops.
_IR_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8",
              onnx.TensorProto.INT16: "int16", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}
_ONNX_TYPES = {dtype: elem for elem, dtype in _IR_DTYPES.items()}


def _names(index: GraphIndex, names: list[str], what: str, source: str) -> list[str]:
    known = set(index.producer) | {i.name for i in index.graph.input} - set(index.initializers)
    for name in names:
        if name not in known:
            raise QccError(f"{source}: --{what} names '{name}', which is no tensor computed by the model; "
                           f"give the name of a node output or graph input (qcc inspect lists the nodes)")
    return names


def cut(model: onnx.ModelProto, inputs: list[str], outputs: list[str], source: str) -> tuple[onnx.ModelProto, str]:
    """The sub-model computing `outputs` from `inputs` (and whatever graph inputs it needs), and
    one line saying what was left out."""
    graph = model.graph
    index = GraphIndex(graph)
    outputs = _names(index, outputs or [o.name for o in graph.output], "outputs", source)
    inputs = _names(index, inputs, "inputs", source)
    for name in outputs:
        producer = index.producer.get(name)
        if producer is not None and index.elem_type(name) == onnx.TensorProto.FLOAT and producer.op_type != "DequantizeLinear":
            q = next((c for c in index.consumers.get(name, []) if c.op_type == "QuantizeLinear"), None)
            hint = (f"cut at its QuantizeLinear's output '{q.output[0]}'" if q is not None else
                    "cut at 8-bit codes or at the output of a DequantizeLinear")
            raise QccError(f"{source}: --outputs names '{name}', a float tensor that {producer.op_type} computes; the C "
                           f"returns codes: {hint}")
    kept_ids = _ancestors(index, set(outputs), stop=set(inputs))
    ordered = [n for n in graph.node if id(n) in kept_ids]
    read = {name for node in ordered for name in node.input} | set(outputs)
    graph_inputs = [i for i in graph.input if i.name in read and i.name not in index.initializers]
    infos = {vi.name: vi for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    cut_inputs = [name for name in inputs if name in read]
    unknown = ([name for name in cut_inputs if not _static(infos.get(name))] +
               [name for name in outputs if name not in infos or not infos[name].type.tensor_type.elem_type])
    if unknown:
        infos.update(worked_out(model, index, set(unknown)))
    for name in cut_inputs:
        if not _static(infos.get(name)):
            raise QccError(_unknown_shape(model, index, infos, name, source))
    missing = [name for name in outputs if name not in infos or not infos[name].type.tensor_type.elem_type]
    if missing:
        raise QccError(f"{source}: the type and shape of '{missing[0]}' are unknown (ONNX shape inference does not "
                       "cover the op that makes it); cut at a tensor next to it")
    new_inputs = [infos[name] for name in cut_inputs] + [i for i in graph_inputs if i.name not in inputs]
    initializers = [init for init in graph.initializer if init.name in read]
    new_graph = helper.make_graph(ordered, graph.name, new_inputs, [infos[name] for name in outputs], initializers,
                                  value_info=[vi for vi in graph.value_info if vi.name in read and vi.name not in inputs])
    cut_model = helper.make_model(new_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    left = [n for n in graph.node if id(n) not in kept_ids]
    ops = sorted({n.op_type for n in left})
    summary = (f"compiled the part from {', '.join(repr(i.name) for i in new_inputs)} to "
               f"{', '.join(repr(o) for o in outputs)}; left out {len(left)} node(s)" +
               (f" ({', '.join(ops)}) for the application to run" if left else ""))
    return cut_model, summary


def _static(info: onnx.ValueInfoProto | None) -> bool:
    """A known element type and a shape of fixed dimensions (a rank-0 shape is a scalar, a missing one unknown)."""
    if info is None:
        return False
    tensor_type = info.type.tensor_type
    return bool(tensor_type.elem_type) and tensor_type.HasField("shape") and all(
        d.HasField("dim_value") and d.dim_value > 0 for d in tensor_type.shape.dim)


def _ancestors(index: GraphIndex, names: set[str], stop: set[str] = frozenset()) -> set[int]:
    """The nodes (their ids) that the tensors `names` depend on, going no further back than the tensors `stop`."""
    found, pending, seen = set(), list(names), set(stop)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        node = index.producer.get(name)
        if node is not None and id(node) not in found:
            found.add(id(node))
            pending.extend(n for n in node.input if n)
    return found


def worked_out(model: onnx.ModelProto, index: GraphIndex, wanted: set[str]) -> dict[str, onnx.ValueInfoProto]:
    """Static types and shapes for the tensors `wanted` where ONNX shape inference gives none (it stops at ops it
    does not know, such as com.microsoft's QLinearSigmoid, QLinearAdd or QLinearConcat, and leaves what follows
    them without a shape): the nodes before them, in order, each from the static shapes of its inputs: ONNX's
    inference of that node alone for the ai.onnx ops, qcc's import of it for the others qcc imports (each op's
    own shape computation, which follows ORT's). Where a node's inputs or its op are unknown, so are its outputs."""
    graph = model.graph
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    known = {vi.name: vi.type for vi in infos if _static(vi)}
    for init in graph.initializer:
        known[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims))
    scratch = Graph(name="shapes", source="", tensors={}, nodes=[], inputs=[], outputs=[], opset=default_opset(model))
    needed = _ancestors(index, wanted)
    for node in graph.node:
        outputs = [name for name in node.output if name]
        if id(node) not in needed or all(name in known for name in outputs):
            continue
        if any(name and name not in known for name in node.input):
            continue
        try:
            if node.domain in ("", "ai.onnx"):
                schema = onnx.defs.get_schema(node.op_type, opset_of(model, node.domain), "")
                found = onnx.shape_inference.infer_node_outputs(
                    schema, node, {name: known[name] for name in node.input if name},
                    {name: index.initializers[name] for name in node.input if name in index.initializers},
                    opset_imports=list(model.opset_import))
            else:
                op = op_for_onnx(node.domain, node.op_type, opset_of(model, node.domain))
                if op is None:
                    continue
                for name in node.input:
                    if name and name not in scratch.tensors:
                        tensor_type = known[name].tensor_type
                        data = numpy_helper.to_array(index.initializers[name]) if name in index.initializers else None
                        scratch.tensors[name] = Tensor(name, _IR_DTYPES[tensor_type.elem_type],
                                                       tuple(d.dim_value for d in tensor_type.shape.dim), data)
                op.import_node(node, scratch)
                found = {name: helper.make_tensor_type_proto(_ONNX_TYPES[scratch.tensors[name].dtype],
                                                             list(scratch.tensors[name].shape))
                         for name in outputs if name in scratch.tensors}
        except Exception:  # noqa: BLE001 (a best effort: whatever fails here leaves the shapes unknown, and the
            continue       # cut is then refused by name with the flag that gives the shape)
        for name, type_proto in found.items():
            info = helper.make_value_info(name, type_proto)
            if _static(info):
                known[name] = type_proto
    return {name: helper.make_value_info(name, known[name]) for name in wanted if name in known}


def _unknown_shape(model: onnx.ModelProto, index: GraphIndex, infos: dict, name: str, source: str) -> str:
    """The refusal of a cut input whose shape nobody knows, with where shape inference stops and the flag that gives it."""
    info = infos.get(name)
    tensor_type = info.type.tensor_type if info is not None else None
    if tensor_type is not None and tensor_type.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                for d in tensor_type.shape.dim]
        what = f"only the shape {dims}"
    else:
        what = "no shape" if tensor_type is not None and tensor_type.elem_type else "no type or shape"
    static = {vi.name for vi in list(model.graph.value_info) + list(model.graph.input) if _static(vi)}
    static |= set(index.initializers)
    needed = _ancestors(index, {name})
    stop = next((n for n in model.graph.node if id(n) in needed and all(not i or i in static for i in n.input)
                 and not all(o in static for o in n.output if o)), None)
    where = ""
    if stop is not None:
        domain = f"{stop.domain}." if stop.domain not in ("", "ai.onnx") else ""
        where = f" (it stops at node '{stop.name or stop.output[0]}', {domain}{stop.op_type})"
    return (f"{source}: --inputs {name}: ONNX shape inference gives '{name}' {what}{where}, and qcc cannot work it "
            f"out; give it with --input-shape {name}=D0,D1,...")


def suggest_outputs(model: onnx.ModelProto, node: onnx.NodeProto) -> str:
    """The text that tells how to compile the integer part before a node qcc refuses: the codes
    that reach it through DequantizeLinear, and the graph outputs that do not depend on it."""
    index = GraphIndex(model.graph)
    codes = []
    for name in node.input:
        dq = index.producer_of(name, "DequantizeLinear") if name else None
        if dq is not None and dq.input[0] in index.producer:
            codes.append(dq.input[0])
    if not codes:
        return ""
    downstream, pending = set(), list(node.output)
    while pending:
        name = pending.pop()
        if name in downstream:
            continue
        downstream.add(name)
        pending.extend(out for reader in index.consumers.get(name, []) for out in reader.output)
    others = [o.name for o in model.graph.output if o.name not in downstream]
    names = list(dict.fromkeys(others + codes))
    return f"; to compile the integer part before it, cut there: --outputs {','.join(names)}"
