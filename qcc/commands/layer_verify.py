"""`qcc verify --layers`: every layer's output on one input set, compared three ways, and the first
layer where they part:

- C = ref: the generated C (built with QCC_TRACE, which hands each layer's output to the runner)
  against the reference interpreter;
- ref = truth: the reference against the model's runtime (ONNX Runtime or TFLite Micro,
  commands/ground_truth.py), for each layer whose output tensor exists in the model it runs (for
  ORT a QuantizeLinear's or a QOperator node's output, or a byte mover's on codes, given to ORT as
  extra graph outputs, whose final outputs must not change by that; for TFLM every tensor);
- alone = truth: the reference running that layer alone on the runtime's own inputs, against it:
  it tells an op that computes differently from one that only inherits a difference from upstream;
- truth = other (when verify found ONNX Runtime disagreeing with itself): the ground truth's value
  against that of ORT's other configuration that the C equals, which names the layer where ORT's
  configurations part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qcc import reference
from qcc.commands.ground_truth import GroundTruth
from qcc.comparison import Agreement
from qcc.ir import Graph
from qcc.ops import op_named
from qcc.toolchain.build import run_runner_trace


@dataclass
class LayerComparison:
    index: int
    node: str
    op: str
    tensor: str
    c: Agreement
    ort: Agreement | None = None  # the reference against the ground truth; None: no counterpart in its model
    alone: Agreement | None = None  # None: some input of the layer has no counterpart in the ground truth
    other: Agreement | None = None  # the ground truth against ORT's other configuration (LayerReport.other)


@dataclass
class LayerReport:
    case: int
    layers: list[LayerComparison] = field(default_factory=list)
    ort_outputs_changed: bool = False  # exposing some intermediates changes the ground truth's final outputs
    truth: str = "ORT"  # the ground truth's short name
    truth_name: str = "ONNX Runtime"
    other: str = ""  # ORT's other configuration compared too (verify found ORT disagreeing with itself), or ""

    def first_divergence(self) -> str:
        for row in self.layers:
            where = f"layer {row.index} '{row.node}' ({row.op})"
            if not row.c.all_exact:
                return (f"first divergence: {where}: the C differs from the reference in "
                        f"{row.c.compared - row.c.exact} of {row.c.compared} values (max {row.c.max_lsb:g})")
            if row.ort is not None and not row.ort.all_exact:
                why = (f"and also when it runs alone on {self.truth}'s inputs: this layer computes differently"
                       if row.alone is not None and not row.alone.all_exact else
                       f"but not when it runs alone on {self.truth}'s inputs: it inherits the difference from upstream"
                       if row.alone is not None else f"(its inputs have no counterpart in {self.truth})")
                text = (f"first divergence: {where}: the reference differs from {self.truth_name} in "
                        f"{row.ort.compared - row.ort.exact} of {row.ort.compared} values (max {row.ort.max_lsb:g} LSB), {why}")
                if row.other is not None:
                    text += ("; there ORT's configurations disagree: the ground truth configuration differs from "
                             f"{self.other} in {row.other.compared - row.other.exact} of {row.other.compared} values "
                             f"(max {row.other.max_lsb:g} LSB)" if not row.other.all_exact else
                             f"; {self.other} gives the ground truth's values here too")
                return text
            if row.other is not None and not row.other.all_exact:
                return (f"first divergence: {where}: ORT's configurations disagree: the ground truth configuration "
                        f"differs from {self.other} in {row.other.compared - row.other.exact} of {row.other.compared} "
                        f"values (max {row.other.max_lsb:g} LSB), the reference equals the ground truth here")
        if self.ort_outputs_changed:
            return (f"no layer diverges where {self.truth_name}'s tensors could be read, but reading some changes its "
                    f"final outputs (it fuses the graph differently then): the layers without a {self.truth} value (-) "
                    f"are not compared")
        return (f"no divergence: every layer equal in the C, the reference and (where it has the tensor) "
                f"{self.truth_name}" + (f" and {self.other}" if self.other else ""))

    def table(self) -> str:
        header = ["layer", "node", "op", "output", "C = ref", f"ref = {self.truth}", f"alone = {self.truth}"]
        rows = [[str(r.index), r.node, r.op, r.tensor, r.c.text(), r.ort.text() if r.ort else "-",
                 r.alone.text() if r.alone else "-"] for r in self.layers]
        if self.other:
            header.append(f"{self.truth} = {self.other}")
            for row, r in zip(rows, self.layers):
                row.append(r.other.text() if r.other else "-")
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = [f"layers, input set {self.case}:"]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header] + rows]
        if self.ort_outputs_changed:
            lines.append(f"warning: with the intermediate tensors as extra outputs {self.truth_name}'s final outputs "
                         f"change (it fuses the graph differently when it must keep them); each was read alone, "
                         f"and those whose reading still changes them have no {self.truth} value (-)")
        lines.append(self.first_divergence())
        return "\n".join(lines)


def _as_tensor(graph: Graph, name: str, value: np.ndarray) -> np.ndarray | None:
    tensor = graph.tensor(name)
    if value.size != tensor.size or value.dtype != np.dtype(tensor.dtype):
        return None
    return value.reshape(tensor.shape)


def compare_layers(truth: GroundTruth, graph: Graph, out_dir, manifest: dict, case: list[np.ndarray],
                   case_index: int, other: GroundTruth | None = None) -> LayerReport:
    """Every layer on one input set; with `other` (ORT in another configuration, which verify found the C to equal
    where the ground truth differs), also the ground truth's tensors against that configuration's."""
    ref = reference.run(graph, case, keep_all=True)
    traced = run_runner_trace(out_dir, manifest, case)
    ort_values, changed = truth.intermediates(graph, case)
    ort_values = {n: v for n, v in ((n, _as_tensor(graph, n, v)) for n, v in ort_values.items()) if v is not None}
    other_values = {}
    if other is not None:
        other_values, _ = other.intermediates(graph, case)
        other_values = {n: v for n, v in ((n, _as_tensor(graph, n, v)) for n, v in other_values.items())
                        if v is not None}
    # a state's tensor in the runtime holds its value after the inference (TFLM's variable tensors are updated in
    # place): a layer alone reads the value the inference started with, the same in both (the reference's)
    started = {state.name: ref[state.name] for state in graph.states}
    ort_values = {n: v for n, v in ort_values.items() if n not in started}
    report = LayerReport(case_index, ort_outputs_changed=changed, truth=truth.short, truth_name=truth.name,
                         other=other.short if other is not None else "")
    for i, node in enumerate(graph.nodes):
        data = [n for n in node.inputs if not graph.tensor(n).is_const]
        known = {**dict(zip(graph.inputs, case)), **ort_values, **started}
        alone = None
        if all(n in known for n in data):
            args = [known[n] if n in known else graph.tensor(n).data for n in node.inputs]
            alone = op_named(node.op).reference(node, graph, args)
        for k, name in enumerate(node.outputs):
            tensor = graph.tensor(name)
            if not traced[(i, k)] and tensor.size:  # streamed: the C never holds it whole, a few rows at a time
                continue
            c_value = op_named(node.op).stored_value(node, graph, k, traced[(i, k)])
            row = LayerComparison(i, node.name, node.attrs.get("onnx_op", node.op), graph.public_name(name), Agreement())
            row.c.add(c_value, ref[name])
            if name in ort_values:
                row.ort = Agreement()
                row.ort.add(ref[name], ort_values[name])
                if alone is not None:
                    row.alone = Agreement()
                    row.alone.add(np.asarray(alone[k]).reshape(tensor.shape), ort_values[name])
                if name in other_values:
                    row.other = Agreement()
                    row.other.add(ort_values[name], other_values[name])
            report.layers.append(row)
    return report
