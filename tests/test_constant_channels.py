"""Output channels whose code is the same for every input (qcc/ops/quantized.py constant_channels): TFLite's
near-dead filters, whose tiny weight scale sits beside a bias of about 2^30, requantize to one code whatever the
input. The compiler proves it from the accumulator's exact range (the requantization is monotonic, so one code at
both ends is every code between), and qcc_conv_gemm writes that code instead of computing the channel: its weights
leave flash and its products the run. The layers below mix such channels (codes at the zero point, and saturated at
both ends of the range) with computed ones, odd and even counts of each, one layer of constant channels alone, at 1x1
and 3x3 and at every chunk of pixels (a layer of constant channels alone still computes one); C == reference == ORT on the host in every scheme and on the Cortex-M0 and M4."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from conv_kernels import check_exact_on_cortex_m0_and_m4, needs_arm_tools
from helpers import check_exact, make_model, scalar
from onnx import helper
from test_conv_depthwise import output_hw

from qcc.ops import conv

# (in_c, out_c, (h, w), kernel, attributes, constant channels)
LAYERS = [(8, 9, (5, 6), (1, 1), {}, (1, 4, 5, 8)), (3, 6, (7, 7), (3, 3), {"pads": [1, 1, 1, 1]}, (0, 3)),
          (16, 4, (4, 4), (1, 1), {}, (0, 1, 2, 3)), (5, 7, (6, 5), (3, 3), {"strides": [2, 2]}, (2,))]


# a layer's channels all constant: the compiler still computes one (no empty arrays in the C)
EXPECTED_COUNTS = [len(c) if len(c) < out_c else out_c - 1 for _, out_c, _, _, _, c in LAYERS]


def layer(rng, i: int, x_dtype: str, in_c: int, out_c: int, hw, kernel, attrs, constant):
    """A QLinearConv whose channels in `constant` requantize to one code for every input: in turn a tiny scale (the
    zero point's code), a tiny scale beside a bias of +2^30 (the top code) and of -2^30 (the bottom code). Of the
    others, one takes just two codes: not constant, though nearly."""
    w = rng.integers(-127, 127, (out_c, in_c, *kernel), endpoint=True).astype(np.int8)
    scales = np.exp(rng.uniform(-6, -2, out_c)).astype(np.float32)
    bias = rng.integers(-2**15, 2**15, out_c)
    for j, c in enumerate(constant):
        scales[c], bias[c] = [(1e-12, bias[c]), (1e-6, 2**30), (1e-6, -2**30)][j % 3]
    if len(constant) < out_c:  # the first other channel takes two codes, acc * M = 0.5 +- 0.65, about as often each
        c = min(set(range(out_c)) - set(constant))
        scales[c], bias[c] = 2e-5, 100000
    x_zero = int(rng.integers(-128, 128)) if x_dtype == "int8" else int(rng.integers(0, 256))
    inits = {f"xs{i}": scalar(0.05, np.float32), f"xz{i}": scalar(x_zero, x_dtype), f"w{i}": w, f"ws{i}": scales,
             f"wz{i}": np.zeros(out_c, np.int8), f"ys{i}": scalar(0.2, np.float32),
             f"yz{i}": scalar(int(rng.integers(-3, 3)) + (0 if x_dtype == "int8" else 128), x_dtype),
             f"b{i}": np.asarray(bias, np.int32)}
    node = helper.make_node("QLinearConv", [f"x{i}", f"xs{i}", f"xz{i}", f"w{i}", f"ws{i}", f"wz{i}", f"ys{i}", f"yz{i}", f"b{i}"],
                            [f"y{i}"], name=f"conv{i}", kernel_shape=list(kernel), **attrs)
    return node, (f"x{i}", x_dtype, [1, in_c, *hw]), (f"y{i}", x_dtype, [1, out_c, *output_hw(hw, kernel, attrs)]), inits


def constant_model(x_dtype: str) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    parts = [layer(rng, i, x_dtype, *spec) for i, spec in enumerate(LAYERS)]
    return make_model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts],
                      {k: v for part in parts for k, v in part[3].items()})


def constant_counts(folder) -> list[int]:
    """qcc_conv_params.constant_c of every layer the C runs."""
    return [int(n) for n in re.findall(r"\.constant_c = (\d+)", (folder / "model.c").read_text())]


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_constant_channels_are_written_not_computed_and_exact_on_the_host_in_every_scheme(tmp_path, x_dtype):
    check_exact(constant_model(x_dtype), tmp_path, n_random=3)
    assert constant_counts(tmp_path / "out") == EXPECTED_COUNTS
    model_c = (tmp_path / "out" / "model.c").read_text()
    # the constant channels' weights are not in flash: each layer stores its computed channels' filters alone
    for i, (in_c, out_c, _, kernel, _, constant) in enumerate(LAYERS):
        computed = out_c - EXPECTED_COUNTS[i]
        if computed:
            depth = -(-in_c * kernel[0] * kernel[1] // 4) * 4
            stored = re.search(rf"_conv{i}_weights\[(\d+)\]", model_c)
            assert stored and int(stored.group(1)) == (computed + computed % 2) * depth


@needs_arm_tools
@pytest.mark.parametrize("scheme", ["tflm", "ort"])  # (single differs from tflm in the rounding alone: the host test)
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_constant_channels_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, scheme):
    check_exact_on_cortex_m0_and_m4(tmp_path, constant_model(x_dtype), scheme, f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}")
    assert constant_counts(tmp_path / "out") == EXPECTED_COUNTS


@needs_arm_tools
@pytest.mark.parametrize("chunk", [1, 2, 16])
def test_constant_channels_are_exact_at_every_chunk_of_pixels_on_the_cortex_m4(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(conv.QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
    check_exact_on_cortex_m0_and_m4(tmp_path, constant_model("int8"), "tflm", "qcc_conv_gemm_s8", boards=("cortex-m4",))
    assert f".gemm_pixels = {chunk}," in (tmp_path / "out" / "model.c").read_text()
