"""QLinearConv: 2-D quantized convolution, any group count (depthwise included).

ONNX semantics: y = requant(sum((x - Z_x) * (w - Z_w)) + bias), the sum over a window of the
input padded with real zeros (code Z_x). The C kernel instead computes sum(x * w) over the
window with padded taps read as Z_x, plus one folded int32 constant per output channel
(bias - Z_x*sum(w) + K*Z_x*Z_w), minus Z_w*sum(x) only where Z_w != 0. Both forms are equal
modulo 2**32, which is how ORT's int32 accumulator wraps.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from qcc.ops.qdq_group import bias_codes, check_integer_types, weight_input
from qcc.ir import C_TYPES, Graph, Node
from qcc.access_order import AccessOrder, Window2d
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, const_input, int_list_attribute, register, require
from qcc.ops.lookup_table import load_table
from qcc.ops.movement import reads_channels_last
from qcc.ops.tflite_import import fused_clamp, padding
from qcc.ops.conv16x8 import add_conv16x8
from qcc.ops.explanation import Element, RequantExplanation, per_channel
from qcc.numerics.accumulator_range import product_sum_range
from qcc.ops.quantized import (
    DOUBLED_SIGNED,
    add_output,
    as_int8_weights,
    bind_quant,
    constant_channels,
    doubled_requant,
    emit_doubled,
    emit_requant,
    fold_constant_channels,
    prepare_requant,
    quantized_input,
    read_quant,
    requantize,
    select_channels,
    sxtb16_tap_order,
    wrap_int32,
)

GEMM_MAX_PIXELS = 16  # runtime_c/qcc_kernels.h QCC_GEMM_MAX_PIXELS
GEMM_CHUNK_BYTES = 512  # the columns of qcc_conv_gemm's least chunk, where more than 2 fit
# A chunk of one pixel, where the arena needs it, only for columns this long: it saves a column's bytes and
# costs the layer about a fifth more instructions (qcc_gemm_2x1_dsp), not worth it for a few hundred bytes.
GEMM_ONE_PIXEL_BYTES = 1024
GEMM_2X4_MAX_K4 = 510  # runtime_c/qcc_dsp_blocks.h QCC_GEMM_2X4_MAX_K4: the deepest layer its block's offsets reach
DEPTHWISE_PLANE_BYTES = 4096  # the most scratch qcc_conv_depthwise_3x3 takes for a whole padded plane


def absorb_zero_pad(group, attrs: dict) -> list[str] | None:
    """ORT's PadFusion: DQ -> Pad(constant 0 on the spatial axes) -> Conv becomes a Conv with larger
    pads, then fused. Returns the quantized input behind the Pad, or None when there is no such Pad."""
    pad = group.g.producer.get(group.node.input[0])
    if pad is None or pad.op_type != "Pad" or group.g.single_consumer(pad.output[0]) is not group.node:
        return None
    dq = group.g.producer_of(pad.input[0], "DequantizeLinear")
    mode = attribute(pad, "mode", "constant")
    pads = group.constant(pad.input[1]) if len(pad.input) > 1 and pad.input[1] else None
    value = group.constant(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1, np.float32)
    if (dq is None or mode != "constant" or pads is None or value is None or value.size != 1 or float(value.reshape(())) != 0
            or len(pad.input) > 3 or pads.size != 8 or np.any(pads < 0) or np.any(pads[[0, 1, 4, 5]] != 0)
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None
    conv_pads = list(attrs.get("pads", [0, 0, 0, 0]))
    attrs["pads"] = [int(conv_pads[0] + pads[2]), int(conv_pads[1] + pads[3]), int(conv_pads[2] + pads[6]),
                     int(conv_pads[3] + pads[7])]
    group.skipped.append(pad)
    return [dq.input[0], dq.input[1], dq.input[2] if len(dq.input) > 2 else ""]


def resolve_pads(auto_pad: str, pads, in_size, kernel, stride, dilation) -> tuple[list[int], list[int]]:
    """Begin and end pads per spatial axis, from explicit pads or auto_pad (ONNX semantics)."""
    rank = len(in_size)
    if auto_pad in ("", "NOTSET"):
        pads = list(pads) if pads else [0] * (2 * rank)
        return pads[:rank], pads[rank:]
    if auto_pad == "VALID":
        return [0] * rank, [0] * rank
    begins, ends = [], []
    for size, k, s, d in zip(in_size, kernel, stride, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins, ends


def window_output_size(size, kernel, stride, dilation, pad_begin, pad_end, ceil_mode=False) -> int:
    span = size + pad_begin + pad_end - ((kernel - 1) * dilation + 1)
    steps = -(-span // stride) if ceil_mode else span // stride
    if ceil_mode and steps * stride >= size + pad_begin:  # the last window must start inside the input or begin pad
        steps -= 1
    return steps + 1


@register
class QLinearConv(Op):
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    folds_clamp = True
    name = "QLinearConv"
    onnx_ops = (OnnxOp("", "QLinearConv", 10),)
    summary = "2-D convolution: groups (depthwise), strides, pads, dilations, auto_pad"

    qdq_float_ops = (OnnxOp("", "Conv"),)
    # TFLM runs both with the int8 kernels in the tflm scheme's arithmetic: acc = sum((x - Z_x) * w) + bias
    # (int8 filters of zero point 0, one scale per output channel), MultiplyByQuantizedMultiplier with M0
    # and shift from the double s_x * s_w[c] / s_y (PopulateConvolutionQuantizationParams), then the
    # fused activation's clamp. DEPTHWISE_CONV_2D is a grouped convolution with one group per input channel.
    tflite_ops = (TfliteOp("CONV_2D", 1, 8), TfliteOp("DEPTHWISE_CONV_2D", 1, 7))

    def import_tflite(self, operator, model) -> None:
        depthwise = operator.code == "DEPTHWISE_CONV_2D"
        # a model's input image with channels: a one-group convolution (qcc_conv_gemm) reads it in place,
        # channels last, instead of a channels-first copy in the arena
        w_tensor, x_shape = model.input_tensor(1, "filter"), model.input_tensor(0, "input").shape
        one_group = not depthwise and len(w_tensor.shape) == 4 and len(x_shape) == 4 and w_tensor.shape[3] == x_shape[3]
        sixteen = model.input_tensor(0, "input").dtype == "int16"  # 16x8: TFLM's other arithmetic (conv16x8.py)
        x = ((one_group and not sixteen and model.channels_first_view(0))
             or model.activation(0, "nchw", dtypes=("int8", "int16")))
        model.require(len(x.shape) == 4, f"the input must be 4-D (N, H, W, C), got {list(x.shape)}")
        w = model.constant(1, "filter")
        model.require(w.dtype == np.int8 and w.ndim == 4, f"the filter must be a 4-D int8 constant, got {w.dtype} "
                      f"{list(w.shape)}")
        batch, in_c, in_h, in_w = x.shape
        if depthwise:  # (1, kernel_h, kernel_w, in_c * multiplier) -> (out_c, 1, kernel_h, kernel_w)
            out_c = w.shape[3]
            model.require(w.shape[0] == 1 and out_c % in_c == 0, f"the filter {list(w.shape)} is not (1, H, W, "
                          f"{in_c} x multiplier) for {in_c} input channels")
            weights, groups, channel_dim = w.transpose(3, 0, 1, 2), in_c, 3
        else:  # (out_c, kernel_h, kernel_w, in_c / groups) -> (out_c, in_c / groups, kernel_h, kernel_w)
            out_c = w.shape[0]
            model.require(w.shape[3] > 0 and in_c % w.shape[3] == 0 and out_c % (in_c // w.shape[3]) == 0,
                          f"the filter {list(w.shape)} does not fit {in_c} input channels")
            weights, groups, channel_dim = w.transpose(0, 3, 1, 2), in_c // w.shape[3], 0
        w_quant = model.quant(w_tensor, axis=0)
        model.require(w_tensor.quant.scale.size == 1 or w_tensor.quant.axis == channel_dim,
                      f"the filter is quantized along dimension {w_tensor.quant.axis}; TFLM reads its scales per output "
                      f"channel (dimension {channel_dim})")
        model.require(w_quant.scale.size in (1, out_c), f"the filter has {w_quant.scale.size} scales for {out_c} "
                      "output channels")
        model.require(not np.any(w_quant.zero_point), "the filter's zero points must be 0 (TFLM's int8 kernels "
                      "assume symmetric filters)")
        kernel = [int(weights.shape[2]), int(weights.shape[3])]
        strides = [int(model.options.get("stride_h", 1)), int(model.options.get("stride_w", 1))]
        dilations = [int(model.options.get("dilation_h_factor", 1)), int(model.options.get("dilation_w_factor", 1))]
        begins, ends, out_hw = padding(model, (in_h, in_w), kernel, strides, dilations)
        if sixteen:
            add_conv16x8(model, x, weights, w_quant, (batch, out_c, *out_hw), {
                "groups": groups, "kernel": kernel, "strides": strides, "dilations": dilations, "pads_begin": begins},
                depthwise)
            return
        bias = model.bias(2, out_c)
        w_name = model.constant_tensor("filter", np.ascontiguousarray(weights), w_quant)
        y = model.output(0, (batch, out_c, *out_hw), "nchw")
        node = model.add_node(self.name, [x.name, w_name], [y], {
            "groups": groups, "kernel": kernel, "strides": strides, "dilations": dilations,
            "pads_begin": begins, "pads_end": ends, "bias": bias})
        node.attrs["clamp"] = fused_clamp(model, model.graph.tensor(y).quant, "int8")

    def from_qdq(self, group):
        attrs = group.attributes()
        x = absorb_zero_pad(group, attrs) or group.quantized_input(0)
        w, y = weight_input(group, 1), group.quantized_output()
        check_integer_types(group, x, w, y)
        inputs = [*x, *w, y[1], y[2]]
        if len(group.node.input) > 2 and group.node.input[2]:
            inputs.append(bias_codes(group, 2, x, w))
        return [group.replacement("QLinearConv", inputs, **attrs)]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        require(len(x.shape) == 4, graph, onnx_node, f"only 2-D convolutions (4-D input) are supported, got shape {x.shape}")
        w = const_input(graph, onnx_node, 3, "weight")
        require(w.dtype in (np.int8, np.uint8) and w.ndim == 4, graph, onnx_node, "weights must be 4-D int8 or uint8")
        x_quant = read_quant(graph, onnx_node, 1, 2, "input")
        w_quant = read_quant(graph, onnx_node, 4, 5, "weight", axis=0)
        y_quant = read_quant(graph, onnx_node, 6, 7, "output")
        groups = int(attribute(onnx_node, "group", 1))
        require(groups > 0, graph, onnx_node, f"group {groups} must be 1 or more")
        out_c, in_per_group, k_h, k_w = (int(d) for d in w.shape)
        require(x.shape[1] == in_per_group * groups, graph, onnx_node,
                f"input has {x.shape[1]} channels but weights expect {in_per_group} x {groups} groups")
        require(out_c % groups == 0, graph, onnx_node, f"{out_c} output channels do not split into {groups} groups")
        require(w_quant.scale.size in (1, out_c), graph, onnx_node, "weight scale must have 1 or out_channels entries")
        kernel = int_list_attribute(graph, onnx_node, "kernel_shape", [k_h, k_w], 2, 1)
        require(kernel == [k_h, k_w], graph, onnx_node, f"kernel_shape {kernel} disagrees with the weights' {[k_h, k_w]}")
        strides = int_list_attribute(graph, onnx_node, "strides", [1, 1], 2, 1)
        dilations = int_list_attribute(graph, onnx_node, "dilations", [1, 1], 2, 1)
        if attribute(onnx_node, "pads") is not None:
            int_list_attribute(graph, onnx_node, "pads", [0, 0, 0, 0], 4, 0)
        auto_pad = attribute(onnx_node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        require(not (auto_pad.startswith("SAME") and dilations != [1, 1]), graph, onnx_node,
                "dilations with auto_pad SAME_* are not supported (ONNX Runtime refuses them too); give explicit pads")
        begins, ends = resolve_pads(auto_pad, attribute(onnx_node, "pads"), x.shape[2:], kernel, strides, dilations)
        out_hw = [window_output_size(x.shape[2 + i], kernel[i], strides[i], dilations[i], begins[i], ends[i]) for i in range(2)]
        require(min(out_hw) > 0, graph, onnx_node, f"the output would be empty ({out_hw})")
        bias = None
        if len(onnx_node.input) > 8 and onnx_node.input[8]:
            bias = const_input(graph, onnx_node, 8, "bias").astype(np.int64).reshape(-1)
            require(bias.size == out_c, graph, onnx_node, f"bias has {bias.size} entries for {out_c} channels")
        x_name, w_name = bind_quant(graph, onnx_node, 0, x_quant), bind_quant(graph, onnx_node, 3, w_quant)
        y = add_output(graph, onnx_node, 0, x.dtype, (x.shape[0], out_c, *out_hw), y_quant)
        return Node(self.name, onnx_node.name or y, [x_name, w_name], [y], attrs={
            "groups": groups, "kernel": kernel, "strides": strides, "dilations": dilations,
            "pads_begin": begins, "pads_end": ends, "bias": bias,
        })

    def prepare(self, node: Node, graph: Graph) -> None:
        x, w_tensor = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        s_x, z_x = x.quant.scalar()
        s_y, _ = graph.tensor(node.outputs[0]).quant.scalar()
        out_c = w_tensor.shape[0]
        weights, w_zero = as_int8_weights(w_tensor.data, w_tensor.quant.zero_point)
        w_zero = np.broadcast_to(w_zero.reshape(-1), (out_c,)).astype(np.int64)
        taps = int(np.prod(weights.shape[1:]))
        weight_sums = weights.reshape(out_c, -1).astype(np.int64).sum(axis=1)
        bias = node.attrs["bias"] if node.attrs["bias"] is not None else np.zeros(out_c, np.int64)
        node.params["weights"] = weights
        node.params["acc_const"] = wrap_int32(bias - z_x * weight_sums + taps * z_x * w_zero)
        node.params["weight_zero"] = w_zero.astype(np.int32) if np.any(w_zero) else None
        # ORT's per-channel scale: f32(f32(s_x * s_w[c]) / s_y)
        s_w = np.broadcast_to(w_tensor.quant.scale.reshape(-1), (out_c,)).astype(np.float32)
        node.params["requant"] = prepare_requant(node, graph, (np.float32(s_x) * s_w) / np.float32(s_y),
                                                 np.float64(s_x) * s_w.astype(np.float64) / np.float64(s_y))
        # what the C computes with: once here, not at each of a streamed layer's per-row calls
        node.params["emitted"] = fold_constant_channels(node.params)

    def reference(self, node: Node, graph: Graph, inputs):
        x, w = inputs
        _, z_x = graph.tensor(node.inputs[0]).quant.scalar()
        groups = node.attrs["groups"]
        k_h, k_w = node.attrs["kernel"]
        out_shape = graph.tensor(node.outputs[0]).shape
        batch, out_c, out_h, out_w = out_shape
        w_centered = self._centered_weights(node, graph, w)
        in_per_group, out_per_group = x.shape[1] // groups, out_c // groups
        w_grouped = w_centered.reshape(groups, out_per_group, in_per_group, k_h, k_w)
        acc = np.zeros((batch, groups, out_per_group, out_h, out_w), dtype=np.int64)
        for (i, j), window in self._tap_windows(node, graph, x.astype(np.int64) - z_x):
            window = window.reshape(batch, groups, in_per_group, out_h, out_w)
            acc += np.einsum("ngchw,goc->ngohw", window, w_grouped[:, :, :, i, j])
        acc = acc.reshape(out_shape)
        if node.attrs["bias"] is not None:
            acc += node.attrs["bias"].reshape(1, out_c, 1, 1)
        y_dtype = graph.tensor(node.outputs[0]).dtype
        return [requantize(wrap_int32(acc), node.params["requant"], 1, y_dtype)]

    def macs(self, node: Node, graph: Graph) -> int:
        w = graph.tensor(node.inputs[1])
        return graph.tensor(node.outputs[0]).size * int(np.prod(w.shape[1:]))

    def explain(self, node: Node, graph: Graph) -> RequantExplanation:
        return _ConvExplanation(self, node, graph)

    def _centered_weights(self, node: Node, graph: Graph, w: np.ndarray) -> np.ndarray:
        """q_w - Z_w per output channel, int64, the weights' shape."""
        w_zero = np.broadcast_to(graph.tensor(node.inputs[1]).quant.zero_point.reshape(-1), (w.shape[0],))
        return w.astype(np.int64) - w_zero.reshape(-1, 1, 1, 1)

    def _tap_windows(self, node: Node, graph: Graph, values: np.ndarray):
        """For each kernel tap (i, j): ((i, j), the values that tap reads at every output position),
        the latter shaped (batch, input channels, out_h, out_w). `values` is the input's shape; the
        padding around it reads 0 (the input codes minus Z_x: a real zero)."""
        (k_h, k_w), (s_h, s_w), (d_h, d_w) = node.attrs["kernel"], node.attrs["strides"], node.attrs["dilations"]
        _, _, out_h, out_w = graph.tensor(node.outputs[0]).shape
        pads = [(0, 0), (0, 0)] + [(b, e) for b, e in zip(node.attrs["pads_begin"], node.attrs["pads_end"])]
        padded = np.pad(values, pads)
        for i in range(k_h):
            for j in range(k_w):
                yield (i, j), padded[:, :, i * d_h: i * d_h + (out_h - 1) * s_h + 1: s_h,
                                     j * d_w: j * d_w + (out_w - 1) * s_w + 1: s_w]

    def accumulator_range(self, node: Node, graph: Graph):
        x, w = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        out_c = w.shape[0]
        w_zero = np.broadcast_to(w.quant.zero_point.reshape(-1), (out_c,))
        return product_sum_range(w.data.reshape(out_c, -1), w_zero, x.quant.scalar()[1], x.dtype, node.attrs["bias"])

    def ort_gemm_weights(self, node: Node, graph: Graph):
        w = graph.tensor(node.inputs[1]).data  # (out channels, in channels per group, kernel rows, kernel columns)
        if w.shape[1] == 1 and w.shape[0] == node.attrs["groups"]:
            return None  # depthwise: MLAS's depthwise kernels widen before adding (measured: no pair saturates)
        # ORT reorders each filter to (kernel row, kernel column, input channel), the order of its
        # channels-last im2col, and its symmetric indirect kernel reads the same pairs.
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    @staticmethod
    def is_depthwise_3x3(node: Node, graph: Graph) -> bool:
        """Channel multiplier 1 (groups == in_c == out_c), kernel 3x3, strides 1 or 2, dilation 1, any
        padding: qcc_conv_depthwise_3x3 runs it."""
        a = node.attrs
        in_c, out_c = graph.tensor(node.inputs[0]).shape[1], graph.tensor(node.outputs[0]).shape[1]
        return (a["groups"] == in_c == out_c and list(a["kernel"]) == [3, 3] and list(a["dilations"]) == [1, 1]
                and all(s in (1, 2) for s in a["strides"]))

    @staticmethod
    def is_depthwise(node: Node, graph: Graph) -> bool:
        """One input channel per group, any kernel, stride, dilation and multiplier: qcc_conv_depthwise runs
        it where qcc_conv_depthwise_3x3 does not (the same access order as qcc_conv's, and no more scratch)."""
        in_c = graph.tensor(node.inputs[0]).shape[1]
        return node.attrs["groups"] == in_c > 1 and not QLinearConv.is_depthwise_3x3(node, graph)

    @staticmethod
    def runs_as_gemm(node: Node, graph: Graph) -> bool:
        """qcc_conv_gemm runs it, any kernel, stride, dilation and padding: one group (and not a depthwise
        3x3 layer), or a grouped convolution with more than one input channel per group, read channels first,
        a call per group and image (ResNeXt's and ShuffleNet's layers). The depthwise kernels run the others."""
        groups = node.attrs["groups"]
        if groups == 1:
            return not QLinearConv.is_depthwise_3x3(node, graph)
        return groups < graph.tensor(node.inputs[0]).shape[1] and not reads_channels_last(graph, node.inputs[0])

    @staticmethod
    def gemm_depth(node: Node, graph: Graph) -> int:
        """k4: the taps of one output (in_c / groups * kernel_h * kernel_w) rounded up to 4."""
        k_h, k_w = node.attrs["kernel"]
        in_per_group = graph.tensor(node.inputs[0]).shape[1] // node.attrs["groups"]
        return -(-in_per_group * k_h * k_w // 4) * 4

    @staticmethod
    def gemm_pixel_choices(node: Node, graph: Graph) -> list[int]:
        """qcc_conv_gemm's chunk, the output pixels whose im2col columns are built at once (each pair of
        output channels then walks them with its requantization constants loaded once), largest first.
        The chunk's setup per channel pair costs about as much as a 2 x 2 block, so small-K layers (1x1)
        need large chunks: the least is the largest even count up to 16 (QCC_GEMM_MAX_PIXELS) whose
        columns fit GEMM_CHUNK_BYTES; where only 2 do, 4 if theirs fit twice that (K <= 128: there a
        chunk of 2 spends about a quarter of its instructions on that setup, micro_speech's 10 x 8 filter
        over one channel 5% of the model's), else 2; 16 and 8 above it where the plan finds the bytes free,
        and 1 below it where one column takes GEMM_ONE_PIXEL_BYTES or more (K > 508: ResNet-large's 3x3 over 80
        channels, whose second column is what keeps its residual block above half of TFLM's arena)."""
        columns = 2 * QLinearConv.gemm_depth(node, graph)
        least = next((n for n in range(GEMM_MAX_PIXELS, 2, -2) if n * columns <= GEMM_CHUNK_BYTES), 2)
        if least == 2 and 4 * columns <= 2 * GEMM_CHUNK_BYTES:
            least = 4
        one = [1] if least == 2 and columns >= GEMM_ONE_PIXEL_BYTES else []
        return [n for n in (GEMM_MAX_PIXELS, 8) if n > least] + [least] + one

    @staticmethod
    def depthwise_plane_transposed(node: Node, graph: Graph) -> bool:
        """qcc_conv_depthwise_3x3 holds a whole plane transposed where the output is taller than wide (an audio
        model's 25 x 5 maps): each row of its work then runs down an output column, and the per-row setup
        (about 90 Cortex-M4 instructions, as much as 3 output pixels) is paid out_w times rather than out_h.
        Not inside a streamed chain, whose calls are one output row each."""
        out_h, out_w = graph.tensor(node.outputs[0]).shape[2:]
        return "planes" not in node.attrs and out_h > out_w

    @staticmethod
    def depthwise_row_length(node: Node, graph: Graph, transposed: bool = False) -> int:
        """qcc_conv_depthwise_3x3's padded row of codes (bytes): the (out_w - 1) * stride + 3 columns the outputs
        read, `stride` more that the last pixel's word may read, rounded up to even (runtime_c's `stored`);
        transposed, the same down a column."""
        axis = 2 if transposed else 3
        out_w, stride = graph.tensor(node.outputs[0]).shape[axis], node.attrs["strides"][axis - 2]
        return ((out_w - 1) * stride + 3 + stride + 1) // 2 * 2

    @staticmethod
    def depthwise_plane_rows(node: Node, graph: Graph, transposed: bool = False) -> int:
        """The padded input rows all of a depthwise 3x3 layer's outputs read: (out_h - 1) * stride + 3;
        transposed, the padded columns."""
        axis = 3 if transposed else 2
        return (graph.tensor(node.outputs[0]).shape[axis] - 1) * node.attrs["strides"][axis - 2] + 3

    @classmethod
    def depthwise_plane_bytes(cls, node: Node, graph: Graph) -> int:
        """The scratch of qcc_conv_depthwise_3x3's whole padded plane of codes, in the orientation it takes."""
        transposed = cls.depthwise_plane_transposed(node, graph)
        return cls.depthwise_row_length(node, graph, transposed) * cls.depthwise_plane_rows(node, graph, transposed)

    def access_order(self, node: Node, graph: Graph) -> AccessOrder | None:
        if reads_channels_last(graph, node.inputs[0]):
            return None  # the channels-last bytes of a model input: never under an output
        window = Window2d.of(node, graph)
        if self.runs_as_gemm(node, graph):
            return window.pixel_major(node.attrs["groups"])
        if self.is_depthwise_3x3(node, graph):
            return window.depthwise_ring()
        return window.plane_row_major(node.attrs["groups"])

    def scratch_choices(self, node: Node, graph: Graph) -> list[int]:
        if self.runs_as_gemm(node, graph):  # int16 im2col columns
            return [2 * self.gemm_depth(node, graph) * n for n in self.gemm_pixel_choices(node, graph)]
        if self.is_depthwise_3x3(node, graph):
            # a whole padded plane, where the plan has the bytes free, saves the ring's turning and a copy call
            # per row: 24% fewer M4 instructions on a 3x3 map, 6% on 24x24, 0-5% on 48x48
            plane, ring = self.depthwise_plane_bytes(node, graph), self.scratch_bytes(node, graph)
            return [plane, ring] if ring < plane <= DEPTHWISE_PLANE_BYTES else [ring]
        return [self.scratch_bytes(node, graph)]

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        if self.runs_as_gemm(node, graph):
            return self.scratch_choices(node, graph)[-1]
        if self.is_depthwise_3x3(node, graph):
            return 3 * self.depthwise_row_length(node, graph)  # a ring of 3 padded rows of codes
        # int32 words: one accumulator per output column, and each kernel column's valid output range
        return 4 * (graph.tensor(node.outputs[0]).shape[3] + 2 * node.attrs["kernel"][1])

    def holds_whole_plane(self, node: Node, graph: Graph, c) -> bool:
        """qcc_conv_depthwise_3x3 with the whole padded plane in scratch: where the plan gave it the bytes."""
        if not self.is_depthwise_3x3(node, graph):
            return False
        plane = self.depthwise_plane_bytes(node, graph)
        return plane <= DEPTHWISE_PLANE_BYTES and c.scratch_size(node) >= plane

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        p = node.params["emitted"]
        gemm = self.runs_as_gemm(node, graph)
        groups = node.attrs["groups"]
        # qcc_conv_gemm skips the channels whose output is one code for every input: it writes that code (channels
        # named by uint16_t: a layer of more keeps them all)
        constant = constant_channels(node.params) if gemm and groups == 1 and y.shape[1] <= 0xFFFF else {}
        if len(constant) == y.shape[1]:  # every channel constant: one is computed still (no empty arrays in the C)
            del constant[0]
        computed = np.array([ch for ch in range(y.shape[1]) if ch not in constant], np.int64)
        if constant:
            p = select_channels(p, computed)
        channels_last = reads_channels_last(graph, node.inputs[0])
        # A channels-last input's columns are (kh, kw, ic): each kernel row's taps are one run of its bytes.
        taps = p["weights"].transpose(0, 2, 3, 1) if channels_last else p["weights"]
        wide = gemm and graph.wide_weights  # --wide-weights: int16 pairs, SMLAD's operands, in flash
        layout = gemm_wide_layout if wide else gemm_weight_layout
        k4 = self.gemm_depth(node, graph)  # a group's taps per output, rounded up to 4
        if gemm:  # each group's filters laid out alone, one group after the other
            stored = np.concatenate([layout(np.ascontiguousarray(part), k4) for part in np.split(taps, groups)])
        else:
            stored = p["weights"]
        plane = self.holds_whole_plane(node, graph, c)
        transposed = plane and self.depthwise_plane_transposed(node, graph)
        if transposed:  # the kernel runs down the columns: each filter's taps transposed to match
            stored = stored.transpose(0, 1, 3, 2)
        if wide:  # a uint32_t array: word-aligned for the kernel's LDRD
            weights = f"(const int8_t *)(const void *){c.const_array(f'{prefix}_weights', 'uint32_t', stored)}"
        else:
            weights = c.const_array(f"{prefix}_weights", "int8_t", stored)
        table = load_table(graph, node.inputs[0]) if channels_last else None
        in_table = ("NULL" if table is None
                    else c.const_array(f"{prefix}_in_table", C_TYPES[x.dtype], table.view(x.dtype)))
        acc_const = c.const_array(f"{prefix}_acc_const", "int32_t", p["acc_const"])
        w_zero = "NULL" if p["weight_zero"] is None else c.const_array(f"{prefix}_weight_zero", "int32_t", p["weight_zero"])
        a = node.attrs
        (batch, in_c, in_h, in_w), (out_c, out_h, out_w) = x.shape, y.shape[1:]
        # channel strides: the tensors' planes, or the chain's for a view of a band of rows (backend/streams.py)
        in_plane, out_plane = a.get("planes", (in_h * in_w, out_h * out_w))
        pixels = c.scratch_size(node) // (2 * k4) if gemm else 0  # the chunk: the pixels whose columns scratch holds
        fields = {
            "batch": batch, "in_c": in_c, "in_h": in_h, "in_w": in_w, "out_c": out_c, "out_h": out_h, "out_w": out_w,
            "kernel_h": a["kernel"][0], "kernel_w": a["kernel"][1], "stride_h": a["strides"][0],
            "stride_w": a["strides"][1], "dilation_h": a["dilations"][0], "dilation_w": a["dilations"][1],
            "pad_top": a["pads_begin"][0], "pad_left": a["pads_begin"][1],
            "in_plane": in_plane, "out_plane": out_plane,
            "in_channels_last": int(channels_last), "in_table": in_table, "groups": a["groups"],
            "gemm_pixels": pixels,
            "plane_rows": self.depthwise_plane_rows(node, graph, transposed) if plane else 0,
            "plane_transposed": int(transposed),
            "input_zero": x.quant.scalar()[1], "weights": weights,
            "gemm_block_2x4": self._gemm_block_2x4(c, k4, pixels, wide) if gemm else "NULL",
            "weights_wide": int(wide), "acc_const": acc_const,
            "weight_zero": w_zero,
            **emit_doubled(c, prefix, doubled_requant(p, y.dtype)),
            "constant_c": len(constant),
            "constant_channel": c.const_array(f"{prefix}_constant_channel", "uint16_t", np.array(list(constant), np.uint16))
                                if constant else "NULL",
            "constant_code": c.const_array(f"{prefix}_constant_code", "int16_t", np.array(list(constant.values()), np.int16))
                             if constant else "NULL",
            "computed_channel": c.const_array(f"{prefix}_computed_channel", "uint16_t", computed.astype(np.uint16))
                                if constant else "NULL",
            "requant": emit_requant(c, prefix, p["requant"]),
        }
        suffix = "s8" if x.dtype == "int8" else "u8"
        if gemm and groups > 1:
            return self._emit_groups(fields, stored.nbytes // groups, prefix, suffix, c.tensor(x.name),
                                     c.tensor(y.name), c.scratch(node), c)
        params = c.struct("qcc_conv_params", f"{prefix}_params", fields)
        if gemm:  # chosen here, at compile time: the C has no dispatch
            return f"qcc_conv_gemm_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)}, {c.scratch(node)});"
        if self.is_depthwise_3x3(node, graph):
            return f"qcc_conv_depthwise_3x3_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)}, {c.scratch(node)});"
        assert self.is_depthwise(node, graph), node.name  # one input channel per group; runs_as_gemm takes the rest
        return f"qcc_conv_depthwise_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)}, {c.scratch(node)});"

    @staticmethod
    def _gemm_block_2x4(c, k4: int, pixels: int, wide: bool) -> str:
        """The 2 x 4 block for the layer's depth k4 and weights (runtime_c/qcc_dsp_blocks.h), defined once in model.c,
        where its chunks hold 4 pixels or more and the depth fits the block's offsets; else NULL (the 2 x 2 block
        throughout)."""
        if pixels < 4 or k4 > GEMM_2X4_MAX_K4:
            return "NULL"
        if wide:
            return f"QCC_DSP_BLOCK({c.definition('QCC_GEMM_2X4_WIDE_DEFINE', f'gemm_2x4_wide_k{k4}', k4)})"
        return f"QCC_DSP_BLOCK({c.definition('QCC_GEMM_2X4_DEFINE', f'gemm_2x4_k{k4}', k4)})"

    @staticmethod
    def _emit_groups(fields: dict, group_weights: int, prefix: str, suffix: str, x: str, y: str, scratch: str,
                     c) -> str:
        """A grouped convolution as one qcc_conv_gemm call per group and image, groups outermost (the order
        AccessOrder.pixel_major models): each group is a convolution of its own input channels into its own
        output channels, its parameters pointers into the layer's arrays (group_weights: the bytes of one
        group's weights, an offset for the int8_t weights pointer whatever the array's type)."""
        groups, in_c, out_c, batch = fields["groups"], fields["in_c"], fields["out_c"], fields["batch"]
        in_per_group, out_per_group = in_c // groups, out_c // groups
        requant = fields["requant"]
        per_channel = ("mult", "shift", "exact_mult", "scale") if requant["per_channel"] else ()

        def offset(array: str, by: int) -> str:
            return array if array == "NULL" or not by else f"{array} + {by}"

        calls = []
        for g in range(groups):
            first = g * out_per_group  # the group's first output channel
            part = fields | {
                "batch": 1, "in_c": in_per_group, "out_c": out_per_group, "groups": 1,
                "weights": offset(fields["weights"], g * group_weights), "acc_const": offset(fields["acc_const"], first),
                "weight_zero": offset(fields["weight_zero"], first),
                "doubled_round": offset(fields["doubled_round"], first), "doubled_shift": offset(fields["doubled_shift"], first),
                "requant": requant | {k: offset(requant[k], first) for k in per_channel if k in requant},
            }
            params = c.struct("qcc_conv_params", f"{prefix}_group{g}_params", part)
            for n in range(batch):
                x_at = n * in_c * fields["in_plane"] + g * in_per_group * fields["in_plane"]
                y_at = n * out_c * fields["out_plane"] + first * fields["out_plane"]
                image = f", image {n}" if batch > 1 else ""
                calls.append(f"qcc_conv_gemm_{suffix}({params}, {offset(x, x_at)}, {offset(y, y_at)}, {scratch}); "
                             f"/* group {g} of {groups}{image} */")
        return "\n    ".join(calls)


def gemm_wide_layout(weights: np.ndarray, depth: int) -> np.ndarray:
    """qcc_conv_gemm's weights with --wide-weights: each filter's taps in order then zeros up to depth, as
    int16 pairs (tap 2j low, 2j + 1 high: the operands SMLAD multiplies with the column's (x[2j], x[2j+1])),
    the filters of each pair of output channels interleaved by groups of 4 taps (a's 2 words, b's 2, ...; a
    zero filter after an odd last channel). Returns (ceil(out_c / 2) * depth,) uint32."""
    out_c = weights.shape[0]
    taps = np.zeros((out_c + out_c % 2, depth), np.int64)
    taps[:out_c, :weights[0].size] = weights.reshape(out_c, -1)
    words = (taps[:, 0::2] & 0xFFFF) | ((taps[:, 1::2] & 0xFFFF) << 16)  # (channels, depth / 2)
    return words.reshape(-1, 2, depth // 4, 2).transpose(0, 2, 1, 3).reshape(-1).astype(np.uint32)


def gemm_weight_layout(weights: np.ndarray, depth: int) -> np.ndarray:
    """qcc_conv_gemm's weights: sxtb16_tap_order's filters, those of each pair of output channels
    interleaved by groups of 4 (one pointer walks both), a zero filter after an odd last channel.
    Returns (ceil(out_c / 2) * 2 * depth,) int8."""
    taps = sxtb16_tap_order(weights, depth)
    if taps.shape[0] % 2:
        taps = np.concatenate([taps, np.zeros((1, depth), np.int8)])
    return taps.reshape(-1, 2, depth // 4, 4).transpose(0, 2, 1, 3).reshape(-1)


class _ConvExplanation(RequantExplanation):
    formula = {
        "real": "y[c] = b[c] + sum_k x[k] * w[c,k]   (each r = S * (q - Z); the bias has scale S_x * S_w[c], zero point 0)",
        "integer": "acc = sum_k (q_x[k] - Z_x) * (q_w[c,k] - Z_w[c]) + q_b[c]  (int32, wrapping);  "
                   "q_y = clamp(round(M[c] * acc), lo, hi) + Z_y,  M[c] = S_x * S_w[c] / S_y",
        "folded": "acc = acc_const[c] + sum_k q_x[k] * (q_w[c,k] - Z_w[c]),  "
                  "acc_const[c] = q_b[c] - Z_x * sum_k q_w[c,k] + K * Z_x * Z_w[c]  (padded taps read q_x = Z_x)",
    }

    def __init__(self, op: QLinearConv, node: Node, graph: Graph):
        super().__init__(node, graph)
        self.op = op
        self.w = graph.tensor(node.inputs[1])
        self.channels = self.w.shape[0]
        self.taps = int(np.prod(self.w.shape[1:]))
        self.s_w = [np.float32(s) for s in per_channel(self.w.quant.scale, self.channels)]
        self.z_w = [int(z) for z in per_channel(self.w.quant.zero_point, self.channels)]
        self.stored = node.params["weights"]  # int8, as the C holds them, and their zero points
        stored_zero = node.params["weight_zero"]
        self.stored_zero = [0] * self.channels if stored_zero is None else [int(z) for z in stored_zero]
        bias = node.attrs["bias"]
        self.bias = [0] * self.channels if bias is None else [int(b) for b in bias]

    def exact_m(self, c):
        return Fraction(float(self.s_x)) * Fraction(float(self.s_w[c])) / Fraction(float(self.s_y))

    def acc_const(self, c):
        return int(self.node.params["acc_const"][c])

    def acc_const_terms(self, c):
        weight_sum = int(self.stored[c].astype(np.int64).sum())
        return {"bias": self.bias[c], "minus_zx_sum_w": -self.z_x * weight_sum,
                "k_zx_zw": self.taps * self.z_x * self.stored_zero[c]}

    def c_accumulator(self, c):
        generic = "acc = acc_const[c] + sum(x[k] * (w[c][k] - Z_w[c]), k < K)"
        numbers = (f"acc = {self.acc_const(c)} + sum(x[k] * (w[{c}][k] - {self.stored_zero[c]}), k < {self.taps})"
                   f"   /* padded taps read x = Z_x = {self.z_x} */")
        return generic, numbers

    def c_shortcut(self, c):
        groups = self.node.attrs["groups"]
        gemm = self.op.runs_as_gemm(self.node, self.graph)
        code = constant_channels(self.node.params).get(c) if gemm and groups == 1 else None
        if code is not None:
            return (f"channel {c} gives code {code} for every input (its accumulator's range requantizes to that one "
                    "code): the kernel writes it and computes nothing for the channel")
        doubled = doubled_requant(self.node.params["emitted"], self.y.dtype)
        if doubled is None or not doubled.shift[c]:
            return None
        where = "where its pair's other channel takes it too" if gemm else "every output"
        rounding = "SMMLAR" if self.rq.scheme == "tflm" else "SMMLA"
        signed = " - (acc < 0)" if doubled.case == DOUBLED_SIGNED else ""
        return (f"on DSP cores ({where}): y = {'ssat' if self.y.dtype == 'int8' else 'usat'}8(({rounding}(2 * acc, "
                f"{int(self.rq.mult[self.rq_index(c)])}, {int(doubled.round[c])}){signed}) >> {int(doubled.shift[c])}), "
                "the same code (docs/arithmetic.md section 10)")

    def positions(self):
        return int(np.prod(self.y.shape[2:]))

    def output_index(self, c, position):
        return (0, c, *divmod(position, self.y.shape[3]))

    def element(self, values, c, position):
        """The window the reference reads for this element, taken from the same tap windows."""
        _, _, oh, ow = self.output_index(c, position)
        x = values[self.node.inputs[0]][:1]
        in_per_group = self.w.shape[1]
        group = c // (self.channels // self.node.attrs["groups"])
        channels = slice(group * in_per_group, (group + 1) * in_per_group)

        def window(values):  # (input channel, tap): the order of the weights w[c]
            taps = [tap[0, channels, oh, ow] for _, tap in self.op._tap_windows(self.node, self.graph, values)]
            return np.stack(taps, axis=-1).reshape(-1)

        centered = window(x.astype(np.int64) - self.z_x)
        inside = window(np.ones(x.shape, np.int64)).astype(bool)
        w_centered = self.op._centered_weights(self.node, self.graph, self.w.data)[c].reshape(-1)
        x_read = centered + self.z_x  # the codes the kernel reads: Z_x in the padding
        stored = self.stored[c].reshape(-1).astype(np.int64) - self.stored_zero[c]
        return Element(x=x_read, w=self.w.data[c].reshape(-1), padded=~inside, products=centered * w_centered,
                       bias=self.bias[c], acc_const=self.acc_const(c), folded_sum=int((x_read * stored).sum()))
