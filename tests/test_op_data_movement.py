"""Byte-moving ops on quantized tensors against ONNX Runtime, and the generated C against the
reference: com.microsoft QLinearConcat (every table over all 256 codes), Concat, Split, Slice,
Pad and Resize (nearest) on int8/uint8 codes."""

import itertools
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import check_exact, make_model, scalar
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference

DTYPES = st.sampled_from(["uint8", "int8"])
SCALES = st.floats(1e-4, 10.0).map(np.float32)
COORDINATE_MODES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
INT64_MAX, INT64_MIN, INT32_MAX = 2**63 - 1, -2**63, 2**31 - 1


def ort_run(model: onnx.ModelProto, feeds: dict | None = None) -> list[np.ndarray]:
    """ORT's outputs for the model (zeros for any input not given); raises what ORT raises."""
    sess = ort_reference.session(model)
    feeds = dict(feeds or {})
    for i in sess.get_inputs():
        if i.name not in feeds:
            dtype = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32}[i.type]
            feeds[i.name] = np.zeros(i.shape, dtype)
    return sess.run(None, feeds)


def check(model: onnx.ModelProto, tmp: Path, **kwargs):
    """check_exact (C == reference, reference == ORT on every value), and the output shapes qcc
    computed equal ORT's (the value comparison alone would not see a reshaped output)."""
    tmp.mkdir(parents=True, exist_ok=True)
    compiled = check_exact(model, tmp, **kwargs)
    shapes = [tuple(a.shape) for a in ort_run(model)]
    ours = [compiled.graph.tensor(name).shape for name in compiled.graph.outputs]
    assert ours == shapes, f"output shapes: qcc {ours}, ORT {shapes}"
    return compiled


def check_drawn(model: onnx.ModelProto, **kwargs):
    with tempfile.TemporaryDirectory() as tmp:
        return check(model, Path(tmp), **kwargs)


def refused(model: onnx.ModelProto, tmp: Path) -> str:
    path = tmp / "refused.onnx"
    onnx.save(model, str(path))
    with pytest.raises(QccError) as info:
        compile_model(path, Options())
    return str(info.value)


def zero_point(draw, dtype):
    qmin, qmax = DTYPE_RANGE[dtype]
    return draw(st.sampled_from([qmin, qmax, None])) or draw(st.integers(qmin, qmax))


