"""How streaming_int8_variables.tflite, streaming_float_variables.tflite and streaming_ds_cnn_int8_variables.tflite
were written (TensorFlow 2.21's converter, run once in a throw-away environment: TensorFlow is no dependency of
qcc or of its tests).

A streaming model as TensorFlow writes one: two stream layers, each keeping its last two frames in a
tf.Variable (a resource variable: VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, initialised by CALL_ONCE),
concatenating the new frame to them over time and convolving the result, then a dense layer; full int8
quantization. With the converter's `_experimental_variable_quantization` (as microcontroller streaming
projects such as microWakeWord convert), the variables are int8; without it they stay float32 and the
concatenations run in float.

    python export_streaming.py                  # -> streaming_float_variables.tflite
    python export_streaming.py --int8-variables # -> streaming_int8_variables.tflite
    python export_streaming.py --ds-cnn         # -> streaming_ds_cnn_int8_variables.tflite

The DS-CNN is a streaming keyword spotter as kws_streaming builds one: a convolution, then two
depthwise + pointwise blocks, each 3-frame layer behind its own stream state, a mean over the width and
a dense head (int8 variables).
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


class StreamingDsCnn(tf.Module):
    FRAME = (1, 1, 10, 8)  # one frame: 10 features x 8 channels

    def __init__(self):
        def state(shape, name):
            return tf.Variable(tf.zeros(shape), trainable=False, name=name)
        self.s0, self.s1, self.s2 = state((1, 2, 10, 8), "s0"), state((1, 2, 10, 16), "s1"), state((1, 2, 10, 16), "s2")
        self.w0 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 16)).astype(np.float32))
        self.d1 = tf.constant(rng.normal(0, 0.3, (3, 3, 16, 1)).astype(np.float32))
        self.p1 = tf.constant(rng.normal(0, 0.3, (1, 1, 16, 16)).astype(np.float32))
        self.d2 = tf.constant(rng.normal(0, 0.3, (3, 3, 16, 1)).astype(np.float32))
        self.p2 = tf.constant(rng.normal(0, 0.3, (1, 1, 16, 16)).astype(np.float32))
        self.b = [tf.constant(rng.normal(0, 0.1, (16,)).astype(np.float32)) for _ in range(5)]
        self.wd = tf.constant(rng.normal(0, 0.3, (16, 4)).astype(np.float32))

    @staticmethod
    def stream(state, x):
        cat = tf.concat([state, x], axis=1)
        state.assign(cat[:, 1:, :, :])
        return cat

    @tf.function(input_signature=[tf.TensorSpec(FRAME, tf.float32)])
    def __call__(self, x):
        width = [[0, 0], [0, 0], [1, 1], [0, 0]]  # pad the features, never time
        h = tf.nn.relu(tf.nn.conv2d(self.stream(self.s0, x), self.w0, 1, width) + self.b[0])
        h = tf.nn.relu(tf.nn.depthwise_conv2d(self.stream(self.s1, h), self.d1, [1, 1, 1, 1], width) + self.b[1])
        h = tf.nn.relu(tf.nn.conv2d(h, self.p1, 1, "VALID") + self.b[2])
        h = tf.nn.relu(tf.nn.depthwise_conv2d(self.stream(self.s2, h), self.d2, [1, 1, 1, 1], width) + self.b[3])
        h = tf.nn.relu(tf.nn.conv2d(h, self.p2, 1, "VALID") + self.b[4])
        return tf.matmul(tf.reduce_mean(h, axis=[1, 2]), self.wd)


def representative():
    for _ in range(100):
        yield [rng.normal(0, 1, FRAME).astype(np.float32)]


ds_cnn = "--ds-cnn" in sys.argv
if ds_cnn:
    rng = np.random.default_rng(1)
    FRAME = StreamingDsCnn.FRAME
model = StreamingDsCnn() if ds_cnn else Stream()
converter = tf.lite.TFLiteConverter.from_concrete_functions([model.__call__.get_concrete_function()], model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
int8_variables = "--int8-variables" in sys.argv or ds_cnn
converter._experimental_variable_quantization = int8_variables
name = ("streaming_ds_cnn_int8_variables.tflite" if ds_cnn else
        "streaming_int8_variables.tflite" if int8_variables else "streaming_float_variables.tflite")
open(name, "wb").write(converter.convert())
