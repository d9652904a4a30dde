"""Acceptance: the 96x96 CNN, quantized by ORT in QOperator form, uint8 and int8 activations."""

import pytest

from qcc.commands.verify import verify
from qcc.pipeline import Options
from models import cnn96, quantize


@pytest.mark.parametrize("activation", ["uint8", "int8"])
def test_cnn96_verify_exact_on_20_random_and_3_extreme_inputs(tmp_path, activation):
    path = quantize(cnn96(), tmp_path / f"cnn96_{activation}.onnx", activation=activation)
    report = verify(str(path), Options(), count=20)
    (pairs,) = report.per_output.values()
    assert report.cases == 23
    for pair, agreement in pairs.items():
        assert agreement.compared == 23 * 10, pair
        assert agreement.exact == agreement.compared, (pair, agreement)
    assert report.ok


def test_cnn96_ops_are_the_expected_integer_kernels(tmp_path):
    from qcc.pipeline import compile_model

    graph = compile_model(quantize(cnn96(), tmp_path / "m.onnx"), Options()).graph
    assert [n.op for n in graph.nodes] == ["QLinearConv"] * 3 + ["QLinearGlobalAveragePool", "Reshape", "QGemm"]
