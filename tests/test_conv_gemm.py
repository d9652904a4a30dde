"""The one-group convolution kernel (qcc_conv_gemm_*: im2col columns of a chunk of output pixels, then
each pair of output channels times each pair of pixels, SMLAD on cores with the DSP extension, portable
C elsewhere): the compiler
chooses it in emit for every one-group convolution but the depthwise 3x3 ones, lays its weights out
for it, and it equals the reference (and ONNX Runtime) bit for bit on the host in every rounding
scheme and on the Cortex-M0 (portable path) and M4 (DSP path) boards: kernels 1x1, 3x3, 10x4 and
5x2 with dilation 2; strides 1 and 2 (and 2x1) on odd sizes; pads 0, 1, asymmetric explicit pads and
auto_pad; 1, 3 (the stem), 5 and 17 input channels (tap counts not divisible by 4: the zero padding
of the weights' depth); odd output channel counts (the channel pairs' remainder) and odd pixel counts
(the pixel pairs' remainder); int8 and uint8 activations, per-tensor and per-channel weights,
nonzero weight zero points (the sum(x) correction) and accumulators that wrap int32. Grouped convolutions
with several input channels per group run as one call per group, each on its group's channels (odd and
single output channels per group, strides, padding, per-tensor and per-channel, uint8 weights). With
--wide-weights the weights are int16 pairs in flash (gemm_wide_layout) and every one of these layers is
exact too: on the host (SSE2 and the portable loop), the M0, and the M4's assembly and its C twin."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx
import pytest
from conv_kernels import (
    SCHEMES,
    check_builds_with_clang,
    check_exact_on_cortex_m0_and_m4,
    check_exact_with_wrapping,
    compiled_kernel_calls,
    kernel_calls,
    needs_arm_tools,
)
from helpers import STRICT_CFLAGS, check_exact, make_model, scalar
from onnx import helper
from test_conv_depthwise import output_hw
from test_op_conv import qlinearconv_model

from qcc.commands.compile import compile_to_folder
from qcc.ops.conv import QLinearConv, gemm_weight_layout, gemm_wide_layout
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make

P1, S2 = {"pads": [1, 1, 1, 1]}, {"strides": [2, 2]}
# (in_c, out_c, (h, w), kernel, attributes)
LAYERS = [(1, 1, (1, 1), (1, 1), {}), (3, 5, (1, 3), (1, 1), {}), (5, 3, (5, 1), (1, 1), {}),
          (17, 17, (7, 7), (1, 1), {}), (1, 17, (1, 7), (1, 1), {}), (17, 5, (4, 4), (1, 1), {}),
          (3, 4, (5, 5), (1, 1), S2), (3, 4, (3, 5), (1, 1), {"pads": [1, 0, 0, 1]}),
          (3, 4, (5, 5), (3, 3), P1), (5, 3, (7, 6), (3, 3), {**P1, **S2}), (3, 8, (9, 9), (3, 3), {**P1, **S2}),
          (4, 3, (6, 5), (3, 3), {"pads": [1, 0, 0, 1]}), (5, 5, (8, 7), (3, 3), {"auto_pad": "SAME_UPPER", **S2}),
          (2, 3, (8, 7), (3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 1]}), (17, 2, (3, 3), (3, 3), {}),
          (1, 5, (13, 6), (10, 4), {"pads": [4, 1, 5, 2], **S2}), (3, 3, (9, 8), (5, 2), {"dilations": [2, 2], **P1}),
          (2, 3, (2, 2), (3, 3), P1),
          # 1x1 with rows of padding below: their outputs read only padding (no input row under them)
          (5, 4, (4, 6), (1, 1), {"pads": [0, 0, 2, 0]})]


def layer(rng, i: int, x_dtype: str, in_c: int, out_c: int, hw, kernel, *, w_dtype: str, per_channel: bool,
          wrap: bool = False, **attrs):
    """One QLinearConv reading input x{i} and writing y{i}, with its initializers; returns (node, inputs, outputs, inits)."""
    qmin, qmax = (-128, 127) if w_dtype == "int8" else (0, 255)
    shape = out_c if per_channel else ()
    w = rng.integers(qmin, qmax, (out_c, in_c // attrs.get("group", 1), *kernel), endpoint=True).astype(w_dtype)
    w_zero = np.zeros(shape, np.int64) if w_dtype == "int8" else rng.integers(0, 256, shape)
    x_zero = int(rng.integers(-128, 128)) if x_dtype == "int8" else int(rng.integers(0, 256))
    bias = rng.integers(-2**15, 2**15, out_c)
    if wrap:  # accumulators within a few products of INT32_MAX and INT32_MIN: many sums wrap, and the
        # output scale (M * 2**31 ~ 50) shows it: a wrapped sum comes out near -50 instead of +50
        bias = np.where(np.arange(out_c) % 2 == 0, 2**31 - 1 - 300, -2**31 + 300)
    inits = {f"xs{i}": scalar(0.05, np.float32), f"xz{i}": scalar(x_zero, x_dtype), f"w{i}": w,
             f"ws{i}": np.full(shape, 1e-3, np.float32) if wrap else np.exp(rng.uniform(-6, -2, shape)).astype(np.float32),
             f"wz{i}": np.asarray(w_zero, w_dtype), f"ys{i}": scalar(2000.0 if wrap else 0.2, np.float32),
             f"yz{i}": scalar(int(rng.integers(-3, 3)) + (0 if x_dtype == "int8" else 128), x_dtype),
             f"b{i}": np.asarray(bias, np.int32)}
    node = helper.make_node("QLinearConv", [f"x{i}", f"xs{i}", f"xz{i}", f"w{i}", f"ws{i}", f"wz{i}", f"ys{i}", f"yz{i}", f"b{i}"],
                            [f"y{i}"], name=f"conv{i}", kernel_shape=list(kernel), **attrs)
    return node, (f"x{i}", x_dtype, [1, in_c, *hw]), (f"y{i}", x_dtype, [1, out_c, *output_hw(hw, kernel, attrs)]), inits


def layers_model(x_dtype: str, seed: int = 0, extra=()) -> onnx.ModelProto:
    """Every LAYERS shape side by side (one input and output each), weights int8 or uint8 (nonzero Z_w),
    per tensor and per channel in turn; two more with wrapping accumulators; `extra`: (in_c, out_c, hw, kernel, attrs),
    per channel and per tensor in turn."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, (in_c, out_c, hw, kernel, attrs) in enumerate(LAYERS):
        w_dtype = "int8" if x_dtype == "int8" or i % 2 == 0 else "uint8"
        parts.append(layer(rng, i, x_dtype, in_c, out_c, hw, kernel, w_dtype=w_dtype, per_channel=i % 3 != 1, **attrs))
    parts.append(layer(rng, len(parts), x_dtype, 17, 3, (3, 5), (3, 3), w_dtype="int8", per_channel=True, wrap=True, **P1))
    if x_dtype == "uint8":
        parts.append(layer(rng, len(parts), x_dtype, 5, 5, (3, 3), (1, 1), w_dtype="uint8", per_channel=False, wrap=True))
    for j, (in_c, out_c, hw, kernel, attrs) in enumerate(extra):  # odd ones per tensor, uint8 weights with uint8
        w_dtype = "uint8" if x_dtype == "uint8" and j % 2 else "int8"
        parts.append(layer(rng, len(parts), x_dtype, in_c, out_c, hw, kernel, w_dtype=w_dtype, per_channel=j % 2 == 0,
                           **attrs))
    inits = {k: v for part in parts for k, v in part[3].items()}
    return make_model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], inits)


# grouped convolutions with several input channels per group: a qcc_conv_gemm call per group (3 and 1 output
# channels per group: the channel pairs' remainder in every group)
GROUPED = [(4, 6, (3, 3), (1, 1), {"group": 2}), (6, 3, (5, 4), (3, 3), {"group": 3, **P1}),
           (8, 8, (7, 6), (3, 3), {"group": 4, **P1, **S2}), (12, 8, (5, 5), (1, 3), {"group": 2, "pads": [0, 1, 0, 1]})]


def test_the_weights_are_stored_in_groups_of_four_in_the_order_0_2_1_3_zero_padded_channel_pairs_interleaved():
    w = np.arange(3 * 5, dtype=np.int8).reshape(3, 5, 1, 1)  # 5 taps: depth 8; 3 channels: a zero fourth
    assert gemm_weight_layout(w, 8).tolist() == [0, 2, 1, 3, 5, 7, 6, 8, 4, 0, 0, 0, 9, 0, 0, 0,
                                                 10, 12, 11, 13, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0]


def test_wide_weights_are_int16_pairs_in_tap_order_zero_padded_channel_pairs_interleaved_by_groups_of_four():
    w = np.arange(-7, 3 * 5 - 7, dtype=np.int8).reshape(3, 5, 1, 1)  # 5 taps: depth 8; 3 channels: a zero fourth
    pairs = [(-7, -6), (-5, -4), (-2, -1), (0, 1), (-3, 0), (0, 0), (2, 0), (0, 0),  # a's 4, b's 4, a's next 4, b's
             (3, 4), (5, 6), (0, 0), (0, 0), (7, 0), (0, 0), (0, 0), (0, 0)]
    assert gemm_wide_layout(w, 8).tolist() == [(lo & 0xFFFF) | (hi & 0xFFFF) << 16 for lo, hi in pairs]


def wide_flags(folder) -> list[int]:
    """qcc_conv_params.weights_wide of every convolution the C runs."""
    return [int(v) for v in re.findall(r"\.weights_wide = (\d)", (folder / "model.c").read_text())]


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_wide_weight_layers_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, x_dtype):
    check_exact_with_wrapping(layers_model(x_dtype, extra=GROUPED), tmp_path, wide_weights=True)
    calls = len(layers_model(x_dtype).graph.node) + sum(attrs["group"] for *_, attrs in GROUPED)
    assert wide_flags(tmp_path / "out") == [1] * calls
    assert "#define QCC_CONV_WIDE 1" in (tmp_path / "out" / "qcc_config.h").read_text()


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_portable_wide_weight_loop_is_exact_on_the_host(tmp_path, monkeypatch, x_dtype):
    """-U__SSE2__ turns the host's PMADDWD path off: the plain C loop reads the int16 pairs, in chunks of 2
    (qcc_gemm_pixel_pair) and of 6 (qcc_gemm_channel_pair)."""
    for chunk in (2, 6):
        monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
        path, out = tmp_path / "model.onnx", tmp_path / f"out{chunk}"
        onnx.save(layers_model(x_dtype, seed=5, extra=GROUPED), str(path))
        graph = compile_model(path, Options(wide_weights=True)).graph
        compile_to_folder(path, out, Options(wide_weights=True, rounding="tflm"),
                          golden=random_inputs(graph, 2, seed=4) + extreme_inputs(graph))
        assert set(wide_flags(out)) == {1}
        make(out, "check", cflags=STRICT_CFLAGS + " -U__SSE2__")  # fails unless C == reference on every value


@needs_arm_tools
@pytest.mark.parametrize("chunk", [1, 2, 6])
@pytest.mark.parametrize("asm", ["", "-DQCC_NO_INLINE_ASM"])
def test_wide_weight_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, monkeypatch, chunk, asm):
    """The M4's LDRD loops (and their C twins) and the M0's portable loop, through the least chunks (one pixel: the
    2 x 1 loop) and a larger one, int8 and uint8 layers with zero points and wrapping accumulators, the grouped ones
    too."""
    monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
    x_dtype = "uint8" if chunk <= 2 else "int8"
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=6, extra=GROUPED), "tflm",
                                    f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}",
                                    boards=("cortex-m0", "cortex-m4") if not asm else ("cortex-m4",),
                                    extra_cflags=asm, wide_weights=True)
    assert set(wide_flags(tmp_path / "out")) == {1}


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_compiler_chooses_the_gemm_kernel_for_every_one_group_layer_and_each_group_of_the_others(tmp_path, x_dtype):
    suffix = "s8" if x_dtype == "int8" else "u8"
    one_group = len(layers_model(x_dtype).graph.node)
    calls = one_group + sum(attrs["group"] for *_, attrs in GROUPED)
    assert compiled_kernel_calls(tmp_path, layers_model(x_dtype, extra=GROUPED)) == [f"qcc_conv_gemm_{suffix}"] * calls


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_gemm_layers_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, x_dtype):
    check_exact_with_wrapping(layers_model(x_dtype, extra=GROUPED), tmp_path)


def test_a_layer_whose_products_alone_overflow_int32(tmp_path):
    """The gemm twin of test_range_analysis.overflowing_conv: 68600 input channels of (0 - 255) * -128."""
    in_c, out_c = 68600, 2
    w = np.full((out_c, in_c, 1, 1), -128, np.int8)
    w[1] = 1
    model = qlinearconv_model(x_dtype="uint8", x_shape=(1, in_c, 1, 1), w=w, w_scale=np.full(out_c, 1e-3, np.float32),
                              w_zero=np.zeros(out_c, np.int64), x_scale=np.float32(0.01), x_zero=255, y_scale=np.float32(50.0),
                              y_zero=0, y_shape=(1, out_c, 1, 1), kernel_shape=[1, 1])
    compiled = check_exact(model, tmp_path, n_random=2)
    (node,) = compiled.graph.nodes
    assert not node.params["acc_range"].int32_safe
    assert kernel_calls(tmp_path / "out") == ["qcc_conv_gemm_u8"]


@needs_arm_tools
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_gemm_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, scheme):
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=1, extra=GROUPED), scheme,
                                    f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}")


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_least_chunks_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, monkeypatch, x_dtype, chunk):
    """The least chunks, 1 and 2 pixels, take their own loop (qcc_gemm_pixel_pair): exact in every scheme too."""
    monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
    check_exact_with_wrapping(layers_model(x_dtype), tmp_path)
    assert set(re.findall(r"\.gemm_pixels = (\d+)", (tmp_path / "out" / "model.c").read_text())) == {str(chunk)}


@needs_arm_tools
@pytest.mark.parametrize("chunk, x_dtype", [(1, "int8"), (1, "uint8"), (2, "int8"), (6, "int8"), (16, "int8")])
def test_every_chunk_of_pixels_is_exact_on_the_cortex_m4(tmp_path, monkeypatch, chunk, x_dtype):
    """The memory plan gives each layer the largest chunk of pixels (gemm_pixels) that leaves the arena as
    it is; here every layer takes one size in turn: one pixel (the 4 x 1 and 2 x 1 loops; uint8: weights with
    zero points), 2, one that leaves an odd last pixel in most layers (6), and the largest (16), through the
    common-case and general requantization loops (tflm: Relu-like clamps and others) and the adjacent-pair
    columns of the 1x1 stride-1 layers."""
    monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=3), "tflm",
                                    f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}", boards=("cortex-m4",))
    assert set(re.findall(r"\.gemm_pixels = (\d+)", (tmp_path / "out" / "model.c").read_text())) == {str(chunk)}


# depths about the 2 x 4 block's limits (runtime_c/qcc_dsp_blocks.h): k4 252 (the farthest column 1,008 bytes on, an odd
# count of groups), 256 (the pointer steps to pixel 2 and back), 508 (the deepest it takes, odd), 512 (the 2 x 2 block);
# 49, 30 and 20 pixels leave 1, 2 and 0 after the chunks' fours
DEEP = [(28, 5, (7, 7), (3, 3), P1), (256, 3, (5, 6), (1, 1), {}), (127, 4, (6, 5), (2, 2), {}),
        (512, 2, (4, 5), (1, 1), {})]


@needs_arm_tools
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_2x4_block_is_exact_on_the_cortex_m4_at_every_depth_it_takes_and_the_2x2_block_beyond(tmp_path, monkeypatch,
                                                                                                  x_dtype, wide):
    """Chunks of 16 pixels take the 2 x 4 block, one function per depth (and kind of weights) in model.c, by fours
    (uint8: weights with zero points); the remainders and the layers too deep for its offsets take the 2 x 2 block."""
    monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [16]))
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=4, extra=DEEP), "tflm",
                                    f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}", boards=("cortex-m4",),
                                    wide_weights=wide)
    text = (tmp_path / "out" / "model.c").read_text()
    kind, macro = ("wide_", "QCC_GEMM_2X4_WIDE_DEFINE") if wide else ("", "QCC_GEMM_2X4_DEFINE")
    blocks = re.findall(r"\.gemm_block_2x4 = QCC_DSP_BLOCK\((\w+)\)", text)
    assert {f"model_gemm_2x4_{kind}k{k4}" for k4 in (252, 256, 508)} <= set(blocks)
    assert all(name.startswith(f"model_gemm_2x4_{kind}k") for name in blocks)
    assert f"model_gemm_2x4_{kind}k512" not in blocks
    assert all(text.count(f"{macro}({name}, {name.split('_k')[-1]})") == 1 for name in blocks)


@needs_arm_tools
@pytest.mark.parametrize("chunk", [None, 1])
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_c_twin_of_the_inline_assembly_loop_is_exact_on_the_cortex_m4(tmp_path, monkeypatch, x_dtype, chunk):
    """-DQCC_NO_INLINE_ASM (and compilers without GNU inline assembly) take the ACLE-intrinsics loops: the plan's
    chunks, and one pixel (the 4 x 1 and 2 x 1 loops' twins)."""
    if chunk is not None:
        monkeypatch.setattr(QLinearConv, "gemm_pixel_choices", staticmethod(lambda node, graph: [chunk]))
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=2), "single",
                                    f"qcc_conv_gemm_{'s8' if x_dtype == 'int8' else 'u8'}", boards=("cortex-m4",),
                                    extra_cflags="-DQCC_NO_INLINE_ASM")


@needs_arm_tools
@pytest.mark.parametrize("float_abi", ["-mfloat-abi=soft", "-mfloat-abi=hard"])
@pytest.mark.parametrize("optimization", ["-O0", "-Og", "-Os", "-O3"])
def test_the_kernels_build_at_every_optimization_level(tmp_path, optimization, float_abi):
    """The inline assembly's 12 registers fit at -Og (frame pointer reserved) and up; -O0 takes the C."""
    path = tmp_path / "model.onnx"
    onnx.save(layers_model("int8"), str(path))
    compile_to_folder(path, tmp_path / "out", Options(target="cortex-m4"))
    result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", optimization, "-mcpu=cortex-m4", "-mthumb", float_abi,
                             "-mfpu=fpv4-sp-d16", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c", "qcc_kernels.c",
                             "-o", "qcc_kernels.o"],
                            cwd=tmp_path / "out", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_kernel_builds_warning_free_with_clang_too(tmp_path):
    check_builds_with_clang(tmp_path, layers_model("uint8"))


@pytest.mark.parametrize("depth, choices", [(28, [16, 8]), (64, [16, 8, 4]), (80, [16, 8, 4]), (128, [16, 8, 4]),
                                            (144, [16, 8, 2]), (508, [16, 8, 2]), (512, [16, 8, 2, 1]),
                                            (720, [16, 8, 2, 1])])
def test_the_least_chunk_holds_four_pixels_where_their_columns_take_at_most_1_kib(monkeypatch, depth, choices):
    """The chunks the memory plan may choose from, largest first: the least is the most pixels whose int16
    columns fit 512 bytes, and 4 rather than 2 where 4 fit 1,024 (K <= 128: there a chunk of 2 spends
    about a quarter of its instructions on each channel pair's setup); 1 after 2 where a column alone takes
    1 KiB (K > 508)."""
    monkeypatch.setattr(QLinearConv, "gemm_depth", staticmethod(lambda node, graph: depth))
    assert QLinearConv.gemm_pixel_choices(None, None) == choices


def test_a_grouped_convolution_over_a_batch_takes_a_call_per_group_and_image(tmp_path):
    """3 images, 2 groups of 3 input and 2 output channels: 6 calls, each at its image's and group's channels."""
    rng = np.random.default_rng(8)
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    model = qlinearconv_model(x_dtype="uint8", x_shape=(3, 6, 5, 4), w=w, w_scale=np.exp(rng.uniform(-6, -3, 4)),
                              w_zero=rng.integers(100, 156, 4), x_scale=np.float32(0.05), x_zero=120,
                              y_scale=np.float32(0.3), y_zero=128, y_shape=(3, 4, 5, 4), bias=rng.integers(-900, 900, 4),
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2)
    check_exact(model, tmp_path, n_random=4)
    assert kernel_calls(tmp_path / "out") == ["qcc_conv_gemm_u8"] * 6
