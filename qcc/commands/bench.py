"""`qcc bench`: measure a compiled model on a target (docs/bench_json.md).

On a Cortex-M target: the instructions one inference executes on the board under QEMU, for the
whole model and per layer (qcc.toolchain.insn_count, marks at each layer's end in a -DQCC_BENCH build of
the model), the flash split into code and constant data (the cross `size -A` of the model's and
the runtime's objects, at -Os and -O2), and the RAM: arena, static data and the stack's measured
high-water mark. On the Cortex-M4, beside the instructions, the cycles its timing model estimates
for them (docs/cycle_model.md): the one estimate in the report, the instructions stay the measure.
On the host: the C's time per inference (-O2) beside ONNX Runtime's, and the same object sizes with
the host's `size`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from qcc import __version__, reference
from qcc.backend.writer import write_bench_runner
from qcc.commands.compile import compile_to_folder
from qcc.errors import QccError
from qcc.pipeline import Options
from qcc.runtimes import ort as ort_reference
from qcc.runtimes import tflm
from qcc.sample_inputs import random_inputs
from qcc.toolchain.build import make
from qcc.toolchain.host_timing import build_harness, time_c, time_ort, write_harness
from qcc.toolchain.insn_count import FlashWaits, count_run
from qcc.toolchain.qemu import QemuRun
from qcc.toolchain.targets import FPU_CFLAGS, Target, require_tools, target_named

SCHEMA_VERSION = 1
OPT_LEVELS = ("-Os", "-O2")
# The bench image: -O2 like the Makefile's default ARM_CFLAGS, plus the layer marks.
BENCH_ARM_CFLAGS = "-std=c99 -O2 -DQCC_BENCH"
HOST_CFLAGS = "-std=c99 -O2"
MARKER_LAYER, MARKER_DONE = "qcc_bench_layer", "qcc_bench_done"
# The core whose timing the cycle estimate models (qemu_plugin/cortex_m4_timing.h), and its constants.
CYCLE_MODEL_TARGET = "cortex-m4"
REFILL_CYCLES, DIVIDE_CYCLES = 2, 12


def bench(model: str, options: Options, object_sizes: bool = True, flash_wait_states: int = 0,
          clock_mhz: float | None = None) -> dict:
    """Everything `qcc bench` reports, as the JSON document docs/bench_json.md describes.
    object_sizes=False skips the two builds that measure the flash (the report then has no
    "flash", and its "ram" no .data and .bss): for scripts that want only the counts or times.
    flash_wait_states and clock_mhz shape the Cortex-M4's cycle estimate: wait states on each data
    read from flash, and the clock that turns cycles into milliseconds."""
    target = target_named(options.target)
    if (flash_wait_states or clock_mhz is not None) and target.name != CYCLE_MODEL_TARGET:
        raise QccError(f"--flash-wait-states and --clock-mhz shape the cycle estimate, which models the Cortex-M4 "
                       f"only: use --target {CYCLE_MODEL_TARGET}")
    if not 0 <= flash_wait_states <= 15:
        raise QccError(f"--flash-wait-states {flash_wait_states}: give 0 to 15 wait states")
    if clock_mhz is not None and not 0 < clock_mhz <= 10000:
        raise QccError(f"--clock-mhz {clock_mhz}: give the core clock in MHz, above 0")
    require_tools(target)
    if not target.is_host and shutil.which(_size_tool(target)) is None:
        raise QccError(f"--target {target.name}: {_size_tool(target)} not found; it comes with the Arm GNU toolchain")
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        out_dir = Path(tmp) / "out"
        compiled, manifest = compile_to_folder(model, str(out_dir), options, golden="0")
        inputs = random_inputs(compiled.graph, 1, seed=0)[0]
        report = {
            "schema_version": SCHEMA_VERSION, "qcc_version": __version__, "model": Path(model).name,
            "target": target.name, "rounding": options.rounding, "fpu": options.fpu,
            "macs": sum(layer["macs"] for layer in manifest["layers"]),
        }
        ram = {"arena_bytes": manifest["arena_bytes"], "io_bytes": manifest["io_bytes"],
               "model_ram_bytes": manifest["ram_bytes"]}
        if object_sizes:
            report["flash"] = {level: _object_sizes(out_dir, target, level, options.fpu) for level in OPT_LEVELS}
            ram.update(_static_ram(report["flash"]["-O2"]))
        if target.is_host:
            report["ram"] = ram
            report["host_time"] = _host_time(model, compiled, out_dir, manifest, inputs)
            return report
        counts, cycles, stack_peak = _count(compiled, out_dir, target, manifest, inputs, flash_wait_states)
        report["instructions"] = counts
        if target.name == CYCLE_MODEL_TARGET:
            report["cycles"] = _cycle_report(cycles, counts, report["macs"], target, flash_wait_states, clock_mhz)
        report["ram"] = {**ram, "stack_peak_bytes": stack_peak, "stack_size_bytes": target.stack_bytes}
        return report


def _size_tool(target: Target) -> str:
    # arm-none-eabi-gcc -> arm-none-eabi-size; the host's cc -> size
    return target.compiler[:-len("gcc")] + "size" if target.compiler.endswith("gcc") else "size"


def _object_sizes(out_dir: Path, target: Target, level: str, fpu: bool = False) -> dict:
    """The Makefile's objects (the model's and the runtime sources it links) built at `level` with
    one function or datum per section, and `size -A` of each: .text* is code; .rodata* and the
    initial values of .data* are constant data in flash; .data* and .bss* are static RAM."""
    make(out_dir, "clean")
    cflags = " ".join(["-std=c99", level, *target.cpu_flags])
    make(out_dir, "all", variables={"CC": target.compiler, "CFLAGS": cflags})
    objects = {}
    for path in sorted(out_dir.glob("*.o")):
        result = subprocess.run([_size_tool(target), "-A", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise QccError(f"{_size_tool(target)} -A {path.name} failed: {result.stderr.strip()}")
        sizes = {"code_bytes": 0, "rodata_bytes": 0, "data_bytes": 0, "bss_bytes": 0}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) != 3 or not fields[1].isdigit():
                continue
            section, size = fields[0], int(fields[1])
            for prefix, key in ((".text", "code_bytes"), (".rodata", "rodata_bytes"), (".data", "data_bytes"),
                                (".bss", "bss_bytes")):
                if section == prefix or section.startswith(prefix + "."):
                    sizes[key] += size
        objects[path.name] = sizes
    return {"cflags": " ".join([cflags, *(FPU_CFLAGS if fpu else ())]),  # the Makefile adds FP_FLAGS
            "code_bytes": sum(o["code_bytes"] for o in objects.values()),
            "constant_data_bytes": sum(o["rodata_bytes"] + o["data_bytes"] for o in objects.values()),
            "objects": objects}


def _static_ram(sizes: dict) -> dict:
    objects = sizes["objects"].values()
    return {"data_bytes": sum(o["data_bytes"] for o in objects), "bss_bytes": sum(o["bss_bytes"] for o in objects)}


def _cycle_report(cycles: "Split", counts: dict, macs: int, target: Target, flash_wait_states: int,
                  clock_mhz: float | None) -> dict:
    """The cycle estimate's part of the report, laid out as the instructions' (docs/bench_json.md)."""
    report = {
        "model": "Cortex-M4 TRM instruction timings (docs/cycle_model.md)",
        "refill_cycles": REFILL_CYCLES, "divide_cycles": DIVIDE_CYCLES, "flash_wait_states": flash_wait_states,
        "per_inference": cycles.whole, "per_mac": cycles.whole / macs if macs else None,
        "marker_overhead": cycles.overhead, "after_last_layer": cycles.after_last,
        "layers": [{"index": layer["index"], "cycles": value,
                    "per_instruction": value / layer["instructions"] if layer["instructions"] > 0 else None}
                   for layer, value in zip(counts["layers"], cycles.per_layer)],
    }
    if flash_wait_states:
        report["flash_end"] = target.flash.end
    if clock_mhz is not None:
        report["clock_mhz"] = clock_mhz
        report["ms_per_inference"] = cycles.whole / (clock_mhz * 1e3)
    return report


def _count(compiled, out_dir: Path, target: Target, manifest: dict, inputs: list[np.ndarray],
           flash_wait_states: int = 0) -> tuple[dict, "Split", int]:
    """Run the bench image once under the instruction counter: per-layer and whole-model counts,
    less the marker overhead measured in the same run; the same split of the estimated cycles; and
    the stack high-water mark it prints."""
    runner = write_bench_runner(compiled, out_dir, inputs, manifest)
    image = out_dir / f"{Path(runner).stem}-{target.name}.elf"
    make(out_dir, image.name, variables={"ARM_CFLAGS": BENCH_ARM_CFLAGS})
    run_symbol = f"{manifest['name']}_{'invoke' if manifest.get('io_in_arena') else 'run'}"
    layers = manifest["layers"]
    flash_waits = FlashWaits(flash_wait_states, target.flash.end) if flash_wait_states else None
    instructions, cycles, run = count_layers(image, target, run_symbol, len(layers), flash_waits)
    per_layer, overhead, after_last, whole = instructions
    stack = [line.split() for line in run.console.splitlines() if line.startswith("qcc-bench-stack ")]
    if len(stack) != 1 or len(stack[0]) != 2 or not stack[0][1].isdigit():
        raise QccError(f"{image.name} printed no stack high-water mark: {run.console.strip()[-300:]}")
    report = {
        "per_inference": whole,
        "per_mac": whole / sum(layer["macs"] for layer in layers) if any(layer["macs"] for layer in layers) else None,
        "marker_overhead": overhead,
        "after_last_layer": after_last,
        "cflags": " ".join([BENCH_ARM_CFLAGS, *target.cpu_flags, *(FPU_CFLAGS if compiled.options.fpu else ())]),
        "layers": [{"index": k, "op": layer["op"], "name": layer["name"], "macs": layer["macs"],
                    "instructions": count, "per_mac": count / layer["macs"] if layer["macs"] else None}
                   for k, (layer, count) in enumerate(zip(layers, per_layer))],
    }
    # A streamed chain's layers run interleaved, row by row, in its last layer's step: their
    # instructions are all counted there, and each earlier layer says where.
    for step, stream in compiled.plan.streams.items():
        chain = report["layers"][step - len(stream.nodes) + 1:step + 1]
        chain[-1]["streamed_chain"] = [layer["index"] for layer in chain]
        chain_macs = sum(layer["macs"] for layer in chain)  # the MACs its count covers
        chain[-1]["per_mac"] = chain[-1]["instructions"] / chain_macs if chain_macs else None
        for layer in chain[:-1]:
            layer["streamed_into"], layer["per_mac"] = step, None
    return report, cycles, int(stack[0][1])


class Split(NamedTuple):
    """A bench run's instructions (or estimated cycles) split into its layers: each layer's, the
    marker overhead subtracted per mark, the part after the last layer's mark (the run's return),
    and the whole run's, entry to return."""
    per_layer: list[int]
    overhead: int
    after_last: int
    whole: int


