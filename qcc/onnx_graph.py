"""Lookups over an ONNX graph that the ONNX-level passes (QDQ fusion, float islands) share:
who produces and who reads each tensor, constants, element types and static shapes."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.errors import QccError

FLT_MAX = float(np.finfo(np.float32).max)
# The ONNX Runtime release whose arithmetic qcc's `ort` scheme reproduces (the test extra pins it).
ORT_VERSION = "1.32.0"


def attribute(node: onnx.NodeProto, name: str, default=None):
    """A node's attribute value (strings decoded; undecodable bytes become U+FFFD, so that the
    reader's own check refuses the value by name), or the default."""
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return default


def quantize_output_type(node: onnx.NodeProto, zero_point_type: int | None) -> int:
    """A QuantizeLinear's output element type: its zero point's, else the output_dtype attribute
    (opset 21), else uint8."""
    return zero_point_type or attribute(node, "output_dtype", 0) or onnx.TensorProto.UINT8


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset for the default ONNX domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def opset_of(model: onnx.ModelProto, domain: str) -> int:
    """The model's opset for a node's domain (the default domain when absent: 13; another: 1)."""
    if domain in ("", "ai.onnx"):
        return default_opset(model)
    return next((o.version for o in model.opset_import if o.domain == domain), 1)


class GraphIndex:
    def __init__(self, graph: onnx.GraphProto, opset: int = 13):
        self.graph = graph
        self.opset = opset  # the model's default-domain opset
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.graph_outputs = {o.name for o in graph.output}
        infos = list(graph.value_info) + list(graph.input) + list(graph.output)
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in infos}
        self.types.update({init.name: init.data_type for init in graph.initializer})
        self.shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in infos}

    def single_consumer(self, name: str) -> onnx.NodeProto | None:
        consumers = self.consumers.get(name, [])
        return consumers[0] if len(consumers) == 1 and name not in self.graph_outputs else None

    def producer_of(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output, None for a tensor computed at run time."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        return None

    def clip_bounds(self, node: onnx.NodeProto) -> tuple[np.float32, np.float32] | None:
        """A Clip's (min, max) as ORT reads them (GetClipConstantMinMax): attributes before opset 11,
        optional inputs from 11; an absent bound is float32's lowest or highest value. None when a
        bound is computed at run time."""
        defaults = (np.float32(-FLT_MAX), np.float32(FLT_MAX))
        if self.opset < 11:
            return tuple(np.float32(attribute(node, name, d)) for name, d in zip(("min", "max"), defaults))
        bounds = []
        for i, default in zip((1, 2), defaults):
            name = node.input[i] if len(node.input) > i else ""
            value = self.constant(name) if name else np.asarray(default)
            if value is None or value.size != 1:
                return None
            bounds.append(np.float32(value.reshape(())))
        return tuple(bounds)

    def elem_type(self, name: str) -> int:
        if name in self.types:
            return self.types[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":
            has_zero = len(node.input) > 2 and node.input[2]
            return quantize_output_type(node, self.elem_type(node.input[2]) if has_zero else None)
        return onnx.TensorProto.UNDEFINED


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder the nodes so that each comes after the producers of its inputs, after a pass appended
    some. The node order is the execution order, which the memory plan follows: nodes already in
    order keep it, and each appended node moves to just before its first reader (a depth-first
    walk in the given order, each node after its producers)."""
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output}
    placed, on_path, ordered = [False] * len(nodes), [False] * len(nodes), []
    for root in range(len(nodes)):
        if placed[root]:
            continue
        path, on_path[root] = [root], True
        while path:
            node = nodes[path[-1]]
            waiting = next((producer[name] for name in node.input if name in producer and not placed[producer[name]]), None)
            if waiting is None:
                placed[path[-1]], on_path[path[-1]] = True, False
                ordered.append(node)
                path.pop()
            elif on_path[waiting]:
                stuck = nodes[waiting]
                raise QccError(f"the graph has a cycle through node '{stuck.name or stuck.output[0]}' ({stuck.op_type})")
            else:
                on_path[waiting] = True
                path.append(waiting)
    del graph.node[:]
    graph.node.extend(ordered)
