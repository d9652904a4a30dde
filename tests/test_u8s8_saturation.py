"""uint8 x int8 layers crafted to overflow int16 pair sums: uint8 inputs near 255, int8 weights near
+127/-128. On x86 CPUs without VNNI, ONNX Runtime's uint8 x int8 kernels add the products of K
positions 2j and 2j+1 in a saturating int16 (onnxruntime issues 16105, 6004), unless the session
sets session.x64quantprecision=1, as qcc's ground truth does.

Each model holds C == reference == ORT on this machine, and ORT is run again on an emulated CPU
without VNNI (tests/emulated_cpu.py), where the ground truth must still equal the reference, and
where ORT without the option must differ exactly in the models `qcc inspect` flags. Conv (plain,
1x1, grouped with a weight zero point, depthwise), MatMul and Gemm; per-tensor and per-channel;
QOperator and QDQ forms; one int8-activation model for the one fallback.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from emulated_cpu import EMULATED_CPU, run_on_emulated_cpu
from helpers import check_exact, make_model
from models import quantize
from qcc import reference
from qcc.commands.inspection import inspect
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference

RNG_SEED = 7


def extreme_weights(rng, shape, low=110) -> np.ndarray:
    """int8 weights of magnitude low..127 (or 128 when negative), random signs."""
    magnitude = rng.integers(low, 128, shape, endpoint=True)
    sign = rng.choice([-1, 1], shape)
    return np.clip(sign * magnitude, -128, 127).astype(np.int8)


def qoperator_conv(name, rng, cin, cout, k, *, group=1, per_channel=False, w_zero=0, weights=None, pads=0, stride=1):
    weights = extreme_weights(rng, (cout, cin // group, k, k)) if weights is None else weights
    taps = weights[0].size
    s_x, s_w = np.float32(1 / 255), (rng.uniform(0.004, 0.009, cout) if per_channel else np.array(0.006)).astype(np.float32)
    # outputs spread around the middle of the code range, so that a saturated pair sum moves them
    s_y = np.float32(s_x * float(s_w.mean()) * 255 * 127 * np.sqrt(taps) * 2 / 127)
    size = 6
    out = (size + 2 * pads - k) // stride + 1
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero", "bias"],
                            ["y"], name=name, group=group, kernel_shape=[k, k], pads=[pads] * 4, strides=[stride] * 2)
    w_zero = np.full(cout, w_zero, np.int8) if per_channel else np.int8(w_zero)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    return make_model([node], [("x", "uint8", [1, cin, size, size])], [("y", "uint8", [1, cout, out, out])],
                      {"x_scale": s_x, "x_zero": np.uint8(0), "w": weights, "w_scale": s_w, "w_zero": w_zero,
                       "y_scale": s_y, "y_zero": np.uint8(128), "bias": bias})


def qoperator_matmul(name, rng, depth, cols, *, gemm=False, per_channel=False, weights=None):
    weights = extreme_weights(rng, (depth, cols)) if weights is None else weights
    s_x = np.float32(1 / 255)
    s_w = (rng.uniform(0.004, 0.009, cols) if per_channel else np.array(0.006)).astype(np.float32)
    s_y = np.float32(s_x * float(s_w.mean()) * 255 * 127 * np.sqrt(depth) * 2 / 127)
    w_zero = np.zeros(cols, np.int8) if per_channel else np.int8(0)
    inits = {"x_scale": s_x, "x_zero": np.uint8(0), "w_scale": s_w, "w_zero": w_zero, "y_scale": s_y, "y_zero": np.uint8(128)}
    if gemm:  # com.microsoft QGemm with transB and an int32 C
        inits |= {"w": np.ascontiguousarray(weights.T), "c": rng.integers(-3000, 3000, cols).astype(np.int32)}
        node = helper.make_node("QGemm", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "c", "y_scale", "y_zero"],
                                ["y"], name=name, domain="com.microsoft", transB=1)
    else:
        inits["w"] = weights
        node = helper.make_node("QLinearMatMul", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
                                ["y"], name=name)
    return make_model([node], [("x", "uint8", [3, depth])], [("y", "uint8", [3, cols])], inits)


def float_network(rng) -> onnx.ModelProto:
    """Conv3x3 -> Relu -> Conv1x1 -> Flatten -> MatMul -> Gemm, float weights of nearly equal
    magnitude and random signs, so that quantization gives codes near +-127 in every layer."""
    def w(*shape):
        return (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.9, 1.0, shape)).astype(np.float32)

    inits = {"c1_w": w(16, 4, 3, 3), "c1_b": np.zeros(16, np.float32), "c2_w": w(8, 16, 1, 1), "mm_w": w(8 * 4 * 4, 24),
             "fc_w": w(10, 24), "fc_b": np.zeros(10, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "c1_w", "c1_b"], ["c1"], name="conv3x3", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "c2_w"], ["c2"], name="conv1x1", kernel_shape=[1, 1]),
             helper.make_node("Flatten", ["c2"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "mm_w"], ["mm"], name="matmul"),
             helper.make_node("Gemm", ["mm", "fc_w", "fc_b"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "saturating", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def models(tmp_path) -> dict:
    """name -> (model path, whether some layer can saturate ORT's int16 pairs)."""
    rng = np.random.default_rng(RNG_SEED)
    # Signs alternating along ORT's K order (kernel row, kernel column, input channel): no pair of
    # adjacent products has one sign, so nothing saturates, although the weights are extreme and
    # neighbours in the ONNX layout (input channel, kernel row, kernel column) share their sign.
    alternating = np.empty((16, 2, 3, 3), np.int8)
    alternating[:, 0], alternating[:, 1] = 127, -128
    built = {
        "conv3x3_per_tensor": (qoperator_conv("conv3x3", rng, 3, 16, 3), True),
        "conv1x1_per_channel": (qoperator_conv("conv1x1", rng, 16, 16, 1, per_channel=True), True),
        "conv_grouped_weight_zero": (qoperator_conv("grouped", rng, 8, 16, 3, group=2, w_zero=3, pads=1, stride=2), True),
        "matmul_per_tensor": (qoperator_matmul("matmul", rng, 64, 16), True),
        "matmul_per_column": (qoperator_matmul("matmul", rng, 33, 8, per_channel=True), True),
        "gemm_per_channel": (qoperator_matmul("gemm", rng, 40, 12, gemm=True, per_channel=True), True),
        "conv_alternating_signs": (qoperator_conv("alternating", rng, 2, 16, 3, weights=alternating), False),
        "matmul_7bit_weights": (qoperator_matmul("matmul7", rng, 64, 16, weights=rng.integers(-64, 64, (64, 16),
                                                                                             endpoint=True).astype(np.int8)), False),
        "depthwise": (qoperator_conv("depthwise", rng, 16, 16, 3, group=16), False),
    }
    paths = {}
    for name, (model, flagged) in built.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        paths[name] = (path, flagged)
    for per_channel in (False, True):
        name = f"qdq_network_{'per_channel' if per_channel else 'per_tensor'}"
        paths[name] = (quantize(float_network(np.random.default_rng(RNG_SEED)), tmp_path / f"{name}.onnx",
                                quant_format="QDQ", per_channel=per_channel), True)
    # int8 activations: ORT cannot build this with session.x64quantprecision (the one fallback)
    paths["qdq_network_int8"] = (quantize(float_network(np.random.default_rng(RNG_SEED)), tmp_path / "qdq_network_int8.onnx",
                                          quant_format="QDQ", activation="int8"), False)
    return paths


def crafted_inputs(graph, rng) -> list[list[np.ndarray]]:
    """Codes near the top of the input range (where uint8 x int8 pair sums are largest), and each
    input's exact top code."""
    cases = []
    for top in (False, True):
        case = []
        for name in graph.inputs:
            t = graph.tensor(name)
            hi = 255 if t.dtype == "uint8" else 127
            case.append(np.full(t.shape, hi, t.dtype) if top else rng.integers(hi - 20, hi, t.shape, endpoint=True).astype(t.dtype))
        cases.append(case)
    return cases


@pytest.fixture(scope="module")
def saturation_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saturation")
    rng = np.random.default_rng(RNG_SEED)
    prepared = {}
    for name, (path, flagged) in models(tmp).items():
        graph = compile_model(path, Options()).graph
        cases = crafted_inputs(graph, rng)
        prepared[name] = {"path": path, "flagged": flagged, "graph": graph, "cases": cases,
                          "expected": [reference.run(graph, case) for case in cases]}
    emulated = run_on_emulated_cpu({name: (m["path"], [ort_reference.feeds_for(m["graph"], c) for c in m["cases"]])
                                    for name, m in prepared.items()}, tmp / "emulated")
    return prepared, emulated


def test_the_layers_flagged_are_those_the_weights_put_out_of_int16(saturation_models):
    prepared, _ = saturation_models
    for name, m in prepared.items():
        flags = {node.name: node.params["u8s8_pairs"].can_saturate
                 for node in m["graph"].nodes if "u8s8_pairs" in node.params}
        assert any(flags.values()) == m["flagged"], (name, flags)
        if name in ("depthwise", "qdq_network_int8"):
            assert not flags, (name, flags)  # no uint8 x int8 GEMM there at all
        report = inspect(str(m["path"]), Options())["text"]
        assert ("int16 pairs: ONNX Runtime's uint8 x int8 kernels" in report) == m["flagged"], name
        assert report.count("SATURATE") == sum(flags.values()), name


@pytest.mark.parametrize("name", ["conv3x3_per_tensor", "conv1x1_per_channel", "conv_grouped_weight_zero",
                                  "matmul_per_tensor", "matmul_per_column", "gemm_per_channel", "conv_alternating_signs",
                                  "matmul_7bit_weights", "depthwise", "qdq_network_per_tensor", "qdq_network_per_channel",
                                  "qdq_network_int8"])
def test_c_equals_reference_equals_ort_on_this_machine(saturation_models, tmp_path, name):
    m = saturation_models[0][name]
    check_exact(m["path"], tmp_path, extra_cases=m["cases"])  # C == reference == ORT (ground truth), every case
    sess = ort_reference.session(m["path"])
    assert sess.x64_quant_precision == (name != "qdq_network_int8")
    if not sess.x64_quant_precision:
        assert sess.fallback_reason.startswith("NOT_IMPLEMENTED")
        assert f"without {ort_reference.X64_QUANT_PRECISION}=1, which ORT cannot build" in sess.configuration()


def test_ground_truth_is_exact_on_an_emulated_cpu_without_vnni(saturation_models):
    prepared, emulated = saturation_models
    assert emulated["cpu"] == {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}, emulated["cpu"]
    assert emulated["probe_saturates"], f"ORT's uint8 x int8 kernel on {EMULATED_CPU} did not saturate the probe"
    for name, m in prepared.items():
        assert emulated["x64_quant_precision"][name] == (name != "qdq_network_int8"), name
        assert "saturating int16" in emulated["configuration"][name], emulated["configuration"][name]
        for i, raw in enumerate(emulated["outputs"][(name, "ground_truth")]):
            for e, g in zip(m["expected"][i], codes(m, raw)):
                assert np.array_equal(e, g), (name, i, int((e != g).sum()))


def codes(m, raw: list[np.ndarray]) -> list[np.ndarray]:
    """ORT's raw outputs (in the model's output order) as the compiled graph's codes."""
    graph = m["graph"]
    return ort_reference.outputs_as_codes(graph, [graph.public_name(o) for o in graph.outputs], raw)


def test_without_the_option_the_emulated_cpu_differs_exactly_where_flagged(saturation_models):
    """The test's teeth: on a CPU without VNNI, ORT without session.x64quantprecision saturates the
    flagged models' pair sums on these inputs, and leaves the others exact."""
    prepared, emulated = saturation_models
    for name, m in prepared.items():
        runs = [codes(m, raw) for raw in emulated["outputs"][(name, "without_x64quantprecision")]]
        differ = sum(int((e != g).sum()) for case, expected in zip(runs, m["expected"]) for e, g in zip(expected, case))
        assert (differ > 0) == m["flagged"], (name, differ)


def test_without_the_option_this_machine_differs_only_if_its_cpu_saturates(saturation_models):
    prepared, _ = saturation_models
    saturates = ort_reference.cpu_saturates_u8s8_pairs()
    for name, m in prepared.items():
        plain = ort_reference.ort_session(m["path"], x64_quant_precision=False)
        names = [o.name for o in plain.get_outputs()]
        differ = 0
        for case, expected in zip(m["cases"], m["expected"]):
            got = ort_reference.outputs_as_codes(m["graph"], names, plain.run(None, ort_reference.feeds_for(m["graph"], case)))
            differ += sum(int((e != g).sum()) for e, g in zip(expected, got))
        assert (differ > 0) == (saturates and m["flagged"]), (name, differ, saturates)
