"""The Python API (qcc/api.py): the README's snippet runs as written, each function returns data
and prints nothing, every error is one QccError carrying the line the command line prints, and
the version and options land in model.json and atop NAME.c, the same bytes on every run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import qcc
from helpers import REPO
from qcc import api
from qcc.cli import main

EXAMPLE = REPO / "examples" / "cnn96_uint8.onnx"


def readme_snippet() -> str:
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_snippet_runs_as_written(tmp_path):
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) == 5
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / EXAMPLE.name).write_bytes(EXAMPLE.read_bytes())
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out_api" / "model.json").read_text())
    assert result.stdout.split() == [str(manifest["arena_bytes"]), str(manifest["weights_bytes"]),
                                     *manifest["command"].split()]
    assert (tmp_path / "out_api" / "cnn96.c").is_file() and (tmp_path / "out_api" / "qcc_cortex-m4.ld").is_file()


def test_compile_returns_the_manifest_and_prints_nothing(tmp_path, capsys):
    manifest = qcc.compile(EXAMPLE, tmp_path / "out", name="net", rounding="single", golden=2, whole_tensors=True)
    assert capsys.readouterr() == ("", "")
    assert manifest == json.loads((tmp_path / "out" / "model.json").read_text())
    assert manifest["name"] == "net" and manifest["rounding"] == "single" and manifest["golden_cases"] == 2
    assert manifest["options"]["whole_tensors"] is True and manifest["options"]["golden"] == 2
    with_report = qcc.compile(EXAMPLE, tmp_path / "again", report=True)
    assert with_report["memory_report"].splitlines()[-1].startswith("memory: liveness bound")
    assert "memory_report" not in json.loads((tmp_path / "again" / "model.json").read_text())


def test_verify_and_inspect_return_data(capsys):
    report = qcc.verify(EXAMPLE, n=2)
    assert report["ok"] is True and report["cases"] == 5  # 2 random and 3 extreme sets
    pairs = report["outputs"]["logits"]
    assert pairs["C vs ORT"]["exact"] == pairs["C vs ORT"]["compared"] == 5 * 10
    assert "C == reference == ONNX Runtime on every value" in report["table"]
    facts = qcc.inspect(EXAMPLE)
    assert [row["op"] for row in facts["layers"]][0] == "QLinearConv"
    assert facts["macs"] == sum(row["macs"] for row in facts["layers"]) > 0
    assert facts["text"].splitlines()[0].endswith("8 ONNX nodes")
    assert capsys.readouterr() == ("", "")


def cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qcc: error: ") and err.count("\n") == 1
    return err[len("qcc: error: "):-1]


@pytest.mark.parametrize("call, argv", [
    (lambda out: qcc.compile("missing.onnx", out), ["compile", "missing.onnx", "-o", "{out}"]),
    (lambda out: qcc.compile(EXAMPLE, out, name="bad name"), ["compile", str(EXAMPLE), "-o", "{out}", "--name", "bad name"]),
    (lambda out: qcc.compile(EXAMPLE, out, target="z80"), ["compile", str(EXAMPLE), "-o", "{out}", "--target", "z80"]),
    (lambda out: qcc.compile(EXAMPLE, out, outputs=["no\nsuch"]), ["compile", str(EXAMPLE), "-o", "{out}", "--outputs", "no\nsuch"]),
    (lambda out: qcc.verify(EXAMPLE, fpu=True, target="cortex-m0"), ["verify", str(EXAMPLE), "--fpu", "--target", "cortex-m0"]),
    (lambda out: qcc.inspect(EXAMPLE, input_shape={"nope": [1]}), ["inspect", str(EXAMPLE), "--input-shape", "nope=1"]),
])
def test_errors_are_one_qcc_error_with_the_command_lines_message(call, argv, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(qcc.QccError) as raised:
        call(out)
    assert "\n" not in str(raised.value)
    assert str(raised.value) == cli_error([a.replace("{out}", str(out)) for a in argv], capsys)
    assert not out.exists()


def test_a_system_error_and_an_internal_error_are_qcc_errors_too(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(qcc.QccError, match="file"):
        qcc.compile(EXAMPLE, blocker / "out")  # a folder under a file: an OSError
    monkeypatch.delenv("QCC_TRACEBACK", raising=False)
    monkeypatch.setattr("qcc.commands.compile.compile_model", lambda *a: {}["boom"])
    with pytest.raises(qcc.QccError, match=r"qcc failed on this model \(KeyError: 'boom'\)") as raised:
        qcc.compile(EXAMPLE, tmp_path / "out")
    assert str(raised.value) == cli_error(["compile", str(EXAMPLE), "-o", str(tmp_path / "out")], capsys)


def test_python_options_are_checked_like_flags(tmp_path):
    for bad in ({"input_shape": {"x": [1, 0]}}, {"input_shape": {"x": "1,3"}}, {"state": [("a",)]},
                {"outputs": []}, {"outputs": [""]}, {"name": "qcc_net"}, {"golden": True}, {"golden": -1},
                {"golden": 2.5}):
        with pytest.raises(qcc.QccError):
            qcc.compile(EXAMPLE, tmp_path / "out", **bad)
        assert not (tmp_path / "out").exists()
    with pytest.raises(qcc.QccError, match=r"^nmae: no such option \(the options: name, rounding, "):
        qcc.compile(EXAMPLE, tmp_path / "out", nmae="x")


def test_warnings_are_qcc_warnings(monkeypatch, tmp_path):
    from qcc.pipeline import compile_model as real

    def with_warning(*args):
        compiled = real(*args)
        compiled.warnings.append("an accumulator\nwarning")
        return compiled

    monkeypatch.setattr("qcc.commands.compile.compile_model", with_warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qcc.compile(EXAMPLE, tmp_path / "out")
    assert [(w.category, str(w.message)) for w in caught] == [(qcc.QccWarning, "an accumulator\\nwarning")]


def test_version_everywhere(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    line = capsys.readouterr().out
    assert line.startswith(f"qcc {qcc.__version__} ") and line.count("\n") == 1
    assert "onnxruntime 1.32.0" in line and "tflite-micro " in line
    assert importlib.metadata.version("qcc") == qcc.__version__  # pyproject reads the same one
    manifest = qcc.compile(EXAMPLE, tmp_path / "out", name="kws", target="cortex-m4", golden=1, outputs=["logits"],
                           arena_section=".my_arena")
    assert manifest["qcc_version"] == qcc.__version__
    assert manifest["options"] == {"name": "kws", "rounding": "ort", "float_io": False, "input_shapes": {},
                                   "inputs": [], "outputs": ["logits"], "target": "cortex-m4", "fpu": False,
                                   "weights_section": None, "arena_section": ".my_arena", "whole_tensors": False,
                                   "io_in_arena": False, "state": [], "wide_weights": False, "golden": 1}
    assert manifest["command"] == ("qcc compile cnn96_uint8.onnx --name kws --rounding ort --outputs logits "
                                   "--target cortex-m4 --arena-section .my_arena --golden 1")
    head = (tmp_path / "out" / "kws.c").read_text().splitlines()[:2]
    assert head == [f"/* kws.c: generated by qcc {qcc.__version__} from cnn96_uint8.onnx. Do not edit.",
                    f" * Made by: {manifest['command']}"]


def test_the_recorded_command_makes_the_same_bytes_elsewhere(tmp_path, monkeypatch):
    """The command in model.json, run from another folder on a copy of the model, writes the same folder."""
    first = tmp_path / "a" / "out"
    manifest = qcc.compile(EXAMPLE, first, name="net", rounding="single", golden=2, io_in_arena=True,
                           weights_section=".w", input_shape={"input": [1, 3, 96, 96]})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / EXAMPLE.name).write_bytes(EXAMPLE.read_bytes())
    monkeypatch.chdir(tmp_path / "b")
    words = shlex.split(manifest["command"])
    assert words[:3] == ["qcc", "compile", EXAMPLE.name]
    assert main([*words[1:], "-o", "elsewhere"]) == 0
    second = tmp_path / "b" / "elsewhere"
    names = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(second)) for p in second.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
