"""Untrusted models are validated before use: each broken invariant is one line naming the file
and the node or tensor, exit 2, no folder; and the extreme-but-valid parameters that reach the
kernels give C that is exact to ORT and free of undefined behaviour."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import check_exact
from qdq_builder import QdqGraph


def conv_model(**changes) -> onnx.ModelProto:
    g = QdqGraph(13, seed=4)
    x = g.input("x", [1, 3, 6, 6], np.uint8)
    inputs = [x, g.const(np.float32(0.02), "x_scale"), g.const(np.uint8(128), "x_zero"),
              g.const(g.rng.integers(-64, 65, (4, 3, 3, 3)).astype(np.int8), "w"), g.const(np.float32(0.01), "w_scale"),
              g.const(np.int8(0), "w_zero"), g.const(np.float32(0.05), "y_scale"), g.const(np.uint8(100), "y_zero")]
    g.output(g.node("QLinearConv", inputs, name="conv", **{"kernel_shape": [3, 3], **changes.get("attrs", {})}), "y",
             np.uint8, None)
    model = g.model()
    init = {i.name: i for i in model.graph.initializer}
    for name, value in changes.get("inits", {}).items():
        init[name].CopyFrom(onnx.numpy_helper.from_array(value, name))
    return model


def broken(case: str) -> onnx.ModelProto:
    model = conv_model()
    graph = model.graph
    if case == "no outputs":
        del graph.output[:]
    elif case == "a tensor defined twice":
        graph.node.append(helper.make_node("Identity", ["x"], ["y"], name="again"))
    elif case == "an undefined input":
        graph.node[0].input[3] = "nowhere"
    elif case == "a cycle":
        graph.node.append(helper.make_node("Identity", ["z"], ["w2"], name="first"))
        graph.node.append(helper.make_node("Identity", ["w2"], ["z"], name="second"))
    elif case == "dims that disagree with the data":
        next(i for i in graph.initializer if i.name == "w").dims[0] = 5
    elif case == "an int32 zero point":
        return conv_model(inits={"x_zero": np.int32(300)})
    elif case == "a subnormal scale":
        return conv_model(inits={"y_scale": np.float32(1e-40)})
    elif case == "zero strides":
        return conv_model(attrs={"strides": [0, 1]})
    elif case == "three kernel dims":
        return conv_model(attrs={"kernel_shape": [3, 3, 3]})
    elif case == "an unknown element type":
        graph.input[0].type.tensor_type.elem_type = 999
    return model


MESSAGES = {
    "no outputs": "the graph has no outputs",
    "a tensor defined twice": "tensor 'y' is defined twice",
    "an undefined input": "node 'conv' (QLinearConv) reads 'nowhere', which no graph input, initializer or earlier node",
    "a cycle": "node 'first' (Identity) reads 'z', which no graph input, initializer or earlier node defines",
    "dims that disagree with the data": "initializer 'w' cannot be read",
    "an int32 zero point": "the input zero point is int32; it must be int8 or uint8",
    "a subnormal scale": "the output scale 9.99995e-41 is subnormal",
    "zero strides": "strides [0, 1] must be 1 or more",
    "three kernel dims": "kernel_shape",
    "an unknown element type": "graph input 'x' has element type 999",
}


def compile_cli(tmp_path, model_bytes: bytes, *extra: str):
    path = tmp_path / "m.onnx"
    path.write_bytes(model_bytes)
    return subprocess.run([sys.executable, "-m", "qcc.cli", "compile", str(path), "-o", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", list(MESSAGES))
def test_broken_models_are_refused_in_one_line(tmp_path, case):
    run = compile_cli(tmp_path, broken(case).SerializeToString())
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("qcc: error: "), run.stderr
    assert str(tmp_path / "m.onnx") in lines[0] and MESSAGES[case] in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--input-shape", "x=1,3,65536,65536"], "input 'x' would have 12884901888 elements; qcc's limit is 2^28"),
    (["--golden", "100000000"], "--golden 100000000: 100000000 cases of 172 bytes exceed the golden test's limit"),
])
def test_sizes_beyond_the_limits_are_refused_up_front(tmp_path, extra, message):
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    run = compile_cli(tmp_path, model.SerializeToString(), *(extra if extra[0] != "--golden" else
                                                              ["--input-shape", "x=1,3,6,6", *extra]))
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    """(/proc refuses new folders even to root.)"""
    run = compile_cli(tmp_path, conv_model().SerializeToString())
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "qcc.cli", "compile", str(tmp_path / "m.onnx"), "-o",
                          "/proc/qcc_cannot_write_here/out"], capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("qcc: error: /proc/qcc_cannot_write_here"), run.stderr


@pytest.mark.parametrize("op", ["QLinearMul", "QLinearAdd"])
@pytest.mark.parametrize("y_scale", [1e-30, 1e-7, 1e30, 3e38])
def test_extreme_output_scales_are_exact_or_refused_by_name(tmp_path, op, y_scale):
    """QLinearMul with a tiny output scale once shifted a uint64 by 98 (undefined in C): every
    value now either runs exact to ORT (the golden test also runs under UBSan in the fuzz test) or
    is refused with the numbers."""
    g = QdqGraph(13)
    a, b = g.input("a", [2, 8], np.uint8), g.input("b", [2, 8], np.uint8)
    y = g.node(op, [a, g.const(np.float32(0.05)), g.const(np.uint8(128)), b, g.const(np.float32(0.02)),
                    g.const(np.uint8(100)), g.const(np.float32(y_scale)), g.const(np.uint8(7))], domain="com.microsoft",
               name="op")
    g.output(y, "y", np.uint8, [2, 8])
    from qcc.errors import QccError

    try:
        check_exact(g.model(), tmp_path, n_random=4)
    except QccError as error:
        assert op == "QLinearAdd" and "scale ratios" in str(error), error


def test_the_output_folder_gets_the_umask_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        assert compile_cli(tmp_path, conv_model().SerializeToString()).returncode == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # (the subprocess inherited umask 022)
