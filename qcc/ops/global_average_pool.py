"""The mean over whole axes: com.microsoft QLinearGlobalAveragePool, and TFLite's MEAN as TFLM computes it.

Both sum each output's n codes in int32, take off Z_x * n and requantize once, with one kernel
(runtime_c qcc_global_avgpool_*): they differ only in the multiplier. TFLite's MEAN lives here, not
beside AVERAGE_POOL_2D (average_pool.py), because it is this arithmetic: a global pool as PyTorch
exports it is MEAN over the spatial axes [1, 2], and TFLM requantizes it, where AVERAGE_POOL_2D
divides codes of equal scales and never requantizes.

- QLinearGlobalAveragePool: ORT computes acc = sum(x) - Z_x * n in int32 and requantizes it with
  the single scale f32(s_x / f32(s_y * f32(n))), through the same float32 rounding as the
  convolutions.
- MEAN (TflmMean; TFLM's reduce_common.cc / reference/reduce.h QuantizedMeanOrSum, int8, checked
  against the pinned wheel): (M0, e) = QuantizeMultiplier(double(s_x) / double(s_y)); then 1/n is
  folded into it: k = min(floor(log2 n), 32, 31 + e), M0' = floor(M0 * 2^k / n) (int64),
  e' = e - k; y = clamp(MultiplyByQuantizedMultiplier(sum(x) - Z_x * n, M0', e') + Z_y), the
  sum wrapping in int32 as TFLM's. Any axes, keep_dims or not, duplicates and negative axes as
  TFLM resolves them. Where e' > 0 TFLM shifts the sum left in int32 and can wrap (an output scale
  below the input's by 2^8 or more over small maps): qcc saturates there, as in every tflm requantization.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import dataclasses

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import KERNEL_SUFFIX, Graph, Node, Tensor
from qcc.numerics import tflm
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, register, require
from qcc.ops.explanation import Element, Explanation, RequantExplanation
from qcc.ops.movement import MAX_TRANSPOSE_RANK
from qcc.errors import QccError
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
                    attrs={"channels_last": channels_last, "count": count, "channels": channels, "batch": x.shape[0]})

    def prepare(self, node: Node, graph: Graph) -> None:
        s_x, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        s_y, _ = graph.tensor(node.outputs[0]).quant.scalar()
        count = node.attrs["count"]
        node.params["acc_const"] = int(wrap_int32(-z_x * count))
        # ORT: f32(s_x / f32(s_y * f32(n)))
        node.params["requant"] = prepare_requant(node, graph, np.float32(s_x) / (np.float32(s_y) * np.float32(count)),
                                                 np.float64(s_x) / (np.float64(s_y) * count))

    def reference(self, node: Node, graph: Graph, inputs):
        """Per (batch, channel), the sum of its count codes minus Z_x * count, requantized (one multiplier)."""
        (x,) = inputs
        a = node.attrs
        _, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        y = graph.tensor(node.outputs[0])
        layout = (a["batch"], a["count"], a["channels"]) if a["channels_last"] else (a["batch"], a["channels"], a["count"])
        acc = x.reshape(layout).astype(np.int64).sum(axis=1 if a["channels_last"] else 2) - z_x * a["count"]
        return [requantize(wrap_int32(acc), node.params["requant"], 1, y.dtype).reshape(y.shape)]

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
        fields = {"batch": a["batch"], "channels": a["channels"], "count": a["count"],
                  "channels_last": int(a["channels_last"]), "acc_const": node.params["acc_const"],
                  "requant": emit_requant(c, prefix, node.params["requant"])}
        params = c.struct("qcc_global_avgpool_params", f"{prefix}_params", fields)
        return f"qcc_global_avgpool_{KERNEL_SUFFIX[x.dtype]}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"


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


def tflm_mean_multiplier(s_x, s_y, count: int) -> tuple[int, int]:
    """TFLM's MEAN multiplier with 1/count folded in: (M0', e') from QuantizeMultiplier(s_x / s_y)."""
    m0, e = tflm.quantize_multiplier(float(np.float32(s_x)) / float(np.float32(s_y)))
    k = min(count.bit_length() - 1, 32, 31 + e)  # 63 - CountLeadingZeros(count), clamped as TFLM
    return (m0 << k) // count, e - k


