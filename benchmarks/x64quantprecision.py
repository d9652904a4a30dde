"""What session.x64quantprecision=1 changes: for each test network (tests/networks.py) in the
variants the suite verifies, the output values where ONNX Runtime differs from qcc's reference
interpreter, with the option (qcc's ground truth) and without it, on this CPU and on an emulated
x86 CPU without VNNI (QEMU's EPYC-Rome, tests/emulated_cpu.py; needs qemu-user). Inputs: 7 seeded
random sets plus the 3 extremes, as tests/test_networks.py uses. Also the layers `qcc inspect`
flags as able to saturate ORT's int16 pair sums.

    python benchmarks/x64quantprecision.py [NETWORK ...]
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from emulated_cpu import EMULATED_CPU, run_on_emulated_cpu  # noqa: E402
from models import quantize  # noqa: E402
from networks import NETWORKS  # noqa: E402
from test_networks import VARIANTS  # noqa: E402

from qcc import reference  # noqa: E402
from qcc.pipeline import Options, compile_model  # noqa: E402
from qcc.runtimes import ort as ort_reference  # noqa: E402
from qcc.sample_inputs import extreme_inputs, random_inputs  # noqa: E402


def differences(graph, expected, runs) -> tuple[int, int]:
    """(values that differ, max |difference| in LSB) between the reference and ORT's raw outputs."""
    names = [graph.public_name(o) for o in graph.outputs]
    differ = worst = 0
    for want, raw in zip(expected, runs):
        for e, g in zip(want, ort_reference.outputs_as_codes(graph, names, raw)):
            d = np.abs(e.astype(np.int64) - g.astype(np.int64))
            differ, worst = differ + int((d != 0).sum()), max(worst, int(d.max(initial=0)))
    return differ, worst


def main() -> None:
    logging.disable(logging.WARNING)
    names = sys.argv[1:] or list(NETWORKS)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {}
        for name in names:
            for variant, options in VARIANTS.items():
                path = quantize(NETWORKS[name](), Path(tmp) / f"{name}-{variant}.onnx", **options)
                graph = compile_model(path, Options()).graph
                cases = random_inputs(graph, 7, seed=0) + extreme_inputs(graph)
                flagged = sum(n.params["u8s8_pairs"].can_saturate for n in graph.nodes if "u8s8_pairs" in n.params)
                prepared[f"{name} {variant}"] = (path, graph, cases, [reference.run(graph, c) for c in cases], flagged)
        emulated = run_on_emulated_cpu({label: (p[0], [ort_reference.feeds_for(p[1], c) for c in p[2]])
                                        for label, p in prepared.items()}, Path(tmp) / "emulated")
        here = "this CPU: " + ("saturating" if ort_reference.cpu_saturates_u8s8_pairs() else "exact") + " u8 x s8 kernels"
        print(f"values of ORT that differ from qcc's reference (max LSB); {here}; emulated: {EMULATED_CPU} "
              f"(numpy sees {emulated['cpu']})")
        header = ["model", "values", "flagged layers", "here: option", "here: without", f"{EMULATED_CPU}: option",
                  f"{EMULATED_CPU}: without"]
        print(" | ".join(header))
        totals = {"mismatched without": 0, "mismatched with": 0, "uint8 models": 0}
        for label, (path, graph, cases, expected, flagged) in prepared.items():
            ground_truth = ort_reference.session(path)
            plain = ort_reference.ort_session(path, x64_quant_precision=False)
            local = {config: [sess.run(None, ort_reference.feeds_for(graph, c)) for c in cases]
                     for config, sess in (("ground_truth", ground_truth), ("without_x64quantprecision", plain))}
            cells = [differences(graph, expected, local["ground_truth"]),
                     differences(graph, expected, local["without_x64quantprecision"]),
                     differences(graph, expected, emulated["outputs"][(label, "ground_truth")]),
                     differences(graph, expected, emulated["outputs"][(label, "without_x64quantprecision")])]
            values = sum(e.size for want in expected for e in want)
            print(" | ".join([label, str(values), str(flagged)] + [f"{d} ({w})" for d, w in cells]))
            if graph.tensor(graph.inputs[0]).dtype == "uint8":
                totals["uint8 models"] += 1
                totals["mismatched without"] += cells[3][0] > 0
                totals["mismatched with"] += cells[2][0] > 0
        print(f"uint8-activation models on {EMULATED_CPU}: {totals['mismatched without']} of {totals['uint8 models']} "
              f"mismatch without the option, {totals['mismatched with']} with it")


if __name__ == "__main__":
    main()
