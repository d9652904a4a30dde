"""The execution order: the topological order of graph.nodes that lowers the arena's liveness bound.

What is minimized: the liveness bound of qcc.passes.memory_plan, the most bytes of arena buffers
alive at one step, where a buffer is alive from the step that first writes it through the last step
that reads it (inclusive; a buffer nobody reads lives during its writing step only). Graph inputs
and outputs (the caller's buffers) and constants (flash) take no arena bytes. Buffer identities
(Reshape-like aliases share one) and sizes come from memory_plan.tensor_buffers and do not depend
on the order; only which buffers are alive together does.

Why: in a chain every order is the model's, but in a branching graph (a fire module's two expand
convolutions, a residual block's skip, a detector's Concat skips) the model's order may keep a large
tensor alive while another branch runs. Any placement of whole tensors needs at least the bound, so
lowering it is what lets the placer find a smaller arena.

Exact method: the bytes alive after a set S of executed nodes depend only on S (a buffer is alive
when one of its writers is in S and not all of its readers are), so the orders are paths through
the downward-closed sets of nodes, from the empty set to all, and a step's peak is the bytes alive
after S plus the buffers its node writes first. A best-first search (Dijkstra with the path's
largest step peak as its cost) finds the least achievable peak; then a depth-first search takes the
first order whose peak stays within it, trying at every step the ready node that leaves the fewest bytes
alive first (then the model's order). The peak is often one early step (a network's first, largest
maps), and streaming or in place may remove it later; among the orders that meet it, this one frees a
branch point's input as soon as its readers allow (a C3 block's or a fire module's second branch before
the first one's deeper layers), so the steps after the peak keep fewer bytes alive too. Chains have one state per
node, so the work is bounded by the states visited, not by the node count: MAX_STATES (100k).

Beyond that cap, a heuristic: greedily, at each step, the ready node whose execution leaves the
fewest bytes alive (then the lowest step peak, then the model's order). The result is never worse
than the model's order: both are measured and the model's order kept unless the other is lower, at
its peak or, where the peaks tie, at its highest step after that (a YOLOv5 C3 block's second branch
run early frees the stem's output: FITI's YOLOv5s 192 and OpenMV's YOLOv5 nano tie at an early peak).
Everything is deterministic: integers, and ties broken by the model's node index.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from qcc.ir import Graph
from qcc.passes.memory_plan import tensor_buffers

MAX_STATES = 100_000  # sets of executed nodes the exact search may visit before giving up for the heuristic


def apply(graph: Graph, max_states: int = MAX_STATES) -> None:
    """Reorder graph.nodes in place to lower the liveness bound (see the module docstring)."""
    problem = OrderProblem.of(graph)
    model_order = list(range(len(graph.nodes)))
    order = exact_order(problem, max_states)
    if order is None:
        greedy = greedy_order(problem)
        order = greedy if problem.step_peaks(greedy) < problem.step_peaks(model_order) else model_order
    graph.nodes[:] = [graph.nodes[i] for i in order]


@dataclass(eq=False)  # buffers are told apart by identity, not by equal sizes and masks
class Buffer:
    size: int
    writers: int  # bit mask of the nodes that write it
    readers: int  # bit mask of the nodes that read it


@dataclass
class OrderProblem:
    """The graph as node bit masks: what each node needs first and which arena buffers it touches."""
    predecessors: list[int]  # node -> mask of the nodes that produce its inputs
    successors: list[int]  # node -> mask of the nodes that read its outputs
    written: list[list[Buffer]]  # node -> the arena buffers it writes
    read: list[list[Buffer]]  # node -> the arena buffers it reads

    @classmethod
    def of(cls, graph: Graph) -> OrderProblem:
        tensors = tensor_buffers(graph)
        n = len(graph.nodes)
        producer = {name: i for i, node in enumerate(graph.nodes) for name in node.outputs}
        predecessors, successors = [0] * n, [0] * n
        buffers = {root: Buffer(size, 0, 0) for root, size in tensors.whole_bytes.items()}
        written, read = [[] for _ in range(n)], [[] for _ in range(n)]
        for i, node in enumerate(graph.nodes):
            for name in node.inputs:
                if name in producer:
                    predecessors[i] |= 1 << producer[name]
                    successors[producer[name]] |= 1 << i
            _touch(buffers, tensors.whole_resolved, node.inputs, i, read[i], "readers")
            _touch(buffers, tensors.whole_resolved, node.outputs, i, written[i], "writers")
        return cls(predecessors, successors, written, read)

    @property
    def size(self) -> int:
        return len(self.predecessors)

    def first_writes(self, done: int, node: int) -> int:
        """Bytes of the buffers `node` writes that no node in `done` wrote: they come alive at its step."""
        return sum(b.size for b in self.written[node] if not b.writers & done)

    def live_after(self, done: int, live: int, node: int) -> int:
        """Bytes alive once `node` runs after `done` (whose live bytes are `live`)."""
        after = done | 1 << node
        born = sum(b.size for b in self.written[node] if not b.writers & done and b.readers & ~after)
        freed = sum(b.size for b in self.read[node] if b.writers & done and not b.readers & ~after)
        return live + born - freed

    def newly_ready(self, done: int, node: int) -> int:
        """The nodes that `node` completes the inputs of, once it has run after `done`."""
        after, ready, rest = done | 1 << node, 0, self.successors[node]
        while rest:
            bit = rest & -rest
            rest ^= bit
            if self.predecessors[bit.bit_length() - 1] & ~after == 0:
                ready |= bit
        return ready

    def initially_ready(self) -> int:
        return sum(1 << i for i, p in enumerate(self.predecessors) if p == 0)

    def peak(self, order: list[int]) -> int:
        """The liveness bound of this order, computed step by step as the search does."""
        return max(self.step_peaks(order), default=0)

    def step_peaks(self, order: list[int]) -> list[int]:
        """Each step's bytes alive in this order, highest first: two orders compare by their peak, then, where
        the peaks tie, by the next highest step (the one a streamed or in-place peak step leaves as the peak)."""
        done = live = 0
        peaks = []
        for node in order:
            peaks.append(live + self.first_writes(done, node))
            live = self.live_after(done, live, node)
            done |= 1 << node
        return sorted(peaks, reverse=True)


def _touch(buffers: dict[str, Buffer], resolved: dict[str, str], names: list[str], node: int,
           touched: list[Buffer], role: str) -> None:
    for name in dict.fromkeys(names):  # a tensor named twice is still one buffer
        buffer = buffers.get(resolved[name])
        if buffer is not None and buffer not in touched:
            setattr(buffer, role, getattr(buffer, role) | 1 << node)
            touched.append(buffer)


@dataclass
class State:
    live: int  # bytes alive after these nodes ran
    ready: int  # mask of the nodes whose inputs are all computed and that have not run


def _bits(mask: int):
    """The set bits' indices, lowest (earliest in the model's order) first."""
    while mask:
        bit = mask & -mask
        mask ^= bit
        yield bit.bit_length() - 1


def _step(problem: OrderProblem, done: int, state: State, node: int) -> tuple[int, int, State]:
    """(the step's peak, the set after it, its state) for running `node` after `done`."""
    peak = state.live + problem.first_writes(done, node)
    ready = state.ready & ~(1 << node) | problem.newly_ready(done, node)
    return peak, done | 1 << node, State(problem.live_after(done, state.live, node), ready)


def exact_order(problem: OrderProblem, max_states: int = MAX_STATES) -> list[int] | None:
    """The first order (by model index) with the least peak, or None past max_states states."""
    states = {0: State(0, problem.initially_ready())}
    best = _least_peak(problem, states, max_states)
    if best is None:
        return None
    return _first_order_within(problem, best, states, max_states)


def _least_peak(problem: OrderProblem, states: dict[int, State], max_states: int) -> int | None:
    """Best-first over sets of executed nodes, cost the largest step peak so far (a bottleneck path)."""
    everything = (1 << problem.size) - 1
    cost = {0: 0}
    queue = [(0, 0)]
    while queue:
        peak, done = heapq.heappop(queue)
        if peak > cost[done]:
            continue  # reached again more cheaply since it was queued
        if done == everything:
            return peak
        for node in _bits(states[done].ready):
            step_peak, after, state = _step(problem, done, states[done], node)
            path_peak = max(peak, step_peak)
            if after not in cost or path_peak < cost[after]:
                if after not in states and len(states) >= max_states:
                    return None
                states[after], cost[after] = state, path_peak
                heapq.heappush(queue, (path_peak, after))
    raise AssertionError("graph.nodes is not a DAG")  # a topological order reaches the set of all nodes


def _first_order_within(problem: OrderProblem, bound: int, states: dict[int, State], max_states: int) -> list[int] | None:
    """Depth first, ready nodes by the bytes they leave alive (then in model order): the first complete order
    whose every step peak is within `bound`. Sets from which no such completion exists are remembered, so each
    is tried once."""
    everything = (1 << problem.size) - 1
    dead: set[int] = set()
    order: list[int] = []
    def fewest_alive_first(done: int, state: State):
        return iter(sorted(_bits(state.ready), key=lambda node: (problem.live_after(done, state.live, node), node)))

    path = [(0, fewest_alive_first(0, states[0]))]  # (set executed, its untried ready nodes)
    while path:
        done, untried = path[-1]
        if done == everything:
            return order
        for node in untried:
            step_peak, after, state = _step(problem, done, states[done], node)
            if step_peak <= bound and after not in dead:
                if after not in states and len(states) >= max_states:
                    return None
                states.setdefault(after, state)
                order.append(node)
                path.append((after, fewest_alive_first(after, state)))
                break
        else:
            dead.add(done)
            path.pop()
            if order:
                order.pop()
    return None  # unreachable: the best-first search found an order within the bound


def greedy_order(problem: OrderProblem) -> list[int]:
    """Each step, the ready node leaving the fewest bytes alive, then the lowest step peak, then the first."""
    done, state, order = 0, State(0, problem.initially_ready()), []
    while state.ready:
        choices = []
        for node in _bits(state.ready):
            step_peak, after, next_state = _step(problem, done, state, node)
            choices.append((next_state.live, step_peak, node, after, next_state))
        _, _, node, done, state = min(choices, key=lambda c: c[:3])
        order.append(node)
    return order
