"""Ops that only move bytes of a quantized tensor: Reshape, Flatten, Squeeze, Unsqueeze and
Identity reinterpret the same bytes (the memory plan gives them their input's storage), and
Transpose permutes them. Scale and zero point pass through unchanged."""

from __future__ import annotations

import numpy as np

from qcc.ir import C_TYPES, Graph, Node
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, const_input, op_named, register, require
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.ops.quantized import add_output, quantized_input
from qcc.ops.tflite_import import NCHW, TFLITE, TO_NCHW, TO_TFLITE, moves_only_unit_axes, tflite_int32s

MAX_TRANSPOSE_RANK = 6  # QCC_MAX_RANK in runtime_c/qcc_kernels.h


def _axes(onnx_node, graph: Graph) -> list[int] | None:
    """The axes of Squeeze/Unsqueeze as written: an input from opset 13, an attribute before."""
    if len(onnx_node.input) > 1 and onnx_node.input[1]:
        axes = const_input(graph, onnx_node, 1, "axes")
    else:
        axes = attribute(onnx_node, "axes")
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _output_shape(onnx_node, graph: Graph, shape: tuple[int, ...]) -> tuple[int, ...]:
    op = onnx_node.op_type
    if op == "Identity":
        return shape
    if op == "Flatten":
        axis = int(attribute(onnx_node, "axis", 1)) % (len(shape) + 1) if shape else 0
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    if op == "Squeeze":
        axes = _axes(onnx_node, graph)
        if axes is None:
            return tuple(d for d in shape if d != 1)
        axes = [a % len(shape) for a in axes]
        require(all(shape[a] == 1 for a in axes), graph, onnx_node, f"cannot squeeze axes {axes} of shape {shape}")
        return tuple(d for i, d in enumerate(shape) if i not in axes)
    if op == "Unsqueeze":
        axes = _axes(onnx_node, graph)
        require(axes is not None, graph, onnx_node, "Unsqueeze needs axes")
        out_rank = len(shape) + len(axes)
        axes = [a % out_rank for a in axes]
        dims = iter(shape)
        return tuple(1 if i in axes else next(dims) for i in range(out_rank))
    # Reshape: 0 copies the input dimension (unless allowzero), -1 is inferred.
    target = [int(d) for d in const_input(graph, onnx_node, 1, "shape").reshape(-1)]
    if not attribute(onnx_node, "allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        return tuple(np.empty(shape, dtype=np.uint8).reshape(target).shape)
    except ValueError:
        require(False, graph, onnx_node, f"cannot reshape {shape} to {target}")


def _same_codes(model, quant) -> bool:
    """The operator's output tensor has the quantization `quant` (an op that only moves codes)."""
    out = model.output_tensor(0).quant
    return out.scale.size == 1 and float(out.scale[0]) == float(quant.scale) and int(out.zero_point[0]) == int(
        quant.zero_point)


@register
class Reshape(Op):
    name = "Reshape"
    # Reshape takes its shape as an input from 5; Squeeze/Unsqueeze their axes as an attribute before 13.
    onnx_ops = (OnnxOp("", "Reshape", 5), OnnxOp("", "Flatten"), OnnxOp("", "Squeeze", 1, 12), OnnxOp("", "Squeeze", 13),
                OnnxOp("", "Unsqueeze", 1, 12), OnnxOp("", "Unsqueeze", 13), OnnxOp("", "Identity"))
    summary = "no code: the output shares the input's bytes (a copy only between two caller buffers)"
    aliases_input = True
    qdq_float_ops = onnx_ops
    moves_values_only = True
    # ORT 1.32 propagates Q/DQ across these (measured: not across Flatten or Identity).
    qdq_propagation_ops = (OnnxOp("", "Reshape", 5), OnnxOp("", "Squeeze"), OnnxOp("", "Unsqueeze"))
    # On TFLite's own layout (channels last), to the shape the model declares for the output; the new shape,
    # given as an input or an option, must agree with it.
    tflite_ops = (TfliteOp("RESHAPE", 1, 1), TfliteOp("SQUEEZE", 1, 2), TfliteOp("EXPAND_DIMS", 1, 1))

    def import_tflite(self, operator, model) -> None:
        x = model.activation(0, "tflite", dtypes=("int8", "int16"))
        out = model.output_tensor(0)
        model.require(out.size == x.size, f"reshapes {list(x.shape)} ({x.size} values) to {list(out.shape)} "
                      f"({out.size} values)")
        if operator.code == "RESHAPE":
            wanted = model.constant(1, "shape") if model.has_input(1) else model.options.get("new_shape") or None
            if wanted is not None:
                wanted = [int(d) for d in np.asarray(wanted).reshape(-1)]
                known = [d for d in wanted if d != -1]
                fits = (len(wanted) == len(out.shape) and wanted.count(-1) <= 1
                        and all(d in (-1, o) for d, o in zip(wanted, out.shape)) and all(d > 0 for d in known))
                model.require(fits, f"the new shape {wanted} disagrees with the declared output {list(out.shape)}")
        elif operator.code == "SQUEEZE":
            dims = model.options.get("squeeze_dims") or [i for i, d in enumerate(x.shape) if d == 1]
            dims = [d % len(x.shape) if x.shape else d for d in dims]
            model.require(all(0 <= d < len(x.shape) and x.shape[d] == 1 for d in dims)
                          and tuple(d for i, d in enumerate(x.shape) if i not in dims) == out.shape,
                          f"squeezing dimensions {dims} of {list(x.shape)} does not give {list(out.shape)}")
        y = model.output(0, out.shape, "tflite", quant=x.quant, dtypes=(x.dtype,))
        model.require(model.output_tensor(0).quant is None or _same_codes(model, x.quant),
                      "the output's scale or zero point differs from the input's; TFLM's RESHAPE copies codes")
        model.add_node(self.name, [x.name], [y], {})

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        y = add_output(graph, onnx_node, 0, x.dtype, _output_shape(onnx_node, graph, x.shape), x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"onnx_op": onnx_node.op_type})

    def reference(self, node: Node, graph: Graph, inputs):
        return [inputs[0].reshape(graph.tensor(node.outputs[0]).shape)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        if x.is_const:  # a graph output that is a constant (qcc.passes.io_boundary): its values, copied from flash
            symbol = f"{c.symbol(node.name)}_values"
            values = x.data.reshape(-1)
            source = (c.const_float_array(symbol, values) if x.dtype == "float32" else
                      c.const_array(symbol, C_TYPES[x.dtype], values.astype(x.dtype)))
            return f"memcpy({c.tensor(y.name)}, {source}, {x.nbytes});"
        if c.same_storage(x.name, y.name):
            return f"/* {node.attrs['onnx_op']}: the output shares the input's bytes */"
        return f"memcpy({c.tensor(y.name)}, {c.tensor(x.name)}, {x.nbytes});"


@register
class Reinterpret(Reshape):
    """The same codes read with other quantization parameters (qcc.ops.quantized.bind_quant):
    no ONNX op of its own, and no code, like a Reshape."""
    name = "Reinterpret"
    onnx_ops = ()
    tflite_ops = ()
    qdq_float_ops = ()
    qdq_propagation_ops = ()
    summary = "the same codes read with other quantization parameters: no code"


def reads_channels_last(graph: Graph, tensor_name: str) -> bool:
    """Whether a tensor is a ChannelsFirstView: its reader takes the channels-last bytes under it in place."""
    producer = graph.producer(tensor_name)
    return producer is not None and producer.op == ChannelsFirstView.name


@register
class ChannelsFirstView(Op):
    """A model's channels-last input image (N, H, W, C) seen channels first (N, C, H, W) without a copy:
    the TFLite frontend gives it only to readers that take the channels-last bytes in place: a
    convolution that runs as qcc_conv_gemm (its im2col, qcc_conv_params.in_channels_last) and a
    concatenation (its copy's strides, concat.py). The reference transposes; the C
    has no code and no bytes for it (the output shares the input's storage, like a Reshape)."""
    name = "ChannelsFirstView"
    summary = "a channels-last input read in place by its convolution or concatenation: no code, no copy"
    aliases_input = True

    def reference(self, node: Node, graph: Graph, inputs):
        return [np.ascontiguousarray(np.transpose(inputs[0], (0, 3, 1, 2)))]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        return "/* the input channels last, read in place by the next convolution (in_channels_last) */"

    def stored_value(self, node: Node, graph: Graph, index: int, data: bytes) -> np.ndarray:
        """The bytes are the input's, channels last: seen channels first they are the output's value. Where the
        input is itself another tensor's bytes (a LookupOnLoad's table output), its op says what they hold."""
        source, producer = graph.tensor(node.inputs[0]), graph.producer(node.inputs[0])
        if producer is not None and op_named(producer.op).aliases_input:
            held = op_named(producer.op).stored_value(producer, graph, 0, data)
        else:
            held = np.frombuffer(data, dtype=np.dtype(source.dtype)).reshape(source.shape)
        return held.transpose(0, 3, 1, 2)


@register
class Transpose(Op):
    runtime_sources = ("qcc_kernels.c",)
    runtime_header = "qcc_kernels.h"
    name = "Transpose"
    onnx_ops = (OnnxOp("", "Transpose"),)
    moves_values_only = True
    qdq_propagation_ops = onnx_ops
    summary = f"any permutation up to rank {MAX_TRANSPOSE_RANK}"
    qdq_float_ops = onnx_ops
    # 2: int8, 4: rank 5, 6: rank 6 (TFLM transposes up to rank 5: refused by name)
    tflite_ops = (TfliteOp("TRANSPOSE", 1, 6),)
    TFLM_MAX_RANK = 5  # TransposePrepare

    def import_tflite(self, operator, model) -> None:
        """TFLite's TRANSPOSE (perm: a constant int32 permutation), composed with the layouts its input and
        output are held in inside qcc, so that one node moves the bytes: a Reshape that shares them where the
        composed permutation moves only axes of size 1, else one Transpose. Of the layouts the input has
        without a copy and the output may take, the pair that needs no Transpose wins (TFLite's own layout
        for the output on a tie)."""
        in_shape = model.input_tensor(0, "input").shape
        rank = len(in_shape)
        model.require(1 <= rank <= self.TFLM_MAX_RANK, f"the input has rank {rank}; TFLM transposes ranks 1 to "
                      f"{self.TFLM_MAX_RANK}")
        perm = tflite_int32s(model, 1, "perm")
        model.require(sorted(perm) == list(range(rank)), f"perm {perm} is not a permutation of the input's {rank} axes")
        identity = tuple(range(rank))
        layouts = (TFLITE, NCHW) if rank == 4 else (TFLITE,)
        choices = []
        for source in layouts:
            if source != model.layout_of(0) and model.converts_by_copy(0, source):
                continue
            from_ir = TO_TFLITE if source == NCHW else identity  # TFLite input axis a is IR input axis from_ir[a]
            shape = tuple(in_shape[p] for p in TO_NCHW) if source == NCHW else in_shape
            for target in layouts:
                to_tflite = TO_NCHW if target == NCHW else identity  # IR output axis j is TFLite output axis to_tflite[j]
                composed = [from_ir[perm[to_tflite[j]]] for j in range(rank)]
                choices.append((not moves_only_unit_axes(shape, composed), target != TFLITE, source != TFLITE,
                                source, target, composed))
        *_, source, target, composed = min(choices)
        x = model.activation(0, source, dtypes=("int8", "int16"))
        y = model.output(0, tuple(x.shape[p] for p in composed), target, dtypes=(x.dtype,))
        model.permute(x, composed, y)

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        require(rank <= MAX_TRANSPOSE_RANK, graph, onnx_node, f"rank {rank} is above the supported {MAX_TRANSPOSE_RANK}")
        perm = [int(p) for p in attribute(onnx_node, "perm", list(reversed(range(rank))))]
        require(sorted(perm) == list(range(rank)), graph, onnx_node, f"perm {perm} is not a permutation of {rank} axes")
        y = add_output(graph, onnx_node, 0, x.dtype, tuple(x.shape[p] for p in perm), x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"perm": perm})

    def reference(self, node: Node, graph: Graph, inputs):
        return [np.ascontiguousarray(np.transpose(inputs[0], node.attrs["perm"]))]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        perm = node.attrs["perm"]
        in_strides = np.empty(len(x.shape), dtype=np.int64)
        in_strides[-1:] = 1
        for i in range(len(x.shape) - 2, -1, -1):
            in_strides[i] = in_strides[i + 1] * x.shape[i + 1]
        out_dims, strides = list(y.shape), [int(in_strides[p]) for p in perm]
        size = np.dtype(x.dtype).itemsize
        if size > 1:  # wider codes move as bytes: one more axis, each element's bytes in order
            out_dims, strides = out_dims + [size], [s * size for s in strides] + [1]
        assert len(out_dims) <= MAX_TRANSPOSE_RANK, out_dims  # int16 comes from TFLite files, rank 5 at most
        # Leading axes of size 1 fill the fixed-rank arrays of the C struct.
        pad = MAX_TRANSPOSE_RANK - len(out_dims)
        out_dims, strides = [1] * pad + out_dims, [0] * pad + strides
        fields = {"out_dims": out_dims, "in_strides": strides}
        params = c.struct("qcc_transpose_params", f"{c.symbol(node.name)}_params", fields)
        return f"qcc_transpose_8bit({params}, {c.tensor(x.name, 'uint8')}, {c.tensor(y.name, 'uint8')});"
