"""`qcc verify`: compile to a temporary folder, build with the host compiler (or, with --target,
as a bare-metal image run on the target's QEMU board), and compare the C, the reference
interpreter and the model's runtime (ONNX Runtime for .onnx, the pinned TFLite Micro for .tflite;
commands/ground_truth.py) on seeded random and extreme inputs."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from qcc import reference
from qcc.backend.writer import write_target_runner
from qcc.commands.compile import compile_to_folder, golden_cases
from qcc.commands.ground_truth import GroundTruth, OnnxRuntimeTruth, ground_truth
from qcc.commands.layer_verify import LayerReport, compare_layers
from qcc.comparison import Agreement
from qcc.pipeline import Options
from qcc.runtimes import ort as ort_reference
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make, run_runner, run_target_runner
from qcc.toolchain.targets import require_tools, target_named


@dataclass
class OrtDisagreement:
    """The C equals the reference on every value but not ONNX Runtime's ground truth configuration, and ORT's
    other configurations (runtimes/ort.py ALTERNATIVES) were run on the same input sets: where they differ
    from the ground truth, which of them the C equals, and the folder that reproduces it with ORT alone."""
    truth: str  # the ground truth configuration, in a few words
    configurations: dict[str, str] = field(default_factory=dict)  # alternative -> what it is
    truth_vs: dict[str, dict[str, Agreement]] = field(default_factory=dict)  # output -> alternative -> truth against it
    c_vs: dict[str, dict[str, Agreement]] = field(default_factory=dict)  # output -> alternative -> the C against it
    mismatched: list[str] = field(default_factory=list)  # the outputs where the C differs from the ground truth
    reproducer: str | None = None  # the folder: model.onnx, inputs.npz, configurations.json, reproduce.py
    case: int | None = None  # the input set in the reproducer (None: a model with state, no input set)

    def c_equals(self, output: str) -> list[str]:
        """The alternatives the C equals on every value of the output, where the ground truth differs from them."""
        return [name for name, a in self.c_vs.get(output, {}).items()
                if a.all_exact and not self.truth_vs[output][name].all_exact]

    @property
    def confirmed(self) -> bool:
        """ORT disagrees with itself wherever the C differs from the ground truth: on each such output some other
        configuration of ORT differs from the ground truth and equals the C on every value."""
        return bool(self.mismatched) and all(self.c_equals(output) for output in self.mismatched)

    def lines(self) -> list[str]:
        lines = []
        for output in self.mismatched:
            truth_vs = self.truth_vs[output]
            parts = [f"from {name} in {a.compared - a.exact} of {a.compared} values (max {a.max_lsb:g} LSB)"
                     for name, a in truth_vs.items() if not a.all_exact]
            same = [name for name, a in truth_vs.items() if a.all_exact]
            equals = self.c_equals(output)
            head = (f"ONNX Runtime disagrees with itself on output '{output}'" if equals else
                    f"ONNX Runtime's configurations on output '{output}'")
            text = f"{head}: the ground truth configuration ({self.truth}) "
            text += ("differs " + ", ".join(parts) if parts else "equals every other configuration")
            if parts and same:
                text += f", and equals {' and '.join(same)}"
            text += (f"; the C equals {' and '.join(equals)} on every value" if equals else
                     "; the C equals none of them: a C mismatch, not ORT's")
            lines.append(text)
        if self.configurations:
            lines.append("ORT's configurations: " + "; ".join(f"{k}: {v}" for k, v in self.configurations.items()))
        if self.reproducer:
            what = (f"inputs.npz (input set {self.case})" if self.case is not None else
                    "no input set (a model with state)")
            lines.append(f"reproducer: {self.reproducer} (model.onnx, {what}, configurations.json; "
                         f"python3 {Path(self.reproducer) / 'reproduce.py'} runs ORT in each configuration and "
                         f"exits 1 where they differ)")
        return lines


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
    ort_disagreement: OrtDisagreement | None = None  # C == reference, not == ORT: ORT's other configurations

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
        disagreement = self.ort_disagreement
        if disagreement is not None and disagreement.confirmed and not self.ok:
            equal = sorted({name for output in disagreement.mismatched for name in disagreement.c_equals(output)})
            verdict = (f"ONNX RUNTIME DISAGREES WITH ITSELF, not a C mismatch: C == reference on every value, and "
                       f"== {' and '.join(equal)} where it differs from ONNX Runtime's ground truth configuration")
        elif self.rounding == self.exact_scheme:
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
        if disagreement is not None:
            lines += disagreement.lines()
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
        # (not when the cut reads none of the model's inputs, its outputs all constants: the whole model would
        # want inputs the C does not take)
        whole = (_whole_model_session(model, graph) if compiled.cut_model is not None and not options.cut_inputs
                 and graph.inputs else None)
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
        # C == reference everywhere but not == ORT: run ORT's other configurations on the same input sets
        c_equals_reference = all(pairs["C vs reference"].all_exact for pairs in report.per_output.values())
        other = None  # the configuration of ORT the C equals, for the layer comparison
        if not report.ok and c_equals_reference and report.rounding == report.exact_scheme:
            report.ort_disagreement, other = _ort_disagreement(model, truth, graph, cases, c_outputs, reset_before,
                                                               report)
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
            if other is not None and not graph.states and report.ort_disagreement.case is not None:
                chosen = report.ort_disagreement.case  # the input set of the reproducer
            report.layers = compare_layers(truth, graph, out_dir, manifest, cases[chosen], chosen, other=other)
        return report


def _ort_disagreement(model: str, truth: GroundTruth, graph, cases, c_outputs, reset_before, report: VerifyReport):
    """ORT's other configurations on the input sets where the C (== the reference) differs from the ground truth's:
    the OrtDisagreement (None for a runtime with one configuration), and the configuration the C equals on every
    value (None if none). Their 'C vs' rows join the report's table; where ORT disagrees with itself, a folder next
    to the model reproduces it with ORT alone."""
    t = truth.short
    mismatched = [output for output, pairs in report.per_output.items() if not pairs[f"C vs {t}"].all_exact]
    alternatives = truth.alternatives() if mismatched else []
    if not alternatives:
        return None, None
    found = OrtDisagreement(truth=truth.session.settings_text(), mismatched=mismatched)
    truth_outputs = truth.frames(graph, cases, reset_before) if graph.states else [truth.run(case) for case in cases]
    names = [graph.public_name(name) for name in graph.outputs]
    alternative_outputs = {}
    for alternative in alternatives:
        found.configurations[alternative.short] = alternative.session.alternative.description
        outputs = (alternative.frames(graph, cases, reset_before) if graph.states else
                   [alternative.run(case) for case in cases])
        alternative_outputs[alternative.short] = outputs
        for index, case_outputs in enumerate(outputs):
            for name, c, o, a in zip(names, c_outputs[index], truth_outputs[index], case_outputs):
                a = np.asarray(a).reshape(np.shape(c))
                found.truth_vs.setdefault(name, {}).setdefault(alternative.short, Agreement()).add(
                    np.asarray(o).reshape(np.shape(c)), a)
                found.c_vs.setdefault(name, {}).setdefault(alternative.short, Agreement()).add(c, a)
                report.per_output[name].setdefault(f"C vs {alternative.short}", Agreement()).add(c, a)
    if not found.confirmed:
        return found, None
    equal = found.c_equals(found.mismatched[0])
    other = next(a for a in alternatives if a.short == equal[0])
    if not graph.states:  # the first input set where the ground truth and that configuration part
        found.case = next(i for i, outputs in enumerate(alternative_outputs[other.short])
                          if any(not np.array_equal(np.asarray(o).reshape(np.shape(a)), a)
                                 for o, a in zip(truth_outputs[i], outputs)))
    found.reproducer = str(_write_reproducer(model, truth, alternatives, found, cases, c_outputs, alternative_outputs,
                                             truth_outputs, names))
    return found, other


def _reproducer_folder(model: str) -> Path:
    """MODEL's folder/STEM.ort-disagreement, or a new temporary folder where that cannot be written."""
    path = Path(model)
    folder = path.parent / f"{path.stem}.ort-disagreement"
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / ".qcc-write-probe"
        probe.write_text("")
        probe.unlink()
        return folder
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"qcc-{path.stem}-ort-disagreement-"))


