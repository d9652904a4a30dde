"""Write the output folder: model C and header, runtime files, manifest, Makefile, CMakeLists.txt (with
zephyr/module.yml), golden test, host runner and the memory report (report.html), and for a Cortex-M
target the bare-metal files, and a linker script and a CMake toolchain file per board. The folder is a
contract that tests, users and tools rely on (README)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import jinja2
import numpy as np

from qcc import __version__, reference
from qcc.assets import asset_dir
from qcc.errors import QccError
from qcc.ops.c_emitter import (CEmitter, c_comment_text, c_float_literal, c_identifier, c_string_literal,
                                   format_values, section_attribute)
from qcc.backend.memory_report import io_bytes, memory_report
from qcc.backend.report_html import render_html
from qcc.backend.streams import emit_stream
from qcc.ir import C_TYPES
from qcc.onnx_graph import ORT_VERSION
from qcc.ops import op_named
from qcc.pipeline import Compiled
from qcc.tflite_graph import TFLM_VERSION
from qcc.toolchain.targets import CORTEX_M, FPU_CFLAGS, TARGETS, FlashPlan, Target, target_named

MANIFEST = "model.json"
REPORT = "report.html"  # the memory report with the arena's timeline (qcc/backend/report_html.py)
BAREMETAL = "baremetal"  # runtime_c/baremetal: startup, semihosting and newlib stubs, by qcc
TARGET_RUNNER = "qcc_target_runner.c"
STREAM_SOURCE, STREAM_HEADER = "qcc_data_movement.c", "qcc_data_movement.h"  # what streamed chains call besides their kernels


def runtime_files(compiled: Compiled) -> tuple[list[str], list[str], list[str]]:
    """(files to copy, .c sources to build, headers model.c includes): every runtime header and
    include fragment, and only the sources that the model's ops call into."""
    used = [op_named(node.op) for node in compiled.graph.nodes]
    sources = {s for op in used for s in op.runtime_sources}
    headers = {op.runtime_header for op in used if op.runtime_header}
    if compiled.plan.streams:  # qcc_band_shift
        sources.add(STREAM_SOURCE)
        headers.add(STREAM_HEADER)
    sources, headers = sorted(sources), sorted(headers)
    runtime = asset_dir("runtime_c")
    shared = sorted(p.name for p in runtime.iterdir() if p.suffix in (".h", ".inc"))
    return shared + sources, sources, headers


def _float_text(value: np.float32) -> str:
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def io_entries(compiled: Compiled) -> tuple[list[dict], list[dict]]:
    graph, prefix = compiled.graph, compiled.options.name
    taken: set[str] = set()
    entries = {"input": [], "output": []}
    for role, names in (("input", graph.inputs), ("output", graph.outputs)):
        for index, tensor_name in enumerate(names):
            tensor = graph.tensor(tensor_name)
            c_name = c_identifier(graph.public_name(tensor_name))
            if c_name.lower().startswith(("qcc_", f"{prefix.lower()}_")):  # the runtime's and the model's own names
                c_name = "t_" + c_name
            # unique also in upper case: each name also makes macros (NAME_INPUT_X_COUNT)
            while c_name.upper() in taken:
                c_name += "_"
            taken.add(c_name.upper())
            quant = tensor.quant
            if tensor.dtype == "float32":  # a float boundary: its QuantizeLinear/DequantizeLinear has the scale
                quant = None
            scale, zero = quant.scalar() if quant is not None else (None, None)
            entries[role].append({
                "tensor": tensor_name, "name": graph.public_name(tensor_name), "c_name": c_name, "role": role,
                "name_comment": c_comment_text(graph.public_name(tensor_name)),
                "name_string": c_string_literal(graph.public_name(tensor_name)),
                "index": index, "dtype": tensor.dtype, "ctype": C_TYPES[tensor.dtype], "shape": list(tensor.shape),
                "shape_text": "x".join(map(str, tensor.shape)), "count": tensor.size,
                "scale": None if scale is None else float(scale), "zero_point": zero,
                "scale_text": None if scale is None else _float_text(scale),
                "scale_literal": None if scale is None else c_float_literal(scale),
                "macro": f"{prefix}_{role}_{c_name}".upper(),
                "decl": f"{'const ' if role == 'input' else ''}{C_TYPES[tensor.dtype]} *{c_name}",
                "is_float": int(tensor.dtype == "float32"), "is_signed": int(tensor.dtype in ("int8", "int16")),
                "golden_ctype": "uint32_t" if tensor.dtype == "float32" else C_TYPES[tensor.dtype],
            })
    return entries["input"], entries["output"]


