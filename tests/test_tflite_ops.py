"""TFLite ops through the TFLite frontend: for each op and a spread of its options, the generated C
equals the reference interpreter, which equals the pinned TFLite Micro, on every output value of
seeded random and extreme inputs (tests/helpers.py, check_tflite_exact). Models are written with
the flatbuffers builder the way the converter writes them (channels-last tensors, int8 activations,
per-channel int8 filters of zero point 0, int32 biases of scale s_x * s_w)."""

from __future__ import annotations

import numpy as np
import pytest

from conv_kernels import needs_arm_tools
from helpers import check_tflite_exact
from test_targets import ARM_CFLAGS, make
from tflite_builder import TfliteBuilder

from qcc.commands.compile import compile_to_folder
from qcc.commands.verify import verify
from qcc.pipeline import Options
from qcc.sample_inputs import extreme_inputs, random_inputs


def activation(b: TfliteBuilder, name: str, shape, rng, *, is_input=False, scale=None, zero=None) -> int:
    scale = np.float32(scale if scale is not None else rng.uniform(0.01, 0.2))
    zero = int(zero if zero is not None else rng.integers(-40, 40))
    make = b.input if is_input else b.tensor
    return make(name, tuple(shape), "int8", scale=scale, zero_point=zero)


def filter_and_bias(b: TfliteBuilder, name: str, shape, channels: int, channel_dim: int, x_scale, rng,
                    per_channel=True):
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, size=channels if per_channel else 1).astype(np.float32)
    w_t = b.const(f"{name}_w", w, scale=scales, zero_point=np.zeros(scales.size, np.int64),
                  quantized_dimension=channel_dim)
    bias = rng.integers(-2000, 2000, size=channels).astype(np.int32)
    b_t = b.const(f"{name}_b", bias, scale=(np.float32(x_scale) * np.broadcast_to(scales, channels)).astype(np.float32),
                  zero_point=np.zeros(channels, np.int64))
    return w_t, b_t


def scale_of(b: TfliteBuilder, tensor: int) -> float:
    return float(b.tensors[tensor]["quantization"]["scale"][0])


def out_size(size, k, s, d, padding):
    return -(-size // s) if padding == "SAME" else (size - (k - 1) * d - 1) // s + 1


CONV_CASES = [  # (input HWC, out channels, kernel, strides, dilations, padding, activation, per-channel)
    ((9, 9, 3), 8, (3, 3), (1, 1), (1, 1), "SAME", "RELU", True),
    ((10, 7, 4), 5, (3, 2), (2, 2), (1, 1), "SAME", "NONE", True),
    ((8, 8, 2), 6, (3, 3), (1, 1), (2, 2), "VALID", "RELU6", True),
    ((7, 6, 8), 16, (1, 1), (1, 1), (1, 1), "VALID", "NONE", False),
    ((12, 5, 1), 4, (5, 3), (2, 1), (1, 1), "SAME", "RELU_N1_TO_1", True),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_2d(case, tmp_path):
    (h, w, c), out_c, kernel, strides, dilations, padding, act, per_channel = CONV_CASES[case]
    rng = np.random.default_rng(case)
    b = TfliteBuilder()
    x = activation(b, "x", (1, h, w, c), rng, is_input=True)
    wt, bt = filter_and_bias(b, "conv", (out_c, *kernel, c), out_c, 0, scale_of(b, x), rng, per_channel)
    oh, ow = (out_size(s, k, st, d, padding) for s, k, st, d in zip((h, w), kernel, strides, dilations))
    y = activation(b, "y", (1, oh, ow, out_c), rng, scale=0.5)
    b.op("CONV_2D", [x, wt, bt], [y], version=3, options=dict(
        padding=padding, stride_h=strides[0], stride_w=strides[1], dilation_h_factor=dilations[0],
        dilation_w_factor=dilations[1], fused_activation_function=act))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


@pytest.mark.parametrize("act", ["RELU", "NONE"])
def test_near_dead_filters_are_written_as_their_one_code_exact_to_tflm(act, tmp_path):
    """TFLite quantizes a near-dead filter with a tiny weight scale and its bias with that scale too (about 2^30
    codes): its output is one code whatever the input, which qcc writes instead of computing the channel
    (qcc/ops/quantized.py constant_channels). C == reference == TFLM; three of the eight channels are such."""
    rng = np.random.default_rng(11)
    b = TfliteBuilder()
    x = activation(b, "x", (1, 6, 7, 16), rng, is_input=True)
    w = rng.integers(-127, 128, size=(8, 1, 1, 16)).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, size=8).astype(np.float32)
    bias = rng.integers(-2000, 2000, size=8).astype(np.int64)
    for c, sign in ((1, 1), (4, -1), (6, 1)):  # a tiny scale beside a bias of about 2^30 in real terms
        scales[c] = np.float32(1e-9)
        bias[c] = sign * (2**30 - 5000)
    wt = b.const("conv_w", w, scale=scales, zero_point=np.zeros(8, np.int64), quantized_dimension=0)
    bt = b.const("conv_b", bias.astype(np.int32), scale=(np.float32(scale_of(b, x)) * scales).astype(np.float32),
                 zero_point=np.zeros(8, np.int64))
    y = activation(b, "y", (1, 6, 7, 8), rng, scale=0.5, zero=-128 if act == "RELU" else None)
    b.op("CONV_2D", [x, wt, bt], [y], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1,
                                                              fused_activation_function=act))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)
    assert ".constant_c = 3," in (tmp_path / "out_tflm" / "model.c").read_text()


