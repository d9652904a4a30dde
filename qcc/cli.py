"""The qcc command line: argument parsing and printing over the Python API (qcc/api.py).
User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from qcc import __version__, api
from qcc.errors import QccError, one_line
from qcc.frontend.onnx.onnx_loader import parse_input_shapes
from qcc.onnx_graph import ORT_VERSION
from qcc.pipeline import ROUNDING_SCHEMES
from qcc.tflite_graph import TFLM_VERSION
from qcc.toolchain.targets import TARGETS


def _api_options(args) -> dict:
    """The options every command shares, as the API's keyword arguments."""
    options = {"rounding": args.rounding, "input_shape": parse_input_shapes(args.input_shape),
               "inputs": _tensor_names(args.cut_inputs), "outputs": _tensor_names(args.outputs),
               "whole_tensors": args.whole_tensors, "io_in_arena": args.io_in_arena, "state": _state_pairs(args.state),
               "wide_weights": args.wide_weights}
    for flag in ("name", "target", "fpu", "float_io", "weights_section", "arena_section"):  # where the command has it
        if hasattr(args, flag):
            options[flag] = getattr(args, flag)
    return options


def _state_pairs(given: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for text in given or []:
        source, sep, target = text.partition("=")
        if not sep or not source or not target:
            raise QccError(f"--state {text!r}: give INPUT=OUTPUT, the model's input and output that carry the state")
        pairs.append((source, target))
    return pairs


def _tensor_names(text: str | None) -> list[str] | None:
    names = [n for n in (text or "").split(",") if n]
    if text is not None and not names:
        raise QccError(f"{text!r}: give tensor names separated by commas")
    return names or None


class _Version(argparse.Action):
    """--version on one line (argparse's own action wraps it to the terminal's width)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"qcc {__version__} (exact to onnxruntime {ORT_VERSION} for .onnx models, tflite-micro {TFLM_VERSION} "
              "for .tflite models)")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qcc", description="Compile quantized ONNX and TFLite models to integer-only C99.")
    parser.add_argument("--version", action=_Version, help="print qcc's version and the runtime versions its C is "
                        "exact to, and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("model", help="the quantized model: a .onnx file or a .tflite file (int8)")
        p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...", help="fix a dynamic input shape")
        p.add_argument("--rounding", choices=ROUNDING_SCHEMES, help="requantization scheme (default: the model's runtime's: "
                       "ort for .onnx, exact to ONNX Runtime; tflm for .tflite, exact to TFLite Micro)")
        p.add_argument("--outputs", metavar="T1,T2", help="compile the model only up to these tensors (they become the C "
                       "outputs); the rest, for example float post-processing, is left to the application")
        p.add_argument("--whole-tensors", action="store_true", help="keep every tensor whole in its own bytes: no "
                       "layer in place, none streamed (a larger arena; to compare, or to trace every layer)")
        p.add_argument("--io-in-arena", action="store_true", help="place the inputs and outputs in the arena, as TFLM "
                       "does: fill NAME_input_X(), call NAME_invoke(), read NAME_output_Y(); a layer may overwrite an "
                       "input it no longer needs, and the arena is then all the RAM the model uses")
        p.add_argument("--wide-weights", action="store_true", help="store fully connected and convolution (gemm) "
                       "weights as int16 pairs, the operands of the DSP's SMLAD, in flash: a quarter to a third fewer "
                       "instructions in those layers for twice their weight bytes (the report gives the flash)")
        p.add_argument("--state", action="append", metavar="INPUT=OUTPUT", help="a state the model passes through "
                       "this input and output (a streaming model's frames): kept inside the C between calls, reset by "
                       "NAME_reset(); repeat for each pair")
        inputs_flag = ["--cut-inputs"] if p.prog.endswith("verify") else ["--inputs", "--cut-inputs"]
        p.add_argument(*inputs_flag, dest="cut_inputs", metavar="T1,T2",
                       help="compile the model only from these tensors (they become the C inputs)")

    def target(p, what):
        # checked in _options, not with choices=: an unknown name is a one-line error like the others
        p.add_argument("--target", default="host", metavar="NAME", help=f"{what}: {', '.join(TARGETS)} (default: host)")
        p.add_argument("--fpu", action="store_true", help="requantize with float32 instructions, exactly as ONNX Runtime "
                       "does (--rounding ort, a target with an FPU: " + ", ".join(n for n, t in TARGETS.items() if t.fpu)
                       + "); default: integers only")

    p = sub.add_parser("compile", help="write the C folder")
    common(p)
    target(p, "also write a bare-metal golden test for this Cortex-M board and the others the model fits, "
              "run by `make run-BOARD` on QEMU")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--name", default="model", help="C symbol prefix and file name (default: model)")
    p.add_argument("--golden", help="N seeded random input sets, or an .npz of inputs (default: 4, fewer when the "
                   "model's inputs and outputs are large: the golden data stays under 8 MiB)")
    p.add_argument("--float-io", action="store_true", help="float32 inputs and outputs, quantized in C")
    p.add_argument("--weights-section", metavar="NAME", help="put every constant of the model (weights, tables, "
                   "parameters) in this linker section (default: the compiler's, .rodata)")
    p.add_argument("--arena-section", metavar="NAME", help="put the arena in this linker section (default: the "
                   "compiler's, .bss)")
    p.add_argument("--report", action="store_true", help="also print the memory report: per layer, the arena bytes in "
                   "use and where each input, output and scratch buffer lives (report.html in the folder shows it too)")

    p = sub.add_parser("verify", help="compare the C, the reference interpreter and ONNX Runtime")
    common(p)
    target(p, "run the C on this target (a Cortex-M board on QEMU)")
    p.add_argument("--inputs", help="an .npz with more input sets")
    p.add_argument("-n", type=int, default=20, help="seeded random input sets (default: 20), plus 3 extreme ones")
    p.add_argument("--float-io", action="store_true", help="verify the float32-I/O build")
    p.add_argument("--layers", action="store_true", help="also compare every layer's output (C, reference, ORT) on one "
                   "input set and name the first that differs (done anyway when some output differs)")

    p = sub.add_parser("inspect", help="each node: support, shapes, quantization, MACs, weight bytes (for .tflite, "
                       "TFLM's own arena beside qcc's)")
    common(p)

    p = sub.add_parser("explain", help="each layer's integer arithmetic with its numbers, and one value traced")
    common(p)
    p.add_argument("--node", help="only this node (its name in the model)")
    p.add_argument("--channel", type=int, help="the output channel to show and trace (default: every channel shown, 0 traced)")
    p.add_argument("--position", type=int, help="the output position traced within the channel, row-major (default: "
                   "the first whose code is not at a clamp bound)")
    p.add_argument("--input", help="an .npz with one array per model input (its first input set is traced; "
                   "default: seeded random codes)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="output format (default: text)")

    p = sub.add_parser("bench", help="measure the C on a target: instructions per inference and per layer (Cortex-M on "
                       "QEMU), flash code and data, RAM and stack; on the host, time per inference beside ONNX Runtime")
    common(p)
    target(p, "measure on this target")
    p.add_argument("--flash-wait-states", type=int, default=0, metavar="W",
                   help="the Cortex-M4 cycle estimate: W wait states on each data read from flash, the constants "
                        "(default 0: zero-wait-state memory; docs/cycle_model.md)")
    p.add_argument("--clock-mhz", type=float, metavar="F",
                   help="the Cortex-M4 cycle estimate: also give it in milliseconds at F MHz")
    p.add_argument("--report", nargs="?", const=".", metavar="DIR", help="also write DIR/bench.json (the json format) "
                   "and beside it DIR/bench.html, a bar per layer (DIR default: the current folder)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text; json: "
                   "docs/bench_json.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", api.QccWarning)
        try:
            return _run(args)
        except QccError as error:
            print(f"qcc: error: {one_line(str(error))}", file=sys.stderr)
            return 2
        finally:
            for warning in caught:
                if issubclass(warning.category, api.QccWarning):
                    print(f"qcc: warning: {warning.message}", file=sys.stderr)


def _run(args) -> int:
    if args.command == "compile":
        start = time.perf_counter()
        manifest = api.compile(args.model, args.output, golden=args.golden, report=args.report, **_api_options(args))
        if manifest["cut"] is not None:
            print(f"qcc: {one_line(manifest['cut']['summary'])}")
        print(f"qcc: wrote {args.output}: {len(manifest['layers'])} layers, arena {manifest['arena_bytes']} bytes, "
              f"weights {manifest['weights_bytes']} bytes, {manifest['golden_cases']} golden case(s) "
              f"({time.perf_counter() - start:.2f} s)")
        regions = manifest.get("flash", {}).get("regions", [])
        if len(regions) > 1:  # the first read-only region could not hold every constant
            print(f"qcc: {manifest['flash']['target']} constants: " + ", ".join(
                f"{r['model_bytes'] + r['test_bytes']} bytes in {r['name']}" + ("" if r["arrays"] == "the rest" else
                                                                                f" ({len(r['arrays'])} arrays)")
                for r in regions) + " (model.json \"flash\")")
        if args.report:
            print(manifest["memory_report"])
        return 0
    if args.command == "verify":
        result = api.verify(args.model, n=args.n, input_sets=args.inputs, layers=args.layers, **_api_options(args))
        print(result["table"])
        return 0 if result["ok"] else 1
    if args.command == "explain":
        facts = api.explain(args.model, node=args.node, channel=args.channel, position=args.position, input=args.input,
                            **_api_options(args))
        print(api.render_explain(facts, args.format), end="")
        return 0
    if args.command == "bench":
        report = api.bench(args.model, flash_wait_states=args.flash_wait_states, clock_mhz=args.clock_mhz,
                           report=args.report, **_api_options(args))
        print(api.render_bench(report, args.format), end="")
        return 0
    print(api.inspect(args.model, **_api_options(args))["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
