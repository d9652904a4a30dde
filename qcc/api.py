"""qcc's Python API: `import qcc` and call qcc.compile, qcc.verify, qcc.inspect, qcc.explain, qcc.bench.

Each function takes the model's path and the command line's options as keyword arguments (the
flags' names with underscores: --input-shape is input_shape, --weights-section weights_section),
and returns data: compile the manifest (model.json), verify the comparison, inspect what qcc makes
of the model, explain the arithmetic's facts (docs/explain_json.md), bench the bench document
(docs/bench_json.md). Nothing is printed. Every error raises QccError carrying the one line the
command line prints after "qcc: error: "; the warnings it prints come as QccWarning. The command
line (qcc/cli.py) is a layer of argument parsing and printing over these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from inspect import signature as inspect_signature
from pathlib import Path

from qcc.errors import QccError, one_line
from qcc.pipeline import Options, check_options, model_rounding, name_refusal
from qcc.toolchain.targets import target_named

__all__ = ["compile", "verify", "inspect", "explain", "bench", "render_explain", "render_bench", "QccError", "QccWarning"]


class QccWarning(UserWarning):
    """Something the compiled C computes exactly but the user should know (the command line prints
    it as "qcc: warning: ...")."""


def compile(model: str | os.PathLike, output: str | os.PathLike, *, name: str = "model", golden=None,
            report: bool = False, **options) -> dict:
    """Write the C folder for `model` at `output` (whole or not at all) and return its manifest,
    model.json's content. golden: a count of seeded random input sets, the path of an .npz, or a
    list of input sets (each a list of arrays in the model's input order); None: the default.
    report=True adds "memory_report", the table `qcc compile --report` prints. The other keyword
    arguments are the options listed in `options_from`."""
    from qcc.backend.memory_report import memory_report, render_text
    from qcc.commands.compile import compile_to_folder

    with _one_error(model, output):
        settings = options_from(model, name=name, **options)
        if isinstance(golden, int) and not isinstance(golden, bool) and golden >= 0:
            golden = str(golden)
        elif isinstance(golden, os.PathLike):
            golden = os.fspath(golden)
        elif golden is not None and not isinstance(golden, (str, list)):
            raise QccError(f"golden={golden!r}: give a count, an .npz file or a list of input sets")
        compiled, manifest = compile_to_folder(os.fspath(model), os.fspath(output), settings, golden)
        for message in compiled.warnings:
            warnings.warn(one_line(message), QccWarning, stacklevel=3)
        if report:
            manifest = {**manifest, "memory_report": render_text(memory_report(compiled))}
        return manifest


def verify(model: str | os.PathLike, *, n: int = 20, input_sets: str | os.PathLike | None = None, layers: bool = False,
           **options) -> dict:
    """Compare the C (built with the host compiler, or run on a Cortex-M board under QEMU with
    target=...), the reference interpreter and the model's runtime on n seeded random input sets,
    3 extreme ones and those of the .npz `input_sets` (verify's --inputs; `inputs` cuts the model, as
    --cut-inputs does). Returns {"ok", "table" (what the command line
    prints), "cases", "ground_truth", "outputs": {output: {pair: {compared, exact, max_lsb}}},
    "layers" (the per-layer comparison, or None), "ort_disagreement" (None, or where ONNX Runtime's
    configurations disagree with each other while the C equals the reference, with the reproducer's
    folder)}; "ok" is false on any mismatch."""
    from qcc.commands.verify import verify as run_verify

    with _one_error(model):
        if not isinstance(n, int) or n < 0:
            raise QccError(f"-n {n!r}: give a count of input sets, 0 or more")
        result = run_verify(os.fspath(model), options_from(model, **options), count=n,
                            inputs_npz=None if input_sets is None else os.fspath(input_sets), layers=layers)
        return {"ok": result.ok, "table": result.table(), "cases": result.cases,
                "ground_truth": result.ort_configuration, "rounding": result.rounding, "target": result.target,
                "outputs": {output: {pair: dataclasses.asdict(a) for pair, a in pairs.items()}
                            for output, pairs in result.per_output.items()},
                "layers": None if result.layers is None else dataclasses.asdict(result.layers),
                # ONNX Runtime's configurations disagreeing with each other where the C equals the reference
                "ort_disagreement": None if result.ort_disagreement is None else dataclasses.asdict(result.ort_disagreement)}


def inspect(model: str | os.PathLike, **options) -> dict:
    """What qcc makes of each node or operator: support, shapes, quantization, MACs, weight bytes,
    the accumulator's range, the memory plan; for a .tflite, TFLM's own arena beside qcc's where
    the test extra (tflite-micro) is installed. "text" is what the command line prints."""
    from qcc.commands.inspection import inspect as run_inspect

    with _one_error(model):
        return run_inspect(os.fspath(model), options_from(model, **options), tflm_arena=_tflm_arena())


def explain(model: str | os.PathLike, *, node: str | None = None, channel: int | None = None,
            position: int | None = None, input: str | os.PathLike | None = None, **options) -> dict:
    """Each layer's integer arithmetic with its numbers, one value traced through it
    (docs/explain_json.md); render_explain(facts, "text"|"markdown"|"json") prints it as the command line does."""
    from qcc.commands.explain import explain as run_explain

    with _one_error(model):
        return run_explain(os.fspath(model), options_from(model, **options), node=node, channel=channel,
                           input_npz=None if input is None else os.fspath(input), position=position)


def bench(model: str | os.PathLike, *, flash_wait_states: int = 0, clock_mhz: float | None = None,
          report: str | os.PathLike | None = None, **options) -> dict:
    """Measure the C on `target` (default host): the bench document of docs/bench_json.md.
    report=DIR also writes DIR/bench.json and DIR/bench.html (a bar per layer)."""
    from qcc.commands.bench import bench as run_bench

    with _one_error(model):
        result = run_bench(os.fspath(model), options_from(model, **options), flash_wait_states=flash_wait_states,
                           clock_mhz=clock_mhz)
        if report is not None:
            from qcc.backend.bench_html import write_bench_report

            write_bench_report(result, Path(report))
        return result


def render_explain(facts: dict, fmt: str = "text") -> str:
    """explain()'s facts as `qcc explain` prints them: "text", "markdown" or "json"."""
    from qcc.commands.explain import render

    return render(facts, fmt)


def render_bench(report: dict, fmt: str = "text") -> str:
    """bench()'s document as `qcc bench` prints it: "text" or "json"."""
    from qcc.commands.bench import render

    return render(report, fmt)


def options_from(model, *, name: str = "model", rounding: str | None = None,
                 input_shape: Mapping[str, Sequence[int]] | None = None, inputs: Iterable[str] | None = None,
                 outputs: Iterable[str] | None = None, target: str = "host", fpu: bool = False, float_io: bool = False,
                 weights_section: str | None = None, arena_section: str | None = None, whole_tensors: bool = False,
                 io_in_arena: bool = False, state: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                 wide_weights: bool = False, **unknown) -> Options:
    """The command line's options as keyword arguments, checked as the command line checks them:
    name (--name), rounding (--rounding: ort, single, tflm, ...), input_shape ({input: dims},
    --input-shape), inputs and outputs (tensor names where to cut the model, --inputs/--outputs),
    target (--target), fpu, float_io, weights_section, arena_section, whole_tensors, io_in_arena,
    state ({input: output} or (input, output) pairs, --state) and wide_weights (--wide-weights)."""
    if unknown:
        known = [p for p in inspect_signature(options_from).parameters if p not in ("model", "unknown")]
        raise QccError(f"{', '.join(sorted(unknown))}: no such option (the options: {', '.join(known)})")
    if name_refusal(name) is not None:  # before the model is read (check_options repeats it with the others)
        raise QccError(name_refusal(name))
    shapes = {}
    for tensor, dims in (input_shape or {}).items():
        dims = list(dims) if isinstance(dims, Iterable) and not isinstance(dims, str) else None
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise QccError(f"--input-shape {tensor}: give the dimensions as positive integers")
        shapes[str(tensor)] = dims
    pairs = list(state.items()) if isinstance(state, Mapping) else [tuple(p) for p in state or []]
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(t, str) and t for t in pair):
            raise QccError(f"--state {pair!r}: give the model's input and output that carry the state")
    settings = Options(name=name, float_io=bool(float_io), rounding=model_rounding(model, rounding),
                       input_shapes=shapes, cut_inputs=_names("--inputs", inputs), cut_outputs=_names("--outputs", outputs),
                       target=target_named(target).name, weights_section=weights_section, arena_section=arena_section,
                       fpu=bool(fpu), whole_tensors=bool(whole_tensors), io_in_arena=bool(io_in_arena),
                       state_pairs=[(a, b) for a, b in pairs], wide_weights=bool(wide_weights))
    check_options(settings)  # before the tools and the model are looked at
    return settings


