"""TFLite MEAN, SUB, and float32 I/O through QUANTIZE and DEQUANTIZE: the generated C equals the
reference interpreter, which equals the pinned TFLite Micro wheel, on every output value (float32
outputs bit for bit), through tests/helpers.py check_tflite_exact. Models are written with the
flatbuffers builder the way the converter writes them (MEAN with int32 axes as a constant input,
QUANTIZE first and DEQUANTIZE last where a model keeps float I/O). Many scale pairs go into one
model, one operator each, so that one compile checks several (at most 10 independent operators per
model: beyond that qcc's exact execution-order search takes seconds); where a formula could round
otherwise, the inputs are chosen to reach the accumulators on which the alternatives differ."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from helpers import check_tflite_exact
from qcc.errors import QccError
from qcc.numerics import tflm
from qcc.ops.global_average_pool import tflm_mean_multiplier
from qcc.pipeline import compile_model
from tflite_builder import TfliteBuilder

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]
OPS_PER_MODEL = 10


def codes_with_sum(count: int, total: int) -> np.ndarray:
    """`count` int8 codes, as equal as can be, that sum to `total` (within [-128 count, 127 count])."""
    base, extra = divmod(total, count)
    codes = np.full(count, base, np.int64)
    codes[:extra] += 1
    assert codes.min() >= -128 and codes.max() <= 127 and codes.sum() == total
    return codes.astype(np.int8)


def random_scale_pair(rng, case: int) -> tuple[np.float32, np.float32]:
    """(s_x, s_y): equal every fifth case, else within 2^-6..2^4 of each other (the usual range)."""
    s_x = np.float32(10 ** rng.uniform(-3.5, 0))
    return s_x, s_x if case % 5 == 0 else np.float32(s_x * 2 ** rng.uniform(-6, 4))


def random_zero(rng, case: int) -> int:
    return [-128, 127, 0][case % 3] if case % 4 == 0 else int(rng.integers(-128, 128))


# --- MEAN -----------------------------------------------------------------------------------------

def mean_op(b: TfliteBuilder, name: str, shape, axes, keep: bool, s_x, z_x, s_y, z_y, x=None) -> tuple[int, int]:
    """A MEAN operator as the converter writes it; returns (its input, its output)."""
    if x is None:
        x = b.input(f"{name}_x", tuple(shape), "int8", scale=s_x, zero_point=z_x)
    rank = len(shape)
    reduced = {a % rank for a in axes}
    out = [1 if i in reduced else d for i, d in enumerate(shape)] if keep else [d for i, d in enumerate(shape)
                                                                              if i not in reduced]
    y = b.tensor(f"{name}_y", tuple(out), "int8", scale=s_y, zero_point=z_y)
    b.op("MEAN", [x, b.const(f"{name}_axes", np.array(axes, np.int32))], [y], version=2, options=dict(keep_dims=keep))
    b.output(y)
    return x, y


MAP_SIZES = [1, 2, 3, 5, 7, 8, 12, 16, 25, 31, 49, 64, 81, 100, 127, 128, 144, 169, 196, 200]


@pytest.mark.parametrize("seed", range(3))
def test_mean_spatial_random_scale_pairs(seed, tmp_path):
    """MEAN over [1, 2] of (1, H, W, C) images, the global pool PyTorch exports: 10 scale pairs per model
    (equal scales, zero points at both ends among them), maps of 1 to 200 elements, keep_dims both ways.
    Besides random and extreme codes, every map filled with one code, for several codes."""
    rng = np.random.default_rng(100 + seed)
    b = TfliteBuilder()
    shapes = []
    for case in range(OPS_PER_MODEL):
        n = MAP_SIZES[(case + OPS_PER_MODEL * seed) % len(MAP_SIZES)]
        h = next(d for d in range(int(n ** 0.5), 0, -1) if n % d == 0)
        shape = (1, h, n // h, int(rng.integers(1, 5)))
        s_x, s_y = random_scale_pair(rng, case)
        mean_op(b, f"m{case}", shape, [1, 2], bool(case % 2), s_x, random_zero(rng, case), s_y,
                random_zero(rng, case + 1))
        shapes.append(shape)
    flat = [[np.full(shape, code, np.int8) for shape in shapes] for code in (-128, -1, 0, 1, 37, 127)]
    check_tflite_exact(b.build(), tmp_path, n_random=6, seed=seed, extra_cases=flat)


def _alternatives(acc: np.ndarray, s_x, s_y, n: int) -> list[np.ndarray]:
    """What MEAN would give (before Z_y) under the formulas TFLM's folded one replaced or resembles:
    one multiplier for the exact s_x / (s_y n), and TFLM's older kernel (requantize by s_x / s_y,
    then divide by n, halves away from zero)."""
    m, e = tflm.quantize_multiplier(float(s_x) / (float(s_y) * n))
    exact = tflm.requantize(acc, m, e, -2**31, 2**31 - 1)
    m, e = tflm.quantize_multiplier(float(s_x) / float(s_y))
    scaled = tflm.requantize(acc, m, e, -2**31, 2**31 - 1).astype(np.int64)
    divided = np.where(scaled > 0, (scaled + n // 2) // n, -((-scaled + n // 2) // n))
    return [exact, divided]


@functools.cache
def mean_counterexamples() -> list[tuple]:
    """A search for counterexamples: for seeded random scale pairs and map sizes, the sums on which
    TFLM's folded multiplier (M0 * 2^k / n truncated) gives another code than the exact scale or than
    the older requantize-then-divide kernel; up to 6 of them per pair. 30 configurations
    (n, s_x, z_x, s_y, z_y, sums)."""
    rng = np.random.default_rng(7)
    found = []
    for case in range(1000):
        n = int(rng.integers(1, 201))
        s_x, s_y = random_scale_pair(rng, case)
        z_x, z_y = random_zero(rng, case), random_zero(rng, case + 2)
        acc = np.arange(-128 * n - z_x * n, 127 * n - z_x * n + 1, dtype=np.int64)
        m, e = tflm_mean_multiplier(s_x, s_y, n)
        folded = tflm.requantize(acc, m, e, -128 - z_y, 127 - z_y)
        differ = np.zeros(acc.shape, bool)
        for other in _alternatives(acc, s_x, s_y, n):
            differ |= np.clip(other, -128 - z_y, 127 - z_y) != folded
        if differ.any():
            found.append((n, s_x, z_x, s_y, z_y, rng.choice(acc[differ], size=min(6, int(differ.sum())), replace=False)))
        if len(found) == 3 * OPS_PER_MODEL:
            return found
    raise AssertionError(f"only {len(found)} scale pairs where the formulas differ")


@pytest.mark.parametrize("part", range(3))
def test_mean_folded_multiplier_on_the_accumulators_where_formulas_differ(part, tmp_path):
    """The counterexamples (mean_counterexamples), 10 per model, each sum in a channel of its own as an
    extra input set: TFLM itself tells which formula is right, and the C and the reference follow it."""
    b = TfliteBuilder()
    hits = []
    for case, (n, s_x, z_x, s_y, z_y, sums) in enumerate(mean_counterexamples()[part::3]):
        shape = (1, n, 1, len(sums))
        mean_op(b, f"m{case}", shape, [1, 2], True, s_x, z_x, s_y, z_y)
        hits.append(np.stack([codes_with_sum(n, int(a) + z_x * n) for a in sums], axis=-1).reshape(shape))
    check_tflite_exact(b.build(), tmp_path, n_random=2, extra_cases=[hits])


MEAN_AXES = [  # (input shape, axes, keep_dims)
    ((1, 5, 7, 3), [3], False), ((1, 5, 7, 3), [-1], True), ((1, 5, 7, 3), [1], False), ((1, 5, 7, 3), [2], True),
    ((1, 6, 5, 4), [1, 2, 3], False), ((2, 5, 7, 3), [0, 2], True), ((2, 3, 4, 5), [1, 3], False),
    ((1, 15, 14, 2), [2, 1, 1], False), ((4, 30), [1], False), ((4, 30), [0], True), ((3, 4, 5), [-2, -1], True),
    ((1, 1, 1, 8), [1, 2], False), ((2, 3, 1, 4, 5), [1, 3], True), ((6,), [0], False),
]


@pytest.mark.parametrize("part", range(2))
def test_mean_other_axes(part, tmp_path):
    """Any axes TFLM reduces in integers: channels, one spatial axis, all but the batch, scattered axes
    (gathered by a Transpose), negative and repeated axes, 2-D, 3-D, 5-D and 1-D inputs."""
    rng = np.random.default_rng(3 + part)
    b = TfliteBuilder()
    for case, (shape, axes, keep) in enumerate(MEAN_AXES[part::2]):
        s_x, s_y = random_scale_pair(rng, case + 1)
        mean_op(b, f"m{case}", shape, axes, keep, s_x, random_zero(rng, case), s_y, random_zero(rng, case + 1))
    compiled = check_tflite_exact(b.build(), tmp_path)
    # [0, 2] and [1, 3] need a Transpose; the 5-D [1, 3] does not (its axis 2 is 1), nor the others
    assert sum(n.op == "Transpose" for n in compiled.graph.nodes) == [1, 1][part]


def conv(b: TfliteBuilder, name: str, x: int, shape, out_c: int, rng, s_y=0.3) -> int:
    """A 1x1 CONV_2D with per-channel weights (the converter's), output channels first inside qcc."""
    s_x = float(b.tensors[x]["quantization"]["scale"][0])
    scales = rng.uniform(0.002, 0.02, out_c).astype(np.float32)
    w = b.const(f"{name}_w", rng.integers(-127, 128, (out_c, 1, 1, shape[-1])).astype(np.int8), scale=scales,
                zero_point=np.zeros(out_c, np.int64), quantized_dimension=0)
    bias = b.const(f"{name}_b", rng.integers(-2000, 2000, out_c).astype(np.int32),
                   scale=(np.float32(s_x) * scales).astype(np.float32), zero_point=np.zeros(out_c, np.int64))
    y = b.tensor(f"{name}_y", (*shape[:3], out_c), "int8", scale=s_y, zero_point=int(rng.integers(-20, 20)))
    b.op("CONV_2D", [x, w, bias], [y], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1,
                                                               fused_activation_function="RELU6"))
    return y


