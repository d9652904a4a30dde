"""Range analysis: exact accumulator bounds, overflow warnings, and the cheaper exact path it allows."""

import numpy as np
import onnx

from helpers import check_exact
from models import cnn96, quantize
from qcc.cli import main
from qcc.pipeline import Options, compile_model
from qcc.numerics.accumulator_range import product_sum_range
from test_op_conv import qlinearconv_model


def brute_force_range(weights, w_zero, x_zero, lo, hi, bias):
    """Every input in {qmin, qmax}^K (the extremes suffice for a linear form), enumerated."""
    k = weights.shape[1]
    corners = np.array(np.meshgrid(*[[lo, hi]] * k)).reshape(k, -1).T - x_zero
    acc = corners @ (weights.astype(np.int64) - w_zero.reshape(-1, 1)).T + bias
    return acc.min(axis=0), acc.max(axis=0)


def test_bounds_are_exact_against_enumeration():
    rng = np.random.default_rng(0)
    for dtype, (lo, hi) in (("uint8", (0, 255)), ("int8", (-128, 127))):
        for _ in range(20):
            weights = rng.integers(-128, 128, (3, 6))
            w_zero, x_zero, bias = rng.integers(-5, 5, 3), int(rng.integers(lo, hi + 1)), rng.integers(-1000, 1000, 3)
            r = product_sum_range(weights, w_zero, x_zero, dtype, bias)
            low, high = brute_force_range(weights, w_zero, x_zero, lo, hi, bias)
            np.testing.assert_array_equal(r.low, low)
            np.testing.assert_array_equal(r.high, high)


def overflowing_conv():
    # 1400 x 7 x 7 taps of weight -128 against uint8 inputs down to 255 below their zero point:
    # (0 - 255) * -128 * 68600 ~ 2.24e9 > 2**31 - 1 in channel 0; channel 1 (weights 1) stays small.
    in_c, out_c = 1400, 2
    w = np.full((out_c, in_c, 7, 7), -128, np.int8)
    w[1] = 1
    return qlinearconv_model(x_dtype="uint8", x_shape=(1, in_c, 7, 7), w=w, w_scale=np.full(out_c, 1e-3, np.float32),
                             w_zero=np.zeros(out_c, np.int64), x_scale=np.float32(0.01), x_zero=255, y_scale=np.float32(50.0),
                             y_zero=0, y_shape=(1, out_c, 1, 1), kernel_shape=[7, 7])


def test_crafted_weights_that_can_overflow_int32_give_a_warning(tmp_path, capsys):
    path = tmp_path / "overflow.onnx"
    onnx.save(overflowing_conv(), str(path))
    compiled = compile_model(path, Options())
    (node,) = compiled.graph.nodes
    r = node.params["acc_range"]
    assert r.high[0] == 255 * 128 * 1400 * 49 > 2**31 - 1 and not r.int32_safe
    assert r.unsafe_channels().tolist() == [0]
    assert main(["compile", str(path), "-o", str(tmp_path / "out"), "--golden", "1"]) == 0
    err = capsys.readouterr().err
    assert "qcc: warning:" in err and "node 'conv'" in err and "worst channel 0" in err
    assert f"[{r.low[0]}, {r.high[0]}]" in err


def test_the_overflowing_layer_still_matches_ort_wrapping_modulo_2_pow_32(tmp_path):
    check_exact(overflowing_conv(), tmp_path, n_random=2)


def test_small_accumulators_take_the_f32_exact_shortcut_with_unchanged_results(tmp_path):
    path = quantize(cnn96(), tmp_path / "cnn.onnx")
    compiled = check_exact(path, tmp_path, n_random=3)  # the golden test compares the shortcut C with the general reference
    flags = {n.name: n.params["requant"].acc_f32_exact for n in compiled.graph.nodes if "requant" in n.params}
    bits = {n.name: n.params["acc_range"].bits for n in compiled.graph.nodes if "acc_range" in n.params}
    assert any(flags.values()) and all(flags[n] == (bits[n] <= 25) for n in flags)


def test_inspect_shows_the_accumulator_table(tmp_path, capsys):
    path = quantize(cnn96(), tmp_path / "cnn.onnx")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "accumulator" in out and "int32 safe" in out and " bits" in out
