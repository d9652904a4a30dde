"""com.microsoft QLinearLeakyRelu and QLinearSigmoid (the Lookup op) against ONNX Runtime on all 256
input codes; the generated C against the reference; per-channel tables against numpy; the exact
float32 helpers against the hardware (libm's fmaf, numpy float32) and MLAS's sigmoid against ORT's."""

import ctypes
import ctypes.util
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import STRICT_CFLAGS, check_exact, make_model, scalar
from qcc import reference
from qcc.backend.writer import write_output
from qcc.ir import DTYPE_RANGE
from qcc.numerics import float32_exact as fx
from qcc.numerics.quantize_linear import code_table
from qcc.ops import op_named
from qcc.ops.lookup_table import leaky_relu, make_lookup_node, mlas_logistic
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference
from qcc.toolchain.build import make

ALPHAS = [0.01, 0.1, 0.2, -0.5, 1.5]
SHAPE = [2, 4, 8, 4]  # 256 elements: one input holds every code exactly once


def all_codes(dtype, shape=SHAPE, seed=0) -> np.ndarray:
    """Every code of the type exactly once, shuffled (shape must have 256 elements)."""
    codes = np.random.default_rng(seed).permutation(np.arange(256, dtype=np.uint8)).view(dtype)
    return codes.reshape(shape)


def lookup_node(op, tag, dtype, s_x, z_x, s_y, z_y, alpha=None, x=None, y=None):
    """One QOperator node reading x_{tag} (or x) and writing y_{tag} (or y), with its quantization inputs."""
    names = [f"{n}_{tag}" for n in ("xs", "xz", "ys", "yz")]
    inits = dict(zip(names, [scalar(s_x, np.float32), scalar(z_x, dtype), scalar(s_y, np.float32), scalar(z_y, dtype)]))
    attrs = {} if alpha is None else {"alpha": float(alpha)}
    node = helper.make_node(op, [x or f"x_{tag}", *names], [y or f"y_{tag}"], name=f"{op}_{tag}",
                            domain="com.microsoft", **attrs)
    return node, inits


def parallel_model(dtype, specs, shape=SHAPE):
    """One graph input and output per spec (op, s_x, z_x, s_y, z_y, alpha): many tables in one model."""
    nodes, inits, inputs, outputs = [], {}, [], []
    for i, (op, s_x, z_x, s_y, z_y, alpha) in enumerate(specs):
        node, node_inits = lookup_node(op, str(i), dtype, s_x, z_x, s_y, z_y, alpha)
        nodes.append(node)
        inits.update(node_inits)
        inputs.append((f"x_{i}", dtype, list(shape)))
        outputs.append((f"y_{i}", dtype, list(shape)))
    return make_model(nodes, inputs, outputs, inits)


def every_code_cases(n_inputs, dtype):
    """Two input sets where each input holds all 256 codes (two different orders)."""
    return [[all_codes(dtype, seed=seed + i) for i in range(n_inputs)] for seed in (0, 1000)]


def reference_equals_ort(model, tmp_path, cases) -> int:
    """Reference == ORT on every case, without building C; returns the number of values compared."""
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    graph = compile_model(path, Options()).graph
    sess = ort_reference.session(path)
    compared = 0
    for case in cases:
        for name, e, g in zip(graph.outputs, ort_reference.run_on_codes(sess, graph, case), reference.run(graph, case)):
            mismatch = np.flatnonzero(e.reshape(-1) != g.reshape(-1))
            assert mismatch.size == 0, (f"{name}: {mismatch.size} of {e.size} differ; first input code "
                                        f"{case[graph.outputs.index(name)].reshape(-1)[mismatch[0]]}: ORT "
                                        f"{e.reshape(-1)[mismatch[0]]}, reference {g.reshape(-1)[mismatch[0]]}")
            compared += e.size
    return compared


# --- (scale, zero point) pairs: typical, extreme zero points, exact .5 ties, saturation ----------


