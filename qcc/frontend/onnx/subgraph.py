"""`--outputs T1,T2` and `--inputs T3`: compile the part of a model between named tensors.

Detectors and pose models end in float post-processing that ORT runs in float (box decoding with
Exp, Sqrt, Div, ArgMax, GatherND, a float Resize); qcc compiles integer kernels only. Cutting
the model at the tensors where the integer part ends (a QuantizeLinear's codes, or the
DequantizeLinear output that reads them) makes those tensors the C outputs, with their scale and
zero point in the manifest, and leaves the rest to the application. `--inputs` does the same at
the start (float pre-processing before the first QuantizeLinear).

The cut keeps every node that the named outputs need, up to the named inputs or the graph's own
inputs; what is left out is reported in one line. When qcc refuses a node ORT runs in float,
`suggest_outputs` names the tensors to cut at.
"""

from __future__ import annotations

import onnx
from onnx import helper

from qcc.errors import QccError
from qcc.onnx_graph import GraphIndex


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
    kept_ids, pending, seen = set(), list(outputs), set(inputs)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        node = index.producer.get(name)
        if node is not None and id(node) not in kept_ids:
            kept_ids.add(id(node))
            pending.extend(n for n in node.input if n)
    ordered = [n for n in graph.node if id(n) in kept_ids]
    read = {name for node in ordered for name in node.input} | set(outputs)
    graph_inputs = [i for i in graph.input if i.name in read and i.name not in index.initializers]
    infos = {vi.name: vi for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    missing = [name for name in inputs + outputs if name not in infos]
    if missing:
        raise QccError(f"{source}: the type and shape of '{missing[0]}' are unknown (ONNX shape inference does not "
                       "cover the op that makes it); cut at a tensor next to it")
    new_inputs = [infos[name] for name in inputs if name in read] + [i for i in graph_inputs if i.name not in inputs]
    initializers = [init for init in graph.initializer if init.name in read]
    new_graph = helper.make_graph(ordered, graph.name, new_inputs, [infos[name] for name in outputs], initializers,
                                  value_info=[vi for vi in graph.value_info if vi.name in read])
    cut_model = helper.make_model(new_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    left = [n for n in graph.node if id(n) not in kept_ids]
    ops = sorted({n.op_type for n in left})
    summary = (f"compiled the part from {', '.join(repr(i.name) for i in new_inputs)} to "
               f"{', '.join(repr(o) for o in outputs)}; left out {len(left)} node(s)" +
               (f" ({', '.join(ops)}) for the application to run" if left else ""))
    return cut_model, summary


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
