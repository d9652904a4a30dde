"""The runtime whose numbers a model must reproduce, as `qcc verify` and `--layers` use it: ONNX
Runtime for an .onnx model, the pinned TensorFlow Lite Micro for a .tflite model. Both give the
model's outputs as codes on an input set, and the values of the compiled graph's tensors that exist
in the model, so that every layer can be compared."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from qcc import reference
from qcc.errors import QccError
from qcc.ir import Graph
from qcc.pipeline import Compiled
from qcc.runtimes import ort as ort_reference
from qcc.runtimes import tflm

_CODE_TYPES = {"uint8": onnx.TensorProto.UINT8, "int8": onnx.TensorProto.INT8}


class GroundTruth:
    name = ""  # "ONNX Runtime", "TFLite Micro"
    short = ""  # how tables name it: "ORT", "TFLM"
    exact_scheme = ""  # the rounding scheme whose C must equal it on every value
    configuration = ""  # one line: what it is and how it was set up

    def run(self, case: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs on one input set, as the compiled graph's output codes."""
        raise NotImplementedError

    def intermediates(self, graph: Graph, case: list[np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
        """Its values of the compiled graph's tensors that exist in the model (shaped as in qcc), and
        whether reading them changed its final outputs."""
        raise NotImplementedError

    def alternatives(self) -> list[GroundTruth]:
        """The same runtime in its other configurations (ONNX Runtime's defaults, no layout optimizations, no
        optimizations), for verify to tell a C mismatch from the runtime disagreeing with itself; those it can
        build. None for TFLite Micro, which has one configuration."""
        return []

    def run_frames(self, frames: list[list[np.ndarray]], reset_before: int | None) -> list[list[np.ndarray]]:
        """Consecutive inferences of a model that keeps state itself (TFLite resource variables)."""
        raise NotImplementedError

    def frames(self, graph: Graph, frames: list[list[np.ndarray]], reset_before: int | None = None):
        """The outputs of a model with state (graph.states) on consecutive frames, the state reset before
        frame `reset_before`: the runtime keeps it itself, or, for --state pairs, gets each pair's input from
        the output the frame before gave, as an application would feed it back (the stored codes: the
        output's, or ONNX Runtime's requantization of it, AssignState's table)."""
        if graph.io_before_state is None:
            return self.run_frames(frames, reset_before)
        inputs, outputs = graph.io_before_state
        state = reference.State(graph)
        assigns = {s.name: graph.producer(s.written) for s in graph.states}
        results = []
        for number, frame in enumerate(frames):
            if number == reset_before:
                state.reset()
            given = {**dict(zip(graph.inputs, frame)), **state.values}
            produced = dict(zip(outputs, self.run([given[name] for name in inputs])))
            for name, assign in assigns.items():
                value = np.asarray(produced[assign.inputs[0]])
                table = assign.attrs.get("table")
                state.values[name] = (table[value.view(np.uint8)].view(value.dtype) if table is not None
                                      else np.array(value, copy=True)).reshape(graph.tensor(name).shape)
            results.append([produced[name] for name in graph.outputs])
        return results


class OnnxRuntimeTruth(GroundTruth):
    name, short, exact_scheme = "ONNX Runtime", "ORT", "ort"

    def __init__(self, model, graph: Graph, session: ort_reference.Session | None = None):
        """The ground truth's session for the model, or the given one (an alternative configuration's)."""
        self.model, self.graph = model, graph
        self.session = ort_reference.session(model) if session is None else session
        self.configuration = self.session.configuration()
        if self.session.alternative is not None:
            self.short = self.session.alternative.name
            self.name = f"ONNX Runtime ({self.session.alternative.name})"

    def run(self, case):
        return ort_reference.run_on_codes(self.session, self.graph, case)

    def alternatives(self):
        found = []
        for alternative in ort_reference.ALTERNATIVES:
            try:
                session = ort_reference.alternative_session(self.model, alternative, self.session)
            except QccError:  # ORT cannot build the model so: that configuration says nothing
                continue
            found.append(OnnxRuntimeTruth(self.model, self.graph, session))
        return found

    def intermediates(self, graph, case):
        """Every wanted tensor as an extra output of one session. Where that changes the final outputs (ORT fuses
        the graph differently when a tensor inside a fused group must be kept), each tensor is read alone, and
        those whose reading still changes them are left out; `changed` then says that some were left out."""
        model = copy.deepcopy(self.model) if isinstance(self.model, onnx.ModelProto) else onnx.load(str(self.model))
        produced = {name for node in model.graph.node for name in node.output}
        outputs = {o.name for o in model.graph.output}
        # A compiled tensor named like a node output of the model is that output (a QuantizeLinear's, a
        # QOperator node's or a byte mover's on codes): the same 8-bit codes, typed and shaped as in qcc.
        wanted = [name for node in graph.nodes for name in node.outputs
                  if name in produced and name not in outputs and graph.tensor(name).dtype in _CODE_TYPES]
        feeds = ort_reference.feeds_for(graph, case)
        before = self.session.run(None, feeds)
        results = self._run_exposing(model, graph, wanted, feeds)
        changed = self._changed(before, results)
        values = {name: results[name] for name in wanted}
        if changed:  # read each tensor alone; keep those that leave the final outputs as they are
            values = {}
            for name in wanted:
                alone = self._run_exposing(model, graph, [name], feeds)
                if not self._changed(before, alone):
                    values[name] = alone[name]
            changed = len(values) < len(wanted)
            results = dict(zip([o.name for o in self.session.get_outputs()], before))
        publics = [graph.public_name(name) for name in graph.outputs]  # the graph's own outputs, as codes
        values.update(zip(graph.outputs, ort_reference.outputs_as_codes(graph, publics, [results[p] for p in publics])))
        return values, changed

    def _run_exposing(self, model: onnx.ModelProto, graph: Graph, names: list[str], feeds) -> dict[str, np.ndarray]:
        """The model with the named tensors as extra outputs, run in this session's configuration."""
        exposed = copy.deepcopy(model)
        exposed.graph.output.extend(helper.make_tensor_value_info(name, _CODE_TYPES[graph.tensor(name).dtype],
                                                                  list(graph.tensor(name).shape)) for name in names)
        extended = self.session.same_configuration(exposed.SerializeToString())
        return dict(zip([o.name for o in extended.get_outputs()], extended.run(None, feeds)))

    def _changed(self, before: list[np.ndarray], results: dict[str, np.ndarray]) -> bool:
        return any(not np.array_equal(a, results[o.name]) for a, o in zip(before, self.session.get_outputs()))


class TflmTruth(GroundTruth):
    name, short, exact_scheme = "TFLite Micro", "TFLM", "tflm"

    def __init__(self, path: Path):
        tflm.check_version()
        self.model = Path(path).read_bytes()
        self.configuration = f"TensorFlow Lite Micro {tflm.TFLM_VERSION} (the tflite-micro wheel's reference kernels)"

    def run(self, case):
        return tflm.run(self.model, case)

    def run_frames(self, frames, reset_before=None):
        """A streaming model's consecutive inferences, its state carried between them (reset before one)."""
        return tflm.run_frames(self.model, frames, reset_before)

    def intermediates(self, graph, case):
        wanted = {name: key for name, key in graph.tflite_tensors.items() if name not in graph.inputs}
        values = tflm.run_with_intermediates(self.model, case, sorted({index for index, _ in wanted.values()}))
        result = {}
        for name, (index, layout) in wanted.items():
            value = np.asarray(values[index])
            result[name] = value.transpose(0, 3, 1, 2) if layout == "nchw" and value.ndim == 4 else value
        return result, False  # TFLM keeps every tensor in its own bytes here: its outputs cannot change


def ground_truth(model, compiled: Compiled) -> GroundTruth:
    """The runtime the compiled model is checked against (the cut model's ORT for --inputs/--outputs). With
    --state pairs it takes and gives the model's own inputs and outputs, the pairs included."""
    if compiled.graph.frontend == "tflite":
        return TflmTruth(model)
    graph = compiled.graph
    if graph.io_before_state is not None:
        graph = replace(graph, inputs=graph.io_before_state[0], outputs=graph.io_before_state[1])
    return OnnxRuntimeTruth(compiled.cut_model if compiled.cut_model is not None else model, graph)