def _split(values: list[int], first_call: int) -> Split:
    """The records' running totals (two calibration marks, the run's entry, one per layer, the run's
    end) split. One marker in the stream adds its `bx lr` and the next mark's `bl`: measured
    between the two calibration marks. The run's first layer begins at the run's entry, so it holds
    only the `bl`, which costs first_call."""
    overhead = values[1] - values[0]
    entry, ends, done = values[2], values[3:-1], values[-1]
    starts = [entry] + ends[:-1]
    per_layer = [end - start - overhead + (first_call if k == 0 else 0)
                 for k, (start, end) in enumerate(zip(starts, ends))]
    after_last = done - ends[-1] - overhead
    whole = done - entry - (len(ends) + 1) * overhead + first_call
    return Split(per_layer, overhead, after_last, whole)


def count_layers(image: Path, target: Target, run_symbol: str, n_layers: int,
                 flash_waits: FlashWaits | None = None) -> tuple[Split, Split, QemuRun]:
    """Run a bench image once under the instruction counter and split the run into its layers.
    The image's main calls MARKER_LAYER twice (calibration), then run_symbol, which calls
    MARKER_LAYER after each of its n_layers layers, and passes the run's status straight to
    MARKER_DONE (templates/qcc_bench_runner.c.j2; benchmarks/bench_cmsis_nn.py builds another
    image the same way). Returns the instructions split, the estimated Cortex-M4 cycles split the
    same way, and the run (its console)."""
    records, run = count_run(image, target, [run_symbol, MARKER_LAYER, MARKER_DONE], flash_waits=flash_waits)
    marks = [record.mark for record in records]
    # main: two calibration marks, the run's entry, one mark per layer, the end of the run.
    expected = [1, 1, 0] + [1] * n_layers + [2]
    if marks != expected:
        raise QccError(f"{image.name}: the instruction counter's marks came in an unexpected order ({marks[:12]}...): "
                       f"the bench build did not mark each of the {n_layers} layers once")
    # the `bl` into a mark: 1 instruction, 1 + P cycles (a branch with its pipeline refill)
    return (_split([record.count for record in records], 1),
            _split([record.cycles for record in records], 1 + REFILL_CYCLES), run)


