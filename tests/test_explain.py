"""`qcc explain`: the traced element equals the reference interpreter's output, the accumulator
equals an independent numpy computation, the json holds every field docs/explain_json.md lists,
and the text and markdown forms print the key numbers."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import tempfile

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import REPO, make_model, scalar
from models import cnn96, quantize
from qcc import reference
from qcc.cli import main
import qcc.commands.explain
from qcc.commands.explain import explain, render
from qcc.numerics import SCHEMES
from qcc.ops import all_ops, op_named
from qcc.ops.base import Op
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import random_inputs
from test_op_conv import qlinearconv_model
from test_range_analysis import overflowing_conv

EXAMPLE = str(REPO / "examples" / "cnn96_uint8.onnx")
SCHEME_NAMES = ("ort", "tflm", "single")


# --- models ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_cnn(tmp_path_factory) -> str:
    """The example's network quantized with int8 activations (non-zero activation zero points)."""
    return str(quantize(cnn96(), tmp_path_factory.mktemp("int8") / "cnn96_int8.onnx", activation="int8"))


def mixed_model() -> onnx.ModelProto:
    """uint8 activations with Z_x != 0, uint8 per-channel weights with non-zero zero points, a grouped
    strided padded convolution with a folded Clip, AveragePool over the whole map (ORT's global
    path), QLinearMatMul with a weight zero point, and a QGemm with alpha and a C varying by row."""
    rng = np.random.default_rng(7)
    u8 = lambda shape: rng.integers(0, 256, shape).astype(np.uint8)  # noqa: E731
    inits = {
        "xs": scalar(0.02, np.float32), "xz": scalar(37, np.uint8),
        "w": u8((4, 2, 3, 3)), "ws": np.array([0.011, 0.007, 0.013, 0.005], np.float32),
        "wz": np.array([120, 131, 128, 90], np.uint8), "b": rng.integers(-3000, 3000, 4).astype(np.int32),
        "cs": scalar(0.05, np.float32), "cz": scalar(20, np.uint8),
        "lo": scalar(30, np.uint8), "hi": scalar(240, np.uint8),
        "ps": scalar(0.03, np.float32), "pz": scalar(11, np.uint8),
        "m": u8((4, 6)), "ms": scalar(0.004, np.float32), "mz": scalar(140, np.uint8),
        "ys": scalar(0.02, np.float32), "yz": scalar(100, np.uint8),
        "g": rng.integers(-128, 128, (5, 6)).astype(np.int8), "gs": np.linspace(0.003, 0.009, 5).astype(np.float32),
        "gz": np.zeros(5, np.int8), "gc": rng.integers(-500, 500, (3, 5)).astype(np.int32),
        "os": scalar(0.04, np.float32), "oz": scalar(128, np.uint8),
    }
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "cs", "cz", "b"], ["c"], name="conv",
                         group=2, strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["cc"], name="clip"),
        helper.make_node("QLinearAveragePool", ["cc", "cs", "cz", "ps", "pz"], ["p"], name="pool",
                         domain="com.microsoft", kernel_shape=[4, 4]),
        helper.make_node("QLinearMatMul", ["a", "ps", "pz", "m", "ms", "mz", "ys", "yz"], ["mm"], name="matmul"),
        helper.make_node("QGemm", ["mm", "ys", "yz", "g", "gs", "gz", "gc", "os", "oz"], ["out"], name="gemm",
                         domain="com.microsoft", transB=1, alpha=0.75),
    ]
    return make_model(nodes, [("x", "uint8", [1, 4, 7, 7]), ("a", "uint8", [3, 4])],
                      [("p", "uint8", [1, 4, 1, 1]), ("out", "uint8", [3, 5])], inits)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    onnx.save(mixed_model(), str(path))
    return str(path)


# --- independent accumulators -----------------------------------------------------------------


def wrap32(v: int) -> int:
    return int(np.array(v, np.int64).astype(np.uint64).astype(np.uint32).view(np.int32))