DEPTHWISE_CASES = [  # (input HWC, multiplier, kernel, strides, padding, activation)
    ((9, 9, 4), 1, (3, 3), (1, 1), "SAME", "RELU6"),
    ((10, 8, 3), 1, (3, 3), (2, 2), "SAME", "RELU"),
    ((6, 6, 1), 8, (3, 3), (2, 2), "SAME", "NONE"),
    ((9, 7, 2), 3, (5, 5), (1, 1), "VALID", "NONE"),
]


@pytest.mark.parametrize("case", range(len(DEPTHWISE_CASES)))
def test_depthwise_conv_2d(case, tmp_path):
    (h, w, c), mult, kernel, strides, padding, act = DEPTHWISE_CASES[case]
    rng = np.random.default_rng(10 + case)
    b = TfliteBuilder()
    x = activation(b, "x", (1, h, w, c), rng, is_input=True)
    wt, bt = filter_and_bias(b, "dw", (1, *kernel, c * mult), c * mult, 3, scale_of(b, x), rng)
    oh, ow = (out_size(s, k, st, 1, padding) for s, k, st in zip((h, w), kernel, strides))
    y = activation(b, "y", (1, oh, ow, c * mult), rng, scale=0.3)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], version=3, options=dict(
        padding=padding, stride_h=strides[0], stride_w=strides[1], depth_multiplier=mult,
        fused_activation_function=act))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(1, 20), (3, 12), (1, 3, 4, 5)])
def test_fully_connected(shape, per_channel, tmp_path):
    """Per-tensor and per-channel weights; a 4-D input is flattened in TFLite's (channels-last) order."""
    rng = np.random.default_rng(len(shape) * 10 + per_channel)
    b = TfliteBuilder()
    x = activation(b, "x", shape, rng, is_input=True)
    depth, rows = (shape[-1], int(np.prod(shape[:-1]))) if len(shape) == 2 else (int(np.prod(shape[1:])), shape[0])
    wt, bt = filter_and_bias(b, "fc", (7, depth), 7, 0, scale_of(b, x), rng, per_channel)
    y = activation(b, "y", (rows, 7), rng, scale=0.4)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], version=9 if per_channel else 4,
         options=dict(fused_activation_function="RELU"))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


def conv_image(b: TfliteBuilder, rng, x_shape, filter_shape, h_shape, op: str, h_scale: float = 0.3,
               **options) -> tuple[int, int]:
    """A model input through one CONV_2D or DEPTHWISE_CONV_2D (random filter and bias): the input and the
    image the layer makes."""
    x = activation(b, "x", x_shape, rng, is_input=True)
    depthwise = op == "DEPTHWISE_CONV_2D"
    weights, bias = filter_and_bias(b, "conv", filter_shape, filter_shape[3 if depthwise else 0], 3 if depthwise else 0,
                                    scale_of(b, x), rng)
    h = activation(b, "h", h_shape, rng, scale=h_scale)
    b.op(op, [x, weights, bias], [h], version=3, options=options)
    return x, h