def _host_time(model: str, compiled, out_dir: Path, manifest: dict, inputs: list[np.ndarray]) -> dict:
    """ns per inference of the C (-O2) and of ONNX Runtime (one thread), on the same input in one
    run; the timed C's outputs must be the reference interpreter's, else the time is void."""
    in_paths = [out_dir / f"in{i}.bin" for i in range(len(inputs))]
    for path, value, entry in zip(in_paths, inputs, manifest["inputs"]):
        np.ascontiguousarray(value, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).tofile(path)
    out_paths = [out_dir / f"out{i}.bin" for i in range(len(manifest["outputs"]))]
    write_harness(out_dir, manifest)
    c_ns = time_c(build_harness(out_dir, HOST_CFLAGS), in_paths, out_paths)
    for path, entry, want in zip(out_paths, manifest["outputs"], reference.run(compiled.graph, inputs)):
        got = np.fromfile(path, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(want.shape)
        if not np.array_equal(got, want):  # a fast wrong answer is no benchmark
            raise QccError(f"the timed C's output '{entry['name']}' differs from the reference interpreter's")
    cflags = " ".join([HOST_CFLAGS, *(FPU_CFLAGS if compiled.options.fpu else ())])  # the Makefile adds FP_FLAGS
    if compiled.graph.frontend == "tflite":  # beside the runtime the model is exact to: TFLM's reference kernels
        sess = tflm.Session(Path(model).read_bytes())
        tflm_ns = time_ort(sess, inputs)
        return {"cflags": cflags, "c_ms": c_ns / 1e6, "tflm_ms": tflm_ns / 1e6, "c_over_tflm": c_ns / tflm_ns,
                "tflm_configuration": sess.configuration()}
    sess = ort_reference.session(model)
    graph = compiled.graph
    if graph.io_before_state is not None:  # --state pairs: ORT takes the state too (its first inference's)
        given = {**dict(zip(graph.inputs, inputs)), **reference.State(graph).values}
        graph = replace(graph, inputs=graph.io_before_state[0], outputs=graph.io_before_state[1])
        inputs = [given[name] for name in graph.inputs]
    ort_ns = time_ort(sess, ort_reference.feeds_for(graph, inputs))
    return {"cflags": cflags, "c_ms": c_ns / 1e6, "ort_ms": ort_ns / 1e6, "c_over_ort": c_ns / ort_ns,
            "ort_configuration": sess.configuration()}


def render(report: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    fpu = " (--fpu: float32 requantization)" if report.get("fpu") else ""
    lines = [f"{report['model']} on {report['target']}, rounding {report['rounding']}{fpu}: {report['macs']} MACs"]
    if "instructions" in report:
        counts = report["instructions"]
        per_mac = f", {counts['per_mac']:.2f} per MAC" if counts["per_mac"] is not None else ""
        lines.append(f"instructions per inference: {counts['per_inference']}{per_mac} ({counts['cflags']}; "
                     f"marker overhead {counts['marker_overhead']} subtracted per mark)")
        width = max(len(layer["name"]) for layer in counts["layers"])
        lines.append(f"  {'#':>3} {'layer':<{width}} {'op':<18} {'MACs':>10} {'instructions':>12} {'per MAC':>8}")
        for layer in counts["layers"]:
            per_mac = f"{layer['per_mac']:.2f}" if layer["per_mac"] is not None else "-"
            note = ""
            if "streamed_into" in layer:
                note = f"  streamed: counted in layer {layer['streamed_into']}"
            elif "streamed_chain" in layer:
                note = f"  streamed: layers {layer['streamed_chain'][0]}-{layer['index']} together"
            lines.append(f"  {layer['index']:>3} {layer['name']:<{width}} {layer['op']:<18} {layer['macs']:>10} "
                         f"{layer['instructions']:>12} {per_mac:>8}{note}")
        lines.append(f"  after the last layer (the run's return): {counts['after_last_layer']}")
        if "cycles" in report:
            lines.extend(_render_cycles(report["cycles"], counts["layers"], width))
    elif "host_time" in report:
        host = report["host_time"]
        if "tflm_ms" in host:
            lines.append(f"time per inference: C {host['c_ms']:.3f} ms ({host['cflags']}), TFLite Micro (reference "
                         f"kernels) {host['tflm_ms']:.3f} ms, C / TFLM {host['c_over_tflm']:.2f}")
        else:
            lines.append(f"time per inference: C {host['c_ms']:.3f} ms ({host['cflags']}), ONNX Runtime "
                         f"{host['ort_ms']:.3f} ms, C / ORT {host['c_over_ort']:.2f}")
    for level, sizes in report["flash"].items():
        lines.append(f"flash at {level}: code {sizes['code_bytes']} B, constant data {sizes['constant_data_bytes']} B "
                     f"({len(sizes['objects'])} objects: {', '.join(sizes['objects'])})")
    ram = report["ram"]
    stack = (f", stack high-water {ram['stack_peak_bytes']} B of {ram['stack_size_bytes']}"
             if "stack_peak_bytes" in ram else "")
    lines.append(f"RAM: arena {ram['arena_bytes']} B (in .bss; the model's RAM with its inputs and outputs: "
                 f"{ram['model_ram_bytes']} B), .data {ram['data_bytes']} B, .bss {ram['bss_bytes']} B{stack}")
    return "\n".join(lines) + "\n"


def _render_cycles(cycles: dict, layers: list[dict], width: int) -> list[str]:
    per_mac = f", {cycles['per_mac']:.2f} per MAC" if cycles["per_mac"] is not None else ""
    flash = (f"{cycles['flash_wait_states']} wait states on each data read from flash" if cycles["flash_wait_states"]
             else "zero-wait-state memory")
    clock = f", {cycles['ms_per_inference']:.3f} ms at {cycles['clock_mhz']:g} MHz" if "clock_mhz" in cycles else ""
    lines = [f"estimated Cortex-M4 cycles per inference: {cycles['per_inference']}{per_mac}{clock} (an estimate: "
             f"{cycles['model']}, branch refill {cycles['refill_cycles']}, {flash}; marker overhead "
             f"{cycles['marker_overhead']} subtracted per mark)",
             f"  {'#':>3} {'layer':<{width}} {'cycles':>12} {'per instruction':>15}"]
    for layer, entry in zip(layers, cycles["layers"]):
        ratio = f"{entry['per_instruction']:.2f}" if entry["per_instruction"] is not None else "-"
        lines.append(f"  {layer['index']:>3} {layer['name']:<{width}} {entry['cycles']:>12} {ratio:>15}")
    lines.append(f"  after the last layer (the run's return): {cycles['after_last_layer']}")
    return lines
