"""com.microsoft QLinearGlobalAveragePool and MaxPool against ONNX Runtime, C against the reference."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from conv_kernels import check_exact_on_cortex_m0_and_m4, needs_arm_tools
from helpers import check_exact, make_model, scalar, straddling_accumulators
from qcc.ir import DTYPE_RANGE


def zero_point(draw, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    return draw(st.sampled_from([qmin, qmax, None])) or draw(st.integers(qmin, qmax))


def gap_model(dtype, shape, s_x, z_x, s_y, z_y, channels_last=False):
    inits = {"x_scale": scalar(s_x, np.float32), "x_zero": scalar(z_x, dtype),
             "y_scale": scalar(s_y, np.float32), "y_zero": scalar(z_y, dtype)}
    out_shape = [shape[0], *[1] * (len(shape) - 2), shape[-1]] if channels_last else [*shape[:2], *[1] * (len(shape) - 2)]
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "x_scale", "x_zero", "y_scale", "y_zero"], ["y"], name="gap",
                            domain="com.microsoft", channels_last=int(channels_last))
    return make_model([node], [("x", dtype, list(shape))], [("y", dtype, out_shape)], inits)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_global_average_pool_drawn_parameters(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 40)), draw(st.integers(1, 30)), draw(st.integers(1, 30)))
    count = shape[2] * shape[3]
    s_x = np.float32(draw(st.floats(1e-6, 10.0)))
    # ORT refuses s_x / (s_y * n) outside [2^-32, 256): draw s_y so the ratio stays inside
    ratio = np.float32(np.exp(draw(st.floats(np.log(2.0**-20), np.log(200.0)))))
    s_y = np.float32(s_x / (ratio * count))
    channels_last = draw(st.booleans())
    if channels_last:
        shape = (shape[0], shape[2], shape[3], shape[1])
    model = gap_model(dtype, shape, s_x, zero_point(draw, dtype), s_y, zero_point(draw, dtype), channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(model, Path(tmp), n_random=3)


def test_global_average_pool_scale_formula(tmp_path):
    """ORT's scale is f32(s_x / f32(s_y * f32(n))); f32(f32(s_x / s_y) / n) rounds differently."""
    rng = np.random.default_rng(5)
    n = 49
    for _ in range(20000):
        s_x, s_y = np.exp(rng.uniform(-6, -1, 2)).astype(np.float32)
        ort_scale = s_x / (s_y * np.float32(n))
        other = (s_x / s_y) / np.float32(n)
        if ort_scale != other and 2**-32 <= ort_scale < 1:
            hits = straddling_accumulators(ort_scale, other, 0, min(255 * n, int(127 / ort_scale)))
            if hits.size:
                break
    acc = int(hits[0])
    x = np.zeros(n, np.int64)
    x[: acc // 255] = 255
    x[acc // 255] += acc % 255 if acc // 255 < n else 0
    assert x.sum() == acc
    model = gap_model("uint8", (1, 1, 7, 7), s_x, 0, s_y, 0)
    check_exact(model, tmp_path, n_random=0, extra_cases=[[x.astype(np.uint8).reshape(1, 1, 7, 7)]])


@needs_arm_tools
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_global_average_pools_are_exact_on_the_cortex_m0_and_m4(tmp_path, dtype):
    """Channels-first planes of 1, 3, 4, 9, 49 and 50 codes and a channels-last input: on the M4 each plane's
    sum takes four codes per word (SMLAD with (1, 1)), then the rest one by one."""
    rng = np.random.default_rng(9)
    nodes, inputs, outputs, inits = [], [], [], {}
    for i, (hw, channels_last) in enumerate([((1, 1), False), ((1, 3), False), ((2, 2), False), ((3, 3), False),
                                             ((7, 7), False), ((5, 10), False), ((3, 3), True)]):
        qmin, qmax = DTYPE_RANGE[dtype]
        shape = (1, *hw, 5) if channels_last else (1, 5, *hw)
        inits |= {f"xs{i}": scalar(0.02, np.float32), f"xz{i}": scalar(int(rng.integers(qmin, qmax + 1)), dtype),
                  f"ys{i}": scalar(0.02 * rng.uniform(0.3, 3), np.float32), f"yz{i}": scalar(int(rng.integers(qmin, qmax + 1)), dtype)}
        nodes.append(helper.make_node("QLinearGlobalAveragePool", [f"x{i}", f"xs{i}", f"xz{i}", f"ys{i}", f"yz{i}"], [f"y{i}"],
                                      name=f"gap{i}", domain="com.microsoft", channels_last=int(channels_last)))
        inputs.append((f"x{i}", dtype, list(shape)))
        outputs.append((f"y{i}", dtype, [1, 1, 1, 5] if channels_last else [1, 5, 1, 1]))
    check_exact_on_cortex_m0_and_m4(tmp_path, make_model(nodes, inputs, outputs, inits), "ort", None)


def maxpool_model(dtype, shape, out_shape, **attrs):
    """QuantizeLinear -> MaxPool on the codes -> DequantizeLinear, as a QOperator model has it."""
    inits = {"s": scalar(0.05, np.float32), "z": scalar(DTYPE_RANGE[dtype][0] + 100, dtype)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("MaxPool", ["xq"], ["yq"], name="pool", **attrs),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dq")]
    return make_model(nodes, [("x", "float32", list(shape))], [("y", "float32", list(out_shape))], inits)


def pooled_size(size, k, s, d, begin, end, ceil_mode):
    span = size + begin + end - ((k - 1) * d + 1)
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + begin:
        out -= 1
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_maxpool_drawn_parameters(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    kernel = [draw(st.integers(1, 4)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    dilations = [draw(st.sampled_from([1, 1, 2])) for _ in range(2)]
    pads = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    ceil_mode = draw(st.booleans())
    size = [draw(st.integers((k - 1) * d + 1, 16)) for k, d in zip(kernel, dilations)]
    out = [pooled_size(size[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + 2], ceil_mode) for i in range(2)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), *size)
    model = maxpool_model(dtype, shape, (*shape[:2], *out), kernel_shape=kernel, strides=strides, dilations=dilations,
                          pads=pads, ceil_mode=int(ceil_mode))
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(model, Path(tmp), n_random=3)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_maxpool_auto_pad(tmp_path, auto_pad):
    size, k, s = 11, 3, 2
    out = -(-size // s) if auto_pad != "VALID" else (size - k) // s + 1
    model = maxpool_model("int8", (1, 3, size, size), (1, 3, out, out), kernel_shape=[k, k], strides=[s, s], auto_pad=auto_pad)
    check_exact(model, tmp_path, n_random=4)


@pytest.mark.parametrize("dtype, kernel_h, stride, pads, ceil_mode, width", [
    ("uint8", 3, 2, [1, 1, 1, 1], 1, 9),   # SqueezeNet's shape with padding: edges on either side
    ("int8", 3, 2, [0, 0, 0, 0], 1, 12),   # ceil mode: the last window runs past the row
    ("uint8", 3, 1, [0, 1, 0, 1], 0, 5),
    ("int8", 2, 1, [1, 0, 0, 0], 0, 3),    # one inside output
    ("int8", 1, 2, [0, 2, 0, 2], 1, 4),    # no inside output: every window is clipped
    ("uint8", 3, 2, [0, 0, 0, 0], 0, 3),
])
def test_maxpool_three_wide_windows_on_column_maxima(tmp_path, dtype, kernel_h, stride, pads, ceil_mode, width):
    """The 3-wide, dilation-1 windows of stride 1 and 2 share column maxima between neighbouring outputs
    (qcc_pool_impl.inc); the outputs at the edges are clipped as before."""
    height = 7
    out = [pooled_size(height, kernel_h, stride, 1, pads[0], pads[2], ceil_mode),
           pooled_size(width, 3, stride, 1, pads[1], pads[3], ceil_mode)]
    shape = (1, 3, height, width)
    model = maxpool_model(dtype, shape, (*shape[:2], *out), kernel_shape=[kernel_h, 3], strides=[stride, stride],
                          pads=pads, ceil_mode=ceil_mode)
    check_exact(model, tmp_path, n_random=3)


@pytest.mark.parametrize("dtype, kernel_h, pads, ceil_mode, width", [
    ("int8", 2, [0, 0, 0, 0], 0, 8),     # BlazeFace's shortcut pool: every window inside
    ("uint8", 2, [0, 0, 0, 0], 1, 9),    # ceil mode: the last window runs past the row
    ("int8", 2, [1, 1, 0, 0], 0, 7),     # padding on the left: the first output is clipped
    ("uint8", 3, [1, 1, 1, 1], 0, 6),    # 3 rows: the pairs' general row count
    ("int8", 1, [0, 1, 0, 1], 1, 5),
])
def test_maxpool_two_wide_windows_at_stride_two_on_column_pairs(tmp_path, dtype, kernel_h, pads, ceil_mode, width):
    """2-wide, dilation-1 windows at stride 2 take the larger of their two column maxima (qcc_pool_impl.inc);
    the outputs at the edges are clipped as before."""
    height = 7
    out = [pooled_size(height, kernel_h, 2, 1, pads[0], pads[2], ceil_mode),
           pooled_size(width, 2, 2, 1, pads[1], pads[3], ceil_mode)]
    shape = (1, 3, height, width)
    model = maxpool_model(dtype, shape, (*shape[:2], *out), kernel_shape=[kernel_h, 2], strides=[2, 2],
                          pads=pads, ceil_mode=ceil_mode)
    check_exact(model, tmp_path, n_random=3)
