"""What an op tells `qcc explain` about itself (Op.explain in qcc/ops/base.py returns one of these).

An Explanation is a kind and one sentence: what the layer computes, and whether the rounding
schemes change it. A requantizing op returns a RequantExplanation instead: the same two fields
plus the pieces of its arithmetic that qcc/commands/explain.py lays out and traces for one output element
(formulas, weights, the exact multiplier, the folded constant and its terms, the C accumulator,
and that element's accumulator computed from the layer's input codes). The kinds and their
meaning are documented in docs/explain_json.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qcc.ir import Graph, Node, Tensor


@dataclass
class Explanation:
    kind: str
    note: str


# The default of Op.explain: an op that says nothing about itself gets no claim about its arithmetic.
NOT_EXPLAINED = Explanation("not_explained", "qcc explain has no explanation for this op yet: its module does not "
                                             "say what it computes or how the rounding schemes affect it")
MOVES_CODES = Explanation("no_arithmetic", "moves or selects codes: no arithmetic, nothing to round, the same in "
                                           "every scheme")
KEEPS_ORT = "the rounding schemes have no form of their own for this op: it keeps ORT's arithmetic in every scheme"


@dataclass
class Element:
    """One output element's accumulator, computed from the layer's input codes both ways: from the
    definition, sum((x - Z_x)(w - Z_w)) + bias, and as the C forms it, acc_const + folded_sum +
    minus_zw_sum_x. The arrays hold one entry per term, in the op's order."""

    x: np.ndarray  # the input codes (a padded tap holds Z_x, what the kernel reads there)
    w: np.ndarray | None  # the weight codes as in the model; None for the pools
    padded: np.ndarray  # bool: the term lies in the padding (it adds 0)
    products: np.ndarray  # (x - Z_x)(w - Z_w), or x - Z_x for the pools; 0 in the padding
    bias: int
    acc_const: int
    folded_sum: int  # sum x * (w - Z_w) with w as the C stores it (matrix products: sum a * w; pools: sum x)
    minus_zw_sum_x: int = 0  # -Z_w * sum(a): matrix products whose weight zero point is not 0

    @property
    def sum_products(self) -> int:
        return int(self.products.sum())


class RequantExplanation(Explanation):
    """A requantizing op's side of the trace. The subclass in the op module sets channels, taps,
    w (the weight tensor, None for the pools), s_w and z_w (per channel, None for the pools) and
    formula, and defines the methods below."""

    w: Tensor | None = None
    formula: dict[str, str]

    def __init__(self, node: Node, graph: Graph):
        self.rq = node.params["requant"]
        super().__init__("requantize", f"requantized in the '{self.rq.scheme}' scheme")
        self.node, self.graph = node, graph
        self.x = graph.tensor(node.inputs[0])
        self.y = graph.tensor(node.outputs[0])
        self.s_x, self.z_x = self.x.quant.scalar()
        self.s_y, self.z_y = self.y.quant.scalar()

    def rq_index(self, channel: int) -> int:
        return channel if self.rq.channels > 1 else 0

    def exact_m(self, channel: int) -> Fraction:
        """The exact ratio of the (float32) scales the channel's requantization approximates."""
        raise NotImplementedError

    def acc_const(self, channel: int) -> int | list[int]:
        """The channel's folded constant as the C stores it (a list, one per row, where it varies by row)."""
        raise NotImplementedError

    def acc_const_terms(self, channel: int) -> dict:
        """The terms whose sum modulo 2^32 is acc_const (docs/explain_json.md names them)."""
        raise NotImplementedError

    def c_accumulator(self, channel: int) -> tuple[str, str]:
        """What the C kernel computes per output element: in symbols, and with the channel's numbers."""
        raise NotImplementedError

    def c_shortcut(self, channel: int) -> str | None:
        """Where the C computes the channel's code another way than `requantize` says, with the same result: how."""
        return None

    def positions(self) -> int:
        """Output elements per channel (in batch 0)."""
        raise NotImplementedError

    def output_index(self, channel: int, position: int) -> tuple[int, ...]:
        """The index in the output tensor of the channel's element at `position` (row-major)."""
        raise NotImplementedError

    def element(self, values: dict[str, np.ndarray], channel: int, position: int) -> Element:
        """That element's accumulator from the layer's input codes in `values` (the reference run)."""
        raise NotImplementedError


def per_channel(values, count: int) -> list:
    """A per-tensor or per-channel parameter as one entry per channel."""
    return list(np.broadcast_to(np.asarray(values).reshape(-1), (count,)))
