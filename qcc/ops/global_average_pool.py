"""com.microsoft QLinearGlobalAveragePool: the mean over each channel's whole map.

ORT computes acc = sum(x) - Z_x * n in int32 and requantizes it with the single scale
f32(s_x / f32(s_y * f32(n))), through the same float32 rounding as the convolutions.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import Graph, Node
from qcc.ops.base import OnnxOp, Op, attribute, register, require
from qcc.ops.explanation import Element, RequantExplanation
from qcc.numerics.accumulator_range import sum_range
from qcc.ops.quantized import (add_output, bind_quant, emit_requant, prepare_requant, quantized_input, read_quant,
                                requantize, wrap_int32)


@register
class QLinearGlobalAveragePool(Op):
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    folds_clamp = True
    name = "QLinearGlobalAveragePool"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearGlobalAveragePool"),)
    summary = "mean over the spatial map, channels first or last"

    qdq_float_ops = (OnnxOp("", "GlobalAveragePool"),)

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
        acc = centered_maps(x, node.attrs["channels_last"], z_x).sum(axis=2)  # (batch, channels)
        return [requantize(wrap_int32(acc), node.params["requant"], 0, y.dtype).reshape(y.shape)]

    def accumulator_range(self, node: Node, graph: Graph):
        x = graph.tensor(node.inputs[0])
        return sum_range(node.attrs["count"], x.quant.scalar()[1], x.dtype)

    def macs(self, node: Node, graph: Graph) -> int:
        return graph.tensor(node.inputs[0]).size

    def explain(self, node: Node, graph: Graph) -> RequantExplanation:
        return GlobalPoolExplanation(node, graph, node.attrs["count"])

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


def centered_maps(x: np.ndarray, channels_last: bool, z_x: int) -> np.ndarray:
    """x - Z_x as (batch, channels, the map's elements), int64: what the global pool sums per channel
    (this op's, and QLinearAveragePool's when its window covers the map)."""
    nchw = np.moveaxis(x, -1, 1) if channels_last else x
    return nchw.reshape(*nchw.shape[:2], -1).astype(np.int64) - z_x


class GlobalPoolExplanation(RequantExplanation):
    """The integer global pool, one accumulator per channel over its n elements."""

    formula = {
        "real": "y[c] = (1/n) * sum_i x[c,i]   (each r = S * (q - Z))",
        "integer": "acc = sum_i (q_x[c,i] - Z_x)  (int32);  q_y = clamp(round(M * acc), lo, hi) + Z_y,  M = S_x / (S_y * n)",
        "folded": "acc = acc_const + sum_i q_x[c,i],  acc_const = -Z_x * n",
    }

    def __init__(self, node: Node, graph: Graph, count: int):
        super().__init__(node, graph)
        self.channels = node.attrs["channels"]
        self.count = self.taps = count
        self.s_w, self.z_w = [None] * self.channels, [None] * self.channels

    def exact_m(self, c):
        return Fraction(float(self.s_x)) / (Fraction(float(self.s_y)) * self.count)

    def acc_const(self, c):
        return int(self.node.params["acc_const"])

    def acc_const_terms(self, c):
        return {"minus_zx_n": -self.z_x * self.count}

    def c_accumulator(self, c):
        return "acc = acc_const + sum(x[i], i < n)", f"acc = {self.acc_const(c)} + sum(x[i], i < {self.count})"

    def positions(self):
        return 1

    def output_index(self, c, position):
        index = [0] * len(self.y.shape)
        index[-1 if self.node.attrs["channels_last"] else 1] = c
        return tuple(index)

    def element(self, values, c, position):
        centered = centered_maps(values[self.node.inputs[0]][:1], self.node.attrs["channels_last"], self.z_x)[0, c]
        x = centered + self.z_x
        return Element(x=x, w=None, padded=np.zeros(x.shape, bool), products=centered, bias=0,
                       acc_const=self.acc_const(c), folded_sum=int(x.sum()))