def all_code_cases(shapes: list[tuple[int, ...]], dtype: str) -> list[list[np.ndarray]]:
    """Input sets in which every input takes each of the 256 codes at least once."""
    sizes = [int(np.prod(s)) for s in shapes]
    codes = np.arange(256, dtype=np.int64).astype(np.uint8).view(dtype)
    cases = []
    for k in range(-(-256 // min(sizes))):
        cases.append([codes[(k * size + np.arange(size) + 37 * j) % 256].reshape(shape)
                      for j, (shape, size) in enumerate(zip(shapes, sizes))])
    return cases


# --- QLinearConcat ------------------------------------------------------------------------


def qlinearconcat_node(name, y_scale, y_zero, inputs, dtype, axis, inits):
    """inputs: (tensor name, scale, zero point); the scale and zero point become initializers."""
    inits[f"{name}_ys"], inits[f"{name}_yz"] = scalar(y_scale, np.float32), scalar(y_zero, dtype)
    names = [f"{name}_ys", f"{name}_yz"]
    for i, (tensor, s, z) in enumerate(inputs):
        inits[f"{name}_s{i}"], inits[f"{name}_z{i}"] = scalar(s, np.float32), scalar(z, dtype)
        names += [tensor, f"{name}_s{i}", f"{name}_z{i}"]
    return helper.make_node("QLinearConcat", names, [name], name=name, domain="com.microsoft", axis=axis)


def crafted_table_parameters(dtype: str, rng) -> list[tuple]:
    """(s_x, z_x, s_y, z_y) sets where candidate table formulas disagree: exact .5 ties (round half
    to even), a true division against a reciprocal multiply, the float32 product against an exact
    one; plus identical parameters (a copy), equal scales, and extreme ratios that saturate."""
    qmin, qmax = DTYPE_RANGE[dtype]
    mid = (qmin + qmax + 1) // 2
    sets = [(2.0**-5, mid, 2.0**-4, mid), (3 * 2.0**-6, qmin + 3, 2.0**-4, mid - 7), (2.0**-3, qmax, 2.0**-4, qmin),
            (0.05, mid, 0.05, mid), (0.05, mid + 9, 0.05, mid), (1e-4, qmin, 10.0, qmax), (10.0, mid, 1e-3, mid),
            (0.1, qmin, 0.2, qmin), (0.2, qmax, 0.1, qmax)]
    codes = np.arange(qmin, qmax + 1, dtype=np.int64)
    found = {"division": 0, "product": 0}
    for _ in range(200000):
        if min(found.values()) >= 3:
            break
        s_x, s_y = np.exp(rng.uniform(-6, 1, 2)).astype(np.float32)
        z_x, z_y = (int(v) for v in rng.integers(qmin, qmax, 2, endpoint=True))
        v = s_x * (codes - z_x).astype(np.float32)  # float32 product
        true_division = np.rint(v / s_y)
        kinds = {"division": np.rint(v * (np.float32(1) / s_y)),
                 "product": np.rint(s_x.astype(np.float64) * (codes - z_x) / np.float64(s_y))}
        in_range = (true_division >= qmin - z_y) & (true_division <= qmax - z_y)
        for kind, other in kinds.items():
            if found[kind] < 3 and np.any((true_division != other) & in_range):
                found[kind] += 1
                sets.append((float(s_x), z_x, float(s_y), z_y))
    assert min(found.values()) >= 3, found
    for _ in range(12):
        sets.append((float(np.exp(rng.uniform(-7, 2))), int(rng.integers(qmin, qmax + 1)),
                     float(np.exp(rng.uniform(-7, 2))), int(rng.integers(qmin, qmax + 1))))
    return sets


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qlinearconcat_every_table_over_all_256_codes(tmp_path, dtype):
    """One single-input QLinearConcat per parameter set, all fed the 256 codes: every table entry
    of every set is compared with ORT, and the C with the reference."""
    sets = crafted_table_parameters(dtype, np.random.default_rng(11 if dtype == "uint8" else 12))
    inits, nodes = {}, []
    for k, (s_x, z_x, s_y, z_y) in enumerate(sets):
        nodes.append(qlinearconcat_node(f"t{k}", s_y, z_y, [("x", s_x, z_x)], dtype, 0, inits))
    model = make_model(nodes, [("x", dtype, [256])], [(n.output[0], dtype, [256]) for n in nodes], inits)
    codes = np.arange(256, dtype=np.int64).astype(np.uint8).view(dtype)
    compiled = check(model, tmp_path, n_random=0, extra_cases=[[codes], [codes[::-1].copy()]])
    tables = [n.params["tables"][0] for n in compiled.graph.nodes]
    assert sum(t is None for t in tables) == 1  # the one set with identical parameters is a plain copy


@st.composite
def qlinearconcat_cases(draw):
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 4))
    count = draw(st.integers(2, 4))
    axis = draw(st.integers(-rank, rank - 1))
    base = [draw(st.integers(1, 4)) for _ in range(rank)]
    shapes = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 5))
        shapes.append(tuple(shape))
    y_scale, y_zero = draw(SCALES), zero_point(draw, dtype)
    params = [(y_scale, y_zero) if draw(st.booleans()) else (draw(SCALES), zero_point(draw, dtype)) for _ in shapes]
    constant = draw(st.sampled_from([None, *range(count)]))
    return dtype, shapes, axis, y_scale, y_zero, params, constant


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qlinearconcat_cases())
def test_qlinearconcat_drawn(case):
    """Mixed inputs: some with the output's exact parameters (copied), some requantized; any axis,
    negative too; sometimes one input is a constant. Every input sees all 256 codes."""
    dtype, shapes, axis, y_scale, y_zero, params, constant = case
    inits, inputs, graph_inputs = {}, [], []
    rng = np.random.default_rng(0)
    qmin, qmax = DTYPE_RANGE[dtype]
    for i, (shape, (s, z)) in enumerate(zip(shapes, params)):
        if i == constant:
            inits[f"x{i}"] = rng.integers(qmin, qmax, shape, endpoint=True).astype(dtype)
        else:
            graph_inputs.append((f"x{i}", dtype, list(shape)))
        inputs.append((f"x{i}", s, z))
    node = qlinearconcat_node("y", y_scale, y_zero, inputs, dtype, axis, inits)
    model = make_model([node], graph_inputs, [("y", dtype, None)], inits)
    check_drawn(model, n_random=2, extra_cases=all_code_cases([tuple(s) for _, _, s in graph_inputs], dtype))


