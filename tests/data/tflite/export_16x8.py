"""How net_16x8_int16_io.tflite and net_16x8_float_io.tflite were written (TensorFlow 2.21's converter, run
once in a throw-away environment: TensorFlow is no dependency of qcc or of its tests).

A small CNN quantized "16x8" the way the converter does it (int16 activations of zero point 0, per-channel
int8 weights, int64 biases): CONV_2D (+RELU), DEPTHWISE_CONV_2D (+RELU6), a residual ADD, MAX_POOL_2D,
AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, a MUL of the logits by themselves and a SOFTMAX. With --int16-io the model
takes and returns int16; without, float32 behind a QUANTIZE and a DEQUANTIZE.

    python export_16x8.py net_16x8_int16_io.tflite --int16-io
    python export_16x8.py net_16x8_float_io.tflite
"""

import sys

import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)


class Net(tf.Module):
    def __init__(self):
        self.w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
        self.b1 = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.dw = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32))
        self.db = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.wd = tf.constant(rng.normal(0, 0.2, (4 * 4 * 8, 6)).astype(np.float32))
        self.bd = tf.constant(rng.normal(0, 0.1, (6,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32)])
    def __call__(self, x):
        h = tf.nn.relu(tf.nn.conv2d(x, self.w1, 1, "SAME") + self.b1)
        d = tf.nn.relu6(tf.nn.depthwise_conv2d(h, self.dw, [1, 1, 1, 1], "SAME") + self.db)
        s = d + h
        p = tf.nn.max_pool2d(s, 2, 2, "VALID")
        p = tf.nn.avg_pool2d(p, 1, 1, "VALID")
        f = tf.reshape(p, (1, -1))
        logits = tf.matmul(f, self.wd) + self.bd
        return tf.nn.softmax(logits * logits)


def representative():
    for _ in range(50):
        yield [rng.normal(0, 1, (1, 8, 8, 3)).astype(np.float32)]


model = Net()
converter = tf.lite.TFLiteConverter.from_concrete_functions([model.__call__.get_concrete_function()], model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
if "--int16-io" in sys.argv:
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16
open(sys.argv[1], "wb").write(converter.convert())
