"""Streamed execution: a chain of layers computed a row at a time, its intermediate tensors never whole.

A chain is consecutive layers (convolutions run as a matrix product, depthwise convolutions but
qcc_conv_depthwise's 1-D column path, max pools, and elementwise Adds of a whole second input) where each layer's output feeds only the
next; the memory plan picks the stretches of chains worth streaming. A chain may end in a fully
connected layer that reads its input image flattened (through a Reshape, which costs nothing): it
takes the image a row at a time, each row a part of its depth added into its accumulators, and
requantizes after the last row (qcc_fully_connected_part), so the image it reads is never whole.
Each intermediate tensor lives in a band: a few consecutive rows of every channel, `band_rows` at
most (the next layer's window, kernel rows for stride 1). The schedule is pulled from the last
layer: to compute its output row r, each layer makes the rows its window needs, a row per kernel
call, after the band below it has dropped the rows no later window reads. Nothing is computed twice; what
streaming costs is a kernel call per row and the bytes each shift moves.

The schedule is computed here, at compile time, and the C runs it as written (backend/streams.py):
a kernel reads its input rows from the whole chain input or from the band below, and writes its row
into its band or into the chain's output. The chain's output may then be placed over the chain's
input or the Add's second input, where the memory plan proves it (AccessOrder over the calls);
where a window reads rows ahead of the row written, the output's rows may be held back a few rows
in a band of their own (Stream.lag) and copied to their place once no window reads the rows under them.
The memory plan (passes/memory_plan.py) keeps a chain streamed only where the arena shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qcc.access_order import AccessOrder
from qcc.ir import Graph, Node
from qcc.ops import op_named
from qcc.ops.movement import reads_channels_last

STREAMABLE_OPS = ("QLinearConv", "MaxPool", "QLinearAdd")
FULLY_CONNECTED_OPS = ("QGemm", "QLinearMatMul")  # a chain's last layer only, reading the image by rows


@dataclass(frozen=True)
class Stage:
    """One layer of a chain and its geometry along the rows."""
    node: Node
    main: str  # the input it streams: the chain's input, or the stage before's output
    side: str | None  # an elementwise second input, read whole (Add)
    kernel: int
    stride: int
    pad: int  # the rows of padding above
    dilation: int
    in_h: int
    out_h: int
    # The alias ops (a Reshape flattening the image) between the stage before and this one: no code,
    # in the chain's step with it.
    via: tuple[Node, ...] = ()

    @property
    def takes_parts(self) -> bool:
        """A fully connected layer: one call per input row, its output written by the last."""
        return self.node.op in FULLY_CONNECTED_OPS

    @property
    def output(self) -> str:
        return self.node.outputs[0]

    def window(self, row: int) -> tuple[int, int]:
        """The input rows (first, last) that output row `row` reads."""
        first = row * self.stride - self.pad
        last = min(self.in_h - 1, first + (self.kernel - 1) * self.dilation)
        return max(0, first), last


@dataclass(frozen=True)
class Run:
    """A kernel call: stage `stage` computes its output row `row`; its input holds rows from
    `in_first` (`in_rows` of them), and its output buffer starts at row `out_first`."""
    stage: int
    row: int
    in_first: int
    in_rows: int
    out_first: int


@dataclass(frozen=True)
class Shift:
    """The band after stage `band` drops its first `drop` rows, keeping the `keep` rows after them (band
    len(stages) - 1: the held-back output rows of a chain with a lag)."""
    band: int
    drop: int
    keep: int


@dataclass(frozen=True)
class Flush:
    """A chain with a lag: its output row `row`, held back at row `index` of its band since it was made,
    copied to its place in the chain's output."""
    row: int
    index: int