@pytest.mark.parametrize("dtype, activation", [("int8", "Relu"), ("uint8", "Clip")])
def test_relu_and_clip_fold_into_the_qlinearconcat_tables(tmp_path, dtype, activation):
    qmin, qmax = DTYPE_RANGE[dtype]
    inits = {}
    # Input 0 has the output's parameters: alone it would be copied, with the clamp it needs a table.
    node = qlinearconcat_node("c", 0.05, qmin + 100, [("a", 0.05, qmin + 100), ("b", 0.031, qmax - 20)], dtype, 1, inits)
    inputs = ["c"]
    if activation == "Clip":
        inits["lo"], inits["hi"] = scalar(90, dtype), scalar(200, dtype)
        inputs = ["c", "lo", "hi"]
    nodes = [node, helper.make_node(activation, inputs, ["y"], name="act")]
    model = make_model(nodes, [("a", dtype, [1, 2, 16, 8]), ("b", dtype, [1, 3, 16, 8])], [("y", dtype, [1, 5, 16, 8])],
                       inits, opset=14)
    compiled = check(model, tmp_path, n_random=2, extra_cases=all_code_cases([(1, 2, 16, 8), (1, 3, 16, 8)], dtype))
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConcat"]
    assert all(t is not None for t in compiled.graph.nodes[0].params["tables"])


