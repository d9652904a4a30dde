"""16x8 models (int16 activations, int8 weights): the generated C equals the reference interpreter, which equals
the pinned TFLite Micro, on every output value of seeded random and extreme inputs (tests/helpers.py,
check_tflite_exact). Two models written by TensorFlow's converter (tests/data/tflite/export_16x8.py) and, built
with the flatbuffers builder the way the converter writes them, each operator qcc compiles at int16 over a
spread of its options: int64 biases (TFLM's 64-bit accumulator and 16-bit multiplier) and int32 ones (its
32-bit accumulator), mixed int8/int16 models joined by QUANTIZE, and what is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import check_tflite_exact
from qcc.errors import QccError
from qcc.pipeline import compile_model
from test_tflite_ops import out_size
from tflite_builder import TfliteBuilder

DATA = Path(__file__).parent / "data" / "tflite"


def activation16(b: TfliteBuilder, name: str, shape, scale, *, is_input=False) -> int:
    make = b.input if is_input else b.tensor
    return make(name, tuple(shape), "int16", scale=np.float32(scale), zero_point=0)


def filter_and_bias16(b: TfliteBuilder, name: str, shape, channels: int, channel_dim: int, x_scale, rng, *,
                      bias_type="int64", bias_range=2_000_000):
    """Symmetric per-channel int8 weights and a bias of scale s_x * s_w (int64 as the converter writes it)."""
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, size=channels).astype(np.float32)
    w_t = b.const(f"{name}_w", w, scale=scales, zero_point=np.zeros(channels, np.int64), quantized_dimension=channel_dim)
    if bias_type is None:
        return w_t, -1
    bias = rng.integers(-bias_range, bias_range, size=channels).astype(bias_type)
    b_t = b.const(f"{name}_b", bias, scale=(np.float32(x_scale) * scales).astype(np.float32),
                  zero_point=np.zeros(channels, np.int64))
    return w_t, b_t


def ops_of(path: Path) -> set[str]:
    return {node.op for node in compile_model(path).graph.nodes}


@pytest.mark.parametrize("model", ["net_16x8_int16_io.tflite", "net_16x8_float_io.tflite"])
def test_a_model_written_by_the_converter(model, tmp_path):
    """CONV_2D, DEPTHWISE_CONV_2D, ADD, MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED (per channel),
    MUL and SOFTMAX at 16x8, with int16 or float32 (QUANTIZE / DEQUANTIZE) I/O."""
    ops = ops_of(DATA / model)
    assert {"Conv16x8", "QLinearAdd", "QLinearMul", "MaxPool", "TflmAveragePool", "TflmSoftmax16"} <= ops
    compiled = check_tflite_exact(DATA / model, tmp_path, n_random=6)
    dtypes = {compiled.graph.tensor(name).dtype for name in compiled.graph.inputs + compiled.graph.outputs}
    assert dtypes == ({"int16"} if "int16_io" in model else {"float32"})


CONV_CASES = [  # (input HWC, out channels, kernel, strides, dilations, padding, activation, bias type)
    ((9, 9, 3), 8, (3, 3), (1, 1), (1, 1), "SAME", "RELU", "int64"),
    ((10, 7, 4), 5, (3, 2), (2, 2), (1, 1), "SAME", "NONE", "int64"),
    ((8, 8, 2), 6, (3, 3), (1, 1), (2, 2), "VALID", "RELU6", "int64"),
    ((7, 6, 8), 16, (1, 1), (1, 1), (1, 1), "VALID", "NONE", "int32"),
    ((12, 5, 1), 4, (5, 3), (2, 1), (1, 1), "SAME", "RELU_N1_TO_1", None),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_2d(case, tmp_path):
    (h, w, c), out_c, kernel, strides, dilations, padding, act, bias_type = CONV_CASES[case]
    rng = np.random.default_rng(100 + case)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, h, w, c), 0.0005, is_input=True)
    wt, bt = filter_and_bias16(b, "conv", (out_c, *kernel, c), out_c, 0, 0.0005, rng, bias_type=bias_type)
    oh, ow = (out_size(s, k, st, d, padding) for s, k, st, d in zip((h, w), kernel, strides, dilations))
    y = activation16(b, "y", (1, oh, ow, out_c), 0.004)
    b.op("CONV_2D", [x, wt, bt], [y], version=4, options=dict(
        padding=padding, stride_h=strides[0], stride_w=strides[1], dilation_h_factor=dilations[0],
        dilation_w_factor=dilations[1], fused_activation_function=act))
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path)
    (node,) = [n for n in compiled.graph.nodes if n.op == "Conv16x8"]
    assert node.attrs["wide"] == (bias_type != "int32")  # the int64 path unless the bias is int32


DEPTHWISE_CASES = [  # (input HWC, multiplier, kernel, strides, padding, activation, dilation)
    ((9, 9, 4), 1, (3, 3), (1, 1), "SAME", "RELU6", 1),
    ((10, 8, 3), 1, (3, 3), (2, 2), "SAME", "RELU", 1),
    ((6, 6, 1), 8, (3, 3), (2, 2), "SAME", "NONE", 1),
    ((9, 7, 2), 3, (5, 5), (1, 1), "VALID", "NONE", 1),
    ((8, 9, 3), 1, (3, 3), (1, 2), "VALID", "NONE", 1),
    ((9, 10, 2), 2, (3, 3), (1, 1), "SAME", "NONE", 2),
]


@pytest.mark.parametrize("case", range(len(DEPTHWISE_CASES)))
def test_depthwise_conv_2d(case, tmp_path):
    (h, w, c), mult, kernel, strides, padding, act, dilation = DEPTHWISE_CASES[case]
    rng = np.random.default_rng(110 + case)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, h, w, c), 0.0007, is_input=True)
    wt, bt = filter_and_bias16(b, "dw", (1, *kernel, c * mult), c * mult, 3, 0.0007, rng)
    oh, ow = (out_size(s, k, st, dilation, padding) for s, k, st in zip((h, w), kernel, strides))
    y = activation16(b, "y", (1, oh, ow, c * mult), 0.002)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], version=3, options=dict(
        padding=padding, stride_h=strides[0], stride_w=strides[1], depth_multiplier=mult,
        dilation_h_factor=dilation, dilation_w_factor=dilation, fused_activation_function=act))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


@pytest.mark.parametrize("bias_type", ["int64", "int32"])
@pytest.mark.parametrize("shape", [(1, 20), (3, 12), (1, 3, 4, 5), (2, 300)])
def test_fully_connected(shape, bias_type, tmp_path):
    """Rows of 12 to 300 (int32 accumulators that may wrap where TFLM's do: the bias type picks the path)."""
    rng = np.random.default_rng(len(shape) * 10 + shape[-1] + (bias_type == "int32"))
    b = TfliteBuilder()
    x = activation16(b, "x", shape, 0.0003, is_input=True)
    depth, rows = (shape[-1], int(np.prod(shape[:-1]))) if len(shape) == 2 else (int(np.prod(shape[1:])), shape[0])
    wt, bt = filter_and_bias16(b, "fc", (7, depth), 7, 0, 0.0003, rng, bias_type=bias_type)
    y = activation16(b, "y", (rows, 7), 0.01 * np.sqrt(depth / 20))
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], version=11, options=dict(fused_activation_function="RELU"))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


