"""Static memory plan: every intermediate tensor gets an offset in one arena.

Tensors that only reinterpret another's bytes (Reshape and friends) join its buffer. Each
buffer lives from the step that writes it to the last step that reads it; buffers whose
lifetimes overlap get disjoint bytes, placed greedily (largest first, lowest offset that fits, as
TFLM's planner), so tensors never alive together share memory. Where that leaves the arena above
the most bytes in use at one step, the buffers it left on top are placed first, in rounds kept
while the arena shrinks (_improved). Constants live in flash, and state that persists
between inferences (graph.states) in a buffer of its own. Graph inputs and outputs are
the caller's buffers, or with --io-in-arena (graph.io_in_arena) arena buffers like the others, an
input alive from the start to its last reader and an output from its writer to the end: the arena is
then all the RAM the model needs, counted as TFLM counts its own, and a layer may overwrite an input
that no later layer reads.

Three techniques go below the liveness bound (the most bytes of whole tensors alive at one step):
- Concat by construction: where a concatenation's inputs are contiguous slices of its output
  (every axis before the concatenated one has size 1, as channels of one NCHW image are), each
  input's buffer is that slice, so its producer writes straight into the output; the concat then
  costs nothing, or requantizes its slice in place when it is that input's last reader.
- In place: a step whose input buffer dies at it may write its output over that input, at the
  offset qcc/passes/in_place.py proves safe from the kernel's loop order (Op.access_order).
  Buffers joined so form a cluster placed as one rigid piece; no two of its buffers share bytes
  while alive together except such an input and output at their one common step.
- Streamed chains (qcc/passes/streaming.py): layers run a row at a time, their intermediate
  tensors in bands of rows, the chain as one step (its last layer's) with the bands as scratch.
Each is kept only where it makes the arena smaller.

A kernel's scratch lives during its own step. Where a kernel runs faster with more scratch
(Op.scratch_choices), each step in turn gets the largest size that leaves the arena as small as
with the least scratch everywhere: speed only from bytes that are free anyway.
"""

from __future__ import annotations

import copy

from dataclasses import dataclass, replace

from qcc.errors import QccError
from qcc.ir import Graph, MemoryPlan, StepMemory, Storage
from qcc.ops import op_named
from qcc.ops.movement import reads_channels_last
from qcc.passes import streaming
from qcc.passes.in_place import largest_safe_offset
from qcc.passes.streaming import Stream

ALIGNMENT = 4  # every buffer starts on a word, so kernels may load 32 bits at a time later


# Plans tried while choosing which parts of chains to stream: enough for every chain of the suite's
# networks, bounded so that a long chain cannot make compiling slow.
MAX_STREAM_TRIALS = 30
# Streaming costs a kernel call per row (a few percent of the instructions, docs/memory.md): a stretch
# of a chain is streamed only where it saves at least this part of the arena.
STREAM_MIN_SAVING = 1 / 16


def plan(graph: Graph, below_liveness: bool = True) -> MemoryPlan:
    """The plan; with below_liveness False, of whole tensors only (no layer in place or streamed). With
    --io-in-arena, the smallest of three: the chains chosen with the inputs and outputs sharing the arena, the
    chains chosen for the caller's buffers placed the same way, and the caller's plan with them after its arena
    (the choices of chains to stream are greedy and can land elsewhere once the inputs share the arena)."""
    if not graph.io_in_arena:
        return _plan_for(graph, below_liveness)
    model_order = list(graph.nodes)
    shared = _plan_for(graph, below_liveness)
    shared_order = list(graph.nodes)
    graph.nodes[:] = model_order
    graph.io_in_arena = False
    try:
        caller = _plan_for(graph, below_liveness)
    finally:
        graph.io_in_arena = True
    apart, apart_order = _io_after_arena(graph, caller), list(graph.nodes)
    # The chains chosen for the caller's buffers, placed with the inputs and outputs sharing the arena: with them
    # in it, the greedy choice can stop at a first stretch that alone saves little because another step is as
    # high (FITI's YOLOv5s 192: its first two convolutions and its first C3 block), where both together do.
    plans = [(shared, shared_order)]
    if caller.streams:
        plans.append((_plan_with(graph, list(caller.streams.values()), offsets={}), apart_order))
    plans.append((apart, apart_order))
    best, order = min(plans, key=lambda p: p[0].arena_bytes)  # the first of equals: sharing where it ties
    graph.nodes[:] = order
    return best


