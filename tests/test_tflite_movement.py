"""TFLite's pooling and data-movement ops through the TFLite frontend: MAX_POOL_2D, CONCATENATION, PAD / PADV2,
STRIDED_SLICE, SPLIT / SPLIT_V, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR and ARG_MAX / ARG_MIN. For each op and a
spread of its options, the C equals the reference interpreter (its golden test, in the tflm and single schemes),
which equals the pinned TFLite Micro on every output value of seeded random and extreme inputs
(tests/helpers.py, check_tflite_exact). Models are written with the flatbuffers builder the way the converter
writes them (channels-last int8 tensors, int32 parameters); every op runs once straight on the model's input
(channels last inside qcc) and once after a CONV_2D (channels first inside), where the layout it picks is
asserted. What TFLM refuses or computes differently from TensorFlow is refused by name, in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import check_tflite_exact
from qcc.cli import main
from qcc.ops.resize import tflm_nearest_indices
from qcc.runtimes import tflm
from tflite_builder import TfliteBuilder

I32 = np.int32


class Model:
    """A TfliteBuilder with the tensors these tests make: int8 activations of random parameters, and the
    op's input either the model's input or a 1x1 CONV_2D of it (channels first inside qcc)."""

    def __init__(self, seed: int):
        self.b = TfliteBuilder()
        self.rng = np.random.default_rng(seed)

    def act(self, name: str, shape, *, is_input=False, like: int | None = None, scale=None, zero=None) -> int:
        if like is not None:  # the same scale and zero point as another tensor (ops that copy codes)
            q = self.b.tensors[like]["quantization"]
            scale, zero = q["scale"][0], q["zero_point"][0]
        scale = np.float32(scale if scale is not None else self.rng.uniform(0.01, 0.2))
        zero = int(zero if zero is not None else self.rng.integers(-40, 40))
        return (self.b.input if is_input else self.b.tensor)(name, tuple(shape), "int8", scale=scale, zero_point=zero)

    def source(self, name: str, shape, after_conv: bool) -> int:
        """An int8 tensor of `shape`: the model's input itself, or a 1x1 convolution of an input of that shape."""
        x = self.act(f"{name}_in" if after_conv else name, shape, is_input=True)
        if not after_conv:
            return x
        h = self.act(name, shape, scale=0.15)
        self.b.op("CONV_2D", *conv_of(self, x, h, shape[-1]))
        return h

    def const(self, name: str, values, dtype=I32) -> int:
        return self.b.const(name, np.asarray(values, dtype))

    def build(self, *outputs: int) -> bytes:
        self.b.output(*outputs)
        return self.b.build()


def ops_of(compiled) -> list[str]:
    return [node.op for node in compiled.graph.nodes]


def image_ops(compiled) -> list[str]:
    """The nodes after the convolutions that feed the op under test (all of them without one)."""
    ops = ops_of(compiled)
    return ops[len(ops) - ops[::-1].index("QLinearConv"):] if "QLinearConv" in ops else ops


# --- MAX_POOL_2D ---------------------------------------------------------------------------------------------

POOL_CASES = [  # (input HWC, kernel, strides, padding, fused activation, after a convolution)
    ((8, 8, 3), (2, 2), (2, 2), "VALID", "NONE", False),
    ((7, 9, 4), (3, 3), (2, 2), "SAME", "RELU", True),
    ((6, 5, 2), (3, 2), (1, 2), "SAME", "RELU6", False),
    ((9, 7, 3), (2, 3), (3, 1), "VALID", "RELU_N1_TO_1", True),
    ((5, 5, 1), (5, 5), (1, 1), "VALID", "RELU6", True),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_pool_2d(case, tmp_path):
    """SAME and VALID windows, every fused activation (TFLM clamps the maximum to the output's codes of the
    activation's range); the output's scale may differ from the input's by up to 1e-6, as TFLM allows."""
    (h, w, c), kernel, strides, padding, activation, after_conv = POOL_CASES[case]
    m = Model(100 + case)
    x = m.source("x", (1, h, w, c), after_conv)
    q = m.b.tensors[x]["quantization"]
    oh, ow = ((n + s - 1) // s if padding == "SAME" else (n - k) // s + 1 for n, k, s in zip((h, w), kernel, strides))
    y = m.act("y", (1, oh, ow, c), scale=q["scale"][0] * np.float32(1 + 4e-6 * (case % 2)), zero=q["zero_point"][0])
    m.b.op("MAX_POOL_2D", [x], [y], version=2, options=dict(
        padding=padding, stride_h=strides[0], stride_w=strides[1], filter_height=kernel[0], filter_width=kernel[1],
        fused_activation_function=activation))
    compiled = check_tflite_exact(m.build(y), tmp_path)
    pool = next(n for n in compiled.graph.nodes if n.op == "MaxPool")
    assert ("clamp" in pool.attrs) == (activation != "NONE")


# --- CONCATENATION -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["channels after convolutions", "rows of inputs and a constant",
                                  "a convolution's and an input's channels", "rank 2", "rank 3"])
