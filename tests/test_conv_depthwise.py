"""The depthwise 3x3 convolution kernel (qcc_conv_depthwise_3x3_*: groups == in_c == out_c, kernel 3x3,
strides 1 or 2, dilation 1, any padding): the compiler chooses it in emit for exactly those layers, and
it equals the reference (and ONNX Runtime) bit for bit on the host in every rounding scheme and on the
Cortex-M0 (portable path) and M4 (DSP path) boards: channels 1, 3, 8, 17; 1x1 and 2x2 inputs (every
tap of a row in the padding), odd output widths (the 2-pixel blocks' remainder); pads 0, 1, asymmetric
explicit pads and auto_pad SAME_UPPER/SAME_LOWER at stride 2, strides 2x1 and 1x2 (the ring of padded
rows advancing by 1 or 2, the padding read as Z_x), each layer holding its rows both ways (the whole
padded plane, where the plan has its bytes, transposed where the output is taller than wide, and the ring of
3 rows);
int8 and uint8 activations, per-tensor and per-channel weights, nonzero weight zero points (uint8
weights) and accumulators that wrap int32."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from conv_kernels import (
    SCHEMES,
    check_builds_with_clang,
    check_exact_on_cortex_m0_and_m4,
    check_exact_with_wrapping,
    compiled_kernel_calls,
    needs_arm_tools,
)
from helpers import make_model, scalar
from onnx import helper

from qcc.ops import conv
from qcc.ops.conv import resolve_pads, window_output_size

P1, S2 = {"pads": [1, 1, 1, 1]}, {"strides": [2, 2]}
# (channels, (h, w), attributes): channels 1, 3, 8, 17; inputs 1x1, 2x2, 3x3, 5x7, 8x8, 9x6; strides 1 and 2
LAYERS = [(1, (1, 1), P1), (3, (2, 2), {**P1, **S2}), (8, (3, 3), {}), (17, (5, 7), P1), (3, (8, 8), {**P1, **S2}),
          (8, (9, 6), {"auto_pad": "SAME_UPPER", **S2}), (17, (9, 6), S2), (1, (5, 7), {"auto_pad": "SAME_UPPER", **S2}),
          (8, (8, 8), {}), (3, (9, 6), {"auto_pad": "SAME_LOWER", **S2}), (17, (3, 3), {"pads": [1, 0, 0, 1]}),
          (1, (2, 2), P1), (3, (1, 1), {**P1, **S2}), (8, (5, 7), {"pads": [0, 1, 1, 0], "strides": [2, 1]}),
          (3, (9, 6), {"pads": [1, 1, 1, 1], "strides": [1, 2]})]


def output_hw(hw, kernel, attrs):
    strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    begins, ends = resolve_pads(attrs.get("auto_pad", "NOTSET"), attrs.get("pads"), hw, kernel, strides, dilations)
    return [window_output_size(hw[k], kernel[k], strides[k], dilations[k], begins[k], ends[k]) for k in range(2)]


def layer(rng, i: int, x_dtype: str, channels: int, hw, *, w_dtype: str, per_channel: bool, wrap: bool = False,
          multiplier: int = 1, kernel=(3, 3), zero_at_min: bool = False, big_bias: bool = False, **attrs):
    """One depthwise QLinearConv reading x{i} and writing y{i}; returns (node, inputs, outputs, inits).
    zero_at_min: the output's zero point is its type's least code, so that no code lies below it (as after a
    Relu: `tflm`'s common case, one rounding constant for every accumulator). big_bias: biases of about +-2^30 at
    the usual scales, so that accumulators may pass 2^30 (and the C may not double them)."""
    out_c = channels * multiplier
    qmin, qmax = (-128, 127) if w_dtype == "int8" else (0, 255)
    shape = out_c if per_channel else ()
    w = rng.integers(qmin, qmax, (out_c, 1, *kernel), endpoint=True).astype(w_dtype)
    w_zero = np.zeros(shape, np.int64) if w_dtype == "int8" else rng.integers(0, 256, shape)
    x_zero = int(rng.integers(-128, 128)) if x_dtype == "int8" else int(rng.integers(0, 256))
    bias = rng.integers(-2**15, 2**15, out_c)
    if wrap:  # accumulators within a few products of INT32_MAX and INT32_MIN: many sums wrap
        bias = np.where(np.arange(out_c) % 2 == 0, 2**31 - 1 - 300, -2**31 + 300)
    if big_bias:
        bias = np.where(np.arange(out_c) % 2 == 0, 2**30 - 3000, -2**30 + 2000)
    inits = {f"xs{i}": scalar(0.05, np.float32), f"xz{i}": scalar(x_zero, x_dtype), f"w{i}": w,
             f"ws{i}": np.full(shape, 1e-3, np.float32) if wrap else np.exp(rng.uniform(-6, -2, shape)).astype(np.float32),
             f"wz{i}": np.asarray(w_zero, w_dtype), f"ys{i}": scalar(2000.0 if wrap else 0.2, np.float32),
             f"yz{i}": scalar(int(rng.integers(-3, 3)) + (0 if x_dtype == "int8" else 128), x_dtype),
             **({f"yz{i}": scalar(-128 if x_dtype == "int8" else 0, x_dtype)} if zero_at_min else {}),
             f"b{i}": np.asarray(bias, np.int32)}
    node = helper.make_node("QLinearConv", [f"x{i}", f"xs{i}", f"xz{i}", f"w{i}", f"ws{i}", f"wz{i}", f"ys{i}", f"yz{i}", f"b{i}"],
                            [f"y{i}"], name=f"conv{i}", kernel_shape=list(kernel), group=channels, **attrs)
    out_hw = output_hw(hw, kernel, attrs)
    return node, (f"x{i}", x_dtype, [1, channels, *hw]), (f"y{i}", x_dtype, [1, out_c, *out_hw]), inits


# a layer 128 pixels wide: its ring of 3 rows takes more scratch than any other layer's whole plane, so the
# plan has those bytes free at every other step
WIDE = (2, (1, 128), P1)


@pytest.fixture(params=["plane", "ring"])
def holding(request, monkeypatch):
    """How every depthwise 3x3 layer holds its input rows: its whole padded plane (WIDE makes the room) or
    the ring of 3 rows (the plane's bytes capped at 0)."""
    if request.param == "ring":
        monkeypatch.setattr(conv, "DEPTHWISE_PLANE_BYTES", 0)
    return request.param


def plane_rows(folder) -> list[int]:
    """qcc_conv_params.plane_rows of every layer the C runs."""
    return [int(n) for n in re.findall(r"\.plane_rows = (\d+)", (folder / "model.c").read_text())]


def planes_transposed(folder) -> list[int]:
    """qcc_conv_params.plane_transposed of every layer the C runs."""
    return [int(n) for n in re.findall(r"\.plane_transposed = (\d)", (folder / "model.c").read_text())]


def doubled_cases(folder) -> list[int]:
    """qcc_conv_params.doubled_case of every layer the C runs."""
    return [int(n) for n in re.findall(r"\.doubled_case = (\d)", (folder / "model.c").read_text())]


def taller_than_wide(model: onnx.ModelProto) -> list[int]:
    """1 for each depthwise 3x3 layer whose output is taller than wide (the compiler holds its plane
    transposed), in the model's order."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
    return [int(shapes[n.output[0]][2] > shapes[n.output[0]][3]) for n in model.graph.node]


def layers_model(x_dtype: str, seed: int = 0, extra=(), holding: str = "ring") -> onnx.ModelProto:
    """Every LAYERS shape side by side, weights int8 or uint8 (nonzero Z_w, uint8 activations only), per
    tensor and per channel in turn; two more with wrapping accumulators (one for int8), two whose output zero
    point is the least code, one with biases of about 2^30; `extra`: (channels, hw, attrs);
    WIDE first for `holding` "plane"."""
    rng = np.random.default_rng(seed)
    parts = []
    if holding == "plane":
        parts.append(layer(rng, 0, x_dtype, *WIDE[:2], w_dtype="int8", per_channel=True, **WIDE[2]))
    for i, (channels, hw, attrs) in enumerate(LAYERS):
        w_dtype = "int8" if x_dtype == "int8" or i % 2 == 0 else "uint8"
        parts.append(layer(rng, len(parts), x_dtype, channels, hw, w_dtype=w_dtype, per_channel=i % 3 != 1, **attrs))
    parts.append(layer(rng, len(parts), x_dtype, 17, (5, 7), w_dtype="int8", per_channel=True, wrap=True, pads=[1, 1, 1, 1]))
    if x_dtype == "uint8":
        parts.append(layer(rng, len(parts), x_dtype, 5, (6, 6), w_dtype="uint8", per_channel=False, wrap=True, **S2,
                           auto_pad="SAME_UPPER"))
    # the output's zero point at its least code, at strides 1 and 2
    parts.append(layer(rng, len(parts), x_dtype, 5, (7, 9), w_dtype="int8", per_channel=True, zero_at_min=True, **P1))
    parts.append(layer(rng, len(parts), x_dtype, 3, (9, 8), w_dtype="int8", per_channel=False, zero_at_min=True, **P1, **S2))
    parts.append(layer(rng, len(parts), x_dtype, 4, (5, 6), w_dtype="int8", per_channel=True, big_bias=True, **P1))
    for channels, hw, attrs in extra:
        parts.append(layer(rng, len(parts), x_dtype, channels, hw, w_dtype="int8", per_channel=True, **attrs))
    inits = {k: v for part in parts for k, v in part[3].items()}
    return make_model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], inits)


# depthwise layers the 3x3 kernel does not take: qcc_conv_depthwise runs them (dilation, a multiplier, other
# kernels, stride 3, and the 1-D kernels down one column of audio models, inside and across the padding;
# windows of 4 taps or more in a row take the DSP dot product on the M4)
GENERIC = [(3, (7, 7), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}), (3, (5, 5), {"multiplier": 2, "pads": [1, 1, 1, 1]}),
           (4, (6, 6), {"kernel": (5, 5), "pads": [2, 2, 2, 2]}), (2, (9, 9), {"strides": [3, 3]}),
           (5, (12, 1), {"kernel": (5, 1)}), (3, (10, 1), {"kernel": (3, 1), "dilations": [2, 1], "pads": [2, 0, 1, 0]}),
           (4, (9, 1), {"kernel": (4, 1), "strides": [2, 1], "pads": [3, 0, 3, 0]}),
           (2, (6, 3), {"kernel": (3, 1), "pads": [1, 0, 1, 0], "multiplier": 3}),
           # odd positions take int8 weights with uint8 activations too: the DSP dot product of contiguous
           # taps (4 at a time, then the rest), down a column and along each kernel row
           (2, (5, 1), {"kernel": (2, 1)}), (3, (8, 8), {"kernel": (5, 5), "pads": [1, 1, 1, 1]}),
           (2, (5, 1), {"kernel": (2, 1), "strides": [2, 1]}), (4, (16, 1), {"kernel": (7, 1), "pads": [2, 0, 2, 0]}),
           # every window inside, no dilation, int8 weights (odd positions take them with uint8 activations): one
           # dot product per output (qcc_depthwise_columns_inside), one output per channel as a streaming model's
           # last depthwise layer has it, and a multiplier with stride 2
           (2, (7, 1), {"kernel": (7, 1)}), (3, (20, 1), {"kernel": (9, 1), "strides": [2, 1], "multiplier": 2})]




@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_compiler_chooses_the_depthwise_kernel_for_exactly_the_depthwise_3x3_layers(tmp_path, x_dtype):
    suffix = "s8" if x_dtype == "int8" else "u8"
    depthwise = len(layers_model(x_dtype).graph.node)
    assert compiled_kernel_calls(tmp_path, layers_model(x_dtype, extra=GENERIC)) == (
        [f"qcc_conv_depthwise_3x3_{suffix}"] * depthwise + [f"qcc_conv_depthwise_{suffix}"] * len(GENERIC))


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_depthwise_layers_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, x_dtype, holding):
    check_exact_with_wrapping(layers_model(x_dtype, extra=GENERIC, holding=holding), tmp_path)
    held = [rows for rows in plane_rows(tmp_path / "out") if rows]  # the generic kernel's are 0
    assert len(held) == (len(layers_model(x_dtype, holding=holding).graph.node) if holding == "plane" else 0)
    # taller than wide (9x6 at strides 2 and 1x2, ...): those planes are held transposed; a ring never is
    transposed = taller_than_wide(layers_model(x_dtype, holding=holding))
    assert planes_transposed(tmp_path / "out")[:len(transposed)] == (transposed if holding == "plane" else
                                                                     [0] * len(transposed))
    assert sum(transposed) >= 3


@needs_arm_tools
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_depthwise_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, scheme):
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=1, holding="plane"), scheme,
                                    f"qcc_conv_depthwise_3x3_{'s8' if x_dtype == 'int8' else 'u8'}")
    assert all(plane_rows(tmp_path / "out"))
    assert planes_transposed(tmp_path / "out") == taller_than_wide(layers_model(x_dtype, seed=1, holding="plane"))
    # tflm and single carry doubled accumulators (qcc_requantize_doubled: QCC_DOUBLED_SIGNED where the clamp reaches
    # below the zero point, QCC_DOUBLED_COMMON for the two layers whose zero point is the least code) except where
    # they may pass 2^30 (the last layer's biases) or the scale is tiny (the wrapping layers' channels)
    wrapping = 1 if x_dtype == "int8" else 2
    signed = 2 if scheme == "tflm" else 1
    expected = [signed] * (1 + len(LAYERS)) + [0] * wrapping + [1, 1, 0] if scheme != "ort" else [0] * (4 + len(LAYERS) + wrapping)
    assert doubled_cases(tmp_path / "out") == expected


@needs_arm_tools
@pytest.mark.parametrize("scheme", ["tflm", "ort"])
def test_depthwise_layers_are_exact_on_the_cortex_m4_built_for_size(tmp_path, scheme):
    """At -Os the kernel keeps one copy of its loops, the stride, the requantization's case and the way of holding
    the rows decided as it runs: every case of the model still exact (planes, transposed planes, and rings)."""
    extra = ((8, (5, 9), P1), (2, (80, 64), P1))  # a ring (a plane past DEPTHWISE_PLANE_BYTES) beside the planes
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model("int8", seed=3, extra=extra, holding="plane"), scheme,
                                    "qcc_conv_depthwise_3x3_s8", boards=("cortex-m4",), extra_cflags="-Os")
    assert 0 in plane_rows(tmp_path / "out") and 1 in planes_transposed(tmp_path / "out")


@needs_arm_tools
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_depthwise_layers_holding_a_ring_of_rows_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, monkeypatch):
    monkeypatch.setattr(conv, "DEPTHWISE_PLANE_BYTES", 0)
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=1), "tflm",
                                    f"qcc_conv_depthwise_3x3_{'s8' if x_dtype == 'int8' else 'u8'}")
    assert not any(plane_rows(tmp_path / "out"))


@needs_arm_tools
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_other_depthwise_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype):
    rng = np.random.default_rng(2)
    parts = [layer(rng, i, x_dtype, channels, hw, w_dtype="int8" if i % 2 else "uint8" if x_dtype == "uint8" else "int8",
                   per_channel=i % 2 == 0, **attrs) for i, (channels, hw, attrs) in enumerate(GENERIC)]
    model = make_model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts],
                       {k: v for part in parts for k, v in part[3].items()})
    check_exact_on_cortex_m0_and_m4(tmp_path, model, "tflm", f"qcc_conv_depthwise_{'s8' if x_dtype == 'int8' else 'u8'}")


def test_the_kernel_builds_warning_free_with_clang_too(tmp_path):
    check_builds_with_clang(tmp_path, layers_model("uint8"))