def _plan_for(graph: Graph, below_liveness: bool) -> MemoryPlan:
    if not below_liveness:
        return _plan_with(graph, [], in_place=False)
    offsets: dict = {}  # the proofs' offsets, the same in every trial
    return _plan_with(graph, _choose_streams(graph, offsets), offsets=offsets)


def _io_after_arena(graph: Graph, plan: MemoryPlan) -> MemoryPlan:
    """A plan for the caller's buffers with each input and output (and the tensors sharing its bytes) moved
    into the arena after everything it held before."""
    storage, at = dict(plan.storage), plan.arena_bytes
    places: dict[tuple[str, int], int] = {}
    for name in graph.inputs + graph.outputs:
        kind = "input" if name in graph.inputs else "output"
        key = (kind, (graph.inputs if kind == "input" else graph.outputs).index(name))
        places[key] = at
        at = _align(at + graph.tensor(name).nbytes)
    for name, where in plan.storage.items():
        if where is not None and where.kind in ("input", "output"):
            storage[name] = Storage("arena", offset=places[(where.kind, where.index)])
    return replace(plan, storage=storage, arena_bytes=at)


def _choose_streams(graph: Graph, offsets: dict) -> list[Stream]:
    """Which stretches of chains (streaming.candidates) to stream: along each chain, from its first
    layer, the stretch of 2, 3, ... layers that makes the arena smallest (grown while a longer one
    helps, up to two layers past the best), then the same from the layer after it; a start that helps
    at no length moves on by one layer. A first stretch helps where it saves STREAM_MIN_SAVING of the
    arena. A chain ending in an Add with a twin (streaming.add_twin) is also tried as the pair, the
    smaller arena kept. Then the chains none of whose layers was chosen are tried together
    (_StreamChoice.take_plateau): repeated blocks that each reach the peak lower it only together. Trials
    place only with the in-place links and skip the scratch growth (both done once, for the plan kept);
    graph.nodes ends in the order the chosen chains need (each one's layers
    consecutive)."""
    state = _StreamChoice(graph, offsets)
    chains = streaming.candidates(graph)
    for chain in chains:
        twin = streaming.add_twin(graph, chain)
        if twin is None:
            state.choose_along(chain)
            continue
        alone = state.copy()
        alone.choose_along(chain)
        paired = state.copy()
        paired.take_whole([streaming.schedule(part) for part in twin])  # neither helps without the other
        state = paired if paired.best < alone.best else alone
        graph.nodes[:] = state.order
    # A plateau: chains that each reach the arena's peak (a detector's repeated blocks), none of which lowers it
    # alone. The rest streamed whole, together, where that saves STREAM_MIN_SAVING; then each one dropped again
    # where the arena stays as it is without it.
    chosen = {id(n) for stream in state.streams for n in stream.nodes}
    rest = [streaming.schedule(streaming.Stream(chain.stages)) for chain in chains
            if not any(id(n) in chosen for n in chain.nodes)]
    if len(rest) > 1:
        state.take_plateau(rest)
    graph.nodes[:] = state.order
    return state.streams


