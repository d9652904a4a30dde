"""What an op module reads of a QDQ group: the float node with the DequantizeLinear nodes feeding
it and the QuantizeLinear after it (QdqGroup), and the checks ORT's QDQ selectors make before
fusing a group into an integer kernel. qcc/frontend/onnx/qdq.py finds the groups and hands each to the
op registered for its float op (Op.from_qdq), which raises NotFused where ORT leaves it in float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.onnx_graph import GraphIndex, attribute


class NotFused(Exception):
    """Raised by an op's from_qdq when ORT leaves the group in float; the message says why."""


class QdqGroup:
    """One float node with the DequantizeLinear nodes feeding it and the QuantizeLinear after it."""

    def __init__(self, model_graph: GraphIndex, node: onnx.NodeProto):
        self.g = model_graph
        self.node = node
        self.dq = [model_graph.producer_of(name, "DequantizeLinear") if name else None for name in node.input]
        self.skipped: list[onnx.NodeProto] = []  # a Relu/Clip between node and Q that the Q makes redundant
        self.q = None
        self.why_no_q = "its output does not go to exactly one QuantizeLinear"
        consumer = model_graph.single_consumer(node.output[0]) if node.output else None
        if consumer is not None and consumer.op_type in ("Relu", "Clip"):
            activation, consumer = consumer, model_graph.single_consumer(consumer.output[0])
            if consumer is not None and consumer.op_type == "QuantizeLinear":
                if q_makes_redundant(model_graph, activation, consumer):
                    self.skipped = [activation]
                else:
                    consumer, self.why_no_q = None, (f"the {activation.op_type} before its QuantizeLinear clamps "
                                                     "inside the quantized range (not redundant)")
        if consumer is not None and consumer.op_type == "QuantizeLinear":
            self.q = consumer
        # Ops with several outputs (Split): the single QuantizeLinear after each.
        self.output_qs = [self.q] + [model_graph.single_consumer(name) for name in node.output[1:]]
        self.output_qs = [q if q is not None and q.op_type == "QuantizeLinear" else None for q in self.output_qs]
        self.new_initializers: list[onnx.TensorProto] = []

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
            raise NotFused(self.why_no_q)
        return [self.q.output[0], self.q.input[1], self.q.input[2] if len(self.q.input) > 2 else ""]

    @property
    def opset(self) -> int:
        return self.g.opset

    def quantized_outputs(self) -> list[list[str]]:
        """[codes, scale, zero point] names of the Q after each output."""
        if any(q is None for q in self.output_qs):
            raise NotFused("not every output goes to exactly one QuantizeLinear")
        return [[q.output[0], q.input[1], q.input[2] if len(q.input) > 2 else ""] for q in self.output_qs]

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        """A constant the replacement reads (for example a pad value turned into a code)."""
        self.new_initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def has_dq(self, i: int) -> bool:
        return i < len(self.dq) and self.dq[i] is not None

    def constant(self, name: str) -> np.ndarray | None:
        return self.g.constant(name)

    def same_quantization(self, a: list[str], b: list[str]) -> bool:
        """ORT's IsQDQPairSupported: both zero points given explicitly, scale and zero point constant
        scalars, of the same types, with exactly equal values."""
        if not a[2] or not b[2]:
            return False
        sa, sb, za, zb = (self.constant(n) for n in (a[1], b[1], a[2], b[2]))
        if any(v is None or v.size != 1 for v in (sa, sb, za, zb)):
            return False
        return bool(sa.dtype == sb.dtype and za.dtype == zb.dtype and sa.reshape(()) == sb.reshape(())
                    and za.reshape(()) == zb.reshape(()) and self.g.elem_type(a[0]) == self.g.elem_type(b[0]))

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
            raise NotFused("its DequantizeLinear and QuantizeLinear do not have the same explicit constant scale and "
                           "zero point (different scales or zero points, or one omitted)")
        node = onnx.NodeProto()
        node.CopyFrom(self.node)
        node.input[0] = x[0]
        node.output[0] = y[0]
        return node

    def removed(self) -> list[onnx.NodeProto]:
        """The nodes the replacement takes the place of, besides the float node."""
        return [*self.skipped, *(q for q in self.output_qs if q is not None)]

    def attributes(self) -> dict:
        """The float node's attributes, strings decoded (graph_index.attribute)."""
        return {a.name: attribute(self.node, a.name) for a in self.node.attribute}


