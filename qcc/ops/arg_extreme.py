"""ArgMax and ArgMin on quantized codes: the index of the largest (smallest) code along an axis.

Dequantization is increasing when the scale is positive (qcc requires it), and equal codes give
equal reals, so the index ORT finds on the dequantized floats is the index of the same extreme on
the codes, ties included: the first one, or the last with select_last_index = 1 (opset 12). In a
QDQ model `DequantizeLinear -> ArgMax` (ORT runs the ArgMax in float) therefore runs on the codes;
in a QOperator model ArgMax reads the codes directly. The int64 indices must be a graph output
(the caller's array), as a classifier's or a segmentation network's last op is.

TFLite's ARG_MAX / ARG_MIN (TFLM's reference ArgMinMax: strictly greater / less replaces, so ties
give the first index) write int32 indices in TFLM, which fails at run time on an int64 output:
qcc imports them with an int32 output, a graph output too.
"""

from __future__ import annotations

import numpy as np

from qcc.ops.qdq_group import NotFused
from qcc.ir import Graph, Node
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, register, require
from qcc.ops.tflite_import import NCHW, TFLITE, TO_NCHW, ir_axis, moves_only_unit_axes, tflite_int32s
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.quantized import add_output, quantized_input
from qcc.ops.slice_split_pad import normalize_axis, require_nonempty


@register
class ArgExtreme(Op):
    runtime_sources = ("qcc_data_movement.c",)
    runtime_header = "qcc_data_movement.h"
    name = "ArgExtreme"
    onnx_ops = (OnnxOp("", "ArgMax"), OnnxOp("", "ArgMin"))  # select_last_index from opset 12
    summary = "index of the largest or smallest code along an axis (keepdims, select_last_index); int64 graph output"
    qdq_float_ops = onnx_ops
    tflite_ops = (TfliteOp("ARG_MAX", 1, 3), TfliteOp("ARG_MIN", 1, 3))  # 2: int8

    def import_tflite(self, operator, model) -> None:
        """The axis a constant int32; the output int32 and a graph output. An image held channels first is
        read as it is where dropping the axis leaves the other axes in TFLite's order (up to axes of size 1:
        the arg over channels of a segmentation map), else in TFLite's own layout."""
        in_shape = model.input_tensor(0, "input").shape
        rank = len(in_shape)
        values = tflite_int32s(model, 1, "axis")
        model.require(len(values) == 1 and -rank <= values[0] < rank,
                      f"the axis {values} must be one value inside the input's rank {rank}")
        axis = values[0] % rank
        out = model.output_tensor(0)
        model.require(out.dtype == "int32", f"the output is {out.dtype}; TFLM's {operator.code} writes int32 indices "
                      "only (it fails at run time on int64): convert with output_type int32")
        model.require(operator.outputs[0] in model.model.outputs,
                      "its int32 indices must be a model output (qcc keeps only 8-bit tensors between layers)")
        layout = TFLITE
        if rank == 4 and model.layout_of(0) == NCHW:
            kept = [TO_NCHW[j] for j in range(4) if TO_NCHW[j] != axis]  # TFLite axes, in their channels-first order
            order = [kept.index(a) for a in range(4) if a != axis]
            layout = NCHW if moves_only_unit_axes([in_shape[a] for a in kept], order) else TFLITE
        x = model.activation(0, layout)
        y = model.output(0, tuple(d for a, d in enumerate(in_shape) if a != axis), TFLITE, quantized=False)
        model.add_node(self.name, [x.name], [y], {"axis": ir_axis(axis, rank, layout), "last": False,
                                                  "largest": operator.code == "ARG_MAX"})

    def from_qdq(self, group):
        """`DQ -> ArgMax`: ORT computes it on floats, equal to the codes' extreme (positive scale)."""
        codes = group.quantized_input(0)
        scale = group.constant(codes[1])
        if scale is None or scale.size != 1 or not float(scale.reshape(())) > 0:
            raise NotFused("its DequantizeLinear does not have one constant positive scale")
        node = type(group.node)()
        node.CopyFrom(group.node)
        node.input[0] = codes[0]
        return [node]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        axis = normalize_axis(int(attribute(onnx_node, "axis", 0)), rank, graph, onnx_node)
        keepdims = bool(attribute(onnx_node, "keepdims", 1))
        last = bool(attribute(onnx_node, "select_last_index", 0))
        require(onnx_node.output[0] in graph.outputs, graph, onnx_node,
                "its int64 indices must be a graph output (qcc keeps only 8-bit tensors between layers)")
        shape = [1 if i == axis else d for i, d in enumerate(x.shape) if i != axis or keepdims]
        require_nonempty(shape, graph, onnx_node, "output")
        y = add_output(graph, onnx_node, 0, "int64", shape)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={
            "onnx_op": onnx_node.op_type, "axis": axis, "last": last, "largest": onnx_node.op_type == "ArgMax"})

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        a = node.attrs
        values = x.astype(np.int16) * (1 if a["largest"] else -1)
        if a["last"]:
            flipped = np.flip(values, axis=a["axis"])
            index = x.shape[a["axis"]] - 1 - np.argmax(flipped, axis=a["axis"])
        else:
            index = np.argmax(values, axis=a["axis"])
        return [index.astype(np.int64).reshape(graph.tensor(node.outputs[0]).shape)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        a = node.attrs
        outer = int(np.prod(x.shape[:a["axis"]], dtype=np.int64))
        inner = int(np.prod(x.shape[a["axis"] + 1:], dtype=np.int64))
        fields = {"outer": outer, "axis_len": x.shape[a["axis"]], "inner": inner, "largest": int(a["largest"]),
                  "last": int(a["last"])}
        params = c.struct("qcc_arg_extreme_params", f"{c.symbol(node.name)}_params", fields)
        suffix = ("s8" if x.dtype == "int8" else "u8") + ("_i32" if y.dtype == "int32" else "")
        return f"qcc_arg_extreme_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"