def _names(flag: str, names: Iterable[str] | None) -> list[str]:
    if names is None:
        return []
    names = [names] if isinstance(names, str) else list(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise QccError(f"{flag} {names!r}: give one or more tensor names")
    return names


def _tflm_arena():
    """qcc.runtimes.tflm.arena where the tflite-micro wheel (the test extra) is installed, else None."""
    try:
        from qcc.runtimes import tflm
    except ImportError:
        return None
    return tflm.arena


@contextlib.contextmanager
def _one_error(model, output=None):
    """Every failure as QccError with one line: the user's (the model, an option, a file), the system's (an
    unwritable folder, a missing tool), or qcc's own (an internal error, named as a bug to report). numpy's
    RuntimeWarnings on hostile values are not for the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", QccWarning)
        try:
            yield
        except QccError as error:
            error.args = (one_line(str(error)),)
            raise
        except OSError as error:  # an unwritable output folder, a full disk, a compiler that cannot be run
            where = error.filename or output or model
            raise QccError(f"{one_line(str(where))}: {one_line(str(error.strerror or error))}") from error
        except Exception as error:  # never a traceback: say what failed and that it is qcc's to fix
            if os.environ.get("QCC_TRACEBACK"):  # for qcc's developers
                raise
            raise QccError(f"{one_line(str(model))}: qcc failed on this model ({type(error).__name__}: "
                           f"{one_line(str(error))[:300]}); if ONNX Runtime or TFLite Micro runs it, this is a qcc bug: please report "
                           "it with the model") from error