def _write_reproducer(model: str, truth, alternatives, found: OrtDisagreement, cases, c_outputs, alternative_outputs,
                      truth_outputs, names) -> Path:
    """The folder that shows ORT disagreeing with itself without qcc: the model ORT ran (model.onnx; the cut
    model for --inputs/--outputs), the input set (inputs.npz, ORT's feeds by input name), each configuration's
    session settings (configurations.json), what each gave and the C's outputs on it (outputs.npz), and
    reproduce.py, which needs only numpy and onnxruntime."""
    folder = _reproducer_folder(model)
    source = truth.model
    if isinstance(source, onnx.ModelProto):
        onnx.save(source, str(folder / "model.onnx"))
    elif isinstance(source, (bytes, bytearray)):
        (folder / "model.onnx").write_bytes(bytes(source))
    else:
        shutil.copyfile(source, folder / "model.onnx")
    configurations = {"ground truth": {"description": truth.configuration, **truth.session.settings()}}
    for alternative in alternatives:
        configurations[alternative.short] = {"description": alternative.configuration, **alternative.session.settings()}
    (folder / "configurations.json").write_text(json.dumps(configurations, indent=2) + "\n")
    for stale in ("inputs.npz", "outputs.npz"):
        (folder / stale).unlink(missing_ok=True)
    if found.case is not None:
        np.savez(folder / "inputs.npz", **ort_reference.feeds_for(truth.graph, cases[found.case]))
        produced = {f"C/{n}": c for n, c in zip(names, c_outputs[found.case])}
        produced.update({f"ground truth/{n}": np.asarray(o) for n, o in zip(names, truth_outputs[found.case])})
        for configuration, outputs in alternative_outputs.items():
            produced.update({f"{configuration}/{n}": np.asarray(o) for n, o in zip(names, outputs[found.case])})
        np.savez(folder / "outputs.npz", **produced)
    (folder / "reproduce.py").write_text(_REPRODUCE.replace("VERSION", ort_reference._onnxruntime().__version__))
    return folder


