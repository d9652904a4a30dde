"""Static memory plan: every intermediate tensor gets an offset in one arena.

Tensors that only reinterpret another's bytes (Reshape and friends) join its buffer. Each
buffer lives from the step that writes it to the last step that reads it; buffers whose
lifetimes overlap get disjoint bytes, placed greedily (largest first, lowest offset that fits),
so tensors never alive together share memory. Graph inputs and outputs are the caller's
buffers and constants live in flash: neither takes arena bytes.

A kernel's scratch lives during its own step. Where a kernel runs faster with more scratch
(Op.scratch_choices), each step in turn gets the largest size that leaves the arena as small as
with the least scratch everywhere: speed only from bytes that are free anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from qcc.errors import QccError
from qcc.ir import Graph, MemoryPlan, Storage
from qcc.ops import op_named

ALIGNMENT = 4  # every buffer starts on a word, so kernels may load 32 bits at a time later


def plan(graph: Graph) -> MemoryPlan:
    tensors = tensor_buffers(graph)
    choices = [op_named(node.op).scratch_choices(node, graph) for node in graph.nodes]
    sizes = {step: options[-1] for step, options in enumerate(choices) if options[-1]}
    best = _place(graph, tensors, sizes)
    for step, options in enumerate(choices):
        for size in options[:-1]:  # larger than the least, fastest first
            trial = _place(graph, tensors, {**sizes, step: size})
            if trial.arena_bytes <= best.arena_bytes:
                sizes[step], best = size, trial
                break
    return best


@dataclass
class TensorBuffers:
    """The tensors' side of the plan, the same whatever the scratch sizes."""
    resolved: dict[str, str]  # tensor -> the tensor whose buffer it uses
    groups: dict[str, list[str]]  # buffer -> the tensors in it
    storage: dict[str, Storage]  # every tensor's kind ("arena" ones get their offset in _place)
    arena: list[tuple[str, int, int, int]]  # (buffer, bytes, first step, last step) of the arena's buffers
    liveness_bytes: int


def tensor_buffers(graph: Graph) -> TensorBuffers:
    root = {name: name for name in graph.tensors}

    def find(name: str) -> str:
        while root[name] != name:
            name = root[name]
        return name

    # The storage each buffer must be, when it is not the arena's: a caller argument or a constant.
    external = {t: {t} for t in graph.tensors if t in graph.inputs or t in graph.outputs or graph.tensor(t).is_const}

    # Alias ops join their output to their input's buffer unless that would make one buffer
    # two different caller arguments (or a constant and an argument): then they copy.
    for node in graph.nodes:
        if op_named(node.op).aliases_input:
            src, dst = find(node.inputs[0]), find(node.outputs[0])
            joined = external.get(src, set()) | external.get(dst, set())
            if len(joined) <= 1:
                root[dst] = src
                if joined:
                    external[src] = joined
    resolved = {name: find(name) for name in graph.tensors}

    storage: dict[str, Storage] = {}
    groups: dict[str, list[str]] = {}
    for name, r in resolved.items():
        groups.setdefault(r, []).append(name)
    first_write, last_read = {}, {}
    for step, node in enumerate(graph.nodes):
        for name in node.outputs:
            first_write.setdefault(resolved[name], step)
        for name in node.inputs:
            last_read[resolved[name]] = step
    arena_buffers = []
    for r, members in groups.items():
        kind = None
        for t in members:
            if t in graph.inputs:
                kind = Storage("input", index=graph.inputs.index(t))
            elif t in graph.outputs:
                kind = Storage("output", index=graph.outputs.index(t))
            elif graph.tensor(t).is_const:
                kind = Storage("const")
        if kind is None and r in first_write:
            size = max(graph.tensor(t).nbytes for t in members)
            arena_buffers.append((r, size, first_write[r], last_read.get(r, first_write[r])))
            kind = Storage("arena")
        for t in members:
            storage[t] = kind

    # The liveness bound: the most bytes of tensors alive at one step (graph inputs and outputs are the
    # caller's buffers, constants are in flash). Keeping every tensor whole for its lifetime, no
    # placement does with less; only in-place or streamed execution could.
    liveness = max((sum(size for _, size, start, end in arena_buffers if start <= step <= end)
                    for step in range(len(graph.nodes))), default=0)
    return TensorBuffers(resolved, groups, storage, arena_buffers, liveness)


def _place(graph: Graph, tensors: TensorBuffers, scratch_sizes: dict[int, int]) -> MemoryPlan:
    """The plan with these scratch sizes (node index -> bytes; absent: none)."""
    storage = dict(tensors.storage)
    # A kernel's scratch lives during its own step only.
    arena_buffers = tensors.arena + [(step, size, step, step) for step, size in scratch_sizes.items() if size]

    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    scratch: dict[int, int] = {}
    arena_bytes = 0
    for r, size, start, end in sorted(arena_buffers, key=lambda b: (-b[1], b[2], str(b[0]))):
        offset = 0
        for other_offset, other_size, other_start, other_end in sorted(placed):
            alive_together = start <= other_end and other_start <= end
            if alive_together and offset < other_offset + other_size and other_offset < offset + size:
                offset = _align(other_offset + other_size)
        placed.append((offset, size, start, end))
        if isinstance(r, int):
            scratch[r] = offset
            arena_bytes = max(arena_bytes, offset + size)
            continue
        storage_r = Storage("arena", offset=offset)
        for t in tensors.groups[r]:
            storage[t] = storage_r
        arena_bytes = max(arena_bytes, offset + size)
    if arena_bytes >= 2**31:
        raise QccError(f"{graph.source}: the tensors alive at once need an arena of {arena_bytes} bytes; qcc's limit is "
                       "2^31 - 1 (a 32-bit address space)")
    return MemoryPlan(storage, _align(arena_bytes), tensors.resolved, scratch, dict(scratch_sizes), tensors.liveness_bytes)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
