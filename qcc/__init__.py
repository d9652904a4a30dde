"""qcc: compile quantized ONNX models to integer-only C99, bit-exact to ONNX Runtime."""

__version__ = "0.1.0"