def test_an_accumulator_near_the_64_bit_path_limit(tmp_path):
    """Biases of about 2^46: TFLM's int64 products acc * m stay exact only in 64 bits."""
    rng = np.random.default_rng(7)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 16), 0.0003, is_input=True)
    wt, bt = filter_and_bias16(b, "fc", (4, 16), 4, 0, 0.0003, rng, bias_range=2**46)
    y = activation16(b, "y", (1, 4), 2000.0)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], version=11)
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)


@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
def test_mixed_int8_and_int16_parts(op, tmp_path):
    """int8 in, QUANTIZE to int16, an int16 ADD, SUB or MUL (one operand broadcast), QUANTIZE back to int8."""
    b = TfliteBuilder()
    x = b.input("x", (1, 4, 5, 3), "int8", scale=np.float32(0.05), zero_point=-7)
    h = activation16(b, "h", (1, 4, 5, 3), 0.0004)
    b.op("QUANTIZE", [x], [h])
    r = b.input("r", (1, 1, 5, 1), "int16", scale=np.float32(0.0002), zero_point=0)
    s = activation16(b, "s", (1, 4, 5, 3), 0.0000031 if op == "MUL" else 0.0009)
    b.op(op, [h, r], [s], version=4 if op != "SUB" else 3,
         options=dict(fused_activation_function="NONE" if op == "MUL" else "RELU"))
    y = b.tensor("y", (1, 4, 5, 3), "int8", scale=np.float32(0.07), zero_point=3)
    b.op("QUANTIZE", [s], [y])
    b.output(y, s)
    compiled = check_tflite_exact(b.build(), tmp_path)
    assert sum(n.op == "TflmRequantize" for n in compiled.graph.nodes) == 2


