"""What the tests of the specialised convolution and fully connected kernels share: which kernels the
generated C calls, and running a model's golden test on the Cortex-M0 and M4 boards and with clang."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx
import pytest
from helpers import STRICT_CFLAGS, check_exact
from test_targets import ARM_CFLAGS, make

from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import extreme_inputs, random_inputs
from qcc.toolchain.build import make as make_host

SCHEMES = ("ort", "tflm", "single")
needs_arm_tools = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                     reason="needs arm-none-eabi-gcc and qemu-system-arm")


def kernel_calls(folder: Path) -> list[str]:
    """The conv and fully connected kernels model.c calls, in order."""
    source = "".join(p.read_text() for p in folder.glob("*.c") if not p.name.startswith("test_"))
    return re.findall(r"\b(qcc_(?:conv(?:_gemm|_depthwise_3x3|_depthwise)?|fully_connected)_[su]8)\(", source)


def compiled_kernel_calls(tmp_path: Path, model: onnx.ModelProto) -> list[str]:
    """The kernels (kernel_calls) of the model compiled for the host."""
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    compile_to_folder(path, tmp_path / "out", Options())
    return kernel_calls(tmp_path / "out")


def check_exact_with_wrapping(model: onnx.ModelProto, tmp_path: Path, wide_weights: bool = False) -> None:
    """C == reference == ORT on the host in every scheme (helpers.check_exact), and some layer's
    accumulators do reach past int32 (the models' wrapping layers)."""
    compiled = check_exact(model, tmp_path, n_random=3, wide_weights=wide_weights)
    ranges = [n.params["acc_range"] for n in compiled.graph.nodes if "acc_range" in n.params]
    assert any(not r.int32_safe for r in ranges)


def check_exact_on_cortex_m0_and_m4(tmp_path: Path, model: onnx.ModelProto, scheme: str, kernel: str | None,
                                    boards=("cortex-m0", "cortex-m4"), extra_cflags: str = "",
                                    wide_weights: bool = False) -> None:
    """The golden test (seeded random and extreme inputs) passes on the boards, and every conv or
    fully connected layer of the model runs `kernel` (None: a model of other layers). The folder is
    compiled for the smallest board asked for: the M0's 16 KiB of RAM refuse larger models."""
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    graph = compile_model(path).graph
    cases = random_inputs(graph, 2, seed=1) + extreme_inputs(graph)
    target = "cortex-m0" if "cortex-m0" in boards else boards[0]
    compile_to_folder(path, tmp_path / "out", Options(target=target, rounding=scheme, wide_weights=wide_weights),
                      golden=cases)
    assert set(kernel_calls(tmp_path / "out")) == ({kernel} if kernel else set())
    for board in boards:
        result = make(tmp_path / "out", f"run-{board}", f"{ARM_CFLAGS} {extra_cflags}".rstrip())
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"OK: {len(cases)} case(s), every output value exact" in result.stdout + result.stderr


def check_builds_with_clang(tmp_path: Path, model: onnx.ModelProto) -> None:
    if not shutil.which("clang"):
        pytest.skip("no clang")
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    graph = compile_model(path).graph
    compile_to_folder(path, tmp_path / "out", Options(), golden=random_inputs(graph, 1, seed=2))
    make_host(tmp_path / "out", "check", cflags=STRICT_CFLAGS, variables={"CC": "clang"})
