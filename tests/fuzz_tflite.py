"""The mutation fuzzer for `.tflite` input (tests/fuzz.py does ONNX): small valid models written with the
flatbuffers builder, each mutated as an attacker or a careless converter would: corrupted and truncated
flatbuffers, operator and graph indices out of range, buffers out of range or shorter than their shape,
absurd and negative shapes, hostile names, unknown op codes and versions, bad scales and zero points,
wrong types, options out of their enums, subgraph counts of 0 and 2, and for a streaming model with
resource variables: initialisation subgraphs that compute or do not exist, resources from nowhere.

The promise is the ONNX one (fuzz.run_mutant): exit 0, or exit 2 with exactly one line and no folder
left; never a traceback or a timeout. A sample of the compiled mutants is built with ASan and UBSan and
must equal the reference interpreter on extreme inputs.

    python tests/fuzz_tflite.py [--mutants 3000] [--seed 1] [--sanitize 100]   (the long run)
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz import HOSTILE, command_line  # noqa: E402
from fuzz import fuzz as fuzz_models  # noqa: E402
from tflite_builder import TfliteBuilder  # noqa: E402

BAD_SCALES = [0.0, -1.0, float("nan"), float("inf"), 1e-45, 1e30, 1e-30, 3.4e38]


def _conv_chain() -> TfliteBuilder:
    """CONV_2D -> DEPTHWISE_CONV_2D -> ADD (residual) -> AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX."""
    rng = np.random.default_rng(0)
    b = TfliteBuilder()
    x = b.input("input", (1, 6, 6, 2), "int8", scale=0.05, zero_point=-3)
    w = b.const("conv_w", rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8), scale=[0.01, 0.02, 0.015, 0.01],
                zero_point=[0, 0, 0, 0], quantized_dimension=0)
    bias = b.const("conv_b", rng.integers(-500, 500, 4).astype(np.int32), scale=[5e-4, 1e-3, 7.5e-4, 5e-4],
                   zero_point=[0, 0, 0, 0])
    h = b.tensor("conv", (1, 6, 6, 4), "int8", scale=0.1, zero_point=-128)
    b.op("CONV_2D", [x, w, bias], [h], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1,
                                                               fused_activation_function="RELU"))
    dw = b.const("dw_w", rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8), scale=[0.02] * 4,
                 zero_point=[0] * 4, quantized_dimension=3)
    dwb = b.const("dw_b", rng.integers(-500, 500, 4).astype(np.int32), scale=[2e-3] * 4, zero_point=[0] * 4)
    d = b.tensor("dw", (1, 6, 6, 4), "int8", scale=0.1, zero_point=-128)
    b.op("DEPTHWISE_CONV_2D", [h, dw, dwb], [d], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1,
                                                                          depth_multiplier=1))
    s = b.tensor("sum", (1, 6, 6, 4), "int8", scale=0.15, zero_point=-100)
    b.op("ADD", [h, d], [s], version=2)
    p = b.tensor("pool", (1, 1, 1, 4), "int8", scale=0.15, zero_point=-100)
    b.op("AVERAGE_POOL_2D", [s], [p], version=2, options=dict(padding="VALID", stride_h=1, stride_w=1,
                                                               filter_height=6, filter_width=6))
    r = b.tensor("flat", (1, 4), "int8", scale=0.15, zero_point=-100)
    b.op("RESHAPE", [p, b.const("shape", np.array([1, 4], np.int32))], [r], options=dict(new_shape=[1, 4]))
    fw = b.const("fc_w", rng.integers(-127, 128, (3, 4)).astype(np.int8), scale=0.02, zero_point=0)
    fb = b.const("fc_b", rng.integers(-500, 500, 3).astype(np.int32), scale=3e-3, zero_point=0)
    logits = b.tensor("logits", (1, 3), "int8", scale=0.2, zero_point=5)
    b.op("FULLY_CONNECTED", [r, fw, fb], [logits], version=4)
    y = b.tensor("probs", (1, 3), "int8", scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [logits], [y], version=2, options=dict(beta=1.0))
    b.output(y)
    return b


def _mlp() -> TfliteBuilder:
    rng = np.random.default_rng(1)
    b = TfliteBuilder()
    x = b.input("x", (2, 8), "int8", scale=0.1, zero_point=0)
    w = b.const("w", rng.integers(-127, 128, (5, 8)).astype(np.int8), scale=0.01, zero_point=0)
    bias = b.const("b", rng.integers(-100, 100, 5).astype(np.int32), scale=1e-3, zero_point=0)
    y = b.tensor("y", (2, 5), "int8", scale=0.05, zero_point=-10)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], version=4, options=dict(fused_activation_function="RELU6"))
    b.output(y)
    return b


def _stream() -> TfliteBuilder:
    """A Keras stream layer: CALL_ONCE (initialisation subgraph 1), VAR_HANDLE, READ_VARIABLE, CONCATENATION over
    time, STRIDED_SLICE kept by ASSIGN_VARIABLE, and a convolution over the concatenation."""
    rng = np.random.default_rng(2)
    b = TfliteBuilder()
    x = b.input("frame", (1, 1, 4, 2), "int8", scale=0.05, zero_point=-3)
    res = b.tensor("res", (), "resource")
    state = b.tensor("state", (1, 2, 4, 2), "int8", scale=0.05, zero_point=-3)
    cat = b.tensor("cat", (1, 3, 4, 2), "int8", scale=0.05, zero_point=-3)
    new = b.tensor("new_state", (1, 2, 4, 2), "int8", scale=0.05, zero_point=-3)
    w = b.const("conv_w", rng.integers(-127, 128, (3, 3, 1, 2)).astype(np.int8), scale=[0.01] * 3, zero_point=[0] * 3,
                quantized_dimension=0)
    bias = b.const("conv_b", rng.integers(-500, 500, 3).astype(np.int32), scale=[5e-4] * 3, zero_point=[0] * 3)
    y = b.tensor("y", (1, 1, 4, 3), "int8", scale=0.1, zero_point=2)
    b.op("CALL_ONCE", [], [], options=dict(init_subgraph_index=1))
    b.op("VAR_HANDLE", [], [res], options=dict(container="", shared_name="stream"))
    b.op("READ_VARIABLE", [res], [state])
    b.op("CONCATENATION", [state, x], [cat], options=dict(axis=1))
    b.op("STRIDED_SLICE", [cat, b.const("begin", np.array([0, 1, 0, 0], np.int32)),
                           b.const("end", np.array([1, 3, 4, 2], np.int32)),
                           b.const("strides", np.array([1, 1, 1, 1], np.int32))], [new])
    b.op("ASSIGN_VARIABLE", [res, new], [])
    b.op("CONV_2D", [cat, w, bias], [y], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1))
    b.output(y)
    init = b.subgraph()
    r2 = init.tensor("res", (), "resource")
    value = init.const("init", np.full((1, 2, 4, 2), 5, np.int8), scale=0.05, zero_point=-3)
    init.op("VAR_HANDLE", [], [r2], options=dict(container="", shared_name="stream"))
    init.op("ASSIGN_VARIABLE", [r2, value], [])
    return b


def _sixteen() -> TfliteBuilder:
    """16x8: int16 activations, per-channel int8 weights, int64 biases; CONV_2D, DEPTHWISE_CONV_2D, ADD, SOFTMAX."""
    rng = np.random.default_rng(3)
    b = TfliteBuilder()
    x = b.input("x", (1, 5, 5, 2), "int16", scale=0.0005, zero_point=0)
    w = b.const("w", rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8), scale=[0.01] * 3, zero_point=[0] * 3,
                quantized_dimension=0)
    bias = b.const("b", rng.integers(-9000, 9000, 3).astype(np.int64), scale=[5e-6] * 3, zero_point=[0] * 3)
    h = b.tensor("h", (1, 5, 5, 3), "int16", scale=0.002, zero_point=0)
    b.op("CONV_2D", [x, w, bias], [h], version=4, options=dict(padding="SAME", stride_h=1, stride_w=1,
                                                               fused_activation_function="RELU"))
    dw = b.const("dw", rng.integers(-127, 128, (1, 3, 3, 3)).astype(np.int8), scale=[0.02] * 3, zero_point=[0] * 3,
                 quantized_dimension=3)
    db = b.const("db", rng.integers(-9000, 9000, 3).astype(np.int64), scale=[4e-5] * 3, zero_point=[0] * 3)
    d = b.tensor("d", (1, 5, 5, 3), "int16", scale=0.003, zero_point=0)
    b.op("DEPTHWISE_CONV_2D", [h, dw, db], [d], version=3, options=dict(padding="SAME", stride_h=1, stride_w=1,
                                                                        depth_multiplier=1))
    s = b.tensor("s", (1, 5, 5, 3), "int16", scale=0.004, zero_point=0)
    b.op("ADD", [h, d], [s], version=3)
    y = b.tensor("y", (1, 5, 5, 3), "int16", scale=1 / 32768, zero_point=0)
    b.op("SOFTMAX", [s], [y], version=3, options=dict(beta=1.0))
    b.output(y)
    return b


def _lstm() -> TfliteBuilder:
    """An int8 UNIDIRECTIONAL_SEQUENCE_LSTM (24 inputs, variable hidden and cell states) as the converter writes it."""
    rng = np.random.default_rng(4)
    b = TfliteBuilder()
    x = b.input("x", (1, 3, 4), "int8", scale=0.02, zero_point=-3)
    inputs = [x] + [b.const(f"w{k}", rng.integers(-127, 128, (2, 4 if k < 4 else 2)).astype(np.int8), scale=0.01,
                            zero_point=0) for k in range(8)]
    inputs += [-1, -1, -1] + [b.const(f"b{k}", rng.integers(-900, 900, 2).astype(np.int32), scale=1e-4, zero_point=0)
                              for k in range(4)] + [-1, -1]
    inputs.append(b.tensor("h", (1, 2), "int8", scale=0.008, zero_point=0, is_variable=True))
    inputs.append(b.tensor("c", (1, 2), "int16", scale=2.0**-11, zero_point=0, is_variable=True))
    inputs += [-1, -1, -1, -1]
    y = b.tensor("y", (1, 3, 2), "int8", scale=0.008, zero_point=0)
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], options=dict(fused_activation_function="TANH", cell_clip=5.0))
    b.output(y)
    return b


SEEDS = (_conv_chain, _mlp, _stream, _sixteen, _lstm)
_ACTIVATION_TABLES = {"Conv2DOptions", "DepthwiseConv2DOptions", "AddOptions", "FullyConnectedOptions", "Pool2DOptions"}


def _mutate_tables(b: TfliteBuilder, rng: np.random.Generator) -> tuple[dict, str]:
    """Change the builder's tensors or operators in place; returns build() keywords and the mutation's name."""
    tensor = b.tensors[int(rng.integers(len(b.tensors)))]
    op = b.ops[int(rng.integers(len(b.ops)))]
    kind = str(rng.choice([
        "op input out of range", "op output out of range", "buffer out of range", "short buffer", "negative dim",
        "huge dim", "zero dim", "hostile name", "unknown op code", "op version 99", "bad scale", "zero point range",
        "int16 tensor", "float tensor", "no quantization", "per-axis length", "wrong declared shape", "stride 0",
        "padding enum", "activation enum", "filter zero point", "graph input out of range", "no outputs",
        "subgraphs 0", "subgraphs 2", "custom op", "duplicate output", "drop an input", "big kernel",
        "init subgraph index", "init computes", "resource from nowhere", "variable shared name"]))
    build = {}
    if kind == "op input out of range" and op["inputs"]:
        op["inputs"][int(rng.integers(len(op["inputs"])))] = int(rng.choice([len(b.tensors), 10**6, -7]))
    elif kind == "op output out of range" and op["outputs"]:
        op["outputs"][0] = int(rng.choice([len(b.tensors), 2**31 - 1]))
    elif kind == "buffer out of range":
        tensor["buffer"] = int(rng.choice([10**6, 2**32 - 1]))
    elif kind == "short buffer" and tensor["data"] is not None:
        tensor["data"] = tensor["data"][: max(0, len(tensor["data"]) - int(rng.integers(1, 4)))]
    elif kind == "negative dim" and tensor["shape"]:
        tensor["shape"][int(rng.integers(len(tensor["shape"])))] = -1
    elif kind == "huge dim" and tensor["shape"]:
        tensor["shape"][0] = int(rng.choice([2**31 - 1, 2**20]))
    elif kind == "zero dim" and tensor["shape"]:
        tensor["shape"][-1] = 0
    elif kind == "hostile name":
        tensor["name"] = str(rng.choice(HOSTILE))
    elif kind == "unknown op code":
        op["code"], op["deprecated"] = int(rng.choice([250, 2**20, 127])), 127
    elif kind == "op version 99":
        op["version"] = 99
    elif kind == "bad scale" and tensor["quantization"]:
        q = tensor["quantization"]
        q["scale"] = np.full(np.asarray(q["scale"]).shape, rng.choice(BAD_SCALES), np.float32)
    elif kind == "zero point range" and tensor["quantization"]:
        q = tensor["quantization"]
        q["zero_point"] = np.full(np.asarray(q["zero_point"]).shape, int(rng.choice([200, -300, 2**40])), np.int64)
    elif kind == "int16 tensor" and tensor["data"] is None:
        tensor["dtype"] = 7  # INT16
    elif kind == "float tensor" and tensor["data"] is None:
        tensor["dtype"] = 0  # FLOAT32
    elif kind == "no quantization":
        tensor["quantization"] = None
    elif kind == "per-axis length" and tensor["quantization"]:
        tensor["quantization"]["scale"] = np.full(3, 0.01, np.float32)
        tensor["quantization"]["zero_point"] = np.zeros(3, np.int64)
    elif kind == "wrong declared shape" and tensor["shape"]:
        tensor["shape"][-1] += int(rng.integers(1, 3))
    elif kind == "stride 0" and "stride_h" in op["options"]:
        op["options"]["stride_h"] = 0
    elif kind == "padding enum" and "padding" in op["options"]:
        op["options"]["padding"] = 7
    elif kind == "activation enum" and op["table"] in _ACTIVATION_TABLES:
        op["options"]["fused_activation_function"] = int(rng.choice([4, 5, 9]))
    elif kind == "filter zero point":
        for t in b.tensors:
            if t["data"] is not None and t["quantization"] and t["name"].endswith("_w"):
                t["quantization"]["zero_point"] = np.full(np.asarray(t["quantization"]["zero_point"]).shape, 3, np.int64)
    elif kind == "graph input out of range":
        build["inputs"] = [len(b.tensors) + 5]
    elif kind == "no outputs":
        build["outputs"] = []
    elif kind == "subgraphs 0":
        build["subgraph_count"] = 0
    elif kind == "subgraphs 2":
        build["subgraph_count"] = 2
    elif kind == "custom op":
        op["code"], op["deprecated"], op["custom_code"] = 32, 32, "MyOp"
    elif kind == "duplicate output" and len(b.ops) > 1:
        b.ops[-1]["outputs"] = list(b.ops[0]["outputs"])
    elif kind == "drop an input" and len(op["inputs"]) > 1:
        op["inputs"] = op["inputs"][:-1]
    elif kind == "big kernel" and "filter_height" in op["options"]:
        op["options"]["filter_height"] = 1000
    elif kind == "init subgraph index" and "init_subgraph_index" in op["options"]:
        op["options"]["init_subgraph_index"] = int(rng.choice([0, 5, -1, 2**31 - 1]))
    elif kind == "init computes" and b.subgraphs:
        init = b.subgraphs[0]
        value = init.ops[-1]["inputs"][1]
        init.op("ADD", [value, value], [value], version=1)
    elif kind == "resource from nowhere" and b.subgraphs:
        for candidate in b.ops:
            if candidate["inputs"] and b.tensors[candidate["inputs"][0]]["dtype"] == 13:  # a variable op's resource
                candidate["inputs"][0] = int(rng.choice([0, len(b.tensors) - 1]))
                break
    elif kind == "variable shared name" and "shared_name" in op["options"]:
        op["options"]["shared_name"] = str(rng.choice(HOSTILE))
    return build, kind


def mutate(seed_builder, rng: np.random.Generator) -> tuple[bytes, str]:
    b = seed_builder()
    if rng.random() < 0.35:  # bytes: corrupt the flatbuffer itself, keeping its identifier
        data = bytearray(b.build())
        kind = str(rng.choice(["flip", "truncate", "zero run", "random tail"]))
        if kind == "flip":
            for _ in range(int(rng.integers(1, 12))):
                position = int(rng.integers(8, len(data)))
                data[position] ^= 1 << int(rng.integers(8))
        elif kind == "truncate":
            data = data[: int(rng.integers(8, len(data)))]
        elif kind == "zero run":
            start = int(rng.integers(8, len(data)))
            data[start:start + int(rng.integers(1, 64))] = bytes(min(64, len(data) - start))[: len(data[start:start + 64])]
        else:
            data = data[:8] + bytes(rng.integers(0, 256, int(rng.integers(8, 400)), dtype=np.uint8))
        return bytes(data), f"bytes: {kind}"
    build, kind = _mutate_tables(b, rng)
    if rng.random() < 0.3:  # a second mutation on top
        more, second = _mutate_tables(b, rng)
        build.update(more)
        kind = f"{kind}+{second}"
    return b.build(**build), kind


def tflite_mutant(i: int, rng: np.random.Generator) -> tuple[bytes, str]:
    return mutate(SEEDS[i % len(SEEDS)], rng)


def fuzz(mutants: int, seed: int, sanitize_count: int, report=print) -> Counter:
    return fuzz_models(mutants, seed, sanitize_count, report, make_mutant=tflite_mutant, suffix=".tflite")


if __name__ == "__main__":
    command_line(__doc__.splitlines()[0], mutants=3000, sanitize_count=100, make_mutant=tflite_mutant, suffix=".tflite")
