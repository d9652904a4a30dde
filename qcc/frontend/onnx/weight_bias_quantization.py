"""ONNX Runtime's WeightBiasQuantization (graph optimization level 1, after the QDQ propagation):
a float bias of a Conv or Gemm whose input comes from a DequantizeLinear is quantized by ORT
itself, so the group still becomes an integer kernel. PyTorch's QDQ exports keep the bias in
float like this; so does a MatMul + Add with a float bias, once MatMulAddFusion made it a Gemm.

ORT's conditions, reproduced (onnxruntime/core/optimizer/qdq_transformer/weight_bias_quantization.cc):
input 0 comes from a DequantizeLinear with a scalar scale; the output reaches a QuantizeLinear
through single readers, Relu and Clip allowed on the way; the weights come from a
DequantizeLinear (ORT also quantizes float weights, which qcc does not reproduce: those groups are
refused later); the bias is a 1-D constant. Per-channel weight scales must have one entry per
bias element and sit on the output-channel axis (0 for Conv and for Gemm with transB, 1 for Gemm
without); a DequantizeLinear without an axis attribute counts as axis 1, as in ORT.

ORT's arithmetic, which ORT's constant folding evaluates in float32 and qcc reproduces with numpy
float32: scale = x_scale * w_scale, codes = int32(Round(bias / scale)) (ties to even), and the bias
becomes DequantizeLinear(codes, scale) (axis 0 when per channel, no zero point).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.errors import QccError
from qcc.onnx_graph import GraphIndex, attribute, default_opset, topological_sort


def _reaches_quantize_linear(index: GraphIndex, node: onnx.NodeProto) -> bool:
    current = node
    while True:
        if len(current.output) != 1:
            return False
        readers = index.consumers.get(current.output[0], [])
        if len(readers) != 1:
            return False
        if readers[0].op_type == "QuantizeLinear":
            return True
        if readers[0].op_type not in ("Relu", "Clip"):
            return False
        current = readers[0]


def quantize_biases(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    graph = model.graph
    opset = default_opset(model)
    index = GraphIndex(graph, opset)
    changed = False
    for node in [n for n in graph.node if n.op_type in ("Conv", "Gemm") and n.domain in ("", "ai.onnx")]:
        if len(node.input) < 3 or not node.input[2] or node.input[2] not in index.initializers:
            continue
        x_dq, w_dq = (index.producer_of(name, "DequantizeLinear") for name in node.input[:2])
        x_scale = index.constant(x_dq.input[1]) if x_dq is not None else None
        if x_scale is None or x_scale.size != 1 or x_scale.ndim > 1 or w_dq is None:
            continue
        if not _reaches_quantize_linear(index, node):
            continue
        bias = index.constant(node.input[2])
        w_scale = index.constant(w_dq.input[1])
        if bias.ndim != 1 or bias.dtype != np.float32 or w_scale is None:
            continue
        per_channel = not (w_scale.size == 1 and w_scale.ndim <= 1)
        if per_channel:
            weight_rank = len(index.initializers[w_dq.input[0]].dims) if w_dq.input[0] in index.initializers else None
            axis = attribute(w_dq, "axis", 1)
            if axis < 0:
                if weight_rank is None:
                    continue
                axis += weight_rank
            expected = 0 if node.op_type == "Conv" or attribute(node, "transB", 0) else 1
            if w_scale.ndim != 1 or w_scale.size != bias.size or attribute(w_dq, "block_size", 0) or axis != expected:
                continue
        scale = (np.float32(x_scale.reshape(())) * w_scale.astype(np.float32)).astype(np.float32)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            rounded = np.rint(bias / scale)
        if not np.all(np.abs(rounded) < 2.0**31):
            raise QccError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}): ONNX Runtime quantizes its "
                           f"float bias '{node.input[2]}' to int32 with scale s_x * s_w, and some values do not fit "
                           "(ORT's result is then undefined); quantize the bias in the model")
        codes_name, scale_name, bias_name = (f"{node.input[2]}_{suffix}" for suffix in ("int32", "scale", "quantized"))
        graph.initializer.extend([numpy_helper.from_array(rounded.astype(np.int32), codes_name),
                                  numpy_helper.from_array(scale, scale_name)])
        graph.node.append(helper.make_node("DequantizeLinear", [codes_name, scale_name], [bias_name],
                                           name=f"{bias_name}_dq", **({"axis": 0} if per_channel else {})))
        node.input[2] = bias_name
        changed = True
    if changed:
        topological_sort(graph)
    return model
