"""How streaming_int8_variables.tflite and streaming_float_variables.tflite were written (TensorFlow 2.21's
converter, run once in a throw-away environment: TensorFlow is no dependency of qcc or of its tests).

A streaming model as TensorFlow writes one: two stream layers, each keeping its last two frames in a
tf.Variable (a resource variable: VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, initialised by CALL_ONCE),
concatenating the new frame to them over time and convolving the result, then a dense layer; full int8
quantization. With the converter's `_experimental_variable_quantization` (as microcontroller streaming
projects such as microWakeWord convert), the variables are int8; without it they stay float32 and the
concatenations run in float.

    python export_streaming.py                  # -> streaming_float_variables.tflite
    python export_streaming.py --int8-variables # -> streaming_int8_variables.tflite
"""

import sys

import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
FRAME = (1, 1, 16, 4)


class Stream(tf.Module):
    def __init__(self):
        self.s1 = tf.Variable(tf.zeros((1, 2, 16, 4)), trainable=False, name="stream1_state")
        self.s2 = tf.Variable(tf.zeros((1, 2, 16, 8)), trainable=False, name="stream2_state")
        self.w1 = tf.constant(rng.normal(0, 0.3, (3, 1, 4, 8)).astype(np.float32))
        self.b1 = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.w2 = tf.constant(rng.normal(0, 0.3, (3, 1, 8, 8)).astype(np.float32))
        self.b2 = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.wd = tf.constant(rng.normal(0, 0.2, (16 * 8, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec(FRAME, tf.float32)])
    def __call__(self, x):
        cat1 = tf.concat([self.s1, x], axis=1)
        self.s1.assign(cat1[:, 1:, :, :])
        h = tf.nn.relu(tf.nn.conv2d(cat1, self.w1, 1, "VALID") + self.b1)
        cat2 = tf.concat([self.s2, h], axis=1)
        self.s2.assign(cat2[:, 1:, :, :])
        h2 = tf.nn.relu(tf.nn.conv2d(cat2, self.w2, 1, "VALID") + self.b2)
        return tf.matmul(tf.reshape(h2, (1, -1)), self.wd)


def representative():
    for _ in range(100):
        yield [rng.normal(0, 1, FRAME).astype(np.float32)]


model = Stream()
converter = tf.lite.TFLiteConverter.from_concrete_functions([model.__call__.get_concrete_function()], model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
int8_variables = "--int8-variables" in sys.argv
converter._experimental_variable_quantization = int8_variables
name = "streaming_int8_variables.tflite" if int8_variables else "streaming_float_variables.tflite"
open(name, "wb").write(converter.convert())
