"""Float islands (elementwise float chains between DequantizeLinear and QuantizeLinear) become lookup
tables that equal ORT on all 256 codes of every channel, through the whole pipeline: C == reference
== ORT."""

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import check_exact, make_model, scalar
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model
from qcc.runtimes import ort as ort_reference

C = 12
RNG = np.random.default_rng(0)
BN = dict(bn_s=RNG.uniform(0.5, 1.5, C).astype(np.float32), bn_b=(RNG.standard_normal(C) * 0.2).astype(np.float32),
          bn_m=(RNG.standard_normal(C) * 0.2).astype(np.float32), bn_v=RNG.uniform(0.5, 2, C).astype(np.float32))


def bn(out="b", x="xd"):
    return helper.make_node("BatchNormalization", [x, "bn_s", "bn_b", "bn_m", "bn_v"], [out], name="bn", epsilon=1e-3)


ISLANDS = {
    "requantize": ([], {}, False),
    "batchnorm": ([bn()], BN, True),
    "batchnorm-relu": ([bn(), helper.make_node("Relu", ["b"], ["r"], name="relu")], BN, True),
    "hardsigmoid": ([helper.make_node("HardSigmoid", ["xd"], ["h"], name="hs", alpha=1 / 6, beta=0.5)], {}, False),
    "hardsigmoid-0.2": ([helper.make_node("HardSigmoid", ["xd"], ["h"], name="hs", alpha=0.2, beta=0.4)], {}, False),
    "relu": ([helper.make_node("Relu", ["xd"], ["r"], name="relu")], {}, False),
    "clip": ([helper.make_node("Clip", ["xd", "lo", "hi"], ["r"], name="clip")],
             {"lo": np.float32(-0.7), "hi": np.float32(1.3)}, False),
    # (a LeakyRelu alone is a QDQ group ORT fuses into QLinearLeakyRelu; after BatchNormalization it is float)
    "batchnorm-leakyrelu": ([bn(), helper.make_node("LeakyRelu", ["b"], ["r"], name="lr", alpha=0.1)], BN, True),
    "mul-per-channel": ([helper.make_node("Mul", ["xd", "m"], ["r"], name="mul")],
                        {"m": RNG.uniform(-2, 2, (C, 1, 1)).astype(np.float32)}, True),
    "scalar-add-then-div": ([helper.make_node("Add", ["a", "xd"], ["t"], name="add"),
                             helper.make_node("Div", ["t", "d"], ["r"], name="div")],
                            {"a": np.float32(0.3), "d": np.float32(1.7)}, False),
    "prelu-per-channel": ([helper.make_node("PRelu", ["xd", "slope"], ["r"], name="prelu")],
                          {"slope": RNG.uniform(-0.5, 0.5, C).astype(np.float32)}, True),
    # LeakyRelu as exporters also write it: Max(x, alpha * x), x read twice
    "max-of-x-and-alpha-x": ([helper.make_node("Mul", ["xd", "alpha"], ["m"], name="mul"),
                              helper.make_node("Max", ["xd", "m"], ["r"], name="max")],
                             {"alpha": np.float32(0.1)}, False),
    # HardSwish as exporters write it before opset 14 (and as ORT expands it): x * HardSigmoid(x)
    "hardsigmoid-mul": ([helper.make_node("HardSigmoid", ["xd"], ["h"], name="hs", alpha=1 / 6, beta=0.5),
                         helper.make_node("Mul", ["xd", "h"], ["r"], name="mul")], {}, False),
    "min-max-clamp": ([helper.make_node("Max", ["xd", "lo"], ["t"], name="max"),
                       helper.make_node("Min", ["hi", "t"], ["r"], name="min")],
                      {"lo": np.float32(-0.4), "hi": np.float32(0.9)}, False),
}


