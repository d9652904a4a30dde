"""The memory report (`qcc compile --report`, `qcc inspect`, report.html): per layer, the arena
bytes in use, where each input, output and scratch buffer lives, and how the layer runs.

It only reads the memory plan (qcc/passes/memory_plan.py), never recomputes a placement, and
assumes nothing about it beyond its fields: two tensors alive at one step may share bytes (an
in-place step writes its output over an input it no longer needs), so the bytes in use at a step
are the union of the byte ranges alive there, not the sum of their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qcc.ir import Graph, MemoryPlan
from qcc.pipeline import Compiled

OUT_OF_PLACE = "out of place"
# issue 23's bound: an arena within 2% of the most bytes in use at one step needs no explanation
GAP_TOLERANCE = 1.02


@dataclass
class ArenaBuffer:
    """The bytes one arena tensor (with the tensors aliasing it) holds from its first write to its last read."""
    root: str  # the tensor whose buffer it is (plan.root)
    members: list[str]  # every tensor in it: the root and its aliases (Reshape and friends)
    offset: int
    size: int
    first: int  # the step that first writes it
    last: int  # the step that last reads it (its first step when nothing reads it)


@dataclass
class Scratch:
    step: int
    offset: int
    size: int


@dataclass
class LayerRow:
    step: int
    name: str
    op: str
    live_bytes: int  # arena bytes in use during this step: alive buffers and its scratch
    inputs: list[str]  # where each input lives: "@offset+bytes", "input 0", "output 0" or "flash"
    outputs: list[str]
    scratch: str  # "@offset+bytes" or "-"
    mode: str  # "out of place", or the plan's mode for this step ("in place", "streamed")
    detail: str  # the plan's one sentence on that mode, or ""


@dataclass
class MemoryReport:
    model: str  # the model's file name, for titles
    rows: list[LayerRow]
    buffers: list[ArenaBuffer]
    scratch: list[Scratch]
    arena_bytes: int
    liveness_bytes: int  # the liveness bound of qcc's node order
    model_order_liveness_bytes: int  # the same for the model's own order (= liveness_bytes when the plan has none)
    io_bytes: int  # the inputs' and outputs' bytes
    io_in_arena: bool  # --io-in-arena: they are arena buffers, not the caller's
    state_bytes: int = 0  # the state that persists between inferences (graph.states), in a buffer of its own

    @property
    def ram_bytes(self) -> int:
        """All the RAM the model needs, counted as TFLM counts its arena: inputs, outputs and state included."""
        return self.arena_bytes + self.state_bytes + (0 if self.io_in_arena else self.io_bytes)

    def summary(self) -> str:
        bound = self.model_order_liveness_bytes
        ratio = f" ({self.arena_bytes / bound:.3f} x the model order's bound)" if bound else ""
        io = ("the inputs and outputs in it" if self.io_in_arena
              else f"with the caller's input and output buffers ({self.io_bytes} bytes)")
        if self.state_bytes:
            io += f" and the state kept between inferences ({self.state_bytes} bytes)"
        return (f"memory: liveness bound {bound} bytes in the model's order, {self.liveness_bytes} bytes in qcc's order; "
                f"arena {self.arena_bytes} bytes{ratio}; RAM {self.ram_bytes} bytes, {io}{self.gap()}")

    @property
    def most_in_use(self) -> LayerRow | None:
        """The step with the most arena bytes in use (the first such), or None for a graph without steps."""
        return max(self.rows, key=lambda row: row.live_bytes, default=None)

    def gap(self) -> str:
        """Where the arena is more than GAP_TOLERANCE above the most bytes in use at one step: that step, and
        the buffers and scratch above that level, which the placement found no lower place for (a buffer that
        runs in place keeps a fixed offset from the one it overwrites, so such pairs move as one block)."""
        top = self.most_in_use
        if top is None or self.arena_bytes <= GAP_TOLERANCE * top.live_bytes:
            return ""
        level = top.live_bytes
        above = [f"'{_printable(b.root)}' (steps {b.first}-{b.last}, @{b.offset}+{b.size})"
                 for b in self.buffers if b.offset + b.size > level]
        above += [f"step {s.step}'s scratch (@{s.offset}+{s.size})" for s in self.scratch if s.offset + s.size > level]
        return (f"; the arena is {self.arena_bytes / level:.2f} x the most bytes in use at one step ({level} at step "
                f"{top.step} '{_printable(top.name)}'): above that level, {', '.join(above)}, where in-place pairs "
                "fixed relative to each other leave no lower place")


def memory_report(compiled: Compiled) -> MemoryReport:
    graph, plan = compiled.graph, compiled.plan
    buffers = arena_buffers(graph, plan)
    scratch = [Scratch(step, offset, plan.scratch_bytes.get(step, 0)) for step, offset in sorted(plan.scratch.items())
               if plan.scratch_bytes.get(step, 0) > 0]
    rows = [_row(graph, plan, step, buffers, scratch) for step in range(len(graph.nodes))]
    model_order = plan.model_order_liveness_bytes
    return MemoryReport(Path(graph.source).name, rows, buffers, scratch, plan.arena_bytes, plan.liveness_bytes,
                        plan.liveness_bytes if model_order is None else model_order, io_bytes(graph), graph.io_in_arena,
                        graph.state_offsets()[1])


def io_bytes(graph: Graph) -> int:
    return sum(graph.tensor(t).nbytes for t in graph.inputs + graph.outputs)


def arena_buffers(graph: Graph, plan: MemoryPlan) -> list[ArenaBuffer]:
    """Every arena buffer with its lifetime, as memory_plan counts it: from the first step writing
    any of its tensors through the last step reading one (a streamed chain's layers read and write at
    the chain's step; with --io-in-arena, the inputs from the first step, the outputs to the last).
    Sorted by first step, then offset."""
    members: dict[str, list[str]] = {}
    for name in graph.tensors:
        storage = plan.storage.get(name)
        if storage is not None and storage.kind == "arena":
            members.setdefault(plan.root[name], []).append(name)
    first, last = {}, {}
    chain_step = {id(n): step for step, stream in plan.streams.items() for n in stream.nodes}
    if graph.io_in_arena:
        first.update((plan.root[t], 0) for t in graph.inputs if t in plan.root)
        last.update((plan.root[t], len(graph.nodes) - 1) for t in graph.outputs if t in plan.root)
    for index, node in enumerate(graph.nodes):
        step = chain_step.get(id(node), index)
        for name in node.outputs:
            if name in plan.root:
                first.setdefault(plan.root[name], step)
        for name in node.inputs:
            if name in plan.root:
                last[plan.root[name]] = max(step, last.get(plan.root[name], step))
    buffers = []
    for root, names in members.items():
        if root not in first:  # never written: no step holds it
            continue
        size = max(graph.tensor(t).nbytes for t in names)
        offset = min(plan.storage[t].offset for t in names)  # where the buffer starts, whichever tensor is its root
        buffers.append(ArenaBuffer(root, sorted(names), offset, size, first[root],
                                   max(first[root], last.get(root, first[root]))))
    return sorted(buffers, key=lambda b: (b.first, b.offset, b.root))


def _row(graph: Graph, plan: MemoryPlan, step: int, buffers: list[ArenaBuffer], scratch: list[Scratch]) -> LayerRow:
    node = graph.nodes[step]
    ranges = [(b.offset, b.offset + b.size) for b in buffers if b.first <= step <= b.last]
    own_scratch = [s for s in scratch if s.step == step]
    ranges += [(s.offset, s.offset + s.size) for s in own_scratch]
    step_memory = plan.steps.get(step)
    return LayerRow(
        step=step, name=node.name, op=node.attrs.get("onnx_op", node.op), live_bytes=union_bytes(ranges),
        inputs=[location(graph, plan, t) for t in node.inputs], outputs=[location(graph, plan, t) for t in node.outputs],
        scratch=", ".join(f"@{s.offset}+{s.size}" for s in own_scratch) or "-",
        mode=step_memory.mode if step_memory else OUT_OF_PLACE, detail=step_memory.detail if step_memory else "")


def union_bytes(ranges: list[tuple[int, int]]) -> int:
    """The bytes covered by these [start, end) ranges, counting shared bytes once."""
    total, reached = 0, 0
    for start, end in sorted(ranges):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


def location(graph: Graph, plan: MemoryPlan, tensor: str) -> str:
    storage = plan.storage.get(tensor)
    if storage is None:
        return "-"
    if storage.kind == "arena":
        return f"@{storage.offset}+{graph.tensor(tensor).nbytes}"
    if storage.kind == "const":
        return "flash"
    if storage.kind == "stream":
        return "band"  # rows of it at a time, in the streamed chain's scratch
    if storage.kind == "state":  # the buffer that persists between inferences
        return f"state @{storage.offset}+{graph.tensor(tensor).nbytes}"
    return f"{storage.kind} {storage.index}"  # a caller's buffer: "input 0", "output 1"


COLUMNS = ("step", "node", "op", "live bytes", "inputs", "outputs", "scratch", "runs")


def row_cells(row: LayerRow) -> list[str]:
    """The row as the table's cells (text and HTML show the same)."""
    runs = row.mode + (f": {row.detail}" if row.detail else "")
    return [str(row.step), row.name, row.op, str(row.live_bytes), ", ".join(row.inputs), ", ".join(row.outputs),
            row.scratch, runs]


NAME_WIDTH = 28  # as qcc inspect's table: long generated names would push every other column off screen


def render_text(report: MemoryReport) -> str:
    """The table for a terminal: aligned columns, the last ("runs") free to run on."""
    table = [list(COLUMNS)] + [row_cells(row) for row in report.rows]
    for cells in table:  # names from the model may hold newlines or escape sequences: show them escaped
        cells[:] = [_printable(c) for c in cells]
        cells[1] = cells[1][:NAME_WIDTH]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS) - 1)]
    right = {0, 3}  # numbers align right
    lines = []
    for cells in table:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        lines.append("  ".join(padded + [cells[-1]]).rstrip())
    return "\n".join(lines + [report.summary()])


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
