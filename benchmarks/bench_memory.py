"""RAM below the tensors' lifetimes: for each network of the suite (tests/networks.py), the liveness
bound of the model as given (the most bytes of whole tensors alive at one step), qcc's arena with
every tensor whole (`--whole-tensors`, the plan before in-place and streamed execution) and qcc's
arena, side by side in one run, with TensorFlow Lite Micro's total arena for a comparable
architecture. With --instructions, also each network's Cortex-M4 instructions per inference both
ways (`qcc bench`), which says what in place and streaming cost in time. Prints a markdown table
(docs/memory.md holds one).

    python benchmarks/bench_memory.py                     # arenas only (seconds)
    python benchmarks/bench_memory.py --instructions      # and instructions on the Cortex-M4 (minutes)

Each network is quantized as the tests do (QDQ, int8 activations, per-channel int8 weights)."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from models import quantize  # noqa: E402
from networks import NETWORKS  # noqa: E402

from qcc.commands.bench import bench  # noqa: E402
from qcc.pipeline import Options, compile_model  # noqa: E402

# TFLM's total arena (activations at the liveness bound, plus per-channel parameters and its own
# structures in RAM) for comparable architectures, as issue 13 gives them (MLPerf Tiny deployments).
TFLM_ARENA = {"ds_cnn": 24736, "mobilenet_v1": 103568, "resnet8": 55936, "mobilenet_v2": 311152,
              "squeezenet11": 208880}


def measure(network: str, work: Path, instructions: bool, rounding: str) -> dict:
    model = str(quantize(NETWORKS[network](), work / f"{network}.onnx", activation="int8", quant_format="QDQ"))
    whole = compile_model(model, Options(rounding=rounding, whole_tensors=True)).plan
    plan = compile_model(model, Options(rounding=rounding)).plan
    modes = [s.mode for s in plan.steps.values()]
    row = {"network": network, "bound": plan.model_order_liveness_bytes, "whole": whole.arena_bytes,
           "arena": plan.arena_bytes, "in_place": modes.count("in place"), "streams": len(plan.streams),
           "streamed_layers": sum(len(s.stages) for s in plan.streams.values())}
    if instructions:
        for key, whole_tensors in (("insn_whole", True), ("insn", False)):
            report = bench(model, Options(rounding=rounding, target="cortex-m4", whole_tensors=whole_tensors))
            row[key] = report["instructions"]["per_inference"]
    print(f"{network}: {row}", file=sys.stderr)
    return row


def table(rows: list[dict], instructions: bool) -> str:
    head = ["network", "liveness bound", "arena, whole tensors", "arena", "arena ÷ bound", "TFLM arena",
            "arena ÷ TFLM", "in place / streamed"]
    if instructions:
        head += ["M4 instructions, whole", "M4 instructions", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tflm = TFLM_ARENA.get(r["network"])
        cells = [r["network"], f"{r['bound']:,}", f"{r['whole']:,}", f"{r['arena']:,}",
                 f"{r['arena'] / r['bound']:.2f}" if r["bound"] else "-",
                 f"{tflm:,}" if tflm else "-", f"{r['arena'] / tflm:.2f}" if tflm else "-",
                 f"{r['in_place']} steps / {r['streamed_layers']} layers in {r['streams']} chains"]
        if instructions:
            cells += [f"{r['insn_whole']:,}", f"{r['insn']:,}", f"{r['insn'] / r['insn_whole']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated (default: all)")
    parser.add_argument("--instructions", action="store_true", help="also Cortex-M4 instructions per inference")
    parser.add_argument("--rounding", default="single", help="the requantization scheme (default: single)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer warns about pre-processing
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp), args.instructions, args.rounding) for n in args.networks.split(",")]
    print(table(rows, args.instructions))


if __name__ == "__main__":
    main()
