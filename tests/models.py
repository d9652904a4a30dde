"""Float networks built with onnx.helper and quantized with onnxruntime.quantization, as users do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def cnn96(seed: int = 0) -> onnx.ModelProto:
    """1x3x96x96 -> Conv3x3(16)+Relu -> Conv3x3/2(32)+Relu -> Conv3x3/2(32)+Relu -> GlobalAveragePool
    -> Flatten -> Gemm(10), with seeded He-initialised weights."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i, (cin, cout, stride) in enumerate([(3, 16, 1), (16, 32, 2), (32, 32, 2)]):
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))
        inits += [numpy_helper.from_array(w.astype(np.float32), f"conv{i}_w"),
                  numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"conv{i}_b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], name=f"conv{i}",
                                   kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}")]
        x = f"relu{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    inits += [numpy_helper.from_array((rng.standard_normal((10, 32)) * 0.3).astype(np.float32), "fc_w"),
              numpy_helper.from_array((rng.standard_normal(10) * 0.1).astype(np.float32), "fc_b")]
    graph = helper.make_graph(nodes, "cnn96", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 96, 96])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def quantize(float_model: onnx.ModelProto, out_path: Path, *, activation: str = "uint8", per_channel: bool = True,
             quant_format: str = "QOperator", calibration_batches: int = 4, seed: int = 1, weight: str = "int8",
             extra_options: dict | None = None) -> Path:
    """quantize_static with seeded uniform [0, 1) calibration data; activation 'uint8', 'int8' or 'int16' (QDQ),
    weight 'uint8' or 'int8'."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    out_path = Path(out_path)
    float_path = out_path.with_suffix(".float.onnx")
    onnx.save(float_model, str(float_path))
    rng = np.random.default_rng(seed)
    inputs = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in float_model.graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{n: rng.random(s, dtype=np.float32) for n, s in inputs} for _ in range(calibration_batches)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=getattr(QuantFormat, quant_format),
                    per_channel=per_channel,
                    activation_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8,
                                     "int16": QuantType.QInt16}[activation],
                    weight_type=QuantType.QUInt8 if weight == "uint8" else QuantType.QInt8,
                    extra_options=extra_options or {})
    float_path.unlink()
    return out_path
