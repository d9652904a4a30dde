"""Float islands: elementwise float chains between a DequantizeLinear and a QuantizeLinear
(the empty chain included: DequantizeLinear -> QuantizeLinear with other parameters requantizes).

ORT keeps some ops in float even in a quantized model (BatchNormalization after a dense layer,
HardSigmoid, a Relu whose QuantizeLinear zero point is not qmin, ...). Such a chain maps each
input code to one output code (per channel where its parameters vary by channel), so qcc turns
it into lookup tables computed at compile time: the codes are dequantized as ORT does, each
float op is evaluated with ORT's float32 arithmetic (Op.evaluate_float of the op module registered
for it, each checked against ORT on all 256 codes of every channel by the tests), and the result
is quantized as ORT's QuantizeLinear does (one table builder: quantize_linear.code_table). The chain becomes one node ("ai.qcc" Lookup) with the tables as an
initializer; what is not elementwise, or not known here, stays and is refused downstream.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc import ops
from qcc.errors import QccError
from qcc.numerics.quantize_linear import code_table, dequantize_linear
from qcc.onnx_graph import GraphIndex, attribute, default_opset
from qcc.ops.base import NotElementwise

LOOKUP_DOMAIN = "ai.qcc"
_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def _per_channel(value: np.ndarray, channels: int, where: str) -> np.ndarray:
    """A constant as a column (channels or 1, 1) against the probe's channel axis."""
    value = np.asarray(value, dtype=np.float32)
    if value.size == 1:
        return value.reshape(1, 1)
    squeezed = value.reshape(-1)
    if squeezed.size == channels and (value.ndim <= 1 or max(value.shape) == value.size):
        return squeezed.reshape(channels, 1)
    raise NotElementwise(f"{where}: a constant of shape {list(value.shape)} does not vary along the channel axis only")