def numpy_accumulator(graph, node, values, index) -> int:
    """The int32 accumulator of one output element from the definition, with numpy, from the model's
    weights and the layer's input as the reference interpreter computed it."""
    x_t = graph.tensor(node.inputs[0])
    x = values[node.inputs[0]].astype(np.int64)
    _, z_x = x_t.quant.scalar()
    if node.op == "QLinearConv":
        w_t = graph.tensor(node.inputs[1])
        w = w_t.data.astype(np.int64)
        z_w = np.broadcast_to(w_t.quant.zero_point.reshape(-1), (w.shape[0],))
        a = node.attrs
        _, c, oh, ow = index
        groups, (kh, kw) = a["groups"], a["kernel"]
        in_per_group = w.shape[1]
        g = c // (w.shape[0] // groups)
        padded = np.pad(x - z_x, [(0, 0), (0, 0), (a["pads_begin"][0], kh * a["dilations"][0]),
                                  (a["pads_begin"][1], kw * a["dilations"][1])])
        top, left = oh * a["strides"][0], ow * a["strides"][1]
        window = padded[0, g * in_per_group:(g + 1) * in_per_group,
                        top: top + (kh - 1) * a["dilations"][0] + 1: a["dilations"][0],
                        left: left + (kw - 1) * a["dilations"][1] + 1: a["dilations"][1]]
        bias = 0 if a["bias"] is None else int(a["bias"][c])
        return wrap32(int((window * (w[c] - z_w[c])).sum()) + bias)
    if node.op in ("QGemm", "QLinearMatMul"):
        w_t = graph.tensor(node.inputs[1])
        b = w_t.data.astype(np.int64)
        b = b.T if node.attrs["trans_b"] else b  # (depth, cols)
        z_b = np.broadcast_to(w_t.quant.zero_point.reshape(-1), (b.shape[1],))
        a_matrix = x.T if node.attrs["trans_a"] else x.reshape(-1, x.shape[-1])
        row = int(np.ravel_multi_index(index[:-1], graph.tensor(node.outputs[0]).shape[:-1])) if len(index) > 1 else 0
        col = index[-1]
        bias = node.attrs["bias"]
        bias = 0 if bias is None else int(bias[row, col] if bias.ndim == 2 else bias[col])
        return wrap32(int(((a_matrix[row] - z_x) * (b[:, col] - z_b[col])).sum()) + bias)
    # the global pools
    channels_last = node.attrs["channels_last"]
    c = index[-1] if channels_last else index[1]
    plane = np.moveaxis(x, -1, 1)[0, c] if channels_last else x[0, c]
    return wrap32(int((plane - z_x).sum()))


def check_traces(path: str, scheme: str, channels=(0,), input_npz=None):
    """Every requantizing layer of the model, traced in `scheme` for each channel given: the trace's
    accumulator equals numpy's, its code equals the reference interpreter's. Returns the count."""
    compiled = compile_model(path, Options(rounding=scheme))
    graph = compiled.graph
    if input_npz is None:
        case = random_inputs(graph, 1, 0)[0]
    else:
        data = np.load(input_npz)
        case = [data[graph.public_name(n)].reshape(-1, graph.tensor(n).size)[0].reshape(graph.tensor(n).shape)
                for n in graph.inputs]
    values = reference.run(graph, case, keep_all=True)
    checked = 0
    for channel in channels:
        facts = explain(path, Options(rounding=scheme), channel=channel, input_npz=input_npz)
        for layer in facts["layers"]:
            if layer["kind"] != "requantize":
                continue
            node = next(n for n in graph.nodes if n.name == layer["node"])
            t = layer["trace"]
            index = tuple(t["output_index"])
            assert t["acc"] == t["direct"]["acc"] == t["folded"]["acc"] == numpy_accumulator(graph, node, values, index)
            expected = int(values[node.outputs[0]][index])
            assert t["code"] == expected, (layer["node"], scheme, channel, t)
            assert t["steps"][-1]["value"] == t["clamped"] and t["code"] == t["clamped"] + t["zero_point"]
            assert t["matches_reference"] and t["agree"]
            checked += 1
    return checked