def fully_connected_head(b: TfliteBuilder, h: int, cols: int, rng, *, reshape: bool, reads: str):
    """FULLY_CONNECTED of the image `h` into `cols` outputs; with `reshape`, also a RESHAPE of h to (1, depth)
    (Keras' Flatten). reads: "flat" (the RESHAPE's output) or "image" (h itself, which TFLM flattens).
    Returns (the output, the RESHAPE's output or None)."""
    depth = int(np.prod(b.tensors[h]["shape"][1:]))
    flat = None
    if reshape:
        flat = activation(b, "flat", (1, depth), rng, scale=0.3, zero=int(b.tensors[h]["quantization"]["zero_point"][0]))
        b.op("RESHAPE", [h, b.const("shape", np.array([1, depth], np.int32))], [flat], options=dict(new_shape=[1, depth]))
    weights, bias = filter_and_bias(b, "fc", (cols, depth), cols, 0, scale_of(b, h), rng)
    y = activation(b, "y", (1, cols), rng, scale=0.5)
    b.op("FULLY_CONNECTED", [flat if reads == "flat" else h, weights, bias], [y], version=4)
    return y, flat


def test_fully_connected_after_conv_keeps_channels_last_order(tmp_path):
    """A convolution's channels-first output flattened into FULLY_CONNECTED (micro_speech's shape): the
    weights' columns are permuted at compile time, and the values equal TFLM's flattening of NHWC."""
    rng = np.random.default_rng(7)
    b = TfliteBuilder()
    _, h = conv_image(b, rng, (1, 6, 5, 1), (1, 3, 3, 4), (1, 3, 3, 4), "DEPTHWISE_CONV_2D", padding="SAME", stride_h=2,
                   stride_w=2, depth_multiplier=4, fused_activation_function="RELU")
    y, flat = fully_connected_head(b, h, 3, rng, reshape=True, reads="image")
    b.output(y, flat)
    compiled = check_tflite_exact(b.build(), tmp_path)
    assert "Transpose" in {n.op for n in compiled.graph.nodes}  # the RESHAPE's channels-last view of h
    fc = next(n for n in compiled.graph.nodes if n.op == "QGemm")
    assert compiled.graph.tensor(fc.inputs[0]).shape == (1, 36)


def test_a_reshape_flattening_an_image_into_fully_connected_moves_no_bytes(tmp_path):
    """Keras' Flatten: a RESHAPE of the convolution's output into FULLY_CONNECTED. The layer reads the
    channels-first image with its weights' columns permuted at compile time; the RESHAPE's channels-last
    copy is dropped (nothing else reads it); the values equal TFLM's."""
    rng = np.random.default_rng(9)
    b = TfliteBuilder()
    _, h = conv_image(b, rng, (1, 6, 5, 2), (3, 3, 3, 2), (1, 6, 5, 3), "CONV_2D", padding="SAME", stride_h=1, stride_w=1)
    y, _ = fully_connected_head(b, h, 4, rng, reshape=True, reads="flat")
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path)
    assert "Transpose" not in {n.op for n in compiled.graph.nodes}
    fc = next(n for n in compiled.graph.nodes if n.op == "QGemm")
    assert compiled.graph.producer(fc.inputs[0]).attrs["onnx_op"] == "the rows view"


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_fully_connected_streams_the_image_before_it_a_row_at_a_time(tmp_path, io_in_arena):
    """micro_speech's tail at a size where streaming pays: the convolution's output is never whole, the
    fully connected layer adds each row's part of its depth (its weights laid out per row) into
    accumulators, and requantizes after the last row; C == reference == TFLM."""
    rng = np.random.default_rng(11)
    b = TfliteBuilder()
    _, h = conv_image(b, rng, (1, 24, 20, 1), (1, 5, 4, 8), (1, 12, 10, 8), "DEPTHWISE_CONV_2D", padding="SAME",
                   stride_h=2, stride_w=2, depth_multiplier=8, fused_activation_function="RELU")
    y, _ = fully_connected_head(b, h, 5, rng, reshape=False, reads="image")  # as micro_speech: TFLM flattens h
    b.output(y)
    model = b.build()
    compiled = check_tflite_exact(model, tmp_path, io_in_arena=io_in_arena)
    (stream,) = compiled.plan.streams.values()
    assert stream.ends_in_parts and [n.op for n in stream.nodes] == ["QLinearConv", "Reshape", "QGemm"]
    assert compiled.plan.storage[stream.intermediates[0]].kind == "stream"
    input_bytes = 24 * 20 if io_in_arena else 0
    assert compiled.plan.arena_bytes - input_bytes < 12 * 10 * 8  # not even the convolution's output whole