def _operand(index: GraphIndex, name: str) -> np.ndarray | None:
    """A constant operand, directly or behind a DequantizeLinear of constants (quantized
    parameters, dequantized as ORT does)."""
    if not name:
        return None
    value = index.constant(name)
    dq = index.producer_of(name, "DequantizeLinear")
    if value is not None or dq is None:
        return value
    q, s = index.constant(dq.input[0]), index.constant(dq.input[1])
    z = index.constant(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros((), np.int64)
    if q is None or s is None or z is None:
        return None
    if s.size > 1:  # per-axis parameters line up with the DequantizeLinear's axis
        shape = [1] * q.ndim
        shape[attribute(dq, "axis", 1)] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return dequantize_linear(q, s, z)


def _island_nodes(index: GraphIndex, q: onnx.NodeProto):
    """The elementwise float nodes between some DequantizeLinear nodes of one codes tensor and q
    (topologically ordered), and those DequantizeLinear nodes; None when q ends no such island.
    The nodes may form a graph (Max(x, Mul(x, alpha)) reads x twice); what they compute must
    leave the island only through q."""
    nodes, dqs, pending, seen = [], [], [q.input[0]], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        producer = index.producer.get(name)
        if producer is None:
            return None
        if producer.op_type == "DequantizeLinear" and index.constant(producer.input[0]) is None:
            dqs.append(producer)
            continue
        if ops.island_op_for(producer.domain, producer.op_type, index.opset) is None:
            return None
        nodes.append(producer)
        variable = [n for n in producer.input if n and _operand(index, n) is None]
        if not variable:
            return None
        pending.extend(variable)
    if not dqs or len({(d.input[0], *d.input[1:]) for d in dqs}) != 1:
        return None  # not one quantized input (the same codes, scale and zero point)
    inside = {n.output[0] for n in nodes}
    for node in nodes:
        readers = index.consumers.get(node.output[0], [])
        if node.output[0] in index.graph_outputs or any(r is not q and r.output[0] not in inside for r in readers):
            return None
    order = {id(n): i for i, n in enumerate(index.graph.node)}
    return sorted(nodes, key=lambda n: order[id(n)]), dqs


def replace(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    graph = model.graph
    index = GraphIndex(graph, default_opset(model))
    replaced: dict[int, onnx.NodeProto | None] = {}
    tables = []
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        found = _island_nodes(index, q)
        if found is None:
            continue
        chain, dqs = found
        try:
            lookup, table = _island(index, dqs[0], chain, q, source)
        except NotElementwise as why:
            raise QccError(f"{source}: float ops between '{dqs[0].name}' and '{q.name}' "
                           f"({' -> '.join(n.op_type for n in chain)}) cannot become a lookup table: {why}") from None
        tables.append(table)
        replaced[id((chain or [q])[0])] = lookup
        for n in (chain[1:] + [q]) if chain else []:
            replaced[id(n)] = None
    if not replaced:
        return model
    nodes = []
    for n in graph.node:
        if id(n) in replaced:
            if replaced[id(n)] is not None:
                nodes.append(replaced[id(n)])
        else:
            nodes.append(n)
    read = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if not (n.op_type == "DequantizeLinear" and n.output[0] not in read)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(tables)
    if not any(o.domain == LOOKUP_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(LOOKUP_DOMAIN, 1))
    return model


def _island(index: GraphIndex, dq, chain, q, source):
    """The Lookup node and its table initializer for DQ -> chain -> Q."""
    x_codes = dq.input[0]
    # The zero point's type is the codes' type (contrib ops' outputs have no inferred type).
    in_dtype = _DTYPES.get(index.elem_type(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else index.elem_type(x_codes))
    out_dtype = _DTYPES.get(index.elem_type(q.output[0]))
    if in_dtype is None or out_dtype is None:
        raise NotElementwise("its input or output is not 8-bit")
    in_scale, in_zero = index.constant(dq.input[1]), index.constant(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else 0
    out_scale, out_zero = index.constant(q.input[1]), index.constant(q.input[2]) if len(q.input) > 2 and q.input[2] else 0
    if any(v is None or np.asarray(v).size != 1 for v in (in_scale, in_zero, out_scale, out_zero)):
        raise NotElementwise("its DequantizeLinear or QuantizeLinear is not per-tensor with constant parameters")
    shape = index.shapes.get(x_codes) or index.shapes.get(dq.output[0])
    channels = shape[1] if shape and len(shape) >= 2 else 1
    for node in chain:  # operands of shapes ORT's kernel refuses when the model runs
        shapes = [None if not name or (operand := _operand(index, name)) is None else np.shape(operand)
                  for name in node.input]
        why = ops.island_op_for(node.domain, node.op_type, index.opset).island_refusal(
            node, shapes, channels if shape and len(shape) >= 2 else None)
        if why is not None:
            raise QccError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}): {why}")
    dequantized = {name for name in {n for node in chain for n in node.input} | {q.input[0]}
                   if (p := index.producer.get(name)) is not None and p.op_type == "DequantizeLinear"
                   and p.input[0] == x_codes}

    def evaluate_chain(x: np.ndarray) -> np.ndarray:
        values = dict.fromkeys(dequantized, x)
        for node in chain:
            inputs = [values[name] if name in values else _per_channel(_operand(index, name), channels, node.name)
                      for name in node.input if name]
            if node.op_type == "Clip":
                bounds = index.clip_bounds(node)
                if bounds is None:
                    raise NotElementwise(f"node '{node.name}' has bounds computed at run time")
                inputs = [inputs[0], *bounds]
            op = ops.island_op_for(node.domain, node.op_type, index.opset)
            values[node.output[0]] = np.asarray(op.evaluate_float(node, inputs, index.opset), dtype=np.float32)
        return values[q.input[0]]

    def one(value):  # a scalar or a 1-D tensor of one value (per tensor, as ORT reads both)
        return np.asarray(value).reshape(())

    table = code_table(in_dtype, np.float32(one(in_scale)), int(one(in_zero)), evaluate_chain,
                       out_dtype, np.float32(one(out_scale)), int(one(out_zero)))
    per_channel = table.shape[0] > 1 and not np.all(table == table[:1])
    table = table if per_channel else table[:1]
    name = f"{q.output[0]}_lookup_table"
    lookup = helper.make_node("Lookup", [x_codes, name, q.input[1], q.input[2] if len(q.input) > 2 else ""], [q.output[0]],
                              name=(chain[0].name if chain else q.name) or q.output[0], domain=LOOKUP_DOMAIN,
                              axis=1 if per_channel else -1,
                              float_ops=",".join(n.op_type for n in chain) or "requantize")
    return lookup, numpy_helper.from_array(table, name)
