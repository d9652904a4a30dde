"""`qcc inspect`: the status column is each op's own exactness against ONNX Runtime (Op.exactness,
the README's op table), not one word for every node."""

from __future__ import annotations

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
