"""What every op module provides, and the registry that maps ONNX ops to them.

One module per op (or per family of byte-moving ops) holds everything qcc does for it: import
from ONNX, compile-time preparation, reference semantics, MACs and C emission. The pipeline
stages around the ops stay generic and look ops up here.
"""

from __future__ import annotations

import numpy as np
import onnx

from qcc.errors import QccError
from qcc.ir import Graph, Node
from qcc.onnx_graph import attribute  # noqa: F401 (the op modules read attributes through base)
from qcc.ops.c_emitter import CEmitter
from qcc.ops.explanation import NOT_EXPLAINED, Explanation


class Op:
    """Base of every op: subclasses set the class attributes and override the hooks they need."""

    name: str = ""  # the IR op name
    onnx_ops: tuple[tuple[str, str], ...] = ()  # (domain, op_type) pairs this op imports
    summary: str = ""  # one line for the README's op table
    exactness: str = "bit-exact"  # against ONNX Runtime, for the README's op table
    # The runtime_c/ sources the op's C calls into (every runtime header is always copied), and the
    # header model.c must include for it.
    runtime_sources: tuple[str, ...] = ()
    runtime_header: str | None = None
    # True when the op's integer output goes through a clamp that Relu/Clip can fold into
    # (the op reads node.attrs["clamp"] = (lo_code, hi_code) in prepare).
    folds_clamp: bool = False

    def import_node(self, onnx_node: onnx.NodeProto, graph: Graph) -> Node:
        raise NotImplementedError

    def prepare(self, node: Node, graph: Graph) -> None:
        """Compute every constant the op needs at run time into node.params."""

    def reference(self, node: Node, graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def emit(self, node: Node, graph: Graph, c: CEmitter) -> str:
        """Declare the op's constants through `c` and return the C statement that runs it."""
        raise NotImplementedError

    def macs(self, node: Node, graph: Graph) -> int:
        return 0

    def explain(self, node: Node, graph: Graph) -> Explanation:
        """What `qcc explain` says about this node (qcc/ops/explanation.py): its kind and one sentence,
        or for a requantizing op a RequantExplanation that explain can trace. The default claims
        nothing: an op whose module does not explain it is reported as not explained."""
        return NOT_EXPLAINED

    def accumulator_range(self, node: Node, graph: Graph):
        """The exact range of the op's int32 accumulator per output channel
        (qcc.numerics.accumulator_range.AccumulatorRange), or None for ops without one."""
        return None

    def ort_gemm_weights(self, node: Node, graph: Graph) -> np.ndarray | None:
        """The weights as stored in the model (int8 or uint8), shaped (output channels, K) in the
        order ONNX Runtime's integer GEMM sums their products, or None where ORT runs no GEMM over
        them. The range analysis reads it: on x86 without VNNI, ORT's uint8 x int8 kernels add the
        products of K positions 2j and 2j+1 in a saturating int16."""
        return None

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        """Working memory the kernel needs during this step only; the memory plan puts it in the arena."""
        return 0

    # Ops that only reinterpret their input's bytes (Reshape, Flatten, ...) share its storage.
    aliases_input: bool = False

    # QDQ models: the float ONNX ops (domain, op_type) whose DequantizeLinear -> op -> QuantizeLinear
    # group ORT runs as this op's integer kernel, and how to write that group as a QOperator node.
    qdq_float_ops: tuple[tuple[str, str], ...] = ()

    def from_qdq(self, group) -> list[onnx.NodeProto]:
        """The QOperator node(s) replacing a qcc.frontend.qdq.QdqGroup; raise NotFused where ORT
        leaves the group in float. The default is ORT's rule for ops that only move or select bytes:
        with the same parameters on the DQ and the Q, the op runs on the codes."""
        return [group.on_codes()]


_BY_ONNX: dict[tuple[str, str], Op] = {}
_BY_NAME: dict[str, Op] = {}
_BY_QDQ: dict[tuple[str, str], Op] = {}


def register(op_class: type[Op]) -> type[Op]:
    op = op_class()
    _BY_NAME[op.name] = op
    for key in op.onnx_ops:
        _BY_ONNX[key] = op
    for key in op.qdq_float_ops:
        _BY_QDQ[key] = op
    return op_class


def op_for_onnx(domain: str, op_type: str) -> Op | None:
    return _BY_ONNX.get((domain if domain != "ai.onnx" else "", op_type))


def qdq_op_for(domain: str, op_type: str) -> Op | None:
    return _BY_QDQ.get((domain if domain != "ai.onnx" else "", op_type))


def op_named(name: str) -> Op:
    return _BY_NAME[name]


def all_ops() -> list[Op]:
    return list(_BY_NAME.values())


def supported_onnx_ops() -> list[str]:
    return sorted(f"{d}.{t}" if d else t for d, t in _BY_ONNX)


# --- helpers shared by the op modules -------------------------------------------------------


def int_list_attribute(graph: Graph, onnx_node: onnx.NodeProto, name: str, default: list[int], length: int,
                       minimum: int) -> list[int]:
    """A list-of-ints attribute of the given length whose values are at least `minimum`."""
    value = attribute(onnx_node, name, default)
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(isinstance(v, int) for v in value):
        raise QccError(f"{node_label(graph, onnx_node)}: {name} must be {length} integers, got {value!r}")
    if any(v < minimum for v in value):
        raise QccError(f"{node_label(graph, onnx_node)}: {name} {list(value)} must be {minimum} or more")
    return [int(v) for v in value]


def node_label(graph: Graph, onnx_node: onnx.NodeProto) -> str:
    return f"{graph.source}: node '{onnx_node.name or onnx_node.output[0]}' ({onnx_node.op_type})"


def require(condition: bool, graph: Graph, onnx_node: onnx.NodeProto, message: str) -> None:
    if not condition:
        raise QccError(f"{node_label(graph, onnx_node)}: {message}")


def const_input(graph: Graph, onnx_node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
    """The value of a constant input, or a clear error when it is missing or computed at run time."""
    if index >= len(onnx_node.input) or not onnx_node.input[index]:
        raise QccError(f"{node_label(graph, onnx_node)}: the {what} input is missing")
    tensor = graph.tensors.get(onnx_node.input[index])
    if tensor is None or not tensor.is_const:
        raise QccError(
            f"{node_label(graph, onnx_node)}: the {what} '{onnx_node.input[index]}' must be a constant "
            "initializer; qcc needs it at compile time"
        )
    return tensor.data
