"""What every op module provides, and the registry that maps ONNX ops to them.

One module per op (or per family of byte-moving ops) holds everything qcc does for it: import
from ONNX, compile-time preparation, reference semantics, MACs and C emission. The pipeline
stages around the ops stay generic and look ops up here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from qcc.errors import QccError
from qcc.ir import Graph, Node
from qcc.onnx_graph import attribute  # noqa: F401 (the op modules read attributes through base)
from qcc.ops.c_emitter import CEmitter
from qcc.ops.explanation import NOT_EXPLAINED, Explanation
from qcc.access_order import AccessOrder


class RegistryError(Exception):
    """Two op modules claim the same ONNX op at overlapping opsets: a programming error, raised
    when the op modules are imported."""


class _VersionedRule:
    """An op as one rule imports it, at the versions first..last of its format (last None: every
    later one). Subclasses name the op by `key` and say how versions read in messages."""

    first: int
    last: int | None

    @property
    def key(self) -> tuple[str, str]:
        raise NotImplementedError

    def overlaps(self, other: _VersionedRule) -> bool:
        """The same op at some common version."""
        return (self.key == other.key
                and self.first <= (other.last or self.first) and other.first <= (self.last or other.first))

    def covers(self, version: int) -> bool:
        return self.first <= version and (self.last is None or version <= self.last)


@dataclass(frozen=True)
class OnnxOp(_VersionedRule):
    """An ONNX op as one rule imports it: (domain, op type) at the opsets first..last of its domain
    (last None: every later one). An op whose inputs, attributes or meaning changed across opsets
    has one rule per signature it handles; a model at an opset no rule covers is refused by name."""

    domain: str
    op_type: str
    first: int = 1
    last: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.domain, self.op_type

    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.op_type}" if self.domain else self.op_type

    @property
    def versions(self) -> str:
        if self.last is None:
            return f"opset {self.first}+" if self.first > 1 else "every opset"
        return f"opset {self.first}" if self.first == self.last else f"opsets {self.first}-{self.last}"


@dataclass(frozen=True)
class TfliteOp(_VersionedRule):
    """A TFLite builtin op (its BuiltinOperator name) at the op versions first..last that the
    converter writes and qcc reads; a version outside every rule is refused by name, like an opset."""

    code: str
    first: int = 1
    last: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return "tflite", self.code

    @property
    def qualified_name(self) -> str:
        return self.code

    @property
    def versions(self) -> str:
        if self.last is None:
            return f"version {self.first}+"
        return f"version {self.first}" if self.first == self.last else f"versions {self.first}-{self.last}"


class NotElementwise(Exception):
    """Raised by Op.evaluate_float where a float node cannot be part of a table (the message says why)."""


class Op:
    """Base of every op: subclasses set the class attributes and override the hooks they need."""

    name: str = ""  # the IR op name
    onnx_ops: tuple[OnnxOp, ...] = ()  # the QOperator-form ONNX ops this op imports, with their opsets
    tflite_ops: tuple[TfliteOp, ...] = ()  # the TFLite builtin ops this op imports, with their op versions
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

    def import_tflite(self, operator, model) -> None:
        """Import one TFLite operator (qcc.tflite_graph.TfliteOperator) through `model`, the TFLite
        frontend's import context (qcc/frontend/tflite/importer.py): it hands out the inputs in the
        layout the op asks for, takes the op's IR nodes and outputs, and refuses by name. Where TFLM's
        arithmetic differs from ONNX Runtime's, this is where the op says so."""
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

    def stored_value(self, node: Node, graph: Graph, index: int, data: bytes) -> np.ndarray:
        """Output `index` as the C holds it in memory (its bytes after the step, as `qcc verify --layers`
        traces them), in the IR's shape; an op whose C keeps an output in another order says so here."""
        tensor = graph.tensor(node.outputs[index])
        return np.frombuffer(data, dtype=np.dtype(tensor.dtype).newbyteorder("=")).reshape(tensor.shape)

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        """Working memory the kernel needs during this step only; the memory plan puts it in the arena."""
        return 0

    def access_order(self, node: Node, graph: Graph) -> AccessOrder | None:
        """The C kernel's loop order (qcc/passes/in_place.py), from which the memory plan proves where its
        output may overlap an input it reads for the last time; None: the kernel never runs in place.
        It must describe the kernel as written: the plan trusts it for every byte."""
        return None

    def scratch_choices(self, node: Node, graph: Graph) -> list[int]:
        """The scratch sizes the kernel can run with, fastest first, ending with scratch_bytes (the least).
        The memory plan gives a step a larger one only where it does not make the arena larger; the emitted
        call reads the size it got from the plan (CEmitter.scratch_size)."""
        return [self.scratch_bytes(node, graph)]

    # Ops that only reinterpret their input's bytes (Reshape, Flatten, ...) share its storage.
    aliases_input: bool = False
    # Ops that run after every other node (writing the state a later inference reads: AssignState).
    runs_last: bool = False
    # Output index -> input index: a state the op updates (its output, assigned to the state by an AssignState)
    # whose kernel reads the old value (that input) before writing over it, so that the memory plan may give the
    # output the state's own bytes (qcc/passes/memory_plan.py, _assigned_in_place). The LSTM's states.
    state_in_place: dict[int, int] = {}
    # Ops that only move values: quantizing commutes with them, so qcc/frontend/onnx/boundary_movers.py
    # may move a graph input's QuantizeLinear or a graph output's DequantizeLinear across them.
    moves_values_only: bool = False
    # The float ops ORT's QDQPropagationTransformer copies Q/DQ pairs across (with the opsets
    # it does; qcc/frontend/onnx/qdq_propagation.py).
    qdq_propagation_ops: tuple[OnnxOp, ...] = ()

    # QDQ models: the float ONNX ops whose DequantizeLinear -> op -> QuantizeLinear group ORT runs
    # as this op's integer kernel, and how to write that group as a QOperator node.
    qdq_float_ops: tuple[OnnxOp, ...] = ()

    def from_qdq(self, group) -> list[onnx.NodeProto]:
        """The QOperator node(s) replacing a qcc.frontend.onnx.qdq.QdqGroup; raise NotFused where ORT
        leaves the group in float. The default is ORT's rule for ops that only move or select bytes:
        with the same parameters on the DQ and the Q, the op runs on the codes."""
        return [group.on_codes()]

    # Float islands (qcc/frontend/onnx/float_islands.py): the float ONNX ops this module gives ORT's
    # float32 semantics for, so that an elementwise chain between a DequantizeLinear and a
    # QuantizeLinear becomes a table.
    island_float_ops: tuple[OnnxOp, ...] = ()

    def evaluate_float(self, node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> np.ndarray:
        """What ORT's float kernel computes for `node`, in numpy float32 (IEEE-754 exact for + - * /
        sqrt, max, min). `inputs` are the node's inputs in order as float32 arrays that broadcast
        against the island's values (channels or 1, 256); constants are columns (channels or 1, 1).
        Clip gets its two bounds as ORT reads them at this opset. Raise NotElementwise for a node
        that is not elementwise here."""
        raise NotImplementedError

    def island_refusal(self, node: onnx.NodeProto, shapes: list[tuple[int, ...] | None], channels: int | None) -> str | None:
        """Why ORT's float kernel refuses `node` in an island (it fails when the model runs), or None. `shapes`
        are the shapes of its constant inputs in order (None for the island's variable input and for absent
        ones), `channels` the length of axis 1 of the island's input where it is known."""
        return None


class _Rules:
    """Rules of one kind (QOperator import, QDQ group, float island, TFLite import) -> the op modules."""

    def __init__(self, kind: str):
        self.kind = kind
        self.rules: dict[tuple[str, str], list[tuple[_VersionedRule, Op]]] = {}

    def check(self, rule: _VersionedRule, op: Op) -> None:
        """Raise RegistryError where `rule` overlaps a rule already registered."""
        for other, owner in self.rules.get(rule.key, []):
            if rule.overlaps(other):
                raise RegistryError(f"{type(op).__name__} and {type(owner).__name__} both register "
                                    f"{rule.qualified_name} ({self.kind}) at {rule.versions} / {other.versions}")

    def add(self, rule: _VersionedRule, op: Op) -> None:
        self.rules.setdefault(rule.key, []).append((rule, op))

    def find(self, domain: str, op_type: str, opset: int) -> Op | None:
        domain = "" if domain == "ai.onnx" else domain
        return next((op for rule, op in self.rules.get((domain, op_type), []) if rule.covers(opset)), None)

    def versions(self, domain: str, op_type: str) -> list[str]:
        """The opsets some rule covers, for the message that refuses a node outside them."""
        domain = "" if domain == "ai.onnx" else domain
        return [rule.versions for rule, _ in sorted(self.rules.get((domain, op_type), []), key=lambda r: r[0].first)]

    def names(self) -> list[str]:
        return sorted({rule.qualified_name for rules in self.rules.values() for rule, _ in rules})


_BY_NAME: dict[str, Op] = {}
QOPERATOR_RULES = _Rules("QOperator import")
QDQ_RULES = _Rules("QDQ group")
ISLAND_RULES = _Rules("float island")
PROPAGATION_RULES = _Rules("QDQ propagation")
TFLITE_RULES = _Rules("TFLite import")


def register(op_class: type[Op]) -> type[Op]:
    """Register an op module's class; every check runs before anything is recorded, so a class
    that fails leaves the registry as it was."""
    op = op_class()
    if op.name in _BY_NAME:
        raise RegistryError(f"{op_class.__name__} and {type(_BY_NAME[op.name]).__name__} are both named '{op.name}'")
    claims = [(rules, rule) for rules, claimed in ((QOPERATOR_RULES, op.onnx_ops), (QDQ_RULES, op.qdq_float_ops),
                                                   (ISLAND_RULES, op.island_float_ops),
                                                   (PROPAGATION_RULES, op.qdq_propagation_ops),
                                                   (TFLITE_RULES, op.tflite_ops))
              for rule in claimed]
    for i, (rules, rule) in enumerate(claims):
        expected = TfliteOp if rules is TFLITE_RULES else OnnxOp
        if not isinstance(rule, expected):
            raise RegistryError(f"{op_class.__name__}: {rule!r} is not an {expected.__name__}")
        rules.check(rule, op)
        for other_rules, other in claims[:i]:  # the class's own rules must not overlap either
            if other_rules is rules and rule.overlaps(other):
                raise RegistryError(f"{op_class.__name__} registers {rule.qualified_name} ({rules.kind}) twice: "
                                    f"{other.versions} / {rule.versions}")
    _BY_NAME[op.name] = op
    for rules, rule in claims:
        rules.add(rule, op)
    return op_class


def op_for_onnx(domain: str, op_type: str, opset: int) -> Op | None:
    """The op that imports this QOperator-form node at the opset of its domain."""
    return QOPERATOR_RULES.find(domain, op_type, opset)


def qdq_op_for(domain: str, op_type: str, opset: int) -> Op | None:
    """The op whose integer kernel ORT runs for DequantizeLinear -> this float op -> QuantizeLinear."""
    return QDQ_RULES.find(domain, op_type, opset)


def island_op_for(domain: str, op_type: str, opset: int) -> Op | None:
    """The op that gives this float op's float32 semantics inside a float island."""
    return ISLAND_RULES.find(domain, op_type, opset)


def qdq_propagates_across(domain: str, op_type: str, opset: int) -> bool:
    """Whether ORT's QDQ propagation copies Q/DQ pairs across this float op."""
    return PROPAGATION_RULES.find(domain, op_type, opset) is not None


def op_for_tflite(code: str, version: int) -> Op | None:
    """The op that imports this TFLite builtin op at this op version."""
    return TFLITE_RULES.find("tflite", code, version)


def op_named(name: str) -> Op:
    return _BY_NAME[name]


def all_ops() -> list[Op]:
    return list(_BY_NAME.values())


def supported_onnx_ops() -> list[str]:
    return QOPERATOR_RULES.names()


def supported_tflite_ops() -> list[str]:
    return TFLITE_RULES.names()


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