@pytest.mark.parametrize("case", range(4))
def test_average_pool_2d(case, tmp_path):
    """TFLM's integer mean (halves away from zero over the taps inside the map), SAME and VALID, and a
    window over the whole map (the networks' global pooling)."""
    (h, w, c), kernel, strides, padding, act = [((8, 8, 3), (2, 2), (2, 2), "VALID", "NONE"),
                                                ((7, 9, 4), (3, 3), (2, 2), "SAME", "RELU"),
                                                ((25, 5, 6), (25, 5), (1, 1), "VALID", "NONE"),
                                                ((6, 6, 2), (3, 2), (1, 2), "SAME", "RELU6")][case]
    rng = np.random.default_rng(20 + case)
    b = TfliteBuilder()
    x = activation(b, "x", (1, h, w, c), rng, is_input=True)
    q = b.tensors[x]["quantization"]
    oh, ow = (out_size(s, k, st, 1, padding) for s, k, st in zip((h, w), kernel, strides))
    y = b.tensor("y", (1, oh, ow, c), "int8", scale=q["scale"][0], zero_point=q["zero_point"][0])
    b.op("AVERAGE_POOL_2D", [x], [y], options=dict(padding=padding, stride_h=strides[0], stride_w=strides[1],
                                                   filter_height=kernel[0], filter_width=kernel[1],
                                                   fused_activation_function=act))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


@needs_arm_tools
def test_global_average_pools_sum_int8_codes_by_words_on_the_cortex_m4(tmp_path):
    """On DSP cores the int8 global pool sums 8 codes a turn in two int16 lanes (SXTAB16), added out every 126 words:
    maps of 7 codes (none by words), 8, 125, 504 (one whole run), 505 and 1,000 (two runs and a remainder), exact on
    the M4 as on the host (C == reference == TFLM), extreme inputs included (every code -128 or 127: a lane's widest
    sums)."""
    rng = np.random.default_rng(31)
    b = TfliteBuilder()
    for i, (h, w) in enumerate([(1, 7), (2, 4), (25, 5), (12, 42), (5, 101), (40, 25)]):
        x = activation(b, f"x{i}", (1, h, w, 3), rng, is_input=True)
        q = b.tensors[x]["quantization"]
        y = b.tensor(f"y{i}", (1, 1, 1, 3), "int8", scale=q["scale"][0], zero_point=q["zero_point"][0])
        b.op("AVERAGE_POOL_2D", [x], [y], options=dict(padding="VALID", stride_h=1, stride_w=1, filter_height=h,
                                                       filter_width=w, fused_activation_function="NONE"))
        b.output(y)
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build())
    graph = check_tflite_exact(path, tmp_path, schemes=("tflm",)).graph
    compile_to_folder(path, tmp_path / "m4", Options(target="cortex-m4"),
                      golden=random_inputs(graph, 4, 0) + extreme_inputs(graph))
    result = make(tmp_path / "m4", "run-cortex-m4", ARM_CFLAGS)
    assert "OK: 7 case(s), every output value exact" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("beta, scale, depth, rows", [(1.0, 0.1, 10, 1), (1.0, 0.5, 12, 3), (0.5, 0.02, 200, 1),
                                                      (2.0, 0.25, 3, 4)])
def test_softmax(beta, scale, depth, rows, tmp_path):
    rng = np.random.default_rng(int(depth))
    b = TfliteBuilder()
    x = activation(b, "x", (rows, depth), rng, is_input=True, scale=scale)
    y = b.tensor("y", (rows, depth), "int8", scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [x], [y], version=2, options=dict(beta=beta))
    b.output(y)
    x_values = rng.integers(-128, 128, size=(6, rows, depth)).astype(np.int8)
    x_values[0, :, :] = 5  # a row of equal codes
    x_values[1, :, 0] = 127  # one code far above the rest
    check_tflite_exact(b.build(), tmp_path, extra_cases=[[v] for v in x_values])


