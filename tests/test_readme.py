"""The README's op table is the registry's, and its first command works on the bundled example."""

import subprocess
import sys

from helpers import REPO
from qcc.commands.support_table import markdown


def test_readme_support_table_is_generated_from_the_registry():
    assert markdown() in (REPO / "README.md").read_text(), "run: python -m qcc.commands.support_table and paste it into README.md"


def test_bundled_example_compiles_and_its_golden_test_passes(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "qcc", "compile", str(REPO / "examples" / "cnn96_uint8.onnx"), "-o", str(out)], check=True)
    result = subprocess.run(["make", "-s", "-C", str(out), "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 4 case(s), every output value exact" in result.stdout
