"""RAM, counted as TFLM counts its arena, side by side in one run: for each model (.tflite, or an .onnx
converted from one by tf2onnx), whether qcc compiles it exact (qcc verify on seeded random and extreme inputs)
or refuses it; qcc's arena, the inputs and outputs, the RAM with the caller's buffers and with --io-in-arena;
the most bytes in use at one step of the --io-in-arena plan and the arena over it (issue 23: at most 1.02, or
`--report` names the step and the buffers); and TFLM's total arena, measured with the pinned tflite-micro
interpreter on the .tflite (for an .onnx, on the first --tflite-dir/<stem>.tflite). Prints a markdown table; seconds per
model (no instruction counting: benchmarks/bench_tflite.py has those).

    PYTHONPATH=. python benchmarks/bench_ram.py MODEL.tflite MODEL.onnx ... [--tflite-dir DIR]
        [--input-shape NAME=DIMS] [--output FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_tflite import number, ratio  # noqa: E402

from qcc.backend.memory_report import memory_report  # noqa: E402
from qcc.commands.verify import verify  # noqa: E402
from qcc.errors import QccError  # noqa: E402
from qcc.frontend.onnx.onnx_loader import parse_input_shapes  # noqa: E402
from qcc.pipeline import Options, compile_model  # noqa: E402
from qcc.runtimes import tflm  # noqa: E402

CASES = 6  # input sets per model: qcc verify's seeded random ones and its extreme ones


def measure(model: Path, tflite_dirs: list[Path], input_shapes: dict | None = None) -> dict:
    row = {"model": model.name}
    shapes = {}
    if model.suffix == ".onnx" and input_shapes:  # those of its inputs it has
        names = {i.name for i in onnx.load(str(model), load_external_data=False).graph.input}
        shapes = {name: dims for name, dims in input_shapes.items() if name in names}
    try:
        report = verify(str(model), Options(input_shapes=shapes), count=CASES)
    except QccError as error:
        row["verdict"] = f"refused: {str(error).split(': ', 1)[-1][:140]}"
        return row
    row["verdict"] = f"exact ({report.cases} input sets)" if report.ok else "DIFFERS"
    caller = memory_report(compile_model(model, Options(input_shapes=shapes)))
    shared = memory_report(compile_model(model, Options(input_shapes=shapes, io_in_arena=True)))
    row.update(arena=caller.arena_bytes, io=caller.io_bytes, ram=caller.ram_bytes, ram_in_arena=shared.ram_bytes,
               in_use=shared.most_in_use.live_bytes, shared_arena=shared.arena_bytes)
    sources = [model] if model.suffix == ".tflite" else [d / f"{model.stem}.tflite" for d in tflite_dirs]
    tflite = next((path for path in sources if path.is_file()), None)
    if tflite is not None:
        row["tflm"] = tflm.arena(tflite.read_bytes()).total
    print(f"{model.name}: {row}", file=sys.stderr)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | qcc | arena | inputs + outputs | RAM, caller's buffers | RAM, --io-in-arena | most in use at one step "
             "(--io-in-arena) | arena / most in use | TFLM total arena | qcc / TFLM (caller's buffers, in arena) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "arena" not in r:
            lines.append(f"| {r['model']} | {r['verdict']} |" + " - |" * 8)
            continue
        tflm_total = r.get("tflm")
        lines.append(f"| {r['model']} | {r['verdict']} | {r['arena']:,} | {r['io']:,} | {r['ram']:,} | {r['ram_in_arena']:,} | "
                     f"{r['in_use']:,} | {r['shared_arena'] / r['in_use']:.3f} | {number(tflm_total)} | "
                     f"{ratio(r['ram'], tflm_total)}, **{ratio(r['ram_in_arena'], tflm_total)}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite or .onnx files")
    parser.add_argument("--tflite-dir", action="append", default=[],
                        help="where the .tflite each .onnx was converted from is, named <stem>.tflite (repeatable)")
    parser.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                        help="as qcc's option, for the .onnx models that have that input")
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args()
    tflm.check_version()
    shapes = parse_input_shapes(args.input_shape)
    rows = [measure(Path(m), [Path(d) for d in args.tflite_dir], shapes) for m in args.models]
    text = table(rows)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