def _golden_values(array: np.ndarray) -> str:
    """Golden data as C initializers; floats as their IEEE-754 bits, so NaN and infinities survive."""
    if array.dtype == np.float32:
        return format_values(np.ascontiguousarray(array).view(np.uint32))
    return format_values(array)


def emit_layers(compiled: Compiled, inputs: list[dict], outputs: list[dict]) -> tuple[CEmitter, list[dict], list[dict]]:
    """Run every op's C emission: the emitter (declarations), the steps of the run function, and
    one manifest entry per layer with its MACs and the flash bytes of its constants."""
    graph = compiled.graph
    emitter = CEmitter(graph, compiled.plan, compiled.options.name, {e["tensor"]: e["c_name"] for e in inputs + outputs},
                       compiled.options.weights_section)
    steps, layers = [], []
    plan = compiled.plan
    streamed_in = {id(n): step for step, stream in plan.streams.items() for n in stream.nodes}
    for node in graph.nodes:
        op = op_named(node.op)
        index = len(steps)
        in_shapes = ", ".join("x".join(map(str, graph.tensor(t).shape)) for t in node.inputs if not graph.tensor(t).is_const)
        out_shape = "x".join(map(str, graph.tensor(node.outputs[0]).shape))
        onnx_op = node.attrs.get("onnx_op", node.op)
        bytes_before = emitter.weights_bytes
        if index in plan.streams:
            code, first_calls = emit_stream(plan.streams[index], graph, emitter, index)
            for earlier in steps[index - len(plan.streams[index].nodes) + 1:]:
                earlier["row_call"] = first_calls.get(earlier["node"])  # None: a flattening alias
            row_call = first_calls[node.name]
        elif id(node) in streamed_in:
            code = f"/* streamed: runs row by row in step {streamed_in[id(node)]} */"
            row_call = None  # set with its chain's code, at the chain's step
        else:
            code = op.emit(node, graph, emitter)
            row_call = None
        trace = [{"output": k, "pointer": emitter.tensor(name), "bytes": graph.tensor(name).nbytes}
                 for k, name in enumerate(node.outputs) if plan.storage[name].kind != "stream"]
        if not trace:  # streamed: never whole; an empty record still marks the layer (qcc bench counts them)
            trace = [{"output": 0, "pointer": f"&{emitter.arena_symbol}.bytes[0]", "bytes": 0}]
        # row_call: a streamed layer's first call (a row of it), for qcc explain
        steps.append({"comment": c_comment_text(f"{onnx_op} '{node.name}': {in_shapes} -> {out_shape}"), "code": code,
                      "index": len(steps), "trace": trace, "node": node.name, "row_call": row_call})
        layers.append({"op": onnx_op, "name": node.name, "macs": op.macs(node, graph),
                       "weights_bytes": emitter.weights_bytes - bytes_before,
                       "output_shape": list(graph.tensor(node.outputs[0]).shape)})
    return emitter, steps, layers