# --- the traced values ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_example_traces_equal_the_reference_interpreter(scheme):
    # conv0..2, the global pool and the QGemm, channels 0, 5 and 9 (every layer has at least 10)
    assert check_traces(EXAMPLE, scheme, channels=(0, 5, 9)) == 15


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_int8_activations_traces_equal_the_reference_interpreter(int8_cnn, scheme):
    assert check_traces(int8_cnn, scheme, channels=(0, 3)) == 10


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_weight_zero_points_groups_clip_and_row_bias_trace_exactly(mixed, scheme):
    assert check_traces(mixed, scheme, channels=(0, 1, 3)) == 12
    layers = {layer["node"]: layer for layer in explain(mixed, Options(rounding=scheme))["layers"]}
    assert layers["conv"]["clamp"] == {"lo": 30, "hi": 240, "qmin": 0, "qmax": 255, "folded_activation": True}
    assert layers["conv"]["trace"]["padded_taps"] > 0
    assert layers["pool"]["kind"] == "requantize" and layers["pool"]["weights"] is None
    assert layers["matmul"]["trace"]["folded"]["minus_zw_sum_x"] != 0  # Z_b = 140 (12 as stored int8)
    assert isinstance(layers["gemm"]["channels"][0]["acc_const"], list)  # C varies by row


def test_every_position_of_a_small_conv_traces_exactly(mixed):
    compiled = compile_model(mixed, Options(rounding="tflm"))
    graph = compiled.graph
    values = reference.run(graph, random_inputs(graph, 1, 0)[0], keep_all=True)
    node = next(n for n in graph.nodes if n.name == "conv")
    for position in range(16):
        t = explain(mixed, Options(rounding="tflm"), node="conv", channel=2, position=position)["layers"][0]["trace"]
        index = tuple(t["output_index"])
        assert index == (0, 2, position // 4, position % 4)
        assert t["acc"] == numpy_accumulator(graph, node, values, index)
        assert t["code"] == int(values[node.outputs[0]][index])


def test_input_npz_is_traced(tmp_path):
    x = np.random.default_rng(3).integers(0, 256, (2, 1, 3, 96, 96)).astype(np.uint8)
    np.savez(tmp_path / "in.npz", input=x)
    assert check_traces(EXAMPLE, "ort", input_npz=str(tmp_path / "in.npz")) == 5
    facts = explain(EXAMPLE, node="conv0_quant", input_npz=str(tmp_path / "in.npz"))
    assert "in.npz, first input set" in facts["input"]


def test_scheme_trace_functions_end_at_the_scheme_result():
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-2**31, 2**31, 3000), rng.integers(-3000, 3000, 3000), [-2**31, 2**31 - 1, 0]])
    for name, scheme in SCHEMES.items():
        for real in (1e-9, 3.1e-4, 0.0123, 0.49999, 1.0, 7.5, 300.0):
            mult, shift = scheme.fixed_point(np.float32(real), real)
            expected = scheme.requantize(acc, np.uint32(mult), np.int8(shift), -128, 127)
            got = [scheme.trace(int(a), mult, shift, -128, 127)[-1][1] for a in acc]
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} {real}")


def test_the_ort_trace_rounds_where_float32_does():
    # f32(f32(acc) * scale) with numpy's float32: the trace's last real value is that product exactly
    scale = np.float32(0.0037)
    mult, shift = SCHEMES["ort"].fixed_point(scale, float(scale))
    for acc in (7789, -123457, 2**24 + 3, -(2**31), 98765431):
        steps = dict(SCHEMES["ort"].trace(acc, mult, shift, -10**9, 10**9))
        exact = next(v for k, v in steps.items() if k.startswith("p * 2^-"))
        assert exact == abs(float(np.float32(np.float32(acc) * scale)))
        assert steps[next(k for k in steps if k.startswith("r = rne"))] == abs(int(np.rint(np.float32(np.float32(acc) * scale))))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["uint8", "int8"]), st.integers(1, 3), st.booleans(), st.booleans(),
       st.sampled_from(["none", "cols", "full"]), st.sampled_from([1.0, 0.5, 3.0]))