@pytest.mark.parametrize("keep", [False, True])
def test_mean_after_convolution_reads_channels_first(keep, tmp_path):
    """MobileNetV2's head as PyTorch exports it: CONV_2D -> MEAN [1, 2] -> FULLY_CONNECTED. The
    convolution's output is channels first inside qcc, and MEAN reads it so: no Transpose between them."""
    rng = np.random.default_rng(11 + keep)
    b = TfliteBuilder()
    x = b.input("x", (1, 7, 7, 6), "int8", scale=0.05, zero_point=-10)
    h = conv(b, "conv", x, (1, 7, 7, 6), 16, rng)
    _, pooled = mean_op(b, "pool", (1, 7, 7, 16), [1, 2], keep, 0.3, 0, 0.11, -7, x=h)
    b.outputs.remove(pooled)
    flat = pooled
    if keep:
        flat = b.tensor("flat", (1, 16), "int8", scale=0.11, zero_point=-7)
        b.op("RESHAPE", [pooled, b.const("shape", np.array([1, 16], np.int32))], [flat], options=dict(new_shape=[1, 16]))
    scales = rng.uniform(0.002, 0.02, 5).astype(np.float32)
    w = b.const("fc_w", rng.integers(-127, 128, (5, 16)).astype(np.int8), scale=scales, zero_point=np.zeros(5, np.int64))
    bias = b.const("fc_b", rng.integers(-500, 500, 5).astype(np.int32), scale=(np.float32(0.11) * scales).astype(np.float32),
                   zero_point=np.zeros(5, np.int64))
    y = b.tensor("y", (1, 5), "int8", scale=0.2, zero_point=3)
    b.op("FULLY_CONNECTED", [flat, w, bias], [y], version=9)
    b.output(y, pooled)
    compiled = check_tflite_exact(b.build(), tmp_path)
    mean = next(n for n in compiled.graph.nodes if n.op == "TflmMean")
    assert not mean.attrs["channels_last"] and compiled.graph.producer(mean.inputs[0]).op == "QLinearConv"