def state_layout(graph, emitter: CEmitter) -> dict | None:
    """What the templates declare for a model with state (graph.states): the buffer's symbol, bytes and initial
    bytes (each variable's fill byte), each variable's region for NAME_reset(), and the first inference's
    bytes where an initialisation sets any (else None)."""
    if not graph.states:
        return None
    offsets, size = graph.state_offsets()
    initial = np.zeros(size, np.uint8)
    first = np.zeros(size, np.uint8)
    variables = []
    for state in graph.states:
        tensor = graph.tensor(state.name)
        at = offsets[state.name]
        initial[at:at + tensor.nbytes] = state.fill
        first[at:at + tensor.nbytes] = (np.ascontiguousarray(state.first_call).view(np.uint8).reshape(-1)
                                        if state.first_call is not None else state.fill)
        variables.append({"offset": at, "bytes": tensor.nbytes, "fill": state.fill,
                          "label": c_comment_text(state.label)})
    differs = not np.array_equal(first, initial)
    return {"symbol": emitter.state_symbol, "bytes": size, "variables": variables,
            "initial": format_values(initial) if initial.any() else None,
            "first_call": format_values(first) if differs else None,
            "first_call_symbol": emitter.first_call_symbol, "started_symbol": emitter.started_symbol}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(asset_dir("templates"))), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def ram_data_bytes(compiled: Compiled) -> int:
    """Static RAM of a bare-metal image besides the stack and heap: the arena, the output buffers
    and the buffers float inputs are copied into (inputs as codes are read from flash), or with
    --io-in-arena the arena alone; and the state that persists between inferences."""
    graph = compiled.graph
    state = graph.state_offsets()[1]
    if graph.io_in_arena:
        return compiled.plan.arena_bytes + state
    buffers = [graph.tensor(t).nbytes for t in graph.outputs]
    buffers += [graph.tensor(t).nbytes for t in graph.inputs if graph.tensor(t).dtype == "float32"]
    return compiled.plan.arena_bytes + state + sum(buffers)


def model_arrays(compiled: Compiled, array_bytes: dict[str, int]) -> tuple[dict[str, int], int]:
    """The model's constant arrays a board may place (C name -> bytes), and the bytes pinned to the first
    region: with --weights-section every constant is in the user's section, which qcc's linker script
    leaves where the linker puts it."""
    if compiled.options.weights_section is not None:
        return {}, sum(array_bytes.values())
    return dict(array_bytes), 0


def check_fits(target: Target, compiled: Compiled, array_bytes: dict[str, int], test_bytes: int) -> FlashPlan | None:
    """Refuse a Cortex-M target whose board cannot hold the model, its buffers, its constants and the test
    data; returns where the constants go (None on the host)."""
    arrays, pinned = model_arrays(compiled, array_bytes)
    refusal = target.refusal(ram_data_bytes(compiled), arrays, test_bytes, pinned)
    if refusal is not None:
        raise QccError(refusal)
    return None if target.is_host else target.plan_flash(arrays, test_bytes, pinned)


def boards_for(compiled: Compiled, array_bytes: dict[str, int], test_bytes: int) -> dict[str, FlashPlan]:
    """The boards the folder gets bare-metal rules for, each with where its constants go: none for the
    host, else every Cortex-M board the model fits on (with --fpu, every one with an FPU); the chosen
    target must be one of them."""
    target = target_named(compiled.options.target)
    if target.is_host:
        return {}
    check_fits(target, compiled, array_bytes, test_bytes)
    arrays, pinned = model_arrays(compiled, array_bytes)
    boards = {}
    for name in CORTEX_M:
        board = TARGETS[name]
        if (board.fpu or not compiled.options.fpu) and board.refusal(ram_data_bytes(compiled), arrays, test_bytes,
                                                                     pinned) is None:
            boards[name] = board.plan_flash(arrays, test_bytes, pinned)
    return boards


def linker_script(board: Target, flash: FlashPlan) -> str:
    return _environment().get_template("baremetal.ld.j2").render(target=board, flash=flash, version=__version__)


def flash_record(board: Target, flash: FlashPlan) -> dict:
    """model.json's account of which read-only region holds what, for the chosen target."""
    regions = [board.flash, *board.more_flash]
    return {"target": board.name, "regions": [
        {"name": region.qemu_name, "origin": f"0x{region.origin:08x}", "bytes": region.length,
         "model_bytes": flash.model_bytes[k], "test_bytes": flash.test_bytes if flash.test_region == k else 0,
         "arrays": "the rest" if k == 0 else flash.moved[k - 1]}
        for k, region in enumerate(regions) if k == 0 or flash.model_bytes[k] or flash.test_region == k]}


