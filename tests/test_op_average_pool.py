"""com.microsoft QLinearAveragePool against ONNX Runtime (C == reference == ORT), and the integer
emulation of ORT's float32 window mean (Python twin and C) against numpy float32.

The oracle functions below (`float32_window_codes`, `global_codes`) are written from ORT's
sources for these tests only; qcc's reference does not call them."""

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import REPO, check_exact, make_model, scalar
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE
from qcc.numerics import ort_float32_sum as emulation
from qcc.numerics.ort_float32 import float32_parts
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference

f32 = np.float32
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]


# --- independent oracles (numpy float32 is IEEE-exact) ------------------------------------------


def float32_window_codes(windows, count, s_x, z_x, s_y, z_y, dtype) -> np.ndarray:
    """ORT's float path for windows (rows of codes, in summation order) over `count` elements."""
    qmin, qmax = DTYPE_RANGE[dtype]
    xf = f32(s_x) * (np.asarray(windows, np.int64) - z_x).astype(f32)
    total = np.zeros(xf.shape[:-1], f32)
    for k in range(xf.shape[-1]):
        total = total + xf[..., k]
    with np.errstate(over="ignore"):
        v = (total / np.asarray(count).astype(f32)) / f32(s_y) + f32(z_y)
    r = np.rint(v)
    r = np.where((r >= -2.0**31) & (r < 2.0**31), r, -2.0**31)  # cvtss2si: INT32_MIN out of range
    return np.clip(r, qmin, qmax).astype(np.int64)


def global_codes(windows, s_x, z_x, s_y, z_y, dtype) -> np.ndarray:
    """ORT's integer global-pool path: acc * f32(s_x / f32(s_y * n)) in float32, rne, clamp, + z_y."""
    qmin, qmax = DTYPE_RANGE[dtype]
    windows = np.asarray(windows, np.int64)
    n = windows.shape[-1]
    acc = (windows - z_x).sum(axis=-1)
    scale = f32(s_x) / (f32(s_y) * f32(n))
    v = acc.astype(f32) * scale
    return (np.clip(np.rint(v), qmin - z_y, qmax - z_y) + z_y).astype(np.int64)


# --- models -----------------------------------------------------------------------------------


def pool_model(dtype, shape, s_x, z_x, s_y, z_y, **attrs) -> onnx.ModelProto:
    inits = {"x_scale": scalar(s_x, np.float32), "x_zero": scalar(z_x, dtype),
             "y_scale": scalar(s_y, np.float32), "y_zero": scalar(z_y, dtype)}
    node = helper.make_node("QLinearAveragePool", ["x", "x_scale", "x_zero", "y_scale", "y_zero"], ["y"], name="pool",
                            domain="com.microsoft", **attrs)
    return make_model([node], [("x", dtype, list(shape))], [("y", dtype, None)], inits)


def ort_output(model: onnx.ModelProto, x: np.ndarray, tmp: Path) -> np.ndarray:
    path = tmp / "ort_model.onnx"
    onnx.save(model, str(path))
    return ort_reference.session(path).run(None, {"x": x})[0]


def check_against_ort(model, tmp: Path, x_shape, dtype, extra=(), n_random=3):
    """check_exact, plus: ORT's output shape is the compiled one. Returns the compiled graph's pool node."""
    compiled = check_exact(model, tmp, n_random=n_random, extra_cases=[[np.asarray(e, dtype).reshape(x_shape)] for e in extra])
    qmin, _ = DTYPE_RANGE[dtype]
    got = ort_output(model, np.full(x_shape, qmin, dtype), tmp)
    assert got.shape == compiled.graph.tensor(compiled.graph.outputs[0]).shape
    return next(n for n in compiled.graph.nodes if n.op == "QLinearAveragePool")