class _StreamChoice:
    """The chains chosen so far, the arena they give, the node order they need, and the trials spent."""

    def __init__(self, graph: Graph, offsets: dict):
        self.graph, self.offsets = graph, offsets
        self.streams: list[Stream] = []
        self.trials = 0
        self.best = _plan_with(graph, self.streams, trial=True, offsets=offsets).arena_bytes
        self.order = list(graph.nodes)

    def copy(self) -> "_StreamChoice":
        other = copy.copy(self)
        other.streams, other.order = list(self.streams), list(self.order)
        return other

    def take_whole(self, streams: list[Stream]) -> None:
        """Stream these chains whole, together, where that makes the arena smaller."""
        arena, order = self._trial(self.streams + streams, streams)
        if arena < self.best:
            self.best, self.order = arena, order
            self.streams += streams

    def take_plateau(self, streams: list[Stream]) -> None:
        """Stream these chains whole, together, where that saves STREAM_MIN_SAVING of the arena; then each
        one that the arena does not need (it stays as small without it) runs layer by layer again, the
        first MAX_STREAM_TRIALS of them tried."""
        arena, _ = self._trial(self.streams + streams, streams)
        if arena > self.best * (1 - STREAM_MIN_SAVING):
            return
        kept = list(streams)
        for stream in streams[:MAX_STREAM_TRIALS]:  # (bounded, so that a model of many blocks compiles quickly)
            fewer = [s for s in kept if s is not stream]
            if self._trial(self.streams + fewer, fewer)[0] <= arena:
                kept = fewer
        self.best, self.order = self._trial(self.streams + kept, kept)
        self.streams += kept

    def _trial(self, streams: list[Stream], new: list[Stream]) -> tuple[int, list]:
        """The arena with these chains streamed, and the node order they need (the order so far, `new` made
        consecutive)."""
        graph = self.graph
        self.trials += 1
        graph.nodes[:] = self.order
        for stream in new:
            streaming.make_consecutive(graph, stream)
        order = list(graph.nodes)
        arena = _plan_with(graph, streams, trial=True, offsets=self.offsets).arena_bytes
        graph.nodes[:] = self.order
        return arena, order

    def choose_along(self, chain: Stream) -> None:
        start = 0
        while start + 2 <= len(chain.stages) and self.trials < MAX_STREAM_TRIALS:
            chosen = None  # (end, stream)
            for end in range(start + 2, len(chain.stages) + 1):
                if self.trials >= MAX_STREAM_TRIALS or (chosen is not None and end > chosen[0] + 2):
                    break
                stream = streaming.sub_chain(chain, start, end)
                arena, _ = self._trial(self.streams + [stream], [stream])
                if arena <= self.best * (1 - STREAM_MIN_SAVING) or (chosen is not None and arena < self.best):
                    self.best, chosen = arena, (end, stream)
            if chosen is None:
                start += 1
                continue
            self.graph.nodes[:] = self.order
            streaming.make_consecutive(self.graph, chosen[1])
            self.order = list(self.graph.nodes)
            self.streams.append(chosen[1])
            start = chosen[0]


def _plan_with(graph: Graph, streams: list[Stream], in_place: bool = True, trial: bool = False,
               offsets: dict | None = None) -> MemoryPlan:
    """The plan running these chains streamed (each one's layers consecutive in graph.nodes). A trial
    only measures the arena with every in-place link; a plan also compares it with none, and gives
    kernels larger scratch where the arena has the bytes free. `offsets` keeps the in-place proofs'
    results between calls."""
    tensors = tensor_buffers(graph, streams, concat_slices=in_place)
    links = _in_place_links(graph, tensors, {} if offsets is None else offsets) if in_place else []
    choices = [op_named(node.op).scratch_choices(node, graph) for node in graph.nodes]
    for step, stream in tensors.streams.items():  # a chain's scratch: its bands and one kernel's at a time
        for node in stream.nodes:
            choices[graph.nodes.index(node)] = [0]
        choices[step] = stream_scratch_choices(graph, stream)
    sizes = {step: options[-1] for step, options in enumerate(choices) if options[-1]}
    if trial:
        return _place(graph, tensors, links, sizes)
    # Out of place unless in place makes the arena smaller: ties keep every kernel on its own bytes.
    best = _place(graph, tensors, [], sizes)
    if links:
        in_place = _place(graph, tensors, links, sizes)
        if in_place.arena_bytes < best.arena_bytes:
            best = in_place
        else:
            links = []
    for step, options in enumerate(choices):
        for size in options[:-1]:  # larger than the least, fastest first
            trial = _place(graph, tensors, links, {**sizes, step: size})
            if trial.arena_bytes <= best.arena_bytes:
                sizes[step], best = size, trial
                break
    return best


@dataclass
class TensorBuffers:
    """The tensors' side of the plan, the same whatever the scratch sizes."""
    resolved: dict[str, str]  # tensor -> the tensor whose buffer it uses
    offsets: dict[str, int]  # tensor -> its byte offset in that buffer (a concat input's slice; else 0)
    groups: dict[str, list[str]]  # buffer -> the tensors in it
    storage: dict[str, Storage]  # every tensor's kind ("arena" ones get their offset in _place)
    arena: dict[str, tuple[int, int, int]]  # the arena's buffers: buffer -> (bytes, first step, last step)
    liveness_bytes: int
    concat_steps: dict[int, str]  # steps whose concat needs no copy: what they do instead
    # The whole tensors the liveness bound counts (aliases joined, concat inputs still apart):
    whole_resolved: dict[str, str]  # tensor -> its buffer
    whole_bytes: dict[str, int]  # arena buffer -> bytes
    streams: dict[int, Stream]  # streamed chains, by the step that runs them (their last layer's)


