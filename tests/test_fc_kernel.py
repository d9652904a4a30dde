"""The fully connected kernel (qcc_fully_connected_*: each row of A expanded once to int16 in scratch, or
in chunks of its depth where a whole row would grow the arena, then its dot products with each pair of
columns, SMLAD on cores with the DSP extension, portable C elsewhere): the compiler lays its weights out
for it (qcc_conv_gemm's layout, depth padded to 8), and it equals the reference (and ONNX Runtime) bit
for bit on the host in every rounding scheme and on the Cortex-M0 (portable path) and M4 (DSP path)
boards: depths 1, 3, 5, 17 and 130 (not multiples of 4 or 8: the zero padding of the weights and of the
row) and 8 and 16; odd column counts (the column pairs' remainder); outputs whose zero point is their
least code (a folded Relu); narrow layers of at most 4 columns, which read A in place; rows 1 and 3 (a
2-D and a 3-D A), transA (A read with a depth stride), C per column and per row (acc_const_row_stride);
int8 and uint8 activations, per-tensor and per-column weights, uint8 weights with nonzero zero points
(the sum(a) correction) and accumulators that wrap int32. With --wide-weights, the layers that expand
whole rows keep their weights as int16 pairs, two columns' words interleaved (the M4's LDRD loop in inline
assembly, and its C twin), exact the same ways."""

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
from test_generated_c import c_array

from qcc.commands.compile import compile_to_folder
from qcc.ops.fully_connected import NARROW_COLUMNS, QGemm
from qcc.ops.quantized import sxtb16_tap_order
from qcc.pipeline import Options

# (rows, depth, cols, attributes); "op" picks QLinearMatMul (no C) or QGemm, "a_rank" 3 gives A a
# leading 1 (rows from the middle axis), "c_rows" a C of shape (rows, cols): one constant per element
LAYERS = [(1, 1, 1, {}), (1, 3, 5, {}), (3, 5, 3, {}), (1, 17, 7, {"op": "QLinearMatMul"}),
          (3, 17, 1, {"op": "QLinearMatMul", "a_rank": 3}), (1, 130, 9, {}), (3, 130, 4, {"transB": 1}),
          (1, 8, 2, {"op": "QLinearMatMul"}), (3, 16, 6, {"c_rows": True}), (3, 5, 5, {"transA": 1}),
          (3, 130, 3, {"transA": 1, "transB": 1, "c_rows": True}), (1, 17, 11, {"transA": 1}),
          (1, 24, 9, {"y_zero_at_qmin": True}), (2, 40, 7, {"y_zero_at_qmin": True}),
          # narrow layers (at most 4 columns, read in place): C per row, and (uint8) weight zero points
          (2, 9, 3, {"c_rows": True}), (2, 21, 4, {})]


def layer(rng, i: int, x_dtype: str, rows: int, depth: int, cols: int, *, w_dtype: str, per_channel: bool,
          wrap: bool = False, op: str = "QGemm", a_rank: int = 2, c_rows: bool = False, y_zero_at_qmin: bool = False,
          **attrs):
    """One QGemm or QLinearMatMul reading input a{i} and writing y{i}, with its initializers; returns
    (node, input, output, inits). y_zero_at_qmin: the output's zero point is its least code (a Relu
    folded into the quantization, as converters write it), so the clamp's lower end is at the zero
    point (the tflm scheme's common case, where the rounding constant need not follow acc's sign)."""
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    qmin, qmax = (-128, 127) if w_dtype == "int8" else (0, 255)
    shape = cols if per_channel else ()
    b = rng.integers(qmin, qmax, (cols, depth) if trans_b else (depth, cols), endpoint=True).astype(w_dtype)
    # zero points near the middle of the codes (uint8 weights: never 128, which int8 would make 0), and
    # y_scale about 40 output codes per standard deviation of the sum: most outputs do not saturate
    w_zero = np.zeros(shape, np.int64) if w_dtype == "int8" else rng.choice([*range(100, 128), *range(129, 157)], shape)
    x_zero = int(rng.integers(-28, 28)) + (0 if x_dtype == "int8" else 128)
    w_scale = np.full(shape, 1e-3, np.float32) if wrap else np.exp(rng.uniform(-6, -2, shape)).astype(np.float32)
    sum_deviation = 74 * 74 * np.sqrt(depth)  # codes uniform over 256 values: a deviation of 74 each
    y_scale = 2000.0 if wrap else float(0.05 * np.mean(w_scale) * sum_deviation / 40)
    inits = {f"as{i}": scalar(0.05, np.float32), f"az{i}": scalar(x_zero, x_dtype), f"b{i}": b, f"bs{i}": w_scale,
             f"bz{i}": np.asarray(w_zero, w_dtype), f"ys{i}": scalar(y_scale, np.float32),
             f"yz{i}": scalar(int(rng.integers(-3, 3)) + (0 if x_dtype == "int8" else 128), x_dtype)}
    if y_zero_at_qmin:
        inits[f"yz{i}"] = scalar(-128 if x_dtype == "int8" else 0, x_dtype)
    a_shape = [depth, rows] if trans_a else [1, rows, depth] if a_rank == 3 else [rows, depth]
    y_shape = [1, rows, cols] if a_rank == 3 else [rows, cols]
    quant = [f"a{i}", f"as{i}", f"az{i}", f"b{i}", f"bs{i}", f"bz{i}"]
    if op == "QLinearMatMul":
        node = helper.make_node(op, [*quant, f"ys{i}", f"yz{i}"], [f"y{i}"], name=f"mm{i}")
    else:
        c = rng.integers(-sum_deviation, sum_deviation, (rows, cols) if c_rows else cols)
        if wrap:  # accumulators within a few products of INT32_MAX and INT32_MIN: many sums wrap, and the
            # output scale (M * 2**31 ~ 50) shows it: a wrapped sum comes out near -50 instead of +50
            c = np.where(np.arange(cols) % 2 == 0, 2**31 - 1 - 300, -2**31 + 300)
        inits[f"c{i}"] = np.asarray(c, np.int32)
        node = helper.make_node(op, [*quant, f"c{i}", f"ys{i}", f"yz{i}"], [f"y{i}"], name=f"gemm{i}",
                                domain="com.microsoft", **attrs)
    return node, (f"a{i}", x_dtype, a_shape), (f"y{i}", x_dtype, y_shape), inits


