"""What op modules use to write C: constant arrays and parameter structs in flash, and the
C expression for any tensor's storage (arena slice, caller argument)."""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING

import numpy as np

from qcc.ir import C_TYPES, Graph

if TYPE_CHECKING:
    from qcc.passes.memory_plan import MemoryPlan

_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Imaginary main""".split())
_VALUES_PER_LINE = 16


def c_identifier(text: str) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", text) or "t"
    if ident[0].isdigit():
        ident = "t_" + ident
    if ident in _C_KEYWORDS or keyword.iskeyword(ident):
        ident += "_"
    return ident


def c_float_literal(value) -> str:
    """A C99 hexadecimal float literal that denotes exactly this float32 value."""
    mantissa, _, exponent = float(np.float32(value)).hex().partition("p")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}p{exponent}f"


def format_values(values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + _VALUES_PER_LINE]) for i in range(0, len(flat), _VALUES_PER_LINE)]
    return ",\n    ".join(lines)


class CEmitter:
    def __init__(self, graph: Graph, plan: MemoryPlan, arena_symbol: str, argument_names: dict[str, str]):
        self.graph = graph
        self.plan = plan
        self.arena_symbol = arena_symbol
        self.argument_names = argument_names  # tensor -> C parameter name
        self.declarations: list[str] = []
        self._symbols: dict[str, str] = {}
        self._taken: set[str] = set(argument_names.values()) | {arena_symbol}
        self.weights_bytes = 0

    def symbol(self, node_name: str) -> str:
        """A C identifier for a node, stable for the model and unique in model.c."""
        if node_name not in self._symbols:
            base = c_identifier(node_name)
            ident, k = base, 2
            while ident in self._taken:
                ident, k = f"{base}_{k}", k + 1
            self._taken.add(ident)
            self._symbols[node_name] = ident
        return self._symbols[node_name]

    def const_array(self, name: str, ctype: str, values: np.ndarray) -> str:
        values = np.asarray(values)
        self.weights_bytes += values.size * np.dtype(ctype.replace("_t", "")).itemsize
        self.declarations.append(f"static const {ctype} {name}[{values.size}] = {{\n    {format_values(values)}\n}};")
        return name

    def struct(self, ctype: str, name: str, fields: list) -> str:
        body = ",\n    ".join(str(f) for f in fields)
        self.declarations.append(f"static const {ctype} {name} = {{\n    {body}\n}};")
        return f"&{name}"

    def scratch(self, node) -> str:
        """A pointer to the node's scratch buffer (word-aligned) in the arena."""
        step = self.graph.nodes.index(node)
        return f"(int32_t *)(void *)&{self.arena_symbol}.bytes[{self.plan.scratch[step]}]"

    def same_storage(self, a: str, b: str) -> bool:
        return self.plan.same_storage(a, b)

    def tensor(self, name: str, as_dtype: str | None = None) -> str:
        """A C pointer expression to the tensor's first element, typed as its dtype (or as_dtype)."""
        tensor = self.graph.tensor(name)
        ctype = C_TYPES[as_dtype or tensor.dtype]
        storage = self.plan.storage[name]
        if storage.kind == "arena":
            return f"({ctype} *)&{self.arena_symbol}.bytes[{storage.offset}]"
        if storage.kind in ("input", "output"):
            # The caller's argument this tensor lives in (itself, or what a Reshape-like op aliases).
            owner = (self.graph.inputs if storage.kind == "input" else self.graph.outputs)[storage.index]
            expr = self.argument_names[owner]
            if as_dtype and as_dtype != self.graph.tensor(owner).dtype:
                qualifier = "const " if storage.kind == "input" else ""
                expr = f"({qualifier}{ctype} *){expr}"
            return expr
        raise NotImplementedError(f"tensor '{name}' has no runtime storage ({storage.kind})")
