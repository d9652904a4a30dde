"""The execution order (qcc/passes/execution_order.py): the chosen order's liveness bound is the least
over all topological orders (found here by brute force, measured by memory_plan.tensor_buffers), never
above the model order's; among the orders at that bound, the one that frees a branch point's input first; a chain
keeps the model's order."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import qcc.pipeline
from helpers import check_exact
from models import quantize
from networks import NETWORKS
from qcc.ir import Graph, Node, Tensor
from qcc.passes import execution_order, memory_plan
from qcc.pipeline import compile_model

choose_order = execution_order.apply  # the pass itself, whatever a test patches into the pipeline


def topological_orders(nodes: list[Node], computed: set[str]):
    """Every order of `nodes` in which each node runs after the nodes producing its inputs."""
    if not nodes:
        yield []
        return
    produced = {name for node in nodes for name in node.outputs}
    for i, node in enumerate(nodes):
        if all(name in computed or name not in produced for name in node.inputs):
            for rest in topological_orders(nodes[:i] + nodes[i + 1:], computed | set(node.outputs)):
                yield [node] + rest


def liveness(graph: Graph, nodes: list[Node]) -> int:
    """memory_plan's liveness bound with the graph's nodes in this order."""
    kept = graph.nodes
    graph.nodes = list(nodes)
    try:
        return memory_plan.tensor_buffers(graph).liveness_bytes
    finally:
        graph.nodes = kept


def least_liveness(graph: Graph) -> int:
    return min(liveness(graph, order) for order in topological_orders(list(graph.nodes), set()))


def two_branches() -> onnx.ModelProto:
    """Two branches from the input, each a wide 1x1 Conv then a 2x2 MaxPool, joined by a Concat. The model
    lists both convolutions first, so both wide outputs are alive together; one branch at a time is less."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    for branch in "ab":
        inits += [numpy_helper.from_array(rng.standard_normal((16, 4, 1, 1)).astype(np.float32), f"{branch}_w"),
                  numpy_helper.from_array(rng.standard_normal(16).astype(np.float32) * 0.1, f"{branch}_b")]
        nodes.append(helper.make_node("Conv", ["x", f"{branch}_w", f"{branch}_b"], [f"{branch}_wide"], name=f"{branch}_conv"))
    for branch in "ab":
        nodes.append(helper.make_node("MaxPool", [f"{branch}_wide"], [f"{branch}_pooled"], name=f"{branch}_pool",
                                      kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Concat", ["a_pooled", "b_pooled"], ["y"], name="concat", axis=1))
    graph = helper.make_graph(nodes, "two_branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def compile_keeping_model_order(path, monkeypatch):
    """The compiled model, and its graph's nodes in the model's order (as they were before the pass)."""
    seen = {}

    def recording(graph, *args, **kwargs):
        seen["model order"] = list(graph.nodes)
        choose_order(graph, *args, **kwargs)

    monkeypatch.setattr(qcc.pipeline.execution_order, "apply", recording)
    return compile_model(path), seen["model order"]


def test_two_branches_run_one_after_the_other_at_the_least_peak(tmp_path, monkeypatch):
    path = quantize(two_branches(), tmp_path / "two_branches.onnx", quant_format="QDQ", activation="int8")
    compiled, model_order = compile_keeping_model_order(path, monkeypatch)
    graph, plan = compiled.graph, compiled.plan
    model_peak = liveness(graph, model_order)
    # pooling a: both wide outputs and a's pooled one are alive
    assert plan.model_order_liveness_bytes == model_peak == 2 * 16 * 8 * 8 + 16 * 4 * 4
    assert plan.liveness_bytes == liveness(graph, graph.nodes) == least_liveness(graph)
    assert plan.liveness_bytes < model_peak
    assert [n.name for n in graph.nodes][:3] in (["a_conv", "a_pool", "b_conv"], ["b_conv", "b_pool", "a_conv"])
    check_exact(path, tmp_path)  # the reordered C still equals ORT


def test_past_the_state_cap_the_heuristic_is_no_worse_than_the_model_order(tmp_path, monkeypatch):
    path = quantize(two_branches(), tmp_path / "two_branches.onnx", quant_format="QDQ", activation="int8")
    compiled, model_order = compile_keeping_model_order(path, monkeypatch)
    graph = compiled.graph
    graph.nodes = list(model_order)
    choose_order(graph, max_states=1)  # too few for the exact search: the greedy order
    assert liveness(graph, graph.nodes) == least_liveness(graph) < liveness(graph, model_order)


def random_graph(seed: int) -> Graph:
    """A random DAG of 7 nodes (some of them Reshape aliases) over one graph input, with random tensor
    sizes; unread tensors other than the graph output live for their writing step only."""
    rng = random.Random(seed)
    tensors = {"in": Tensor("in", "int8", (8,))}
    nodes = []
    for i in range(7):
        available = list(tensors)
        if i and rng.random() < 0.3:
            op, inputs = "Reshape", [rng.choice(available[1:])]
            shape = tensors[inputs[0]].shape
        else:
            op, inputs = "MaxPool", rng.sample(available, min(len(available), rng.choice([1, 2])))
            shape = (rng.choice([4, 16, 64, 100]),)
        name = f"t{i}"
        tensors[name] = Tensor(name, "int8", shape)
        nodes.append(Node(op, f"n{i}", inputs, [name]))
    return Graph("random", "random", tensors, nodes, ["in"], [f"t{len(nodes) - 1}"])


@pytest.mark.parametrize("seed", range(40))
def test_the_exact_search_finds_the_least_peak_of_every_topological_order(seed):
    graph = random_graph(seed)
    model_order = list(graph.nodes)
    choose_order(graph)
    assert liveness(graph, graph.nodes) == least_liveness(graph)
    assert execution_order.OrderProblem.of(graph).peak(list(range(len(graph.nodes)))) == liveness(graph, graph.nodes)

    graph.nodes = list(model_order)
    choose_order(graph, max_states=2)  # the heuristic
    assert liveness(graph, graph.nodes) <= liveness(graph, model_order)


@pytest.mark.parametrize("network", ["squeezenet11", "detector_head", "resnet8", "mobilenet_v2"])
def test_branching_networks_peak_no_higher_than_in_the_model_order(tmp_path, network):
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", quant_format="QDQ", activation="int8")
    compiled = compile_model(path)
    plan = compiled.plan
    assert plan.liveness_bytes == memory_plan.tensor_buffers(compiled.graph).liveness_bytes
    assert plan.liveness_bytes <= plan.model_order_liveness_bytes


def test_a_chain_keeps_the_model_order(tmp_path, monkeypatch):
    path = quantize(NETWORKS["ds_cnn"](), tmp_path / "ds_cnn.onnx", quant_format="QDQ", activation="int8")
    compiled, model_order = compile_keeping_model_order(path, monkeypatch)
    assert compiled.graph.nodes == model_order
    assert compiled.plan.liveness_bytes == compiled.plan.model_order_liveness_bytes


def branches_graph(t3_bytes: int) -> Graph:
    """in -> t0 (100 bytes) -> t1 (64), read by two branches, t1 -> t2 -> t3 and t1 -> t4, joined into the output."""
    sizes = {"in": 8, "t0": 100, "t1": 64, "t2": 8, "t3": t3_bytes, "t4": 8, "t5": 4}
    tensors = {name: Tensor(name, "int8", (size,)) for name, size in sizes.items()}
    nodes = [Node("MaxPool", "n0", ["in"], ["t0"]), Node("MaxPool", "n1", ["t0"], ["t1"]),
             Node("MaxPool", "n2", ["t1"], ["t2"]), Node("MaxPool", "n3", ["t2"], ["t3"]),
             Node("MaxPool", "n4", ["t1"], ["t4"]), Node("MaxPool", "n5", ["t3", "t4"], ["t5"])]
    return Graph("branches", "branches", tensors, nodes, ["in"], ["t5"])


def test_among_orders_at_the_least_peak_a_branch_points_input_is_freed_first():
    """in -> t0 (100 bytes: the peak, with t1) -> t1 (64), read by two branches: t1 -> t2 -> t3 and t1 -> t4, joined
    into the output. Every order peaks at 164 (t0 and t1); the model's runs the first branch to its end while t1
    stays alive (80 bytes there), the one chosen runs the second branch's node as soon as the first has read t1,
    which frees t1 (16 bytes alive after)."""
    graph = branches_graph(t3_bytes=8)
    model_order = list(graph.nodes)
    choose_order(graph)
    assert [n.name for n in graph.nodes] == ["n0", "n1", "n2", "n4", "n3", "n5"]
    assert liveness(graph, graph.nodes) == liveness(graph, model_order) == least_liveness(graph) == 164


def test_past_the_state_cap_a_tie_at_the_peak_goes_to_the_order_lower_after_it():
    """The same graph with too few states for the exact search: the greedy order (n4 as soon as n2 has read t1)
    and the model's both peak at 164 (n1), then 100 (n0); next the greedy one's highest step holds 80 bytes (t1,
    t2 and t4 as n4 runs) against the model's 88 (t1, t2 and t3 as n3 runs), so the greedy order is taken (it was
    the model's while only the peaks were compared: YOLOv5's C3 blocks, past the cap, kept the stem's output alive)."""
    graph = branches_graph(t3_bytes=16)
    problem = execution_order.OrderProblem.of(graph)
    assert problem.step_peaks([0, 1, 2, 3, 4, 5]) == [164, 100, 88, 88, 72, 24]
    assert problem.step_peaks([0, 1, 2, 4, 3, 5]) == [164, 100, 80, 72, 32, 24]
    choose_order(graph, max_states=1)
    assert [n.name for n in graph.nodes] == ["n0", "n1", "n2", "n4", "n3", "n5"]