@pytest.mark.parametrize("op", ["ADD", "MUL"])
@pytest.mark.parametrize("broadcast", [False, True])
def test_add_mul(op, broadcast, tmp_path):
    """Two images of one shape (after convolutions: channels first inside) and a per-channel constant
    broadcast over an image (TFLite's own layout)."""
    rng = np.random.default_rng(30 + broadcast)
    b = TfliteBuilder()
    x = activation(b, "x", (1, 5, 6, 4), rng, is_input=True)
    wt, bt = filter_and_bias(b, "conv", (4, 1, 1, 4), 4, 0, scale_of(b, x), rng)
    h = activation(b, "h", (1, 5, 6, 4), rng, scale=0.2)
    b.op("CONV_2D", [x, wt, bt], [h], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1))
    if broadcast:
        other = b.const("k", rng.integers(-128, 128, size=(4,)).astype(np.int8), scale=0.05, zero_point=3)
    else:
        other = x
    y = activation(b, "y", (1, 5, 6, 4), rng, scale=0.3 if op == "ADD" else 0.05)
    b.op(op, [h, other], [y], version=2, options=dict(fused_activation_function="RELU" if broadcast else "NONE"))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


def test_reshape_squeeze(tmp_path):
    """RESHAPE of a channels-last image (its own order) and SQUEEZE of unit dimensions."""
    rng = np.random.default_rng(40)
    b = TfliteBuilder()
    _, h = conv_image(b, rng, (1, 4, 3, 2), (2, 1, 1, 2), (1, 4, 3, 2), "CONV_2D", h_scale=0.2, padding="VALID",
                      stride_h=1, stride_w=1)
    q = b.tensors[h]["quantization"]
    r = b.tensor("r", (1, 6, 4), "int8", scale=q["scale"][0], zero_point=q["zero_point"][0])
    b.op("RESHAPE", [h, b.const("shape", np.array([1, 6, -1], np.int32))], [r])
    s = b.tensor("s", (6, 4), "int8", scale=q["scale"][0], zero_point=q["zero_point"][0])
    b.op("SQUEEZE", [r], [s], options=dict(squeeze_dims=[0]))
    b.output(s)
    check_tflite_exact(b.build(), tmp_path)


def test_a_convolution_reads_the_models_input_image_in_place(tmp_path):
    """A one-group convolution on the model's channels-last input image reads it in place (no channels-first
    copy in the arena), and a second reader of the same input that needs channels first still gets its copy."""
    rng = np.random.default_rng(50)
    b = TfliteBuilder()
    x, y = conv_image(b, rng, (1, 7, 6, 3), (4, 3, 3, 3), (1, 4, 3, 4), "CONV_2D", h_scale=0.4, padding="SAME",
                      stride_h=2, stride_w=2)
    q = b.tensors[x]["quantization"]
    p = b.tensor("p", (1, 7, 6, 3), "int8", scale=q["scale"][0], zero_point=q["zero_point"][0])
    b.op("AVERAGE_POOL_2D", [x], [p], options=dict(padding="SAME", stride_h=1, stride_w=1, filter_height=3,
                                                   filter_width=3))
    b.output(y, p)
    compiled = check_tflite_exact(b.build(), tmp_path)
    ops = [n.op for n in compiled.graph.nodes]
    # Transposes: the pool's input, and the two outputs back to channels last
    assert ops.count("ChannelsFirstView") == 1 and ops.count("Transpose") == 3
    conv = next(n for n in compiled.graph.nodes if n.op == "QLinearConv")
    assert compiled.graph.producer(conv.inputs[0]).op == "ChannelsFirstView"
    assert ".in_channels_last = 1," in (tmp_path / "out_tflm" / "model.c").read_text()


