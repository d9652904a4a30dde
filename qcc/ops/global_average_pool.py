"""com.microsoft QLinearGlobalAveragePool: the mean over each channel's whole map.

ORT computes acc = sum(x) - Z_x * n in int32 and requantizes it with the single scale
f32(s_x / f32(s_y * f32(n))), through the same float32 rounding as the convolutions.
"""

from __future__ import annotations

import numpy as np

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import Graph, Node
from qcc.ops.base import Op, attribute, register, require
from qcc.numerics.accumulator_range import sum_range
from qcc.ops.quantized import (add_output, bind_quant, emit_requant, prepare_requant, quantized_input, read_quant,
                                requantize, wrap_int32)


@register
class QLinearGlobalAveragePool(Op):
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    folds_clamp = True
    name = "QLinearGlobalAveragePool"
    onnx_ops = (("com.microsoft", "QLinearGlobalAveragePool"),)
    summary = "mean over the spatial map, channels first or last"

    qdq_float_ops = (("", "GlobalAveragePool"),)

    def from_qdq(self, group):
        x, y = group.quantized_input(0), group.quantized_output()
        check_integer_types(group, x, None, y)
        return [group.replacement("QLinearGlobalAveragePool", [*x, y[1], y[2]], domain="com.microsoft", channels_last=0)]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        require(len(x.shape) >= 3, graph, onnx_node, f"input must have spatial dimensions, got shape {x.shape}")
        channels_last = bool(attribute(onnx_node, "channels_last", 0))
        x_quant = read_quant(graph, onnx_node, 1, 2, "input")
        y_quant = read_quant(graph, onnx_node, 3, 4, "output")
        if channels_last:
            spatial, channels = x.shape[1:-1], x.shape[-1]
            out_shape = (x.shape[0], *[1] * len(spatial), channels)
        else:
            spatial, channels = x.shape[2:], x.shape[1]
            out_shape = (x.shape[0], channels, *[1] * len(spatial))
        count = int(np.prod(spatial))
        require(count < 2**24, graph, onnx_node, f"the map has {count} elements; ORT refuses 2^24 or more")
        scale = np.float32(x_quant.scalar()[0]) / (np.float32(y_quant.scalar()[0]) * np.float32(count))
        require(2.0**-32 <= scale < 256.0, graph, onnx_node,
                f"s_x / (s_y * n) = {scale:g} is outside [2^-32, 256), which ORT refuses")
        x_name = bind_quant(graph, onnx_node, 0, x_quant)
        y = add_output(graph, onnx_node, 0, x.dtype, out_shape, y_quant)
        return Node(self.name, onnx_node.name or y, [x_name], [y],
                    attrs={"channels_last": channels_last, "count": count, "channels": channels})

    def prepare(self, node: Node, graph: Graph) -> None:
        s_x, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        s_y, _ = graph.tensor(node.outputs[0]).quant.scalar()
        count = node.attrs["count"]
        node.params["acc_const"] = int(wrap_int32(-z_x * count))
        # ORT: f32(s_x / f32(s_y * f32(n)))
        node.params["requant"] = prepare_requant(node, graph, np.float32(s_x) / (np.float32(s_y) * np.float32(count)),
                                                 np.float64(s_x) / (np.float64(s_y) * count))

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        _, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        y = graph.tensor(node.outputs[0])
        axes = tuple(range(1, x.ndim - 1)) if node.attrs["channels_last"] else tuple(range(2, x.ndim))
        acc = (x.astype(np.int64) - z_x).sum(axis=axes, keepdims=True)
        return [requantize(wrap_int32(acc), node.params["requant"], 0, y.dtype).reshape(y.shape)]

    def accumulator_range(self, node: Node, graph: Graph):
        x = graph.tensor(node.inputs[0])
        return sum_range(node.attrs["count"], x.quant.scalar()[1], x.dtype)

    def macs(self, node: Node, graph: Graph) -> int:
        return graph.tensor(node.inputs[0]).size

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        a = node.attrs
        fields = {"batch": x.shape[0], "channels": a["channels"], "count": a["count"],
                  "channels_last": int(a["channels_last"]), "acc_const": node.params["acc_const"],
                  "requant": emit_requant(c, prefix, node.params["requant"])}
        params = c.struct("qcc_global_avgpool_params", f"{prefix}_params", fields)
        suffix = "s8" if x.dtype == "int8" else "u8"
        return f"qcc_global_avgpool_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