def test_concatenation(case, tmp_path):
    """Codes copied along any axis, negative axes too; rank-4 inputs in the layout most of them have."""
    m = Model(200 + len(case))
    if case == "channels after convolutions":
        parts = [m.source("a", (1, 5, 6, 3), True)]
        parts.append(m.act("b", (1, 5, 6, 2), like=parts[0]))
        m.b.op("CONV_2D", *conv_of(m, parts[0], parts[1], 2))
        shape, axis = (1, 5, 6, 5), -1
    elif case == "rows of inputs and a constant":
        a = m.act("a", (1, 3, 4, 2), is_input=True)
        q = m.b.tensors[a]["quantization"]
        parts = [a, m.act("b", (1, 2, 4, 2), is_input=True, like=a),
                 m.b.const("k", m.rng.integers(-128, 128, size=(1, 1, 4, 2)).astype(np.int8), scale=q["scale"][0],
                           zero_point=q["zero_point"][0])]
        shape, axis = (1, 6, 4, 2), 1
    elif case == "a convolution's and an input's channels":
        a = m.source("a", (1, 4, 3, 2), True)
        parts = [a, m.act("b", (1, 4, 3, 3), is_input=True, like=a)]
        shape, axis = (1, 4, 3, 5), 3
    elif case == "rank 2":
        a = m.act("a", (3, 5), is_input=True)
        parts = [a, m.act("b", (3, 2), is_input=True, like=a)]
        shape, axis = (3, 7), -1
    else:
        a = m.act("a", (2, 3, 4), is_input=True)
        parts = [a, m.act("b", (2, 1, 4), is_input=True, like=a), m.act("c", (2, 2, 4), is_input=True, like=a)]
        shape, axis = (2, 6, 4), -2
    y = m.act("y", shape, like=parts[0])
    m.b.op("CONCATENATION", parts, [y], version=2, options=dict(axis=axis))
    compiled = check_tflite_exact(m.build(y), tmp_path)
    if case == "channels after convolutions":  # both inputs channels first: concatenated there, along axis 1
        concat = next(n for n in compiled.graph.nodes if n.op == "Concat")
        assert concat.attrs["axis"] == 1 and image_ops(compiled) == ["Concat", "Transpose"]


def conv_of(m: Model, x: int, y: int, channels: int):
    """The operands of a 1x1 CONV_2D from tensor x to the (existing) tensor y."""
    c = m.b.tensors[x]["shape"][-1]
    x_scale = m.b.tensors[x]["quantization"]["scale"][0]
    scales = m.rng.uniform(0.002, 0.02, size=channels).astype(np.float32)
    w = m.b.const(f"w{y}", m.rng.integers(-127, 128, size=(channels, 1, 1, c)).astype(np.int8), scale=scales,
                  zero_point=np.zeros(channels, np.int64), quantized_dimension=0)
    bias = m.b.const(f"b{y}", m.rng.integers(-2000, 2000, size=channels).astype(I32),
                     scale=(np.float32(x_scale) * scales).astype(np.float32), zero_point=np.zeros(channels, np.int64))
    return [x, w, bias], [y], 3, dict(padding="VALID", stride_h=1, stride_w=1)


# --- PAD, PADV2 ----------------------------------------------------------------------------------------------