@dataclass
class Stream:
    stages: list[Stage]
    calls: list[Run | Shift | Flush] = field(default_factory=list)
    band_rows: list[int] = field(default_factory=list)  # per banded tensor: the most rows held
    # Output rows held back in a band of lag + 1 rows, each copied to its place `lag` rows later: the
    # output may then lie over an input whose rows the windows still read a few rows ahead (a BlazeBlock's
    # 5x5 depthwise convolution, its output over its input).
    lag: int = 0

    @property
    def nodes(self) -> list[Node]:
        return [n for s in self.stages for n in (*s.via, s.node)]

    @property
    def ends_in_parts(self) -> bool:
        return self.stages[-1].takes_parts

    @property
    def intermediates(self) -> list[str]:
        return [s.output for s in self.stages[:-1]]

    @property
    def output(self) -> str:
        return self.stages[-1].output

    @property
    def banded(self) -> list[str]:
        """The tensors held in bands of rows: the intermediate ones, and the output of a chain with a lag."""
        return self.intermediates + ([self.output] if self.lag else [])

    def band_bytes(self, graph: Graph) -> list[int]:
        """Each band's bytes: its rows of every channel; then, for a chain ending in a fully connected
        layer, its accumulators (an int32 per column, alive from the first row to the last)."""
        sizes = []
        for name, rows in zip(self.banded, self.band_rows):
            _, channels, _, width = graph.tensor(name).shape
            sizes.append(channels * rows * width)
        if self.ends_in_parts:
            sizes.append(4 * self.stages[-1].node.attrs["cols"])
        return sizes

    def kernel_scratch_choices(self, graph: Graph) -> list[list[int]]:
        """Per node of the chain, the scratch sizes its kernel can run a row with (Op.scratch_choices;
        a fully connected layer's for one part of its depth)."""
        choices = []
        for stage in self.stages:
            choices += [[0] for _ in stage.via]
            if stage.takes_parts:
                _, channels, _, width = graph.tensor(stage.main).shape
                choices.append(op_named(stage.node.op).part_scratch_choices(channels * width))
            else:
                choices.append(op_named(stage.node.op).scratch_choices(stage.node, graph))
        return choices

    def access_order(self, graph: Graph) -> AccessOrder:
        """The chain as one kernel (qcc/access_order.py) whose steps are its calls: the chain's input and
        the Adds' second inputs (by tensor name) against the chain's output."""
        reads: dict[str, np.ndarray] = {}
        writes = _row_times(graph.tensor(self.output).shape)
        for t, call in enumerate(self.calls):
            if isinstance(call, Flush):
                writes[:, call.row] = t
            if not isinstance(call, Run):
                continue
            stage = self.stages[call.stage]
            if call.stage == 0:
                first, last = stage.window(call.row)
                _mark(reads, graph, stage.main, first, last, t)
            if stage.side is not None:
                _mark(reads, graph, stage.side, call.row, call.row, t)
            if call.stage == len(self.stages) - 1 and not self.lag:
                writes[:, call.row] = t
        # A ChannelsFirstView's bytes are its source's, channels last: its element (c, h, w) is byte (h, w, c).
        in_bytes = {name: r.transpose(1, 2, 0) if reads_channels_last(graph, name) else r for name, r in reads.items()}
        return AccessOrder({name: r.reshape(-1) for name, r in in_bytes.items()}, writes.reshape(-1))


def _row_times(shape) -> np.ndarray:
    """Per element of an NCHW tensor of batch 1, as [channel, row, column]: -1 (not yet set)."""
    _, channels, height, width = shape
    return np.full((channels, height, width), -1, dtype=np.int64)


def _mark(reads, graph, name, first, last, t) -> None:
    if name not in reads:
        reads[name] = _row_times(graph.tensor(name).shape)
    reads[name][:, first:last + 1] = t


def candidates(graph: Graph) -> list[Stream]:
    """The longest chains of two or more streamable layers (unscheduled: any stretch of one can be
    streamed, sub_chain)."""
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    streams, taken = [], set()
    for node in graph.nodes:
        if id(node) in taken:
            continue
        stage = _stage(graph, node, node.inputs[0]) if node.inputs else None
        if stage is None or stage.side is not None:
            continue
        stages = [stage]
        while not stages[-1].takes_parts:
            nxt = _next_stage(graph, consumers, stages[-1].output, taken)
            if nxt is None:
                break
            stages.append(nxt)
        if len(stages) >= 2:
            taken.update(id(s.node) for s in stages)
            streams.append(Stream(stages))  # scheduled per stretch of it (sub_chain)
    return streams