# --- Concat, Split -------------------------------------------------------------------------


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_concat_drawn(data):
    draw = data.draw
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 5))
    axis = draw(st.integers(-rank, rank - 1))
    base = [draw(st.integers(1, 3)) for _ in range(rank)]
    count = draw(st.integers(1, 4))
    constant = draw(st.sampled_from([None, *range(count)]))
    inits, graph_inputs, names = {}, [], []
    for i in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 4))
        if i == constant:
            inits[f"x{i}"] = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
        else:
            graph_inputs.append((f"x{i}", dtype, shape))
        names.append(f"x{i}")
    if not graph_inputs:
        return
    model = make_model([helper.make_node("Concat", names, ["y"], name="concat", axis=axis)], graph_inputs,
                       [("y", dtype, None)], inits)
    check_drawn(model, n_random=3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_split_drawn(data):
    draw = data.draw
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    axis = draw(st.integers(-rank, rank - 1))
    form = draw(st.sampled_from(["sizes-input", "sizes-attribute", "equal", "num_outputs"]))
    length = shape[axis] = draw(st.integers(2, 9))
    inits, attrs, inputs, opset = {}, {"axis": axis}, ["x"], 13
    if form.startswith("sizes"):
        cuts = sorted(draw(st.sets(st.integers(1, length - 1), min_size=1, max_size=min(3, length - 1))))
        sizes = np.diff([0, *cuts, length])
        if form == "sizes-input":
            inits["split"] = sizes.astype(np.int64)
            inputs.append("split")
        else:
            attrs["split"], opset = [int(s) for s in sizes], 11
        count = len(sizes)
    elif form == "equal":
        count = draw(st.sampled_from([d for d in range(1, length + 1) if length % d == 0]))
    else:  # opset 18: chunks of ceil(length / n), the last one smaller
        count = draw(st.sampled_from([n for n in range(1, length + 1) if length - (-(-length // n)) * (n - 1) > 0]))
        attrs["num_outputs"], opset = count, 18
    outputs = [f"y{i}" for i in range(count)]
    model = make_model([helper.make_node("Split", inputs, outputs, name="split", **attrs)], [("x", dtype, shape)],
                       [(o, dtype, None) for o in outputs], inits, opset=opset)
    check_drawn(model, n_random=3)


# --- Slice ---------------------------------------------------------------------------------


def slice_bound(draw, dim):
    return draw(st.one_of(st.integers(-dim - 3, dim + 3), st.sampled_from([INT64_MAX, INT64_MIN, INT32_MAX, -INT32_MAX])))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_slice_drawn(tmp_path_factory, data):
    """Three slices of one input per example: starts and ends in and out of range, INT_MAX/INT64_MIN,
    steps of both signs, axes in any order and negative. A slice ORT makes empty must be refused."""
    draw = data.draw
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 6)) for _ in range(rank)]
    nodes, inits = [], {}
    for k in range(3):
        axes = draw(st.permutations(range(rank)))[: draw(st.integers(1, rank))]
        axes = [a - rank if draw(st.booleans()) else a for a in axes]
        starts = [slice_bound(draw, shape[a]) for a in axes]
        ends = [slice_bound(draw, shape[a]) for a in axes]
        steps = [draw(st.sampled_from([1, 1, 2, 3, -1, -1, -2, -3])) for _ in axes]
        inputs = [f"st{k}", f"en{k}"]
        inits[f"st{k}"], inits[f"en{k}"] = np.array(starts, np.int64), np.array(ends, np.int64)
        if axes != list(range(len(axes))) or draw(st.booleans()):
            inits[f"ax{k}"] = np.array(axes, np.int64)
            inputs.append(f"ax{k}")
        if any(s != 1 for s in steps) or draw(st.booleans()):
            inits[f"sp{k}"] = np.array(steps, np.int64)
            if len(inputs) == 2:
                inputs.append("")
            inputs.append(f"sp{k}")
        nodes.append(helper.make_node("Slice", ["x", *inputs], [f"y{k}"], name=f"slice{k}"))
    kept = []
    for node in nodes:
        single = make_model([node], [("x", dtype, shape)], [(node.output[0], dtype, None)], inits)
        if ort_run(single)[0].size:
            kept.append(node)
        else:
            assert "no elements" in refused(single, tmp_path_factory.mktemp("refused"))
    if kept:
        model = make_model(kept, [("x", dtype, shape)], [(n.output[0], dtype, None) for n in kept], inits)
        check_drawn(model, n_random=2)


def test_slice_attribute_form_of_opset_9(tmp_path):
    node = helper.make_node("Slice", ["x"], ["y"], name="slice", starts=[1, -3], ends=[100, -1], axes=[0, 2])
    model = make_model([node], [("x", "int8", [3, 2, 5])], [("y", "int8", None)], {}, opset=9)
    check(model, tmp_path, n_random=2)


# --- Pad -----------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_pad_drawn(tmp_path_factory, data):
    """Constant (with and without the value input), edge, reflect and wrap; negative pads crop;
    the opset 18 axes input. Pads ORT refuses (reflect beyond extent - 1) must be refused."""
    draw = data.draw
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 5)) for _ in range(rank)]
    mode = draw(st.sampled_from(["constant", "edge", "reflect", "wrap"]))
    opset = draw(st.sampled_from([13, 19]))
    axes = list(range(rank))
    inits, inputs = {}, ["x", "pads"]
    if opset == 19 and draw(st.booleans()):
        axes = draw(st.permutations(range(rank)))[: draw(st.integers(1, rank))]
        axes = [a - rank if draw(st.booleans()) else a for a in axes]
    pads = [draw(st.integers(-2, 4)) for _ in range(2 * len(axes))]
    for i, a in enumerate(axes):  # keep at least one element of the input on every axis
        while shape[a] + min(pads[i], 0) + min(pads[i + len(axes)], 0) < 1:
            pads[i] = pads[i + len(axes)] = 0
    inits["pads"] = np.array(pads, np.int64)
    if mode == "constant" and draw(st.booleans()):
        inits["value"] = scalar(zero_point(draw, dtype), dtype)
        inputs.append("value")
    if axes != list(range(rank)):
        inits["axes"] = np.array(axes, np.int64)
        inputs += [""] * (3 - len(inputs)) + ["axes"]
    if mode == "wrap" and opset < 19:
        opset = 19
    model = make_model([helper.make_node("Pad", inputs, ["y"], name="pad", mode=mode)], [("x", dtype, shape)],
                       [("y", dtype, None)], inits, opset=opset)
    try:
        ort_run(model)
    except Exception:  # noqa: BLE001 - ORT refuses these pads; so must qcc
        assert mode == "reflect"
        assert "reflect pads" in refused(model, tmp_path_factory.mktemp("refused"))
        return
    check_drawn(model, n_random=3)