PAD_CASES = [  # (op, input shape, paddings, after a convolution, constant value)
    ("PAD", (1, 5, 4, 3), [[0, 0], [1, 2], [0, 3], [0, 0]], True, None),
    ("PAD", (1, 3, 4, 2), [[0, 0], [2, 0], [1, 1], [1, 2]], False, None),
    ("PAD", (3, 7), [[1, 0], [2, 3]], False, None),
    ("PADV2", (1, 4, 4, 3), [[0, 0], [1, 1], [1, 1], [0, 0]], True, -128),
    ("PADV2", (2, 3, 5), [[0, 1], [1, 0], [2, 2]], False, 77),
    ("PAD", (1, 2, 3, 2, 2), [[0, 0], [1, 0], [0, 1], [1, 1], [0, 1]], False, None),
]


@pytest.mark.parametrize("case", range(len(PAD_CASES)))
def test_pad(case, tmp_path):
    """PAD fills with the output's zero point, PADV2 with its constant code; after a convolution the image is
    padded channels first, its paddings moved with it. The output's parameters may differ from the input's:
    TFLM copies the codes."""
    op, shape, pads, after_conv, value = PAD_CASES[case]
    m = Model(300 + case)
    x = m.source("x", shape, after_conv)
    out_shape = tuple(d + sum(p) for d, p in zip(shape, pads))
    y = m.act("y", out_shape, scale=0.07 * (1 + case), zero=-5 + case)
    inputs = [x, m.const("paddings", pads)]
    if value is not None:
        q = m.b.tensors[y]["quantization"]
        inputs.append(m.b.const("value", np.array([value], np.int8), scale=q["scale"][0], zero_point=q["zero_point"][0]))
    m.b.op(op, inputs, [y], version=2 if len(shape) <= 4 else 4)
    compiled = check_tflite_exact(m.build(y), tmp_path)
    if after_conv:
        assert image_ops(compiled) == ["Pad", "Transpose"]


# --- STRIDED_SLICE -------------------------------------------------------------------------------------------

SLICE_CASES = [  # (input shape, begin, end, strides, masks, after a convolution: the nodes it becomes)
    ((2, 5, 6, 3), [1, -4, 0, 0], [2, 5, 5, 3], [1, 2, 2, 1], dict(begin_mask=0b1000, end_mask=0b0001), None),
    ((1, 6, 7, 5), [0, 0, -1, 1], [1, 6, 0, 5], [1, 1, -2, 2], dict(end_mask=0b0100), ["Slice", "Transpose"]),
    # a shrunk H leaves W before C: the small slice is moved to TFLite's order once
    ((1, 6, 5, 4), [0, 2, 0, 0], [1, 3, 5, 4], [1, 1, 1, 1], dict(shrink_axis_mask=0b0010),
     ["Slice", "Transpose", "Reshape"]),
    # shrunk N and C leave H, W in both orders: no copy
    ((1, 6, 5, 4), [0, 0, 0, 2], [1, 6, 5, 3], [1, 1, 1, 1], dict(shrink_axis_mask=0b1001), ["Slice", "Reshape"]),
    ((1, 9, 8), [0, -1, 0], [1, 0, 8], [1, 1, 1], dict(shrink_axis_mask=0b010, end_mask=0b101), None),
    ((4, 7), [3, 6], [0, 0], [-1, -3], dict(end_mask=0b10), None),
]


@pytest.mark.parametrize("case", range(len(SLICE_CASES)))
def test_strided_slice(case, tmp_path):
    """Negative begins and strides, begin and end masks, shrunk axes (a length-1 slice, then a Reshape that
    shares its bytes); after a convolution the image is sliced channels first."""
    shape, begin, end, strides, masks, nodes = SLICE_CASES[case]
    after_conv = nodes is not None
    m = Model(400 + case)
    x = m.source("x", shape, after_conv)
    expected = slice_shape(shape, begin, end, strides, masks)
    y = m.act("y", expected, like=x)
    m.b.op("STRIDED_SLICE", [x, m.const("begin", begin), m.const("end", end), m.const("strides", strides)], [y],
           version=2, options=masks)
    compiled = check_tflite_exact(m.build(y), tmp_path)
    if after_conv:
        assert image_ops(compiled) == nodes


def slice_shape(shape, begin, end, strides, masks) -> tuple[int, ...]:
    """The output shape by numpy's slicing (what TensorFlow means), for the test's own expectation."""
    index = []
    for a, (b, e, s) in enumerate(zip(begin, end, strides)):
        if masks.get("shrink_axis_mask", 0) >> a & 1:
            index.append(b)
        else:
            index.append(slice(None if masks.get("begin_mask", 0) >> a & 1 else b,
                               None if masks.get("end_mask", 0) >> a & 1 else e, s))
    return np.empty(shape, np.int8)[tuple(index)].shape