_REPRODUCE = '''"""Written by qcc verify: ONNX Runtime gives different outputs for model.onnx on inputs.npz depending on
how its session is configured (configurations.json: the ground truth configuration qcc is exact to, and
ORT's others). Needs numpy and onnxruntime (qcc checked ORT VERSION). Prints, for each configuration,
how many output values differ from the ground truth configuration's; exits 1 where some do, 0 where
ORT agrees with itself here."""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

here = Path(__file__).resolve().parent
configurations = json.loads((here / "configurations.json").read_text())
feeds = dict(np.load(here / "inputs.npz"))


def session(settings):
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings["intra_op_num_threads"]
    options.inter_op_num_threads = settings["inter_op_num_threads"]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings["graph_optimization_level"])
    for key, value in settings["session_config_entries"].items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(here / "model.onnx"), options, providers=settings["providers"])


print(f"onnxruntime {ort.__version__} (qcc checked VERSION)")
results = {}
for name, settings in configurations.items():
    built = session(settings)
    results[name] = dict(zip([o.name for o in built.get_outputs()], built.run(None, feeds)))
truth = results["ground truth"]
differ = False
for name, outputs in results.items():
    if name == "ground truth":
        continue
    for output, value in outputs.items():
        count = int(np.sum(value != truth[output]))
        differ |= count > 0
        print(f"{output}: ground truth vs {name}: {count} of {value.size} values differ")
sys.exit(1 if differ else 0)
'''


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
    runner = write_target_runner(compiled, out_dir, cases, manifest)
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
