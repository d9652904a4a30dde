"""com.microsoft QLinearSoftmax against ONNX Runtime, and the generated C against the reference.

ORT sums each row in float32 one element after another and rounds t * Y / sum in double, so
the tests aim at what would expose a different order or rounding: every row length from 1 to 40
and 100 and 1000, rows of two levels (t * Y / sum lands exactly on halves), table entries that
are subnormal or zero, both axis semantics (opset < 13 coerces to 2-D), and folded clamps."""

import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import REPO, STRICT_CFLAGS, check_exact, make_model, scalar
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE
from qcc.ops.softmax import exp_table, y_factor
from qcc.pipeline import Options, compile_model

# The ARM EABI's soft-float helpers (__aeabi_fadd, __aeabi_dmul, __aeabi_i2f, ...)
SOFT_FLOAT_HELPER = re.compile(r"__aeabi_(?:[fd][a-z0-9]+|[a-z0-9]+2[fd])$")
LENGTHS = list(range(1, 41)) + [100, 1000]  # 10 and 12: classifier heads; 1000: ImageNet


def softmax_nodes(specs, dtype):
    """One QLinearSoftmax per spec (name, shape, s_x, s_y, z_y, attrs), each with its own input and output.
    The input zero point is qmax on purpose: ORT ignores it (only differences to the row maximum count)."""
    nodes, inputs, outputs, inits = [], [], [], {}
    for name, shape, s_x, s_y, z_y, attrs in specs:
        inits.update({f"{name}_xs": scalar(s_x, np.float32), f"{name}_xz": scalar(DTYPE_RANGE[dtype][1], dtype),
                      f"{name}_ys": scalar(s_y, np.float32), f"{name}_yz": scalar(z_y, dtype)})
        nodes.append(helper.make_node("QLinearSoftmax", [f"x_{name}", f"{name}_xs", f"{name}_xz", f"{name}_ys", f"{name}_yz"],
                                      [f"y_{name}"], name=name, domain="com.microsoft", **attrs))
        inputs.append((f"x_{name}", dtype, list(shape)))
        outputs.append((f"y_{name}", dtype, list(shape)))
    return make_model(nodes, inputs, outputs, inits)


def two_level_rows(rng, rows, length, dtype):
    """Rows holding the maximum k times and one lower code elsewhere. Half of them have k a power
    of two and the rest far below (negligible in the float32 sum at s_x >= 1/4): the sum is then
    exactly k * t and the maximum's t * Y / sum = Y / k, a rounding tie when Y / k is a half."""
    qmin, qmax = DTYPE_RANGE[dtype]
    x = np.empty((rows, length), np.int64)
    for r in range(rows):
        top = rng.integers(qmin + 200, qmax + 1)
        if r % 2:
            k = rng.choice([k for k in (1, 2, 4, 8) if k <= length])
            x[r] = top - rng.integers(100, 200)
        else:
            k = rng.integers(1, length + 1)
            x[r] = top - rng.integers(1, 60)
        x[r, rng.permutation(length)[:k]] = top
    return x.astype(dtype)