# --- SPLIT, SPLIT_V ------------------------------------------------------------------------------------------

SPLIT_CASES = [  # (op, input shape, axis, sizes, after a convolution: the nodes it becomes)
    ("SPLIT", (1, 4, 5, 6), 3, [2, 2, 2], None),
    ("SPLIT", (1, 4, 6, 4), -1, [2, 2], ["Split", "Transpose", "Transpose"]),
    ("SPLIT", (1, 6, 3, 2), 1, [3, 3], ["Split", "Transpose", "Transpose"]),
    ("SPLIT", (6, 5), 0, [2, 2, 2], None),
    # a single channel is the same bytes in both layouts
    ("SPLIT_V", (1, 5, 4, 7), -1, [1, -1, 2], ["Split", "Reshape", "Transpose", "Transpose"]),
    ("SPLIT_V", (3, 9, 2), 1, [4, 5], None),
]


@pytest.mark.parametrize("case", range(len(SPLIT_CASES)))
def test_split(case, tmp_path):
    """Equal parts (SPLIT: axis input first) and given sizes with a -1 (SPLIT_V: axis input last); after a
    convolution split channels first. Each output keeps its own declared parameters (TFLM copies codes)."""
    op, shape, axis, sizes, nodes = SPLIT_CASES[case]
    after_conv = nodes is not None
    m = Model(500 + case)
    x = m.source("x", shape, after_conv)
    known = [s for s in sizes if s != -1]
    parts = [shape[axis] - sum(known) if s == -1 else s for s in sizes]
    outputs = [m.act(f"y{i}", tuple(p if a == axis % len(shape) else d for a, d in enumerate(shape)),
                     scale=0.05 + 0.01 * i, zero=i) for i, p in enumerate(parts)]
    if op == "SPLIT":
        m.b.op(op, [m.const("axis", [axis]), x], outputs, version=2, options=dict(num_splits=len(parts)))
    else:
        m.b.op(op, [x, m.const("sizes", sizes), m.const("axis", [axis])], outputs, version=2,
               options=dict(num_splits=len(parts)))
    compiled = check_tflite_exact(m.build(*outputs), tmp_path)
    if after_conv:
        assert sorted(image_ops(compiled)) == sorted(nodes)  # the parts' layout changes in any order


# --- TRANSPOSE -----------------------------------------------------------------------------------------------

TRANSPOSE_CASES = [  # (input shape, perm, after a convolution, the nodes it becomes)
    ((1, 4, 6, 3), [0, 3, 1, 2], False, ["Transpose"]),
    ((1, 4, 6, 3), [0, 3, 1, 2], True, ["Reshape"]),  # channels first already: TFLite's NCHW is qcc's tensor
    ((1, 5, 4, 3), [0, 2, 1, 3], True, ["Transpose"]),  # one Transpose from channels first to the output's order
    ((1, 5, 1, 4), [0, 2, 1, 3], False, ["Reshape"]),  # only a unit axis moves: the same bytes
    ((1, 1, 3, 5), [3, 1, 2, 0], True, ["Reshape"]),
    ((2, 3, 5), [2, 0, 1], False, ["Transpose"]),
    ((2, 3, 1, 4, 2), [0, 4, 1, 3, 2], False, ["Transpose"]),
]


@pytest.mark.parametrize("case", range(len(TRANSPOSE_CASES)))
def test_transpose(case, tmp_path):
    """The model's perm composed with the layout the input is held in: one Transpose at most, none where the
    bytes stay in place."""
    shape, perm, after_conv, nodes = TRANSPOSE_CASES[case]
    m = Model(600 + case)
    x = m.source("x", shape, after_conv)
    y = m.act("y", tuple(shape[p] for p in perm), like=x)
    m.b.op("TRANSPOSE", [x, m.const("perm", perm)], [y], version=2 if len(shape) < 5 else 4)
    compiled = check_tflite_exact(m.build(y), tmp_path)
    assert image_ops(compiled) == nodes


# --- RESIZE_NEAREST_NEIGHBOR ---------------------------------------------------------------------------------

