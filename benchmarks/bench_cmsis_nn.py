"""qcc beside CMSIS-NN on the emulated Cortex-M4, in one run, on the same networks: executed
instructions per layer kind and per network in each of qcc's rounding schemes, and on the host
qcc's C beside ONNX Runtime in milliseconds. Prints a markdown report.

    PYTHONPATH=. python benchmarks/bench_cmsis_nn.py --cmsis-nn PATH
    PYTHONPATH=. python benchmarks/bench_cmsis_nn.py --cmsis-nn PATH --networks ds_cnn,resnet8 \\
        --schemes ort,single --output docs/cmsis_nn_comparison.md

PATH is an unpacked CMSIS-NN source tree (the folder holding Include/ and Source/, or one above
it); qcc never depends on it, this script only builds it. The networks are tests/networks.py's,
quantized as benchmarks/bench_targets.py does (models.quantize: QDQ, int8 activations, per-channel
int8 weights). qcc's side is `qcc bench` (qcc.commands.bench.bench) in each scheme. CMSIS-NN's side is one
generated C file that calls CMSIS-NN's s8 kernels layer by layer on NHWC buffers, with the shapes,
strides, pads, zero points and per-channel multipliers and shifts of qcc's own compiled graph of
the same model (map_layers), and the same marks after each layer as qcc's bench image: it is built
by the Makefile qcc writes for the cortex-m4 target (its bare-metal startup, linker script, flags)
and counted by qcc.commands.bench.count_layers, so both sides are counted identically, between the entry
and the return of the function that runs the network.

The data: the real weights, biases and scales; the input is the one `qcc bench` feeds qcc (seeded
random codes), transposed to NHWC. Instruction counts hardly depend on the values: run on three
seeded inputs, CMSIS-NN's changed only in elementwise add (by less than 0.05% of the layer: a
data-dependent branch in its rounding); softmax would add one, its diff_min early exit. The
counts are of this input, on both sides.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from qcc import __version__  # noqa: E402
from qcc.commands.bench import BENCH_ARM_CFLAGS, bench, count_layers  # noqa: E402
from qcc.commands.compile import compile_to_folder  # noqa: E402
from qcc.errors import QccError  # noqa: E402
from qcc.ir import C_TYPES, DTYPE_RANGE, Graph, Node  # noqa: E402
from qcc.numerics import tflm  # noqa: E402
from qcc.ops import op_named  # noqa: E402
from qcc.ops.c_emitter import c_comment_text, designated_initializer, format_values  # noqa: E402
from qcc.pipeline import ROUNDING_SCHEMES, Options  # noqa: E402
from qcc.sample_inputs import random_inputs  # noqa: E402
from qcc.toolchain.build import make  # noqa: E402
from qcc.toolchain.targets import QEMU, Target, target_named  # noqa: E402

TARGET = "cortex-m4"
QUANTIZATION = {"activation": "int8", "quant_format": "QDQ"}  # as benchmarks/bench_targets.py
# CMSIS-NN as the reference figures were built (../shared/anchors/CMSIS-NN-M4.md): -O2, one
# function or datum per section, the DSP extension's code paths; the CPU flags are the target's.
CMSIS_CFLAGS = ("-O2", "-ffunction-sections", "-fdata-sections", "-DARM_MATH_DSP")
HARNESS = "cmsis_nn_run"  # the harness's C file and its run function, which the counter marks

# Layer kinds, in the order of the report; per MAC for the first seven, per element for the rest.
KINDS = ("conv 1x1", "conv 3x3", "other conv", "grouped conv", "depthwise", "fully connected", "lstm", "average pool",
         "max pool", "add", "softmax", "concat")
PER_MAC = KINDS[:7]
FREE = "free"  # qcc's Reshape (Flatten): no code in qcc, no call in CMSIS-NN
UNMAPPED = "no CMSIS-NN kernel"


@dataclass
class CmsisLayer:
    """One node of qcc's graph and the CMSIS-NN call that does its work (function None: none)."""
    index: int
    node: str  # the qcc node's name
    op: str  # its ONNX op as qcc's manifest names it
    kind: str  # one of KINDS, FREE or UNMAPPED
    function: str | None = None
    inputs: list[str] = field(default_factory=list)  # the activation tensors it reads
    output: str = ""
    work: int = 0  # MACs (PER_MAC kinds) or elements: the denominator of the kind's rate
    params: dict = field(default_factory=dict)  # scalars and dims the call takes
    arrays: dict = field(default_factory=dict)  # name -> (C type, values): weights, bias, multipliers, shifts
    state: dict = field(default_factory=dict)  # name -> (C type, count, fill): buffers the call keeps or works in
    note: str = ""  # what the mapping leaves out, or why there is no call


# --- qcc's graph -> CMSIS-NN calls -------------------------------------------------------------------


def nhwc(shape) -> tuple[int, ...]:
    """A 4-D NCHW shape as NHWC; other ranks as they are (their layout does not change)."""
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def dims(n: int, h: int, w: int, c: int) -> dict:
    return {"n": n, "h": h, "w": w, "c": c}


def tile(w: int, h: int) -> dict:
    return {"w": w, "h": h}


def clamp_codes(node: Node, graph: Graph) -> tuple[int, int]:
    """The output codes a node clamps to: its type's range narrowed by any folded Relu/Clip."""
    qmin, qmax = DTYPE_RANGE[graph.tensor(node.outputs[0]).dtype]
    lo, hi = node.attrs.get("clamp", (qmin, qmax))
    return max(lo, qmin), min(hi, qmax)


def tflm_multipliers(real_scales) -> tuple[np.ndarray, np.ndarray]:
    """(multipliers, shifts) as TFLM gives them to CMSIS-NN: QuantizeMultiplier of each real scale
    (s_x * s_w / s_y in double, qcc's Requant.real_scale)."""
    pairs = [tflm.quantize_multiplier(float(s)) for s in np.asarray(real_scales).reshape(-1)]
    return np.array([m for m, _ in pairs], np.int64), np.array([e for _, e in pairs], np.int64)


def _zero(graph: Graph, tensor: str) -> int:
    return graph.tensor(tensor).quant.scalar()[1]


