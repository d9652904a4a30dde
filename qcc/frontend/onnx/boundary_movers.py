"""Byte movers at the float boundary of a QOperator-style model: a float graph input that passes
through ops that only move values (Reshape, Flatten, Transpose, Squeeze, Unsqueeze: each op module's
`moves_values_only`) before its QuantizeLinear, or a DequantizeLinear whose floats pass through
such ops before a graph output.

ORT's QDQ propagation already copies a QuantizeLinear in front of Reshape, Transpose, Squeeze and
Unsqueeze (qdq_propagation.py), but not across Flatten, so it stops at the first Flatten of a chain
(`input -> Reshape -> Flatten -> Q`); ORT then moves the floats and quantizes them. Quantizing per
tensor commutes with moving values, so the codes ORT produces equal those of quantizing first and
moving the codes, which is what qcc compiles: `input -> M1 -> ... -> Mk -> Q` becomes
`input -> Q -> M1 -> ... -> Mk`, and `DQ -> M1 -> ... -> Mk -> output` becomes
`M1 -> ... -> Mk -> DQ -> output` (on the codes).

A float input read by such an op that cannot be moved this way (the chain branches, is also a graph
output, ends elsewhere than at one QuantizeLinear, or that QuantizeLinear is not per tensor) would
reach the op as float32, which it cannot run: it is refused here, naming the op and why.
"""

from __future__ import annotations

import onnx

from qcc import ops
from qcc.errors import QccError
from qcc.onnx_graph import GraphIndex, default_opset, topological_sort


def _moves_values_only(node: onnx.NodeProto, opset: int) -> bool:
    op = ops.op_for_onnx(node.domain, node.op_type, opset)
    return op is not None and op.moves_values_only


def _label(node: onnx.NodeProto) -> str:
    return f"node '{node.name or node.output[0]}' ({node.op_type})"


def _is_default_domain(node: onnx.NodeProto, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def _per_tensor(index: GraphIndex, node: onnx.NodeProto) -> bool:
    """A QuantizeLinear/DequantizeLinear with a constant scalar scale (and zero point, if given)."""
    names = [node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    values = [index.constant(name) for name in names]
    return all(v is not None and v.size == 1 for v in values)


class _Names:
    def __init__(self, graph: onnx.GraphProto):
        self.taken = {n for node in graph.node for n in [*node.input, *node.output, node.name]}
        self.taken |= {v.name for v in [*graph.input, *graph.output, *graph.initializer, *graph.value_info]}

    def fresh(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


def _chain_to_quantize(index: GraphIndex, source: str):
    """From a float graph input: the value movers up to the QuantizeLinear that ends their chain, and
    that QuantizeLinear; or, where it cannot be moved onto the input, why not."""
    chain, tensor = [], source
    while True:
        readers = index.consumers.get(tensor, [])
        if tensor in index.graph_outputs:
            return chain, None, f"'{tensor}' is also a graph output"
        if len(readers) != 1:
            names = ", ".join(_label(r) for r in readers)
            return chain, None, f"'{tensor}' is read by {len(readers)} nodes ({names}), not only by one"
        reader = readers[0]
        if _is_default_domain(reader, "QuantizeLinear"):
            if not _per_tensor(index, reader):
                return chain, None, (f"its QuantizeLinear {_label(reader)} does not have a constant scalar scale and "
                                     "zero point (qcc quantizes activations per tensor)")
            return chain, reader, None
        if not _moves_values_only(reader, index.opset) or reader.input[0] != tensor:
            return chain, None, (f"'{tensor}' goes to {_label(reader)}, which neither only moves values nor is a "
                                 "QuantizeLinear")
        chain.append(reader)
        tensor = reader.output[0]


def _move_quantize(names: _Names, source: str, chain: list[onnx.NodeProto], q: onnx.NodeProto) -> set[str]:
    """source -> M1 -> ... -> Mk -> Q -> y  becomes  source -> Q -> M1 -> ... -> Mk -> y."""
    gone = {m.output[0] for m in chain}  # float tensors that no longer exist
    codes = names.fresh(f"{source}_quantized_before_{chain[0].op_type.lower()}")
    q.input[0], result, q.output[0] = source, q.output[0], codes
    for i, mover in enumerate(chain):
        mover.input[0] = codes
        codes = result if i == len(chain) - 1 else names.fresh(f"{mover.output[0]}_codes")
        mover.output[0] = codes
    return gone


def _chain_to_output(index: GraphIndex, dq: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The movers from a DequantizeLinear to a graph output, each its input's only reader; or []."""
    chain, tensor = [], dq.output[0]
    while tensor not in index.graph_outputs:
        reader = index.single_consumer(tensor)
        if reader is None or not _moves_values_only(reader, index.opset) or reader.input[0] != tensor:
            return []
        chain.append(reader)
        tensor = reader.output[0]
    return chain if not index.consumers.get(tensor) else []


def _move_dequantize(names: _Names, dq: onnx.NodeProto, chain: list[onnx.NodeProto]) -> set[str]:
    """DQ -> M1 -> ... -> Mk -> output  becomes  M1 -> ... -> Mk -> DQ -> output, on the codes."""
    gone = {dq.output[0]} | {m.output[0] for m in chain[:-1]}
    result, codes = chain[-1].output[0], dq.input[0]
    for mover in chain:
        mover.input[0] = codes
        codes = names.fresh(f"{mover.output[0]}_codes")
        mover.output[0] = codes
    dq.input[0], dq.output[0] = codes, result
    return gone


def move(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    graph = model.graph
    index = GraphIndex(graph, default_opset(model))
    names = _Names(graph)
    gone: set[str] = set()
    float_inputs = [i.name for i in graph.input if i.name not in index.initializers
                    and i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    for name in float_inputs:
        first = next((r for r in index.consumers.get(name, [])
                      if _moves_values_only(r, index.opset) and r.input[0] == name), None)
        if first is None:
            continue
        chain, q, why_not = _chain_to_quantize(index, name)
        if q is None:
            raise QccError(f"{source}: {_label(first)} moves the values of the float graph input '{name}' before they "
                           "are quantized; qcc quantizes them first instead (exactly what ORT computes) only through a "
                           "chain of ops that only move values, each the only reader of its input, ending in one "
                           f"QuantizeLinear: here {why_not}; quantize the input once before these ops in the model, or "
                           "compile from the quantized tensors with --inputs")
        gone |= _move_quantize(names, name, chain, q)
    index = GraphIndex(graph, index.opset)
    for dq in [n for n in graph.node if _is_default_domain(n, "DequantizeLinear") and _per_tensor(index, n)]:
        chain = _chain_to_output(index, dq)
        if chain:
            gone |= _move_dequantize(names, dq, chain)
    if not gone:
        return model
    topological_sort(graph)
    # The moved codes take their types (and the QDQ fusion its checks) from shape inference.
    kept = [vi for vi in graph.value_info if vi.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return onnx.shape_inference.infer_shapes(model, strict_mode=False)
