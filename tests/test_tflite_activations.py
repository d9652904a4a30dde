"""TFLite's elementwise int8 ops, each a 256-entry table computed at compile time by emulating TFLM's
kernel (qcc/numerics/tflm_activations.py): LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU, RELU, RELU6
and QUANTIZE int8 -> int8. Each model holds several copies of the op side by side, one per scale and
zero point pair (small, large and extreme ones TFLM accepts), each on its own graph input, and the
inputs cover all 256 codes (every code in every channel where the table depends on the channel);
check_tflite_exact holds C == reference in the tflm and single schemes and reference == the pinned
TFLM. Then the same ops after a CONV_2D (their input channels-first inside qcc), and the refusals:
other types, scales TFLM refuses or computes with undefined C++, and ops TFLM has no kernel for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import check_tflite_exact
from tflite_builder import TfliteBuilder
from qcc.errors import QccError
from qcc.pipeline import Options, compile_model
from qcc.runtimes import tflm

SHAPE = (1, 4, 4, 16)  # 256 elements: one case holds every code once
ROW = (1, 256)


def every_code(shape, case: int = 0) -> np.ndarray:
    """int8 codes of `shape`; over cases 0..15 (with 16 positions per channel) each channel of the last
    dimension sees all 256 codes, and case 0 alone holds every code once when the size is 256."""
    channels = shape[-1]
    positions = int(np.prod(shape[:-1]))
    p = np.arange(positions).reshape(-1, 1)
    c = np.arange(channels).reshape(1, -1)
    if positions * channels == 256 and case == 0:
        codes = p * channels + c
    else:
        codes = p + positions * case + c * 17
    return ((codes % 256) - 128).astype(np.int8).reshape(shape)


def side_by_side(op: str, pairs, shape, version: int = 1, options=None, extra_inputs=None) -> tuple[bytes, int]:
    """One graph input and one `op` per (s_x, z_x, s_y, z_y) pair; returns the model and its input count.
    extra_inputs(b, i) gives more operands for copy i (PRELU's alpha)."""
    b = TfliteBuilder()
    outputs = []
    for i, (s_x, z_x, s_y, z_y) in enumerate(pairs):
        x = b.input(f"x{i}", shape, "int8", scale=s_x, zero_point=z_x)
        y = b.tensor(f"y{i}", shape, "int8", scale=s_y, zero_point=z_y)
        operands = [x] + (extra_inputs(b, i) if extra_inputs else [])
        b.op(op, operands, [y], version=version, options=options(i) if callable(options) else options)
        outputs.append(y)
    b.output(*outputs)
    return b.build(), len(pairs)


def check_all_codes(model: bytes, inputs: int, shape, tmp_path, cases: int = 1):
    extra = [[every_code(shape, k) for _ in range(inputs)] for k in range(cases)]
    return check_tflite_exact(model, tmp_path, n_random=1, extra_cases=extra)


F32 = np.float32

LOGISTIC_PAIRS = [  # (s_x, z_x): a typical scale, the limits of TFLM's input radius, the smallest it shifts by
    (F32(0.1), -3), (F32(1 / 256), 0), (F32(0.03), 100), (F32(0.5), -128), (F32(7.5), 2), (F32(8.0), 0),
    (F32(16.0), 5), (F32(2.0**-28), 0), (F32(0.0117), 127),
]


@pytest.mark.parametrize("shape", [SHAPE, ROW])
def test_logistic(shape, tmp_path):
    """The output scale is not read by TFLM (only its zero point, -128): the last copy declares 0.05."""
    pairs = [(s, z, F32(1 / 256), -128) for s, z in LOGISTIC_PAIRS] + [(F32(0.1), 0, F32(0.05), -128)]
    model, n = side_by_side("LOGISTIC", pairs, shape, version=2)
    check_all_codes(model, n, shape, tmp_path)


@pytest.mark.parametrize("shape", [SHAPE, ROW])
def test_tanh(shape, tmp_path):
    """TFLM reads no output quantization: the last copies declare other scales and zero points."""
    pairs = [(s, z, F32(1 / 128), 0) for s, z in LOGISTIC_PAIRS] + [(F32(0.1), 0, F32(0.3), 5),
                                                                   (F32(0.02), -7, F32(1 / 256), -128)]
    model, n = side_by_side("TANH", pairs, shape, version=2)
    check_all_codes(model, n, shape, tmp_path)


HARD_SWISH_PAIRS = [  # s_y / s_x from just above TFLM's limit (1/128) to 2^28; large and small s_x
    (F32(0.05), 3, F32(0.03), -10), (F32(0.1), -128, F32(0.1), 127), (F32(1.0), 0, F32(1 / 127.5), 0),
    (F32(0.02), 10, F32(100.0), 0), (F32(0.02), -5, F32(0.02 * 2.0**28), -9), (F32(2e-4), 0, F32(1e-4), -128),
    (F32(60.0), -20, F32(10.0), 40), (F32(3000.0), 7, F32(500.0), -3), (F32(0.0235), -100, F32(0.0123), -90),
]


@pytest.mark.parametrize("shape", [SHAPE, ROW])
def test_hard_swish(shape, tmp_path):
    model, n = side_by_side("HARD_SWISH", HARD_SWISH_PAIRS, shape)
    check_all_codes(model, n, shape, tmp_path)


LEAKY_CASES = [  # (s_x, z_x, s_y, z_y, alpha): negative and large alphas, s_x / s_y up to 2^26 (TFLM's int32 wraps)
    (F32(0.05), 3, F32(0.04), -10, 0.2), (F32(0.1), -128, F32(0.1), -128, 0.01), (F32(0.02), 20, F32(0.03), 0, -0.5),
    (F32(0.3), 0, F32(0.05), 5, 1.5), (F32(0.01), -60, F32(0.02), 60, 0.0), (F32(1.0), 0, F32(2.0**-26), 0, 0.3),
    (F32(1e-3), 9, F32(50.0), -3, -7.0), (F32(0.07), 127, F32(0.01), -128, 3.0),
]


@pytest.mark.parametrize("shape", [SHAPE, ROW])
def test_leaky_relu(shape, tmp_path):
    pairs = [case[:4] for case in LEAKY_CASES]
    model, n = side_by_side("LEAKY_RELU", pairs, shape, options=lambda i: dict(alpha=LEAKY_CASES[i][4]))
    check_all_codes(model, n, shape, tmp_path)


PRELU_CASES = [  # (s_x, z_x, s_y, z_y, s_alpha, z_alpha, alpha shape)
    (F32(0.05), 3, F32(0.04), -10, F32(0.002), 0, (16,)),
    (F32(0.1), -128, F32(0.1), 127, F32(0.01), -20, (1, 1, 16)),
    (F32(0.02), 20, F32(0.5), 0, F32(0.03), 100, (1,)),
    (F32(0.3), 0, F32(0.05), 5, F32(1.0), -128, (1, 1, 1, 16)),
    (F32(1.0), -7, F32(2.0**-24), 3, F32(4.0), 0, (16,)),
]


@pytest.mark.parametrize("shape", [SHAPE, (1, 16)])
def test_prelu(shape, tmp_path):
    """Per-channel alphas (all 256 alpha codes spread over the copies' channels) and one alpha for all;
    every input code meets every channel's alpha."""
    rng = np.random.default_rng(3)
    cases = [c for c in PRELU_CASES if len(c[6]) <= len(shape)]

    def alpha(b, i):
        s_a, z_a, a_shape = cases[i][4:]
        values = rng.permutation(256)[:int(np.prod(a_shape))] - 128
        return [b.const(f"alpha{i}", values.astype(np.int8).reshape(a_shape), scale=s_a, zero_point=z_a)]

    model, n = side_by_side("PRELU", [c[:4] for c in cases], shape, extra_inputs=alpha)
    check_all_codes(model, n, shape, tmp_path, cases=16 if len(shape) == 4 else 256)


def test_relu_and_relu6(tmp_path):
    """RELU requantizes (s_x / s_y from 2^-33, where the multiplier is 0, to 2^26, where TFLM's int32 wraps);
    RELU6 clamps the input codes to [z_x, six] whatever the output's quantization."""
    relu = [(F32(0.05), 3, F32(0.04), -10), (F32(0.1), -128, F32(0.1), -128), (F32(0.02), 20, F32(0.5), 100),
            (F32(1.0), 0, F32(2.0**-26), 0), (F32(1e-3), -5, F32(1e-3 * 2.0**33), 7), (F32(0.3), 127, F32(0.01), -60)]
    relu6 = [(F32(0.05), 3, F32(0.05), 3), (F32(0.1), -128, F32(0.3), 9), (F32(0.01), 20, F32(0.01), 20),
             (F32(1.0), -50, F32(1.0), -50), (F32(0.047), -128, F32(0.047), -128), (F32(20.0), 100, F32(1.0), 0)]
    b = TfliteBuilder()
    outputs = []
    for i, (s_x, z_x, s_y, z_y) in enumerate(relu + relu6):
        x = b.input(f"x{i}", SHAPE, "int8", scale=s_x, zero_point=z_x)
        y = b.tensor(f"y{i}", SHAPE, "int8", scale=s_y, zero_point=z_y)
        b.op("RELU" if i < len(relu) else "RELU6", [x], [y], version=2)
        outputs.append(y)
    b.output(*outputs)
    check_all_codes(b.build(), len(relu + relu6), SHAPE, tmp_path)


@pytest.mark.parametrize("shape", [SHAPE, ROW])
def test_quantize_int8_to_int8(shape, tmp_path):
    """A requantization: the same scale with another zero point, up and down, 2^-33 and 2^26 (int32 wraps)."""
    pairs = [(F32(0.05), 3, F32(0.05), -10), (F32(0.1), -128, F32(0.03), 0), (F32(0.02), 20, F32(0.5), 100),
             (F32(1.0), 0, F32(2.0**-26), 0), (F32(1e-3), -5, F32(1e-3 * 2.0**33), 7),
             (F32(0.0123), 127, F32(0.0456), -128), (F32(0.05), 0, F32(0.05), 0)]
    model, n = side_by_side("QUANTIZE", pairs, shape)
    check_all_codes(model, n, shape, tmp_path)


def test_quantize_a_models_uint8_input_to_int8(tmp_path):
    """The converter's uint8 input (inference_input_type): QUANTIZE to int8 is TFLM's Requantize, at one scale
    with the zero point moved by 128 (its x ^ 0x80 fast path) and at other scales, on every uint8 code. A uint8
    input read by any other operator is refused by name."""
    pairs = [(F32(1 / 255), 128, F32(1 / 255), 0), (F32(0.02), 0, F32(0.05), -128), (F32(0.1), 255, F32(0.03), 7),
             (F32(1.0), 100, F32(2.0**-26), 0), (F32(0.07), 128, F32(0.07), -1)]
    b = TfliteBuilder()
    outputs = []
    for i, (s_x, z_x, s_y, z_y) in enumerate(pairs):
        x = b.input(f"x{i}", SHAPE, "uint8", scale=s_x, zero_point=z_x)
        y = b.tensor(f"y{i}", SHAPE, "int8", scale=s_y, zero_point=z_y)
        b.op("QUANTIZE", [x], [y])
        outputs.append(y)
    b.output(*outputs)
    every_uint8 = [[every_code(SHAPE, k).view(np.uint8) for _ in pairs] for k in range(2)]
    compiled = check_tflite_exact(b.build(), tmp_path, n_random=2, extra_cases=every_uint8)
    assert all(compiled.graph.tensor(t).dtype == "uint8" for t in compiled.graph.inputs)
    refused(single("RELU", x_dtype="uint8", x=(F32(0.1), 128), y=(F32(0.1), 0)), tmp_path, "is uint8 and read by",
            "RELU", "one QUANTIZE alone", tflm_refuses=False)


def test_quantize_int8_to_a_models_uint8_output(tmp_path):
    """The converter's uint8 output (inference_output_type): QUANTIZE from int8 is TFLM's Requantize clamped to
    [0, 255], at one scale with the zero point moved by 128 (its x ^ 0x80 fast path) and at other scales, on
    every int8 code."""
    pairs = [(F32(1 / 256), -128, F32(1 / 256), 0), (F32(0.05), 0, F32(0.05), 128), (F32(0.02), 20, F32(0.5), 100),
             (F32(0.1), -3, F32(0.03), 255), (F32(1.0), 0, F32(2.0**-26), 7)]
    b = TfliteBuilder()
    outputs = []
    for i, (s_x, z_x, s_y, z_y) in enumerate(pairs):
        x = b.input(f"x{i}", SHAPE, "int8", scale=s_x, zero_point=z_x)
        y = b.tensor(f"y{i}", SHAPE, "uint8", scale=s_y, zero_point=z_y)
        b.op("QUANTIZE", [x], [y], version=2)
        outputs.append(y)
    b.output(*outputs)
    compiled = check_all_codes(b.build(), len(pairs), SHAPE, tmp_path, cases=2)
    assert all(compiled.graph.tensor(t).dtype == "uint8" for t in compiled.graph.outputs)


# --- after a convolution: the input exists channels first inside qcc ------------------------------

AFTER_CONV = {
    "LOGISTIC": dict(y=(F32(1 / 256), -128), version=2),
    "TANH": dict(y=(F32(1 / 128), 0), version=2),
    "HARD_SWISH": dict(y=(F32(0.02), -20)),
    "LEAKY_RELU": dict(y=(F32(0.03), 10), options=dict(alpha=0.1)),
    "PRELU": dict(y=(F32(0.03), 10)),
    "RELU": dict(y=(F32(0.02), -128), version=2),
    "RELU6": dict(y=(F32(0.05), -5), version=2),
    "QUANTIZE": dict(y=(F32(0.07), 30)),
}


@pytest.mark.parametrize("op", list(AFTER_CONV))
def test_after_conv_2d(op, tmp_path):
    """CONV_2D -> op: qcc holds the convolution's output channels first, the op's table runs there (PRELU's
    per-channel tables along axis 1) and its output is converted back once, at the model's output."""
    rng = np.random.default_rng(len(op))
    spec = AFTER_CONV[op]
    channels = 6
    b = TfliteBuilder()
    x = b.input("x", (1, 5, 4, 3), "int8", scale=0.05, zero_point=-3)
    w = b.const("w", rng.integers(-127, 128, size=(channels, 1, 1, 3)).astype(np.int8),
                scale=rng.uniform(0.005, 0.02, channels).astype(np.float32), zero_point=np.zeros(channels, np.int64))
    bias_scale = (np.float32(0.05) * np.asarray(b.tensors[w]["quantization"]["scale"])).astype(np.float32)
    bias = b.const("bias", rng.integers(-500, 500, channels).astype(np.int32), scale=bias_scale,
                   zero_point=np.zeros(channels, np.int64))
    h = b.tensor("h", (1, 5, 4, channels), "int8", scale=0.04, zero_point=-2)
    b.op("CONV_2D", [x, w, bias], [h], version=3, options=dict(padding="VALID", stride_h=1, stride_w=1))
    operands = [h]
    if op == "PRELU":
        operands.append(b.const("alpha", np.array([[[-90, 3, 50, 120, -128, 127]]], np.int8), scale=0.01, zero_point=5))
    y = b.tensor("y", (1, 5, 4, channels), "int8", scale=spec["y"][0], zero_point=spec["y"][1])
    b.op(op, operands, [y], version=spec.get("version", 1), options=spec.get("options"))
    b.output(y)
    cases = [[rng.integers(-128, 128, size=(1, 5, 4, 3)).astype(np.int8)] for _ in range(4)]
    compiled = check_tflite_exact(b.build(), tmp_path, n_random=1, extra_cases=cases)
    lookup = next(n for n in compiled.graph.nodes if n.op == "Lookup")
    assert compiled.graph.tensor(lookup.inputs[0]).shape == (1, channels, 5, 4)
    assert lookup.attrs["axis"] == (1 if op == "PRELU" else None)


# --- refusals -------------------------------------------------------------------------------------

def single(op: str, x_dtype="int8", y_dtype="int8", x=(F32(0.1), 0), y=(F32(1 / 256), -128), version=1,
           options=None, extra=None) -> bytes:
    b = TfliteBuilder()
    xi = b.input("x", ROW, x_dtype, scale=x[0], zero_point=x[1])
    yi = b.tensor("y", ROW, y_dtype, scale=y[0], zero_point=y[1])
    b.op(op, [xi] + (extra(b, xi) if extra else []), [yi], version=version, options=options)
    b.output(yi)
    return b.build()


def refused(model: bytes, tmp_path, *expected: str, tflm_refuses: bool) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    with pytest.raises(QccError) as error:
        compile_model(path, Options())
    message = str(error.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message
    if tflm_refuses:
        with pytest.raises(tflm.TflmError):
            tflm.run(model, [np.zeros(ROW, np.int8)])


def test_the_cli_refuses_another_type_in_one_line(tmp_path):
    """int16 LOGISTIC (TFLM's LUT kernel) with an output scale TFLM refuses, and an int8 LOGISTIC writing int16, which
    TFLM refuses too: exit 2, one line naming the model and the tensor or operator, no output folder."""
    int16_input = single("LOGISTIC", "int16", "int16", x=(F32(2.0**-12), 0), y=(F32(2.0**-14), 0), version=3)
    int16_output = single("LOGISTIC", "int8", "int16", y=(F32(2.0**-15), 0), version=3)
    for name, model, expected in [("in16.tflite", int16_input, ["in16.tflite", "LOGISTIC", "2^-15"]),
                                  ("out16.tflite", int16_output, ["out16.tflite", "LOGISTIC", "int8 -> int16"])]:
        path, out = tmp_path / name, tmp_path / f"out_{name}"
        path.write_bytes(model)
        result = subprocess.run([sys.executable, "-m", "qcc", "compile", str(path), "-o", str(out)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("qcc: error: ") and "Traceback" not in result.stderr, lines
        for text in expected:
            assert text in lines[0], lines[0]
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if ".qcc-" in p.name]
    with pytest.raises(tflm.TflmError):
        tflm.run(int16_output, [np.zeros(ROW, np.int8)])


def test_refusals(tmp_path):
    """What TFLM refuses (checked on the wheel), what its C++ leaves undefined, and what qcc does not compile."""
    refused(single("LOGISTIC", y=(F32(1 / 256), 0)), tmp_path, "LOGISTIC", "zero point is 0", "-128",
            tflm_refuses=True)
    refused(single("HARD_SWISH", x=(F32(1.0), 0), y=(F32(1 / 200), 0)), tmp_path, "HARD_SWISH", "below 1",
            tflm_refuses=True)
    refused(single("TANH", y_dtype="int16", y=(F32(2.0**-15), 0), version=3), tmp_path, "TANH", "int8 -> int16",
            tflm_refuses=True)
    b = TfliteBuilder()  # a uint8 QUANTIZE output that another operator reads: TFLM's uint8 kernels after it
    x = b.input("x", ROW, "int8", scale=F32(0.1), zero_point=0)
    u = b.tensor("u", ROW, "uint8", scale=F32(0.1), zero_point=128)
    b.op("QUANTIZE", [x], [u], version=2)
    y = b.tensor("y", ROW, "uint8", scale=F32(0.1), zero_point=128)
    b.op("RELU", [u], [y])
    b.output(u, y)
    refused(b.build(), tmp_path, "QUANTIZE", "other operators read", "a model output alone", tflm_refuses=False)
    for op in ("RELU_N1_TO_1", "RELU_0_TO_1"):  # TFLM has no kernel for either
        refused(single(op, y=(F32(0.1), 0)), tmp_path, op, "does not support", tflm_refuses=True)
    # Undefined in TFLM's C++: a shift by a negative amount (s_x < 2^-28), a shift by 32 or more.
    refused(single("LOGISTIC", x=(F32(2.0**-29), 0)), tmp_path, "LOGISTIC", "2^-28", tflm_refuses=False)
    refused(single("QUANTIZE", x=(F32(1.0), 0), y=(F32(2.0**-32), 0)), tmp_path, "QUANTIZE", "2^31",
            tflm_refuses=False)
    refused(single("LEAKY_RELU", y=(F32(0.1), 0), options=dict(alpha=float("inf"))), tmp_path, "LEAKY_RELU",
            "finite", tflm_refuses=False)
    # A constant input (the converter folds such an op): qcc computes no constant subgraphs.
    b = TfliteBuilder()
    x = b.input("x", ROW, "int8", scale=0.1, zero_point=0)
    c = b.const("c", every_code(ROW), scale=0.1, zero_point=0)
    t = b.tensor("t", ROW, "int8", scale=1 / 128, zero_point=0)
    b.op("TANH", [c], [t], version=2)
    y = b.tensor("y", ROW, "int8", scale=0.1, zero_point=0)
    b.op("ADD", [x, t], [y], version=2)
    b.output(y)
    refused(b.build(), tmp_path, "TANH", "its input is a constant", tflm_refuses=False)


def test_prelu_refusals(tmp_path):
    """PRELU's alpha: a graph input (not a constant), and a constant that varies along H or W."""
    b = TfliteBuilder()
    x = b.input("x", SHAPE, "int8", scale=0.1, zero_point=0)
    a = b.input("a", (16,), "int8", scale=0.01, zero_point=0)
    y = b.tensor("y", SHAPE, "int8", scale=0.1, zero_point=0)
    b.op("PRELU", [x, a], [y])
    b.output(y)
    refused(b.build(), tmp_path, "PRELU", "alpha", "must be a constant", tflm_refuses=False)
    b = TfliteBuilder()
    x = b.input("x", SHAPE, "int8", scale=0.1, zero_point=0)
    a = b.const("a", np.arange(64, dtype=np.int8).reshape(1, 4, 16), scale=0.01, zero_point=0)
    y = b.tensor("y", SHAPE, "int8", scale=0.1, zero_point=0)
    b.op("PRELU", [x, a], [y])
    b.output(y)
    refused(b.build(), tmp_path, "PRELU", "varies along more than the last dimension", tflm_refuses=False)