RESIZE_CASES = [  # (input HWC, size, align_corners, half_pixel_centers, after a convolution)
    ((3, 4, 2), (6, 8), False, False, False),
    ((5, 3, 3), (9, 7), True, False, True),
    ((7, 9, 2), (4, 5), False, True, False),
    ((4, 5, 3), (11, 2), False, True, True),
    ((6, 6, 1), (13, 17), True, False, False),
]


@pytest.mark.parametrize("case", range(len(RESIZE_CASES)))
def test_resize_nearest_neighbor(case, tmp_path):
    (h, w, c), size, align, half, after_conv = RESIZE_CASES[case]
    m = Model(700 + case)
    x = m.source("x", (1, h, w, c), after_conv)
    y = m.act("y", (1, *size, c), like=x)
    m.b.op("RESIZE_NEAREST_NEIGHBOR", [x, m.const("size", size)], [y], version=3 if align or half else 2,
           options=dict(align_corners=align, half_pixel_centers=half))
    compiled = check_tflite_exact(m.build(y), tmp_path)
    if after_conv:
        assert image_ops(compiled) == ["Resize", "Transpose"]


BILINEAR_CASES = [  # (input HWC, size, align_corners, half_pixel_centers, after a convolution)
    ((3, 4, 2), (6, 8), False, False, False),  # 2x: fractions 0 and 1/2, where the two roundings differ
    ((6, 6, 16), (12, 12), False, True, True),  # palm detection's upsampling, channels first inside qcc
    ((5, 3, 3), (9, 7), True, False, True),
    ((7, 9, 2), (4, 5), False, True, False),
    ((4, 5, 3), (11, 2), False, True, True),
    ((1, 1, 4), (3, 2), False, False, False),
]


@pytest.mark.parametrize("case", range(len(BILINEAR_CASES)))
def test_resize_bilinear(case, tmp_path):
    """TFLM's integer bilinear resize (ResizeBilinearInteger); the pinned wheel rounds halves away from zero (no
    TFLITE_SINGLE_ROUNDING): floor(v + 1/2) instead differs from it on the negative halves of these cases."""
    (h, w, c), size, align, half, after_conv = BILINEAR_CASES[case]
    m = Model(750 + case)
    x = m.source("x", (1, h, w, c), after_conv)
    y = m.act("y", (1, *size, c), like=x)
    m.b.op("RESIZE_BILINEAR", [x, m.const("size", size)], [y], version=3,
           options=dict(align_corners=align, half_pixel_centers=half))
    compiled = check_tflite_exact(m.build(y), tmp_path)
    assert "TflmResizeBilinear" in ops_of(compiled)
    if after_conv:
        assert image_ops(compiled) == ["TflmResizeBilinear", "Transpose"]