def test_drawn_qgemm_traces_every_row_exactly(seed, a_dtype, rows, trans_a, trans_b, bias, alpha):
    rng = np.random.default_rng(seed)
    depth, cols = int(rng.integers(1, 200)), int(rng.integers(1, 6))
    b_dtype = "int8" if a_dtype == "int8" else str(rng.choice(["int8", "uint8"]))
    lo, hi = (-128, 127) if b_dtype == "int8" else (0, 255)
    b = rng.integers(lo, hi, (depth, cols), endpoint=True).astype(b_dtype)
    b_zero = np.zeros(cols, b_dtype) if b_dtype == "int8" else rng.integers(0, 256, cols).astype(b_dtype)
    a_lo, a_hi = (-128, 127) if a_dtype == "int8" else (0, 255)
    inits = {"as": scalar(rng.uniform(1e-3, 0.1), np.float32), "az": scalar(rng.integers(a_lo, a_hi + 1), a_dtype),
             "b": b.T.copy() if trans_b else b, "bs": rng.uniform(1e-3, 0.05, cols).astype(np.float32), "bz": b_zero,
             "ys": scalar(rng.uniform(0.01, 2.0), np.float32), "yz": scalar(rng.integers(a_lo, a_hi + 1), a_dtype)}
    c_name = ""
    if bias != "none":
        inits["c"] = rng.integers(-2**20, 2**20, (cols,) if bias == "cols" else (rows, cols)).astype(np.int32)
        c_name = "c"
    node = helper.make_node("QGemm", ["a", "as", "az", "b", "bs", "bz", c_name, "ys", "yz"], ["y"], name="gemm",
                            domain="com.microsoft", transA=int(trans_a), transB=int(trans_b), alpha=alpha)
    model = make_model([node], [("a", a_dtype, [depth, rows] if trans_a else [rows, depth])],
                       [("y", a_dtype, [rows, cols])], inits)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "gemm.onnx")
        onnx.save(model, path)
        for scheme in SCHEME_NAMES:
            graph = compile_model(path, Options(rounding=scheme)).graph
            values = reference.run(graph, random_inputs(graph, 1, 0)[0], keep_all=True)
            for row in range(rows):
                c = int(rng.integers(0, cols))
                (layer,) = explain(path, Options(rounding=scheme), channel=c, position=row)["layers"]
                t = layer["trace"]
                assert tuple(t["output_index"]) == (row, c)
                assert t["acc"] == t["folded"]["acc"] == numpy_accumulator(graph, graph.nodes[0], values, (row, c))
                assert t["code"] == int(values["y"][row, c])


def test_an_accumulator_that_wraps_is_traced_as_ort_wraps_it(tmp_path):
    path = tmp_path / "overflow.onnx"
    onnx.save(overflowing_conv(), str(path))
    np.savez(tmp_path / "zeros.npz", x=np.zeros((1, 1400, 7, 7), np.uint8))  # (0 - 255) * -128 * 68600 > 2^31
    for scheme in SCHEME_NAMES:
        assert check_traces(str(path), scheme, input_npz=str(tmp_path / "zeros.npz")) == 1
        (layer,) = explain(str(path), Options(rounding=scheme), input_npz=str(tmp_path / "zeros.npz"))["layers"]
        d = layer["trace"]["direct"]
        assert d["acc_int64"] == 255 * 128 * 68600 and d["acc"] == d["acc_int64"] - 2**32
        assert not layer["accumulator"]["int32_safe"] and not layer["channels"][0]["int32_safe"]
    assert main(["explain", str(path), "--input", str(tmp_path / "zeros.npz")]) == 0