def add_twin(graph: Graph, chain: Stream) -> tuple[Stream, Stream] | None:
    """An Add's two inputs are alike: a chain ending in an Add whose second input is made by a layer that
    could head a chain of its own (a projection shortcut beside a residual block's convolutions) can
    instead stop before the Add, its output whole, and leave the Add to that layer's chain, which streams
    the other input. Where the second input is the smaller tensor to hold whole beside the chain's input
    (the projection reads the block's input, which stays whole until then), the block's peak loses the
    band of the Add's input. The pair (the chain without its Add, the twin chain), or None."""
    add = chain.stages[-1]
    if add.side is None or len(chain.stages) < 3:
        return None
    readers = [n for n in graph.nodes if add.side in n.inputs]
    maker = next((n for n in graph.nodes if add.side in n.outputs), None)
    if maker is None or readers != [add.node] or add.side in graph.outputs:
        return None
    head = _stage(graph, maker, maker.inputs[0]) if maker.inputs else None
    twin_add = _stage(graph, add.node, add.side)
    if head is None or head.side is not None or twin_add is None or twin_add.side != chain.stages[-2].output:
        return None
    return Stream(chain.stages[:-1]), Stream([head, twin_add])


def with_lag(stream: Stream, lag: int) -> Stream | None:
    """The chain with its output rows held back `lag` rows (Stream.lag), or None where it cannot be: a chain
    ending in a fully connected layer, or an output shorter than the lag."""
    if stream.ends_in_parts or not 0 < lag < stream.stages[-1].out_h:
        return None
    return schedule(Stream(stream.stages, lag=lag))


def sub_chain(chain: Stream, start: int, end: int) -> Stream:
    """Layers start..end-1 of a chain, with their own schedule: the first reads its input whole."""
    return schedule(Stream(chain.stages[start:end]))


def _next_stage(graph: Graph, consumers: dict[str, list[Node]], out: str, taken: set[int]) -> Stage | None:
    """The stage reading `out`, its only reader (through a flattening alias for a fully connected layer)."""
    def only_reader(name: str) -> Node | None:
        readers = consumers.get(name, [])
        if len(readers) != 1 or name in graph.outputs or id(readers[0]) in taken:
            return None
        return readers[0]
    reader = only_reader(out)
    if reader is None:
        return None
    if op_named(reader.op).aliases_input and reader.op not in STREAMABLE_OPS:
        flat = only_reader(reader.outputs[0])
        if flat is None or flat.op not in FULLY_CONNECTED_OPS:
            return None
        return _fully_connected_stage(graph, flat, out, reader)
    return _stage(graph, reader, out)


def _fully_connected_stage(graph: Graph, node: Node, image: str, flatten: Node) -> Stage | None:
    """A fully connected layer reading the NCHW image `image` flattened (batch 1, channels then rows then
    columns, as its weights expect) as a stage taking a row per call; None where it cannot."""
    x, a = graph.tensor(image), graph.tensor(node.inputs[0])
    at, p = node.attrs, node.params
    if (len(x.shape) != 4 or x.shape[0] != 1 or x.nbytes != x.size or node.inputs[0] != flatten.outputs[0]
            or at["rows"] != 1 or at["trans_a"] or at["depth"] != x.size or a.shape[-1] != x.size
            or p.get("weight_zero") is not None or p["acc_const"].ndim != 1):
        return None
    height = x.shape[2]
    return Stage(node, image, None, 1, 1, 0, 1, height, height, via=(flatten,))


def _stage(graph: Graph, node: Node, main: str) -> Stage | None:
    """The node as a stage streaming `main`, or None where it cannot be one."""
    if node.op not in STREAMABLE_OPS or len(node.outputs) != 1:
        return None
    y, x = graph.tensor(node.outputs[0]), graph.tensor(main)
    if len(y.shape) != 4 or len(x.shape) != 4 or y.shape[0] != 1 or x.shape[0] != 1:
        return None
    if any(graph.tensor(t).nbytes != graph.tensor(t).size for t in (main, y.name)):
        return None
    if node.op == "QLinearAdd":
        others = [t for t in node.inputs if t != main]
        if len(others) != 1 or node.inputs.count(main) != 1:
            return None
        side = graph.tensor(others[0])
        if side.is_const or side.shape != y.shape or x.shape != y.shape:
            return None
        return Stage(node, main, side.name, 1, 1, 0, 1, x.shape[2], y.shape[2])
    if node.inputs[0] != main:
        return None
    conv = op_named(node.op) if node.op == "QLinearConv" else None
    # (a grouped convolution runs a call per group, each writing before the next reads: not a row's one call)
    if conv is not None and not ((conv.runs_as_gemm(node, graph) and node.attrs["groups"] == 1)
                                 or conv.is_depthwise_3x3(node, graph) or _depthwise_by_rows(node, graph)):
        return None
    a = node.attrs
    return Stage(node, main, None, a["kernel"][0], a["strides"][0], a["pads_begin"][0], a["dilations"][0],
                 x.shape[2], y.shape[2])


