"""ONNX Runtime on an emulated x86-64 CPU without VNNI: QEMU user mode with an AMD EPYC Rome
(AVX2, no AVX512, no VNNI), the kind of host where ORT's uint8 x int8 kernels add product pairs in
saturating int16. ORT picks its kernels by CPUID, which QEMU emulates, so whatever CPU runs the
suite, the tests see what ORT computes on such a host.

The tests call `run_on_emulated_cpu`; it runs this file as a script under qemu-x86_64, which
builds each model's sessions with qcc.runtimes.ort (the ground truth, and the same without
session.x64quantprecision) and runs them on the given feeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

EMULATED_CPU = "EPYC-Rome"
CONFIGURATIONS = ("ground_truth", "without_x64quantprecision")


def run_on_emulated_cpu(models: dict[str, tuple[Path, list[dict[str, np.ndarray]]]], work: Path) -> dict:
    """models: name -> (model path, ORT feeds per case). Returns {"cpu": numpy's view of the
    emulated CPUID, "probe_saturates": qcc's measurement there, "configuration": {name: line},
    "x64_quant_precision": {name: bool}, "outputs": {(name, configuration): [outputs per case]}}."""
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: install Debian's qemu-user (.ci/run does)"
    work.mkdir(parents=True, exist_ok=True)
    job = {name: {"model": str(path), "cases": len(cases), "inputs": sorted(cases[0])} for name, (path, cases) in models.items()}
    arrays = {f"{name}/{i}/{key}": value for name, (_, cases) in models.items()
              for i, case in enumerate(cases) for key, value in case.items()}
    (work / "job.json").write_text(json.dumps(job))
    np.savez(work / "feeds.npz", **arrays)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    run = subprocess.run([qemu, "-cpu", EMULATED_CPU, os.path.realpath(sys.executable), __file__, str(work)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, f"ORT under {EMULATED_CPU} emulation failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    facts = json.loads((work / "facts.json").read_text())
    with np.load(work / "outputs.npz") as saved:
        outputs = {}
        for name, entry in job.items():
            for config in CONFIGURATIONS:
                outputs[(name, config)] = [[saved[f"{name}/{config}/{i}/{k}"] for k in range(facts["output_count"][name])]
                                           for i in range(entry["cases"])]
    facts["outputs"] = outputs
    return facts


def _main(work: Path) -> None:
    try:  # numpy reads CPUID itself, so it sees the emulated CPU (/proc/cpuinfo would show the host's)
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__

    from qcc.runtimes import ort as ort_reference

    job = json.loads((work / "job.json").read_text())
    feeds = np.load(work / "feeds.npz")
    facts = {"cpu": {k: bool(__cpu_features__.get(k)) for k in ("AVX2", "AVX512F", "AVX512VNNI")},
             "probe_saturates": ort_reference.cpu_saturates_u8s8_pairs(),
             "configuration": {}, "x64_quant_precision": {}, "output_count": {}}
    results = {}
    for name, entry in job.items():
        ground_truth = ort_reference.session(entry["model"])
        sessions = {"ground_truth": ground_truth,
                    "without_x64quantprecision": ort_reference.ort_session(entry["model"], x64_quant_precision=False)}
        facts["configuration"][name] = ground_truth.configuration()
        facts["x64_quant_precision"][name] = ground_truth.x64_quant_precision
        for config, sess in sessions.items():
            for i in range(entry["cases"]):
                outs = sess.run(None, {key: feeds[f"{name}/{i}/{key}"] for key in entry["inputs"]})
                facts["output_count"][name] = len(outs)
                results.update({f"{name}/{config}/{i}/{k}": out for k, out in enumerate(outs)})
    np.savez(work / "outputs.npz", **results)
    (work / "facts.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