def test_pad_of_a_qlinearconv_output_as_quantized_models_have_it(tmp_path):
    """QuantizeLinear -> Pad (constant: the zero point) -> DequantizeLinear, as a QOperator model
    pads before a convolution; float inputs and outputs in C (--float-io) and without."""
    inits = {"s": scalar(0.02, np.float32), "z": scalar(-3, "int8"), "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("Pad", ["q", "pads", "z"], ["p"], name="pad"),
             helper.make_node("DequantizeLinear", ["p", "s", "z"], ["y"], name="dq")]
    model = make_model(nodes, [("x", "float32", [1, 3, 5, 6])], [("y", "float32", [1, 3, 8, 9])], inits)
    check(model, tmp_path / "codes", n_random=3)
    check(model, tmp_path / "float", n_random=3, float_io=True)


# --- Resize --------------------------------------------------------------------------------


def resize_models(dtype, shape, inits, inputs, opset, **attrs):
    """One Resize per coordinate transformation and nearest mode, all on the same input."""
    modes = COORDINATE_MODES + (["half_pixel_symmetric"] if opset >= 19 else [])
    nodes = [helper.make_node("Resize", inputs, [f"y_{c}_{n}"], name=f"{c}_{n}", mode="nearest",
                              coordinate_transformation_mode=c, nearest_mode=n, **attrs)
             for c, n in itertools.product(modes, NEAREST_MODES)]
    return make_model(nodes, [("x", dtype, shape)], [(n.output[0], dtype, None) for n in nodes], inits, opset=opset)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_resize_drawn(data):
    """Scales (integer and not, up and down) or sizes, on ranks 1 to 4, through every coordinate
    transformation and nearest mode at once; opset 18/19 axes and keep_aspect_ratio_policy."""
    draw = data.draw
    dtype = draw(DTYPES)
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 6)) for _ in range(rank)]
    opset = draw(st.sampled_from([13, 19]))
    axes, attrs = list(range(rank)), {}
    if opset == 19 and draw(st.booleans()):
        axes = sorted(draw(st.permutations(range(rank)))[: draw(st.integers(1, rank))])
        attrs["axes"] = axes
    if draw(st.booleans()):
        scale_values = [draw(st.one_of(st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5, 2.5, 0.75]),
                                       st.floats(0.3, 4.0))) for _ in axes]
        scales = np.array(scale_values, np.float32)
        out = [int(np.float32(s) * np.float32(shape[a])) for s, a in zip(scales, axes)]
        if min(out) < 1:
            scales = np.maximum(scales, np.float32(1.0))
        inits, inputs = {"scales": scales}, ["x", "", "scales"]
    else:
        inits, inputs = {"sizes": np.array([draw(st.integers(1, 13)) for _ in axes], np.int64)}, ["x", "", "", "sizes"]
        if opset == 19 and draw(st.booleans()):
            attrs["keep_aspect_ratio_policy"] = draw(st.sampled_from(["not_larger", "not_smaller"]))
    model = resize_models(dtype, shape, inits, inputs, opset, **attrs)
    if "keep_aspect_ratio_policy" in attrs and min(a.size for a in ort_run(model)) == 0:
        return  # the policy can round an axis down to 0
    check_drawn(model, n_random=2)