def test_mean_refusals(tmp_path):
    for axes_kind, message in (("input", r"the axes 'axes' must be a constant"), ("int64", r"are int64; TFLM's MEAN "
                                                                                           r"reads int32 axes")):
        b = TfliteBuilder()
        x = b.input("x", (1, 4, 4, 2), "int8", scale=0.1, zero_point=0)
        if axes_kind == "input":
            axes = b.tensor("axes", (2,), "int32")  # computed at run time (here: by nothing)
        else:
            axes = b.const("axes", np.array([1, 2], np.int64))
        y = b.tensor("y", (1, 2), "int8", scale=0.1, zero_point=0)
        b.op("MEAN", [x, axes], [y], version=2)
        b.output(y)
        path = tmp_path / f"{axes_kind}.tflite"
        path.write_bytes(b.build())
        with pytest.raises(QccError, match=message):
            compile_model(path)


# --- SUB ------------------------------------------------------------------------------------------

def sub_multipliers(s_a, s_b, s_c, in_float32: bool) -> list[tuple[int, int]]:
    """TFLM's three (M0, e) of SUB, from divisions in double (the wheel, as ADD) or in float32 (the
    2026-08 source's sub_common.cc): the two differ for most scale triples."""
    if in_float32:
        f = np.float32
        twice_max = f(2) * max(f(s_a), f(s_b))
        reals = [float(f(s_a) / twice_max), float(f(s_b) / twice_max), float(twice_max / (f(1 << 20) * f(s_c)))]
    else:
        twice_max = 2 * max(float(s_a), float(s_b))
        reals = [float(s_a) / twice_max, float(s_b) / twice_max, twice_max / ((1 << 20) * float(s_c))]
    return [tflm.quantize_multiplier_smaller_than_one(r) for r in reals]