def zero_point(draw, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    return draw(st.sampled_from([qmin, qmax, None])) or draw(st.integers(qmin, qmax))


def near_zero_point(rng, z_x, dtype, shape, spread=2):
    """Codes within `spread` of z_x: small exact sums, so that window means land on .5 ties."""
    qmin, qmax = DTYPE_RANGE[dtype]
    return np.clip(z_x + rng.integers(-spread, spread, shape, endpoint=True), qmin, qmax)


# --- drawn parameters against ORT -----------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_parameters_against_ort(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    rank = draw(st.sampled_from([2, 2, 2, 1]))
    kernel = [draw(st.integers(1, 5)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    size = [draw(st.integers(max(1, k - 1), k + 9)) for k in kernel]
    attrs = {"kernel_shape": kernel, "strides": strides, "ceil_mode": int(draw(st.booleans())),
             "count_include_pad": int(draw(st.booleans()))}
    auto_pad = draw(st.sampled_from(["NOTSET"] * 4 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    else:
        attrs["auto_pad"] = auto_pad
    pads = attrs.get("pads", [0] * 2 * rank)
    assume(all(n + pads[i] + pads[i + rank] >= k for i, (n, k) in enumerate(zip(size, kernel))) or auto_pad != "NOTSET")
    assume(auto_pad != "VALID" or all(n >= k for n, k in zip(size, kernel)))
    channels_last = draw(st.sampled_from([0, 0, 0, 1]))
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    shape = (batch, *size, channels) if channels_last else (batch, channels, *size)
    s_x = f32(math.exp(draw(st.floats(math.log(1e-6), math.log(10.0)))))
    how = draw(st.sampled_from(["equal", "equal", "ratio", "free"]))
    if how == "equal":
        s_y = s_x
    elif how == "ratio":
        s_y = f32(s_x * f32(draw(st.sampled_from([2.0, 0.5, 4.0, 0.25, 3.0, 1 / 3, 0.1]))))
    else:
        s_y = f32(math.exp(draw(st.floats(math.log(1e-6), math.log(10.0)))))
    z_x, z_y = zero_point(draw, dtype), zero_point(draw, dtype)
    if auto_pad.startswith("SAME"):
        pads = [((n + s - 1) // s - 1) * s + k - n for n, k, s in zip(size, kernel, strides)]  # ORT's pad_needed
    is_global = size == kernel and not any(pads)
    if is_global:
        assume(2.0**-32 <= s_x / (s_y * f32(np.prod(kernel))) < 256)  # ORT refuses the others
    model = pool_model(dtype, shape, s_x, z_x, s_y, z_y, channels_last=channels_last, **attrs)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extra = [near_zero_point(rng, z_x, dtype, shape), near_zero_point(rng, z_x, dtype, shape, spread=1)]
    with tempfile.TemporaryDirectory() as tmp:
        check_against_ort(model, Path(tmp), shape, dtype, extra)


# --- the global path: a window covering the whole map, no padding ---------------------------------


def discriminating_case(rng, dtype, n, z_x, z_y, channels):
    """Scales, and per-channel maps of n codes, on which ORT's global path and its float path give
    different codes for some channel (a test passing on them proves which path ORT and qcc took).
    s_y = s_x * 2 / n makes y / s_y = acc / 2: exact .5 ties in real arithmetic."""
    for _ in range(50):
        s_x = f32(math.exp(rng.uniform(math.log(1e-3), math.log(1.0))))
        s_y = f32(s_x * f32(2.0 / n))
        for _ in range(20):
            maps = near_zero_point(rng, z_x, dtype, (channels, n), spread=4)  # means inside the output range
            differ = global_codes(maps, s_x, z_x, s_y, z_y, dtype) != float32_window_codes(maps, n, s_x, z_x, s_y, z_y, dtype)
            if differ.any():
                return s_x, s_y, maps
    raise AssertionError("no input tells the global path from the float path")


@pytest.mark.parametrize("dtype, map_hw, attrs, channels_last", [
    ("uint8", [25, 5], {}, 0),                                  # keyword-spotting feature map
    ("int8", [7, 7], {}, 0),
    ("int8", [7, 7], {}, 1),                                    # NHWC: ORT's NHWC global kernel
    ("uint8", [6, 4], {"strides": [2, 3], "ceil_mode": 1}, 0),  # strides and ceil_mode do not matter
    ("uint8", [5, 5], {"auto_pad": "VALID"}, 0),
    ("int8", [3, 4], {"auto_pad": "SAME_UPPER", "strides": [3, 4]}, 0),  # SAME with stride >= map: no pads
    ("int8", [1, 9], {}, 0),                                    # 1-D (the map's height is dropped below)
], ids=["kws-25x5", "7x7", "7x7-nhwc", "strides-ceil", "valid", "same-no-pad", "1d"])
def test_window_covering_the_map_takes_the_global_path(tmp_path, dtype, map_hw, attrs, channels_last):
    rng = np.random.default_rng(11)
    qmin, qmax = DTYPE_RANGE[dtype]
    n, channels = map_hw[0] * map_hw[1], 64
    one_d = map_hw[0] == 1
    spatial = map_hw[1:] if one_d else map_hw
    z_x, z_y = qmin + 7, qmin + 100
    s_x, s_y, maps = discriminating_case(rng, dtype, n, z_x, z_y, channels)
    x = maps.reshape(1, channels, *spatial)
    if channels_last:
        x = np.moveaxis(x, 1, -1)
    model = pool_model(dtype, x.shape, s_x, z_x, s_y, z_y, kernel_shape=spatial, channels_last=channels_last, **attrs)
    node = check_against_ort(model, tmp_path, x.shape, dtype, [x])
    assert node.attrs["global"]
    assert global_codes(maps, s_x, z_x, s_y, z_y, dtype).tolist() == ort_output(model, x.astype(dtype), tmp_path).reshape(-1).tolist()


def test_padded_or_smaller_window_takes_the_float_path(tmp_path):
    """The same maps with one pad row, or a kernel one row short, go through float32."""
    rng = np.random.default_rng(12)
    s_x, s_y, maps = discriminating_case(rng, "uint8", 49, 7, 100, 64)
    x = maps.reshape(1, 64, 7, 7).astype(np.uint8)
    for attrs in ({"kernel_shape": [7, 7], "pads": [1, 0, 0, 0]}, {"kernel_shape": [6, 7]}):
        model = pool_model("uint8", x.shape, s_x, 7, s_y, 100, **attrs)
        node = check_against_ort(model, tmp_path, x.shape, "uint8", [x])
        assert not node.attrs["global"]


def test_global_scale_out_of_range_is_refused_like_ort(tmp_path):
    model = pool_model("uint8", (1, 2, 5, 5), 10.0, 0, 1e-6, 0, kernel_shape=[5, 5])
    with pytest.raises(Exception, match="out of computation range"):
        ort_output(model, np.zeros((1, 2, 5, 5), np.uint8), tmp_path)
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(QccError, match=r"node 'pool'.*global pool.*outside \[2\^-32, 256\)"):
        compile_model(tmp_path / "m.onnx", Options())


# --- ties, and the float details --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("kernel, strides", [([2, 2], [2, 2]), ([1, 2], [1, 2]), ([2, 4], [2, 4]), ([3, 3], [1, 1])])
def test_equal_scales_make_ties_and_the_float_sum_decides_them(tmp_path, dtype, kernel, strides):
    """s_x == s_y: the real mean of the codes is often exactly k + 1/2. An integer mean rounded
    half to even (what a fixed-point kernel would do) misses ORT on some of them: the float32
    sum's own rounding picks the side."""
    rng = np.random.default_rng(13)
    qmin, qmax = DTYPE_RANGE[dtype]
    z_x, z_y = qmin + 3, qmin + 120
    shape = (1, 16, 8 * kernel[0], 8 * kernel[1])
    misses = 0
    for s in (f32(0.0371), f32(1.3e-3)):
        cases = [rng.integers(qmin, qmax, shape, endpoint=True) for _ in range(3)]
        model = pool_model(dtype, shape, s, z_x, s, z_y, kernel_shape=kernel, strides=strides, pads=[min(1, k - 1) for k in kernel * 2],
                           count_include_pad=1)
        with tempfile.TemporaryDirectory() as tmp:
            check_against_ort(model, Path(tmp), shape, dtype, cases, n_random=0)
            for x in cases:
                if kernel == strides:
                    got = ort_output(pool_model(dtype, shape, s, z_x, s, z_y, kernel_shape=kernel, strides=strides),
                                     x.astype(dtype), Path(tmp))
                    sums = (x - z_x).reshape(16, 8, kernel[0], 8, kernel[1]).sum(axis=(2, 4))
                    integer = np.clip(np.rint(sums / (kernel[0] * kernel[1])) + z_y, qmin, qmax)
                    misses += int((integer != got.reshape(16, 8, 8)).sum())
    if kernel in ([2, 2], [2, 4], [1, 2]):
        assert misses > 0, "the crafted ties do not tell ORT's float sum from an integer mean"


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_means_beyond_int32_give_qmin(tmp_path, dtype):
    """y / s_y >= 2^31 converts to INT32_MIN in ORT (x86 cvtss2si), so a huge mean gives qmin."""
    qmin, qmax = DTYPE_RANGE[dtype]
    shape = (1, 2, 4, 4)
    x = np.full(shape, qmax)
    x[0, 1] = qmin
    for s_x, s_y in ((10.0, 1e-6), (10.0, 4.6e-6), (1.0, 1e-9), (3.0, 1e-30)):
        model = pool_model(dtype, shape, s_x, 0, s_y, 0, kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=0)
        check_against_ort(model, tmp_path, shape, dtype, [x], n_random=1)
    got = ort_output(pool_model(dtype, shape, 10.0, 0, 1e-7, 0, kernel_shape=[2, 2]), x.astype(dtype), tmp_path)
    assert got[0, 0].tolist() == [[qmin] * 3] * 3  # a positive mean of 2.55e10 or 1.27e10 codes


def test_count_include_pad_divides_by_the_kernel_even_past_the_pads(tmp_path):
    """ceil_mode windows that run past the end pad still divide by kernel_h * kernel_w."""
    shape = (1, 3, 6, 6)
    model = pool_model("uint8", shape, 0.05, 0, 0.05, 9, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                       count_include_pad=1)
    x = np.full(shape, 90, np.uint8)
    got = ort_output(model, x, tmp_path)
    assert got.shape == (1, 3, 3, 3) and got[0, 0, 2, 2] == 40 + 9  # 4 taps of 90 over 9
    check_against_ort(model, tmp_path, shape, "uint8", [x])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_same_padding_can_be_negative_when_the_stride_exceeds_the_kernel(tmp_path, auto_pad):
    """A 1x1 window with stride 3 over 3 columns: SAME asks for -2 pads (ORT keeps them), so the
    one window of each row starts at column 1 (UPPER) or 0 (LOWER) rather than at a padded column."""
    shape = (1, 2, 2, 3)
    model = pool_model("uint8", shape, 0.1, 3, 0.1, 3, kernel_shape=[1, 1], strides=[1, 3], auto_pad=auto_pad)
    x = np.arange(12, dtype=np.uint8).reshape(shape) * 20
    column = 1 if auto_pad == "SAME_UPPER" else 0
    assert ort_output(model, x, tmp_path).reshape(-1).tolist() == x[..., column].reshape(-1).tolist()
    check_against_ort(model, tmp_path, shape, "uint8", [x])


@pytest.mark.parametrize("dtype, activation", [("int8", "Relu"), ("uint8", "Clip"), ("int8", "Clip")])
def test_relu_and_clip_fold_into_the_output_clamp(tmp_path, dtype, activation):
    qmin, qmax = DTYPE_RANGE[dtype]
    inits = {"xs": scalar(0.02, np.float32), "xz": scalar(qmin + 100, dtype),
             "ys": scalar(0.015, np.float32), "yz": scalar(qmin + 90, dtype)}
    nodes = [helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["p"], name="pool",
                              domain="com.microsoft", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["p"], ["y"], name="act"))
    else:
        inits.update({"lo": scalar(qmin + 95, dtype), "hi": scalar(qmin + 160, dtype)})
        nodes.append(helper.make_node("Clip", ["p", "lo", "hi"], ["y"], name="act"))
    model = make_model(nodes, [("x", dtype, [1, 4, 6, 6])], [("y", dtype, [1, 4, 6, 6])], inits,
                       opset=14 if activation == "Relu" else 13)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearAveragePool"]


def test_qdq_average_pool_is_fused_and_exact(tmp_path):
    inits = {"s": scalar(0.03, np.float32), "z": scalar(-5, np.int8), "s2": scalar(0.02, np.float32), "z2": scalar(3, np.int8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             helper.make_node("AveragePool", ["xd"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], count_include_pad=0),
             helper.make_node("QuantizeLinear", ["p", "s2", "z2"], ["pq"], name="q_out"),
             helper.make_node("DequantizeLinear", ["pq", "s2", "z2"], ["y"], name="dq_out")]
    model = make_model(nodes, [("x", "float32", [1, 3, 9, 9])], [("y", "float32", [1, 3, 5, 5])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearAveragePool"]


@pytest.mark.parametrize("attrs, shape, message", [
    ({"kernel_shape": [2, 2], "dilations": [2, 2]}, (1, 1, 6, 6), "dilations"),
    ({"kernel_shape": [2, 2, 2]}, (1, 1, 4, 4, 4), "only 1-D and 2-D pooling"),
    ({"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]}, (1, 1, 6, 6), "smaller than the kernel"),
], ids=["dilations", "3d", "pad-not-below-kernel"])
def test_unsupported_variants_are_refused(tmp_path, attrs, shape, message):
    onnx.save(pool_model("uint8", shape, 0.1, 0, 0.1, 0, **attrs), str(tmp_path / "m.onnx"))
    with pytest.raises(QccError, match=rf"node 'pool' \(QLinearAveragePool\).*{message}"):
        compile_model(tmp_path / "m.onnx", Options())


def test_scales_beyond_the_emulation_are_refused(tmp_path):
    onnx.save(pool_model("uint8", (1, 1, 6, 6), 0.1, 0, 2.0**-121, 0, kernel_shape=[2, 2]), str(tmp_path / "m.onnx"))
    with pytest.raises(QccError, match=r"node 'pool'.*output scale .* below 2\^-120"):
        compile_model(tmp_path / "m.onnx", Options())


# --- the integer emulation against numpy float32, window by window ---------------------------------


def random_batches(seed: int, batches: int, windows: int):
    """(dtype, s_x, z_x, s_y, z_y, codes[windows, length], counts) with scales over the whole
    range the op accepts, equal scales, and codes near z_x (small sums and exact ties)."""
    rng = np.random.default_rng(seed)
    for b in range(batches):
        dtype = ("uint8", "int8")[b % 2]
        qmin, qmax = DTYPE_RANGE[dtype]
        length = int(rng.integers(1, 50))
        kind = b % 5
        if kind == 4:  # anywhere in the accepted range, subnormal s_x included
            s_x = f32(2.0 ** rng.uniform(-149, 96))
            s_y = f32(2.0 ** rng.uniform(-120, 127))
        else:
            s_x = f32(math.exp(rng.uniform(math.log(1e-6), math.log(10.0))))
            s_y = {0: s_x, 1: f32(s_x * f32(rng.choice([2.0, 0.5, 3.0, 1 / 3, 0.1, 1 / length]))),
                   2: f32(math.exp(rng.uniform(math.log(1e-7), math.log(100.0)))),
                   3: f32(2.0 ** int(rng.integers(-20, 4)))}[kind]
            if kind == 3:
                s_x = f32(2.0 ** int(rng.integers(-20, 4)))
        z_x, z_y = (int(v) for v in rng.integers(qmin, qmax, 2, endpoint=True))
        if b % 3 == 0:
            codes = near_zero_point(rng, z_x, dtype, (windows, length), spread=int(rng.integers(1, 4)))
        else:
            codes = rng.integers(qmin, qmax, (windows, length), endpoint=True)
        counts = rng.integers(max(1, length - 3), length + 4, windows)
        yield dtype, s_x, z_x, s_y, z_y, codes, counts


def test_python_emulation_matches_numpy_float32():
    compared = 0
    for dtype, s_x, z_x, s_y, z_y, codes, counts in random_batches(21, 250, 2000):
        qmin, qmax = DTYPE_RANGE[dtype]
        table = emulation.dequantize_table(s_x, z_x, dtype)
        total = emulation.sequential_sum(table[codes & 0xFF])
        got = emulation.finish(total, counts, emulation.input_unit_exponent(s_x), s_y, z_y, qmin, qmax)
        expected = float32_window_codes(codes, counts, s_x, z_x, s_y, z_y, dtype)
        assert np.array_equal(got, expected), (dtype, s_x, z_x, s_y, z_y, int((got != expected).sum()))
        compared += got.size
    assert compared == 500_000


HARNESS = r"""
#include <stdio.h>
#include "qcc_average_pool.h"

/* stdin, repeated: int32 n, length, exponent_offset, output_significand, zero, qmin, qmax;
 * int64 table[256]; uint8 codes[n * length]; int32 counts[n]. stdout: int32 code per window. */
int main(void)
{
    static int64_t table[256];
    static uint8_t codes[1 << 20];
    static int32_t counts[1 << 16], out[1 << 16];
    int32_t h[7];
    while (fread(h, sizeof h, 1, stdin) == 1) {
        qcc_avgpool_params p = {0};
        int32_t i, k;
        if (h[0] > (1 << 16) || (int64_t)h[0] * h[1] > (1 << 20)) return 2;
        if (fread(table, sizeof table, 1, stdin) != 1) return 3;
        if (fread(codes, 1, (size_t)h[0] * h[1], stdin) != (size_t)h[0] * h[1]) return 4;
        if (fread(counts, sizeof(int32_t), (size_t)h[0], stdin) != (size_t)h[0]) return 5;
        p.table = table;
        p.exponent_offset = h[2];
        p.output_significand = h[3];
        p.output_zero = h[4];
        p.qmin = p.lo = h[5];
        p.qmax = p.hi = h[6];
        for (i = 0; i < h[0]; ++i) {
            int64_t total = 0;
            for (k = 0; k < h[1]; ++k) {
                total = qcc_avgpool_add(total, table[codes[(size_t)i * h[1] + k]]);
            }
            out[i] = qcc_avgpool_code(&p, total, counts[i]);
        }
        fwrite(out, sizeof(int32_t), (size_t)h[0], stdout);
    }
    return 0;
}
"""


def test_c_emulation_matches_numpy_float32(tmp_path):
    """The runtime's per-window functions, built with UBSan, on 400,000 random windows."""
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "harness"
    runtime = REPO / "runtime_c"
    (tmp_path / "qcc_config.h").write_text("#define QCC_ROUNDING_ORT 1\n")  # qcc_kernels.h reads the scheme
    subprocess.run(["gcc", *STRICT, "-O2", "-fsanitize=undefined", "-fno-sanitize-recover=all", f"-I{runtime}",
                    f"-I{tmp_path}", str(tmp_path / "harness.c"), str(runtime / "qcc_average_pool.c"), "-o", str(exe)],
                   check=True)
    stream, expected = [], []
    for dtype, s_x, z_x, s_y, z_y, codes, counts in random_batches(22, 200, 2000):
        qmin, qmax = DTYPE_RANGE[dtype]
        exponent = emulation.input_unit_exponent(s_x)
        out_scale = float32_parts(s_y)
        header = [codes.shape[0], codes.shape[1], exponent - out_scale.exponent, out_scale.significand, z_y, qmin, qmax]
        stream += [np.array(header, "<i4").tobytes(), emulation.dequantize_table(s_x, z_x, dtype).astype("<i8").tobytes(),
                   (codes & 0xFF).astype(np.uint8).tobytes(), counts.astype("<i4").tobytes()]
        expected.append(float32_window_codes(codes, counts, s_x, z_x, s_y, z_y, dtype))
    result = subprocess.run([str(exe)], input=b"".join(stream), capture_output=True, check=True)
    got = np.frombuffer(result.stdout, "<i4")
    expected = np.concatenate(expected)
    assert got.size == expected.size == 400_000
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} windows differ"


# --- the runtime file builds for a Cortex-M4 without float ----------------------------------------


def test_runtime_builds_for_cortex_m4_without_float(tmp_path):
    from test_generated_c import FAKE_LIBC, compile_for_mcu, floats_in, soft_float_calls

    source = REPO / "runtime_c" / "qcc_average_pool.c"
    config = tmp_path / "config"
    config.mkdir()
    (config / "qcc_config.h").write_text("#define QCC_ROUNDING_ORT 1\n")  # qcc_kernels.h reads the scheme
    objects = compile_for_mcu([source], ["-mcpu=cortex-m4", "-mthumb", f"-I{REPO / 'runtime_c'}", f"-I{config}"], tmp_path)
    assert soft_float_calls(objects) == set()
    libc = tmp_path / "libc"
    libc.mkdir()
    for name, text in [*FAKE_LIBC.items(), ("qcc_config.h", (config / "qcc_config.h").read_text())]:
        (libc / name).write_text(text)
    assert floats_in(source, libc) == []