_INTEGER_TYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def check_integer_types(group: QdqGroup, x: list[str], w: list[str] | None, y: list[str]) -> None:
    """ORT's 8-bit integer kernels: activations uint8 or int8 with the output of the same type;
    weights int8, or uint8 beside uint8 activations. ORT would fuse a per-channel activation
    DequantizeLinear too, then fail at run time: qcc refuses it here."""
    scale = group.constant(x[1])
    if scale is not None and scale.size != 1:
        raise NotFused("its input is quantized per channel, which ORT's integer kernels cannot run")
    x_type, y_type = group.g.elem_type(x[0]), group.g.elem_type(y[0])
    if x_type not in _INTEGER_TYPES or y_type != x_type:
        raise NotFused("its input and output are not both uint8 or both int8")
    if w is not None:
        w_type = group.g.elem_type(w[0])
        if w_type not in _INTEGER_TYPES or (x_type == onnx.TensorProto.INT8 and w_type != onnx.TensorProto.INT8):
            raise NotFused("its weights are not int8 (or uint8 with uint8 activations)")


def bias_codes(group: QdqGroup, i: int, x: list[str] | None = None, w: list[str] | None = None) -> str:
    """The int32 codes behind a bias input's DequantizeLinear. Given x and w (Conv), also ORT's
    check that the bias is quantized with zero point 0 and a scale within 1% of s_x * s_w."""
    if not group.has_dq(i):
        raise NotFused("its bias is float and ORT's WeightBiasQuantization leaves it so (it quantizes only a 1-D "
                       "constant bias, with per-channel weight scales on the output-channel axis)")
    codes, scale, zero = group.quantized_input(i)
    if group.g.elem_type(codes) != onnx.TensorProto.INT32:
        raise NotFused("its bias is not an int32 DequantizeLinear")
    if x is not None and w is not None:
        b_scale, x_scale, w_scale = group.constant(scale), group.constant(x[1]), group.constant(w[1])
        b_zero = group.constant(zero) if zero else np.zeros(1, np.int32)
        if b_scale is None or x_scale is None or w_scale is None or b_zero is None:
            raise NotFused("its bias scale is not a constant that qcc can compare with s_x * s_w")
        expected = np.float64(x_scale.reshape(())) * w_scale.astype(np.float64).reshape(-1)
        # ORT documents 1% (observed ~1.2%); qcc refuses anything beyond 1% so it never guesses.
        if np.any(b_zero != 0) or np.any(np.abs(b_scale.astype(np.float64).reshape(-1) - expected) > 0.01 * expected):
            raise NotFused("its bias is not quantized with zero point 0 and scale s_x * s_w (ORT checks both)")
    return codes


def weight_input(group: QdqGroup, i: int) -> list[str]:
    if not group.has_dq(i):
        raise NotFused("its weights are float: ORT quantizes them itself (WeightBiasQuantization), which qcc does "
                       "not reproduce; quantize the weights")
    return group.quantized_input(i)


def q_makes_redundant(index: GraphIndex, activation: onnx.NodeProto, q: onnx.NodeProto) -> bool:
    """ORT's IsClipMadeRedundantByQ: a Relu before a Q whose zero point is qmin, or a Clip whose
    range, quantized, covers [qmin, qmax]."""
    scale = index.constant(q.input[1])
    zero = index.constant(q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1 or zero.dtype not in (np.uint8, np.int8):
        return False
    info = np.iinfo(zero.dtype)
    z = int(zero.reshape(()))
    if activation.op_type == "Relu":
        return z == info.min
    bounds = index.clip_bounds(activation)
    if bounds is None:
        return False
    s = np.float32(scale.reshape(()))
    with np.errstate(over="ignore"):
        return bool((np.rint(bounds[0] / s) + z <= info.min) and (np.rint(bounds[1] / s) + z >= info.max))