def tensor_buffers(graph: Graph, streams: list[Stream] = (), concat_slices: bool = True) -> TensorBuffers:
    root = {name: name for name in graph.tensors}

    def find(name: str) -> str:
        while root[name] != name:
            name = root[name]
        return name

    # The storage each buffer must be, when it is not the arena's: a caller argument or a constant.
    state_offsets, _ = graph.state_offsets()
    external = {t: {t} for t in graph.tensors if graph.tensor(t).is_const or t in state_offsets
                or (not graph.io_in_arena and (t in graph.inputs or t in graph.outputs))}

    # Alias ops join their output to their input's buffer unless that would make one buffer
    # two different caller arguments (or a constant and an argument): then they copy. A constant's
    # bytes are in flash, so an alias op reading one (the copy of a constant output) always copies.
    for node in graph.nodes:
        if op_named(node.op).aliases_input and not graph.tensor(node.inputs[0]).is_const:
            src, dst = find(node.inputs[0]), find(node.outputs[0])
            joined = external.get(src, set()) | external.get(dst, set())
            if len(joined) <= 1:
                root[dst] = src
                if joined:
                    external[src] = joined
    resolved = {name: find(name) for name in graph.tensors}
    groups: dict[str, list[str]] = {}
    for name, r in resolved.items():
        groups.setdefault(r, []).append(name)
    storage = {t: _external_storage(graph, members, state_offsets) for members in groups.values() for t in members}
    chain_step = {id(n): graph.nodes.index(stream.nodes[-1]) for stream in streams for n in stream.nodes}
    for value, offset in _assigned_in_place(graph, resolved, groups, storage, chain_step):
        storage[value] = Storage("state", offset=offset)
    lifetimes = _lifetimes(graph, resolved, storage)
    for t, r in resolved.items():  # no node writes it: no storage at all
        if storage[t].kind == "arena" and r not in lifetimes:
            storage[t] = None
    # The liveness bound: the most bytes of arena tensors alive at one step (constants are in flash; graph
    # inputs and outputs count only with --io-in-arena). Keeping every tensor whole for its lifetime, no
    # placement does with less; only in-place or streamed execution could.
    liveness = max((sum(size for size, start, end in lifetimes.values() if start <= step <= end)
                    for step in range(len(graph.nodes))), default=0)

    whole_resolved, whole_bytes = dict(resolved), {r: size for r, (size, _, _) in lifetimes.items()}

    # A streamed chain runs at its last layer's step: it reads its inputs there, and its intermediate
    # tensors live in its bands, not in the arena.
    by_step = {}
    step_of = list(range(len(graph.nodes)))
    for stream in streams:
        steps = [graph.nodes.index(n) for n in stream.nodes]
        for step in steps:
            step_of[step] = steps[-1]
        by_step[steps[-1]] = stream
        for name in stream.intermediates:
            for t in groups[resolved[name]]:
                storage[t] = Storage("stream")
    lifetimes = _lifetimes(graph, resolved, storage, None, step_of)
    offsets = {name: 0 for name in graph.tensors}
    concat_steps = _concat_into_slices(graph, resolved, offsets, groups, storage, lifetimes) if concat_slices else {}
    return TensorBuffers(resolved, offsets, groups, storage, _lifetimes(graph, resolved, storage, offsets, step_of),
                         liveness, concat_steps, whole_resolved, whole_bytes, by_step)


def _assigned_in_place(graph: Graph, resolved, groups, storage, chain_step: dict[int, int]) -> list[tuple[str, int]]:
    """The values assigned to a state (AssignState) whose producer can write them straight into the state's
    bytes: the value is that node's own output (no alias shares it), read by the assignment alone, and every
    read of the state's old value runs at an earlier step than the producer, or is the producer's own, at the
    input its kernel updates in place (Op.state_in_place). The assignment then copies nothing. Returns each such
    value with the state's offset."""
    state_offsets, _ = graph.state_offsets()
    step = {id(node): chain_step.get(id(node), index) for index, node in enumerate(graph.nodes)}
    chosen = []
    for state in graph.states:
        assign = graph.producer(state.written) if state.written is not None else None
        if assign is None or "table" in assign.attrs:  # a table maps the value: it cannot be the state's bytes
            continue
        value = assign.inputs[0]
        producer = graph.producer(value)
        if (producer is None or op_named(producer.op).aliases_input or storage[value].kind != "arena"
                or len(groups[resolved[value]]) != 1 or graph.consumers(value) != [assign]):
            continue
        old = set(groups[resolved[state.name]])
        in_place = op_named(producer.op).state_in_place.get(producer.outputs.index(value))
        readers = [step[id(n)] for n in graph.nodes if old & set(n.inputs)
                   and not (n is producer and in_place is not None and n.inputs[in_place] in old
                            and sum(name in old for name in n.inputs) == 1)]
        if all(r < step[id(producer)] for r in readers):
            chosen.append((value, state_offsets[state.name]))
    return chosen