@pytest.mark.parametrize("value", ["zero point", "other code"])
@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_an_explicit_pad_before_a_convolution(op, value, tmp_path):
    """PAD (PyTorch's export through TFLite writes one before each strided convolution) between two
    convolutions: filled with the zero point's code, it folds into the second convolution's own padding
    (qcc/passes/fold_pads.py: no padded copy); filled with another code (PADV2) it stays a Pad. Exact both ways."""
    rng = np.random.default_rng(60)
    b = TfliteBuilder()
    image = activation(b, "image", (1, 6, 7, 4), rng, is_input=True)
    w1, b1 = filter_and_bias(b, "first", (4, 1, 1, 4), 4, 0, scale_of(b, image), rng)
    x = activation(b, "x", (1, 6, 7, 4), rng, scale=0.2)
    b.op("CONV_2D", [image, w1, b1], [x], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1))
    q = b.tensors[x]["quantization"]
    zero = int(q["zero_point"][0])
    padded = b.tensor("padded", (1, 8, 10, 4), "int8", scale=q["scale"][0], zero_point=zero)
    paddings = b.const("paddings", np.array([[0, 0], [1, 1], [1, 2], [0, 0]], np.int32))
    if value == "zero point":
        b.op("PAD", [x, paddings], [padded], version=2)
    else:
        fill = b.const("fill", np.array([zero + 5], np.int8), scale=q["scale"][0], zero_point=zero)
        b.op("PADV2", [x, paddings, fill], [padded], version=2)
    if op == "CONV_2D":
        wt, bt = filter_and_bias(b, "conv", (5, 3, 3, 4), 5, 0, scale_of(b, x), rng)
        y = activation(b, "y", (1, 3, 4, 5), rng, scale=0.4)
        b.op(op, [padded, wt, bt], [y], version=3, options=dict(padding="VALID", stride_h=2, stride_w=2))
    else:
        wt, bt = filter_and_bias(b, "dw", (1, 3, 3, 4), 4, 3, scale_of(b, x), rng)
        y = activation(b, "y", (1, 3, 4, 4), rng, scale=0.4)
        b.op(op, [padded, wt, bt], [y], version=3, options=dict(padding="VALID", stride_h=2, stride_w=2,
                                                                 depth_multiplier=1))
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path)
    pads = [n for n in compiled.graph.nodes if n.op == "Pad"]
    assert len(pads) == (0 if value == "zero point" else 1)
    conv = compiled.graph.nodes[-1] if compiled.graph.nodes[-1].op == "QLinearConv" else next(
        n for n in reversed(compiled.graph.nodes) if n.op == "QLinearConv")
    assert conv.attrs["pads_begin"] == ([1, 1] if value == "zero point" else [0, 0])


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("value", ["zero point", "other code"])
def test_a_pad_of_the_models_input_image_folds_into_the_convolution_that_reads_it_in_place(value, channels, tmp_path):
    """PAD on the model's channels-last input image before a VALID convolution (Yolo-Fastest's first layer; a
    YOLOv5's on a one-channel image): the Pad trades places with the layout change after it (a Transpose, or for
    one channel a Reshape of the same bytes), then folds into the convolution, which reads the input in place:
    neither a padded copy nor a channels-first one exists. Filled with another code (PADV2), the Pad runs, on the
    channels-first image. Exact both ways."""
    rng = np.random.default_rng(61)
    b = TfliteBuilder()
    image = activation(b, "image", (1, 9, 8, channels), rng, is_input=True)
    q = b.tensors[image]["quantization"]
    zero = int(q["zero_point"][0])
    padded = b.tensor("padded", (1, 11, 11, channels), "int8", scale=q["scale"][0], zero_point=zero)
    paddings = b.const("paddings", np.array([[0, 0], [1, 1], [1, 2], [0, 0]], np.int32))
    if value == "zero point":
        b.op("PAD", [image, paddings], [padded], version=2)
    else:
        fill = b.const("fill", np.array([zero + 5], np.int8), scale=q["scale"][0], zero_point=zero)
        b.op("PADV2", [image, paddings, fill], [padded], version=2)
    wt, bt = filter_and_bias(b, "conv", (5, 3, 3, channels), 5, 0, scale_of(b, image), rng)
    y = activation(b, "y", (1, 5, 5, 5), rng, scale=0.4)
    b.op("CONV_2D", [padded, wt, bt], [y], version=3, options=dict(padding="VALID", stride_h=2, stride_w=2))
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path)
    ops = [n.op for n in compiled.graph.nodes]
    conv = next(n for n in compiled.graph.nodes if n.op == "QLinearConv")
    view = "ChannelsFirstView" if channels > 1 else "Reshape"
    if value == "zero point":
        assert "Pad" not in ops and ops.count(view) == 1 and conv.attrs["pads_begin"] == [1, 1]
        assert compiled.graph.producer(conv.inputs[0]).op == view
    else:
        assert ops.count("Pad") == 1 and conv.attrs["pads_begin"] == [0, 0]
        assert compiled.graph.producer(conv.inputs[0]).op == "Pad"


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_a_uint8_input_image_requantized_into_a_convolution(tmp_path, io_in_arena):
    """ST's and OpenMV's detectors take uint8 images: QUANTIZE (uint8 -> int8, TFLM's x ^ 0x80 at one scale) then
    the first convolution on the int8 image. Exact on random and extreme images (all 0, all 255, alternating)."""
    rng = np.random.default_rng(62)
    b = TfliteBuilder()
    image = b.input("image", (1, 9, 8, 3), "uint8", scale=np.float32(1 / 255), zero_point=128)
    x = b.tensor("x", (1, 9, 8, 3), "int8", scale=np.float32(1 / 255), zero_point=0)
    b.op("QUANTIZE", [image], [x])
    wt, bt = filter_and_bias(b, "conv", (5, 3, 3, 3), 5, 0, 1 / 255, rng)
    y = activation(b, "y", (1, 5, 4, 5), rng, scale=0.05)
    b.op("CONV_2D", [x, wt, bt], [y], version=3, options=dict(padding="SAME", stride_h=2, stride_w=2))
    b.output(y)
    model = b.build()
    compiled = check_tflite_exact(model, tmp_path, io_in_arena=io_in_arena)
    assert compiled.graph.tensor(compiled.graph.inputs[0]).dtype == "uint8"
    # the convolution applies QUANTIZE's table as it loads the uint8 image: neither an int8 copy nor a transpose
    assert [n.op for n in compiled.graph.nodes] == ["LookupOnLoad", "ChannelsFirstView", "QLinearConv", "Transpose"]
    assert "_in_table[256]" in (tmp_path / "out_tflm" / "model.c").read_text()
    if not io_in_arena:  # --layers reads the view's bytes (the uint8 image) through the table
        path = tmp_path / "u8.tflite"
        path.write_bytes(model)
        report = verify(str(path), Options(), count=2, layers=True)
        assert report.ok and all(r.c.all_exact and r.c.compared > 0 for r in report.layers.layers)


