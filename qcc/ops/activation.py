"""Relu and Clip on a quantized tensor. In a QOperator model they act on the raw codes
(Relu: max(q, 0); Clip: clamp(q, min, max)), so after an integer op they fold exactly into that
op's output clamp (see qcc/passes/fold_activations.py); nothing of them is left to run. Between a
DequantizeLinear and a QuantizeLinear that ORT does not fuse, they are float ops of an island.

TFLite's RELU and RELU6 on int8 are this module's too, with TFLM's arithmetic, which is not a clamp of
codes in general, so they become a Lookup table (qcc/numerics/tflm_activations.py):
- RELU requantizes to the output's scale and zero point (MultiplyByQuantizedMultiplier, two
  roundings) and clamps at the output's zero point;
- RELU6 clamps the input codes to [z_x, round(6 / s_x) + z_x] and never reads the output's
  quantization: where the model gives the output another scale or zero point, TFLM (and qcc) still
  write the input's codes (TFLite's own RELU6 would requantize).
TFLM has no kernel for RELU_N1_TO_1 or RELU_0_TO_1 (the pinned wheel refuses such models), so qcc,
whose .tflite semantics are TFLM's, does not import them either."""

from __future__ import annotations

import numpy as np

from qcc.ir import DTYPE_RANGE, Graph, Node
from qcc.numerics import tflm_activations
from qcc.ops.base import OnnxOp, Op, TfliteOp, const_input, register
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.quantized import add_output, quantized_input
from qcc.ops.tflite_import import add_lookup, require_int8, table_or_refuse


@register
class ClampCodes(Op):
    name = "ClampCodes"
    # On codes: ONNX (and ORT) run Relu on int8 from opset 14 and Clip on 8-bit types from 12.
    onnx_ops = (OnnxOp("", "Relu", 14), OnnxOp("", "Clip", 12))
    summary = "Relu and Clip after an integer op: folded into its output clamp"
    # In float (a Relu whose QuantizeLinear zero point is not qmin, a Clip inside the quantized
    # range), ORT computes them on the dequantized values: they become part of a float island.
    island_float_ops = (OnnxOp("", "Relu", 6), OnnxOp("", "Clip", 6))
    # Up to the int16 kernels' version, so that an int16 model is refused by its type.
    tflite_ops = (TfliteOp("RELU", 1, 3), TfliteOp("RELU6", 1, 3))

    def evaluate_float(self, node, inputs, opset):
        if node.op_type == "Relu":
            return np.maximum(inputs[0], np.float32(0))
        x, lo, hi = inputs  # the bounds as ORT reads them at this opset (attributes before 11)
        return np.minimum(np.maximum(x, lo), hi)

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        lo, hi = DTYPE_RANGE[x.dtype]
        if onnx_node.op_type == "Relu":
            lo = max(lo, 0)
        else:
            if len(onnx_node.input) > 1 and onnx_node.input[1]:
                lo = max(lo, int(const_input(graph, onnx_node, 1, "min")))
            if len(onnx_node.input) > 2 and onnx_node.input[2]:
                hi = min(hi, int(const_input(graph, onnx_node, 2, "max")))
        y = add_output(graph, onnx_node, 0, x.dtype, x.shape, x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"clamp": (lo, hi), "onnx_op": onnx_node.op_type})

    def import_tflite(self, operator, model) -> None:
        """TFLM's int8 RELU / RELU6 as a Lookup table (see the module's docstring)."""
        require_int8(model)
        s_x, z_x = model.quant(model.input_tensor(0, "input")).scalar()
        if operator.code == "RELU6":
            add_lookup(model, table_or_refuse(model, tflm_activations.relu6_table, s_x, z_x))
        else:
            s_y, z_y = model.quant(model.output_tensor(0)).scalar()
            add_lookup(model, table_or_refuse(model, tflm_activations.relu_table, s_x, z_x, s_y, z_y))

    def reference(self, node: Node, graph: Graph, inputs):
        lo, hi = node.attrs["clamp"]
        return [np.clip(inputs[0], lo, hi).astype(inputs[0].dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES
