"""`qcc verify --layers`: every layer's output on one input set, compared three ways, and the first
layer where they part:

- C = ref: the generated C (built with QCC_TRACE, which hands each layer's output to the runner)
  against the reference interpreter;
- ref = ORT: the reference against ONNX Runtime, for each layer whose output tensor exists in the
  model ORT runs (a QuantizeLinear's or a QOperator node's output, or a byte mover's on codes).
  ORT is given those tensors as extra graph outputs; its final outputs must not change by that;
- alone = ORT: the reference running that layer alone on ORT's own inputs, against ORT: it tells
  an op that computes differently from one that only inherits a difference from upstream.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from qcc import reference
from qcc.comparison import Agreement
from qcc.ir import Graph
from qcc.ops import op_named
from qcc.runtimes import ort as ort_reference
from qcc.toolchain.build import run_runner_trace

_CODE_TYPES = {"uint8": onnx.TensorProto.UINT8, "int8": onnx.TensorProto.INT8}


@dataclass
class LayerComparison:
    index: int
    node: str
    op: str
    tensor: str
    c: Agreement
    ort: Agreement | None = None  # None: the tensor has no counterpart in the model ORT runs
    alone: Agreement | None = None  # None: some input of the layer has no counterpart in ORT


@dataclass
class LayerReport:
    case: int
    layers: list[LayerComparison] = field(default_factory=list)
    ort_outputs_changed: bool = False  # exposing intermediates changed ORT's final outputs

    def first_divergence(self) -> str:
        for row in self.layers:
            where = f"layer {row.index} '{row.node}' ({row.op})"
            if not row.c.all_exact:
                return (f"first divergence: {where}: the C differs from the reference in "
                        f"{row.c.compared - row.c.exact} of {row.c.compared} values (max {row.c.max_lsb:g})")
            if row.ort is not None and not row.ort.all_exact:
                why = ("and also when it runs alone on ORT's inputs: this layer computes differently"
                       if row.alone is not None and not row.alone.all_exact else
                       "but not when it runs alone on ORT's inputs: it inherits the difference from upstream"
                       if row.alone is not None else "(its inputs have no counterpart in ORT)")
                return (f"first divergence: {where}: the reference differs from ONNX Runtime in "
                        f"{row.ort.compared - row.ort.exact} of {row.ort.compared} values (max {row.ort.max_lsb:g} LSB), {why}")
        return "no divergence: every layer equal in the C, the reference and (where it has the tensor) ONNX Runtime"

    def table(self) -> str:
        header = ["layer", "node", "op", "output", "C = ref", "ref = ORT", "alone = ORT"]
        rows = [[str(r.index), r.node, r.op, r.tensor, r.c.text(), r.ort.text() if r.ort else "-",
                 r.alone.text() if r.alone else "-"] for r in self.layers]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = [f"layers, input set {self.case}:"]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header] + rows]
        if self.ort_outputs_changed:
            lines.append("warning: with the intermediate tensors as extra outputs ONNX Runtime's final outputs changed; "
                         "the ORT columns may not show what it computes without them")
        lines.append(self.first_divergence())
        return "\n".join(lines)


def _ort_intermediates(model_path, graph: Graph, case: list[np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """ORT's values of the compiled graph's tensors that exist as 8-bit tensors in the model, and
    whether asking for them changed ORT's final outputs."""
    model = copy.deepcopy(model_path) if isinstance(model_path, onnx.ModelProto) else onnx.load(str(model_path))
    produced = {name for node in model.graph.node for name in node.output}
    outputs = {o.name for o in model.graph.output}
    # A compiled tensor named like a node output of the model is that output (a QuantizeLinear's, a
    # QOperator node's or a byte mover's on codes): the same 8-bit codes, typed and shaped as in qcc.
    wanted = [name for node in graph.nodes for name in node.outputs
              if name in produced and name not in outputs and graph.tensor(name).dtype in _CODE_TYPES]
    feeds = ort_reference.feeds_for(graph, case)
    plain = ort_reference.session(model_path)
    before = plain.run(None, feeds)
    model.graph.output.extend(helper.make_tensor_value_info(name, _CODE_TYPES[graph.tensor(name).dtype],
                                                            list(graph.tensor(name).shape)) for name in wanted)
    extended = ort_reference.session(model.SerializeToString())
    names = [o.name for o in extended.get_outputs()]
    results = dict(zip(names, extended.run(None, feeds)))
    changed = any(not np.array_equal(a, results[o.name]) for a, o in zip(before, plain.get_outputs()))
    values = {name: results[name] for name in wanted}
    publics = [graph.public_name(name) for name in graph.outputs]  # the graph's own outputs, as codes
    values.update(zip(graph.outputs, ort_reference.outputs_as_codes(graph, publics, [results[p] for p in publics])))
    return values, changed


def _as_tensor(graph: Graph, name: str, value: np.ndarray) -> np.ndarray | None:
    tensor = graph.tensor(name)
    if value.size != tensor.size or value.dtype != np.dtype(tensor.dtype):
        return None
    return value.reshape(tensor.shape)


def compare_layers(model_path, graph: Graph, out_dir, manifest: dict, case: list[np.ndarray], case_index: int) -> LayerReport:
    ref = reference.run(graph, case, keep_all=True)
    traced = run_runner_trace(out_dir, manifest, case)
    ort_values, changed = _ort_intermediates(model_path, graph, case)
    ort_values = {n: v for n, v in ((n, _as_tensor(graph, n, v)) for n, v in ort_values.items()) if v is not None}
    report = LayerReport(case_index, ort_outputs_changed=changed)
    for i, node in enumerate(graph.nodes):
        data = [n for n in node.inputs if not graph.tensor(n).is_const]
        known = {**dict(zip(graph.inputs, case)), **ort_values}
        alone = None
        if all(n in known for n in data):
            args = [known[n] if n in known else graph.tensor(n).data for n in node.inputs]
            alone = op_named(node.op).reference(node, graph, args)
        for k, name in enumerate(node.outputs):
            tensor = graph.tensor(name)
            if not traced[(i, k)] and tensor.size:  # streamed: the C never holds it whole, a few rows at a time
                continue
            c_value = np.frombuffer(traced[(i, k)], dtype=np.dtype(tensor.dtype).newbyteorder("=")).reshape(tensor.shape)
            row = LayerComparison(i, node.name, node.attrs.get("onnx_op", node.op), graph.public_name(name), Agreement())
            row.c.add(c_value, ref[name])
            if name in ort_values:
                row.ort = Agreement()
                row.ort.add(ref[name], ort_values[name])
                if alone is not None:
                    row.alone = Agreement()
                    row.alone.add(np.asarray(alone[k]).reshape(tensor.shape), ort_values[name])
            report.layers.append(row)
    return report
