"""The ground-truth runtimes qcc is checked against: ONNX Runtime for .onnx models (ort.py) and
TensorFlow Lite Micro for .tflite models (tflm.py). Only the commands that compare (verify, explain's
checks, bench's host timing) and the tests import them."""