def _conv_call(layer: CmsisLayer, x_shape, y_shape, weights: np.ndarray, groups: int, common: dict, suffix: str) -> None:
    """The call of CMSIS-NN's convolution (one group) or depthwise convolution wrapper for `suffix` (s8, s16):
    its kind, function, dims and the filter in its layout, from NCHW shapes and (out_c, in_c / groups, k_h, k_w)
    weights."""
    (n, in_c, in_h, in_w), (_, out_c, out_h, out_w) = x_shape, y_shape
    k_h, k_w = weights.shape[2:]
    shapes = {"input_dims": dims(n, in_h, in_w, in_c), "bias_dims": dims(1, 1, 1, out_c),
              "output_dims": dims(n, out_h, out_w, out_c)}
    if groups == 1 or groups < in_c:  # arm_convolve_s8 takes groups: the filter has fewer channels than the input
        layer.kind = ("grouped conv" if groups > 1 else "conv 1x1" if (k_h, k_w) == (1, 1)
                      else "conv 3x3" if (k_h, k_w) == (3, 3) else "other conv")
        layer.function = f"arm_convolve_wrapper_{suffix}"
        layer.params = {"conv_params": common, **shapes, "filter_dims": dims(out_c, k_h, k_w, in_c // groups)}
        layer.arrays["filter"] = ("int8_t", weights.transpose(0, 2, 3, 1))  # OHWI, I the group's channels
    else:
        layer.kind, layer.function = "depthwise", f"arm_depthwise_conv_wrapper_{suffix}"
        layer.params = {"dw_conv_params": {**common, "ch_mult": out_c // in_c}, **shapes,
                        "filter_dims": dims(1, k_h, k_w, out_c)}
        # (out_c, 1, k_h, k_w) -> (1, k_h, k_w, out_c)
        layer.arrays["filter"] = ("int8_t", weights.transpose(1, 2, 3, 0))


def _conv(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    in_c, out_c = x.shape[1], y.shape[1]
    a, requant = node.attrs, node.params["requant"]
    groups = a["groups"]
    weights = np.asarray(node.params["weights"])  # (out_c, in_c / groups, k_h, k_w)
    mult, shift = tflm_multipliers(requant.real_scale)
    bias = a["bias"] if a["bias"] is not None else np.zeros(out_c, np.int64)
    # CMSIS-NN takes the top and left pads: the output size fixes the windows, which then read the
    # padding ONNX's pads give (an end pad that no window reaches is dropped by both)
    common = {"input_offset": -_zero(graph, node.inputs[0]), "output_offset": requant.zero,
              "stride": tile(a["strides"][1], a["strides"][0]), "padding": tile(a["pads_begin"][1], a["pads_begin"][0]),
              "dilation": tile(a["dilations"][1], a["dilations"][0]),
              "activation": {"min": requant.zero + requant.lo, "max": requant.zero + requant.hi}}
    layer.inputs, layer.output = [node.inputs[0]], node.outputs[0]
    layer.work = op_named(node.op).macs(node, graph)
    layer.arrays = {"bias": ("int32_t", bias), "mult": ("int32_t", mult), "shift": ("int32_t", shift)}
    _conv_call(layer, x.shape, y.shape, weights, groups, common, "s8")


def _fully_connected(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    if graph.tensor(node.inputs[1]).data is None:
        layer.kind, layer.note = UNMAPPED, "a product of two activations (no constant weights)"
        return
    a, requant = node.attrs, node.params["requant"]
    rows, depth, cols = a["rows"], a["depth"], a["cols"]
    bias = np.asarray(a["bias"]) if a["bias"] is not None else np.zeros(cols, np.int64)
    if bias.ndim == 2:
        bias = bias[0]
        layer.note = "a bias per row: the first row's"
    mult, shift = tflm_multipliers(requant.real_scale)
    layer.kind, layer.function = "fully connected", "arm_fully_connected_s8"
    layer.inputs, layer.output = [node.inputs[0]], node.outputs[0]
    layer.work = op_named(node.op).macs(node, graph)
    layer.params = {"fc_params": {"input_offset": -_zero(graph, node.inputs[0]), "filter_offset": 0,
                                  "output_offset": requant.zero,
                                  "activation": {"min": requant.zero + requant.lo, "max": requant.zero + requant.hi}},
                    # per tensor, as the reference figures' FC: the first channel's multiplier
                    "quant_params": {"multiplier": int(mult[0]), "shift": int(shift[0])},
                    "input_dims": dims(rows, 1, 1, depth), "filter_dims": dims(depth, 1, 1, cols),
                    "bias_dims": dims(1, 1, 1, cols), "output_dims": dims(rows, 1, 1, cols)}
    layer.arrays = {"filter": ("int8_t", np.asarray(node.params["weights"])), "bias": ("int32_t", bias)}  # (cols, depth)
    if mult.size > 1:
        layer.note = (layer.note + "; " if layer.note else "") + \
            "per-tensor requantization (channel 0's multiplier) of per-channel weights"


def _pool(layer: CmsisLayer, node: Node, graph: Graph, in_hw, out_hw, channels, kernel, strides, pads) -> None:
    x = graph.tensor(node.inputs[0])
    lo, hi = clamp_codes(node, graph)
    layer.inputs, layer.output = [node.inputs[0]], node.outputs[0]
    layer.work = x.size  # per input element
    n = x.shape[0]
    layer.params = {"pool_params": {"stride": tile(strides[1], strides[0]), "padding": tile(pads[1], pads[0]),
                                    "activation": {"min": lo, "max": hi}},
                    "input_dims": dims(n, in_hw[0], in_hw[1], channels), "filter_dims": dims(1, kernel[0], kernel[1], 1),
                    "output_dims": dims(n, out_hw[0], out_hw[1], channels)}


def _average_pool(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    a = node.attrs
    layer.kind, layer.function = "average pool", "arm_avgpool_s8"
    if node.op == "QLinearGlobalAveragePool":
        x = graph.tensor(node.inputs[0])
        spatial = (x.shape[1], x.shape[2]) if a["channels_last"] else (x.shape[2], x.shape[3])
        _pool(layer, node, graph, spatial, (1, 1), a["channels"], spatial, (1, 1), (0, 0))
    else:
        _pool(layer, node, graph, a["in_hw"], a["out_hw"], a["channels"], a["kernel"], a["strides"], a["pads_begin"])
    x, y = graph.tensor(node.inputs[0]).quant.scalar(), graph.tensor(node.outputs[0]).quant.scalar()
    if x != y:
        layer.note = "arm_avgpool_s8 does not requantize (TFLite's pool keeps the input's scale); qcc does"


def _tflm_average_pool(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    """TFLite's AVERAGE_POOL_2D (qcc's TflmAveragePool, channels first inside): arm_avgpool_s8 computes it."""
    a = node.attrs
    _, channels, in_h, in_w = graph.tensor(node.inputs[0]).shape
    layer.kind, layer.function = "average pool", "arm_avgpool_s8"
    _pool(layer, node, graph, (in_h, in_w), graph.tensor(node.outputs[0]).shape[2:], channels, a["kernel"], a["strides"],
          a["pads_begin"])


def _tflm_softmax(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    """TFLite's SOFTMAX (qcc's TflmSoftmax, over the last axis of the model's own layout)."""
    x = graph.tensor(node.inputs[0])
    mult, shift, diff_min = softmax_parameters(float(x.quant.scalar()[0]), node.attrs["beta"])
    layer.kind, layer.function = "softmax", "arm_softmax_s8"
    layer.inputs, layer.output, layer.work = [node.inputs[0]], node.outputs[0], x.size
    layer.params = {"num_rows": x.size // x.shape[-1], "row_size": x.shape[-1], "mult": mult, "shift": shift,
                    "diff_min": diff_min}


def _max_pool(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    a = node.attrs
    if list(a["dilations"]) != [1, 1]:
        layer.kind, layer.note = UNMAPPED, "dilated max pool"
        return
    _, channels, in_h, in_w = graph.tensor(node.inputs[0]).shape
    out_hw = graph.tensor(node.outputs[0]).shape[2:]
    layer.kind, layer.function = "max pool", "arm_max_pool_s8"
    _pool(layer, node, graph, (in_h, in_w), out_hw, channels, a["kernel"], a["strides"], a["pads_begin"])


def _add(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    a, b, y = (graph.tensor(t) for t in (*node.inputs, node.outputs[0]))
    if a.shape != b.shape or a.is_const or b.is_const:
        layer.kind, layer.note = UNMAPPED, "a broadcast or constant operand: arm_elementwise_add_s8 adds equal shapes"
        return
    p = op_named(node.op).tflm_params(node, graph)  # TFLM's CalculateOpDataAdd, as TFLM passes them on
    lo, hi = clamp_codes(node, graph)
    at = node.attrs
    layer.kind, layer.function = "add", "arm_elementwise_add_s8"
    layer.inputs, layer.output, layer.work = list(node.inputs), node.outputs[0], y.size
    layer.params = {"input_1_offset": -at["a_zero"], "input_1_mult": p["a_mult"], "input_1_shift": p["a_shift"],
                    "input_2_offset": -at["b_zero"], "input_2_mult": p["b_mult"], "input_2_shift": p["b_shift"],
                    "left_shift": 20, "out_offset": at["c_zero"], "out_mult": p["c_mult"], "out_shift": p["c_shift"],
                    "out_activation_min": lo, "out_activation_max": hi, "block_size": y.size}


def softmax_parameters(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """(multiplier, shift, diff_min) of TFLM's int8 SOFTMAX prepare (softmax_common.cc):
    PreprocessSoftmaxScaling with 5 integer bits, then -CalculateInputRadius(5, shift)."""
    mult, shift, diff_min = tflm.softmax_scaling(input_scale, beta)  # QuantizeMultiplierGreaterThanOne: shift >= 0
    if shift < 0:
        raise ValueError(f"softmax input scale {input_scale} is too small for TFLM's int8 softmax")
    return mult, shift, diff_min


def _softmax(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    x = graph.tensor(node.inputs[0])
    a = node.attrs
    if len(x.shape) == 4 and a["axis"] == 1 and a["opset"] >= 13:  # the channels: the innermost axis in NHWC
        rows, row_size = x.size // x.shape[1], x.shape[1]
    elif a["inner"] == 1:
        rows, row_size = a["outer"], a["depth"]
    else:
        layer.kind, layer.note = UNMAPPED, "a softmax over an axis that is not the innermost"
        return
    mult, shift, diff_min = softmax_parameters(float(x.quant.scalar()[0]))
    layer.kind, layer.function = "softmax", "arm_softmax_s8"
    layer.inputs, layer.output, layer.work = [node.inputs[0]], node.outputs[0], x.size
    layer.params = {"num_rows": rows, "row_size": row_size, "mult": mult, "shift": shift, "diff_min": diff_min}
    layer.note = "arm_softmax_s8 writes TFLite's fixed output quantization (1/256, -128)"


def _concat(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    y = graph.tensor(node.outputs[0])
    axis = node.attrs["axis"] % len(y.shape)
    position = {0: 0, 1: 3, 2: 1, 3: 2}[axis] if len(y.shape) == 4 else axis  # the axis in NHWC
    out_shape = nhwc(y.shape)
    outer = int(np.prod(out_shape[:position], dtype=np.int64))
    out_x = int(np.prod(out_shape[position:], dtype=np.int64))
    parts, offset = [], 0
    for name in node.inputs:
        if graph.tensor(name).is_const:
            layer.kind, layer.note = UNMAPPED, "a constant operand"
            return
        inner = int(np.prod(nhwc(graph.tensor(name).shape)[position:], dtype=np.int64))
        parts.append({"input_x": inner, "input_y": outer, "input_z": 1, "input_w": 1, "output_x": out_x,
                      "offset_x": offset})
        offset += inner
    if max(outer, out_x) > 0xFFFF:
        layer.kind, layer.note = UNMAPPED, f"rows of {out_x} x {outer}: arm_concatenation_s8_x takes 16-bit sizes"
        return
    layer.kind, layer.function = "concat", "arm_concatenation_s8_x"
    layer.inputs, layer.output, layer.work = list(node.inputs), node.outputs[0], y.size
    layer.params = {"parts": parts}
    quants = node.attrs.get("input_quant")
    if quants is not None and any(q != y.quant.scalar() for q in quants):
        layer.note = "CMSIS-NN copies; qcc requantizes the inputs whose scale differs from the output's"


def _conv16x8(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    """TFLite's 16x8 CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (qcc's Conv16x8): CMSIS-NN's s16 kernels."""
    a, x, y = node.attrs, graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    conv = op_named(node.op)
    (n, in_c, in_h, in_w), (_, out_c, out_h, out_w) = conv._geometry(node, graph)
    weights = np.asarray(graph.tensor(node.inputs[1]).data)  # (out_c, in_c / groups, k_h, k_w)
    groups = a["groups"]
    real = float(x.quant.scalar()[0]) * np.broadcast_to(graph.tensor(node.inputs[1]).quant.scale.reshape(-1),
                                                        (out_c,)).astype(np.float64) / float(y.quant.scalar()[0])
    mult, shift = tflm_multipliers(real)
    bias = a["bias"] if a["bias"] is not None else np.zeros(out_c, np.int64)
    lo, hi = conv._clamp(node)
    layer.inputs, layer.output = [node.inputs[0]], node.outputs[0]
    layer.work = conv.macs(node, graph)
    common = {"input_offset": 0, "output_offset": 0, "stride": tile(a["strides"][1], a["strides"][0]),
              "padding": tile(a["pads_begin"][1], a["pads_begin"][0]),
              "dilation": tile(a["dilations"][1], a["dilations"][0]), "activation": {"min": lo, "max": hi}}
    layer.arrays = {"bias": ("int64_t", bias), "mult": ("int32_t", mult), "shift": ("int32_t", shift)}
    if not a["wide"]:
        layer.note = "an int32 bias (CMSIS-NN's s16 kernels take int64 here)"
    if len(y.shape) == 2:  # FULLY_CONNECTED: arm_fully_connected_s16 takes one multiplier
        layer.kind, layer.function = "fully connected", "arm_fully_connected_s16"
        layer.params = {"fc_params": {"input_offset": 0, "filter_offset": 0, "output_offset": 0,
                                      "activation": {"min": lo, "max": hi}},
                        "quant_params": {"multiplier": int(mult[0]), "shift": int(shift[0])},
                        "input_dims": dims(n, 1, 1, in_c), "filter_dims": dims(in_c, 1, 1, out_c),
                        "bias_dims": dims(1, 1, 1, out_c), "output_dims": dims(n, 1, 1, out_c)}
        layer.arrays = {"filter": ("int8_t", weights.reshape(out_c, in_c)), "bias": ("int64_t", bias)}
        if np.unique(mult).size > 1 or np.unique(shift).size > 1:
            layer.note = "per-tensor requantization (channel 0's multiplier) of per-channel weights"
    else:
        _conv_call(layer, (n, in_c, in_h, in_w), (n, out_c, out_h, out_w), weights, groups, common, "s16")


def _lstm(layer: CmsisLayer, node: Node, graph: Graph) -> None:
    """TFLite's int8 LSTM (qcc's TflmLstm): arm_lstm_unidirectional_s8 with the same parameters, its state in
    buffers of the harness (a zero-filled cell state, a hidden state at its zero point)."""
    p = node.params["lstm"]
    _, units, features = p.input_weights.shape
    gates = {}
    for g, gate in enumerate(("forget", "input", "cell", "output")):
        gates[f"{gate}_gate"] = {
            "input_multiplier": p.input_scaling[g][0], "input_shift": p.input_scaling[g][1],
            "input_weights": f"{{p}}_w{g}", "input_effective_bias": f"{{p}}_wb{g}",
            "hidden_multiplier": p.recurrent_scaling[g][0], "hidden_shift": p.recurrent_scaling[g][1],
            "hidden_weights": f"{{p}}_r{g}", "hidden_effective_bias": f"{{p}}_rb{g}", "bias": "NULL",
            "activation_type": "ARM_TANH" if gate == "cell" else "ARM_SIGMOID"}
        layer.arrays |= {f"w{g}": ("int8_t", p.input_weights[g]), f"wb{g}": ("int32_t", p.input_acc_const[g]),
                         f"r{g}": ("int8_t", p.recurrent_weights[g]), f"rb{g}": ("int32_t", p.recurrent_acc_const[g])}
    power = units and int(np.round(np.log2(float(graph.tensor(node.inputs[2]).quant.scalar()[0]))))
    layer.kind, layer.function = "lstm", "arm_lstm_unidirectional_s8"
    layer.inputs, layer.output = [node.inputs[0]], node.outputs[0]
    layer.work = op_named(node.op).macs(node, graph)
    layer.params = {"lstm_params": {
        "time_major": int(node.attrs["time_major"]), "batch_size": node.attrs["batch"], "time_steps": node.attrs["steps"],
        "input_size": features, "hidden_size": units, "input_offset": -_zero(graph, node.inputs[0]),
        "forget_to_cell_multiplier": p.forget_mul[0], "forget_to_cell_shift": p.forget_mul[1],
        "input_to_cell_multiplier": p.input_mul[0], "input_to_cell_shift": p.input_mul[1],
        "cell_clip": p.cell_clip or 32767, "cell_scale_power": power,
        "output_multiplier": p.hidden_mul[0], "output_shift": p.hidden_mul[1], "output_offset": p.hidden_zero, **gates}}
    layer.state = {"hidden": ("int8_t", units * node.attrs["batch"], p.hidden_zero),
                   "cell": ("int16_t", units * node.attrs["batch"], 0),
                   "temp1": ("int16_t", units * node.attrs["batch"], 0), "temp2": ("int16_t", units * node.attrs["batch"], 0)}


MAPPERS = {"QLinearConv": _conv, "QGemm": _fully_connected, "QLinearMatMul": _fully_connected,
           "QLinearAveragePool": _average_pool, "QLinearGlobalAveragePool": _average_pool, "MaxPool": _max_pool,
           "QLinearAdd": _add, "QLinearSoftmax": _softmax, "Concat": _concat, "QLinearConcat": _concat,
           "TflmAveragePool": _tflm_average_pool, "TflmSoftmax": _tflm_softmax}
WIDE_MAPPERS = {"Conv16x8": _conv16x8, "TflmLstm": _lstm}  # int16 codes in or out: CMSIS-NN's s16 and LSTM kernels
# The TFLite frontend's layout changes (channels last <-> first): CMSIS-NN keeps every tensor channels last.
LAYOUT_PERMUTATIONS = ([0, 3, 1, 2], [0, 2, 3, 1])


def map_layers(graph: Graph) -> list[CmsisLayer]:
    """One CmsisLayer per node of the graph, in its order: the call that does the node's work in
    CMSIS-NN, FREE for qcc's Reshape (Flatten; a view in both), UNMAPPED for ops CMSIS-NN's s8
    kernels do not cover (table lookups such as LeakyRelu and Sigmoid, Resize, float islands...)."""
    layers = []
    for index, node in enumerate(graph.nodes):
        layer = CmsisLayer(index, node.name, node.attrs.get("onnx_op", node.op), UNMAPPED)
        if node.op in ("Reshape", "ChannelsFirstView") or (
                node.op == "Transpose" and list(node.attrs["perm"]) in LAYOUT_PERMUTATIONS and graph.frontend == "tflite"):
            layer.kind, layer.inputs, layer.output = FREE, [node.inputs[0]], node.outputs[0]
        elif node.op in MAPPERS and all(graph.tensor(t).dtype == "int8" for t in node.outputs):
            MAPPERS[node.op](layer, node, graph)
        elif node.op in WIDE_MAPPERS:
            WIDE_MAPPERS[node.op](layer, node, graph)
        elif node.op in MAPPERS:
            layer.note = "uint8 activations: CMSIS-NN's kernels are s8"
        else:
            layer.note = f"{layer.op}: no CMSIS-NN s8 kernel"
        layers.append(layer)
    return layers


# --- the C harness -----------------------------------------------------------------------------------


def scratch_bound(layer: CmsisLayer) -> int:
    """An upper bound of the context buffer CMSIS-NN's get_buffer_size gives for the layer on a core
    with the DSP extension (the harness checks the real size before the run)."""
    p = layer.params
    if layer.function == "arm_convolve_wrapper_s8":  # (arm_convolve_s8's columns span the input's channels)
        f = p["filter_dims"]
        return 4 * (-(-f["h"] * f["w"] * p["input_dims"]["c"] // 4) * 4)
    if layer.function == "arm_depthwise_conv_wrapper_s8":
        return 2 * p["input_dims"]["c"] * p["filter_dims"]["h"] * p["filter_dims"]["w"]
    if layer.function == "arm_avgpool_s8":
        return 4 * p["input_dims"]["c"]
    if layer.function in ("arm_convolve_wrapper_s16", "arm_depthwise_conv_wrapper_s16"):
        f = p["filter_dims"]
        return 8 * f["h"] * f["w"] * max(f["c"], p["input_dims"]["c"]) + 64
    if layer.function == "arm_fully_connected_s16":
        return 4 * p["filter_dims"]["n"] + 64
    return 0


BUFFER_SIZE_CALLS = {
    "arm_convolve_wrapper_s8": "arm_convolve_wrapper_s8_get_buffer_size(&{p}_conv_params, &{p}_input_dims, "
                               "&{p}_filter_dims, &{p}_output_dims)",
    "arm_depthwise_conv_wrapper_s8": "arm_depthwise_conv_wrapper_s8_get_buffer_size(&{p}_dw_conv_params, "
                                     "&{p}_input_dims, &{p}_filter_dims, &{p}_output_dims)",
    "arm_avgpool_s8": "arm_avgpool_s8_get_buffer_size({p}_output_dims.w, {p}_input_dims.c)",
    "arm_fully_connected_s8": "arm_fully_connected_s8_get_buffer_size(&{p}_filter_dims)",
    "arm_convolve_wrapper_s16": "arm_convolve_wrapper_s16_get_buffer_size(&{p}_conv_params, &{p}_input_dims, "
                                "&{p}_filter_dims, &{p}_output_dims)",
    "arm_depthwise_conv_wrapper_s16": "arm_depthwise_conv_wrapper_s16_get_buffer_size(&{p}_dw_conv_params, "
                                      "&{p}_input_dims, &{p}_filter_dims, &{p}_output_dims)",
    "arm_fully_connected_s16": "arm_fully_connected_s16_get_buffer_size(&{p}_filter_dims)",
}
STRUCT_TYPES = {"conv_params": "cmsis_nn_conv_params", "dw_conv_params": "cmsis_nn_dw_conv_params",
                "fc_params": "cmsis_nn_fc_params", "pool_params": "cmsis_nn_pool_params",
                "quant_params": "cmsis_nn_per_tensor_quant_params", "input_dims": "cmsis_nn_dims",
                "filter_dims": "cmsis_nn_dims", "bias_dims": "cmsis_nn_dims", "output_dims": "cmsis_nn_dims",
                "lstm_params": "cmsis_nn_lstm_params"}


def _call(layer: CmsisLayer, p: str, buffers: dict[str, str]) -> list[str]:
    """The statements of the layer's call; p is its symbols' prefix."""
    ins = [buffers[t] for t in layer.inputs]
    out = buffers[layer.output]
    f = layer.function
    if f == "arm_convolve_wrapper_s16":
        return [f"status |= {f}(&ctx, &{p}_conv_params, &{p}_quant, &{p}_input_dims, {ins[0]}, &{p}_filter_dims, "
                f"{p}_filter, &{p}_bias_dims, &{p}_bias_data, &{p}_output_dims, {out});"]
    if f in ("arm_depthwise_conv_wrapper_s16", "arm_fully_connected_s16"):
        conv, quant = ("dw_conv_params", "quant") if f == "arm_depthwise_conv_wrapper_s16" else ("fc_params",
                                                                                                 "quant_params")
        return [f"status |= {f}(&ctx, &{p}_{conv}, &{p}_{quant}, &{p}_input_dims, {ins[0]}, &{p}_filter_dims, "
                f"{p}_filter, &{p}_bias_dims, {p}_bias, &{p}_output_dims, {out});"]
    if f == "arm_lstm_unidirectional_s8":
        return [f"status |= {f}({ins[0]}, {out}, &{p}_lstm_params, &{p}_lstm_context);"]
    if f in ("arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8"):
        conv = "conv_params" if f == "arm_convolve_wrapper_s8" else "dw_conv_params"
        return [f"status |= {f}(&ctx, &{p}_{conv}, &{p}_quant, &{p}_input_dims, {ins[0]}, &{p}_filter_dims, "
                f"{p}_filter, &{p}_bias_dims, {p}_bias, &{p}_output_dims, {out});"]
    if f == "arm_fully_connected_s8":
        return [f"status |= {f}(&ctx, &{p}_fc_params, &{p}_quant_params, &{p}_input_dims, {ins[0]}, &{p}_filter_dims, "
                f"{p}_filter, &{p}_bias_dims, {p}_bias, &{p}_output_dims, {out});"]
    if f in ("arm_avgpool_s8", "arm_max_pool_s8"):
        return [f"status |= {f}(&ctx, &{p}_pool_params, &{p}_input_dims, {ins[0]}, &{p}_filter_dims, "
                f"&{p}_output_dims, {out});"]
    if f == "arm_elementwise_add_s8":
        q = layer.params
        args = ", ".join(str(q[k]) for k in ("input_1_offset", "input_1_mult", "input_1_shift", "input_2_offset",
                                             "input_2_mult", "input_2_shift", "left_shift"))
        tail = ", ".join(str(q[k]) for k in ("out_offset", "out_mult", "out_shift", "out_activation_min",
                                             "out_activation_max", "block_size"))
        return [f"status |= {f}({ins[0]}, {ins[1]}, {args}, {out}, {tail});"]
    if f == "arm_softmax_s8":
        q = layer.params
        return [f"{f}({ins[0]}, {q['num_rows']}, {q['row_size']}, {q['mult']}, {q['shift']}, {q['diff_min']}, {out});"]
    if f == "arm_concatenation_s8_x":
        return [f"{f}({src}, {part['input_x']}, {part['input_y']}, {part['input_z']}, {part['input_w']}, {out}, "
                f"{part['output_x']}, {part['offset_x']});" for src, part in zip(ins, layer.params["parts"])]
    raise AssertionError(f"no call for {f}")


def harness_source(graph: Graph, layers: list[CmsisLayer], inputs: list[np.ndarray]) -> str:
    """The C file: every activation in its own static NHWC buffer (FREE layers alias their input),
    the graph's inputs as constants (NHWC), the run function HARNESS calling CMSIS-NN layer by layer
    with qcc_bench_layer() after each of the graph's nodes, and a main like qcc's bench runner."""
    root: dict[str, str] = {}
    for layer in layers:
        if layer.kind == FREE:
            root[layer.output] = root.get(layer.inputs[0], layer.inputs[0])
    buffers: dict[str, str] = {}
    decls = []
    tensors = [t for node in graph.nodes for t in (*node.inputs, *node.outputs) if not graph.tensor(t).is_const]
    for name in dict.fromkeys(graph.inputs + tensors):
        tensor = graph.tensor(name)
        if name in root or name in buffers:
            continue
        symbol = f"t{len(buffers)}"
        buffers[name] = symbol
        ctype = C_TYPES[tensor.dtype]
        if name in graph.inputs:
            value = np.asarray(inputs[graph.inputs.index(name)]).reshape(tensor.shape)
            value = value.transpose(0, 2, 3, 1) if value.ndim == 4 else value
            decls.append(f"/* {c_comment_text(name)}: graph input {tensor.shape} NCHW, here NHWC */\n"
                         f"static const {ctype} {symbol}[{tensor.size}] __attribute__((aligned(4))) = {{\n"
                         f"    {format_values(value)}\n}};")
        else:
            decls.append(f"static {ctype} {symbol}[{tensor.size}] __attribute__((aligned(4))); "
                         f"/* {c_comment_text(name)} {'x'.join(map(str, nhwc(tensor.shape)))} */")
    for alias, source in root.items():
        buffers[alias] = buffers[source]
    scratch = max([scratch_bound(layer) for layer in layers] + [16])
    body, sizes = [], []
    for layer in layers:
        p = f"l{layer.index}"
        head = f"/* {layer.index} {c_comment_text(layer.op)} '{c_comment_text(layer.node)}': {layer.kind}"
        if layer.function is None:
            body.append(f"    {head} (no call) */")
        else:
            decls.append(f"{head} -> {layer.function} */")
            for key, (ctype, values) in layer.arrays.items():
                qualifier = "" if key in ("mult", "shift") else "const "  # CMSIS-NN takes non-const multipliers
                decls.append(f"static {qualifier}{ctype} {p}_{key}[{np.asarray(values).size}] = {{\n"
                             f"    {format_values(np.ascontiguousarray(values))}\n}};")
            if "mult" in layer.arrays:
                decls.append(f"static const cmsis_nn_per_channel_quant_params {p}_quant = {{ {p}_mult, {p}_shift }};")
            if layer.function == "arm_convolve_wrapper_s16":
                decls.append(f"static const cmsis_nn_bias_data {p}_bias_data = {{ {p}_bias, false }};")
            for key, (ctype, count, fill) in layer.state.items():
                decls.append(f"static {ctype} {p}_{key}[{count}] __attribute__((aligned(4))) = {{ "
                             f"{', '.join([str(fill)] * count)} }};")
            if layer.state:
                decls.append(f"static cmsis_nn_lstm_context {p}_lstm_context = {{ {p}_temp1, {p}_temp2, {p}_cell, "
                             f"{p}_hidden }};")
            for key, value in layer.params.items():
                if key in STRUCT_TYPES:
                    text = designated_initializer(value).replace("{p}", p)  # the LSTM's gates name their arrays
                    decls.append(f"static const {STRUCT_TYPES[key]} {p}_{key} = {text};")
            body.append(f"    {head} */")
            body += [f"    {line}" for line in _call(layer, p, buffers)]
            if layer.function in BUFFER_SIZE_CALLS:
                sizes.append(BUFFER_SIZE_CALLS[layer.function].format(p=p))
        body.append("    qcc_bench_layer();")
    checks = "\n".join(f"    size = {call};\n    need = size > need ? size : need;" for call in sizes)
    return HARNESS_TEMPLATE.format(
        name=HARNESS, graph=c_comment_text(graph.name), scratch=scratch, declarations="\n".join(decls),
        body="\n".join(body), checks=checks)


HARNESS_TEMPLATE = """\
/* {name}.c: generated by qcc's benchmarks/bench_cmsis_nn.py for the graph '{graph}'. The network
 * through CMSIS-NN's s8 kernels, one call (or none) per node of qcc's graph, each followed by
 * qcc_bench_layer(); main as qcc's bench runner (templates/qcc_bench_runner.c.j2): two calibration
 * marks, then the run, whose status goes straight to qcc_bench_done. */
#include <stdint.h>
#include <stdio.h>

#include "arm_nnfunctions.h"

__attribute__((noipa)) void qcc_bench_layer(void)
{{
}}

__attribute__((noipa)) void qcc_bench_done(int status)
{{
    (void)status;
}}

static int8_t scratch[{scratch}] __attribute__((aligned(4)));
static const cmsis_nn_context ctx = {{ scratch, {scratch} }};
static volatile int run_status;

{declarations}

__attribute__((noinline)) int {name}(void)
{{
    int status = 0;
{body}
    run_status = status;
    return status;
}}

int main(void)
{{
    int32_t need = 0, size;
{checks}
    (void)size;
    if (need > (int32_t)sizeof scratch) {{
        printf("cmsis-nn-scratch %ld bytes needed, %u given\\n", (long)need, (unsigned)sizeof scratch);
        return 3;
    }}
    qcc_bench_layer();
    qcc_bench_layer();
    qcc_bench_done({name}());
    if (run_status != 0) {{
        printf("cmsis-nn-status %d\\n", run_status);
        return 4;
    }}
    return 0;
}}
"""


# --- building and counting ---------------------------------------------------------------------------


def cmsis_root(path: str) -> Path:
    """The folder holding Include/arm_nnfunctions.h: PATH itself or its CMSIS-NN subfolder."""
    for candidate in (Path(path), Path(path) / "CMSIS-NN"):
        if (candidate / "Include" / "arm_nnfunctions.h").is_file() and (candidate / "Source").is_dir():
            return candidate.resolve()
    raise SystemExit(f"--cmsis-nn {path}: no CMSIS-NN source tree there (Include/arm_nnfunctions.h and Source/)")


def cmsis_sources(root: Path) -> list[Path]:
    """CMSIS-NN's integer kernels and support functions (not its f16/f32 API nor the Python bindings)."""
    return sorted(p for p in (root / "Source").glob("*/*.c") if not p.stem.endswith(("_f16", "_f32", "_flt")))


def tree_digest(root: Path) -> str:
    """A short SHA-256 of CMSIS-NN's headers and sources (names and contents): which tree was measured."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (*(root / "Include").rglob("*"), *(root / "Source").rglob("*")) if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_cmsis_library(root: Path, target: Target, work: Path, jobs: int) -> Path:
    """libcmsis-nn.a built with CMSIS_CFLAGS and the target's CPU flags (an archive: the link takes
    only the kernels the harness calls)."""
    objects = work / "cmsis-nn-obj"
    objects.mkdir(parents=True, exist_ok=True)
    flags = [*CMSIS_CFLAGS, *target.cpu_flags, f"-I{root / 'Include'}"]

    def compile_one(source: Path) -> Path:
        obj = objects / f"{source.stem}.o"
        result = subprocess.run([target.compiler, *flags, "-c", str(source), "-o", str(obj)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise QccError(f"building CMSIS-NN's {source.name} failed: {result.stderr.strip()[-500:]}")
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        built = list(pool.map(compile_one, cmsis_sources(root)))
    library = work / "libcmsis-nn.a"
    archiver = target.compiler[:-len("gcc")] + "ar"
    subprocess.run([archiver, "rcs", str(library), *map(str, built)], check=True, capture_output=True)
    return library


def count_cmsis(model: str, scheme: str, cmsis: Path, library: Path, work: Path,
                seed: int = 0) -> tuple[list[CmsisLayer], dict]:
    """Compile the model with qcc for the cortex-m4 (its graph, and the folder whose Makefile,
    startup and linker script build the harness), write the harness, build and count it. Seed 0
    gives the input qcc.commands.bench feeds qcc's run."""
    out_dir = work / f"{Path(model).stem}-cmsis-nn-{seed}"
    compiled, _ = compile_to_folder(model, str(out_dir), Options(rounding=scheme, target=TARGET), golden="0")
    graph = compiled.graph
    layers = map_layers(graph)
    inputs = random_inputs(graph, 1, seed=seed)[0]
    (out_dir / f"{HARNESS}.c").write_text(harness_source(graph, layers, inputs))
    image = out_dir / f"{HARNESS}-{TARGET}.elf"
    make(out_dir, image.name, variables={"ARM_CFLAGS": f"{BENCH_ARM_CFLAGS} -DARM_MATH_DSP -I{cmsis / 'Include'}",
                                         "SRCS": str(library)})
    (per_layer, overhead, after_last, whole), _, _ = count_layers(image, target_named(TARGET), HARNESS, len(layers))
    return layers, {"per_layer": per_layer, "marker_overhead": overhead, "after_last_layer": after_last,
                    "per_inference": whole}


def measure_network(network: str, schemes: list[str], cmsis: Path, library: Path, work: Path) -> dict:
    """Quantize the network, count qcc in every scheme and CMSIS-NN once, on the Cortex-M4."""
    from models import quantize
    from networks import NETWORKS

    logging.disable(logging.WARNING)  # quantize_static's pre-processing advice
    start = time.perf_counter()
    net_dir = work / network
    net_dir.mkdir()
    model = str(quantize(NETWORKS[network](), net_dir / f"{network}.onnx", **QUANTIZATION))
    row = {"network": network, "model": model, "qcc": {}, "qcc_whole_layers": {}}
    for scheme in schemes:
        report = bench(model, Options(rounding=scheme, target=TARGET), object_sizes=False)
        row["qcc"][scheme] = report["instructions"]
        row["macs"] = report["macs"]
        # Per layer kind: every layer on its own (a streamed chain counts its layers together), by name
        # (a streamed plan may also run the layers in another order)
        whole = bench(model, Options(rounding=scheme, target=TARGET, whole_tensors=True), object_sizes=False)
        row["qcc_whole_layers"][scheme] = {layer["name"]: layer["instructions"] for layer in whole["instructions"]["layers"]}
    layers, counts = count_cmsis(model, schemes[0], cmsis, library, net_dir)
    names = [layer["name"] for layer in row["qcc"][schemes[0]]["layers"]]
    if names != [layer.node for layer in layers]:
        raise QccError(f"{network}: qcc bench's layers are not the graph's nodes ({names[:5]}...)")
    row["layers"], row["cmsis"] = layers, counts
    row["seconds"] = time.perf_counter() - start
    return row


def host_times(row: dict, schemes: list[str], repeats: int) -> dict:
    """qcc's C (-O2) and ONNX Runtime (one thread) on the host, ms per inference (qcc.commands.bench on the
    host target: qcc.toolchain.host_timing's medians), each the fastest of its runs: the C's of `repeats` runs
    per scheme, ORT's of all of them (it runs the same model whatever qcc's scheme)."""
    runs = [(scheme, bench(row["model"], Options(rounding=scheme, target="host"), object_sizes=False)["host_time"])
            for _ in range(repeats) for scheme in schemes]
    return {"c_ms": {scheme: min(t["c_ms"] for s, t in runs if s == scheme) for scheme in schemes},
            "ort_ms": min(t["ort_ms"] for _, t in runs), "ort_runs": len(runs)}


# --- the report --------------------------------------------------------------------------------------


def not_compared(row: dict, scheme: str) -> int:
    """qcc's instructions in the layers CMSIS-NN has no kernel for (UNMAPPED), left out of the totals."""
    return sum(entry["instructions"] for layer, entry in zip(row["layers"], row["qcc"][scheme]["layers"])
               if layer.kind == UNMAPPED)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def network_table(rows: list[dict], schemes: list[str]) -> str:
    header = ["network", "MACs", "CMSIS-NN insn", "CMSIS-NN insn/MAC",
              *(f"qcc insn ({s})" for s in schemes), *(f"qcc / CMSIS-NN ({s})" for s in schemes), "not compared"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        left_out = [layer for layer in row["layers"] if layer.kind == UNMAPPED]
        cmsis_total = row["cmsis"]["per_inference"]
        qcc_totals = [row["qcc"][s]["per_inference"] - not_compared(row, s) for s in schemes]
        if left_out:
            ops = sorted({layer.op for layer in left_out})
            outside = " / ".join(f"{not_compared(row, s):,}" for s in schemes)
            note = f"{len(left_out)} layers ({', '.join(ops)}): qcc {outside} insn"
        else:
            note = "-"
        compared_macs = sum(layer.work for layer in row["layers"] if layer.kind in PER_MAC)
        cells = [row["network"], f"{row['macs']:,}", f"{cmsis_total:,}", ratio(cmsis_total, compared_macs),
                 *(f"{t:,}" for t in qcc_totals), *(ratio(t, cmsis_total) for t in qcc_totals), note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kind_table(rows: list[dict], schemes: list[str]) -> str:
    header = ["kind", "layers", "MACs or elements", "CMSIS-NN insn per unit",
              *(f"qcc ({s})" for s in schemes), *(f"qcc / CMSIS-NN ({s}), min-max over layers" for s in schemes)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for kind in KINDS:
        picked = [(row, k) for row in rows for k, layer in enumerate(row["layers"]) if layer.kind == kind]
        unit = "MAC" if kind in PER_MAC else "element"
        if not picked:
            lines.append("| " + " | ".join([kind, "0", "none in these networks", "-", *["-"] * (2 * len(schemes))]) + " |")
            continue
        work = sum(row["layers"][k].work for row, k in picked)
        cmsis = [row["cmsis"]["per_layer"][k] for row, k in picked]
        per_unit = [f"{sum(row['qcc_whole_layers'][s][row['layers'][k].node] for row, k in picked) / work:.2f}"
                    for s in schemes]
        ratios = []
        for s in schemes:
            qcc = [row["qcc_whole_layers"][s][row["layers"][k].node] for row, k in picked]
            each = [q / c for q, c in zip(qcc, cmsis) if c]
            spread = f" ({min(each):.2f}-{max(each):.2f})" if len(each) > 1 else ""
            ratios.append(ratio(sum(qcc), sum(cmsis)) + spread)
        lines.append("| " + " | ".join([kind, str(len(picked)), f"{work:,} {unit}s", f"{sum(cmsis) / work:.2f}",
                                        *per_unit, *ratios]) + " |")
    return "\n".join(lines)


def layer_table(row: dict, schemes: list[str]) -> str:
    header = ["#", "layer", "op", "kind", "CMSIS-NN call", "MACs / elements", "CMSIS-NN insn",
              *(f"qcc ({s})" for s in schemes), f"ratio ({schemes[0]})", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for k, layer in enumerate(row["layers"]):
        qcc = [row["qcc"][s]["layers"][k]["instructions"] for s in schemes]
        cmsis = row["cmsis"]["per_layer"][k]
        lines.append("| " + " | ".join([str(k), layer.node, layer.op, layer.kind, layer.function or "-",
                                        f"{layer.work:,}", f"{cmsis:,}", *(f"{q:,}" for q in qcc),
                                        ratio(qcc[0], cmsis) if layer.kind != UNMAPPED else "-", layer.note]) + " |")
    return "\n".join(lines)


def host_table(rows: list[dict], schemes: list[str]) -> str:
    header = ["network", *(f"qcc C ms ({s})" for s in schemes), "ORT ms", *(f"qcc / ORT ({s})" for s in schemes)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        host = row["host"]
        lines.append("| " + " | ".join([row["network"], *(f"{host['c_ms'][s]:.3f}" for s in schemes),
                                        f"{host['ort_ms']:.3f}",
                                        *(f"{host['c_ms'][s] / host['ort_ms']:.2f}" for s in schemes)]) + " |")
    return "\n".join(lines)


MAPPING_TEXT = """\
How qcc's layers map to CMSIS-NN calls (map_layers): QLinearConv with one group ->
arm_convolve_wrapper_s8 (1x1, 3x3 and other kernels; OHWI weights), and with groups of several channels
(arm_convolve_s8's groups: the filter's channels fewer than the input's); QLinearConv with groups ==
input channels -> arm_depthwise_conv_wrapper_s8 ((1, kh, kw, C) weights); QGemm -> arm_fully_connected_s8
(per tensor: channel 0's multiplier, as the reference figures' FC); QLinearAveragePool and
QLinearGlobalAveragePool -> arm_avgpool_s8 (the global pool as one window over the map); MaxPool ->
arm_max_pool_s8; QLinearAdd of equal shapes -> arm_elementwise_add_s8 (TFLM's ADD parameters,
left shift 20); QLinearSoftmax over the innermost axis -> arm_softmax_s8 (TFLM's beta multiplier and
diff_min); Concat / QLinearConcat -> arm_concatenation_s8_x once per input (the NHWC rows of the
concatenated axis; CMSIS-NN copies where qcc requantizes inputs of another scale). Multipliers and
shifts: TFLM's QuantizeMultiplier of s_x * s_w / s_y in double; offsets from qcc's zero points;
activation bounds from the output clamp (folded Relu/Clip). qcc's Reshape (Flatten) is a view: no
call in CMSIS-NN, no instruction in qcc. Not compared (no CMSIS-NN s8 kernel; left out of both
totals, qcc's instructions in them listed): table lookups (LeakyRelu, Sigmoid), Resize, float
islands (the autoencoder's BatchNormalization)."""


def report(rows: list[dict], schemes: list[str], cmsis: Path, per_layer: bool, elapsed: float, jobs: int,
           load: str = "not measured", command: str = "") -> str:
    target = target_named(TARGET)
    timed = [row["host"] for row in rows if row["host"]]
    host_note = (f"{timed[0]['ort_runs'] // len(schemes)} per scheme for the C, {timed[0]['ort_runs']} for ORT"
                 if timed else "")
    versions = [f"qcc {__version__}"]
    for tool in (target.compiler, QEMU, "gcc"):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
        versions.append(out.splitlines()[0])
    import onnxruntime

    versions.append(f"onnxruntime {onnxruntime.__version__}")
    parts = [
        "# qcc beside CMSIS-NN on the Cortex-M4",
        "",
        f"Measured {datetime.date.today().isoformat()} by `PYTHONPATH=. python benchmarks/bench_cmsis_nn.py {command}` "
        f"in {elapsed / 60:.1f} minutes ({jobs} jobs; networks: {', '.join(r['network'] for r in rows)}; schemes: "
        f"{', '.join(schemes)}). Tools: {'; '.join(versions)}; CMSIS-NN from {cmsis} "
        f"(its Include/ and Source/ hash to {tree_digest(cmsis)}).",
        "",
        f"Executed instructions on QEMU's {target.machine}, counted by qcc's TCG plugin between the entry and the "
        "return of the function that runs the network, the layer marks' overhead subtracted (qcc.commands.bench.count_layers, "
        "for both sides). qcc: `qcc bench` (`" + " ".join([BENCH_ARM_CFLAGS, *target.cpu_flags]) + "`, plus the "
        "Makefile's `-ffunction-sections -fdata-sections`). CMSIS-NN: "
        f"`{' '.join([*CMSIS_CFLAGS, *target.cpu_flags])}`, its harness `" + " ".join([BENCH_ARM_CFLAGS, "-DARM_MATH_DSP",
                                                                                        *target.cpu_flags])
        + "`, linked by the Makefile qcc writes (newlib-nano, qcc's startup and linker script). Instructions, not cycles. "
        "Ratios are qcc / CMSIS-NN: above 1, qcc executes more. Both sides ran the same input (seeded random codes, "
        "NHWC for CMSIS-NN) with the model's weights, biases and scales; on other inputs CMSIS-NN's counts change only "
        "in elementwise add, by less than 0.05% of the layer (measured with three seeds).",
        "",
        "## Whole networks",
        "",
        "Totals over the layers both run (the CMSIS-NN insn/MAC divides by the MACs of those layers).",
        "",
        network_table(rows, schemes),
        "",
        "## Per layer kind",
        "",
        "Instructions per MAC (convolutions, fully connected) or per element (pools: input elements; add, softmax, "
        "concat: output elements), summed over every layer of the kind in the networks above. qcc's per layer "
        "come from builds with every tensor whole (`--whole-tensors`): a streamed chain's layers run interleaved "
        "and are counted together, so its default build has no count per layer.",
        "",
        kind_table(rows, schemes),
        "",
        "## Host: time per inference",
        "",
        "qcc's C at -O2 against ONNX Runtime (one thread, session options of qcc/runtimes/ort.py) on this machine, "
        "through `qcc bench --target host` (qcc.toolchain.host_timing: the median of 5 repetitions of about 0.2 s, the C's "
        f"outputs checked against the reference interpreter). Each figure is the fastest of its runs: {host_note}. "
        f"Wall-clock times: the machine's load average was {load} while timing, and other work slows "
        "either side; `--host-repeats N` keeps the fastest of N runs.",
        "",
        host_table(rows, schemes) if all(row["host"] for row in rows) else "Not measured (--no-host).",
        "",
        "## Mapping",
        "",
        MAPPING_TEXT,
    ]
    notes = sorted({f"{layer.function}: {layer.note}" for row in rows for layer in row["layers"]
                    if layer.note and layer.function})
    if notes:
        parts += ["", "Where a call differs from what qcc computes:", ""] + [f"- {note}" for note in notes]
    if per_layer:
        for row in rows:
            parts += ["", f"## {row['network']}: per layer", "", layer_table(row, schemes)]
    return "\n".join(parts) + "\n"


def main() -> None:
    from networks import NETWORKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmsis-nn", required=True, metavar="PATH", help="an unpacked CMSIS-NN source tree")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated, from tests/networks.py")
    parser.add_argument("--schemes", default=",".join(ROUNDING_SCHEMES), help="comma-separated rounding schemes")
    parser.add_argument("--output", help="also write the report to this file")
    parser.add_argument("--per-layer", action="store_true", help="add a table of every layer of every network")
    parser.add_argument("--no-host", action="store_true", help="skip the host timing")
    parser.add_argument("--host-repeats", type=int, default=1, help="host timings per scheme (the fastest is kept)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="networks measured at once on QEMU")
    args = parser.parse_args()
    networks, schemes = args.networks.split(","), args.schemes.split(",")
    unknown = [n for n in networks if n not in NETWORKS] + [s for s in schemes if s not in ROUNDING_SCHEMES]
    if unknown:
        raise SystemExit(f"unknown network(s) or scheme(s): {unknown}")
    cmsis = cmsis_root(args.cmsis_nn)
    target = target_named(TARGET)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qcc-bench-cmsis-") as tmp:
        work = Path(tmp)
        library = build_cmsis_library(cmsis, target, work, args.jobs)
        print(f"CMSIS-NN built ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        # QEMU runs are single-threaded and deterministic: networks in parallel. Host timing is not:
        # it runs afterwards, alone.
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {network: pool.submit(measure_network, network, schemes, cmsis, library, work)
                       for network in networks}
            rows = []
            for network in networks:
                rows.append(futures[network].result())
                print(f"{network}: counted ({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
        loads = [os.getloadavg()[0]]
        for row in rows:
            row["host"] = None if args.no_host else host_times(row, schemes, args.host_repeats)
            loads.append(os.getloadavg()[0])
            if not args.no_host:
                print(f"{row['network']}: host timed", file=sys.stderr)
        load = f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
        text = report(rows, schemes, cmsis, args.per_layer, time.perf_counter() - start, args.jobs, load,
                      " ".join(sys.argv[1:]))
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
