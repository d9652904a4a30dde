"""QLinearAdd and QLinearMul under the `tflm` rounding scheme follow TensorFlow Lite Micro's integer
ADD and MUL kernels. The oracle here is written from the published kernels in plain Python integers
(tensorflow/lite/micro/kernels/add_common.cc, mul_common.cc; kernels/internal/reference/integer_ops/
add.h, mul.h; quantization_util.cc QuantizeMultiplier / QuantizeMultiplierSmallerThanOneExp;
gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT), without qcc's helpers.
qcc's reference must equal it on exhaustive 256 x 256 code grids and on broadcast shapes, and the
generated C must equal qcc's reference (golden test, strict flags)."""

import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from helpers import STRICT_CFLAGS, make_model, scalar
from qcc import reference
from qcc.commands.compile import compile_to_folder
from qcc.ir import DTYPE_RANGE
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference
from qcc.toolchain.build import make

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# --- the oracle: TFLM's kernels in Python integers ---------------------------------------------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: q = frexp(real) mantissa, M0 = std::round(q * 2^31) (halves away from zero)."""
    if real == 0:
        return 0, 0
    q, shift = math.frexp(real)
    scaled = Fraction(q) * 2**31
    m0 = math.floor(scaled + Fraction(1, 2))  # q > 0: std::round
    assert m0 <= 2**31
    if m0 == 2**31:
        m0 //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return m0, shift


def quantize_multiplier_smaller_than_one_exp(real: float) -> tuple[int, int]:
    assert 0 < real < 1
    m0, shift = quantize_multiplier(real)
    assert shift <= 0
    return m0, shift


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    total = ab + nudge
    high = abs(total) // 2**31  # std::int32_t division truncates toward zero
    return high if total >= 0 else -high


def rdbpot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: arithmetic shift, rounding halves away from zero."""
    assert 0 <= exponent <= 31
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm_smaller_than_one_exp(x: int, m0: int, left_shift: int) -> int:
    return rdbpot(srdhm(x, m0), -left_shift)


def mbqm(x: int, m0: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (double rounding); x * (1 << left_shift) is int32 arithmetic."""
    left, right = max(shift, 0), max(-shift, 0)
    shifted = x * (1 << left)
    assert shifted == wrap32(shifted), "the settings here stay clear of TFLM's int32 wrap"
    return rdbpot(srdhm(shifted, m0), right)


def tflm_add(s1, z1, s2, z2, s_out, z_out, lo, hi):
    """CalculateOpDataAdd (8-bit: left_shift 20) and AddFunc, as a function of two codes."""
    s1, s2, s_out = float(np.float32(s1)), float(np.float32(s2)), float(np.float32(s_out))
    left_shift = 20
    twice_max = 2 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << left_shift) * s_out))
    scaled1 = {x: mbqm_smaller_than_one_exp((x - z1) * (1 << left_shift), m1, sh1) for x in range(-128, 256)}
    scaled2 = {y: mbqm_smaller_than_one_exp((y - z2) * (1 << left_shift), m2, sh2) for y in range(-128, 256)}

    def add(x: int, y: int) -> int:
        raw = mbqm_smaller_than_one_exp(scaled1[x] + scaled2[y], mo, sho) + z_out
        return min(hi, max(lo, raw))
    return add


def tflm_mul(s1, z1, s2, z2, s_out, z_out, lo, hi):
    """CalculateOpDataMul and MulElementwise, as a function of two codes."""
    real = float(np.float32(s1)) * float(np.float32(s2)) / float(np.float32(s_out))
    m0, shift = quantize_multiplier(real)

    def mul(x: int, y: int) -> int:
        raw = z_out + mbqm((x - z1) * (y - z2), m0, shift)
        return min(hi, max(lo, raw))
    return mul


def oracle(op: str, params, dtype: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qmin, qmax = DTYPE_RANGE[dtype]
    fn = (tflm_add if op == "QLinearAdd" else tflm_mul)(*params, qmin, qmax)
    a, b = np.broadcast_arrays(a, b)
    out = [fn(int(x), int(y)) for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist())]
    return np.array(out, dtype=dtype).reshape(a.shape)


