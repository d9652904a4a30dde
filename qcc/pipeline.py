"""The compiler's stages in order: ONNX or TFLite -> IR -> passes -> a prepared graph with a memory plan."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qcc.errors import FloatNodeError, QccError, malformed
from qcc.frontend.onnx import (batched_matmul, boundary_movers, constant_folding, float_islands, matmul_add_fusion,
                               node_elimination, qdq, qdq_propagation, subgraph, weight_bias_quantization)
from qcc.frontend.onnx.onnx_loader import import_graph, load_model, refuse_dynamic_quantization
from qcc.frontend.tflite.importer import import_tflite
from qcc.ir import Graph, MemoryPlan
from qcc.numerics import SCHEMES
from qcc.ops import op_named
from qcc.ops.c_emitter import section_attribute
from qcc.passes import (execution_order, flatten_layout, fold_activations, fold_pads, fuse_tables, input_layout,
                         io_boundary, memory_plan, range_analysis, state_pairs)
from qcc.tflite_graph import is_tflite, read_tflite
from qcc.toolchain.targets import fpu_refusal, target_named

ROUNDING_SCHEMES = tuple(SCHEMES)


@dataclass
class Options:
    name: str = "model"
    float_io: bool = False
    rounding: str | None = None  # None: the model's own (model_rounding)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    cut_inputs: list[str] = field(default_factory=list)  # --inputs: compile from these tensors
    cut_outputs: list[str] = field(default_factory=list)  # --outputs: compile up to these tensors
    target: str = "host"  # --target: a name of qcc.toolchain.targets.TARGETS
    weights_section: str | None = None  # --weights-section: the linker section of every constant
    arena_section: str | None = None  # --arena-section: the linker section of the arena
    fpu: bool = False  # --fpu: the `ort` scheme's requantization in float32 instructions (targets with an FPU)
    whole_tensors: bool = False  # --whole-tensors: no in-place or streamed execution (the plan of whole tensors)
    io_in_arena: bool = False  # --io-in-arena: inputs and outputs live in the arena (model_invoke, as TFLM's Invoke)
    state_pairs: list[tuple[str, str]] = field(default_factory=list)  # --state INPUT=OUTPUT: kept inside the C
    wide_weights: bool = False  # --wide-weights: fully connected and gemm conv weights as int16 pairs (faster, twice the bytes)

    def record(self) -> dict:
        """The options as model.json records them (`options`): every one, defaults included."""
        return {"name": self.name, "rounding": self.rounding, "float_io": self.float_io,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()}, "inputs": list(self.cut_inputs),
                "outputs": list(self.cut_outputs), "target": self.target, "fpu": self.fpu,
                "weights_section": self.weights_section, "arena_section": self.arena_section,
                "whole_tensors": self.whole_tensors, "io_in_arena": self.io_in_arena,
                "state": [list(pair) for pair in self.state_pairs], "wide_weights": self.wide_weights}

    def flags(self) -> list[str]:
        """The command line's flags that give these options: --name and --rounding always, the others where
        they differ from the default (the model's path and -o are not options)."""
        flags = ["--name", self.name, "--rounding", str(self.rounding)]
        flags += [f for name, dims in self.input_shapes.items() for f in ("--input-shape", f"{name}={','.join(map(str, dims))}")]
        flags += ["--inputs", ",".join(self.cut_inputs)] if self.cut_inputs else []
        flags += ["--outputs", ",".join(self.cut_outputs)] if self.cut_outputs else []
        flags += ["--target", self.target] if self.target != "host" else []
        flags += [flag for flag, on in (("--fpu", self.fpu), ("--float-io", self.float_io),
                                        ("--whole-tensors", self.whole_tensors), ("--io-in-arena", self.io_in_arena),
                                        ("--wide-weights", self.wide_weights)) if on]
        flags += ["--weights-section", self.weights_section] if self.weights_section is not None else []
        flags += ["--arena-section", self.arena_section] if self.arena_section is not None else []
        flags += [f for a, b in self.state_pairs for f in ("--state", f"{a}={b}")]
        return flags


@dataclass
class Compiled:
    graph: Graph
    plan: MemoryPlan
    options: Options
    warnings: list[str] = field(default_factory=list)
    # With --inputs/--outputs: the cut model (what ORT must agree with) and what was left out.
    cut_model: onnx.ModelProto | None = None
    cut_summary: str | None = None


def model_rounding(path: str | Path, requested: str | None) -> str:
    """The rounding scheme to compile `path` in: the one asked for, else the model's own runtime's
    (`ort` for ONNX, ONNX Runtime's arithmetic; `tflm` for .tflite, TFLite Micro's)."""
    if not is_tflite(path):
        return requested or "ort"
    if requested == "ort":
        raise QccError(f"{path}: --rounding ort is ONNX Runtime's arithmetic; a .tflite model computes what TFLite "
                       "Micro computes: use --rounding tflm (the default, exact to TFLM) or single")
    return requested or "tflm"


# --name values that would destroy or shadow something when NAME.c and NAME.h sit in the folder: the
# makefiles make reads (it rebuilds Makefile from Makefile.c with its built-in rule, then fails and deletes
# it), the C standard library's headers (the folder is on the include path of a CMake project: NAME.h
# would replace <NAME.h> for the whole firmware), and the device names Windows reserves (such a file
# cannot be created or copied there). Compared case-insensitively: macOS and Windows file systems are.
MAKEFILE_NAMES = ("makefile", "gnumakefile")
C_HEADER_NAMES = ("assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646", "limits", "locale",
                  "math", "setjmp", "signal", "stdalign", "stdarg", "stdatomic", "stdbool", "stddef", "stdint", "stdio",
                  "stdlib", "stdnoreturn", "string", "tgmath", "threads", "time", "uchar", "wchar", "wctype",
                  # POSIX and newlib headers a firmware includes
                  "unistd", "strings", "alloca", "malloc", "memory", "fcntl", "sched", "pthread", "newlib", "reent")
# The folder's CMakeLists.txt makes a library target called NAME: CMake's own targets (those of its
# generators and of include(CTest)'s dashboards) cannot be redefined.
CMAKE_TARGET_NAMES = ("all", "all_build", "help", "install", "install_strip", "install_local", "preinstall", "clean",
                      "edit_cache", "rebuild_cache", "zero_check", "test", "run_tests", "package", "package_source",
                      "list_install_components")
CTEST_DASHBOARD_PREFIXES = ("Experimental", "Nightly", "Continuous")
WINDOWS_DEVICE_NAMES = ("con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10)))


def name_refusal(name) -> str | None:
    """Why --name cannot be used, or None. NAME prefixes every symbol and macro and names NAME.c,
    NAME.h and test_NAME.c."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f"--name {name!r}: must be a C identifier (letters, digits, underscores)"
    if name.startswith("qcc_"):
        return f"--name {name!r}: the qcc_ prefix belongs to the runtime files and symbols; choose another name"
    if name.startswith("_"):
        return (f"--name {name!r}: C reserves identifiers that start with an underscore for the compiler and its "
                "library (every symbol would start with it); choose a name that starts with a letter")
    lower = name.lower()
    if lower in MAKEFILE_NAMES:
        return (f"--name {name!r}: the folder's {name}.c would be the makefile's source: make rebuilds its makefile "
                "from it and deletes the Makefile; choose another name")
    if lower in C_HEADER_NAMES:
        return (f"--name {name!r}: {name}.h would stand in for the C library's <{lower}.h> wherever the folder is on "
                "the include path; choose another name")
    if lower in CMAKE_TARGET_NAMES or name.startswith(CTEST_DASHBOARD_PREFIXES):
        return (f"--name {name!r}: CMake has a target of this name, and the folder's CMakeLists.txt makes the library "
                f"target {name}; choose another name")
    if lower in WINDOWS_DEVICE_NAMES:
        return f"--name {name!r}: Windows reserves {name.upper()} as a device name: no file {name}.c can exist there"
    return None


def check_options(options: Options) -> None:
    """Refuse option combinations that cannot work, before any file is read."""
    refusal = name_refusal(options.name)
    if refusal is not None:
        raise QccError(refusal)
    section_attribute("--weights-section", options.weights_section, writable=False)
    section_attribute("--arena-section", options.arena_section, writable=True)
    if options.fpu:
        refusal = fpu_refusal(target_named(options.target), options.rounding)
        if refusal is not None:
            raise QccError(refusal)


def compile_model(path: str | Path, options: Options | None = None) -> Compiled:
    options = options or Options()
    options.rounding = model_rounding(path, options.rounding)
    check_options(options)
    if is_tflite(path):
        graph, cut_model, cut_summary = _import_tflite(path, options), None, None
    else:
        graph, cut_model, cut_summary = _import_onnx(path, options)
    graph.rounding = options.rounding
    graph.fpu = options.fpu
    graph.io_in_arena = options.io_in_arena
    graph.wide_weights = options.wide_weights
    io_boundary.apply(graph, options.float_io)
    state_pairs.apply(graph, options.state_pairs)  # --state: input/output pairs kept inside the C between calls
    fold_activations.apply(graph)
    fold_pads.apply(graph)  # a Pad of the zero point before a convolution is the convolution's own padding
    input_layout.apply(graph)  # a channels-last input image read in place by its convolutions, not transposed
    flatten_layout.apply(graph)  # an image flattened channels last into a fully connected layer: its weights permuted
    warnings = range_analysis.analyze(graph)
    for node in graph.nodes:
        with malformed(str(path), node.name, node.attrs.get("onnx_op", node.op)):
            op_named(node.op).prepare(node, graph)
    fuse_tables.apply(graph)  # x * sigmoid(x) (SiLU) and the like: one table of x
    model_order_liveness = memory_plan.tensor_buffers(graph).liveness_bytes
    execution_order.apply(graph)  # branches in the order that keeps the fewest bytes alive at once
    # the state's assignments after every read of it (a stable sort: the rest keeps its order)
    graph.nodes.sort(key=lambda node: op_named(node.op).runs_last)
    plan = memory_plan.plan(graph, below_liveness=not options.whole_tensors)
    plan.model_order_liveness_bytes = model_order_liveness
    return Compiled(graph, plan, options, warnings, cut_model, cut_summary)


def _import_tflite(path: str | Path, options: Options) -> Graph:
    """A .tflite file's subgraph 0 as the IR, in its own tensors and layouts at the C's boundary."""
    for given, flag in ((options.input_shapes, "--input-shape"), (options.cut_inputs, "--inputs"),
                        (options.cut_outputs, "--outputs"), (options.float_io, "--float-io")):
        if given:
            raise QccError(f"{path}: {flag} is for ONNX models; a .tflite model compiles whole, with its own fixed "
                           "shapes and the input and output types it declares")
    return import_tflite(read_tflite(path))


def _import_onnx(path: str | Path, options: Options):
    """An ONNX file as the IR, with the cut model ORT must agree with where --inputs/--outputs cut it."""
    loaded = load_model(path, options.input_shapes, options.cut_inputs)
    refuse_dynamic_quantization(loaded, str(path))
    cut_model = cut_summary = None
    if options.cut_inputs or options.cut_outputs:
        cut_model, cut_summary = subgraph.cut(loaded, options.cut_inputs, options.cut_outputs, str(path))
        loaded = cut_model
    try:
        graph = import_graph(_frontend(copy.deepcopy(loaded), str(path)), str(path))
    except FloatNodeError as refused:  # say where to cut to compile what comes before
        node = next((n for n in loaded.graph.node if refused.tensor in n.output), None)
        raise QccError(str(refused) + (subgraph.suggest_outputs(loaded, node) if node is not None else "")) from None
    return graph, cut_model, cut_summary


def _frontend(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """ONNX -> the QOperator-form ONNX graph that import_graph reads."""
    model = constant_folding.fold(model, source)
    # ONNX Runtime's graph rewrites before its QDQ fusion, in its order, then the fusion itself
    model = node_elimination.eliminate(model)
    # qcc's own, exact whatever ORT does there; before the Q/DQ propagation, which would otherwise copy
    # a boundary QuantizeLinear or DequantizeLinear into groups ORT may leave in float (exactly)
    model = boundary_movers.move(model, source)
    model = qdq_propagation.propagate(matmul_add_fusion.fuse(model))
    model = weight_bias_quantization.quantize_biases(model, source)
    return batched_matmul.split(float_islands.replace(qdq.fuse(model, source), source))