@pytest.mark.parametrize("after_conv", [False, True])
def test_slices_splits_and_concatenations_move_int16_codes(after_conv, tmp_path):
    """STRIDED_SLICE (negative stride, a shrunk axis), SPLIT, CONCATENATION and PAD on int16, on the model's own
    channels-last layout or, after a convolution, channels first: two bytes per code."""
    rng = np.random.default_rng(3)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 6, 8, 4), 0.0005, is_input=True)
    if after_conv:
        wt, bt = filter_and_bias16(b, "conv", (4, 3, 3, 4), 4, 0, 0.0005, rng)
        h = activation16(b, "h", (1, 6, 8, 4), 0.002)
        b.op("CONV_2D", [x, wt, bt], [h], version=4, options=dict(padding="SAME", stride_h=1, stride_w=1))
        x = h
    scale = b.tensors[x]["quantization"]["scale"][0]
    ints = lambda name, v: b.const(name, np.array(v, np.int32))  # noqa: E731
    sliced = activation16(b, "sliced", (1, 3, 8, 4), scale)
    b.op("STRIDED_SLICE", [x, ints("begin", [0, 5, 0, 0]), ints("end", [1, 0, 8, 4]), ints("strides", [1, -2, 1, 1])],
         [sliced], version=4, options=dict(begin_mask=0b1101, end_mask=0b1101))
    row = activation16(b, "row", (1, 8, 4), scale)
    b.op("STRIDED_SLICE", [x, ints("begin2", [0, 2, 0, 0]), ints("end2", [1, 3, 8, 4]), ints("strides2", [1, 1, 1, 1])],
         [row], version=4, options=dict(shrink_axis_mask=0b10))
    joined = activation16(b, "joined", (1, 9, 8, 4), scale)
    b.op("CONCATENATION", [sliced, x], [joined], version=3, options=dict(axis=1))
    parts = [activation16(b, f"part{i}", (1, 9, 8, 2), scale) for i in range(2)]
    b.op("SPLIT", [ints("axis", [3]), joined], parts, version=3, options=dict(num_splits=2))
    padded = activation16(b, "padded", (1, 10, 11, 2), scale)
    b.op("PAD", [parts[1], ints("paddings", [[0, 0], [1, 0], [2, 1], [0, 0]])], [padded], version=2)
    b.output(row, parts[0], padded)
    check_tflite_exact(b.build(), tmp_path)


def refusal(b: TfliteBuilder, tmp_path) -> str:
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build())
    with pytest.raises(QccError) as info:
        compile_model(path)
    return str(info.value)


def one_op(op: str, options: dict | None = None, *, y_scale=1 / 32768, version=1) -> TfliteBuilder:
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 8), 0.001, is_input=True)
    y = activation16(b, "y", (1, 8), y_scale)
    b.op(op, [x], [y], version=version, options=options)
    b.output(y)
    return b


SOFTMAX_CASES = [(0.001, 1.0, 10), (0.0003, 1.0, 40), (0.0001, 2.0, 7), (0.01, 0.5, 5), (3e-5, 1.0, 100)]


@pytest.mark.parametrize("case", range(len(SOFTMAX_CASES)))
def test_softmax(case, tmp_path):
    """Scales where the differences span TFLM's whole exp table and where they saturate it, rows of 5 to 100."""
    s_x, beta, depth = SOFTMAX_CASES[case]
    b = TfliteBuilder()
    x = activation16(b, "x", (6, depth), s_x, is_input=True)
    y = activation16(b, "y", (6, depth), 1 / 32768)
    b.op("SOFTMAX", [x], [y], version=3, options=dict(beta=beta))
    b.output(y)
    rng = np.random.default_rng(case)
    narrow = [rng.integers(-int(3 / s_x), int(3 / s_x) + 1, (6, depth)).astype(np.int16) for _ in range(3)]
    check_tflite_exact(b.build(), tmp_path, extra_cases=[[v] for v in narrow])


@pytest.mark.parametrize("s_x", [2**-12, 2**-11, 2**-13, 0.001, 3.1e-5, 0.01, 1e-6])
@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_logistic_and_tanh_on_every_int16_code(op, s_x, tmp_path):
    """Power-of-two input scales (TFLM's shortcut: 2^-12, and 2^-11 for TANH only) and others, each on all 65536
    codes in one tensor."""
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 65536), s_x, is_input=True)
    y = activation16(b, "y", (1, 65536), 2**-15)
    b.op(op, [x], [y], version=3)
    b.output(y)
    every_code = np.arange(-32768, 32768, dtype=np.int16).reshape(1, -1)
    check_tflite_exact(b.build(), tmp_path, n_random=1, extra_cases=[[every_code]], schemes=("tflm",))


