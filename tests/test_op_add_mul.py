"""com.microsoft QLinearAdd and QLinearMul: C == reference == ONNX Runtime on exhaustive code grids,
every broadcast role, crafted inputs that tell ORT's formula from its near misses, and drawn
shapes; then the integer emulation of the float32 arithmetic against exact oracles."""

import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import REPO, STRICT_CFLAGS, check_exact, make_model, scalar
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE
from qcc.numerics import ort_add_mul as ort
from qcc.pipeline import compile_model
from qcc.runtimes import ort as ort_reference

DTYPES = ["uint8", "int8"]


def zero_point(dtype: str, which) -> int:
    qmin, qmax = DTYPE_RANGE[dtype]
    return {"min": qmin, "max": qmax, "mid": (qmin + qmax + 1) // 2}.get(which, which)


def binary_model(dtype: str, nodes, opset: int = 13, tail=None, shared=()):
    """nodes: (op, name, (sA, zA, sB, zB, sC, zC), a, b), a and b each a shape (a graph input named
    NAME_a / NAME_b), an array (an initializer) or the name of one of the `shared` graph inputs
    ((name, shape) pairs, declared first). Outputs NAME_c. `tail` = (nodes, outputs) to append."""
    onnx_nodes, outputs, inits = [], [], {}
    inputs = [(name, dtype, list(shape)) for name, shape in shared]
    for op, name, (s_a, z_a, s_b, z_b, s_c, z_c), a, b in nodes:
        shapes, operands = [], []
        for side, value in (("a", a), ("b", b)):
            operands.append(f"{name}_{side}")
            if isinstance(value, str):
                operands[-1] = value
                shapes.append(tuple(dict(shared)[value]))
            elif isinstance(value, np.ndarray):
                inits[f"{name}_{side}"] = value.astype(dtype)
                shapes.append(value.shape)
            else:
                inputs.append((f"{name}_{side}", dtype, list(value)))
                shapes.append(tuple(value))
        for key, value, kind in (("sa", s_a, np.float32), ("za", z_a, dtype), ("sb", s_b, np.float32),
                                 ("zb", z_b, dtype), ("sc", s_c, np.float32), ("zc", z_c, dtype)):
            inits[f"{name}_{key}"] = scalar(value, kind)
        names = [operands[0], f"{name}_sa", f"{name}_za", operands[1]] + [f"{name}_{k}" for k in ("sb", "zb", "sc", "zc")]
        onnx_nodes.append(helper.make_node(op, names, [f"{name}_c"], name=name, domain="com.microsoft"))
        outputs.append((f"{name}_c", dtype, list(np.broadcast_shapes(*shapes))))
    if tail:
        onnx_nodes += tail[0]
        outputs = tail[1]
    return make_model(onnx_nodes, inputs, outputs, inits, opset=opset)


def grid(dtype: str):
    """Every (a, b) pair of codes, as two 65536-element tensors."""
    qmin, qmax = DTYPE_RANGE[dtype]
    codes = np.arange(qmin, qmax + 1)
    return np.repeat(codes, 256).astype(dtype), np.tile(codes, 256).astype(dtype)


def exact_float32(value) -> np.float32:
    out = np.float32(value)
    assert float(out) == value, value
    return out


# Scale settings for the grids: ratios sA/sC and sB/sC from 2^-20 to 2^10 (exact powers of two,
# whose sums land on ties, and awkward values), zero points at qmin, qmax and the middle.
ADD_SETTINGS = [  # (rA, rB, sC, zA, zB, zC)
    (2.0**-20, 2.0**10, 2.0**-6, "min", "max", "mid"),
    (2.0**10, 2.0**-20, 2.0**-6, "max", "mid", "min"),
    (2.0**-9.3, 0.77, 0.013, "mid", "min", "max"),  # rA < 2^-8: the kernel's finer grid
    (0.5, 1.5, 2.0**-7, "min", "max", "mid"),  # half-integers everywhere: rne's ties
    (0.25, 0.75, 2.0**-9, "mid", "mid", "min"),
    (0.4649, 0.8103, 0.0458, 17, "max", "mid"),  # a residual block's usual ratios
    (3.3, 2.0**-14, 0.0071, "max", "min", "max"),
]
MUL_SETTINGS = [  # (sA, sB, sC, zA, zB, zC); r = sA * sB / sC
    (2.0**-10, 2.0**-10, 1.0, "min", "max", "mid"),  # r = 2^-20
    (0.0213, 0.0371, 0.0458, "mid", "min", "max"),
    (2.0**-4, 2.0**-4, 1.0, "max", "mid", "mid"),  # r = 2^-8: ties
    (1.0, 1.0, 2.0**-17.5, "mid", "mid", "min"),  # |p| r reaches 2^31: int32 overflow gives qmin
    (0.3, 0.5, 0.00398, "min", "min", "max"),  # r ~ 37.7
    (0.011, 0.0093, 0.0333, 100, "max", "min"),
    (1.0, 1.0, 2.0**-29.3, "mid", "max", "mid"),  # f32(p r) beyond the 2^-32 grid: saturation vs overflow
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_exhaustive_code_grids(tmp_path, dtype):
    """One model, A and B of 65536 elements holding every pair of codes, one QLinearAdd and one
    QLinearMul per scale setting."""
    nodes = []
    for i, (r_a, r_b, s_c, z_a, z_b, z_c) in enumerate(ADD_SETTINGS):
        s_c = np.float32(s_c)
        params = (np.float32(r_a * s_c), zero_point(dtype, z_a), np.float32(r_b * s_c), zero_point(dtype, z_b), s_c,
                  zero_point(dtype, z_c))
        nodes.append(("QLinearAdd", f"add{i}", params, "a", "b"))
    for i, (s_a, s_b, s_c, z_a, z_b, z_c) in enumerate(MUL_SETTINGS):
        params = (s_a, zero_point(dtype, z_a), s_b, zero_point(dtype, z_b), s_c, zero_point(dtype, z_c))
        nodes.append(("QLinearMul", f"mul{i}", params, "a", "b"))
    a, b = grid(dtype)
    model = binary_model(dtype, nodes, shared=[("a", [65536]), ("b", [65536])])
    check_exact(model, tmp_path, n_random=0, extra_cases=[[a, b]])
    # the settings reach what they are there for
    qmin, qmax = DTYPE_RANGE[dtype]
    for _, name, (s_a, z_a, s_b, z_b, s_c, z_c), _, _ in nodes:
        if name == "add3":
            r_a, r_b = ort.add_ratios(s_a, s_b, s_c)
            v = a.astype(np.float64) * float(r_a) + b.astype(np.float64) * float(r_b)
            assert np.any(v % 1 == 0.5)
        if name == "mul3":
            r = ort.mul_ratio(s_a, s_b, s_c)
            v = (a.astype(np.int64) - z_a) * (b.astype(np.int64) - z_b) * float(r) + z_c
            assert np.any(v >= 2**31) and np.any((v > qmax) & (v < 2**31))


def role_sensitive(dtype: str, rng) -> tuple[tuple, int, int]:
    """Scales and a pair of codes (a, b) for which QLinearAdd's result depends on which operand
    ORT puts inside the inner fma."""
    qmin, qmax = DTYPE_RANGE[dtype]
    x, y = grid(dtype)
    while True:
        s_a, s_b, s_c = np.exp(rng.uniform(-6, 1, 3)).astype(np.float32)
        z_a, z_b, z_c = (int(v) for v in rng.integers(qmin, qmax + 1, 3))
        r_a, r_b = ort.add_ratios(s_a, s_b, s_c)
        keep = ort.qlinear_add(x, y, r_a, r_b, ort.add_fixed_part(r_a, z_a, r_b, z_b, z_c), qmin, qmax)
        swap = ort.qlinear_add(y, x, r_b, r_a, ort.add_fixed_part(r_b, z_b, r_a, z_a, z_c), qmin, qmax)
        differ = np.flatnonzero(keep != swap)
        if differ.size:
            return (s_a, z_a, s_b, z_b, s_c, z_c), int(x[differ[0]]), int(y[differ[0]])


# (A shape, B shape, ORT swaps the roles): B broadcast keeps A as X; A broadcast along the innermost
# output dimension that is not 1, or A a scalar, makes B the X operand; the corners follow ORT's
# Broadcaster exactly ((3,1) with a scalar B swaps, with (1,1) does not).
BROADCAST_CASES = [
    ((2, 3, 4, 5), (2, 3, 4, 5), False),
    ((2, 3, 4, 5), (1, 3, 1, 1), False),
    ((1, 3, 1, 1), (2, 3, 4, 5), True),
    ((), (2, 3, 4), True),
    ((2, 3, 4), (), False),
    ((1,), (3, 4), True),
    ((3, 4), (1,), False),
    ((4, 1), (1, 5), True),
    ((1, 5), (4, 1), False),
    ((3, 1), (), True),
    ((3, 1), (1,), True),
    ((3, 1), (1, 1), False),
    ((1, 1), (3, 1), True),
    ((5,), (2, 3, 4, 5), False),
    ((2, 1, 4, 1, 6), (1, 3, 4, 5, 1), False),
    ((1, 3, 1, 5, 1), (2, 1, 4, 1, 6), True),
    ((), (), True),
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_shapes_and_operand_roles(tmp_path, dtype):
    """Every shape pair in one model, each with scales and codes for which the two role
    assignments give different results; plus a constant A or B (per-channel, full, scalar)."""
    rng = np.random.default_rng(1 if dtype == "uint8" else 2)
    nodes, case = [], []
    for i, (shape_a, shape_b, swaps) in enumerate(BROADCAST_CASES):
        assert ort.add_swaps_operands(shape_a, shape_b) == swaps
        params, a, b = role_sensitive(dtype, rng)
        nodes.append(("QLinearAdd", f"add{i}", params, shape_a, shape_b))
        case += [np.full(shape_a, a, dtype), np.full(shape_b, b, dtype)]
    qmin, qmax = DTYPE_RANGE[dtype]
    codes = lambda shape: np.asarray(rng.integers(qmin, qmax + 1, shape)).astype(dtype)  # noqa: E731
    for op in ("QLinearAdd", "QLinearMul"):
        for j, (a, b) in enumerate([((1, 8, 3, 3), codes((1, 8, 1, 1))), (codes((1, 8, 1, 1)), (1, 8, 3, 3)),
                                    ((2, 4, 5), codes((2, 4, 5))), (codes(()), (4, 6)), (codes((4, 1)), (1, 6))]):
            params, _, _ = role_sensitive(dtype, rng)
            nodes.append((op, f"{op[7:].lower()}_const{j}", params, a, b))
            case += [codes(v) for v in (a, b) if not isinstance(v, np.ndarray)]
    check_exact(binary_model(dtype, nodes), tmp_path, n_random=3, extra_cases=[case])


def search(dtype: str, rng, draw, differs, tries: int = 200000):
    """Draw parameters until `differs(params, x, y)` finds code pairs (on the full grid) where a
    near-miss formula gives another code than ORT's formula; returns (params, a codes, b codes)."""
    x, y = grid(dtype)
    for _ in range(tries):
        params = draw()
        where = np.flatnonzero(differs(params, x, y))
        if where.size:
            return params, x[where[:8]], y[where[:8]]
    raise AssertionError("no distinguishing parameters found")


def draw_params(dtype: str, rng, spread=(-6, 1)):
    qmin, qmax = DTYPE_RANGE[dtype]

    def draw():
        s_a, s_b, s_c = np.exp(rng.uniform(*spread, 3)).astype(np.float32)
        return (s_a, *(int(v) for v in rng.integers(qmin, qmax + 1, 1)), s_b,
                *(int(v) for v in rng.integers(qmin, qmax + 1, 1)), s_c, *(int(v) for v in rng.integers(qmin, qmax + 1, 1)))
    return draw


def near_misses(dtype: str):
    """Formulas one could have believed ORT computes, each with a check_exact node where it fails."""
    qmin, qmax = DTYPE_RANGE[dtype]
    rng = np.random.default_rng(11 if dtype == "uint8" else 12)
    f32 = lambda v: np.float32(float(ort.f32(v)))  # noqa: E731
    ex = ort.as_exact

    def add(params, x, y, fixed=None, ratios=None, inner=None):
        s_a, z_a, s_b, z_b, s_c, z_c = params
        r_a, r_b = ratios(s_a, s_b, s_c) if ratios else ort.add_ratios(s_a, s_b, s_c)
        f = fixed(r_a, z_a, r_b, z_b, z_c) if fixed else ort.add_fixed_part(r_a, z_a, r_b, z_b, z_c)
        t = inner(y, r_b, f) if inner else ort.fma_f32(y, r_b, np.full(y.shape, f, np.float32))
        return ort.to_codes(ort.fma_f32(x, r_a, t), qmin, qmax)

    def mul(params, x, y, ratio=None, fused=False):
        s_a, z_a, s_b, z_b, s_c, z_c = params
        r = ratio(s_a, s_b, s_c) if ratio else ort.mul_ratio(s_a, s_b, s_c)
        p = (x.astype(np.int64) - z_a) * (y.astype(np.int64) - z_b)
        v = ort.fma_f32(p, r, np.full(p.shape, z_c, np.float32)) if fused else p.astype(np.float32) * r + np.float32(z_c)
        return ort.to_codes(v, qmin, qmax)

    other_fixed = {
        "fma(rY, zY, f32(rX zX))":
            lambda r_a, z_a, r_b, z_b, z_c: f32(z_c - ort.fma32(ex(r_b), z_b, ort.f32(ex(r_a) * z_a))),
        "no fma": lambda r_a, z_a, r_b, z_b, z_c: f32(z_c - ort.f32(ort.f32(ex(r_a) * z_a) + ort.f32(ex(r_b) * z_b))),
    }
    cases = []
    for label, fixed in other_fixed.items():
        cases.append(("QLinearAdd", f"F with {label}", search(dtype, rng, draw_params(dtype, rng),
                      lambda p, x, y, fixed=fixed: add(p, x, y) != add(p, x, y, fixed=fixed)), ((8,), (8,))))
    # B a scalar: ORT adds y * rY into F once, contracted to fma(y, rY, F) like the general path
    unfused = lambda y, r_b, f: (np.float32(f) + (y.astype(np.float32) * np.float32(r_b))).astype(np.float32)  # noqa: E731
    cases.append(("QLinearAdd", "scalar B: f32(F + f32(y rY))", search(dtype, rng, draw_params(dtype, rng),
                  lambda p, x, y: add(p, x, y) != add(p, x, y, inner=unfused)), ((8,), ())))
    reciprocal = lambda s_a, s_b, s_c: (s_a * (np.float32(1) / s_c), s_b * (np.float32(1) / s_c))  # noqa: E731
    cases.append(("QLinearAdd", "rX = sX * f32(1/sC)", search(dtype, rng, draw_params(dtype, rng),
                  lambda p, x, y: add(p, x, y) != add(p, x, y, ratios=reciprocal)), ((8,), (8,))))
    def mul_draw():  # r = sA sB / sC from 1/500 to 1/20: products land inside the output range
        s_a, z_a, s_b, z_b, _, z_c = draw_params(dtype, rng)()
        return s_a, z_a, s_b, z_b, np.float32(s_a * s_b * np.float32(rng.uniform(20, 500))), z_c
    cases.append(("QLinearMul", "fma(p, r, zC)", search(dtype, rng, mul_draw,
                  lambda p, x, y: mul(p, x, y) != mul(p, x, y, fused=True)), ((8,), (8,))))
    other_ratio = lambda s_a, s_b, s_c: s_a * (s_b / s_c)  # noqa: E731
    cases.append(("QLinearMul", "r = sA * f32(sB / sC)", search(dtype, rng, draw_params(dtype, rng),
                  lambda p, x, y: mul(p, x, y) != mul(p, x, y, ratio=other_ratio)), ((8,), (8,))))
    # p * r exactly halfway between h = n + 1/2 (even significand) and the float above it: f32()
    # ties to h and rne() to the even n; rounding the product's tie away from zero would give n + 1.
    for n in range(40, 120, 2):
        h = Fraction(2 * n + 1, 2)
        e = h.numerator.bit_length() - h.denominator.bit_length()  # 2^e <= h < 2^(e+1)
        tie = h + Fraction(2) ** (e - 24)
        d = next((d for d in range(3, 127, 2) if (tie * 2 ** (24 - e)).numerator % d == 0), None)
        if d is not None:
            break
    r = tie / d
    above = Fraction(float(np.nextafter(np.float32(float(h)), np.float32(np.inf))))
    assert ort.f32(r) == r and d * r - h == above - (d * r)  # r is a float32; d * r is a tie between h and above
    assert ort.f32(d * r) == h and round(h) == n  # ties to even: h, then n (above would give n + 1)
    cases.append(("QLinearMul", "f32(p r) ties away from zero", ((np.float32(float(r)), 0, 1.0, 0, 1.0, 0),
                  np.array([d]), np.array([1])), ((8,), (8,))))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_crafted_inputs_tell_ort_formula_from_near_misses(tmp_path, dtype):
    nodes, case = [], []
    for i, (op, _, (params, a, b), (shape_a, shape_b)) in enumerate(near_misses(dtype)):
        nodes.append((op, f"n{i}", params, shape_a, shape_b))
        if shape_b == ():  # a scalar B: the first distinguishing pair
            a, b = np.full(shape_a, a[0]), np.asarray(b[0])
        case += [np.resize(a, shape_a).astype(dtype), np.resize(b, shape_b).astype(dtype)]
    check_exact(binary_model(dtype, nodes), tmp_path, n_random=1, extra_cases=[case])


@pytest.mark.parametrize("dtype, tail_op", [("int8", "Relu"), ("uint8", "Clip")])
def test_relu_and_clip_fold_into_the_output_clamp(tmp_path, dtype, tail_op):
    """Add -> Relu and Mul -> Clip fold into the kernels' clamp; the Mul overflows int32 on some
    elements, whose qmin the Clip then raises."""
    qmin, qmax = DTYPE_RANGE[dtype]
    a = np.arange(qmin, qmax + 1).astype(dtype)
    nodes = [("QLinearAdd", "add", (0.02, zero_point(dtype, "mid"), 0.03, 5, 0.04, 10), (256,), (256,)),
             ("QLinearMul", "mul", (1.0, 0, 1.0, 0, 2.0**-16.5, 10), (256,), (256,))]
    inits_lo = {"int8": -20, "uint8": 100}[dtype]
    tail_nodes = [helper.make_node("Relu" if tail_op == "Relu" else "Clip",
                                   [f"{n}_c"] + ([] if tail_op == "Relu" else ["lo"]), [f"{n}_y"], name=f"{n}_act")
                  for n in ("add", "mul")]
    model = binary_model(dtype, nodes, opset=14 if tail_op == "Relu" else 13,
                         tail=(tail_nodes, [(f"{n}_y", dtype, [256]) for n in ("add", "mul")]))
    if tail_op == "Clip":
        model.graph.initializer.append(helper.make_tensor("lo", {"uint8": 2, "int8": 3}[dtype], [], [inits_lo]))
    compiled = check_exact(model, tmp_path, n_random=3, extra_cases=[[a, a[::-1].copy(), a, a[::-1].copy()]])
    assert [n.op for n in compiled.graph.nodes] == ["QLinearAdd", "QLinearMul"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_shapes_and_parameters(data):
    draw = data.draw
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(["QLinearAdd", "QLinearMul"]))
    qmin, qmax = DTYPE_RANGE[dtype]
    rank = draw(st.integers(0, 5))
    out = [draw(st.integers(1, 5)) for _ in range(rank)]
    shapes = []
    for _ in range(2):
        keep = draw(st.integers(0, rank))  # a suffix of the output's dims, some set to 1
        shapes.append(tuple(d if draw(st.booleans()) else 1 for d in out[rank - keep:]))
    log_ratio = st.floats(-20, 10) if op == "QLinearAdd" else st.floats(-12, 4)
    s_c = np.float32(np.exp2(draw(st.floats(-12, 2))))
    s_a = np.float32(s_c * np.exp2(draw(log_ratio)))
    s_b = np.float32(s_c * np.exp2(draw(log_ratio))) if op == "QLinearAdd" else np.float32(np.exp2(draw(st.floats(-8, 2))))

    def zp():
        special = draw(st.sampled_from([qmin, qmax, (qmin + qmax + 1) // 2, None]))
        return draw(st.integers(qmin, qmax)) if special is None else special

    const = draw(st.sampled_from([None, 0, 1]))  # A or B a constant initializer
    operands = [np.asarray(np.random.default_rng(7).integers(qmin, qmax + 1, s)).astype(dtype) if const == i else s
                for i, s in enumerate(shapes)]
    model = binary_model(dtype, [(op, "n", (s_a, zp(), s_b, zp(), s_c, zp()), *operands)])
    with tempfile.TemporaryDirectory() as tmp:
        check_exact(model, Path(tmp), n_random=3)


def test_int32_overflow_gives_qmin_in_ort_and_qcc_refuses_such_add(tmp_path):
    """With sA/sC = 2^24 the sum passes 2^31: ORT's conversion gives INT32_MIN, so qmin (not qmax).
    qcc's exact 64-bit form stops short of that (|v| < 2^30) and refuses the node by name."""
    dtype = "uint8"
    a, b = grid(dtype)
    params = (1.0, 0, 0.01, 3, 2.0**-24, 7)
    model = binary_model(dtype, [("QLinearAdd", "huge", params, [65536], [65536])])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    got = ort_reference.session(path).run(None, {"huge_a": a, "huge_b": b})[0]
    r_a, r_b = ort.add_ratios(1.0, 0.01, 2.0**-24)
    v = ort.fma_f32(a, r_a, ort.fma_f32(b, r_b, np.full(b.shape, ort.add_fixed_part(r_a, 0, r_b, 3, 7), np.float32)))
    assert np.count_nonzero(v >= 2**31) > 10000
    assert np.array_equal(got, np.where(v >= 2**31, 0, np.clip(np.rint(v), 0, 255)))
    with pytest.raises(QccError, match=r"node 'huge' \(QLinearAdd\): scale ratios .* too far apart or too large"):
        compile_model(path)


@pytest.mark.parametrize("problem", ["types", "shapes"])
def test_refusals(tmp_path, problem):
    inits = {k: scalar(0.1, np.float32) for k in ("sa", "sb", "sc")}
    inits.update({k: scalar(0, "uint8") for k in ("za", "zb", "zc")})
    b_type, b_shape = ("int8", [4]) if problem == "types" else ("uint8", [3])
    if problem == "types":
        inits["zb"] = scalar(0, "int8")
    node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], name="add",
                            domain="com.microsoft")
    model = make_model([node], [("a", "uint8", [4]), ("b", b_type, b_shape)], [("c", "uint8", [4])], inits)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    message = "A is uint8 but B is int8" if problem == "types" else r"shapes \(4,\) and \(3,\) do not broadcast"
    with pytest.raises(QccError, match=r"node 'add' \(QLinearAdd\): " + message):
        compile_model(path)


# --- the integer emulation (twin of the C) against exact oracles ---------------------------------


def test_fma_f32_against_exact_rationals():
    """The reference's fma (float64 TwoSum, rounded to odd) against Fraction arithmetic, on random
    operands and on sums built to sit on or next to float32 midpoints."""
    rng = np.random.default_rng(3)
    n = 60000
    a = rng.integers(-128, 256, n)
    b = np.exp2(rng.uniform(-22, 12, n)).astype(np.float32)
    c = (rng.choice([-1, 1], n) * np.exp2(rng.uniform(-40, 20, n))).astype(np.float32)
    # a third: c = -a*b rounded, plus a small multiple of a power of two (cancellation, midpoints)
    k = n // 3
    nudge = rng.integers(-4, 5, k) * np.exp2(rng.integers(-50, -10, k))
    c[:k] = (-(a[:k] * b[:k].astype(np.float64)) + nudge).astype(np.float32)
    got = ort.fma_f32(a, b, c)
    for i in range(n):
        want = ort.f32(Fraction(int(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i])))
        assert Fraction(float(got[i])) == want, (a[i], b[i], c[i])


def test_rounding_decision_against_exact_rationals():
    """decide() on grid values (floor at 2^-32, jammed) against rne(f32(E)) computed exactly, for
    E at, just off and within half an ulp of every half-integer of the output range, and beyond."""
    rng = np.random.default_rng(4)
    values = []
    for n in range(-132, 262):
        h = Fraction(2 * n + 1, 2)
        k = (abs(h).numerator.bit_length() - abs(h).denominator.bit_length())
        k -= Fraction(2) ** k > abs(h)
        half_ulp = Fraction(2) ** (k - 24)
        for d in (0, 1, -1):
            for j in (0, 1, -1, 2, -2):
                values.append(h + d * half_ulp + j * Fraction(1, 2**40))
        offsets = zip(rng.integers(-2**20, 2**20, 40), rng.integers(20, 60, 40))
        values += [h + Fraction(int(v), 2**int(e)) for v, e in offsets]
    values += [Fraction(int(v), 2**20) for v in rng.integers(-2**40, 2**40, 20000)]
    grid_values = []
    for v in values:
        scaled = v * 2**32
        floor = scaled.numerator // scaled.denominator
        grid_values.append(((floor | (floor != scaled)) + ort.BIAS) & ort.MASK64)
    for dtype in DTYPES:
        qmin, qmax = DTYPE_RANGE[dtype]
        for lo, hi in ((qmin, qmax), (qmin + 30, qmax - 50)):
            got = ort.decide(np.array(grid_values, np.uint64), lo + ort.CODE_BIAS, hi + ort.CODE_BIAS)
            got = got.view(np.int8 if dtype == "int8" else np.uint8).astype(np.int64)
            want = [min(max(round(ort.f32(v)), lo), hi) for v in values]  # Fraction rounds half to even
            assert got.tolist() == want


def boundary_values(grid_bits: int) -> list[Fraction]:
    """Exact values at, inside and just outside (by less than a 2^-32 step when the grid is finer)
    each half-integer's f32 rounding interval [h - ulp/2, h + ulp/2], over the output range."""
    values, step = [], Fraction(1, 2**grid_bits)
    for n in range(-131, 258):
        h = Fraction(2 * n + 1, 2)
        k = abs(h).numerator.bit_length() - abs(h).denominator.bit_length()
        k -= Fraction(2) ** k > abs(h)
        for edge in (h - Fraction(2) ** (k - 24), h + Fraction(2) ** (k - 24), h):
            values += [edge + j * step for j in (-2, -1, 0, 1, 2)]
    return values


def test_c_kernel_rounding_on_exact_boundaries(tmp_path):
    """The C kernel itself (not its Python twin) on grid values at the edges of the rounding
    intervals, on the 2^-32 grid and on finer grids (within the 64-bit envelope: |E| < 2^(30-s))
    that it narrows with a sticky bit: each call
    puts up to 256 crafted E in the table and reads them back through y (x * rX = 0)."""
    calls, expected = [], []
    for dtype in DTYPES:
        qmin, qmax = DTYPE_RANGE[dtype]
        for fine_shift, (lo, hi) in ((0, (qmin, qmax)), (3, (qmin, qmax)), (12, (qmin + 9, qmax - 9)), (20, (qmin, qmax))):
            values = boundary_values(32 + fine_shift)
            for start in range(0, len(values), 256):
                chunk = values[start:start + 256]
                table = [(ort.on_grid(v, 32 + fine_shift) + ort.BIAS) & ort.MASK64 for v in chunk]
                table += [ort.BIAS] * (256 - len(table))
                calls.append((table, fine_shift, lo + ort.CODE_BIAS, hi + ort.CODE_BIAS))
                codes = [min(max(round(ort.f32(v)), lo), hi) for v in chunk] + [min(max(0, lo), hi)] * (256 - len(chunk))
                expected.append([c & 0xFF for c in codes])
    words = ",\n".join("{" + ", ".join(f"{t & 0xFFFFFFFF}u, {t >> 32}u" for t in table) + "}" for table, _, _, _ in calls)
    program = f"""#include <stdio.h>
#include "qcc_add_mul.h"
static const uint32_t tables[{len(calls)}][512] = {{{words}}};
static const int32_t shifts[] = {{{", ".join(str(c[1]) for c in calls)}}};
static const uint32_t los[] = {{{", ".join(f"{c[2]}u" for c in calls)}}};
static const uint32_t his[] = {{{", ".join(f"{c[3]}u" for c in calls)}}};
int main(void)
{{
    uint8_t x[256] = {{0}}, y[256], out[256];
    int c, i;
    for (i = 0; i < 256; ++i) {{
        y[i] = (uint8_t)i;
    }}
    for (c = 0; c < {len(calls)}; ++c) {{
        const qcc_qlinear_add_params p = {{{{1, {{256}}, {{1}}, {{1}}}}, tables[c], 0u, 0u, shifts[c], los[c], his[c]}};
        qcc_qlinear_add_8bit(&p, x, y, out);
        for (i = 0; i < 256; ++i) {{
            printf("%u\\n", (unsigned)out[i]);
        }}
    }}
    return 0;
}}
"""
    (tmp_path / "main.c").write_text(program)
    runtime = REPO / "runtime_c"
    subprocess.run(["gcc", *STRICT_CFLAGS.split(), "-I", str(runtime), str(tmp_path / "main.c"),
                    str(runtime / "qcc_add_mul.c"), "-o", str(tmp_path / "main")], check=True)
    got = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in got] == [v for row in expected for v in row]


def emulation_settings(count: int):
    rng = np.random.default_rng(5)
    for i in range(count):
        dtype = DTYPES[i % 2]
        qmin, qmax = DTYPE_RANGE[dtype]
        s_c = np.float32(np.exp2(rng.uniform(-10, 0)))
        log_a, log_b = rng.uniform(-20, 10, 2)
        if i % 4 == 1:  # exact powers of two: ties
            log_a, log_b = np.round([log_a, log_b])
        zps = [int(rng.choice([qmin, qmax, (qmin + qmax + 1) // 2, rng.integers(qmin, qmax + 1)])) for _ in range(3)]
        lo, hi = (qmin, qmax) if i % 3 else (max(qmin, zps[2]), qmax - 7)
        yield dtype, s_c, np.float32(s_c * np.exp2(log_a)), np.float32(s_c * np.exp2(log_b)), zps, lo, hi


def test_add_emulation_matches_float32_arithmetic():
    """add_emulated (what the C computes) equals ORT's float32 arithmetic on all 65536 code pairs
    for 48 settings with ratios from 2^-20 to 2^10 (3.1 million values), through a full table
    and through a table of a constant Y's codes."""
    total = fine = near = 0
    for dtype, s_c, s_x, s_y, (z_x, z_y, z_c), lo, hi in emulation_settings(48):
        qmin, qmax = DTYPE_RANGE[dtype]
        r_x, r_y = ort.add_ratios(s_x, s_y, s_c)
        fixed = ort.add_fixed_part(r_x, z_x, r_y, z_y, z_c)
        x, y = grid(dtype)
        want = np.clip(ort.qlinear_add(x, y, r_x, r_y, fixed, qmin, qmax), lo, hi)
        codes = np.arange(256)
        by_byte = np.where(codes >= 128, codes - 256, codes) if dtype == "int8" else codes  # the code of each byte
        plan = ort.plan_add(r_x, r_y, fixed, dtype, by_byte, lo, hi)
        got = ort.add_emulated(plan, x.view(np.uint8), y.view(np.uint8))
        assert np.array_equal(got.view(x.dtype), want.astype(x.dtype))
        used = np.unique(y[::97])  # a constant Y holding some codes: the table shrinks to them
        compact = ort.plan_add(r_x, r_y, fixed, dtype, used.astype(np.int64), lo, hi)
        rows = np.searchsorted(used, y[np.isin(y, used)])
        got = ort.add_emulated(compact, x[np.isin(y, used)].view(np.uint8), rows)
        assert np.array_equal(got.view(x.dtype), want[np.isin(y, used)].astype(x.dtype))
        total += want.size
        fine += plan.fine_shift > 0
        xu = x.view(np.uint8).astype(np.uint64) ^ np.uint64(plan.x_flip)
        e = plan.table[y.view(np.uint8).astype(np.int64)] + xu * np.uint64(plan.x_mult)
        r = (ort.jam_shift(e, plan.fine_shift) & np.uint64(ort.WORD)).astype(np.int64)
        near += int(np.count_nonzero(np.abs(r - 2**31) <= ort.NEAR_HALF))
    assert total == 48 * 65536 and fine >= 5 and near > 1000


def test_mul_emulation_matches_float32_arithmetic():
    """mul_emulated equals numpy's float32 f32(f32(p * r) + zC) on all code pairs for 48 settings
    with r from 2^-24 to 2^30 (3.1 million values), overflow and subnormal r included."""
    rng = np.random.default_rng(6)
    total = overflowed = 0
    for i, (dtype, _, _, _, (z_a, z_b, z_c), lo, hi) in enumerate(emulation_settings(48)):
        qmin, qmax = DTYPE_RANGE[dtype]
        r = np.float32(np.exp2(rng.uniform(-24, 30)))
        if i % 8 == 3:
            r = np.float32(2.0**-140 * 3)  # subnormal
        if i % 8 == 5:
            r = np.float32(np.exp2(np.round(rng.uniform(-12, 2))))  # ties
        a, b = grid(dtype)
        want = np.clip(ort.qlinear_mul(a, b, z_a, z_b, r, z_c, qmin, qmax), lo, hi)
        got = ort.mul_emulated(ort.plan_mul(r, z_a, z_b, z_c, dtype, lo, hi), a.view(np.uint8), b.view(np.uint8))
        assert np.array_equal(got.view(a.dtype), want.astype(a.dtype)), (dtype, r, z_a, z_b, z_c, lo, hi)
        p = (a.astype(np.int64) - z_a) * (b.astype(np.int64) - z_b)
        overflowed += int(np.count_nonzero(p.astype(np.float32) * r + np.float32(z_c) >= 2**31))
        total += want.size
    assert total == 48 * 65536 and overflowed > 0
