"""Builds examples/cnn96_uint8.onnx, the bundled example: the 96x96 CNN of tests/models.py
(3 convolutions with Relu, global average pooling, a 10-way Gemm) with seeded weights, quantized by
onnxruntime.quantization.quantize_static in QOperator form, per-channel int8 weights, uint8
activations, seeded calibration data. Run from the repository root:

    python examples/make_example.py
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from models import cnn96, quantize  # noqa: E402

if __name__ == "__main__":
    path = quantize(cnn96(seed=0), HERE / "cnn96_uint8.onnx", activation="uint8")
    print(f"wrote {path.relative_to(HERE.parent)}")