def _external_storage(graph: Graph, members: list[str], state_offsets: dict[str, int]) -> Storage:
    kind = Storage("arena")
    for t in members:
        if t in state_offsets:  # the state buffer: a variable's value and its assignment share bytes
            return Storage("state", offset=state_offsets[t])
        if graph.io_in_arena and (t in graph.inputs or t in graph.outputs):
            continue
        if t in graph.inputs:
            kind = Storage("input", index=graph.inputs.index(t))
        elif t in graph.outputs:
            kind = Storage("output", index=graph.outputs.index(t))
        elif graph.tensor(t).is_const:
            kind = Storage("const")
    return kind


def _lifetimes(graph: Graph, resolved: dict[str, str], storage: dict[str, Storage],
               offsets: dict[str, int] | None = None, step_of: list[int] | None = None) -> dict[str, tuple[int, int, int]]:
    """Each arena buffer: (bytes, the step that first writes it, the last step that reads it)."""
    first_write, last_read, size = {}, {}, {}
    if graph.io_in_arena:  # the caller fills the inputs before the first step and reads the outputs after the last
        first_write.update((resolved[name], 0) for name in graph.inputs)
        last_read.update((resolved[name], len(graph.nodes) - 1) for name in graph.outputs)
    for index, node in enumerate(graph.nodes):
        step = step_of[index] if step_of else index
        for name in node.outputs:
            first_write.setdefault(resolved[name], step)
        for name in node.inputs:
            last_read[resolved[name]] = max(step, last_read.get(resolved[name], step))
    for name, r in resolved.items():
        if storage[name] is not None and storage[name].kind == "arena":
            end = (offsets or {}).get(name, 0) + graph.tensor(name).nbytes
            size[r] = max(size.get(r, 0), end)
    return {r: (size[r], first_write[r], last_read.get(r, first_write[r])) for r in size if r in first_write}


def _concat_into_slices(graph: Graph, resolved, offsets, groups, storage, lifetimes) -> dict[int, str]:
    """Make the inputs of each concat that allows it slices of its output's buffer (see the module
    docstring); returns the steps so done, with a sentence each for the report."""
    done = {}
    for step, node in enumerate(graph.nodes):
        slices = _concat_slices(graph, node, step, resolved, offsets, groups, storage, lifetimes)
        if slices is None:
            continue
        out_buffer = resolved[node.outputs[0]]
        for name, begin in slices:
            for member in groups.pop(resolved[name]):
                resolved[member] = out_buffer
                offsets[member] = begin
                groups[out_buffer].append(member)
        rewritten = sum(1 for table in node.params.get("tables") or [] if table is not None)
        done[step] = ("its producers wrote their outputs into its slices"
                      + (f"; {rewritten} requantized in place" if rewritten else ": nothing to copy"))
    return done


def _concat_slices(graph: Graph, node, step, resolved, offsets, groups, storage, lifetimes):
    """[(input, byte offset in the output)] where this node's inputs can live in its output, else None."""
    if node.op not in ("Concat", "QLinearConcat"):
        return None
    y = graph.tensor(node.outputs[0])
    axis = node.attrs["axis"]
    tables = node.params.get("tables") or [None] * len(node.inputs)
    if storage[node.outputs[0]].kind != "arena" or y.nbytes != y.size or any(d != 1 for d in y.shape[:axis]):
        return None
    if len(groups[resolved[y.name]]) != 1 or len({resolved[t] for t in node.inputs}) != len(node.inputs):
        return None
    slices, begin = [], 0
    row_bytes = y.nbytes // y.shape[axis]
    for name, table in zip(node.inputs, tables):
        x = graph.tensor(name)
        buffer = resolved[name]
        whole = (storage[name].kind == "arena" and buffer in lifetimes and lifetimes[buffer][0] == x.nbytes
                 and all(offsets[t] == 0 for t in groups[buffer]) and begin % ALIGNMENT == 0
                 and not reads_channels_last(graph, name))  # a slice holds channels-first bytes
        # A slice rewritten in place must have no reader after the concat.
        if not whole or (table is not None and lifetimes[buffer][2] != step):
            return None
        slices.append((name, begin))
        begin += x.shape[axis] * row_bytes
    return slices