def quant_pairs(dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    mid = (qmin + qmax + 1) // 2
    return [
        (0.05, mid, 0.04, mid - 7),
        (0.1, qmin, 0.1, qmin),          # s_x == s_y: alpha * v / s_y lands on exact .5 ties
        (0.1, qmax, 0.1, qmax),
        (0.02, qmax, 0.5, qmin),
        (1.0, mid, 1.0 / 3.0, qmin + 3),
        (1e-3, qmin + 1, 2e-5, mid),     # output much finer than input: most codes saturate
        (7.5, mid + 5, 1e3, qmax - 1),   # output much coarser: most codes map to z_y
        (2.0**-8, 0, 2.0**-8, 0),
        (2.0**-6, mid, 2.0**-6, mid),    # both signs; alpha -0.5 and 1.5 give exact .5 ties on odd codes
    ]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_leaky_relu_tables_equal_ort_on_every_code(tmp_path, dtype):
    specs = [("QLinearLeakyRelu", *pair, alpha) for alpha in ALPHAS for pair in quant_pairs(dtype)]
    model = parallel_model(dtype, specs)
    compared = reference_equals_ort(model, tmp_path, every_code_cases(len(specs), dtype))
    assert compared == 2 * 256 * len(specs)


SIGMOID_INPUT_SCALES = np.geomspace(1e-3, 1.0, 12)  # codes reach 0.25 (linear) up to 255 (saturated)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_sigmoid_tables_equal_ort_on_every_code(tmp_path, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    mid = (qmin + qmax + 1) // 2
    outputs = [(1 / 256, qmin), (1 / 255, qmin), (1 / 128, mid), (0.003, qmin + 10), (0.01, qmax), (1e-4, mid)]
    specs = [("QLinearSigmoid", s_x, z_x, s_y, z_y, None)
             for i, s_x in enumerate(SIGMOID_INPUT_SCALES)
             for z_x in (qmin, mid, qmax, qmin + 37 * (i + 1) % 256)
             for s_y, z_y in outputs[i % 3::3]]
    model = parallel_model(dtype, specs)
    compared = reference_equals_ort(model, tmp_path, every_code_cases(len(specs), dtype))
    assert compared == 2 * 256 * len(specs)


def test_sigmoid_has_no_upper_clamp_like_ort_fma3_kernel(tmp_path):
    """MLAS's FMA3 logistic kernel clamps only below 0: at x = 17.844 it returns 1 + 2^-23, which
    quantizes one code higher than 1.0 would for this output scale. ORT agrees (SEMANTICS.md says
    'clamp to [0, 1]', which is the portable kernel, not the one ORT runs here)."""
    x = float(np.float32(17.844))
    assert mlas_logistic(x) == 1.0 + 2.0**-23
    s_y = float(np.nextafter(np.float32(1 / 1.5), np.float32(1)))  # f32(1 / s_y) sits just below 1.5
    assert round(fx.div(1.0, s_y)) == 1 and round(fx.div(mlas_logistic(x), s_y)) == 2
    model = parallel_model("uint8", [("QLinearSigmoid", x, 0, s_y, 0, None)])
    compiled = check_exact(model, tmp_path, n_random=0, extra_cases=every_code_cases(1, "uint8"))
    assert compiled.graph.nodes[0].params["table"][0, 1] == 2


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_generated_c_equals_reference_and_ort(tmp_path, dtype):
    """Both ops with every code in the input, through the C golden test, plus a chain through the arena."""
    qmin, qmax = DTYPE_RANGE[dtype]
    specs = [("QLinearLeakyRelu", 0.1, qmin + 100, 0.1, qmin + 30, -0.5),
             ("QLinearLeakyRelu", 0.03, qmax - 3, 0.05, qmin + 200, 1.5),
             ("QLinearSigmoid", 0.08, qmin + 128, 1 / 256, qmin, None),
             ("QLinearSigmoid", 1e-3, qmin, 1e-4, qmin + 5, None)]
    (tmp_path / "parallel").mkdir()
    (tmp_path / "chain").mkdir()
    check_exact(parallel_model(dtype, specs), tmp_path / "parallel", n_random=3,
                extra_cases=every_code_cases(len(specs), dtype))
    sig, sig_inits = lookup_node("QLinearSigmoid", "a", dtype, 0.06, qmin + 120, 1 / 255, qmin, x="x", y="t")
    leaky, leaky_inits = lookup_node("QLinearLeakyRelu", "b", dtype, 1 / 255, qmin, 0.002, qmin + 50, 0.2, x="t", y="y")
    chain = make_model([sig, leaky], [("x", dtype, [1, 256])], [("y", dtype, [1, 256])], {**sig_inits, **leaky_inits})
    compiled = check_exact(chain, tmp_path / "chain", n_random=3, extra_cases=[[all_codes(dtype, [1, 256])]])
    assert compiled.plan.storage["t"].kind == "arena"


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_relu_and_clip_fold_into_the_table(tmp_path, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    node, inits = lookup_node("QLinearLeakyRelu", "0", dtype, 0.05, qmin + 128, 0.05, qmin + 100, 0.2, x="x", y="t")
    inits["lo"], inits["hi"] = scalar(qmin + 110, dtype), scalar(qmax - 20, dtype)
    clip = helper.make_node("Clip", ["t", "lo", "hi"], ["c"], name="clip")
    nodes = [node, clip]
    if dtype == "int8":  # ONNX has no Relu on uint8
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    else:
        nodes[-1].output[0] = "y"
    model = make_model(nodes, [("x", dtype, [1, 256])], [("y", dtype, [1, 256])], inits, opset=14)
    compiled = check_exact(model, tmp_path, n_random=2, extra_cases=[[all_codes(dtype, [1, 256])]])
    assert [n.op for n in compiled.graph.nodes] == ["Lookup"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_parameters(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    qmin, qmax = DTYPE_RANGE[dtype]

    def zero_point():
        return draw(st.sampled_from([qmin, qmax, None])) or draw(st.integers(qmin, qmax))

    op = draw(st.sampled_from(["QLinearLeakyRelu", "QLinearSigmoid"]))
    s_x = np.float32(np.exp(draw(st.floats(np.log(1e-4), np.log(10.0)))))
    s_y = np.float32(np.exp(draw(st.floats(np.log(1e-5), np.log(10.0)))))
    alpha = draw(st.floats(-2.0, 2.0, width=32)) if op == "QLinearLeakyRelu" else None
    model = parallel_model(dtype, [(op, s_x, zero_point(), s_y, zero_point(), alpha)])
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(model, Path(tmp), n_random=2, extra_cases=every_code_cases(1, dtype))


# --- per-channel tables: the Lookup op as other passes create it ------------------------------------


def numpy_per_channel(x, axis, s_x, z_x, gamma, beta, alpha, s_y, z_y, out_dtype):
    """Independent of qcc: y = QuantizeLinear(leaky(f32(f32(dequantize(x) * gamma) + beta))) per channel,
    every step in numpy float32 (IEEE, no fma), quantized as MLAS does (true division, RNE, clamp)."""
    shape = [1] * x.ndim
    shape[axis] = -1

    def per_channel(values, dtype):
        return np.asarray(values, dtype).reshape(shape)

    v = per_channel(s_x, np.float32) * (x.astype(np.int32) - per_channel(z_x, np.int32)).astype(np.float32)
    v = v * per_channel(gamma, np.float32) + per_channel(beta, np.float32)  # two float32 roundings
    v = np.where(v >= 0, v, per_channel(alpha, np.float32) * v)
    qmin, qmax = DTYPE_RANGE[out_dtype]
    q = np.rint(np.clip(v / per_channel(s_y, np.float32), qmin - per_channel(z_y, np.int32), qmax - per_channel(z_y, np.int32)))
    return (q.astype(np.int32) + per_channel(z_y, np.int32)).astype(out_dtype)


@pytest.mark.parametrize("in_dtype, out_dtype, axis", [("int8", "uint8", 1), ("uint8", "uint8", 3), ("uint8", "int8", 0)])
def test_per_channel_tables(tmp_path, in_dtype, out_dtype, axis):
    """A per-channel Lookup (one table per index along `axis`, input and output types may differ):
    the reference equals a numpy computation, and the C equals the reference."""
    shape = {0: [4, 256], 1: [2, 3, 8, 16], 3: [2, 128, 1, 4]}[axis]  # 256 elements (or a multiple) per channel
    channels = shape[axis]
    rng = np.random.default_rng(axis)
    (in_min, in_max), (out_min, out_max) = DTYPE_RANGE[in_dtype], DTYPE_RANGE[out_dtype]
    s_x = np.geomspace(1e-3, 0.5, channels).astype(np.float32)
    z_x = rng.integers(in_min, in_max, channels, endpoint=True)
    gamma = rng.uniform(-3, 3, channels).astype(np.float32)
    beta = rng.uniform(-1, 1, channels).astype(np.float32)
    alpha = np.resize(np.array(ALPHAS, np.float32), channels)
    s_y = np.geomspace(1e-3, 0.1, channels)[::-1].astype(np.float32)
    z_y = rng.integers(out_min, out_max, channels, endpoint=True)

    def island(c):  # what a float island between DequantizeLinear and QuantizeLinear computes
        return lambda v: leaky_relu(v * gamma[c] + beta[c], alpha[c])  # float32 steps, as ORT's kernels

    tables = np.concatenate([code_table(in_dtype, s_x[c], int(z_x[c]), island(c), out_dtype, s_y[c], int(z_y[c]))
                             for c in range(channels)])

    # Any one-node 8-bit model gives the graph; its node is replaced by the per-channel Lookup.
    node, inits = lookup_node("QLinearSigmoid", "0", in_dtype, 0.1, 0, 0.1, 0, x="x", y="y")
    path = tmp_path / "model.onnx"
    onnx.save(make_model([node], [("x", in_dtype, shape)], [("y", in_dtype, shape)], inits), str(path))
    compiled = compile_model(path, Options())
    graph = compiled.graph
    graph.tensors["y"].dtype = out_dtype
    graph.nodes[0] = make_lookup_node("island", "x", "y", tables, axis=axis - len(shape))
    graph.nodes[0].attrs["clamp"] = DTYPE_RANGE[out_dtype]  # a folded no-op clamp must leave the tables alone
    op_named("Lookup").prepare(graph.nodes[0], graph)
    assert graph.nodes[0].attrs["axis"] == axis

    def every_code_per_channel(seed):
        per_channel = int(np.prod(shape)) // channels
        rows = [np.concatenate([np.random.default_rng(seed + 100 * c + k).permutation(256) for k in range(per_channel // 256)])
                for c in range(channels)]
        moved = np.array(rows, np.uint8).view(in_dtype).reshape([channels] + [d for i, d in enumerate(shape) if i != axis])
        return np.ascontiguousarray(np.moveaxis(moved, 0, axis))

    cases = [[every_code_per_channel(0)], [every_code_per_channel(1)]]
    for c in range(channels):  # each channel's slice of each case holds all 256 codes
        assert np.unique(np.take(cases[0][0], c, axis=axis)).size == 256
    for (case,) in cases:
        got = reference.run(graph, [case])[0]
        expected = numpy_per_channel(case, axis, s_x, z_x, gamma, beta, alpha, s_y, z_y, out_dtype)
        assert got.dtype == np.dtype(out_dtype)
        assert np.array_equal(got, expected), f"{int((got != expected).sum())} of {got.size} differ"

    out = tmp_path / "out"
    out.mkdir()
    write_output(compiled, out, cases)
    make(out, "check", cflags=STRICT_CFLAGS)  # the C equals the reference on every value
    assert "qcc_lookup_channels_8bit" in (out / "model.c").read_text()


def test_lookup_refusals(tmp_path):
    from qcc.errors import QccError

    node, inits = lookup_node("QLinearLeakyRelu", "0", "uint8", 0.1, 0, 0.1, 0, alpha=float("inf"), x="x", y="y")
    path = tmp_path / "m.onnx"
    onnx.save(make_model([node], [("x", "uint8", [4])], [("y", "uint8", [4])], inits), str(path))
    with pytest.raises(QccError, match=r"node 'QLinearLeakyRelu_0' \(QLinearLeakyRelu\): alpha must be finite"):
        compile_model(path, Options())
    with pytest.raises(ValueError, match="need an axis"):
        make_lookup_node("n", "x", "y", np.zeros((2, 256), np.uint8))


# --- the float32 steps themselves --------------------------------------------------------------------


def special_and_random_float32(n, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits)]
    small = rng.uniform(-40, 40, n).astype(np.float32)
    edges = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 17.844, 18.0, -18.0,
                      18.000002, 17.999998, 1e-20, -1e-20, 0.5, -0.5], np.float32)
    return np.concatenate([edges, small, bits])


def test_float32_helpers_match_hardware():
    """mul, add, div against numpy float32 and fma against libm's fmaf, on random bit patterns
    (subnormals, huge values, overflow to inf) and ordinary numbers."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.fmaf.restype = ctypes.c_float
    libm.fmaf.argtypes = [ctypes.c_float] * 3
    a, b, c = (special_and_random_float32(1500, seed) for seed in (1, 2, 3))
    n = min(len(a), len(b), len(c))
    with np.errstate(all="ignore"):
        for i in range(n):
            x, y, z = a[i], b[i], c[i]
            for got, want in ((fx.mul(x, y), x * y), (fx.add(x, y), x + y), (fx.fma(x, y, z), libm.fmaf(x, y, z))):
                assert got == want or (np.isnan(got) and np.isnan(want)), (x, y, z, got, want)
            if y != 0:
                want = x / y
                assert fx.div(x, y) == want or (np.isnan(want) and np.isnan(fx.div(x, y))), (x, y)


def test_mlas_logistic_equals_ort_float_sigmoid(tmp_path):
    """ORT's float Sigmoid runs the same MLAS kernel: compare on many float32 values, ties to the
    saturated ends, subnormals and special values included."""
    values = special_and_random_float32(4000, 7)
    values = np.concatenate([values, np.float32([np.inf, -np.inf, np.nan]),
                             np.linspace(17.5, 18.0, 2001, dtype=np.float32)])
    model = make_model([helper.make_node("Sigmoid", ["x"], ["y"], name="s")], [("x", "float32", [values.size])],
                       [("y", "float32", [values.size])], {})
    path = tmp_path / "sigmoid.onnx"
    onnx.save(model, str(path))
    ort_y = ort_reference.session(path).run(None, {"x": values})[0]
    ours = np.array([mlas_logistic(float(v)) for v in values], np.float32)
    same = (ours == ort_y) | (np.isnan(ours) & np.isnan(ort_y))
    assert same.all(), f"{int((~same).sum())} of {values.size} differ, first at x={values[~same][0]!r}"
