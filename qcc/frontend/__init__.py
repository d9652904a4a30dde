"""The frontends turn a model file into the IR (qcc.ir.Graph), one subpackage per format: onnx/
now, tflite/ next to it. Each imports its nodes through the op registry (qcc.ops)."""