def island_model(chain, inits, dtype, rank, zeros, opset=13):
    z_in, z_out = zeros
    inits = {**inits, "s_in": scalar(0.037, np.float32), "z_in": scalar(z_in, dtype),
             "s_out": scalar(0.021, np.float32), "z_out": scalar(z_out, dtype)}
    shape = [256, C] if rank == 2 else [1, C, 16, 16]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["xd"], name="dq"), *chain,
             helper.make_node("QuantizeLinear", [chain[-1].output[0] if chain else "xd", "s_out", "z_out"], ["y"], name="q")]
    return make_model(nodes, [("x", dtype, shape)], [("y", dtype, shape)], inits, opset=opset), shape


def every_code_in_every_channel(dtype, shape):
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    if len(shape) == 2:
        return np.repeat(codes[:, None], shape[1], axis=1)
    return np.broadcast_to(codes.reshape(1, 1, 16, 16), shape).copy()


@pytest.mark.parametrize("dtype, zeros", [("uint8", (7, 100)), ("uint8", (0, 255)), ("int8", (-7, 3)), ("int8", (-128, 127))])
@pytest.mark.parametrize("island", list(ISLANDS))
def test_island_equals_ort_on_every_code_of_every_channel(tmp_path, island, dtype, zeros):
    chain, inits, per_channel = ISLANDS[island]
    rank = 4 if island == "mul-per-channel" else 2
    model, shape = island_model(chain, inits, dtype, rank, zeros)
    compiled = check_exact(model, tmp_path, n_random=2, extra_cases=[[every_code_in_every_channel(dtype, shape)]])
    (node,) = compiled.graph.nodes
    assert node.op == "FloatIsland"
    # per-channel parameters give one table per channel, unless every channel's table is the same
    assert node.params["table"].shape in ([(C, 256), (1, 256)] if per_channel else [(1, 256)])


@pytest.mark.parametrize("dtype, zeros", [("uint8", (7, 100)), ("uint8", (0, 255)), ("int8", (-7, 3)), ("int8", (-128, 127))])
def test_hard_swish_equals_ort_on_every_code(tmp_path, dtype, zeros):
    """HardSwish (opset 14): ORT runs it in float beside its DequantizeLinear and QuantizeLinear."""
    model, shape = island_model([helper.make_node("HardSwish", ["xd"], ["r"], name="hswish")], {}, dtype, 2, zeros, opset=14)
    compiled = check_exact(model, tmp_path, n_random=2, extra_cases=[[every_code_in_every_channel(dtype, shape)]])
    (node,) = compiled.graph.nodes
    assert node.op == "FloatIsland" and node.attrs["onnx_op"] == "HardSwish"


def test_ort_expands_hard_swish_into_hard_sigmoid_and_mul():
    """What qcc's HardSwish computes rests on this: ORT has no HardSwish kernel and inlines ONNX's
    function body, HardSigmoid(alpha = f32(1/6), beta = 0.5) then Mul with x."""
    model, _ = island_model([helper.make_node("HardSwish", ["xd"], ["r"], name="hswish")], {}, "uint8", 2, (7, 100),
                            opset=14)
    graph = ort_reference.optimized_model(model).graph
    ops = [n.op_type for n in graph.node]
    assert ops == ["DequantizeLinear", "HardSigmoid", "Mul", "QuantizeLinear"], ops
    hard_sigmoid, mul = graph.node[1], graph.node[2]
    attrs = {a.name: helper.get_attribute_value(a) for a in hard_sigmoid.attribute}
    assert attrs == {"alpha": float(np.float32(1 / 6)), "beta": 0.5}
    assert sorted(mul.input) == sorted(["xd", hard_sigmoid.output[0]])


def test_hard_swish_before_opset_14_is_refused_by_name(tmp_path):
    """HardSwish does not exist before opset 14: no rule covers it, and the message says so."""
    model, _ = island_model([helper.make_node("HardSwish", ["xd"], ["r"], name="hswish")], {}, "uint8", 2, (7, 100))
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(QccError, match="hswish"):
        compile_model(path, Options())