def test_resize_refuses_an_empty_image_and_both_options_by_name(tmp_path):
    for op, shape, options, expected in [
            ("RESIZE_BILINEAR", (1, 0, 4, 2), {}, "non-empty 4-D image"),
            ("RESIZE_NEAREST_NEIGHBOR", (1, 3, 0, 2), {}, "non-empty 4-D image"),
            ("RESIZE_BILINEAR", (1, 3, 4, 2), dict(align_corners=True, half_pixel_centers=True), "at most one")]:
        m = Model(760)
        x = m.act("x", shape, is_input=True)
        y = m.act("y", (1, 6, 4, 2), like=x)
        m.b.op(op, [x, m.const("size", (6, 4))], [y], version=3, options=options)
        path = tmp_path / "resize.tflite"
        path.write_bytes(m.build(y))
        result = subprocess.run([sys.executable, "-m", "qcc", "compile", str(path), "-o", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert op in result.stderr and expected in result.stderr and "qcc bug" not in result.stderr
        assert not (tmp_path / "out").exists()


def test_resize_index_tables_are_tflm_s():
    """The index tables, computed at compile time in float32, against TFLM's own on many sizes and every
    option pair (both options at once too, which TFLM computes though the converter never writes it)."""
    cases = [(n, m, align, half) for n in (1, 2, 3, 7, 10, 31, 100) for m in (1, 2, 5, 9, 20, 64, 99, 200)
             for align in (False, True) for half in (False, True)]
    for in_len, out_len, align, half in cases:
        b = TfliteBuilder()
        x = b.input("x", (1, 1, in_len, 1), "int8", scale=0.1, zero_point=0)
        y = b.tensor("y", (1, 1, out_len, 1), "int8", scale=0.1, zero_point=0)
        b.op("RESIZE_NEAREST_NEIGHBOR", [x, b.const("size", np.array([1, out_len], I32))], [y], version=3,
             options=dict(align_corners=align, half_pixel_centers=half))
        b.output(y)
        codes = np.arange(in_len).astype(np.int8).reshape(1, 1, in_len, 1)  # the code is the index (in_len < 128)
        got = tflm.run(b.build(), [codes])[0].reshape(-1).astype(np.int64)
        assert got.tolist() == tflm_nearest_indices(in_len, out_len, align, half).tolist(), (in_len, out_len, align, half)


# --- ARG_MAX, ARG_MIN ----------------------------------------------------------------------------------------

ARG_CASES = [  # (op, input shape, axis, after a convolution, the nodes it becomes)
    ("ARG_MAX", (1, 4, 5, 6), -1, False, ["ArgExtreme"]),
    ("ARG_MAX", (1, 4, 5, 6), 3, True, ["ArgExtreme"]),  # over the channels of a channels-first map: as it is
    ("ARG_MAX", (1, 4, 5, 3), 1, True, ["Transpose", "ArgExtreme"]),
    ("ARG_MAX", (2, 10), 1, False, ["ArgExtreme"]),
    ("ARG_MIN", (3, 4, 5), 0, False, ["ArgExtreme"]),
]


@pytest.mark.parametrize("case", range(len(ARG_CASES)))
def test_arg_max(case, tmp_path):
    """int32 indices, ties to the first index as TFLM's strict comparison gives them (inputs of few distinct
    codes make many ties)."""
    op, shape, axis, after_conv, nodes = ARG_CASES[case]
    m = Model(800 + case)
    x = m.source("x", shape, after_conv)
    y = m.b.tensor("y", tuple(d for a, d in enumerate(shape) if a != axis % len(shape)), "int32")
    m.b.op(op, [x, m.const("axis", [axis])], [y], version=2, options=dict(output_type="INT32"))
    data = m.build(y)
    input_shape = m.b.tensors[m.b.inputs[0]]["shape"]
    ties = [[m.rng.integers(-2, 2, size=input_shape).astype(np.int8)] for _ in range(3)]
    compiled = check_tflite_exact(data, tmp_path, extra_cases=ties)
    assert image_ops(compiled) == nodes


# --- what qcc refuses ----------------------------------------------------------------------------------------


def refused_model(case: str) -> bytes:
    m = Model(900)
    x = m.act("x", (1, 4, 6, 3), is_input=True, scale=0.1, zero=3)
    if case == "concatenation of other parameters":
        other = m.act("x2", (1, 4, 6, 3), is_input=True, scale=0.2, zero=3)
        y = m.act("y", (1, 4, 6, 6), like=x)
        m.b.op("CONCATENATION", [x, other], [y], version=2, options=dict(axis=3))
    elif case == "concatenation with an activation":
        y = m.act("y", (1, 4, 6, 6), like=x)
        m.b.op("CONCATENATION", [x, x], [y], version=2, options=dict(axis=3, fused_activation_function="RELU"))
    elif case == "max pool of another zero point":
        y = m.act("y", (1, 2, 3, 3), scale=0.1, zero=4)
        m.b.op("MAX_POOL_2D", [x], [y], version=2, options=dict(padding="VALID", stride_h=2, stride_w=2,
                                                                   filter_height=2, filter_width=2))
    elif case == "int64 paddings":
        y = m.act("y", (1, 6, 6, 3), like=x)
        m.b.op("PAD", [x, m.const("p", [[0, 0], [1, 1], [0, 0], [0, 0]], np.int64)], [y], version=2)
    elif case in ("ellipsis_mask", "new_axis_mask", "offset", "a shrunk axis read backwards", "rank 5 slice"):
        shape, begin, end = ((1, 4, 6, 3, 1), [0] * 5, [1, 4, 6, 3, 1]) if case == "rank 5 slice" else (
            (1, 4, 6, 3), [0, 1, 0, 0], [1, 3, 6, 3])
        if case == "rank 5 slice":
            x = m.act("x5", shape, is_input=True, like=x)
        strides = [1] * len(shape)
        options = {"ellipsis_mask": 1} if case == "ellipsis_mask" else {"new_axis_mask": 1} if case == "new_axis_mask" \
            else {"offset": True} if case == "offset" else {}
        if case == "a shrunk axis read backwards":
            options, strides = {"shrink_axis_mask": 0b10}, [1, -1, 1, 1]
        y = m.act("y", slice_shape(shape, begin, end, strides, options), like=x)
        m.b.op("STRIDED_SLICE", [x, m.const("b", begin), m.const("e", end), m.const("s", strides)], [y],
               version=2, options=options)
    elif case == "int64 perm":
        y = m.act("y", (1, 3, 4, 6), like=x)
        m.b.op("TRANSPOSE", [x, m.const("perm", [0, 3, 1, 2], np.int64)], [y], version=2)
    elif case == "split sizes that disagree":
        ys = [m.act(f"y{i}", (1, 4, 6, c), like=x) for i, c in enumerate((1, 2))]
        m.b.op("SPLIT_V", [x, m.const("sizes", [2, 1]), m.const("axis", [3])], ys, version=2,
               options=dict(num_splits=2))
        return m.build(*ys)
    elif case == "int64 indices":
        y = m.b.tensor("y", (1, 4, 6), "int64")
        m.b.op("ARG_MAX", [x, m.const("axis", [3])], [y], version=2, options=dict(output_type="INT64"))
    return m.build(y)


REFUSALS = {  # case -> words the one line must say
    "concatenation of other parameters": ["CONCATENATION", "input 1's scale", "requires them equal"],
    "concatenation with an activation": ["CONCATENATION", "fused activation"],
    "max pool of another zero point": ["MAX_POOL_2D", "zero point"],
    "int64 paddings": ["PAD", "paddings", "int64", "int32"],
    "ellipsis_mask": ["STRIDED_SLICE", "ellipsis_mask", "ignores"],
    "new_axis_mask": ["STRIDED_SLICE", "new_axis_mask", "ignores"],
    "offset": ["STRIDED_SLICE", "offset", "ignores"],
    "a shrunk axis read backwards": ["STRIDED_SLICE", "shrinks axis 1", "writes nothing"],
    "rank 5 slice": ["STRIDED_SLICE", "rank 5"],
    "int64 perm": ["TRANSPOSE", "perm", "int64", "int32"],
    "split sizes that disagree": ["SPLIT_V", "size_splits [2, 1]", "[1, 2]"],
    "int64 indices": ["ARG_MAX", "int64", "int32"],
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_by_name(case, tmp_path, capsys):
    """`qcc compile` exits 2 with one line naming the operator and what it has, and writes nothing."""
    model = tmp_path / "model.tflite"
    model.write_bytes(refused_model(case))
    out = tmp_path / "out"
    code = main(["compile", str(model), "-o", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and captured.out == "" and len(lines) == 1 and lines[0].startswith("qcc: error: "), captured.err
    for words in REFUSALS[case]:
        assert words in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_refusal_through_a_real_process(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(refused_model("int64 indices"))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "qcc", "compile", str(model), "-o", str(out)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "ARG_MAX" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_concatenation_reads_a_channels_last_input_in_place(tmp_path, io_in_arena):
    """CONCATENATION of the model's input image with a convolution of it, along the channels: the input is
    read in its own channels-last bytes by both (no Transpose), and with --io-in-arena it is never made a
    slice of the output (the caller writes it channels last)."""
    rng = np.random.default_rng(4)
    b = TfliteBuilder()
    x = b.input("x", (1, 5, 4, 2), "int8", scale=0.05, zero_point=-3)
    w = b.const("w", rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8), scale=[0.01] * 3, zero_point=[0] * 3,
                quantized_dimension=0)
    bias = b.const("b", rng.integers(-500, 500, 3).astype(np.int32), scale=[5e-4] * 3, zero_point=[0] * 3)
    h = b.tensor("h", (1, 5, 4, 3), "int8", scale=0.05, zero_point=-3)
    b.op("CONV_2D", [x, w, bias], [h], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1))
    y = b.tensor("y", (1, 5, 4, 5), "int8", scale=0.05, zero_point=-3)
    b.op("CONCATENATION", [h, x], [y], options=dict(axis=3))
    b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path, io_in_arena=io_in_arena)
    ops = [n.op for n in compiled.graph.nodes]
    assert "ChannelsFirstView" in ops and ops.count("Transpose") == 1  # the output's, to its channels-last bytes