def test_large_accumulators_show_the_f32_rounding_of_acc(tmp_path):
    # 64 x 3 x 3 taps of weight 127 against inputs 255 above their zero point: acc ~ 1.9e7 > 2^24
    w = np.full((1, 64, 3, 3), 127, np.int8)
    model = qlinearconv_model(x_dtype="uint8", x_shape=(1, 64, 3, 3), w=w, w_scale=np.array([1e-3], np.float32),
                              w_zero=np.zeros(1, np.int64), x_scale=np.float32(0.01), x_zero=0, y_scale=np.float32(1.0),
                              y_zero=0, y_shape=(1, 1, 1, 1), kernel_shape=[3, 3])
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    x = np.full((1, 64, 3, 3), 253, np.uint8)
    x[0, 0, 0, 0] = 252  # acc = 127 * (253 * 576 - 1) is odd and above 2^24: not a float32
    np.savez(tmp_path / "in.npz", x=x)
    assert check_traces(str(path), "ort", input_npz=str(tmp_path / "in.npz")) == 1
    (layer,) = explain(str(path), input_npz=str(tmp_path / "in.npz"))["layers"]
    steps = [s["value"] for s in layer["trace"]["steps"]]
    acc = 127 * (253 * 576 - 1)
    assert layer["trace"]["acc"] == acc and not layer["accumulator"]["f32_exact"]
    assert steps[0] == acc and steps[1] == int(np.float32(acc)) != acc  # f32(acc) rounds to 24 significant bits