def _depthwise_by_rows(node: Node, graph: Graph) -> bool:
    """qcc_conv_depthwise, but for its path down one column (1-D audio layers), which walks whole columns."""
    x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    columns = x.shape[3] == 1 and node.attrs["kernel"][1] == 1 and y.shape[3] == 1
    return op_named(node.op).is_depthwise(node, graph) and not columns


def schedule(stream: Stream) -> Stream:
    """Fill in the calls, pulling each output row of the last stage through the chain."""
    stages = stream.stages
    produced = [0] * len(stages)  # per stage: the next output row it makes
    band_first = [0] * len(stages)  # per band (a stage's output but the last's): its first row held
    band_rows = [0] * (len(stages) - 1)
    calls: list[Run | Shift] = []

    def make(i: int, row: int) -> None:
        """Stage i's output rows up to `row` exist."""
        stage = stages[i]
        while produced[i] <= row:
            r = produced[i]
            first, last = stage.window(r)
            out_first = band_first[i] if i < len(stages) - 1 else 0  # the last stage writes the whole output
            if i == 0:  # the window's rows of the whole input: a view of the same rows in every call but the edges'
                calls.append(Run(0, r, first, last - first + 1, out_first))
            else:
                below = i - 1
                # rows under `first` are read by no later window: drop them, and skip those not made yet
                drop = min(first, produced[below]) - band_first[below]
                if drop > 0:
                    keep = produced[below] - band_first[below] - drop
                    if keep > 0:
                        calls.append(Shift(below, drop, keep))
                    band_first[below] += drop
                if produced[below] < first:
                    produced[below] = band_first[below] = first
                make(below, last)
                held = produced[below] - band_first[below]
                band_rows[below] = max(band_rows[below], held)
                calls.append(Run(i, r, band_first[below], held, out_first))
            produced[i] += 1

    for row in range(stages[-1].out_h):
        make(len(stages) - 1, row)
    stream.calls, stream.band_rows = calls, band_rows
    if stream.lag:
        _hold_back(stream)
    return stream


def _hold_back(stream: Stream) -> None:
    """The last stage's rows written into a band of lag + 1 rows: after each row from `lag` on, the band's
    first row is copied to its place and dropped; the last `lag` rows are copied after the last call."""
    lag, last = stream.lag, len(stream.stages) - 1
    ring = last  # the band after the last stage: its held-back rows
    calls = []
    for call in stream.calls:
        if not (isinstance(call, Run) and call.stage == last):
            calls.append(call)
            continue
        held = max(0, call.row - lag)
        calls.append(Run(call.stage, call.row, call.in_first, call.in_rows, held))
        if call.row >= lag:
            calls += [Flush(held, 0), Shift(ring, 1, lag)]
    out_h = stream.stages[-1].out_h
    calls += [Flush(row, index) for index, row in enumerate(range(out_h - lag, out_h))]
    stream.calls = calls
    stream.band_rows = stream.band_rows + [lag + 1]


def make_consecutive(graph: Graph, stream: Stream) -> None:
    """Move the nodes between the chain's layers before its first one, so that the chain runs as one
    step: they read none of its intermediate tensors (each has one reader, the next layer), so every
    input they read is made before the chain starts."""
    indices = [graph.nodes.index(n) for n in stream.nodes]
    inside = set(indices)
    between = [graph.nodes[i] for i in range(indices[0], indices[-1] + 1) if i not in inside]
    before = graph.nodes[:indices[0]]
    after = graph.nodes[indices[-1] + 1:]
    graph.nodes[:] = before + between + stream.nodes + after
