"""The compiler's stages in order: ONNX -> IR -> passes -> a prepared graph with a memory plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qcc.frontend import (constant_folding, float_islands, matmul_add_fusion, node_elimination, qdq, qdq_propagation,
                          weight_bias_quantization)
from qcc.frontend.onnx_loader import import_graph, load_model
from qcc.ir import Graph
from qcc.numerics import SCHEMES
from qcc.ops import op_named
from qcc.passes import fold_activations, io_boundary, memory_plan, range_analysis

ROUNDING_SCHEMES = tuple(SCHEMES)


@dataclass
class Options:
    name: str = "model"
    float_io: bool = False
    rounding: str = "ort"
    input_shapes: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Compiled:
    graph: Graph
    plan: memory_plan.MemoryPlan
    options: Options
    warnings: list[str] = field(default_factory=list)


def compile_model(path: str | Path, options: Options | None = None) -> Compiled:
    options = options or Options()
    model = constant_folding.fold(load_model(path, options.input_shapes), str(path))
    # ONNX Runtime's graph rewrites before its QDQ fusion, in its order, then the fusion itself
    model = qdq_propagation.propagate(matmul_add_fusion.fuse(node_elimination.eliminate(model)))
    model = weight_bias_quantization.quantize_biases(model, str(path))
    model = float_islands.replace(qdq.fuse(model, str(path)), str(path))
    graph = import_graph(model, str(path))
    graph.rounding = options.rounding
    io_boundary.apply(graph, options.float_io)
    fold_activations.apply(graph)
    warnings = range_analysis.analyze(graph)
    for node in graph.nodes:
        op_named(node.op).prepare(node, graph)
    return Compiled(graph, memory_plan.plan(graph), options, warnings)