def replan_test_data(compiled: Compiled, out_dir: Path, manifest: dict, test_bytes: int) -> None:
    """A runner's test data in place of the golden cases: check it fits beside the model's constants, placed as
    at compile time (model.json's "flash"), and write the board's linker script for it."""
    target = target_named(compiled.options.target)
    if target.is_host:
        return
    record = manifest["flash"]["regions"]
    regions = [target.flash, *target.more_flash]
    by_name = {r["name"]: r for r in record}
    flash = FlashPlan([list(by_name.get(r.qemu_name, {}).get("arrays", [])) for r in regions[1:]],
                      [by_name.get(r.qemu_name, {}).get("model_bytes", 0) for r in regions])
    placed = flash.with_test_data(target, test_bytes)
    if placed is None:
        raise QccError(target.flash_refusal(sum(flash.model_bytes) + test_bytes))
    (out_dir / f"qcc_{target.name}.ld").write_text(linker_script(target, placed))


def _case_arrays(inputs: list[dict], outputs: list[dict], case_inputs: list[np.ndarray],
                 expected: list[np.ndarray]) -> dict:
    return {"inputs": [{**e, "data": _golden_values(np.asarray(v, dtype=e["dtype"]))} for e, v in zip(inputs, case_inputs)],
            "outputs": [{**e, "data": _golden_values(v)} for e, v in zip(outputs, expected)]}


def kernel_types(steps: list[dict]) -> list[str]:
    """The activation types (s8, u8) of the typed runtime calls in the steps, sorted; a call ending in
    _s8 or _u8 of any runtime file counts, so the list errs on the side of compiling more."""
    return sorted({m for step in steps for m in re.findall(r"\bqcc_\w+_(s8|u8)\(", step["code"])})


COMMAND_COMMENT_LIMIT = 4000  # the command atop NAME.c: whole, unless tensor names from the model make it huge


def command_text(compiled: Compiled, golden: int | str | None) -> str:
    """The command that makes this folder, for the comment atop NAME.c: the model's file name, not its path."""
    flags = compiled.options.flags() + (["--golden", str(golden)] if golden is not None and golden != "python" else [])
    return " ".join(shlex.quote(word) for word in ["qcc", "compile", Path(compiled.graph.source).name, *flags])


ZEPHYR_MODULE = "zephyr/module.yml"  # the folder as a Zephyr module (its CMakeLists.txt registers the libraries)


def cmake_lists(env: jinja2.Environment, common: dict, target: Target, runtime: list[str], sources: list[str],
                steps: list[dict], boards: list[Target], baremetal: list[str]) -> str:
    """CMakeLists.txt: the model's library and the shared runtime (its sources, and every runtime file to
    compare between folders), the golden test, and for the boards their bare-metal pieces."""
    return env.get_template("CMakeLists.txt.j2").render(
        common, runtime_sources=sources, runtime_files=runtime + baremetal, kernel_types=kernel_types(steps),
        boards=boards, default_board="" if target.is_host else target.name,
        baremetal_sources=[f for f in baremetal if f.endswith(".c")])


