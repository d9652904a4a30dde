"""`qcc inspect`: the status column is each op's own exactness against ONNX Runtime (Op.exactness,
the README's op table), not one word for every node; the total line gives the arena beside the
liveness bound."""

from __future__ import annotations

import math

from helpers import REPO
from qcc.cli import main
from qcc.ops.conv import QLinearConv

EXAMPLE = str(REPO / "examples" / "cnn96_uint8.onnx")


def node_lines(out: str) -> dict[str, str]:
    """node name -> its line of the table (the example's node names)."""
    names = ("conv0_quant", "conv1_quant", "conv2_quant", "gap_quant", "flatten", "fc_quant")
    return {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in names}


def test_each_node_shows_its_own_ops_exactness(monkeypatch, capsys):
    assert main(["inspect", EXAMPLE]) == 0
    lines = node_lines(capsys.readouterr().out)
    assert len(lines) == 6 and all(" bit-exact " in line for line in lines.values())

    monkeypatch.setattr(QLinearConv, "exactness", "within one code of ORT")
    assert main(["inspect", EXAMPLE]) == 0
    lines = node_lines(capsys.readouterr().out)
    for name, line in lines.items():
        if name.startswith("conv"):
            assert " within one code of ORT " in line and "bit-exact" not in line, line
        else:
            assert " bit-exact " in line, line


def test_the_total_line_gives_the_arena_beside_the_liveness_bound(capsys):
    """The example is a chain (conv0 -> conv1 -> conv2 -> gap -> flatten -> fc): between its graph input
    and output, the tensors alive together are a layer's input and output, so the bound is the largest
    sum of two consecutive outputs (flatten only renames gap's bytes). Keeping every tensor whole
    (--whole-tensors) the arena holds at least that; streaming the convolutions it holds less."""
    assert main(["inspect", EXAMPLE]) == 0
    out = capsys.readouterr().out
    lines = node_lines(out)

    def output_bytes(name: str) -> int:  # uint8: one byte per element of the shape after "->"
        shape = lines[name].split("->")[1].split()[0]
        return math.prod(int(d) for d in shape.split("x"))

    chain = ["conv0_quant", "conv1_quant", "conv2_quant", "gap_quant"]
    expected = max(output_bytes(a) + output_bytes(b) for a, b in zip(chain, chain[1:]))
    (total,) = [line for line in out.splitlines() if line.startswith("total: ")]
    arena = int(total.split("arena ")[1].split()[0])
    assert f"(liveness bound {expected}:" in total and arena < expected, total
    assert main(["inspect", EXAMPLE, "--whole-tensors"]) == 0
    (whole,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("total: ")]
    assert f"(liveness bound {expected}:" in whole and int(whole.split("arena ")[1].split()[0]) >= expected, whole