# --- models -----------------------------------------------------------------------------------


def zero_point(dtype: str, which) -> int:
    qmin, qmax = DTYPE_RANGE[dtype]
    return {"min": qmin, "max": qmax, "mid": (qmin + qmax + 1) // 2}.get(which, which)


def binary_model(dtype: str, nodes, inputs):
    """nodes: (op, name, (sA, zA, sB, zB, sC, zC), a_name, b_name, out_shape) over the graph inputs
    `inputs` ((name, shape) pairs); outputs NAME_c."""
    onnx_nodes, outputs, inits = [], [], {}
    for op, name, (s_a, z_a, s_b, z_b, s_c, z_c), a, b, shape in nodes:
        for key, value, kind in (("sa", s_a, np.float32), ("za", z_a, dtype), ("sb", s_b, np.float32),
                                 ("zb", z_b, dtype), ("sc", s_c, np.float32), ("zc", z_c, dtype)):
            inits[f"{name}_{key}"] = scalar(value, kind)
        names = [a, f"{name}_sa", f"{name}_za", b] + [f"{name}_{k}" for k in ("sb", "zb", "sc", "zc")]
        onnx_nodes.append(helper.make_node(op, names, [f"{name}_c"], name=name, domain="com.microsoft"))
        outputs.append((f"{name}_c", dtype, list(shape)))
    return make_model(onnx_nodes, [(n, dtype, list(s)) for n, s in inputs], outputs, inits)


def compile_and_check_c(model, tmp: Path, cases):
    """qcc's reference in the tflm scheme on every case, after proving C == reference on them."""
    path = tmp / "model.onnx"
    onnx.save(model, str(path))
    options = Options(rounding="tflm")
    compiled, _ = compile_to_folder(path, tmp / "out", options, golden=cases)
    make(tmp / "out", "check", cflags=STRICT_CFLAGS)  # fails unless C == reference on every value
    return compiled, [reference.run(compiled.graph, case) for case in cases]


# Scale settings: sA/sC and sB/sC (ADD) and sA sB / sC (MUL) from 2^-10 to 2^5, sA != sB mostly.
ADD_SETTINGS = [  # (sA/sC, sB/sC, sC, zA, zB, zC)
    (2.0**-10, 2.0**5, 0.01, "min", "max", "mid"),
    (2.0**5, 2.0**-10, 2.0**-6, "max", "mid", "min"),
    (1.0, 1.0, 0.05, "mid", "mid", "mid"),  # equal input scales
    (0.5, 1.5, 2.0**-7, "min", "max", "mid"),  # ties
    (0.4649, 0.8103, 0.0458, 17, "max", "mid"),  # a residual block's usual ratios
    (3.3, 2.0**-9.3, 0.0071, "max", "min", "max"),
]
MUL_SETTINGS = [  # (sA, sB, sC, zA, zB, zC)
    (2.0**-5, 2.0**-5, 1.0, "min", "max", "mid"),  # M = 2^-10
    (0.0213, 0.0371, 0.0458, "mid", "min", "max"),
    (2.0**-4, 2.0**-4, 2.0**-3, "max", "mid", "mid"),  # M = 2^-5: ties
    (0.3, 0.5, 0.0047, "min", "min", "max"),  # M ~ 31.9
    (1.0, 1.0, 2.0**-5, "mid", "mid", "min"),  # M = 2^5
    (0.011, 0.0093, 0.0333, 100, "max", "min"),
]


def settings_nodes(dtype: str, a: str, b: str, shape):
    nodes = []
    for i, (r_a, r_b, s_c, z_a, z_b, z_c) in enumerate(ADD_SETTINGS):
        s_c = np.float32(s_c)
        params = (np.float32(r_a * s_c), zero_point(dtype, z_a), np.float32(r_b * s_c), zero_point(dtype, z_b), s_c,
                  zero_point(dtype, z_c))
        nodes.append(("QLinearAdd", f"add{i}", params, a, b, shape))
    for i, (s_a, s_b, s_c, z_a, z_b, z_c) in enumerate(MUL_SETTINGS):
        params = (np.float32(s_a), zero_point(dtype, z_a), np.float32(s_b), zero_point(dtype, z_b), np.float32(s_c),
                  zero_point(dtype, z_c))
        nodes.append(("QLinearMul", f"mul{i}", params, a, b, shape))
    return nodes


def grid(dtype: str):
    """Every (a, b) pair of codes, as two 65536-element tensors."""
    qmin, qmax = DTYPE_RANGE[dtype]
    codes = np.arange(qmin, qmax + 1)
    return np.repeat(codes, 256).astype(dtype), np.tile(codes, 256).astype(dtype)


# --- tests ------------------------------------------------------------------------------------


def test_exhaustive_code_grids():
    """Both 8-bit types, every pair of codes, every scale setting: oracle == reference == C; the
    ort scheme on the same model still equals ONNX Runtime."""
    for dtype in ("uint8", "int8"):
        nodes = settings_nodes(dtype, "a", "b", [65536])
        model = binary_model(dtype, nodes, [("a", [65536]), ("b", [65536])])
        a, b = grid(dtype)
        with tempfile.TemporaryDirectory() as tmp:
            compiled, (got,) = compile_and_check_c(model, Path(tmp), [[a, b]])
            assert [n.op for n in compiled.graph.nodes] == [n[0] for n in nodes]
            for (op, name, params, *_), value in zip(nodes, got):
                expected = oracle(op, params, dtype, a, b)
                assert np.array_equal(value, expected), (dtype, name, int((value != expected).sum()))
            # the ort scheme keeps ORT's float32 arithmetic, and the two schemes do differ
            path = Path(tmp) / "model.onnx"
            ort_graph = compile_model(path, Options()).graph
            ort_got = reference.run(ort_graph, [a, b])
            ort_expected = ort_reference.run_on_codes(ort_reference.session(path), ort_graph, [a, b])
            for name, x, y, t in zip(ort_graph.outputs, ort_got, ort_expected, got):
                assert np.array_equal(x, y), name
            assert any(not np.array_equal(x, t) for x, t in zip(ort_got, got))


BROADCASTS = [  # (A shape, B shape)
    ((2, 3, 4, 5), (1, 3, 1, 1)),
    ((1, 3, 1, 1), (2, 3, 4, 5)),
    ((), (2, 3, 4)),
    ((2, 3, 4), ()),
    ((4, 1, 6), (1, 5, 1)),
    ((3, 1), (1, 1)),
    ((2, 1, 3, 1, 2), (1, 4, 1, 5, 1)),
]


def test_broadcast_shapes():
    """Broadcast shapes (either side broadcast, scalars, both sides broadcast), both types, two
    scale settings per op, random and extreme codes; the last pair of inputs is an initializer."""
    rng = np.random.default_rng(7)
    for dtype in ("int8", "uint8"):
        qmin, qmax = DTYPE_RANGE[dtype]
        inputs, nodes = [], []
        for k, (shape_a, shape_b) in enumerate(BROADCASTS):
            inputs += [(f"a{k}", shape_a), (f"b{k}", shape_b)]
            out = np.broadcast_shapes(shape_a, shape_b)
            for op, name, params, *_ in [*settings_nodes(dtype, "", "", out)[0::4], *settings_nodes(dtype, "", "", out)[7::4]]:
                nodes.append((op, f"{name}_{k}", params, f"a{k}", f"b{k}", out))
        model = binary_model(dtype, nodes, inputs)
        const_b = rng.integers(qmin, qmax + 1, (3, 1, 1)).astype(dtype)  # B an initializer
        model.graph.initializer.append(onnx.numpy_helper.from_array(const_b, "cb"))
        extra = [("QLinearAdd", "add_const", settings_nodes(dtype, "", "", ())[4][2], "a0", "cb", (2, 3, 4, 5)),
                 ("QLinearMul", "mul_const", settings_nodes(dtype, "", "", ())[7][2], "cb", "a0", (2, 3, 4, 5))]
        for op, name, params, a_name, b_name, out in extra:
            tail = binary_model(dtype, [(op, name, params, a_name, b_name, out)], [])
            model.graph.node.extend(tail.graph.node)
            model.graph.initializer.extend(tail.graph.initializer)
            model.graph.output.extend(tail.graph.output)
        nodes += extra
        cases = [[rng.integers(qmin, qmax + 1, s).astype(dtype) for _, s in inputs] for _ in range(3)]
        cases.append([np.full(s, qmin if i % 2 else qmax, dtype) for i, (_, s) in enumerate(inputs)])
        with tempfile.TemporaryDirectory() as tmp:
            _, results = compile_and_check_c(model, Path(tmp), cases)
        values = {"cb": const_b}
        for case, got in zip(cases, results):
            values.update({n: v for (n, _), v in zip(inputs, case)})
            for (op, name, params, a_name, b_name, out), value in zip(nodes, got):
                expected = oracle(op, params, dtype, values[a_name], values[b_name])
                assert value.shape == tuple(out) and np.array_equal(value, expected), (dtype, name)


def test_relu_folds_into_the_clamp():
    """Add -> Relu and Mul -> Relu under tflm: the Relu becomes the kernels' lower clamp."""
    dtype = "int8"
    nodes = settings_nodes(dtype, "a", "b", [65536])
    nodes = [nodes[4], nodes[7]]
    model = binary_model(dtype, nodes, [("a", [65536]), ("b", [65536])])
    model.opset_import[0].version = 14  # ONNX (and ORT) run Relu on int8 from opset 14
    relus = [helper.make_node("Relu", [f"{n[1]}_c"], [f"{n[1]}_y"], name=f"{n[1]}_relu") for n in nodes]
    model.graph.node.extend(relus)
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(f"{n[1]}_y", onnx.TensorProto.INT8, [65536]) for n in nodes])
    a, b = grid(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        compiled, (got,) = compile_and_check_c(model, Path(tmp), [[a, b]])
    assert [n.op for n in compiled.graph.nodes] == ["QLinearAdd", "QLinearMul"]
    for (op, name, params, *_), value in zip(nodes, got):
        expected = oracle(op, params, dtype, a, b)
        assert expected.min() < 0  # the Relu has work to do
        assert np.array_equal(value, np.maximum(expected, 0)), name  # a QOperator Relu acts on the codes


def test_add_output_multipliers_at_and_above_a_quarter():
    """The ADD's output multiplier 2 max(sA, sB) / (2^20 sC) is below 2^-10 at usual scales, where the C
    takes one SMLAL and one ASR; at 1/4 and above (an output scale 2^17 times finer than the inputs') it
    takes the general path. Every pair of codes, with and without a zero point inside the clamp."""
    dtype = "int8"
    nodes = []
    for i, (ratio, z_c) in enumerate([(2.0**17, "mid"), (2.0**18 * 1.5, "min"), (2.0**18 * 1.9, "max")]):
        s_c = np.float32(2.0**-24)
        params = (np.float32(ratio * s_c), zero_point(dtype, "mid"), np.float32(0.7 * ratio * s_c),
                  zero_point(dtype, "min"), s_c, zero_point(dtype, z_c))
        nodes.append(("QLinearAdd", f"add_fine{i}", params, "a", "b", [65536]))
    model = binary_model(dtype, nodes, [("a", [65536]), ("b", [65536])])
    a, b = grid(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        compiled, (got,) = compile_and_check_c(model, Path(tmp), [[a, b]])
    shifts = [node.params["tflm"]["c_shift"] for node in compiled.graph.nodes]
    assert shifts == sorted(shifts) and max(shifts) >= -1  # the general path: M >= 1/4
    for (op, name, params, *_), value in zip(nodes, got):
        assert np.array_equal(value, oracle(op, params, dtype, a, b)), name
