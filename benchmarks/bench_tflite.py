""".tflite models side by side in one run: for each, whether qcc compiles it exact to the pinned TFLite
Micro (qcc verify: C == reference == TFLM on seeded random and extreme inputs) or refuses it (and why);
qcc's RAM beside TFLM's own arena (its interpreter's allocations; both with the model's inputs and
outputs counted: qcc's arena plus the caller's input and output buffers by default, and qcc's arena
alone with --io-in-arena, where the inputs and outputs are arena buffers as in TFLM; a streaming
model's state between frames on top, as TFLM keeps its variables in its arena); Cortex-M4 instructions per inference of qcc's C from the .tflite (the `tflm`
scheme), of qcc's C from the same model converted by tf2onnx (qcc's ONNX path, in its `ort` and `tflm`
schemes), and of CMSIS-NN's kernels (s8, s16, the LSTM) called layer by layer with the .tflite's own parameters
(benchmarks/bench_cmsis_nn.py's harness), compared on the layers CMSIS-NN has a kernel for (its run counts
nothing for the others). Prints a markdown table.

    PYTHONPATH=. python benchmarks/bench_tflite.py MODEL.tflite ... [--onnx-dir DIR] [--cmsis-nn PATH]
        [--output docs/tflite_numbers.md]

--onnx-dir holds DIR/<model stem>.onnx, made with `python -m tf2onnx.convert --tflite MODEL.tflite
--output DIR/<stem>.onnx --opset 13` (tf2onnx needs TensorFlow, which qcc never depends on). Counts
are executed instructions under QEMU (qcc bench --target cortex-m4): each side counted the same way; beside
qcc's, the cycles the Cortex-M4 timing model estimates for them (docs/cycle_model.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_cmsis_nn import build_cmsis_library, cmsis_root, count_cmsis  # noqa: E402

from qcc.commands.bench import bench  # noqa: E402
from qcc.commands.verify import verify  # noqa: E402
from qcc.errors import QccError  # noqa: E402
from qcc.pipeline import Options, compile_model  # noqa: E402
from qcc.runtimes import tflm  # noqa: E402
from qcc.toolchain.targets import target_named  # noqa: E402

TARGET = "cortex-m4"


def instructions(model: str, rounding: str | None = None, per_layer: bool = False):
    """Cortex-M4 instructions per inference (None where qcc refuses the model); with per_layer, (that, each node's
    entry of the bench report's layers, the estimated cycles per inference)."""
    try:
        report = bench(model, Options(rounding=rounding, target=TARGET), object_sizes=False)
    except QccError:
        return (None, [], None) if per_layer else None
    counts = report["instructions"]
    if per_layer:
        return counts["per_inference"], counts["layers"], report["cycles"]["per_inference"]
    return counts["per_inference"]


def layer_groups(qcc_layers: list[dict]) -> list[list[int]]:
    """The nodes counted together: a streamed chain's layers run interleaved and are counted in its last one."""
    groups, covered = [], set()
    for layer in reversed(qcc_layers):
        if layer["index"] in covered:
            continue
        group = layer.get("streamed_chain") or [layer["index"]]
        covered.update(group)
        groups.append(group)
    return groups[::-1]


def per_layer_rows(model: str, layers, counts: dict, qcc_layers: list[dict]) -> list[dict]:
    """qcc beside CMSIS-NN per layer (a streamed chain as one), where CMSIS-NN has a kernel for every node of it."""
    rows = []
    for group in layer_groups(qcc_layers):
        if any(layers[i].function is None for i in group):
            continue
        cmsis = sum(counts["per_layer"][i] for i in group)
        qcc = sum(qcc_layers[i]["instructions"] for i in group)
        rows.append({"model": model, "layers": group, "kinds": " + ".join(layers[i].kind for i in group),
                     "functions": " + ".join(dict.fromkeys(layers[i].function for i in group)),
                     "macs": sum(qcc_layers[i]["macs"] for i in group), "cmsis": cmsis, "qcc": qcc})
    return rows


def per_layer_table(rows: list[dict]) -> str:
    lines = ["| model | layers | kinds | CMSIS-NN function | MACs | CMSIS-NN instr. | qcc instr. | qcc / CMSIS-NN |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        span = f"{r['layers'][0]}" if len(r["layers"]) == 1 else f"{r['layers'][0]}-{r['layers'][-1]} (streamed)"
        lines.append(f"| {r['model']} | {span} | {r['kinds']} | {r['functions']} | {number(r['macs'])} | "
                     f"{number(r['cmsis'])} | {number(r['qcc'])} | {ratio(r['qcc'], r['cmsis'])} |")
    return "\n".join(lines)


def measure(model: Path, onnx_dir: Path | None, cmsis: Path | None, library: Path | None, work: Path) -> dict:
    row = {"model": model.name}
    start = time.perf_counter()
    try:
        report = verify(str(model), Options(), count=20)
    except QccError as error:
        row["verdict"] = f"refused: {str(error).split(': ', 1)[-1][:160]}"
        return row
    row["verdict"] = "exact" if report.ok else "DIFFERS"
    row["cases"] = report.cases
    compiled = compile_model(model, Options())
    graph = compiled.graph
    row["io_bytes"] = sum(graph.tensor(t).nbytes for t in graph.inputs + graph.outputs)
    state = graph.state_offsets()[1]  # a streaming model's state between frames: RAM too, as in TFLM's arena
    row["qcc_ram"] = compiled.plan.arena_bytes + state + row["io_bytes"]
    row["qcc_ram_in_arena"] = compile_model(model, Options(io_in_arena=True)).plan.arena_bytes + state
    arena = tflm.arena(model.read_bytes())
    row["tflm_head"], row["tflm_total"] = arena.head, arena.total
    row["qcc_m4"], qcc_layers, row["qcc_m4_cycles"] = instructions(str(model), per_layer=True)
    onnx = onnx_dir / f"{model.stem}.onnx" if onnx_dir else None
    if onnx is not None and onnx.is_file():
        row["onnx_m4_ort"] = instructions(str(onnx), "ort")
        row["onnx_m4_tflm"] = instructions(str(onnx), "tflm")
    if cmsis is not None:
        try:
            layers, counts = count_cmsis(str(model), "tflm", cmsis, library, work)
            row["cmsis_m4"] = counts["per_inference"]
            # side by side on the layers CMSIS-NN has a kernel for (the others cost it nothing in its count)
            called = [i for i, layer in enumerate(layers) if layer.function is not None]
            row["cmsis_layers_m4"] = sum(counts["per_layer"][i] for i in called)
            row["qcc_layers_m4"] = (sum(qcc_layers[i]["instructions"] for i in called) if len(qcc_layers) == len(layers)
                                    else None)
            row["cmsis_layers"] = f"{len(called)} of {len(layers)}"
            if len(qcc_layers) == len(layers):
                row["per_layer"] = per_layer_rows(model.name, layers, counts, qcc_layers)
        except (QccError, KeyError, ValueError) as error:
            row["cmsis_note"] = str(error)[:120]
    row["seconds"] = time.perf_counter() - start
    return row


def number(value) -> str:
    return f"{value:,}" if value else "-"


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def table(rows: list[dict]) -> str:
    lines = ["| model | qcc | qcc RAM: arena + I/O buffers | qcc RAM, --io-in-arena | TFLM arena: tensors / total | "
             "qcc / TFLM total (I/O buffers, in arena) | "
             "M4 instr. qcc (.tflite) | est. M4 cycles qcc | via tf2onnx, qcc ort | via tf2onnx, qcc tflm | "
             "qcc / ONNX path | "
             "layers with a CMSIS-NN kernel | CMSIS-NN on them | qcc on them | qcc / CMSIS-NN |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["verdict"].startswith("refused"):
            lines.append(f"| {r['model']} | {r['verdict']} |" + " - |" * 13)
            continue
        onnx_best = min([v for v in (r.get("onnx_m4_ort"), r.get("onnx_m4_tflm")) if v] or [0])
        lines.append(
            f"| {r['model']} | {r['verdict']} ({r['cases']} input sets) | {r['qcc_ram']:,} | {r['qcc_ram_in_arena']:,} | "
            f"{r['tflm_head']:,} / {r['tflm_total']:,} | {ratio(r['qcc_ram'], r['tflm_total'])}, "
            f"**{ratio(r['qcc_ram_in_arena'], r['tflm_total'])}** | "
            f"{number(r['qcc_m4'])} | {number(r.get('qcc_m4_cycles'))} | {number(r.get('onnx_m4_ort'))} | "
            f"{number(r.get('onnx_m4_tflm'))} | "
            f"{ratio(r['qcc_m4'], onnx_best)} | {r.get('cmsis_layers', '-')} | {number(r.get('cmsis_layers_m4'))} | "
            f"{number(r.get('qcc_layers_m4'))} | {ratio(r.get('qcc_layers_m4'), r.get('cmsis_layers_m4'))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files")
    parser.add_argument("--onnx-dir", help="tf2onnx conversions of the models, named <stem>.onnx")
    parser.add_argument("--cmsis-nn", metavar="PATH", help="an unpacked CMSIS-NN source tree")
    parser.add_argument("--output", help="also write the table to this file")
    parser.add_argument("--per-layer", metavar="FILE",
                        help="with --cmsis-nn: write qcc beside CMSIS-NN layer by layer to this file")
    args = parser.parse_args()
    tflm.check_version()
    with tempfile.TemporaryDirectory(prefix="qcc-bench-tflite-") as tmp:
        work = Path(tmp)
        cmsis = library = None
        if args.cmsis_nn:
            cmsis = cmsis_root(args.cmsis_nn)
            library = build_cmsis_library(cmsis, target_named(TARGET), work, os.cpu_count() or 1)
        rows = []
        for model in args.models:
            model_work = work / Path(model).stem
            model_work.mkdir()
            rows.append(measure(Path(model), Path(args.onnx_dir) if args.onnx_dir else None, cmsis, library, model_work))
            print(f"{model}: { {k: v for k, v in rows[-1].items() if k != 'per_layer'} }", file=sys.stderr)
    text = table(rows)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    if args.per_layer:
        Path(args.per_layer).write_text(per_layer_table([r for row in rows for r in row.get("per_layer", [])]) + "\n")


if __name__ == "__main__":
    main()
