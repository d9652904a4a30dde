"""Acceptance: the networks embedded engineers deploy, quantized by ORT in QDQ form (uint8 and int8
activations, per-channel weights) and in QOperator form (per-tensor and per-channel): `qcc verify`
finds C == reference == ORT on 5 seeded random inputs plus the 3 extremes."""

import pytest

from models import quantize
from networks import NETWORKS
from qcc.commands.verify import verify
from qcc.pipeline import Options

VARIANTS = {
    "qdq-u8": dict(quant_format="QDQ", activation="uint8", per_channel=True),
    "qdq-s8": dict(quant_format="QDQ", activation="int8", per_channel=True),
    "qop-tensor": dict(quant_format="QOperator", activation="uint8", per_channel=False),
    "qop-channel": dict(quant_format="QOperator", activation="uint8", per_channel=True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("network", list(NETWORKS))
def test_network_is_bit_exact_to_ort(tmp_path, network, variant):
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", **VARIANTS[variant])
    report = verify(str(path), Options(), count=5)
    assert report.cases == 8
    for output, pairs in report.per_output.items():
        for pair, agreement in pairs.items():
            assert agreement.compared > 0
            assert agreement.exact == agreement.compared, f"{output} {pair}: {agreement}"


@pytest.mark.parametrize("scheme", ["tflm", "single"])
@pytest.mark.parametrize("network", list(NETWORKS))
def test_network_c_equals_reference_in_the_other_schemes(tmp_path, network, scheme):
    """In the tflm and single schemes the C must still equal the reference interpreter on every value;
    their distance to ORT is measured (benchmarks/scheme_agreement.py), not required to be zero."""
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", **VARIANTS["qdq-u8"])
    report = verify(str(path), Options(rounding=scheme), count=2)
    assert report.ok
    for pairs in report.per_output.values():
        assert pairs["C vs reference"].exact == pairs["C vs reference"].compared > 0