def test_ops_without_a_scheme_form_say_so(capsys, tmp_path):
    inits = {"s": scalar(0.02, np.float32), "z": scalar(100, np.uint8), "s2": scalar(0.015, np.float32),
             "z2": scalar(90, np.uint8)}
    nodes = [helper.make_node("QLinearAveragePool", ["x", "s", "z", "s2", "z2"], ["p"], name="pool",
                              domain="com.microsoft", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("QLinearAdd", ["p", "s2", "z2", "x2", "s", "z", "s2", "z2"], ["y"], name="add",
                              domain="com.microsoft")]
    model = make_model(nodes, [("x", "uint8", [1, 2, 5, 5]), ("x2", "uint8", [1, 2, 5, 5])], [("y", "uint8", [1, 2, 5, 5])],
                       inits)
    path = tmp_path / "float_path.onnx"
    onnx.save(model, str(path))
    for scheme in SCHEME_NAMES:
        facts = explain(str(path), Options(rounding=scheme))
        add_kind = "tflm_integer" if scheme == "tflm" else "ort_arithmetic"
        assert [(x["node"], x["kind"]) for x in facts["layers"]] == [("pool", "ort_arithmetic"), ("add", add_kind)]
        pool, add = facts["layers"]
        assert "keeps ORT's arithmetic in every scheme" in pool["note"]
        assert "under tflm, TensorFlow Lite Micro's integer ADD" in add["note"] and "under ort and single" in add["note"]
        assert check_json(facts) > 10
    assert main(["explain", str(path), "--rounding", "tflm"]) == 0
    assert capsys.readouterr().out.count("keeps ORT's arithmetic in every scheme") == 1


# --- what each op says about itself --------------------------------------------------------------


# Registered ops that may rely on Op.explain's default ("not explained"), each with the reason.
# Empty: every op qcc compiles says what it computes. A new op either explains itself in its module
# or is listed here, so that `qcc explain` never describes it wrongly.
NOT_EXPLAINED_YET: dict[str, str] = {}


def test_every_registered_op_explains_itself():
    names = {op.name for op in all_ops()}
    assert set(NOT_EXPLAINED_YET) <= names  # the list names real ops
    for op in all_ops():
        explains = type(op).explain is not Op.explain
        assert explains == (op.name not in NOT_EXPLAINED_YET), f"{op.name}: Op.explain {'overridden' if explains else 'missing'}"


class Unexplained(Op):
    """A new op whose module has not written Op.explain yet (not registered: the test hands it to explain)."""

    name = "Unexplained"


def test_an_op_without_its_own_explanation_is_reported_as_not_explained(monkeypatch, capsys):
    # explain looks the Flatten node's op up and gets the new op, which has only Op's default
    monkeypatch.setattr(qcc.commands.explain, "op_named", lambda name: Unexplained() if name == "Reshape" else op_named(name))
    facts = explain(EXAMPLE)
    layers = {layer["node"]: layer for layer in facts["layers"]}
    flatten = layers["flatten"]
    assert flatten["kind"] == "not_explained" and "trace" not in flatten
    assert "no explanation for this op" in flatten["note"] and "moves or selects codes" not in flatten["note"]
    assert flatten["output_shape"] == [1, 32] and flatten["c"]["kernel_call"]
    assert layers["conv0_quant"]["kind"] == "requantize"  # the other layers keep their own explanations
    assert check_json(facts) > 200
    assert main(["explain", EXAMPLE, "--node", "flatten"]) == 0
    out = capsys.readouterr().out
    assert "no explanation for this op yet" in out and "moves or selects codes" not in out


# --- the json form ----------------------------------------------------------------------------------


def documented_fields() -> dict[str, list[str]]:
    """path -> field names, from the tables of docs/explain_json.md."""
    sections, current = {}, None
    for line in (REPO / "docs" / "explain_json.md").read_text().splitlines():
        if line.startswith("### "):
            current = re.findall(r"`([^`]+)`", line)
            for path in current:
                sections[path] = []
        elif current and line.startswith("| `"):
            for path in current:
                sections[path].append(re.match(r"\| `([^`]+)`", line).group(1))
    return sections


def objects_at(facts: dict, path: str) -> list[dict]:
    head, *rest = path.split(".")
    kinds = {"root": [facts], "layers[]": facts["layers"],
             "layers[other]": [x for x in facts["layers"] if x["kind"] != "requantize"],
             "layers[requantize]": [x for x in facts["layers"] if x["kind"] == "requantize"]}
    found = kinds[head]
    for part in rest:
        key, many = (part[:-2], True) if part.endswith("[]") else (part, False)
        found = [v for obj in found for v in ((obj[key] or []) if many else [obj[key]]) if v is not None]
    return found


def field(obj: dict, name: str):
    for part in name.split("."):
        assert part in obj, f"missing field {name!r} in {sorted(obj)}"
        obj = obj[part]
    return obj


def check_json(facts: dict) -> int:
    sections = documented_fields()
    assert len(sections) >= 15 and "layers[requantize].trace" in sections
    checked = 0
    for path, names in sections.items():
        for obj in objects_at(facts, path):
            for name in names:
                field(obj, name)
                checked += 1
    return checked


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_json_parses_and_holds_every_documented_field(mixed, capsys, scheme):
    for model in (EXAMPLE, mixed):
        assert main(["explain", model, "--format", "json", "--rounding", scheme]) == 0
        facts = json.loads(capsys.readouterr().out)
        assert facts["schema_version"] == 1 and facts["rounding"] == scheme
        kinds = {layer["kind"] for layer in facts["layers"]}
        assert "requantize" in kinds and "not_explained" not in kinds
        assert check_json(facts) > 200
    # the example: every layer, the Flatten among them, documented as code movement
    assert main(["explain", EXAMPLE, "--format", "json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert [x["node"] for x in facts["layers"]] == ["conv0_quant", "conv1_quant", "conv2_quant", "gap_quant", "flatten",
                                                    "fc_quant"]
    assert facts["layers"][4]["kind"] == "no_arithmetic"
    assert len(facts["layers"][0]["channels"]) == 16 and len(facts["layers"][1]["channels"]) == 32


def test_json_numbers_are_consistent():
    facts = explain(EXAMPLE, Options(rounding="tflm"))
    for layer in (x for x in facts["layers"] if x["kind"] == "requantize"):
        for row in layer["channels"]:
            assert row["M0_times_2_pow_minus_n"] == float(Fraction(row["M0"], 2 ** row["n"]))
            assert abs(row["relative_error"]) < 2**-30  # a Q31 multiplier
            assert row["n"] == 31 - row["stored_shift"]
            terms = row["acc_const_terms"]
            assert wrap32(sum(terms.values())) == row["acc_const"]
            assert row["acc_bits"] <= layer["accumulator"]["bits"] and row["int32_safe"]


# --- text and markdown ----------------------------------------------------------------------------


def ort_multiplier(s_x, s_w, s_y) -> tuple[int, int]:
    """M0 and n of the ort scheme, from the float32 scale ORT computes: f32(f32(s_x * s_w) / s_y)."""
    scale = (np.float32(s_x) * np.float32(s_w)) / np.float32(s_y)
    mantissa, exponent = np.frexp(np.float64(scale))
    return int(mantissa * 2**24), 24 - int(exponent)


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_text_and_markdown_print_the_key_numbers(capsys, fmt):
    assert main(["explain", EXAMPLE, "--node", "conv0_quant", "--channel", "3", "--format", fmt]) == 0
    out = capsys.readouterr().out
    model = onnx.load(EXAMPLE)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.name == "conv0_quant")
    s_x, s_w, s_y = inits[conv.input[1]], inits[conv.input[4]][3], inits[conv.input[6]]
    m0, n = ort_multiplier(s_x, s_w, s_y)
    exact = Fraction(float(s_x)) * Fraction(float(s_w)) / Fraction(float(s_y))
    rel = Fraction(m0, 2**n) / exact - 1
    assert str(m0) in out and f"{float(rel):+.3e}" in out
    assert re.search(rf"\b{n}\b", out)
    assert str(float(exact))[:12] in out  # M
    assert "19 bits" in out and "int32 proven safe" in out
    assert f"qcc_requantize_ort(acc, {m0}u, {n}, 0, 255, 1) + 0" in out
    assert "reference interpreter's code for this element: equal" in out
    assert "conv1_quant" not in out and "channel 3" in out
    if fmt == "markdown":
        assert out.startswith("# qcc explain") and "| value | step |" in out and "```c" in out


def test_tflm_text_shows_both_roundings(capsys):
    assert main(["explain", EXAMPLE, "--node", "fc_quant", "--rounding", "tflm"]) == 0
    out = capsys.readouterr().out
    assert "first rounding" in out and "second rounding" in out and "qcc_requantize_tflm(" in out


# --- selection and errors -----------------------------------------------------------------------------


def test_node_and_channel_select():
    facts = explain(EXAMPLE, node="conv2_quant", channel=17)
    (layer,) = facts["layers"]
    assert layer["node"] == "conv2_quant"
    assert [row["channel"] for row in layer["channels"]] == [17]
    assert layer["trace"]["channel"] == 17 and layer["trace"]["output_index"][1] == 17
    assert layer["c"]["channel"] == 17
    (gap,) = explain(EXAMPLE, node="gap_quant", channel=4)["layers"]
    assert gap["channels"][0]["channel"] is None and gap["trace"]["output_index"] == [0, 4, 0, 0]
    (flatten,) = explain(EXAMPLE, node="flatten")["layers"]
    assert flatten["kind"] == "no_arithmetic" and "trace" not in flatten


@pytest.mark.parametrize("args, message", [
    (["--node", "conv9"], "no node named 'conv9'"),
    (["--node", "conv0_quant", "--channel", "16"], "--channel 16: node 'conv0_quant' has 16 output channels"),
    (["--channel", "12"], "--channel 12: node 'fc_quant' has 10 output channels"),
    (["--node", "fc_quant", "--position", "1"], "--position 1"),
    (["--input", "missing.npz"], "missing.npz: no such file"),
])
def test_bad_selection_exits_2_with_one_line(capsys, args, message):
    assert main(["explain", EXAMPLE, *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qcc: error:") and message in lines[0], lines


# --- the documentation --------------------------------------------------------------------------------


def test_arithmetic_doc_quotes_current_explain_output():
    """Every ```text block under an `<!-- qcc explain ARGS -->` marker in docs/arithmetic.md is
    (a trimmed copy of) what that command prints now: each of its lines but '...' is a line of it."""
    text = (REPO / "docs" / "arithmetic.md").read_text()
    blocks = re.findall(r"<!-- qcc explain (.*?) -->\s*```text\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for args, block in blocks:
        model, *rest = args.split()
        options = dict(zip(rest[::2], rest[1::2]))
        facts = explain(str(REPO / model), Options(rounding=options.get("--rounding", "ort")), node=options.get("--node"),
                        channel=int(options["--channel"]) if "--channel" in options else None,
                        position=int(options["--position"]) if "--position" in options else None)
        lines = set(line.rstrip() for line in render(facts, "text").splitlines())
        for line in block.splitlines():
            if line.strip() and line.strip() != "...":
                assert line.rstrip() in lines, f"docs/arithmetic.md, `qcc explain {args}`: {line!r} is no longer printed"
    readme = (REPO / "README.md").read_text()
    assert "docs/arithmetic.md" in readme and "docs/explain_json.md" in text
