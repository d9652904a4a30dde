"""Running the original model in ONNX Runtime, configured as qcc's ground truth: the CPU
provider, one thread, default graph optimizations, and session.qdqisint8allowed = 1 so that
int8 QDQ groups run as integer kernels (as ORT does on ARM). Used by `qcc verify` and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcc.errors import QccError
from qcc.ir import Graph
from qcc.numerics.quantize_linear import dequantize_linear, quantize_linear


def session(model_path: str | Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise QccError("comparing with ONNX Runtime needs onnxruntime: pip install 'qcc[test]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.qdqisint8allowed", "1")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _boundary_quant(graph: Graph, tensor_name: str):
    tensor = graph.tensor(tensor_name)
    scale, zero = tensor.quant.scalar()
    return scale, zero, tensor.dtype


def run_on_codes(sess, graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ORT on the compiled graph's inputs and return its outputs as the compiled graph's
    outputs are typed. Where qcc removed a QuantizeLinear, ORT gets floats that quantize exactly to
    the given codes; where it removed a DequantizeLinear, ORT's floats map back to unique codes."""
    feeds = {}
    for name, value in zip(graph.inputs, inputs):
        public = graph.public_name(name)
        if public != name:  # a quantized C input standing for a float model input
            scale, zero, dtype = _boundary_quant(graph, name)
            real = dequantize_linear(value, scale, zero)
            if not np.array_equal(quantize_linear(real, scale, zero, dtype), value):
                raise AssertionError(f"input '{public}': the float stand-ins do not quantize back to the codes")
            feeds[public] = real
        else:
            feeds[public] = value
    results = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    outputs = []
    for name in graph.outputs:
        public = graph.public_name(name)
        value = results[public]
        if public != name:  # ORT's DequantizeLinear output: invert it to codes, exactly
            scale, zero, dtype = _boundary_quant(graph, name)
            codes = np.rint(value.astype(np.float64) / np.float64(scale)) + zero
            codes = codes.astype(np.int64)
            if not np.array_equal(dequantize_linear(codes, scale, zero), value):
                raise AssertionError(f"output '{public}': ORT's floats are not dequantized codes")
            value = codes.astype(dtype)
        outputs.append(value.reshape(graph.tensor(name).shape))
    return outputs
