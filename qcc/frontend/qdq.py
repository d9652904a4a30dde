"""QDQ models -> QOperator nodes, for the groups where ONNX Runtime's QDQ fusion runs integer kernels.

A QDQ model wraps float ops in DequantizeLinear -> op -> QuantizeLinear. With default graph
optimizations (and session.qdqisint8allowed = 1) ORT replaces such a group by the integer
kernel of the matching QOperator op (QLinearConv, QGemm, ...) or, for ops that only move
bytes, drops the DQ/Q pair and runs the op on the codes. This pass does the same rewriting on
the ONNX graph, so the rest of qcc sees a QOperator model. Each op module says, through
Op.qdq_float_ops and Op.from_qdq, which float ops it replaces and how; this module finds the
groups and splices the replacements in. A float op next to DQ/Q that no rule fuses is refused
by name: qcc never computes something else than ORT.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.errors import QccError


class NotFused(Exception):
    """Raised by an op's from_qdq when ORT leaves the group in float; the message says why."""


class QdqGroup:
    """One float node with the DequantizeLinear nodes feeding it and the QuantizeLinear after it."""

    def __init__(self, model_graph: "_GraphIndex", node: onnx.NodeProto):
        self.g = model_graph
        self.node = node
        self.dq = [model_graph.producer_of(name, "DequantizeLinear") if name else None for name in node.input]
        consumers = model_graph.consumers[node.output[0]] if node.output else []
        self.q = consumers[0] if (len(consumers) == 1 and consumers[0].op_type == "QuantizeLinear"
                                  and node.output[0] not in model_graph.graph_outputs) else None

    # --- reading the group ---------------------------------------------------------------------
    def quantized_input(self, i: int) -> list[str]:
        """[codes, scale, zero point] names of the DQ feeding input i (zero point may be '')."""
        dq = self.dq[i]
        if dq is None:
            raise NotFused(f"input {i} ('{self.node.input[i]}') does not come from a DequantizeLinear")
        return [dq.input[0], dq.input[1], dq.input[2] if len(dq.input) > 2 else ""]

    def quantized_output(self) -> list[str]:
        """[codes, scale, zero point] names of the Q after the node."""
        if self.q is None:
            raise NotFused("its output does not go to exactly one QuantizeLinear")
        return [self.q.output[0], self.q.input[1], self.q.input[2] if len(self.q.input) > 2 else ""]

    def has_dq(self, i: int) -> bool:
        return i < len(self.dq) and self.dq[i] is not None

    def input_dtype(self, i: int) -> int:
        return self.g.elem_type(self.quantized_input(i)[0])

    def constant(self, name: str) -> np.ndarray | None:
        return self.g.constant(name)

    def same_quantization(self, a: list[str], b: list[str]) -> bool:
        """Whether two (codes, scale, zero point) triples have equal constant scale and zero point."""
        sa, sb = self.constant(a[1]), self.constant(b[1])
        za, zb = (self.constant(a[2]) if a[2] else 0), (self.constant(b[2]) if b[2] else 0)
        if sa is None or sb is None or za is None or zb is None:
            return False
        return bool(np.array_equal(sa, sb) and np.array_equal(np.asarray(za).astype(np.int64), np.asarray(zb).astype(np.int64))
                    and self.g.elem_type(a[0]) == self.g.elem_type(b[0]))

    # --- building the replacement ------------------------------------------------------------------
    def replacement(self, op_type: str, inputs: list[str], domain: str = "", **attrs) -> onnx.NodeProto:
        """A node computing the group's quantized output, named after the float node."""
        return helper.make_node(op_type, inputs, [self.quantized_output()[0]], name=self.node.name or self.node.output[0],
                                domain=domain, **attrs)

    def on_codes(self) -> onnx.NodeProto:
        """The float op itself applied to the codes: ORT's rule for ops that only move bytes, valid
        when the DQ and the Q have the same scale and zero point."""
        x, y = self.quantized_input(0), self.quantized_output()
        if not self.same_quantization(x, y):
            raise NotFused("its DequantizeLinear and QuantizeLinear have different scales or zero points")
        node = onnx.NodeProto()
        node.CopyFrom(self.node)
        node.input[0] = x[0]
        node.output[0] = y[0]
        return node

    def attributes(self) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}


_INTEGER_TYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def check_integer_types(group: QdqGroup, x: list[str], w: list[str] | None, y: list[str]) -> None:
    """ORT's 8-bit integer kernels: activations uint8 or int8 with the output of the same type;
    weights int8, or uint8 beside uint8 activations."""
    x_type, y_type = group.g.elem_type(x[0]), group.g.elem_type(y[0])
    if x_type not in _INTEGER_TYPES or y_type != x_type:
        raise NotFused("its input and output are not both uint8 or both int8")
    if w is not None:
        w_type = group.g.elem_type(w[0])
        if w_type not in _INTEGER_TYPES or (x_type == onnx.TensorProto.INT8 and w_type != onnx.TensorProto.INT8):
            raise NotFused("its weights are not int8 (or uint8 with uint8 activations)")


def bias_codes(group: QdqGroup, i: int) -> str:
    """The int32 codes behind a bias input's DequantizeLinear."""
    codes = group.quantized_input(i)[0]
    if group.g.elem_type(codes) != onnx.TensorProto.INT32:
        raise NotFused("its bias is not an int32 DequantizeLinear")
    return codes


class _GraphIndex:
    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.graph_outputs = {o.name for o in graph.output}
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
        self.types.update({init.name: init.data_type for init in graph.initializer})

    def producer_of(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        return None

    def elem_type(self, name: str) -> int:
        if name in self.types:
            return self.types[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":  # output type = zero point type (uint8 by default)
            return self.elem_type(node.input[2]) if len(node.input) > 2 and node.input[2] else onnx.TensorProto.UINT8
        return onnx.TensorProto.UNDEFINED


def fuse(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Rewrite every DQ -> op -> Q group that ORT fuses into its QOperator form."""
    from qcc.ops import qdq_op_for

    graph = model.graph
    if not any(n.op_type == "DequantizeLinear" for n in graph.node):
        return model
    index = _GraphIndex(graph)
    new_nodes: list[onnx.NodeProto] = []
    removed: set[int] = set()
    fused_any = False
    for node in graph.node:
        op = qdq_op_for(node.domain, node.op_type)
        if op is None or not any(index.producer_of(name, "DequantizeLinear") for name in node.input if name):
            new_nodes.append(node)
            continue
        group = QdqGroup(index, node)
        try:
            replacement = op.from_qdq(group)
        except NotFused as why:
            raise QccError(
                f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) stays in float in ONNX Runtime "
                f"because {why}; qcc compiles only what ORT runs as integer kernels"
            ) from None
        new_nodes.extend(replacement)
        removed.add(id(group.q))
        fused_any = True
    if not fused_any:
        return model
    kept = [n for n in new_nodes if id(n) not in removed]
    # DequantizeLinear nodes whose outputs nobody reads any more disappear with their groups.
    while True:
        read = {name for n in kept for name in n.input} | {o.name for o in graph.output}
        dead = [n for n in kept if n.op_type == "DequantizeLinear" and n.output[0] not in read]
        if not dead:
            break
        kept = [n for n in kept if n not in dead]
    del graph.node[:]
    graph.node.extend(kept)
    return model