@dataclass
class _Link:
    """A step that writes its output over its input, `delta` bytes from the input's start."""
    step: int
    source: str  # the input's buffer
    target: str  # the output's buffer
    delta: int


def stream_scratch(graph: Graph, stream: Stream) -> list[int]:
    """A streamed chain's scratch: the offset of each band, then of the kernels' scratch (one kernel
    runs at a time, in what the plan gives beyond the bands)."""
    offsets, at = [], 0
    for size in stream.band_bytes(graph):
        offsets.append(at)
        at = _align(at + size)
    return offsets + [at]


def stream_scratch_choices(graph: Graph, stream: Stream) -> list[int]:
    """The scratch sizes a streamed chain can run with, fastest first: its bands, and room for each
    kernel's k-th scratch choice (Op.scratch_choices) for every k."""
    choices = stream.kernel_scratch_choices(graph)
    depth = max(len(c) for c in choices)
    kernels = [max(c[min(k, len(c) - 1)] for c in choices) for k in range(depth)]
    bands = stream_scratch(graph, stream)[-1]
    return list(dict.fromkeys(_align(bands + size) for size in kernels))


def _in_place_links(graph: Graph, tensors: TensorBuffers, offsets: dict) -> list[_Link]:
    """Every step that may run in place (its input buffer dies there, the kernel's order allows an
    overlap), with the largest safe offset; _place decides which of them fit together. `offsets`
    caches each (layer or chain, input) offset: it depends on the kernel's order alone."""
    links = []
    streamed = {id(n) for stream in tensors.streams.values() for n in stream.nodes}
    for step, stream in tensors.streams.items():
        link = _stream_link(graph, tensors, step, stream, offsets)
        if link is not None:
            links.append(link)
    for step, node in enumerate(graph.nodes):
        if len(node.outputs) != 1 or id(node) in streamed:
            continue
        target = _whole_arena_buffer(graph, tensors, node.outputs[0])
        if target is None or tensors.arena[target][1] != step:
            continue
        # an input of wider elements may lie under the output where the kernel's order is given per byte of it
        sources = [(i, _whole_arena_buffer(graph, tensors, name, wide=True)) for i, name in enumerate(node.inputs)]
        candidates = [(i, b) for i, b in sources if b is not None and b != target and tensors.arena[b][2] == step
                      and [s for _, s in sources].count(b) == 1]
        if not candidates:
            continue
        for i, source in candidates:
            if (id(node), i) not in offsets:
                order = op_named(node.op).access_order(node, graph)
                reads = order.reads.get(i) if order is not None else None
                if reads is not None and len(reads) != graph.tensor(node.inputs[i]).nbytes:
                    reads = None  # an order per element of a wider input: not byte offsets
                offsets[id(node), i] = None if reads is None else largest_safe_offset(reads, order.writes, ALIGNMENT)
            if offsets[id(node), i] is not None:
                links.append(_Link(step, source, target, offsets[id(node), i]))
                break
    return links