def sub_codes(multipliers, z_a: int, z_b: int, z_c: int) -> np.ndarray:
    """SUB's output for every code pair (a, b), as a 256 x 256 table indexed by a + 128, b + 128."""
    (m_a, e_a), (m_b, e_b), (m_c, e_c) = multipliers
    codes = np.arange(-128, 128, dtype=np.int64)
    scaled_a = tflm.multiply_by_quantized_multiplier_smaller_than_one((codes - z_a) << 20, m_a, e_a)
    scaled_b = tflm.multiply_by_quantized_multiplier_smaller_than_one((codes - z_b) << 20, m_b, e_b)
    raw = tflm.multiply_by_quantized_multiplier_smaller_than_one(scaled_a[:, None] - scaled_b[None, :], m_c, e_c)
    return np.clip(raw + z_c, -128, 127)


@functools.cache
def sub_counterexamples() -> list[tuple]:
    """A search for counterexamples: seeded random scale triples (extreme zero points among them) for
    which the multipliers divided in float32 give other codes than in double on some of the 65536 code
    pairs (about 1 triple in 40), with 64 of those pairs each: 12 triples (s_a, z_a, s_b, z_b, s_c, z_c,
    a codes, b codes)."""
    rng = np.random.default_rng(5)
    found = []
    for case in range(3000):
        s_a, s_b = random_scale_pair(rng, case)
        s_c = np.float32(max(s_a, s_b) * 2 ** rng.uniform(-1, 4))
        zs = (random_zero(rng, case), random_zero(rng, case + 1), random_zero(rng, case + 2))
        double, single = sub_multipliers(s_a, s_b, s_c, False), sub_multipliers(s_a, s_b, s_c, True)
        if double == single:
            continue
        differ = np.flatnonzero(sub_codes(double, *zs) != sub_codes(single, *zs))
        if differ.size:
            picked = rng.choice(differ, size=64, replace=differ.size < 64)
            found.append((s_a, zs[0], s_b, zs[1], s_c, zs[2], (picked // 256 - 128).astype(np.int8),
                          (picked % 256 - 128).astype(np.int8)))
        if len(found) == 12:
            return found
    raise AssertionError(f"only {len(found)} scale triples where the multipliers differ")


@pytest.mark.parametrize("part", range(2))
def test_sub_on_the_code_pairs_where_float_and_double_multipliers_differ(part, tmp_path):
    """The counterexamples (sub_counterexamples), 6 SUBs per model, their code pairs as an extra input
    set: TFLM tells which multipliers it computes (double: the wheel; float32: the older source)."""
    b = TfliteBuilder()
    pairs = []
    for case, (s_a, z_a, s_b, z_b, s_c, z_c, a, bb) in enumerate(sub_counterexamples()[part::2]):
        x1 = b.input(f"a{case}", (1, 64), "int8", scale=s_a, zero_point=z_a)
        x2 = b.input(f"b{case}", (1, 64), "int8", scale=s_b, zero_point=z_b)
        y = b.tensor(f"y{case}", (1, 64), "int8", scale=s_c, zero_point=z_c)
        b.op("SUB", [x1, x2], [y], version=2)
        b.output(y)
        pairs += [a.reshape(1, 64), bb.reshape(1, 64)]
    check_tflite_exact(b.build(), tmp_path, n_random=2, extra_cases=[pairs])


def test_sub_shapes_constants_and_activations(tmp_path):
    """Two images after convolutions (channels first inside), a per-channel constant broadcast from either
    side, a row broadcast over rows, every fused activation, equal scales, zero points at both ends."""
    rng = np.random.default_rng(9)
    b = TfliteBuilder()
    x = b.input("x", (1, 5, 6, 4), "int8", scale=0.05, zero_point=-128)
    h1, h2 = conv(b, "c1", x, (1, 5, 6, 4), 4, rng, 0.2), conv(b, "c2", x, (1, 5, 6, 4), 4, rng, 0.3)
    k = b.const("k", rng.integers(-128, 128, (4,)).astype(np.int8), scale=0.05, zero_point=127)
    rows = b.input("rows", (3, 10), "int8", scale=0.07, zero_point=127)
    row = b.input("row", (1, 10), "int8", scale=0.07, zero_point=0)
    for case, (left, right, shape) in enumerate([(h1, h2, (1, 5, 6, 4)), (h1, k, (1, 5, 6, 4)), (k, h2, (1, 5, 6, 4)),
                                                 (rows, row, (3, 10)), (x, x, (1, 5, 6, 4)), (row, rows, (3, 10))]):
        y = b.tensor(f"y{case}", shape, "int8", scale=[0.3, 0.25, 0.1, 0.07, 0.05, 0.5][case],
                     zero_point=[0, -128, 127, 5, 0, -3][case])
        b.op("SUB", [left, right], [y], version=2,
             options=dict(fused_activation_function=ACTIVATIONS[case % len(ACTIVATIONS)]))
        b.output(y)
    compiled = check_tflite_exact(b.build(), tmp_path)
    assert sum(n.op == "TflmSub" for n in compiled.graph.nodes) == 6


# --- float32 inputs and outputs: QUANTIZE and DEQUANTIZE -------------------------------------------

def ties(scale: np.float32, zero: int) -> np.ndarray:
    """float32 values x with f32(x / scale) exactly k + 1/2 for every k in the code range (and a little
    beyond), each with its neighbours one ulp either side."""
    found = []
    for k in range(-130 - zero, 130 - zero):
        x = np.float32((k + 0.5) * float(scale))
        for _ in range(8):
            q = x / scale
            if q == np.float32(k + 0.5):
                found += [x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))]
                break
            x = np.nextafter(x, np.float32(np.inf) if q < k + 0.5 else np.float32(-np.inf))
    return np.array(found, np.float32)