def test_an_int16_logistic_with_another_output_scale_is_refused(tmp_path):
    message = refusal(one_op("LOGISTIC", y_scale=2**-14, version=3), tmp_path)
    assert "LOGISTIC" in message and "2^-15" in message


def test_a_depthwise_int32_bias_and_a_nonzero_int16_zero_point_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 5, 5, 2), 0.001, is_input=True)
    wt, bt = filter_and_bias16(b, "dw", (1, 3, 3, 2), 2, 3, 0.001, rng, bias_type="int32")
    y = activation16(b, "y", (1, 5, 5, 2), 0.004)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1,
                                                                         depth_multiplier=1))
    b.output(y)
    message = refusal(b, tmp_path)
    assert "DEPTHWISE_CONV_2D" in message and "int64" in message

    b = TfliteBuilder()
    x = b.input("x", (1, 8), "int16", scale=np.float32(0.001), zero_point=5)
    wt, bt = filter_and_bias16(b, "fc", (3, 8), 3, 0, 0.001, rng)
    y = activation16(b, "y", (1, 3), 0.004)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], version=11)
    b.output(y)
    assert "zero point is not 0" in refusal(b, tmp_path)


def test_a_bias_beyond_tflms_64_bit_range_is_refused(tmp_path):
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 4), 0.001, is_input=True)
    w = b.const("w", np.ones((2, 4), np.int8), scale=np.float32(0.01), zero_point=0)
    bias = b.const("b", np.array([2**50, 0], np.int64), scale=np.float32(0.00001), zero_point=0)
    y = activation16(b, "y", (1, 2), 0.004)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], version=11)
    b.output(y)
    message = refusal(b, tmp_path)
    assert "2^47" in message and "FULLY_CONNECTED" in message


@pytest.mark.parametrize("keep_dims", [False, True])
def test_mean_over_the_image_and_over_channels(keep_dims, tmp_path):
    """MEAN on int16 over the spatial axes of a convolution's output (channels first inside) and over the channels
    of the model's input (its own layout): TFLM's integer mean, 1/n folded into the multiplier."""
    rng = np.random.default_rng(9)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, 5, 6, 4), 0.0005, is_input=True)
    wt, bt = filter_and_bias16(b, "conv", (6, 3, 3, 4), 6, 0, 0.0005, rng)
    h = activation16(b, "h", (1, 5, 6, 6), 0.003)
    b.op("CONV_2D", [x, wt, bt], [h], version=4, options=dict(padding="SAME", stride_h=1, stride_w=1))
    m1 = activation16(b, "m1", (1, 1, 1, 6) if keep_dims else (1, 6), 0.0011)
    b.op("MEAN", [h, b.const("axes", np.array([1, 2], np.int32))], [m1], version=3, options=dict(keep_dims=keep_dims))
    m2 = activation16(b, "m2", (1, 5, 6, 1) if keep_dims else (1, 5, 6), 0.0004)
    b.op("MEAN", [x, b.const("axes2", np.array([3], np.int32))], [m2], version=3, options=dict(keep_dims=keep_dims))
    b.output(m1, m2)
    check_tflite_exact(b.build(), tmp_path)


@pytest.mark.parametrize("hw", [(5, 6), (1, 1)])
def test_an_average_pool_over_the_whole_map(hw, tmp_path):
    """AVERAGE_POOL_2D on int16 whose window is the whole map (a classifier head's global pool: qcc_avgpool_tflm's
    one-run sum per plane), after a convolution (channels first inside): TFLM's mean, halves away from zero."""
    rng = np.random.default_rng(11)
    b = TfliteBuilder()
    x = activation16(b, "x", (1, *hw, 4), 0.0005, is_input=True)
    wt, bt = filter_and_bias16(b, "conv", (6, 1, 1, 4), 6, 0, 0.0005, rng)
    h = activation16(b, "h", (1, *hw, 6), 0.003)
    b.op("CONV_2D", [x, wt, bt], [h], version=4, options=dict(padding="VALID", stride_h=1, stride_w=1))
    y = activation16(b, "y", (1, 1, 1, 6), 0.003)
    b.op("AVERAGE_POOL_2D", [h], [y], options=dict(padding="VALID", stride_h=1, stride_w=1, filter_height=hw[0],
                                                   filter_width=hw[1], fused_activation_function="NONE"))
    b.output(y)
    check_tflite_exact(b.build(), tmp_path)
