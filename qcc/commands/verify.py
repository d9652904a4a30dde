"""`qcc verify`: compile to a temporary folder, build with the host compiler (or, with --target,
as a bare-metal image run on the target's QEMU board), and compare the C, the reference
interpreter and the model's runtime (ONNX Runtime for .onnx, the pinned TFLite Micro for .tflite;
commands/ground_truth.py) on seeded random and extreme inputs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from qcc import reference
from qcc.backend.writer import write_target_runner
from qcc.commands.compile import compile_to_folder, golden_cases
from qcc.commands.ground_truth import OnnxRuntimeTruth, ground_truth
from qcc.commands.layer_verify import LayerReport, compare_layers
from qcc.comparison import Agreement
from qcc.pipeline import Options
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make, run_runner, run_target_runner
from qcc.toolchain.targets import require_tools, target_named


@dataclass
class VerifyReport:
    cases: int
    rounding: str = "ort"
    ort_configuration: str = ""  # the ground truth, and how it was configured on this host
    truth: str = "ORT"  # its short name, in the pair names ("C vs ORT", "C vs TFLM")
    exact_scheme: str = "ort"  # the scheme in which the C must equal it (tflm for TFLite Micro)
    per_output: dict[str, dict[str, Agreement]] = field(default_factory=dict)
    layers: LayerReport | None = None  # --layers, or the first input set that mismatched
    target: str = "host"  # where the C ran (--target)
    fpu: bool = False  # --fpu: the C requantized with float32 instructions
    frames: bool = False  # a model with state: the input sets ran as consecutive frames
    reset_before: int | None = None  # and the state was reset before this one (None: never)

    @property
    def ok(self) -> bool:
        """C == reference always; == the ground truth too in its own scheme (`ort` for ONNX Runtime, `tflm` for
        TFLite Micro; other schemes are measured against it)."""
        t = self.truth
        must_match = ("C vs reference",) if self.rounding != self.exact_scheme else (
            "C vs reference", f"C vs {t}", f"reference vs {t}", f"C vs {t}, whole model")
        return all(a.exact == a.compared for pairs in self.per_output.values()
                   for pair, a in pairs.items() if pair in must_match)

    def table(self) -> str:
        lines = [f"ground truth: {self.ort_configuration}"] if self.ort_configuration else []
        if self.target != "host":
            target = target_named(self.target)
            lines.append(f"C run on: {target.name}, a bare-metal image on QEMU's {target.machine}")
        if self.fpu:
            lines.append("C requantizes with float32 instructions (--fpu)")
        lines += [f"{'output':<24} {'pair':<16} {'compared':>10} {'exact':>10} {'max |diff|':>11}"]
        for output, pairs in self.per_output.items():
            for pair, a in pairs.items():
                lines.append(f"{output:<24} {pair:<16} {a.compared:>10} {a.exact:>10} {a.max_lsb:>11g}")
        truth_name = "ONNX Runtime" if self.truth == "ORT" else "TFLite Micro"
        if self.rounding == self.exact_scheme:
            verdict = f"C == reference == {truth_name} on every value" if self.ok else "MISMATCH"
        else:
            ort = [a for pairs in self.per_output.values() for p, a in pairs.items() if p == f"C vs {self.truth}"]
            differ = sum(a.compared - a.exact for a in ort)
            verdict = (f"C == reference ({self.rounding} scheme) on every value; {truth_name} differs in {differ} of "
                       f"{sum(a.compared for a in ort)} values, max {max(a.max_lsb for a in ort):g} LSB"
                       if self.ok else f"MISMATCH between the C and the reference ({self.rounding} scheme)")
        sets = f"{self.cases} input sets"
        if self.frames:
            sets = (f"{self.cases} frames ({self.reset_before} in order, then the same after a reset)"
                    if self.reset_before is not None else f"{self.cases} frames in order")
        lines.append(f"{sets}: {verdict}")
        if self.layers is not None:
            lines += ["", self.layers.table()]
        return "\n".join(lines)


def verify(model: str, options: Options, count: int = 20, inputs_npz: str | None = None, seed: int = 0,
           layers: bool = False) -> VerifyReport:
    """Compare the C, the reference and ORT on every input set. With `layers`, or when some value
    differs, also compare every layer on one input set (the first that differs, else the first;
    on the host build, also for a --target)."""
    require_tools(target_named(options.target))
    with tempfile.TemporaryDirectory(prefix="qcc-verify-") as tmp:
        out_dir = Path(tmp) / "out"
        compiled, manifest = compile_to_folder(model, str(out_dir), options, golden="0")
        graph = compiled.graph
        cases = random_inputs(graph, count, seed) + extreme_inputs(graph)
        if inputs_npz:
            cases += golden_cases(compiled, inputs_npz)
        reset_before = None
        if graph.states:  # consecutive frames, then the same frames after a reset: TFLM's state and the C's
            c_outputs, cases, reset_before = _run_c_frames(model, compiled, Path(tmp) / "frames", options, cases)
        else:
            c_outputs = _run_c(compiled, out_dir, manifest, cases)
        # With --inputs/--outputs ORT runs the cut model; with --outputs alone also the whole model,
        # the cut tensors as extra outputs: what the user's runtime computes for them.
        truth = ground_truth(model, compiled)
        whole = _whole_model_session(model, graph) if compiled.cut_model is not None and not options.cut_inputs else None
        report = VerifyReport(cases=len(cases), rounding=options.rounding, ort_configuration=truth.configuration,
                              truth=truth.short, exact_scheme=truth.exact_scheme, target=options.target, fpu=options.fpu)
        t = truth.short
        pair_names = ("C vs reference", f"C vs {t}", f"reference vs {t}") + ((f"C vs {t}, whole model",) if whole else ())
        for name in graph.outputs:
            report.per_output[graph.public_name(name)] = {p: Agreement() for p in pair_names}
        first_difference = None  # the input set the layer comparison looks at
        report.frames, report.reset_before = bool(graph.states), reset_before
        ref_frames = reference.run_frames(graph, cases, reset_before) if graph.states else None
        truth_frames = truth.frames(graph, cases, reset_before) if graph.states else None
        for index, case in enumerate(cases):
            c_out = c_outputs[index]
            ref_out = ref_frames[index] if graph.states else reference.run(graph, case)
            ort_out = truth_frames[index] if graph.states else truth.run(case)
            if whole is not None:
                for name, c, w in zip(graph.outputs, c_out, whole.run(case)):
                    report.per_output[graph.public_name(name)][f"C vs {t}, whole model"].add(c, w)
            for name, c, r, o in zip(graph.outputs, c_out, ref_out, ort_out):
                pairs = report.per_output[graph.public_name(name)]
                pairs["C vs reference"].add(c, r)
                pairs[f"C vs {t}"].add(c, np.asarray(o).reshape(np.shape(c)))
                pairs[f"reference vs {t}"].add(r, np.asarray(o).reshape(np.shape(r)))
                if first_difference is None and not (np.array_equal(c, r) and np.array_equal(r, o)):
                    first_difference = index
        if (layers or not report.ok) and graph.io_before_state is None:  # --state pairs: the model's runtime
            # takes inputs the C does not, so its layers are not compared
            # Every layer's output is traced from a build that keeps each tensor whole (in place and
            # streamed layers overwrite or never hold some); C == reference there and not above would
            # put a difference on in-place or streamed execution.
            if compiled.plan.steps:
                out_dir = Path(tmp) / "whole"
                compiled, manifest = compile_to_folder(model, str(out_dir), replace(options, whole_tensors=True), golden="0")
                graph = compiled.graph
            make(out_dir, "runner-trace")
            # with state, the first frame: the runner and TFLM both start from the model's initial state
            chosen = 0 if graph.states else first_difference or 0
            report.layers = compare_layers(truth, graph, out_dir, manifest, cases[chosen], chosen)
        return report


def _run_c_frames(model: str, compiled, out_dir: Path, options: Options, frames: list[list[np.ndarray]]):
    """A model with state: the C's outputs on the frames run in order, then again after NAME_reset(), with
    the frames and the frame the reset comes before. On the host, the golden test runs that sequence and
    passes only where every value equals the reference's, so those are the C's outputs; on a Cortex-M
    target, one image runs the frames in order (no reset)."""
    target = target_named(options.target)
    if not target.is_host:
        out_dir.mkdir()
        compiled, manifest = compile_to_folder(model, str(out_dir), options, golden="0")
        return _run_c(compiled, out_dir, manifest, frames), frames, None
    compile_to_folder(model, str(out_dir), options, golden=frames)
    make(out_dir, "check")  # fails, naming the frame and the value, unless C == reference throughout
    sequence = frames + frames
    return reference.run_frames(compiled.graph, sequence, len(frames)), sequence, len(frames)


def _run_c(compiled, out_dir: Path, manifest: dict, cases: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """The C's outputs on every input set: the host runner once per set, or on a Cortex-M target
    one bare-metal image holding every set, run once on QEMU."""
    target = target_named(compiled.options.target)
    if target.is_host:
        make(out_dir, "runner")
        return [run_runner(out_dir, manifest, case) for case in cases]
    runner = write_target_runner(compiled, out_dir, cases, manifest["weights_bytes"])
    image = f"{Path(runner).stem}-{target.name}.elf"
    make(out_dir, image)
    return run_target_runner(out_dir / image, target, manifest, len(cases))


def _whole_model_session(model: str, graph) -> OnnxRuntimeTruth:
    """ORT on the whole model, with the cut model's outputs as its graph outputs (they are tensors
    of the whole model), so that run_on_codes reads them by the same names."""
    whole = onnx.load(model)
    cut_outputs = [graph.public_name(name) for name in graph.outputs]
    infos = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(whole, strict_mode=False).graph.value_info}
    infos.update({o.name: o for o in whole.graph.output})
    del whole.graph.output[:]
    whole.graph.output.extend(infos[name] for name in cut_outputs)
    return OnnxRuntimeTruth(whole, graph)