def layers_model(x_dtype: str, seed: int = 0, extra=()) -> onnx.ModelProto:
    """Every LAYERS shape (and `extra`'s) side by side (one input and output each), weights int8 or uint8 (nonzero
    Z_w, with uint8 activations only: ORT takes int8 A with int8 B only), per tensor and per column in turn;
    two more with wrapping accumulators."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, (rows, depth, cols, attrs) in enumerate([*LAYERS, *extra]):
        w_dtype = "int8" if x_dtype == "int8" or i % 2 == 0 else "uint8"
        parts.append(layer(rng, i, x_dtype, rows, depth, cols, w_dtype=w_dtype, per_channel=i % 3 != 1, **attrs))
    parts.append(layer(rng, len(parts), x_dtype, 3, 130, 5, w_dtype="int8", per_channel=True, wrap=True))
    if x_dtype == "uint8":
        parts.append(layer(rng, len(parts), x_dtype, 1, 17, 3, w_dtype="uint8", per_channel=False, wrap=True))
    inits = {k: v for part in parts for k, v in part[3].items()}
    return make_model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], inits)


def test_the_weights_are_laid_out_as_the_gemm_kernels_with_the_depth_padded_to_8(tmp_path):
    """Depth 5, 3 columns: each column's 5 weights, 3 zeros, each group of 4 in the order 0, 2, 1, 3."""
    rng = np.random.default_rng(3)
    node, a, y, inits = layer(rng, 0, "int8", 1, 5, 3, w_dtype="int8", per_channel=False, op="QLinearMatMul")
    path = tmp_path / "model.onnx"
    onnx.save(make_model([node], [a], [y], inits), str(path))
    compile_to_folder(path, tmp_path / "out", Options())
    _, stored = c_array((tmp_path / "out" / "model.c").read_text(), r"\w+_weights")
    expected = sxtb16_tap_order(inits["b0"].T, 8)
    assert expected.shape == (3, 8) and not expected[:, [5, 6, 7]].any()
    assert stored.tolist() == expected.reshape(-1).tolist()


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_every_layer_runs_the_fully_connected_kernel(tmp_path, x_dtype):
    model = layers_model(x_dtype)
    suffix = "s8" if x_dtype == "int8" else "u8"
    assert compiled_kernel_calls(tmp_path, model) == [f"qcc_fully_connected_{suffix}"] * len(model.graph.node)


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_layers_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, x_dtype):
    check_exact_with_wrapping(layers_model(x_dtype), tmp_path)


@needs_arm_tools
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, scheme):
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=1), scheme,
                                    f"qcc_fully_connected_{'s8' if x_dtype == 'int8' else 'u8'}")


def test_the_kernel_builds_warning_free_with_clang_too(tmp_path):
    check_builds_with_clang(tmp_path, layers_model("uint8"))


@needs_arm_tools
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_the_block_of_4_columns_is_exact_on_the_cortex_m4_up_to_its_deepest_rows_and_the_pairs_beyond(tmp_path, monkeypatch,
                                                                                                      x_dtype):
    """Rows expanded whole take the block of 4 columns (runtime_c/qcc_dsp_blocks.h), one function per kp in model.c,
    the remaining columns by pairs: LAYERS' (kp 8 to 136, 5 to 11 columns, C per row, transposed A, wrapping sums,
    uint8 weights' zero points) and kp 1,360, the deepest its offsets reach, beside 1,368, which takes the pairs."""
    monkeypatch.setattr(QGemm, "scratch_choices", lambda self, node, graph: [0] if self.reads_in_place(node)
                        else [2 * self.padded_depth(node)])  # whole rows, for every layer
    model = layers_model(x_dtype, seed=5, extra=[(1, 1360, 6, {}), (1, 1361, 6, {})])
    check_exact_on_cortex_m0_and_m4(tmp_path, model, "tflm", f"qcc_fully_connected_{'s8' if x_dtype == 'int8' else 'u8'}",
                                    boards=("cortex-m4",))
    blocks = re.findall(r"\.block_4col = QCC_DSP_BLOCK\((\w+)\)", (tmp_path / "out" / "model.c").read_text())
    assert {"model_fc_4col_k8", "model_fc_4col_k136", "model_fc_4col_k1360"} <= set(blocks)
    assert "model_fc_4col_k1368" not in blocks


def test_long_rows_run_in_depth_chunks_where_a_whole_row_would_grow_the_arena(tmp_path):
    """The layers above take their inputs from the caller, so the arena is the largest least scratch: the
    depth-130 layers, whose whole int16 row (272 bytes) is more, run in chunks of 64 depths (3 chunks, the
    last of 8) with their columns' accumulators in scratch; the short ones take their whole row; the narrow
    ones (at most 4 columns) read A in place and take no scratch. The tests above hold every path exact on
    the host, the Cortex-M0 and the M4."""
    path = tmp_path / "model.onnx"
    onnx.save(layers_model("int8"), str(path))
    compile_to_folder(path, tmp_path / "out", Options())
    text = (tmp_path / "out" / "model.c").read_text()
    layers = [tuple(int(v) for v in found) for found in re.findall(
        r"\.depth = (\d+),\s+\.cols = (\d+),\s+\.a_row_stride = \d+,\s+\.a_depth_stride = (\d+),\s+"
        r"\.depth_chunk = (\d+),", text)]
    assert len(layers) == len(LAYERS) + 1
    in_place = [cols <= NARROW_COLUMNS and stride == 1 for _, cols, stride, _ in layers]
    narrow = [(depth, chunk) for (depth, _, _, chunk), flag in zip(layers, in_place) if flag]
    wide = [(depth, chunk) for (depth, _, _, chunk), flag in zip(layers, in_place) if not flag]
    # depth 130 (kp 136): chunked, unless the layer is narrow (at most 4 columns, A's depth contiguous: read in
    # place with no scratch: qcc_fc_rows with in_place)
    assert {chunk for depth, chunk in wide if depth == 130} == {64}
    assert {chunk for depth, chunk in narrow if depth == 130} == {136}
    assert {chunk for depth, chunk in wide if depth in (5, 17)} == {8, 24}  # their whole padded row
    assert text.count(", NULL);") == len(narrow) > 0  # the narrow layers' calls pass no scratch


def wide_flags(folder) -> list[int]:
    """qcc_fc_params.weights_wide of every layer the C runs."""
    return [int(v) for v in re.findall(r"\.weights_wide = (\d)", (folder / "model.c").read_text())]


def test_wide_weights_are_int16_pairs_two_columns_interleaved_with_a_zero_column_after_an_odd_last_one(tmp_path):
    """Depth 5 (kp 8), 5 columns: words (w[k] low, w[k + 1] high), for columns 0 and 1 a0 b0 a1 b1 ..., then
    2 and 3, then column 4 with a zero column."""
    rng = np.random.default_rng(4)
    node, a, y, inits = layer(rng, 0, "int8", 1, 5, 5, w_dtype="int8", per_channel=False, op="QLinearMatMul")
    path = tmp_path / "model.onnx"
    onnx.save(make_model([node], [a], [y], inits), str(path))
    compile_to_folder(path, tmp_path / "out", Options(wide_weights=True))
    assert wide_flags(tmp_path / "out") == [1]
    _, stored = c_array((tmp_path / "out" / "model.c").read_text(), r"\w+_weights")
    columns = np.zeros((6, 8), np.int64)
    columns[:5, :5] = inits["b0"].T  # (cols, depth)
    expected = []
    for first in (0, 2, 4):
        for k in range(0, 8, 2):
            for col in (first, first + 1):
                expected.append((columns[col, k] & 0xFFFF) | ((columns[col, k + 1] & 0xFFFF) << 16))
    assert [int(v) for v in stored] == expected


@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_wide_weight_layers_equal_ort_and_the_reference_on_the_host_in_every_scheme(tmp_path, x_dtype):
    check_exact_with_wrapping(layers_model(x_dtype), tmp_path, wide_weights=True)
    flags = wide_flags(tmp_path / "out")
    assert 0 < sum(flags) < len(flags)  # the narrow and the chunked layers keep int8 weights


@needs_arm_tools
@pytest.mark.parametrize("asm", ["inline assembly", "C twin"])
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_wide_weight_layers_are_exact_on_the_cortex_m0_and_m4(tmp_path, x_dtype, asm):
    check_exact_on_cortex_m0_and_m4(tmp_path, layers_model(x_dtype, seed=1), "tflm",
                                    f"qcc_fully_connected_{'s8' if x_dtype == 'int8' else 'u8'}", wide_weights=True,
                                    extra_cflags="" if asm == "inline assembly" else "-DQCC_NO_INLINE_ASM",
                                    boards=("cortex-m0", "cortex-m4") if asm == "inline assembly" else ("cortex-m4",))
    assert sum(wide_flags(tmp_path / "out")) > 0
