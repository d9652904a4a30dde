"""--float-io: QuantizeLinear and DequantizeLinear run in C (float32, no libm) exactly as in ORT."""

import numpy as np
import pytest
from onnx import helper

from helpers import check_exact, make_model, scalar
from test_op_movement_and_activation import conv1x1


@pytest.mark.parametrize("dtype, zero", [("uint8", 0), ("uint8", 131), ("int8", -128), ("int8", 5)])
def test_float_boundary_matches_ort_bit_for_bit(tmp_path, dtype, zero):
    scale = np.float32(0.0371)
    conv, inits = conv1x1(dtype, 4, x="xq", y="c")
    inits.update({"in_s": scalar(scale, np.float32), "in_z": scalar(zero, dtype)})
    inits["conv_xs"], inits["conv_xz"] = scalar(scale, np.float32), scalar(zero, dtype)
    nodes = [helper.make_node("QuantizeLinear", ["x", "in_s", "in_z"], ["xq"], name="quantize"), conv,
             helper.make_node("DequantizeLinear", ["c", "conv_ys", "conv_yz"], ["y"], name="dequantize")]
    shape = [1, 4, 50, 50]
    model = make_model(nodes, [("x", "float32", shape)], [("y", "float32", shape)], inits)
    # Exact halfway points k + 1/2 (ties to even), their float32 neighbours, out-of-range values and
    # non-finite ones (NaN quantizes to qmin, +-inf saturate).
    k = np.arange(-300, 300)
    halves = ((k + 0.5) * scale).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], np.float32)
    values = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, -np.float32(np.inf)),
                             (k * scale).astype(np.float32), special])
    values = np.resize(values, int(np.prod(shape))).reshape(shape).astype(np.float32)
    compiled = check_exact(model, tmp_path, n_random=3, float_io=True, extra_cases=[[values]])
    assert [n.op for n in compiled.graph.nodes] == ["QuantizeLinear", "QLinearConv", "DequantizeLinear"]