def _stream_link(graph: Graph, tensors: TensorBuffers, step: int, stream: Stream, offsets: dict) -> _Link | None:
    """A streamed chain's output over its input or an Add's second input, where that dies with the
    chain and the calls' order (Stream.access_order) allows it. Where the order allows only a partial overlap
    (a window still reads rows ahead of the row written), the output's rows may be held back a few rows
    (streaming.with_lag, up to the windows' reach): the fewest that give the most overlap, the chain in
    tensors.streams then replaced by the one with that lag."""
    target = _whole_arena_buffer(graph, tensors, stream.output)
    if target is None or tensors.arena[target][1] != step or stream.ends_in_parts:  # a few accumulators' worth
        return None
    sources = {}  # the whole inputs dying here: tensor -> buffer
    for name in [stream.stages[0].main] + [s.side for s in stream.stages if s.side is not None]:
        source = _whole_arena_buffer(graph, tensors, name)
        if source is not None and source != target and tensors.arena[source][2] == step:
            sources[name] = source
    key = tuple(id(n) for n in stream.nodes)

    def extent(link: _Link) -> int:  # the bytes the two take together
        source, target = tensors.arena[link.source][0], tensors.arena[link.target][0]
        return max(source, link.delta + target) - min(0, link.delta)

    def links_at(deltas: dict) -> list[_Link]:
        return [_Link(step, source, target, deltas[name]) for name, source in sources.items() if deltas.get(name) is not None]
    if key not in offsets:  # the chain's lag and, per input it reads whole, its offset: the fewest bytes together
        least = max([tensors.arena[target][0]] + [tensors.arena[source][0] for source in sources.values()])
        best, lag = None, 0
        while True:
            lagged = stream if lag == 0 else streaming.with_lag(stream, lag)
            if lagged is None:
                break
            deltas = _safe_offsets(graph, lagged)
            held_back = lagged.band_bytes(graph)[-1] if lag else 0  # the output rows held back
            bytes_together = min((extent(link) + held_back for link in links_at(deltas)), default=None)
            if bytes_together is not None and (best is None or bytes_together < best[0]):
                best = bytes_together, lagged if lag else None, deltas
            if (best is not None and best[0] <= least) or lag >= sum((s.kernel - 1) * s.dilation for s in stream.stages):
                break  # the output wholly over an input, or the windows' reach
            lag += 1
        offsets[key] = (None, {}) if best is None else best[1:]  # (the chain with its lag, scheduled once)
    lagged, deltas = offsets[key]
    links = links_at(deltas)
    if links and lagged is not None:
        tensors.streams[step] = lagged
    return min(links, key=extent, default=None)


def _safe_offsets(graph: Graph, stream: Stream) -> dict[str, int | None]:
    """Per input the chain reads whole: the largest offset of the output from it that the calls' order allows."""
    order = stream.access_order(graph)
    return {name: largest_safe_offset(reads, order.writes, ALIGNMENT) for name, reads in order.reads.items()}


def _whole_arena_buffer(graph: Graph, tensors: TensorBuffers, name: str, wide: bool = False) -> str | None:
    """The buffer of an 8-bit (or with `wide`, any) arena tensor that fills it from byte 0, else None."""
    buffer = tensors.resolved[name]
    t = graph.tensor(name)
    if (tensors.storage[name].kind != "arena" or buffer not in tensors.arena or (t.nbytes != t.size and not wide)
            or tensors.offsets[name] != 0 or tensors.arena[buffer][0] != t.nbytes):
        return None
    return buffer


@dataclass
class _Piece:
    key: str | int  # a buffer, or a step for its scratch
    rel: int  # offset from the cluster's start
    size: int
    start: int
    end: int

    def overlaps(self, other: _Piece, shift: int = 0) -> bool:
        """Alive together and sharing bytes (this piece moved by `shift`)."""
        return (self.start <= other.end and other.start <= self.end
                and self.rel + shift < other.rel + other.size and other.rel < self.rel + shift + self.size)


def _clusters(tensors: TensorBuffers, links: list[_Link]) -> tuple[list[list[_Piece]], dict[int, _Link]]:
    """The arena's buffers joined into rigid clusters by the links that keep every overlap legitimate."""
    cluster_of = {b: [_Piece(b, 0, size, start, end)] for b, (size, start, end) in tensors.arena.items()}
    accepted = {}
    for link in links:
        a, b = cluster_of[link.source], cluster_of[link.target]
        if a is b:
            continue
        source = next(p for p in a if p.key == link.source)
        target = next(p for p in b if p.key == link.target)
        shift = source.rel + link.delta - target.rel
        legitimate = all(not q.overlaps(p, shift) or (p is source and q is target) for p in a for q in b)
        if not legitimate:
            continue
        for q in b:
            q.rel += shift
            a.append(q)
        low = min(p.rel for p in a)
        for p in a:
            p.rel -= low
            cluster_of[p.key] = a
        accepted[link.step] = link
    unique = {id(c): c for c in cluster_of.values()}
    return list(unique.values()), accepted


# Rounds of the placement's improvement (_arrange): each places first the clusters that reach above the most
# bytes in use at one step, while that makes the arena smaller.
MAX_REORDERS = 8


