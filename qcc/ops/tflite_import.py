"""Pieces the op modules share when they import TFLite operators: TFLM's fused-activation clamp and
TFLite's padding. Each is TFLM's own computation (tensorflow/lite/kernels/kernel_util.cc,
CalculateActivationRangeQuantized; tensorflow/lite/kernels/padding.h), checked against the pinned
tflite-micro wheel by the tests."""

from __future__ import annotations

import numpy as np

from qcc.ir import DTYPE_RANGE, QuantParams
from qcc.numerics import tflm
from qcc.tflite_graph import ACTIVATIONS, PADDINGS


def quantize_real(value: float, quant: QuantParams) -> int:
    """TFLM's Quantize(value): zero + round(f32(value / scale)), halves away from zero (std::round)."""
    scale, zero = quant.scalar()
    return zero + int(tflm.round_half_away(np.float32(value) / np.float32(scale)))


def fused_clamp(model, quant: QuantParams, dtype: str) -> tuple[int, int]:
    """The output codes TFLM clamps to for the operator's fused_activation_function."""
    qmin, qmax = DTYPE_RANGE[dtype]
    code = model.options.get("fused_activation_function", 0)
    activation = ACTIVATIONS.get(code, str(code))
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_real(0.0, quant)), qmax
    if activation == "RELU6":
        return max(qmin, quantize_real(0.0, quant)), min(qmax, quantize_real(6.0, quant))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize_real(-1.0, quant)), min(qmax, quantize_real(1.0, quant))
    model.refuse(f"has the fused activation {activation}, which TFLM's integer kernels do not apply")


def padding(model, in_hw, kernel, strides, dilations) -> tuple[list[int], list[int], list[int]]:
    """(pads before, pads after, output size) per spatial axis for the operator's `padding` option.
    SAME: the output is ceil(in / stride) and the total padding max(0, (out - 1) * stride +
    dilated kernel - in), the smaller half before (TFLite's ComputePaddingHeightWidth); VALID: none."""
    name = PADDINGS.get(model.options.get("padding"), str(model.options.get("padding")))
    model.require(name in ("SAME", "VALID"), f"padding {name} is not SAME or VALID")
    begins, ends, out = [], [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        model.require(k > 0 and s > 0 and d > 0, f"kernel {list(kernel)}, strides {list(strides)} and dilations "
                      f"{list(dilations)} must be positive")
        if name == "VALID":
            begins.append(0)
            ends.append(0)
        else:
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            begins.append(total // 2)
            ends.append(total - total // 2)
        out.append((size + begins[-1] + ends[-1] - (k - 1) * d - 1) // s + 1)
    model.require(min(out) > 0, f"the output would be empty ({out}): the kernel is larger than the input {list(in_hw)}")
    return begins, ends, out
