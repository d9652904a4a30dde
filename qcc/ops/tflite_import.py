"""Pieces the op modules share when they import TFLite operators: TFLM's fused-activation clamp,
TFLite's padding, and the Lookup node that TFLM's elementwise int8 kernels become (their tables are
computed in qcc/numerics/tflm_activations.py). Each is TFLM's own computation
(tensorflow/lite/kernels/kernel_util.cc, CalculateActivationRangeQuantized;
tensorflow/lite/kernels/padding.h), checked against the pinned tflite-micro wheel by the tests."""

from __future__ import annotations

import numpy as np

from qcc.ir import DTYPE_RANGE, QuantParams
from qcc.tflite_graph import ACTIVATIONS, PADDINGS


def quantize_real(value: float, quant: QuantParams) -> int:
    """TFLM's Quantize(value): zero + round(f32(value / scale)), halves away from zero."""
    scale, zero = quant.scalar()
    ratio = np.float32(value) / np.float32(scale)
    return zero + int(np.sign(ratio) * np.floor(np.abs(ratio) + np.float32(0.5)))


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


def require_int8(model, what: str = "") -> None:
    """Refuse unless input 0 and output 0 are int8: TFLM also runs these kernels on int16 (or float32)
    with other arithmetic, which qcc does not compile."""
    x, y = model.input_tensor(0, "input"), model.output_tensor(0)
    if x.dtype != "int8" or y.dtype != "int8":
        model.refuse(f"runs on {x.dtype} -> {y.dtype}; qcc compiles TFLM's int8 -> int8 {what or model.operator.code} "
                     "kernel only")


def channel_axis(rank: int, layout: str) -> int:
    """The axis of TFLite's last (channel) dimension in an IR tensor of this rank and layout."""
    return 1 if layout == "nchw" and rank == 4 else rank - 1


def add_lookup(model, tables: np.ndarray, per_channel: bool = False) -> None:
    """The operator as qcc's Lookup (qcc/ops/lookup_table.py): output 0 = table[byte of input 0], elementwise,
    so the input is read in whichever layout it already exists in and the output written in the same.
    `tables`: uint8 (256,) or, with per_channel, (channels, 256), one per index of TFLite's last dimension."""
    model.require(not model.is_constant(0), "its input is a constant (the converter folds such operators); qcc "
                  "compiles it on a tensor computed at run time")
    layout = model.layout_of(0)
    x = model.activation(0, layout)
    y = model.output(0, x.shape, layout)
    axis = channel_axis(len(x.shape), layout) if per_channel else None
    node = model.add_node("Lookup", [x.name], [y], {"axis": axis})
    node.params["table"] = np.ascontiguousarray(tables, dtype=np.uint8).reshape(-1, 256)


def table_or_refuse(model, compute, *args) -> np.ndarray:
    """compute(*args), a qcc.numerics.tflm_activations table, with its ValueError (scales where TFLM
    refuses, or where its C++ is undefined) as the operator's refusal."""
    try:
        return compute(*args)
    except ValueError as error:
        model.refuse(str(error))
