"""QDQ graphs written node by node, the way exporters write them (tf2onnx, PyTorch, ORT's quantizer):
float tensors between DequantizeLinear and QuantizeLinear nodes, int8/uint8/int32 initializers
behind DequantizeLinear, and the oracle that says whether ONNX Runtime runs such a graph as
integer kernels."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcc.runtimes import ort as ort_reference

ELEM = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.uint8): onnx.TensorProto.UINT8,
        np.dtype(np.int8): onnx.TensorProto.INT8, np.dtype(np.int32): onnx.TensorProto.INT32}


class QdqGraph:
    def __init__(self, opset: int = 13, seed: int = 0):
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.opset, self.count = opset, 0
        self.rng = np.random.default_rng(seed)

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def const(self, value, name: str | None = None) -> str:
        name = name or self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, outputs: int = 1, domain: str = "", **attrs):
        name = name or self._name(op.lower())
        outs = [name] if outputs == 1 else [f"{name}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs[0] if outputs == 1 else outs

    def input(self, name: str, shape, dtype=np.float32) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, ELEM[np.dtype(dtype)], list(shape)))
        return name

    def output(self, tensor: str, name: str = "y", dtype=None, shape=None) -> None:
        """Make `tensor` a graph output called `name` (its producer's output is renamed); typed by
        shape inference, or by dtype and shape where inference cannot (com.microsoft ops)."""
        for node in self.nodes:
            node.output[:] = [name if o == tensor else o for o in node.output]
            node.input[:] = [name if i == tensor else i for i in node.input]
        elem = onnx.TensorProto.UNDEFINED if dtype is None else ELEM[np.dtype(dtype)]
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))

    def quantize(self, x: str, scale: float, zero: int, dtype=np.uint8) -> str:
        return self.node("QuantizeLinear", [x, self.const(np.float32(scale)), self.const(np.asarray(zero, dtype))])

    def dequantize(self, q: str, scale, zero, dtype=np.uint8, axis: int | None = None) -> str:
        attrs = {} if axis is None else {"axis": axis}
        return self.node("DequantizeLinear", [q, self.const(np.asarray(scale, np.float32)), self.const(np.asarray(zero, dtype))],
                         **attrs)

    def qdq(self, x: str, scale: float, zero: int, dtype=np.uint8) -> str:
        return self.dequantize(self.quantize(x, scale, zero, dtype), scale, zero, dtype)

    def weights(self, shape, scale=0.01, dtype=np.int8, axis: int | None = None) -> str:
        """DequantizeLinear of random int8 codes (per channel along `axis` when given)."""
        codes = self.rng.integers(-127, 128, shape).astype(dtype)
        if axis is None:
            return self.dequantize(self.const(codes), scale, 0, dtype)
        channels = shape[axis]
        return self.dequantize(self.const(codes), self.rng.uniform(0.5, 1.5, channels).astype(np.float32) * scale,
                               np.zeros(channels, dtype), dtype, axis=axis)

    def int32_bias(self, shape, scale, axis: int | None = None) -> str:
        codes = self.rng.integers(-2000, 2000, shape).astype(np.int32)
        return self.dequantize(self.const(codes), scale, np.zeros(np.shape(scale), np.int32), np.int32, axis=axis)

    def model(self) -> onnx.ModelProto:
        """The model, its graph outputs typed by ONNX shape inference."""
        graph = helper.make_graph(self.nodes, "qdq", self.inputs, [], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset),
                                                        helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
        model.graph.output.extend(o if o.type.tensor_type.elem_type else inferred[o.name] for o in self.outputs)
        return model


def ort_float_ops(model: onnx.ModelProto) -> set[str]:
    """The ops ONNX Runtime (the ground-truth configuration) runs in float inside the model: in the
    graph it runs, those that read a DequantizeLinear's output."""
    graph = ort_reference.optimized_model(model).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.op_type for n in graph.node if any(name in dequantized for name in n.input)}


def ort_runs_as_integers(model: onnx.ModelProto) -> bool:
    """Whether ORT runs everything inside the model as integer kernels (only graph outputs read floats)."""
    return not ort_float_ops(model)