def test_a_streamed_chain_on_the_models_channels_last_input_writes_over_the_rows_it_has_read(tmp_path):
    """With --io-in-arena, a chain streamed from the model's channels-last input image (read in place through a
    ChannelsFirstView) may write its output over the input's rows it has read for the last time: its reads are
    given per byte of the channels-last buffer (row h is bytes h * W * C ...). Exact, and over the input."""
    rng = np.random.default_rng(63)
    b = TfliteBuilder()
    image = activation(b, "image", (1, 24, 24, 3), rng, is_input=True)
    w1, b1 = filter_and_bias(b, "wide", (16, 3, 3, 3), 16, 0, scale_of(b, image), rng)
    x = activation(b, "x", (1, 24, 24, 16), rng, scale=0.1)
    b.op("CONV_2D", [image, w1, b1], [x], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1))
    w2, b2 = filter_and_bias(b, "down", (4, 3, 3, 16), 4, 0, scale_of(b, x), rng)
    y = activation(b, "y", (1, 12, 12, 4), rng, scale=0.2)
    b.op("CONV_2D", [x, w2, b2], [y], version=3, options=dict(padding="SAME", stride_h=2, stride_w=2))
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path, io_in_arena=True)
    plan = compiled.plan
    assert len(plan.streams) == 1
    step = next(iter(plan.streams))
    assert "output over 'image'" in plan.steps[step].detail
    view = next(n for n in compiled.graph.nodes if n.op == "ChannelsFirstView")
    assert plan.storage[view.outputs[0]] == plan.storage["image"]
    # byte by byte of the channels-last buffer: each image row (W * C bytes) read at one call, rows in order
    reads = plan.streams[step].access_order(compiled.graph).reads[view.outputs[0]].reshape(24, 24 * 3)
    assert np.all(reads == reads[:, :1]) and np.all(np.diff(reads[:, 0]) >= 0) and reads[0, 0] >= 0