def float_cases(scale: np.float32, zero: int, size: int) -> list[np.ndarray]:
    """Input sets for a float32 input of `size` elements: ties, just below one half, huge but defined
    values, signed zeros, subnormals and the ends of float32's finite range divided down."""
    values = np.concatenate([
        ties(scale, zero),
        np.array([0.49999997, -0.49999997, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5], np.float32) * scale,
        np.array([1e6, -1e6, 2.0**30, -(2.0**30), 2.0**31 - 1024, -(2.0**31 - 1024), 127.49, -128.51], np.float32) * scale,
        np.array([0.0, -0.0, 1e-45, -1e-45, 1.2e-38, -1.2e-38], np.float32),
    ]).astype(np.float32)
    values = np.concatenate([values, np.zeros(-len(values) % size, np.float32)])
    return [chunk for chunk in values.reshape(-1, size)]


IO_CASES = [(np.float32(0.05), -3), (np.float32(0.0625), 0), (np.float32(0.013), -128), (np.float32(0.39), 127),
            (np.float32(1e-5), 10), (np.float32(3.0), -50)]


def test_quantize_dequantize_float_io(tmp_path):
    """float32 -> QUANTIZE -> DEQUANTIZE -> float32 for six (scale, zero point) pairs: the C takes and
    returns float32 as TFLM does, rounds halves away from zero, and dequantizes bit for bit. Values whose
    quotient is beyond int32, infinities and NaN (undefined in TFLM) are checked C == reference only."""
    size = 64
    b = TfliteBuilder()
    for case, (scale, zero) in enumerate(IO_CASES):
        x = b.input(f"x{case}", (1, size), "float32")
        q = b.tensor(f"q{case}", (1, size), "int8", scale=scale, zero_point=zero)
        b.op("QUANTIZE", [x], [q])
        y = b.tensor(f"y{case}", (1, size), "float32")
        b.op("DEQUANTIZE", [q], [y], version=2)
        b.output(y)
    per_input = [float_cases(scale, zero, size) for scale, zero in IO_CASES]
    rounds = max(len(c) for c in per_input)
    extra = [[c[i % len(c)].reshape(1, size) for c in per_input] for i in range(rounds)]
    undefined = np.array([np.nan, -np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, -1e30] * 8, np.float32)
    undefined[-8:] = [2.0**31, -(2.0**31), 2.0**32, -(2.0**32), 1e10, -1e10, 5e9, -5e9]
    with np.errstate(over="ignore"):
        golden_only = [[(undefined * (scale if i else 1)).astype(np.float32).reshape(1, size) for scale, _ in IO_CASES]
                       for i in range(2)]
    compiled = check_tflite_exact(b.build(), tmp_path, extra_cases=extra, golden_only_cases=golden_only)
    assert [compiled.graph.tensor(t).dtype for t in compiled.graph.inputs + compiled.graph.outputs] == ["float32"] * 12


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_float_io_around_mean_and_sub(tmp_path, io_in_arena):
    """A model as the converter writes it with float I/O: QUANTIZE first, integer ops, DEQUANTIZE last;
    one output stays int8 beside the float one. With the input in the arena (--io-in-arena), QUANTIZE writes its
    codes over the floats it has read (code i over bytes i of floats i / 4 and before): in place, exact."""
    rng = np.random.default_rng(21)
    b = TfliteBuilder()
    x = b.input("x", (1, 6, 6, 3), "float32")
    q = b.tensor("q", (1, 6, 6, 3), "int8", scale=0.02, zero_point=-128)
    b.op("QUANTIZE", [x], [q])
    h = conv(b, "conv", q, (1, 6, 6, 3), 8, rng, 0.1)
    d = b.tensor("d", (1, 6, 6, 8), "int8", scale=0.15, zero_point=10)
    b.op("SUB", [h, b.const("k", rng.integers(-128, 128, (8,)).astype(np.int8), scale=0.04, zero_point=-20)], [d],
         version=2, options=dict(fused_activation_function="RELU"))
    _, m = mean_op(b, "pool", (1, 6, 6, 8), [1, 2], False, None, None, 0.07, 5, x=d)
    y = b.tensor("y", (1, 8), "float32")
    b.op("DEQUANTIZE", [m], [y], version=2)
    b.outputs.remove(m)
    b.output(y, d)
    compiled = check_tflite_exact(b.build(), tmp_path, extra_cases=[[c.reshape(1, 6, 6, 3)]
                                                                     for c in float_cases(np.float32(0.02), -128, 108)],
                                  io_in_arena=io_in_arena)
    assert [compiled.graph.tensor(t).dtype for t in compiled.graph.inputs + compiled.graph.outputs] == \
        ["float32", "float32", "int8"]
    quantize = next(step for step, n in enumerate(compiled.graph.nodes) if n.op == "QuantizeLinear")
    mode = compiled.plan.steps.get(quantize)
    assert (mode is not None and mode.mode == "in place") == io_in_arena
    if io_in_arena:
        assert compiled.plan.storage[compiled.graph.nodes[quantize].outputs[0]] == compiled.plan.storage["x"]


