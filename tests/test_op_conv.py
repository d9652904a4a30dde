"""QLinearConv against ONNX Runtime and the generated C against the reference, over drawn parameters."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import check_exact, make_model, scalar
from qcc.ir import DTYPE_RANGE

SCALES = st.floats(1e-6, 10.0).map(np.float32)


def zero_point(draw, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    return draw(st.sampled_from([qmin, qmax, None])) or draw(st.integers(qmin, qmax))


def qlinearconv_model(*, x_dtype, x_shape, w, w_scale, w_zero, x_scale, x_zero, y_scale, y_zero, y_shape, bias=None, **attrs):
    inits = {"x_scale": scalar(x_scale, np.float32), "x_zero": scalar(x_zero, x_dtype), "w": w,
             "w_scale": np.asarray(w_scale, np.float32), "w_zero": np.asarray(w_zero, w.dtype),
             "y_scale": scalar(y_scale, np.float32), "y_zero": scalar(y_zero, x_dtype)}
    inputs = ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"]
    if bias is not None:
        inits["bias"] = np.asarray(bias, np.int32)
        inputs.append("bias")
    node = helper.make_node("QLinearConv", inputs, ["y"], name="conv", **attrs)
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", x_dtype, list(y_shape))], inits)


def output_size(size, k, s, d, begin, end):
    return (size + begin + end - (k - 1) * d - 1) // s + 1


@st.composite
def conv_cases(draw):
    x_dtype = draw(st.sampled_from(["uint8", "int8"]))
    w_dtype = "int8" if x_dtype == "int8" else draw(st.sampled_from(["int8", "uint8"]))
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    groups = {"dense": 1, "depthwise": draw(st.integers(1, 8)), "grouped": draw(st.sampled_from([2, 3, 4]))}[kind]
    in_per_group = 1 if kind == "depthwise" else draw(st.integers(1, 6))
    out_per_group = draw(st.integers(1, 2)) if kind == "depthwise" else draw(st.integers(1, 5))
    kernel = [draw(st.sampled_from([1, 2, 3, 5, 7])) for _ in range(2)]
    strides = [draw(st.integers(1, 2)) for _ in range(2)]
    dilations = [draw(st.sampled_from([1, 1, 2])) for _ in range(2)]
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations}
    if groups > 1:
        attrs["group"] = groups
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad.startswith("SAME"):
        attrs["dilations"] = dilations = [1, 1]  # ORT refuses dilations with SAME padding, and so does qcc
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    size = [draw(st.integers(max(1, span - 2), span + 9)) for span in spans]
    if auto_pad == "NOTSET":
        pads = [draw(st.integers(0, k - 1)) for k in kernel * 2]  # begins then ends, asymmetric
        attrs["pads"] = pads
        out_hw = [output_size(size[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + 2]) for i in range(2)]
    else:
        attrs["auto_pad"] = auto_pad
        if auto_pad == "VALID":
            size = [max(s, span) for s, span in zip(size, spans)]
            out_hw = [(size[i] - spans[i]) // strides[i] + 1 for i in range(2)]
        else:
            out_hw = [-(-size[i] // strides[i]) for i in range(2)]
    if min(out_hw) < 1:
        size = [s + span for s, span in zip(size, spans)]
        return draw(conv_cases())
    out_c, in_c = groups * out_per_group, groups * in_per_group
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    qmin, qmax = DTYPE_RANGE[w_dtype]
    w = rng.integers(qmin, qmax, (out_c, in_per_group, *kernel), endpoint=True).astype(w_dtype)
    per_channel = draw(st.booleans())
    w_scale = np.exp(rng.uniform(np.log(1e-6), np.log(10), out_c if per_channel else ())).astype(np.float32)
    if w_dtype == "int8":
        w_zero = np.zeros(out_c if per_channel else (), np.int64)
    else:
        w_zero = rng.integers(0, 255, out_c if per_channel else (), endpoint=True)
    bias = None
    if draw(st.booleans()):
        bias = rng.integers(-2**20, 2**20, out_c) if draw(st.booleans()) else rng.integers(-2**31, 2**31, out_c)
    batch = draw(st.sampled_from([1, 1, 2]))
    return dict(x_dtype=x_dtype, x_shape=(batch, in_c, *size), w=w, w_scale=w_scale, w_zero=w_zero,
                x_scale=draw(SCALES), x_zero=zero_point(draw, x_dtype), y_scale=draw(SCALES),
                y_zero=zero_point(draw, x_dtype), y_shape=(batch, out_c, *out_hw), bias=bias, **attrs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_qlinearconv_drawn_parameters(case):
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(qlinearconv_model(**case), Path(tmp), n_random=3)


def test_accumulators_beyond_2_pow_24_with_256_input_channels(tmp_path):
    # All-qmax input (255 - 0) times all-127 weights over 256 x 3 x 3 taps: acc = 255*127*2304 ~ 7.5e7 > 2**24,
    # where f32(acc) drops low bits; the output scale keeps results inside the 8-bit range.
    in_c, out_c = 256, 4
    rng = np.random.default_rng(7)
    w = np.full((out_c, in_c, 3, 3), 127, np.int8)
    w[1] = rng.integers(-128, 127, (in_c, 3, 3))
    w[2, :, :, :] = -128
    acc_max = 255 * 127 * in_c * 9
    assert acc_max > 2**24
    model = qlinearconv_model(x_dtype="uint8", x_shape=(1, in_c, 6, 6), w=w, w_scale=np.full(out_c, 0.01, np.float32),
                              w_zero=np.zeros(out_c, np.int64), x_scale=0.02, x_zero=0, y_scale=np.float32(0.02 * 0.01 * acc_max / 200),
                              y_zero=20, y_shape=(1, out_c, 6, 6), bias=rng.integers(-2**10, 2**10, out_c),
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    check_exact(model, tmp_path, n_random=4, extra_cases=[[rng.integers(200, 256, (1, in_c, 6, 6)).astype(np.uint8)]])


def test_depthwise_int8_per_channel_extreme_zero_points(tmp_path):
    rng = np.random.default_rng(3)
    c = 8
    model = qlinearconv_model(x_dtype="int8", x_shape=(1, c, 9, 9), w=rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8),
                              w_scale=np.exp(rng.uniform(-8, 0, c)).astype(np.float32), w_zero=np.zeros(c, np.int64),
                              x_scale=0.05, x_zero=127, y_scale=0.1, y_zero=-128, y_shape=(1, c, 5, 5),
                              bias=rng.integers(-5000, 5000, c), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], group=c)
    check_exact(model, tmp_path, n_random=4)


def sweep_case(kernel, strides, dilations, groups, in_per_group, out_per_group, pads, x_dtype="uint8", seed=0):
    rng = np.random.default_rng(seed)
    size = [9, 8]
    out_hw = [output_size(size[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + 2]) for i in range(2)]
    out_c = groups * out_per_group
    w = rng.integers(-128, 128, (out_c, in_per_group, *kernel)).astype(np.int8)
    return dict(x_dtype=x_dtype, x_shape=(1, groups * in_per_group, *size), w=w,
                w_scale=np.exp(rng.uniform(-7, -3, out_c)).astype(np.float32), w_zero=np.zeros(out_c, np.int64),
                x_scale=np.float32(0.03), x_zero=7 if x_dtype == "uint8" else -7, y_scale=np.float32(0.05),
                y_zero=100 if x_dtype == "uint8" else -3, y_shape=(1, out_c, *out_hw), bias=rng.integers(-9999, 9999, out_c),
                kernel_shape=list(kernel), strides=list(strides), dilations=list(dilations), pads=list(pads),
                **({"group": groups} if groups > 1 else {}))


# A fixed sweep beside the drawn cases, so every shape the issue names is covered on every run.
SWEEP = [
    *[dict(kernel=(k, k), strides=(s, s), dilations=(1, 1), groups=1, in_per_group=3, out_per_group=4, pads=(k // 2,) * 4)
      for k in (1, 3, 5, 7) for s in (1, 2)],
    dict(kernel=(1, 7), strides=(1, 2), dilations=(1, 1), groups=1, in_per_group=2, out_per_group=3, pads=(0, 3, 0, 2)),
    dict(kernel=(5, 3), strides=(2, 1), dilations=(1, 1), groups=1, in_per_group=2, out_per_group=3, pads=(2, 0, 1, 1)),
    dict(kernel=(3, 3), strides=(1, 1), dilations=(2, 2), groups=1, in_per_group=3, out_per_group=2, pads=(2, 2, 2, 2)),
    dict(kernel=(3, 3), strides=(2, 2), dilations=(1, 1), groups=6, in_per_group=1, out_per_group=1, pads=(1, 1, 1, 1)),
    dict(kernel=(3, 3), strides=(1, 1), dilations=(2, 1), groups=3, in_per_group=2, out_per_group=2, pads=(0, 1, 2, 0)),
]


@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("shape", SWEEP, ids=lambda s: f"k{s['kernel']}-s{s['strides']}-d{s['dilations']}-g{s['groups']}")
def test_qlinearconv_shape_sweep(tmp_path, shape, x_dtype):
    check_exact(qlinearconv_model(**sweep_case(**shape, x_dtype=x_dtype)), tmp_path, n_random=2)
