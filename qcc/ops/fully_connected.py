"""QLinearMatMul and com.microsoft QGemm: a quantized matrix product with a constant right side.

ONNX semantics: y[m, n] = requant(sum_k (a[m,k] - Z_a) * (b[k,n] - Z_b[n]) + c[m,n]). The C
kernel stores B as rows of weights per output column (sxtb16_tap_order: depth padded,
groups of 4 reordered for SXTB16) and computes sum(a * w) plus one folded int32 constant per column
(or per element when C varies along rows), minus Z_b[n] * sum(a) only where Z_b != 0.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from qcc.ops.qdq_group import NotFused, bias_codes, check_integer_types, weight_input
from qcc.ir import Graph, Node
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, const_input, register, require
from qcc.ops.explanation import Element, RequantExplanation, per_channel
from qcc.ops.conv16x8 import add_conv16x8
from qcc.ops.tflite_import import fused_clamp
from qcc.numerics.accumulator_range import product_sum_range
from qcc.ops.quantized import (
    add_output,
    as_int8_weights,
    bind_quant,
    emit_requant,
    prepare_requant,
    quantized_input,
    read_quant,
    requantize,
    sxtb16_tap_order,
    wrap_int32,
)


# runtime_c/qcc_kernels.h QCC_FC_NARROW: layers of at most this many columns read each row of A in place
NARROW_COLUMNS = 4
FC_4COL_MAX_KP = 1360  # runtime_c/qcc_dsp_blocks.h QCC_FC_4COL_MAX_KP: the deepest rows its block's offsets reach


class _ConstantRightMatMul(Op):
    """Shared by both ONNX forms once imported: node.attrs hold trans_a, alpha and the bias."""
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    folds_clamp = True

    def _import(self, onnx_node, graph: Graph, *, a_idx, b_idx, y_idx, bias_idx, trans_a, trans_b, alpha) -> Node:
        a = quantized_input(graph, onnx_node, a_idx, "A input")
        b = const_input(graph, onnx_node, b_idx, "B (weight)")
        require(b.ndim == 2 and b.dtype in (np.int8, np.uint8), graph, onnx_node, f"B must be a 2-D int8/uint8 constant, got {b.dtype} {b.shape}")
        a_quant = read_quant(graph, onnx_node, a_idx + 1, a_idx + 2, "A")
        b_quant = read_quant(graph, onnx_node, b_idx + 1, b_idx + 2, "B", axis=0 if trans_b else 1)
        require(y_idx < len(onnx_node.input) and bool(onnx_node.input[y_idx]), graph, onnx_node,
                "a float output (no y_scale) is not supported: qcc compiles integer outputs only")
        y_quant = read_quant(graph, onnx_node, y_idx, y_idx + 1, "output")
        if trans_a:
            require(len(a.shape) == 2, graph, onnx_node, "transA needs a 2-D A")
            rows_shape, depth = (a.shape[1],), a.shape[0]
        else:
            require(len(a.shape) >= 1, graph, onnx_node, "A must have at least one dimension")
            rows_shape, depth = tuple(a.shape[:-1]), a.shape[-1]
        weights_kn = b.T if trans_b else b
        require(weights_kn.shape[0] == depth, graph, onnx_node, f"A has depth {depth} but B has {weights_kn.shape[0]} rows")
        cols = weights_kn.shape[1]
        require(b_quant.scale.size in (1, cols), graph, onnx_node, "B scale must have 1 or N entries")
        rows = int(np.prod(rows_shape, dtype=np.int64))
        bias = None
        if bias_idx is not None and bias_idx < len(onnx_node.input) and onnx_node.input[bias_idx]:
            c = const_input(graph, onnx_node, bias_idx, "C (bias)").astype(np.int64)
            try:
                bias = np.broadcast_to(c, (rows, cols)) if c.ndim == 2 else np.broadcast_to(c.reshape(-1), (cols,))
            except ValueError:
                require(False, graph, onnx_node, f"C of shape {c.shape} does not broadcast to ({rows}, {cols})")
            if bias.ndim == 2 and np.all(bias == bias[:1]):
                bias = bias[0]
            bias = np.ascontiguousarray(bias)
        a_name, b_name = bind_quant(graph, onnx_node, a_idx, a_quant), bind_quant(graph, onnx_node, b_idx, b_quant)
        y = add_output(graph, onnx_node, 0, a.dtype, (*rows_shape, cols), y_quant)
        return Node(self.name, onnx_node.name or y, [a_name, b_name], [y], attrs={
            "trans_a": trans_a, "trans_b": trans_b, "alpha": np.float32(alpha), "bias": bias,
            "rows": rows, "depth": depth, "cols": cols,
        })

    def _output_scales(self, s_a: np.float32, s_b: np.ndarray, s_y: np.float32, alpha: np.float32) -> np.ndarray:
        raise NotImplementedError

    def _weights_nk(self, node: Node, graph: Graph) -> np.ndarray:
        b = graph.tensor(node.inputs[1]).data
        return b if node.attrs["trans_b"] else b.T

    def prepare(self, node: Node, graph: Graph) -> None:
        a, b = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        s_a, z_a = a.quant.scalar()
        s_y, _ = graph.tensor(node.outputs[0]).quant.scalar()
        cols, depth = node.attrs["cols"], node.attrs["depth"]
        weights, w_zero = as_int8_weights(np.ascontiguousarray(self._weights_nk(node, graph)), b.quant.zero_point)
        w_zero = np.broadcast_to(w_zero.reshape(-1), (cols,)).astype(np.int64)
        bias = node.attrs["bias"] if node.attrs["bias"] is not None else np.zeros(cols, np.int64)
        column_const = -z_a * weights.astype(np.int64).sum(axis=1) + depth * z_a * w_zero
        node.params["weights"] = weights
        node.params["acc_const"] = wrap_int32(bias + column_const)  # shape (cols,) or (rows, cols)
        node.params["weight_zero"] = w_zero.astype(np.int32) if np.any(w_zero) else None
        s_b = np.broadcast_to(b.quant.scale.reshape(-1), (cols,)).astype(np.float32)
        scales = self._output_scales(np.float32(s_a), s_b, np.float32(s_y), node.attrs["alpha"])
        real = (np.float64(node.attrs["alpha"]) * np.float64(s_a) * s_b.astype(np.float64)) / np.float64(s_y)
        node.params["requant"] = prepare_requant(node, graph, scales, real)

    def reference(self, node: Node, graph: Graph, inputs):
        a, _ = inputs
        a_matrix, b_matrix = self._centered_operands(node, graph, a)
        acc = a_matrix @ b_matrix
        if node.attrs["bias"] is not None:
            acc = acc + node.attrs["bias"]
        y = graph.tensor(node.outputs[0])
        return [requantize(wrap_int32(acc), node.params["requant"], 1, y.dtype).reshape(y.shape)]

    def macs(self, node: Node, graph: Graph) -> int:
        return node.attrs["rows"] * node.attrs["depth"] * node.attrs["cols"]

    def explain(self, node: Node, graph: Graph) -> RequantExplanation:
        return _MatMulExplanation(self, node, graph)

    def _centered_operands(self, node: Node, graph: Graph, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A as (rows, depth) minus Z_a and B as (depth, cols) minus Z_b[n], int64: acc = A @ B (+ C)."""
        _, z_a = graph.tensor(node.inputs[0]).quant.scalar()
        rows, depth, cols = node.attrs["rows"], node.attrs["depth"], node.attrs["cols"]
        a_matrix = (a.T if node.attrs["trans_a"] else a).reshape(rows, depth).astype(np.int64) - z_a
        b_zero = np.broadcast_to(graph.tensor(node.inputs[1]).quant.zero_point.reshape(-1), (cols,))
        b_matrix = self._weights_nk(node, graph).T.astype(np.int64) - b_zero.reshape(1, cols)
        return a_matrix, b_matrix

    def accumulator_range(self, node: Node, graph: Graph):
        a, b = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        b_zero = np.broadcast_to(b.quant.zero_point.reshape(-1), (node.attrs["cols"],))
        return product_sum_range(np.ascontiguousarray(self._weights_nk(node, graph)), b_zero, a.quant.scalar()[1],
                                 a.dtype, node.attrs["bias"])

    def ort_gemm_weights(self, node: Node, graph: Graph):
        return np.ascontiguousarray(self._weights_nk(node, graph))  # per output column, K in A's order

    @staticmethod
    def padded_depth(node: Node) -> int:
        """kp: the depth rounded up to 8, as qcc_fully_connected computes it (its DSP loop takes 8
        depths per pass; the weights and the row of A are zero-padded to it)."""
        return -(-node.attrs["depth"] // 8) * 8

    @staticmethod
    def reads_in_place(node: Node) -> bool:
        """qcc_fully_connected reads each row of A in place, no scratch: at most NARROW_COLUMNS columns and A's
        depth contiguous (not transA)."""
        return node.attrs["cols"] <= NARROW_COLUMNS and not node.attrs["trans_a"]

    def scratch_choices(self, node: Node, graph: Graph) -> list[int]:
        """None for a narrow layer (reads_in_place); else one row of A as int16 (fastest), or, where it takes
        fewer bytes, the depth in chunks of 256 or 64 (int16) after one int32 accumulator per column
        (qcc_fully_connected's qcc_fc_chunked)."""
        if self.reads_in_place(node):
            return [0]
        choices = [2 * self.padded_depth(node)]
        for chunk in (256, 64):
            size = 2 * chunk + 4 * node.attrs["cols"]
            if chunk < self.padded_depth(node) and size < choices[-1]:
                choices.append(size)
        return choices

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        return self.scratch_choices(node, graph)[-1]

    @classmethod
    def depth_chunk(cls, node: Node, scratch: int) -> int:
        """The depths expanded at once with `scratch` bytes (one of scratch_choices); a narrow layer's row is
        read whole, in place."""
        whole = cls.padded_depth(node)
        if scratch >= 2 * whole or cls.reads_in_place(node):
            return whole
        return (scratch - 4 * node.attrs["cols"]) // 2

    @staticmethod
    def part_scratch_choices(depth: int) -> list[int]:
        """The scratch of one part of `depth` codes (qcc_fully_connected_part, a streamed chain's row):
        the part as int16 (fastest), or 64 depths at a time where that is less."""
        whole = -(-depth // 8) * 8
        return [2 * whole] + ([2 * 64] if whole > 64 else [])

    def emit_part(self, node: Node, graph: Graph, c, image_shape, scratch: int) -> str:
        """The parameters of the layer taking its input image (1, C, H, W), flattened channels first, a row
        (part) at a time: each part's weights (its C x W codes of every column) one block after the
        other. Returns the struct's symbol."""
        _, channels, height, width = image_shape
        prefix = c.symbol(node.name)
        p, at = node.params, node.attrs
        part = channels * width
        kp = -(-part // 8) * 8
        by_row = p["weights"].reshape(at["cols"], channels, height, width).transpose(2, 0, 1, 3)
        blocks = [sxtb16_tap_order(block.reshape(at["cols"], part), kp) for block in by_row]
        weights = c.const_array(f"{prefix}_weights", "int8_t", np.concatenate(blocks, axis=None))
        acc_const = c.const_array(f"{prefix}_acc_const", "int32_t", p["acc_const"])
        fields = {"rows": 1, "depth": part, "cols": at["cols"], "a_row_stride": part, "a_depth_stride": 1,
                  "depth_chunk": kp if scratch >= 2 * kp else scratch // 2, "weights": weights,
                  "acc_const": acc_const, "acc_const_row_stride": 0, "weight_zero": "NULL",
                  "requant": emit_requant(c, prefix, p["requant"])}
        return c.struct("qcc_fc_params", f"{prefix}_params", fields)

    def _block_4col(self, node: Node, c, depth_chunk: int, wide: bool) -> str:
        """The block of 4 columns for the layer's kp (runtime_c/qcc_dsp_blocks.h), defined once in model.c, where its
        rows are expanded whole into int8 weights' pairs and it has 4 columns or more; else NULL."""
        kp = self.padded_depth(node)
        if wide or self.reads_in_place(node) or depth_chunk < kp or node.attrs["cols"] < 4 or kp > FC_4COL_MAX_KP:
            return "NULL"
        return f"QCC_DSP_BLOCK({c.definition('QCC_FC_4COL_DEFINE', f'fc_4col_k{kp}', kp)})"

    def emit(self, node: Node, graph: Graph, c) -> str:
        a, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        p, at = node.params, node.attrs
        kp, depth_chunk = self.padded_depth(node), self.depth_chunk(node, c.scratch_size(node))
        # --wide-weights: the int16 pairs SMLAD takes, where qcc_fully_connected expands whole rows of A
        wide = graph.wide_weights and not self.reads_in_place(node) and depth_chunk == kp
        if wide:
            padded = np.zeros((-(-at["cols"] // 2) * 2, kp), np.int64)  # a zero column after an odd last one
            padded[:at["cols"], :at["depth"]] = p["weights"].reshape(at["cols"], -1)
            words = (padded[:, 0::2] & 0xFFFF) | ((padded[:, 1::2] & 0xFFFF) << 16)  # (cols, kp / 2)
            interleaved = words.reshape(-1, 2, kp // 2).transpose(0, 2, 1)  # each pair of columns' words a, b, a, b
            weights = c.const_array(f"{prefix}_weights", "uint32_t", interleaved.reshape(-1).astype(np.uint32))
            weights = f"(const int8_t *)(const void *){weights}"
        else:
            weights = c.const_array(f"{prefix}_weights", "int8_t", sxtb16_tap_order(p["weights"], kp))
        acc_const = c.const_array(f"{prefix}_acc_const", "int32_t", p["acc_const"])
        const_row_stride = at["cols"] if p["acc_const"].ndim == 2 else 0
        w_zero = "NULL" if p["weight_zero"] is None else c.const_array(f"{prefix}_weight_zero", "int32_t", p["weight_zero"])
        # A is read as a[m * row_stride + k * depth_stride]: transA only swaps the strides.
        row_stride, depth_stride = (1, at["rows"]) if at["trans_a"] else (at["depth"], 1)
        fields = {"rows": at["rows"], "depth": at["depth"], "cols": at["cols"], "a_row_stride": row_stride,
                  "a_depth_stride": depth_stride, "depth_chunk": depth_chunk,
                  "weights": weights, "weights_wide": int(wide), "block_4col": self._block_4col(node, c, depth_chunk, wide),
                  "acc_const": acc_const, "acc_const_row_stride": const_row_stride, "weight_zero": w_zero,
                  "requant": emit_requant(c, prefix, p["requant"])}
        params = c.struct("qcc_fc_params", f"{prefix}_params", fields)
        suffix = "s8" if a.dtype == "int8" else "u8"
        scratch = c.scratch(node) if c.scratch_size(node) else "NULL"  # a narrow layer reads A in place
        return f"qcc_fully_connected_{suffix}({params}, {c.tensor(a.name)}, {c.tensor(y.name)}, {scratch});"


@register
class QLinearMatMul(_ConstantRightMatMul):
    name = "QLinearMatMul"
    onnx_ops = (OnnxOp("", "QLinearMatMul", 10),)
    summary = "matrix product with a constant 2-D right side, per-column or per-tensor B"

    qdq_float_ops = (OnnxOp("", "MatMul"),)

    def from_qdq(self, group):
        a, b, y = group.quantized_input(0), group.quantized_input(1), group.quantized_output()
        check_integer_types(group, a, b, y)
        scale, codes = group.constant(b[1]), group.constant(b[0])
        if scale is not None and scale.size > 1 and codes is not None:
            rank = codes.ndim
            axis = attribute(group.dq[1], "axis", 1)
            if axis % max(rank, 1) != rank - 1:  # measured: ORT fuses per-column B only
                raise NotFused(f"its B is quantized per row (DequantizeLinear axis {axis}), not per column")
        return [group.replacement("QLinearMatMul", [*a, *b, y[1], y[2]])]

    def import_node(self, onnx_node, graph):
        a, b = (graph.tensors.get(name) for name in (list(onnx_node.input) + ["", "", "", ""])[0:4:3])
        if a is not None and b is not None and b.is_const and b.data.ndim > 2:
            require(False, graph, onnx_node, _batched_refusal(a.shape, b.data.shape))
        return self._import(onnx_node, graph, a_idx=0, b_idx=3, y_idx=6, bias_idx=None,
                            trans_a=False, trans_b=False, alpha=1.0)

    def _output_scales(self, s_a, s_b, s_y, alpha):
        return (s_a * s_b) / s_y  # ORT: f32(f32(s_a * s_b[n]) / s_y)


def _batched_refusal(a_shape, b_shape) -> str:
    """Why a product with a batched B is left whole: qcc.frontend.onnx.batched_matmul splits every one ORT runs.
    ORT's MatMulComputeHelper refuses the others when the model runs ("operand cannot broadcast")."""
    a_rows = [1, *a_shape] if len(a_shape) == 1 else list(a_shape)
    if a_rows[-1] != b_shape[-2]:
        return (f"A of shape {list(a_shape)} has depth {a_rows[-1]} but B of shape {list(b_shape)} has {b_shape[-2]} "
                "rows; ONNX Runtime refuses this product")
    try:
        np.broadcast_shapes(tuple(a_rows[:-2]), tuple(b_shape[:-2]))
    except ValueError:
        return (f"the batch dimensions of A {list(a_shape)} and B {list(b_shape)} do not broadcast; ONNX Runtime "
                "refuses this product (an --input-shape that disagrees with B's batch, or a wrong model)")
    return f"B of shape {list(b_shape)} is batched but A's shape {list(a_shape)} is not static"


@register
class QGemm(_ConstantRightMatMul):
    name = "QGemm"
    onnx_ops = (OnnxOp("com.microsoft", "QGemm"),)
    summary = "Gemm with transA, transB, alpha, int32 C of any broadcast shape, per-column B"

    qdq_float_ops = (OnnxOp("", "Gemm", 7),)  # Gemm-6 and before: a broadcast attribute

    def from_qdq(self, group):
        a, b, y = group.quantized_input(0), weight_input(group, 1), group.quantized_output()
        check_integer_types(group, a, b, y)
        attrs = group.attributes()
        c = ""
        if len(group.node.input) > 2 and group.node.input[2]:
            if attrs.get("beta", 1.0) != 1.0 or attrs.get("alpha", 1.0) != 1.0:
                raise NotFused("it has a bias with alpha or beta other than 1")
            c = bias_codes(group, 2)  # ORT uses the int32 codes as they are, whatever their scale
        attrs.pop("beta", None)
        return [group.replacement("QGemm", [*a, *b, c, y[1], y[2]], domain="com.microsoft", **attrs)]

    def import_node(self, onnx_node, graph):
        return self._import(onnx_node, graph, a_idx=0, b_idx=3, y_idx=7, bias_idx=6,
                            trans_a=bool(attribute(onnx_node, "transA", 0)),
                            trans_b=bool(attribute(onnx_node, "transB", 0)),
                            alpha=attribute(onnx_node, "alpha", 1.0))

    def _output_scales(self, s_a, s_b, s_y, alpha):
        return ((alpha * s_a) * s_b) / s_y  # ORT: f32(f32(f32(alpha * s_a) * s_b[n]) / s_y)

    # TFLM's FULLY_CONNECTED: acc = sum((a - Z_a) * (w - Z_w)) + bias over each row of the input flattened to
    # (rows, K), requantized with M0 and shift from the double s_a * s_w[n] / s_y (the pinned wheel's per-tensor
    # multiplier too: older TFLM rounded the product to float first), then the fused activation's clamp.
    tflite_ops = (TfliteOp("FULLY_CONNECTED", 1, 13),)

    def import_tflite(self, operator, model) -> None:
        w = model.constant(1, "weights")
        w_tensor = model.input_tensor(1, "weights")
        model.require(w.dtype == np.int8 and w.ndim == 2, f"the weights must be a 2-D int8 constant (N, K), got "
                      f"{w.dtype} {list(w.shape)}")
        cols, depth = (int(d) for d in w.shape)
        model.require(model.options.get("weights_format", 0) == 0, "the weights are shuffled (weights_format "
                      "SHUFFLED4x16INT8), which TFLM does not run")
        a_tensor = model.input_tensor(0, "input")
        model.require(a_tensor.size % depth == 0, f"the input {list(a_tensor.shape)} does not split into rows of {depth}")
        rows = a_tensor.size // depth
        keep_dims = bool(model.options.get("keep_num_dims", False))
        if keep_dims:
            model.require(a_tensor.shape[-1] == depth, f"keep_num_dims needs the input's last dimension to be {depth}")
            a = model.activation(0, "tflite")
            out_shape = (*a.shape[:-1], cols)
        elif (len(a_tensor.shape) == 4 and model.converts_by_copy(0, "tflite") and a_tensor.shape[0] == rows):
            # The input exists channels first and each image is one row: permute the weights' columns to
            # the channels-first order at compile time instead of moving the image's bytes at run time.
            a = model.activation(0, "nchw")
            _, h, w_, c = a_tensor.shape
            w = w.reshape(cols, h, w_, c).transpose(0, 3, 1, 2).reshape(cols, depth)
            out_shape = (rows, cols)
        elif (image := model.flattened_image(0)) is not None and image.shape[0] == rows:
            # A RESHAPE flattened a channels-first image into this input: read the image itself, the weights'
            # columns permuted as above (the RESHAPE's channels-last copy is then unused, and dropped).
            a = image
            _, c, h, w_ = image.shape
            w = w.reshape(cols, h, w_, c).transpose(0, 3, 1, 2).reshape(cols, depth)
            out_shape = (rows, cols)
        else:
            a = model.activation(0, "tflite", dtypes=("int8", "int16"))
            out_shape = (rows, cols)
        if not keep_dims:
            a = model.view(a, (rows, depth), "rows")
        if a.dtype == "int16":  # 16x8: TFLM's other arithmetic (conv16x8.py), as a 1x1 convolution of each row
            model.require(not keep_dims or len(out_shape) == 2, "keep_num_dims with an int16 input of rank "
                          f"{len(out_shape)}: qcc compiles 16x8 FULLY_CONNECTED on rows")
            add_conv16x8(model, a, w.reshape(cols, depth, 1, 1), model.quant(w_tensor, axis=0), out_shape, {
                "groups": 1, "kernel": [1, 1], "strides": [1, 1], "dilations": [1, 1], "pads_begin": [0, 0]}, False)
            return
        w_quant = model.quant(w_tensor, axis=0)
        model.require(w_quant.scale.size in (1, cols), f"the weights have {w_quant.scale.size} scales for {cols} outputs")
        bias = model.bias(2, cols)
        w_name = model.constant_tensor("weights", np.ascontiguousarray(w), w_quant)
        y = model.output(0, out_shape, "tflite")
        node = model.add_node(self.name, [a.name, w_name], [y], {
            "trans_a": False, "trans_b": True, "alpha": np.float32(1.0), "bias": bias,
            "rows": rows, "depth": depth, "cols": cols})
        node.attrs["clamp"] = fused_clamp(model, model.graph.tensor(y).quant, "int8")


class _MatMulExplanation(RequantExplanation):
    def __init__(self, op: _ConstantRightMatMul, node: Node, graph: Graph):
        super().__init__(node, graph)
        a = node.attrs
        self.op = op
        self.w = graph.tensor(node.inputs[1])
        self.channels, self.depth, self.rows = a["cols"], a["depth"], a["rows"]
        self.taps = self.depth
        self.s_w = [np.float32(s) for s in per_channel(self.w.quant.scale, self.channels)]
        self.z_w = [int(z) for z in per_channel(self.w.quant.zero_point, self.channels)]
        self.stored = node.params["weights"]  # (cols, depth) int8, as the C holds them, and their zero points
        stored_zero = node.params["weight_zero"]
        self.stored_zero = [0] * self.channels if stored_zero is None else [int(z) for z in stored_zero]
        self.bias = a["bias"]  # None, (cols,) or (rows, cols)
        self.alpha = a["alpha"]
        self.gemm = node.op == "QGemm"
        self.formula = {
            "real": ("Y = alpha * A * B + C" if self.gemm else "Y = A * B")
            + "   (each r = S * (q - Z); C has scale alpha * S_a * S_b[n], zero point 0)",
            "integer": "acc = sum_k (q_a[m,k] - Z_a) * (q_b[k,n] - Z_b[n]) + q_c[m,n]  (int32, wrapping);  "
                       "q_y = clamp(round(M[n] * acc), lo, hi) + Z_y,  M[n] = "
                       + ("alpha * S_a * S_b[n] / S_y" if self.gemm else "S_a * S_b[n] / S_y"),
            "folded": "acc = acc_const[n] + sum_k q_a[m,k] * w[n,k] - Z_b[n] * sum_k q_a[m,k],  "
                      "acc_const[n] = q_c[n] - Z_a * sum_k w[n,k] + K * Z_a * Z_b[n]  (the last term of acc only "
                      "where Z_b != 0)",
        }

    def exact_m(self, c):
        m = Fraction(float(self.s_x)) * Fraction(float(self.s_w[c])) / Fraction(float(self.s_y))
        return m * Fraction(float(self.alpha)) if self.gemm else m

    def _bias(self, c, row=None):
        if self.bias is None:
            return 0
        if self.bias.ndim == 2:
            return [int(b) for b in self.bias[:, c]] if row is None else int(self.bias[row, c])
        return int(self.bias[c])

    def acc_const(self, c, row=None):
        table = self.node.params["acc_const"]
        if table.ndim == 2:
            return [int(v) for v in table[:, c]] if row is None else int(table[row, c])
        return int(table[c])

    def acc_const_terms(self, c):
        weight_sum = int(self.stored[c].astype(np.int64).sum())
        return {"bias": self._bias(c), "minus_zx_sum_w": -self.z_x * weight_sum,
                "k_zx_zw": self.depth * self.z_x * self.stored_zero[c]}

    def c_accumulator(self, c):
        zero = self.node.params["weight_zero"] is not None
        generic = "acc = acc_const[n] + sum(a[k] * w[n][k], k < K)" + (" - Z_w[n] * sum(a[k], k < K)" if zero else "")
        const = self.acc_const(c, 0)
        numbers = f"acc = {const} + sum(a[k] * w[{c}][k], k < {self.depth})"
        if zero:
            numbers += f" - {self.stored_zero[c]} * sum(a[k], k < {self.depth})"
        if self.node.params["acc_const"].ndim == 2:
            numbers += "   /* row 0's constant: C varies by row */"
        return generic, numbers

    def positions(self):
        return self.rows

    def output_index(self, c, row):
        return tuple(int(i) for i in np.unravel_index(row * self.channels + c, self.y.shape))

    def element(self, values, c, row):
        """Row `row` of A and column c of B, centered as the reference multiplies them."""
        a_centered, b_centered = self.op._centered_operands(self.node, self.graph, values[self.node.inputs[0]])
        a = a_centered[row] + self.z_x  # the codes the kernel reads
        w = b_centered[:, c] + self.z_w[c]  # the model's codes
        return Element(x=a, w=w, padded=np.zeros(a.shape, bool), products=a_centered[row] * b_centered[:, c],
                       bias=self._bias(c, row), acc_const=self.acc_const(c, row),
                       folded_sum=int((a * self.stored[c].astype(np.int64)).sum()),
                       minus_zw_sum_x=-self.stored_zero[c] * int(a.sum()))
