"""The reference interpreter: runs the compiled IR in numpy, op by op, with each op's reference
semantics (integer arithmetic and the same rounding scheme as the C). It is the oracle the
generated C must equal bit for bit, and its own tests hold it equal to ONNX Runtime."""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.ir import Graph
from qcc.ops import op_named


class State:
    """What a graph with state (graph.states) carries from one inference to the next, as the C's state
    buffer does: each variable's value, and whether an inference has started (the first one starts from
    the initialisation's values, StateVariable.first_call)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.started = False
        self.values: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        """As NAME_reset() and TFLM's Reset(): every variable's bytes back to its fill byte (what it held before
        the first inference); the initialisation does not run again."""
        for state in self.graph.states:
            tensor = self.graph.tensor(state.name)
            self.values[state.name] = np.full(tensor.nbytes, state.fill, np.uint8).view(
                np.dtype(tensor.dtype)).reshape(tensor.shape)

    def begin(self) -> dict[str, np.ndarray]:
        """The values the next inference reads."""
        if not self.started:
            for state in self.graph.states:
                if state.first_call is not None:
                    self.values[state.name] = np.array(state.first_call, copy=True)
            self.started = True
        return dict(self.values)

    def end(self, values: dict[str, np.ndarray]) -> None:
        for state in self.graph.states:
            if state.written is not None:
                self.values[state.name] = np.array(values[state.written], copy=True)


def run(graph: Graph, inputs: list[np.ndarray], keep_all: bool = False, state: State | None = None):
    """Outputs (in graph.outputs order) for inputs given in graph.inputs order. With keep_all,
    instead a dict of every tensor the run holds (the inputs and each node's outputs), by name.
    A graph with state runs from `state` and leaves its next value there; without one, from a fresh
    State (the first inference)."""
    if len(inputs) != len(graph.inputs):
        raise QccError(f"{graph.source}: the model takes {len(graph.inputs)} inputs, got {len(inputs)}")
    values: dict[str, np.ndarray] = {}
    for name, value in zip(graph.inputs, inputs):
        tensor = graph.tensor(name)
        value = np.asarray(value)
        if value.dtype != np.dtype(tensor.dtype) or value.size != tensor.size:
            raise QccError(f"input '{graph.public_name(name)}' must be {tensor.dtype} with {tensor.size} "
                           f"elements, got {value.dtype} with {value.size}")
        values[name] = value.reshape(tensor.shape)
    if graph.states:
        state = state if state is not None else State(graph)
        values.update(state.begin())
    for node in graph.nodes:
        args = [values[n] if n in values else graph.tensor(n).data for n in node.inputs]
        for name, value in zip(node.outputs, op_named(node.op).reference(node, graph, args)):
            values[name] = value
    if state is not None:
        state.end(values)
    if keep_all:
        return values
    return [values[name] for name in graph.outputs]


def run_frames(graph: Graph, frames: list[list[np.ndarray]], reset_before: int | None = None) -> list[list[np.ndarray]]:
    """The outputs of consecutive inferences on one state (a streaming model's frames), from the first;
    reset_before: the frame before which the state is reset (NAME_reset()). For a graph without state,
    each frame's outputs alone."""
    state = State(graph) if graph.states else None
    results = []
    for number, inputs in enumerate(frames):
        if state is not None and number == reset_before:
            state.reset()
        results.append(run(graph, inputs, state=state))
    return results