def _arrange(clusters: list[list[_Piece]], first: list) -> list[_Piece]:
    """Greedy by size, as TFLM's planner: each cluster (a rigid piece, see _clusters) at the lowest offset
    where none of its pieces shares bytes with a piece alive at the same time, the largest first; the
    clusters holding a key in `first` before all others, in that order."""
    def extent(cluster):
        return max(p.rel + p.size for p in cluster)

    def rank(cluster):
        keys = [first.index(p.key) for p in cluster if p.key in first]
        return (min(keys) if keys else len(first), -extent(cluster), min(p.start for p in cluster), str(cluster[0].key))

    placed: list[_Piece] = []  # at their arena offsets
    for cluster in sorted(clusters, key=rank):
        base = 0
        moved = True
        while moved:
            moved = False
            for piece in cluster:
                for other in placed:
                    if piece.overlaps(other, base):
                        base = _align(other.rel + other.size - piece.rel)
                        moved = True
        placed += [_Piece(piece.key, base + piece.rel, piece.size, piece.start, piece.end) for piece in cluster]
    return placed


def _most_in_use(placed: list[_Piece]) -> int:
    """The most bytes in use at one step: pieces alive together may share bytes (an in-place step's input
    and output), so each step counts the union of its pieces' ranges."""
    steps = sorted({p.start for p in placed})
    most = 0
    for step in steps:  # a step where a piece starts is where the union can grow
        ranges = sorted((p.rel, p.rel + p.size) for p in placed if p.start <= step <= p.end)
        used, reached = 0, 0
        for lo, hi in ranges:
            if hi > reached:
                used += hi - max(lo, reached)
                reached = hi
        most = max(most, used)
    return most


def _improved(clusters: list[list[_Piece]]) -> list[_Piece]:
    """The greedy placement, then rounds that place first the clusters reaching above the most bytes in use at
    one step (they were placed on top of others that could have gone above them), kept while the arena shrinks."""
    first: list = []
    placed = _arrange(clusters, first)
    for _ in range(MAX_REORDERS):
        arena, in_use = max((p.rel + p.size for p in placed), default=0), _most_in_use(placed)
        if arena <= in_use:
            break
        above = [p.key for p in sorted(placed, key=lambda p: -(p.rel + p.size)) if p.rel + p.size > in_use]
        trial_first = first + [key for key in above if key not in first]
        trial = _arrange(clusters, trial_first)
        if max(p.rel + p.size for p in trial) >= arena:
            break
        first, placed = trial_first, trial
    return placed


def _place(graph: Graph, tensors: TensorBuffers, links: list[_Link], scratch_sizes: dict[int, int]) -> MemoryPlan:
    """The plan with these in-place links and scratch sizes (node index -> bytes; absent: none)."""
    clusters, accepted = _clusters(tensors, links)
    # A kernel's scratch lives during its own step only.
    clusters += [[_Piece(step, 0, size, step, step)] for step, size in scratch_sizes.items() if size]
    placed = _improved(clusters)
    base_of: dict[str | int, int] = {p.key: p.rel for p in placed}
    arena_bytes = max((p.rel + p.size for p in placed), default=0)
    if arena_bytes >= 2**31:
        raise QccError(f"{graph.source}: the tensors alive at once need an arena of {arena_bytes} bytes; qcc's limit is "
                       "2^31 - 1 (a 32-bit address space)")
    storage = dict(tensors.storage)
    for name, buffer in tensors.resolved.items():
        if buffer in base_of:
            storage[name] = Storage("arena", offset=base_of[buffer] + tensors.offsets[name])
    scratch = {key: offset for key, offset in base_of.items() if isinstance(key, int)}
    steps = {step: StepMemory("in place", note) for step, note in tensors.concat_steps.items()}
    for step, link in accepted.items():
        over = next(t for t, r in tensors.resolved.items() if r == link.source)
        steps[step] = StepMemory("in place", f"output over '{over}' (read here for the last time) at offset {link.delta}, "
                                             "which its kernel's loop order proves safe")
    for step, stream in tensors.streams.items():
        for node in stream.nodes[:-1]:
            steps[graph.nodes.index(node)] = StepMemory("streamed", f"row by row in step {step}, its output in a band "
                                                                    "of rows, never whole")
        bands = ", ".join(f"{rows} rows of '{name}'" for name, rows in zip(stream.intermediates, stream.band_rows))
        if stream.lag:
            bands += f" and its output's last {stream.lag + 1} rows, each copied to its place {stream.lag} rows later"
        over = f"; {steps[step].detail}" if step in steps else ""
        steps[step] = StepMemory("streamed", f"runs {len(stream.nodes)} layers a row at a time, holding {bands}{over}")
    return MemoryPlan(storage, _align(arena_bytes), tensors.resolved, scratch, dict(scratch_sizes), tensors.liveness_bytes,
                      steps, streams=dict(tensors.streams))


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