def halves(table, y, x):
    """How many elements of the 2-D rows x have t * Y / sum exactly on a half (a rounding tie)."""
    count = 0
    for row in x.astype(np.int64):
        t = table[row - row.max() + 255]
        s = np.float32(0)
        for v in t:
            s = np.float32(s + v)
        count += sum(Fraction(float(v)) * y / Fraction(float(s)) % 1 == Fraction(1, 2) for v in t)
    return count


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_every_row_length(dtype, tmp_path):
    """Row lengths 1..40, 100 and 1000 in one model, x scales spread over 1e-3..1, last axis (opset 13)."""
    qmin, _ = DTYPE_RANGE[dtype]
    s_ys = [1 / 256, 1 / 255, 0.003, 1 / 128, 0.02, 0.3]
    z_ys = [qmin, qmin, qmin + 7, 0, qmin + 100]
    specs = []
    for i, length in enumerate(LENGTHS):
        s_x = np.float32(10.0 ** (-3 + 3 * i / (len(LENGTHS) - 1)))
        rows = 2 if length == 1000 else 5
        specs.append((f"d{length}", (rows, length), s_x, s_ys[i % len(s_ys)], z_ys[i % len(z_ys)], {"opset": 13}))
    model = softmax_nodes(specs, dtype)
    rng = np.random.default_rng(1)
    tie_rows = [two_level_rows(rng, shape[0], shape[1], dtype) for _, shape, *_ in specs]
    narrow = [(DTYPE_RANGE[dtype][1] - rng.integers(0, 12, shape)).astype(dtype) for _, shape, *_ in specs]
    check_exact(model, tmp_path, n_random=3, extra_cases=[tie_rows, narrow])


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_rounding_ties(dtype, tmp_path):
    """Two-level rows at s_x = 1/4 over lengths 2..40, with Y = floor(f32(1 / s_y)) odd or 2 mod 4
    (s_y = 1/255 gives Y = 254, not 255): many t * Y / sum fall exactly on a half."""
    s_ys = [np.float32(1 / 255), np.float32(0.003), np.float32(0.3), np.float32(0.004)]  # Y = 254, 333, 3, 249
    lengths = range(2, 41)
    specs = [(f"d{n}", (40, n), np.float32(0.25), s_ys[n % 4], DTYPE_RANGE[dtype][0], {"opset": 13}) for n in lengths]
    rng = np.random.default_rng(7)
    rows = [two_level_rows(rng, 40, n, dtype) for n in lengths]
    ties = sum(halves(exp_table(np.float32(0.25), n), y_factor(s_ys[n % 4]), x) for n, x in zip(lengths, rows))
    assert ties >= 200, ties
    check_exact(softmax_nodes(specs, dtype), tmp_path, n_random=1, extra_cases=[rows])


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_subnormal_and_zero_table_entries(dtype, tmp_path):
    """s_x of 1 and more: entries far below the row maximum are subnormal or 0.0 in float32, and a
    row that starts with them sums subnormals before its maximum arrives."""
    qmin, qmax = DTYPE_RANGE[dtype]
    specs = [(f"s{i}", (6, 10), s_x, np.float32(1 / 256), qmin, {"opset": 13}) for i, s_x in enumerate([1.0, 0.75, 3.0])]
    table = exp_table(np.float32(1.0), 10)
    assert (table == 0).any() and ((table > 0) & (table < np.finfo(np.float32).tiny)).any()
    x = np.full((6, 10), qmax, np.int64)
    x[:, :9] = qmax - np.array([[170, 172, 175, 178, 180, 190, 200, 250, 255]]) + np.arange(6)[:, None]
    x[5] = np.arange(10) * 25 % 256 + qmin
    case = [np.clip(x, qmin, qmax).astype(dtype)] * len(specs)
    check_exact(softmax_nodes(specs, dtype), tmp_path, n_random=2, extra_cases=[case])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_lengths_and_scales(data):
    """Any row length up to 1000, x scales 1e-3..16 (large ones put most table entries at 0.0),
    output scales 2^-20..4 (Y from 2^20 down to 0), any output zero point."""
    draw = data.draw
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    qmin, qmax = DTYPE_RANGE[dtype]
    length = draw(st.one_of(st.integers(1, 64), st.integers(65, 1000)))
    rows = draw(st.integers(1, max(1, 4000 // length)))
    s_x = np.float32(np.exp(draw(st.floats(np.log(1e-3), np.log(1.0) if draw(st.booleans()) else np.log(16.0)))))
    s_y = np.float32(draw(st.sampled_from([1 / 256, 1 / 255, 1 / 128]) | st.floats(2.0**-20, 4.0)))
    z_y = draw(st.sampled_from([qmin, qmin]) | st.integers(qmin, qmax))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    model = softmax_nodes([("sm", (rows, length), s_x, s_y, z_y, {"opset": 13})], dtype)
    cases = [[two_level_rows(rng, rows, length, dtype)], [(qmax - rng.integers(0, 8, (rows, length))).astype(dtype)]]
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(model, Path(tmp), n_random=2, extra_cases=cases)


@st.composite
def axis_cases(draw):
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    opset = draw(st.sampled_from([1, 11, 12, 13]))
    attrs = {"opset": opset}
    if draw(st.booleans()) or rank == 1:
        attrs["axis"] = draw(st.integers(-rank, rank - 1))  # else the schema's default, -1 for every opset
    qmin, qmax = DTYPE_RANGE[dtype]
    s_x = np.float32(np.exp(draw(st.floats(np.log(1e-3), 0.0))))
    s_y = np.float32(draw(st.sampled_from([1 / 256, 1 / 255, 1 / 100, 0.004, 1.0])))
    z_y = draw(st.sampled_from([qmin, qmin, 0, qmax])) if draw(st.booleans()) else draw(st.integers(qmin, qmax))
    return dtype, shape, attrs, s_x, s_y, z_y


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(axis_cases())
def test_axis_semantics(case):
    """Any axis, default or given, with ORT's opset < 13 (2-D coercion) and opset 13 meanings."""
    dtype, shape, attrs, s_x, s_y, z_y = case
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(softmax_nodes([("sm", shape, s_x, s_y, z_y, attrs)], dtype), Path(tmp), n_random=4)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_folded_clip(dtype, tmp_path):
    qmin, qmax = DTYPE_RANGE[dtype]
    inits = {"xs": scalar(0.05, np.float32), "xz": scalar(0, dtype), "ys": scalar(1 / 256, np.float32),
             "yz": scalar(qmin, dtype), "lo": scalar(qmin + 3, dtype), "hi": scalar(qmin + 90, dtype)}
    nodes = [helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["s"], name="sm", domain="com.microsoft",
                              opset=13),
             helper.make_node("Clip", ["s", "lo", "hi"], ["y"], name="clip")]
    model = make_model(nodes, [("x", dtype, [4, 12])], [("y", dtype, [4, 12])], inits)
    compiled = check_exact(model, tmp_path, n_random=4)
    assert [n.op for n in compiled.graph.nodes] == ["QLinearSoftmax"]


def test_refusals(tmp_path):
    def compile_one(s_y=1 / 256, **attrs):
        path = tmp_path / "m.onnx"
        onnx.save(softmax_nodes([("sm", (2, 10), 0.1, s_y, 0, attrs)], "uint8"), str(path))
        return compile_model(path, Options())

    with pytest.raises(QccError, match="'opset' attribute is missing"):
        compile_one()
    with pytest.raises(QccError, match="below 2\\^-24"):
        compile_one(s_y=1e-9, opset=13)
    with pytest.raises(QccError, match="axis 2 is out of range"):
        compile_one(opset=13, axis=2)


def test_kernel_builds_for_cortex_m4_without_float(tmp_path):
    """The runtime file alone, strict, at -O0 and -Os: integer only (no soft-float helper called)."""
    cc, nm = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-nm")
    assert cc and nm, "install gcc-arm-none-eabi to run this test"
    for opt in ("-O0", "-Os"):
        obj = tmp_path / f"softmax{opt}.o"
        result = subprocess.run([cc, "-mcpu=cortex-m4", "-mthumb", *STRICT_CFLAGS.split(), opt, "-c",
                                 str(REPO / "runtime_c" / "qcc_softmax.c"), "-o", str(obj)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True).stdout.split()
        assert not [u for u in undefined if SOFT_FLOAT_HELPER.match(u)], undefined
