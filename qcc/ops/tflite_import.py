"""Pieces the op modules share when they import TFLite operators: TFLM's fused-activation clamp,
TFLite's padding, and the Lookup node that TFLM's elementwise int8 kernels become (their tables are
computed in qcc/numerics/tflm_activations.py), each TFLM's own computation
(tensorflow/lite/kernels/kernel_util.cc, CalculateActivationRangeQuantized;
tensorflow/lite/kernels/padding.h), checked against the pinned tflite-micro wheel by the tests; and
the two layouts a rank-4 tensor has inside qcc (the importer's TFLITE, the model's own channels-last
order, and NCHW, channels first), with what it takes to move an op's axes and per-axis values from one
to the other."""

from __future__ import annotations

import numpy as np

from qcc.ir import CODE_RANGE, QuantParams
from qcc.numerics import tflm
from qcc.tflite_graph import ACTIVATIONS, PADDINGS

TFLITE = "tflite"  # the tensor's own order (channels last for images)
NCHW = "nchw"  # channels first: a rank-4 TFLite tensor permuted by TO_NCHW
TO_NCHW = (0, 3, 1, 2)  # NCHW axis j is TFLite axis TO_NCHW[j]
TO_TFLITE = (0, 2, 3, 1)  # TFLite axis a is NCHW axis TO_TFLITE[a]


def moves_only_unit_axes(shape: tuple[int, ...], perm) -> bool:
    """A permutation that keeps the order of every axis longer than 1 leaves the bytes where they are."""
    return [p for p in perm if shape[p] != 1] == [i for i in range(len(shape)) if shape[i] != 1]


def ir_axis(axis: int, rank: int, layout: str) -> int | None:
    """A TFLite axis (negative: from the end, checked against the rank) as the axis of the IR tensor that
    holds the tensor in `layout`; None where it is outside the rank."""
    if not -rank <= axis < rank:
        return None
    axis %= rank
    return TO_TFLITE[axis] if layout == NCHW and rank == 4 else axis


def in_layout(values, layout: str) -> list:
    """Values given per TFLite axis (pads, begins, sizes...) in the order of the IR tensor's axes."""
    values = list(values)
    return [values[p] for p in TO_NCHW] if layout == NCHW and len(values) == 4 else values


def quantize_real(value: float, quant: QuantParams) -> int:
    """TFLM's Quantize(value): zero + round(f32(value / scale)), halves away from zero (std::round)."""
    scale, zero = quant.scalar()
    return zero + int(tflm.round_half_away(np.float32(value) / np.float32(scale)))


def fused_clamp(model, quant: QuantParams, dtype: str) -> tuple[int, int]:
    """The output codes TFLM clamps to for the operator's fused_activation_function."""
    qmin, qmax = CODE_RANGE[dtype]
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


def add_lookup(model, tables: np.ndarray, per_channel: bool = False, dtypes: tuple[str, ...] = ("int8",),
               out_dtypes: tuple[str, ...] = ("int8",)) -> None:
    """The operator as qcc's Lookup (qcc/ops/lookup_table.py): output 0 = table[byte of input 0], elementwise,
    so the input is read in whichever layout it already exists in and the output written in the same.
    `tables`: uint8 (256,) or, with per_channel, (channels, 256), one per index of TFLite's last dimension."""
    model.require(not model.is_constant(0), "its input is a constant (the converter folds such operators); qcc "
                  "compiles it on a tensor computed at run time")
    layout = model.layout_of(0)
    x = model.activation(0, layout, dtypes=dtypes)
    y = model.output(0, x.shape, layout, dtypes=out_dtypes)
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


def own_layout(model, position: int) -> str:
    """The layout in which an op that works in any layout takes an input: the one it already has (a rank-4
    tensor may exist channels first only, after a convolution)."""
    return model.layout_of(position) if len(model.input_tensor(position, "input").shape) == 4 else TFLITE


def tflite_int32s(model, position: int, what: str) -> list[int]:
    """A constant int32 input of the operator (axis, begin, paddings, perm...) as a list. TFLM reads these
    as int32_t whatever the tensor's type, misreading an int64 tensor's bytes: other types are refused."""
    tensor = model.input_tensor(position, what)
    data = model.constant(position, what)
    model.require(tensor.dtype == "int32", f"the {what} '{model.names[tensor.index]}' is {tensor.dtype}; TFLM reads "
                  "it as int32 (another type's bytes are misread), so qcc requires int32")
    return [int(v) for v in data.reshape(-1)]


def pool_window(model):
    """A TFLite pooling operator's input (channels first, as qcc's pooling kernels read it; int8, or int16 in
    a 16x8 model) and window: (input, kernel, strides, pads before, output size), from Pool2DOptions and
    TFLite's padding."""
    x = model.activation(0, NCHW, dtypes=("int8", "int16"))
    model.require(len(x.shape) == 4, f"the input must be 4-D (N, H, W, C), got {list(x.shape)}")
    kernel = [int(model.options.get("filter_height", 0)), int(model.options.get("filter_width", 0))]
    strides = [int(model.options.get("stride_h", 0)), int(model.options.get("stride_w", 0))]
    begins, _, out_hw = padding(model, x.shape[2:], kernel, strides, [1, 1])
    return x, kernel, strides, begins, out_hw
