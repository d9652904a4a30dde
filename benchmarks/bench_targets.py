"""The suite's networks (tests/networks.py) measured with `qcc bench` on a Cortex-M board: instructions
per inference and per MAC in each rounding scheme, flash code and constant data, arena and stack.
Prints a markdown table (docs/target_numbers.md holds one).

    python benchmarks/bench_targets.py                       # every network, every scheme, cortex-m4
    python benchmarks/bench_targets.py --networks ds_cnn,resnet8 --schemes ort,single

Each network is quantized as the tests do (models.quantize: QDQ, int8 activations, per-channel int8
weights, seeded calibration), the same int8 setting as CMSIS-NN's s8 kernels."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from models import quantize  # noqa: E402
from networks import NETWORKS  # noqa: E402

from qcc import __version__  # noqa: E402
from qcc.commands.bench import bench  # noqa: E402
from qcc.pipeline import ROUNDING_SCHEMES, Options  # noqa: E402
from qcc.toolchain.targets import QEMU, target_named  # noqa: E402

QUANTIZATION = {"activation": "int8", "quant_format": "QDQ"}


def tool_versions(target: str) -> list[str]:
    compiler = target_named(target).compiler
    versions = [f"qcc {__version__}"]
    for tool in (compiler, QEMU):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
        versions.append(out.splitlines()[0])
    import onnxruntime

    versions.append(f"onnxruntime {onnxruntime.__version__} (quantize_static)")
    return versions


def measure(network: str, schemes: list[str], target: str, work: Path) -> dict:
    model = str(quantize(NETWORKS[network](), work / f"{network}.onnx", **QUANTIZATION))
    row = {"network": network, "schemes": {}}
    for scheme in schemes:
        start = time.perf_counter()
        report = bench(model, Options(rounding=scheme, target=target))
        row["schemes"][scheme] = report["instructions"]
        if scheme == schemes[0]:  # the sizes and the stack of the first scheme (the code differs by scheme)
            row["macs"], row["flash"], row["ram"] = report["macs"], report["flash"], report["ram"]
        print(f"{network} {scheme}: {report['instructions']['per_inference']} instructions "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return row


def table(rows: list[dict], schemes: list[str]) -> str:
    header = ["network", "MACs", *(f"insn ({s})" for s in schemes), *(f"insn/MAC ({s})" for s in schemes),
              f"code -Os / -O2 ({schemes[0]}, B)", "constant data (B)", "arena (B)", f"stack ({schemes[0]}, B)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        counts = [row["schemes"].get(s) for s in schemes]
        cells = [row["network"], f"{row['macs']:,}",
                 *(f"{c['per_inference']:,}" if c else "not run" for c in counts),
                 *(f"{c['per_mac']:.2f}" if c else "not run" for c in counts),
                 f"{row['flash']['-Os']['code_bytes']:,} / {row['flash']['-O2']['code_bytes']:,}",
                 f"{row['flash']['-O2']['constant_data_bytes']:,}", f"{row['ram']['arena_bytes']:,}",
                 f"{row['ram']['stack_peak_bytes']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated, from tests/networks.py")
    parser.add_argument("--schemes", default=",".join(ROUNDING_SCHEMES), help="comma-separated rounding schemes")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    networks, schemes = args.networks.split(","), args.schemes.split(",")
    unknown = [n for n in networks if n not in NETWORKS] + [s for s in schemes if s not in ROUNDING_SCHEMES]
    if unknown:
        raise SystemExit(f"unknown network(s) or scheme(s): {unknown}")
    logging.disable(logging.WARNING)  # quantize_static's pre-processing advice would interleave with the table
    with tempfile.TemporaryDirectory(prefix="qcc-bench-targets-") as tmp:
        rows = [measure(network, schemes, args.target, Path(tmp)) for network in networks]
    print(f"target: {args.target}; " + "; ".join(tool_versions(args.target)) + "\n")
    print(table(rows, schemes))


if __name__ == "__main__":
    main()
