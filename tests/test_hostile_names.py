"""Names are data, never code: hostile node, tensor and file names (comment terminators,
preprocessor lines, quotes, backslashes, trigraphs, non-ASCII, 10,000 characters, C keywords and
standard-library names, the runtime's and the model's own prefixes, duplicates) reach every place
a name appears; the C builds with -Werror under gcc and clang, the golden test passes, pycparser
parses every file, and none of the text becomes code."""

from __future__ import annotations

import json
import subprocess

import onnx
import pytest

from qdq_builder import QdqGraph
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options
from test_generated_c import FAKE_LIBC, parse

HOSTILE = ["*/ int injected_by_name = 42; /*", "\n#define injected_macro 1\n", 'q"uote\\back', "ünï??/cødé", "x" * 10000,
           "uint8_t", "EOF", "main", "model_run", "qcc_conv_params", "INT8_MAX", "_Reserved", "model_arena", "a", "A"]


def hostile_model() -> onnx.ModelProto:
    g = QdqGraph(13, seed=1)
    x = g.qdq(g.input(HOSTILE[0], [1, 3, 6, 6]), 0.02, 128)
    for name in HOSTILE[1:8]:
        x = g.qdq(g.node("Conv", [x, g.weights((3, 3, 1, 1), 0.02)], name=name), 0.02, 128)
    for name in HOSTILE[8:]:
        g.output(g.quantize(g.node("Conv", [x, g.weights((2, 3, 1, 1), 0.02)], name=f"head_{name}"), 0.02, 128), name)
    model = g.model()
    for node in model.graph.node:  # and duplicate node names
        if node.name.startswith("head_"):
            node.name = "same"
    return model


@pytest.fixture(scope="module")
def fake_libc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake_libc")
    for name, text in FAKE_LIBC.items():
        (folder / name).write_text(text)
    return folder


def test_hostile_names_never_become_code(tmp_path, fake_libc):
    path = tmp_path / 'm*"\n??=evil.onnx'  # (no '/' in a file name)
    path.write_bytes(hostile_model().SerializeToString())
    out = tmp_path / "out"
    compile_to_folder(path, out, Options())
    for cc in ("gcc", "clang"):
        build = subprocess.run(["make", "-s", "-C", str(out), "clean", "check"], capture_output=True, text=True,
                               env={"PATH": "/usr/bin:/bin", "CC": cc,
                                    "CFLAGS": "-std=c99 -O1 -Wall -Wextra -Wpedantic -Werror"})
        assert build.returncode == 0, build.stdout + build.stderr
    for source in ("model.c", "test_model.c", "qcc_runner.c", "model.h"):
        lines = (out / source).read_text().splitlines()
        assert not any(line.lstrip().startswith("#define injected_macro") for line in lines)  # inside comments only
        assert not any("injected_by_name = 42" in line and "/*" not in line for line in lines)
        if source == "model.c":  # (the host-only files use stdio, beyond the fake libc; they built above)
            ast = parse(out / source, fake_libc)
            names = {getattr(d, "name", None) for d in ast.ext}
            assert "injected_by_name" not in names and "injected_macro" not in names
    manifest = json.loads((out / "model.json").read_text())  # the names stay data there, exactly
    assert [o["name"] for o in manifest["outputs"]] == HOSTILE[8:]
    assert manifest["inputs"][0]["name"] == HOSTILE[0]
    header = (out / "model.h").read_text()
    assert all(len(line) < 400 for line in header.splitlines())  # the 10,000-character name is cut
    macros = [line.split()[1] for line in header.splitlines() if line.startswith("#define")]
    assert len(macros) == len(set(macros))  # 'a' and 'A' make distinct macros