def _refused(tmp_path, b: TfliteBuilder, message: str) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build())
    with pytest.raises(QccError, match=message):
        compile_model(path)


def test_float_inside_the_model_is_refused_by_name(tmp_path):
    # a float32 input read by an operator other than QUANTIZE
    b = TfliteBuilder()
    x = b.input("x", (1, 8), "float32")
    y = b.tensor("y", (1, 8), "int8", scale=0.1, zero_point=0)
    b.op("QUANTIZE", [x], [y])
    z = b.tensor("z", (1, 8), "float32")
    b.op("RELU", [x], [z])
    b.output(y, z)
    _refused(tmp_path, b, r"input 'x' is float32 and read by 2 operators \(QUANTIZE, RELU\)")
    # DEQUANTIZE -> float -> QUANTIZE in the middle
    b = TfliteBuilder()
    x = b.input("x", (1, 8), "int8", scale=0.1, zero_point=0)
    f = b.tensor("f", (1, 8), "float32")
    b.op("DEQUANTIZE", [x], [f], version=2)
    y = b.tensor("y", (1, 8), "int8", scale=0.2, zero_point=0)
    b.op("QUANTIZE", [f], [y])
    b.output(y)
    _refused(tmp_path, b, r"operator 0 \(DEQUANTIZE v2, output 'f'\): its float32 output 'f' is read by QUANTIZE: "
                          r"a float computation inside the model")
    # a DEQUANTIZE whose float32 output is not a model output
    b = TfliteBuilder()
    x = b.input("x", (1, 8), "int8", scale=0.1, zero_point=0)
    f = b.tensor("f", (1, 8), "float32")
    b.op("DEQUANTIZE", [x], [f], version=2)
    y = b.tensor("y", (1, 8), "int8", scale=0.2, zero_point=0)
    b.op("ADD", [x, x], [y], version=2)
    b.output(y)
    _refused(tmp_path, b, r"its float32 output 'f' is not a model output")
    # (QUANTIZE int8 -> int8 is a requantization table: tests/test_tflite_activations.py)
    # QUANTIZE to int32 (int16: 16x8 models, tests/test_tflite_16x8.py)
    b = TfliteBuilder()
    x = b.input("x", (1, 8), "float32")
    y = b.tensor("y", (1, 8), "int32", scale=0.2, zero_point=0)
    b.op("QUANTIZE", [x], [y], version=2)
    b.output(y)
    _refused(tmp_path, b, r"quantizes to int32; qcc compiles TFLM's int8 and int16 kernels")