def test_resize_2x_upsampling_of_a_detector_head(tmp_path):
    """QuantizeLinear -> Resize 2x (nearest, asymmetric, floor, as PyTorch exports it, with an empty
    roi input) -> Concat with a lateral branch -> DequantizeLinear."""
    inits = {"s": scalar(0.04, np.float32), "z": scalar(128, "uint8"), "roi": np.zeros(0, np.float32),
             "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("QuantizeLinear", ["lateral", "s", "z"], ["ql"], name="ql"),
             helper.make_node("Resize", ["q", "roi", "scales"], ["up"], name="up", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Concat", ["up", "ql"], ["cat"], name="cat", axis=1),
             helper.make_node("DequantizeLinear", ["cat", "s", "z"], ["y"], name="dq")]
    model = make_model(nodes, [("x", "float32", [1, 8, 5, 7]), ("lateral", "float32", [1, 4, 10, 14])],
                       [("y", "float32", [1, 12, 10, 14])], inits, opset=11)
    check(model, tmp_path, n_random=3)


def test_resize_round_modes_take_near_halves_as_ties(tmp_path):
    """ORT 1.32 treats a coordinate within 1e-6 of k + 0.5 as a half: 20 -> 6 with half_pixel puts
    output 4 at f32 14.4999990 (ORT reads 15 with round_prefer_ceil), 9 -> 10 with scale 1.2
    asymmetric at 7.4999995 (reads 8); 1.9e-6 below 25.5 (51 -> 54) is not a tie (reads 25)."""
    cases = [([20], {"sizes": [6]}, "half_pixel"), ([9], {"scales": [1.2]}, "asymmetric"),
             ([51], {"sizes": [54]}, "asymmetric"), ([7], {"sizes": [8]}, "asymmetric")]
    for k, (shape, target, coordinate_mode) in enumerate(cases):
        (kind, values), = target.items()
        inits = {"v": np.array(values, np.int64 if kind == "sizes" else np.float32)}
        inputs = ["x", "", "", "v"] if kind == "sizes" else ["x", "", "v"]
        nodes = [helper.make_node("Resize", inputs, [f"y{n}"], name=f"r{n}", mode="nearest",
                                  coordinate_transformation_mode=coordinate_mode, nearest_mode=nearest)
                 for n, nearest in enumerate(["round_prefer_ceil", "round_prefer_floor"])]
        model = make_model(nodes, [("x", "uint8", shape)], [(n.output[0], "uint8", None) for n in nodes], inits)
        check(model, tmp_path / str(k), n_random=0,
              extra_cases=[[np.arange(shape[0], dtype=np.uint8)]])


def test_resize_whose_output_keeps_the_input_shape_copies(tmp_path):
    """Scales 1.1 on axes of length < 10 leave every dimension unchanged: ORT then copies the input,
    where the coordinate mapping would read other pixels (half_pixel: output 5 of 9 reads input 4)."""
    model = resize_models("int8", [1, 2, 7, 9], {"scales": np.array([1, 1.1, 1.1, 1.1], np.float32)},
                          ["x", "", "scales"], 13)
    check(model, tmp_path, n_random=2)


def test_resize_opset_10(tmp_path):
    nodes = [helper.make_node("Resize", ["x", f"s{k}"], [f"y{k}"], name=f"r{k}", mode="nearest") for k in range(3)]
    inits = {"s0": np.array([1, 1, 2, 2], np.float32), "s1": np.array([1, 1, 0.6, 1.7], np.float32),
             "s2": np.array([1, 2, 0.5, 3], np.float32)}
    model = make_model(nodes, [("x", "uint8", [1, 2, 5, 6])], [(n.output[0], "uint8", None) for n in nodes], inits, opset=10)
    check(model, tmp_path, n_random=2)


# --- QDQ models ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_groups_become_integer_ops_as_ort_fuses_them(tmp_path, dtype):
    """DQ -> Concat -> Q (different scales, one constant input) becomes QLinearConcat; DQ -> Slice -> Q
    and DQ -> Resize(nearest) -> Q with equal parameters run on the codes."""
    qmin, qmax = DTYPE_RANGE[dtype]
    rng = np.random.default_rng(4)
    inits = {"s1": scalar(0.02, np.float32), "z1": scalar(qmin + 10, dtype), "s2": scalar(0.035, np.float32),
             "z2": scalar(qmax - 30, dtype), "sy": scalar(0.03, np.float32), "zy": scalar(qmin + 128, dtype),
             "k": rng.integers(qmin, qmax, (1, 2, 4, 4), endpoint=True).astype(dtype),
             "starts": np.array([1, -1], np.int64), "ends": np.array([4, -100], np.int64), "axes": np.array([2, 3], np.int64),
             "steps": np.array([2, -1], np.int64), "scales": np.array([1, 1, 2, 1.5], np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "s1", "z1"], ["ad"], name="dq_a"),
             helper.make_node("DequantizeLinear", ["b", "s2", "z2"], ["bd"], name="dq_b"),
             helper.make_node("DequantizeLinear", ["k", "s1", "z1"], ["kd"], name="dq_k"),
             helper.make_node("Concat", ["ad", "bd", "kd"], ["cat"], name="cat", axis=1),
             helper.make_node("QuantizeLinear", ["cat", "sy", "zy"], ["c"], name="q_cat"),
             helper.make_node("DequantizeLinear", ["c", "sy", "zy"], ["cd"], name="dq_c"),
             helper.make_node("Slice", ["cd", "starts", "ends", "axes", "steps"], ["sl"], name="slice"),
             helper.make_node("QuantizeLinear", ["sl", "sy", "zy"], ["s"], name="q_slice"),
             helper.make_node("DequantizeLinear", ["s", "sy", "zy"], ["sd"], name="dq_s"),
             helper.make_node("Resize", ["sd", "", "scales"], ["up"], name="up", mode="nearest"),
             helper.make_node("QuantizeLinear", ["up", "sy", "zy"], ["y"], name="q_up")]
    model = make_model(nodes, [("a", dtype, [1, 3, 4, 4]), ("b", dtype, [1, 1, 4, 4])], [("y", dtype, [1, 6, 4, 6])],
                       inits)
    compiled = check(model, tmp_path, n_random=3, extra_cases=all_code_cases([(1, 3, 4, 4), (1, 1, 4, 4)], dtype))
    assert [n.op for n in compiled.graph.nodes] == ["QLinearConcat", "Slice", "Resize"]