def write_output(compiled: Compiled, out_dir: Path, golden_cases: list[list[np.ndarray]],
                 golden: int | str | None = None) -> dict:
    """Render everything into out_dir (which must exist and be empty); returns the manifest. `golden`: how
    the golden cases were asked for, for the record: a count, an .npz's file name, "python" (input sets
    given through the API) or None (the default)."""
    graph, plan, options = compiled.graph, compiled.plan, compiled.options
    name = options.name
    if options.weights_section is not None and options.weights_section == options.arena_section:
        # const data and a writable variable in one section: the compiler stops with "section type conflict"
        raise QccError(f"--weights-section and --arena-section are both {options.weights_section!r}: "
                       "the constants are read-only and the arena is written; give two sections")
    arena_section = section_attribute("--arena-section", options.arena_section, writable=True)
    inputs, outputs = io_entries(compiled)
    emitter, steps, layers = emit_layers(compiled, inputs, outputs)
    if graph.io_in_arena:
        for entry in inputs + outputs:
            entry["arena_pointer"] = emitter.tensor(entry["tensor"])
    runtime, sources, headers = runtime_files(compiled)
    objects = [f"{name}.o"] + [f[:-2] + ".o" for f in sources]

    env = _environment()
    common = {"name": name, "NAME": name.upper(), "version": __version__, "source": c_comment_text(Path(graph.source).name),
              "inputs": inputs, "outputs": outputs, "args": inputs + outputs, "arena_bytes": plan.arena_bytes,
              "weights_bytes": emitter.weights_bytes, "rounding": options.rounding, "float_io": options.float_io,
              "arena_symbol": emitter.arena_symbol, "arena_section": arena_section,
              "declarations": emitter.declarations, "steps": steps, "runtime_headers": headers, "fpu": options.fpu,
              "fpu_cflags": " ".join(FPU_CFLAGS), "io_in_arena": graph.io_in_arena,
              "wide_weights": graph.wide_weights, "state": state_layout(graph, emitter), "command": c_comment_text(command_text(compiled, golden), COMMAND_COMMENT_LIMIT)}

    # A model with state runs its input sets as consecutive frames, then again after NAME_reset().
    frames = list(golden_cases) * (2 if graph.states else 1)
    reset_before = len(golden_cases) if graph.states else None
    expected = reference.run_frames(graph, frames, reset_before)
    cases = [_case_arrays(inputs, outputs, frame, want) for frame, want in zip(frames, expected)]
    golden_bytes = sum(graph.tensor(t).nbytes for t in graph.inputs + graph.outputs) * len(cases)
    flash_plans = boards_for(compiled, emitter.array_bytes, golden_bytes)
    boards = [TARGETS[n] for n in flash_plans]
    baremetal = sorted(p.name for p in (asset_dir("runtime_c") / BAREMETAL).iterdir()) if boards else []

    files = {
        f"{name}.h": env.get_template("model.h.j2").render(common),
        f"{name}.c": env.get_template("model.c.j2").render(common),
        "qcc_config.h": env.get_template("qcc_config.h.j2").render(common),
        "Makefile": env.get_template("Makefile.j2").render(common, objects=objects, sources=[f"{name}.c"] + list(sources),
                                                           kernel_types=kernel_types(steps),
                                                           boards=boards,
                                                           baremetal_sources=[f for f in baremetal if f.endswith(".c")]),
        f"test_{name}.c": env.get_template("test_model.c.j2").render(common, cases=cases, reset_before=reset_before),
        "qcc_runner.c": env.get_template("qcc_runner.c.j2").render(common),
        REPORT: render_html(memory_report(compiled)),
        "CMakeLists.txt": cmake_lists(env, common, target_named(options.target), runtime, sources, steps, boards,
                                      baremetal),
        ZEPHYR_MODULE: env.get_template("zephyr_module.yml.j2").render(common),
    }
    for board in boards:
        files[f"qcc_{board.name}.ld"] = linker_script(board, flash_plans[board.name])
        files[f"qcc_{board.name}.cmake"] = env.get_template("toolchain.cmake.j2").render(target=board, version=__version__)
    for filename, text in files.items():
        (out_dir / filename).parent.mkdir(exist_ok=True)  # zephyr/
        (out_dir / filename).write_text(text)
    for filename in runtime:
        shutil.copyfile(asset_dir("runtime_c") / filename, out_dir / filename)
    for filename in baremetal:
        shutil.copyfile(asset_dir("runtime_c") / BAREMETAL / filename, out_dir / filename)

    def public(entry):
        return {k: entry[k] for k in ("name", "c_name", "dtype", "shape", "scale", "zero_point")}

    manifest = {
        "name": name, "qcc_version": __version__, "source": Path(graph.source).name,
        # every option, defaults included, and the command line that gives them (without the paths)
        "options": {**options.record(), "golden": golden}, "command": command_text(compiled, golden),
        "rounding": options.rounding,
        "float_io": options.float_io, "inputs": [public(e) for e in inputs], "outputs": [public(e) for e in outputs],
        "arena_bytes": plan.arena_bytes, "weights_bytes": emitter.weights_bytes,
        # all the RAM the model needs, as TFLM counts its arena: the inputs and outputs too (in the arena with
        # --io-in-arena, else the caller's buffers)
        "io_bytes": io_bytes(graph), "state_bytes": graph.state_offsets()[1],
        "ram_bytes": plan.arena_bytes + graph.state_offsets()[1] + (0 if graph.io_in_arena else io_bytes(graph)),
        "layers": layers,
        "golden_cases": len(cases),
        # what the C's outputs are exact to (in the scheme named by `rounding`: ort for ONNX Runtime, tflm for TFLM)
        "ground_truth": ({"runtime": "tflite-micro", "version": TFLM_VERSION} if graph.frontend == "tflite"
                         else {"runtime": "onnxruntime", "version": ORT_VERSION}),
        "cut": None if compiled.cut_summary is None else {
            "inputs": list(options.cut_inputs), "outputs": list(options.cut_outputs), "summary": compiled.cut_summary},
    }
    if options.weights_section is not None or options.arena_section is not None:  # absent by default, as before
        manifest["sections"] = {"weights": options.weights_section, "arena": options.arena_section}
    if boards:  # a Cortex-M target: which of its read-only regions holds what
        manifest["flash"] = flash_record(TARGETS[options.target], flash_plans[options.target])
    if options.fpu:  # absent by default, as before: the C uses float instructions (the build must enable the FPU)
        manifest["fpu"] = True
    if graph.io_in_arena:  # absent by default, as before: model_invoke() on the arena's inputs and outputs
        manifest["io_in_arena"] = True
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_target_runner(compiled: Compiled, out_dir: Path, cases: list[list[np.ndarray]], manifest: dict) -> str:
    """qcc_target_runner.c in a folder written for a Cortex-M target (qcc verify --target): the
    input sets as const arrays, each output printed in hex on the console. Returns its name."""
    inputs, outputs = io_entries(compiled)
    input_bytes = sum(compiled.graph.tensor(t).nbytes for t in compiled.graph.inputs) * len(cases)
    replan_test_data(compiled, out_dir, manifest, input_bytes)
    arrays = [_case_arrays(inputs, outputs, case_inputs, []) for case_inputs in cases]
    text = _environment().get_template("qcc_target_runner.c.j2").render(
        name=compiled.options.name, version=__version__, inputs=inputs, outputs=outputs, cases=arrays)
    (out_dir / TARGET_RUNNER).write_text(text)
    return TARGET_RUNNER


BENCH_RUNNER = "qcc_bench_runner.c"


def write_bench_runner(compiled: Compiled, out_dir: Path, inputs: list[np.ndarray], manifest: dict) -> str:
    """qcc_bench_runner.c in a folder written for a Cortex-M target (qcc bench): one input set as
    const arrays, one inference between instruction-counter marks, the stack's high-water mark on
    the console. Returns its name."""
    entries, outputs = io_entries(compiled)
    replan_test_data(compiled, out_dir, manifest, sum(compiled.graph.tensor(t).nbytes for t in compiled.graph.inputs))
    text = _environment().get_template("qcc_bench_runner.c.j2").render(
        name=compiled.options.name, version=__version__, inputs=entries, outputs=outputs,
        cases=[_case_arrays(entries, outputs, inputs, [])], io_in_arena=compiled.graph.io_in_arena)
    (out_dir / BENCH_RUNNER).write_text(text)
    return BENCH_RUNNER