@register
class TflmMean(QLinearGlobalAveragePool):
    """TFLite's MEAN on int8 as TFLM computes it (the module's docstring): the qcc_global_avgpool kernel
    over (outer, count, inner) with TFLM's folded multiplier. The importer hands the input over in a
    layout where the reduced axes are one block: the spatial axes of an image that is channels first
    inside (after a convolution: no transpose), a block of TFLite's own axes, or a Transpose that
    gathers scattered axes at the end. Reference, range and C are the global pool's; only the import, the
    multiplier and the explanation differ."""
    name = "TflmMean"
    onnx_ops = qdq_float_ops = ()
    tflite_ops = (TfliteOp("MEAN", 1, 3),)  # 2: int8, 3: int16 (the same kernel in TFLM, and in qcc)
    summary = "TFLM's integer MEAN over any axes: the sum requantized with 1/n folded into the multiplier"

    def import_tflite(self, operator, model) -> None:
        shape = tuple(model.input_tensor(0, "input").shape)
        rank = len(shape)
        axes_tensor = model.input_tensor(1, "axes")
        model.require(axes_tensor.dtype == "int32", f"the axes '{model.names[axes_tensor.index]}' are "
                      f"{axes_tensor.dtype}; TFLM's MEAN reads int32 axes")
        axes = [int(a) for a in np.asarray(model.constant(1, "axes")).reshape(-1)]
        model.require(all(-rank <= a < rank for a in axes), f"axes {axes} lie outside the input's {rank} dimensions")
        reduced = sorted({a % rank for a in axes})  # TFLM's ResolveAxis: negative axes, duplicates once
        model.require(int(np.prod(shape)) > 0, f"the input {list(shape)} is empty")
        keep = bool(model.options.get("keep_dims", False))
        out_tflite = tuple(1 if i in reduced else d for i, d in enumerate(shape)) if keep else tuple(
            d for i, d in enumerate(shape) if i not in reduced)
        count = int(np.prod([shape[i] for i in reduced], dtype=np.int64))
        model.require(count < 2**31, f"the mean is over {count} elements; TFLM counts them in int")
        if rank == 4 and reduced == [1, 2] and model.layout_of(0) == "nchw":
            x = model.activation(0, "nchw", dtypes=("int8", "int16"))  # channels first: each map is contiguous
            batch, channels, channels_last = shape[0], shape[3], False
            # (N, C, 1, 1) channels first, or (N, C): the bytes of TFLite's (N, 1, 1, C) and (N, C)
            y = model.output(0, (shape[0], shape[3], 1, 1) if keep else out_tflite, "nchw" if keep else "tflite",
                             dtypes=(x.dtype,))
        else:
            x = model.activation(0, "tflite", dtypes=("int8", "int16"))
            # the reduced axes as one block (axes of size 1 go anywhere): (outer, count, inner)
            moved = [i for i in range(rank) if shape[i] > 1]
            block = [i for i in moved if i in reduced]
            if block and moved[moved.index(block[0]): moved.index(block[-1]) + 1] != block:
                model.require(rank <= MAX_TRANSPOSE_RANK, f"gathering the axes {reduced} of a rank-{rank} input needs "
                              f"a transpose; qcc transposes up to rank {MAX_TRANSPOSE_RANK}")
                perm = [i for i in range(rank) if i not in reduced] + reduced
                gathered = f"{x.name}__mean_axes_last"
                model.graph.tensors[gathered] = Tensor(gathered, x.dtype, tuple(shape[p] for p in perm), None, x.quant)
                model.graph.nodes.append(Node("Transpose", model.node_name(gathered), [x.name], [gathered],
                                              attrs={"perm": perm, "onnx_op": "MEAN's reduced axes gathered last"}))
                x = model.graph.tensors[gathered]
                outer, inner = int(np.prod([shape[i] for i in range(rank) if i not in reduced])), 1
            elif block:
                outer = int(np.prod(shape[:block[0]]))
                inner = int(np.prod(shape[block[-1] + 1:]))
            else:  # nothing of size > 1 is reduced: a requantization of every element
                outer, inner = int(np.prod(shape)), 1
            batch, channels, channels_last = outer, inner, True
            y = model.output(0, out_tflite, "tflite", dtypes=(x.dtype,))
        model.add_node(self.name, [x.name], [y], {"batch": batch, "channels": channels, "count": count,
                                                  "channels_last": channels_last})

    def prepare(self, node: Node, graph: Graph) -> None:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        (s_x, z_x), (s_y, _) = x.quant.scalar(), y.quant.scalar()
        count = node.attrs["count"]
        mult, shift = tflm_mean_multiplier(s_x, s_y, count)
        if shift > 30:
            raise QccError(f"{graph.source}: node '{node.name}' (MEAN): s_x / s_y = {float(s_x) / float(s_y):g} is "
                           "2^30 or more, beyond TFLM's MultiplyByQuantizedMultiplier")
        if graph.rounding not in ("tflm", "single"):
            raise QccError(f"{graph.source}: node '{node.name}' (MEAN): TFLM's MEAN has no form in the "
                           f"{graph.rounding} scheme; compile with --rounding tflm or single")
        node.params["acc_const"] = int(wrap_int32(-z_x * count))
        # the requantization's clamp and zero point as every op's, with TFLM's multiplier (the single
        # scheme: the same M0' and e' with one rounding, as TFLITE_SINGLE_ROUNDING builds compute it)
        rq = prepare_requant(node, graph, np.float32(s_x) / (np.float32(s_y) * np.float32(count)),
                             np.float64(s_x) / (np.float64(s_y) * count))
        node.params["requant"] = dataclasses.replace(rq, mult=np.array([mult], np.uint32),
                                                     shift=np.array([shift], np.int8))

    def explain(self, node: Node, graph: Graph) -> Explanation:
        rq = node.params["requant"]
        return Explanation("tflm_integer", f"TFLM's integer MEAN over {node.attrs['count']} elements: acc = sum(x) - "
                                           f"Z_x * n in int32, requantized by M0' = {int(rq.mult[0])}, e' = "
                                           f"{int(rq.shift[0])}: QuantizeMultiplier(s_x / s_y) with 1/n folded in "
                                           "(M0 * 2^k / n truncated, e - k, k = floor(log2 n)), not the exact "
                                           "s_x / (s_y n) (qcc/ops/global_average_pool.py)")