def test_qdq_groups_ort_leaves_in_float_are_refused(tmp_path):
    inits = {"s": scalar(0.02, np.float32), "z": scalar(3, "uint8"), "s2": scalar(0.04, np.float32),
             "scales": np.array([1, 1, 2, 2], np.float32), "starts": np.array([1], np.int64), "ends": np.array([3], np.int64)}
    linear = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
              helper.make_node("Resize", ["xd", "", "scales"], ["r"], name="up", mode="linear"),
              helper.make_node("QuantizeLinear", ["r", "s", "z"], ["y"], name="q")]
    model = make_model(linear, [("x", "uint8", [1, 1, 3, 3])], [("y", "uint8", None)], inits)
    assert "mode is 'linear'" in refused(model, tmp_path)
    requantizing = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xd"], name="dq"),
                    helper.make_node("Slice", ["xd", "starts", "ends"], ["r"], name="slice"),
                    helper.make_node("QuantizeLinear", ["r", "s2", "z"], ["y"], name="q")]
    model = make_model(requantizing, [("x", "uint8", [4, 3])], [("y", "uint8", None)], inits)
    assert "different scales or zero points" in refused(model, tmp_path)


# --- refusals ------------------------------------------------------------------------------


def test_unsupported_variants_are_refused_by_name(tmp_path):
    x = [("x", "uint8", [1, 2, 4, 4])]
    scales = {"scales": np.array([1, 1, 2, 2], np.float32)}

    def resize(**attrs):
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs)
        return make_model([node], x, [("y", "uint8", None)], scales, opset=19)

    assert "mode 'linear' is not supported" in refused(resize(mode="linear"), tmp_path)
    assert "tf_crop_and_resize" in refused(resize(mode="nearest", coordinate_transformation_mode="tf_crop_and_resize"),
                                           tmp_path)
    sizes = {"sizes": np.array([8, 8], np.int64)}
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", mode="nearest", axes=[-2, -1],
                            keep_aspect_ratio_policy="not_larger")
    assert "ORT ignores them" in refused(make_model([node], x, [("y", "uint8", None)], sizes, opset=19), tmp_path)

    node = helper.make_node("Slice", ["x", "starts", "ends"], ["y"], name="slice")
    model = make_model([node], x + [("starts", "int64", [1])], [("y", "uint8", None)], {"ends": np.array([2], np.int64)})
    assert "must be a constant" in refused(model, tmp_path)

    inits = {}
    node = qlinearconcat_node("c", 0.1, 3, [("x", 0.1, 3), ("w", 0.2, 0)], "uint8", 1, inits)
    model = make_model([node], x + [("w", "int8", [1, 2, 4, 4])], [("c", "uint8", None)], inits)
    assert "input 1 is int8 but the output is uint8" in refused(model, tmp_path)
