"""Split, Slice and Pad on 8-bit codes, and the byte-moving machinery that Concat and Resize share.

These ops move codes without touching them, so scale and zero point pass through and int8 and
uint8 tensors use the same byte kernels (runtime_c/qcc_data_movement.c):
- a strided block copy (`qcc_copy_8bit`): every offset computed here; Split, Slice, Concat, and
  the interior of a constant Pad;
- a gather by per-axis index tables (`qcc_gather_8bit`): Pad in edge, reflect and wrap modes,
  and Resize.

Semantics follow ONNX Runtime's CPU kernels:
- Slice: starts/ends/axes/steps are clamped as in ORT's slice_helper.h (a negative step clamps
  the start to [0, dim-1] and the end to [-1, dim]; an end of INT32_MAX or INT64_MAX means "to the
  end", which is -1 for a negative step).
- Split: sizes from the `split` input (opset 13+) or attribute, or `num_outputs` (opset 18:
  chunks of ceil(dim / n), the last one smaller), or equal parts.
- Pad (opset 11+): negative pads first crop the input, then the cropped tensor is padded; modes
  constant (the value input is a code), edge, reflect (pads at most extent - 1, as ORT checks)
  and wrap, as numpy.pad computes them.

They also import TFLite's SPLIT / SPLIT_V, STRIDED_SLICE and PAD / PADV2 as TFLM computes them
(tensorflow/lite/micro/kernels/split.cc, split_v.cc, strided_slice*.cc, pad*.cc, with the reference
kernels they call). TFLM copies codes there without comparing the input's quantization with the
outputs': each output keeps the parameters the model declares. A rank-4 input is taken in the
layout it already has (channels first after a convolution), its axes and per-axis values moved with
it. Integer parameters (axis, begin/end/strides, paddings) are read by TFLM as int32 whatever the
tensor's type; another type is refused by name (TFLM would misread its bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from qcc.ops.qdq_group import NotFused
from qcc.ir import Graph, Node
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, const_input, register, require
from qcc.ops.tflite_import import (NCHW, TFLITE, TO_TFLITE, in_layout, ir_axis, moves_only_unit_axes, own_layout,
                                   tflite_int32s)
from qcc.ops.explanation import MOVES_CODES, Explanation
from qcc.numerics.quantize_linear import quantize_linear
from qcc.ops.quantized import add_output, quantized_input
from qcc.errors import QccError

MAX_RANK = 6  # QCC_MAX_RANK in runtime_c/qcc_kernels.h
RUNTIME_SOURCES = ("qcc_data_movement.c",)
RUNTIME_HEADER = "qcc_data_movement.h"
_INT32_LIMIT = 2**31


# --- shared by the byte-moving ops (Concat, QLinearConcat and Resize import these) ----------


def row_major_strides(shape) -> list[int]:
    strides, step = [], 1
    for dim in reversed(list(shape)):
        strides.insert(0, step)
        step *= int(dim)
    return strides


def normalize_axis(axis: int, rank: int, graph: Graph, onnx_node, what: str = "axis") -> int:
    require(-rank <= axis < rank, graph, onnx_node, f"{what} {axis} is outside the rank {rank} of the input")
    return axis % rank


def require_nonempty(shape, graph: Graph, onnx_node, what: str) -> None:
    """Zero-sized tensors have no C array; tensors of 2^31 elements or more overflow the kernels' offsets."""
    size = int(np.prod(shape, dtype=np.int64))
    require(size > 0, graph, onnx_node,
            f"the {what} would have shape {tuple(shape)} with no elements; qcc needs non-empty tensors")
    require(size < _INT32_LIMIT, graph, onnx_node, f"the {what} has {size} elements; the kernels index below 2^31")


@dataclass
class StridedCopy:
    """y[dst_offset + i . dst_strides] = x[src_offset + i . src_strides] for every index i in dims."""

    dims: list[int]
    src_strides: list[int]
    dst_strides: list[int]
    src_offset: int = 0
    dst_offset: int = 0

    def simplified(self) -> StridedCopy:
        """The same copy with axes of size 1 dropped and neighbouring axes that are contiguous in
        both tensors merged (a Concat or Split becomes a 2-D copy of rows)."""
        axes = [(d, s, t) for d, s, t in zip(self.dims, self.src_strides, self.dst_strides) if d != 1]
        merged: list[tuple[int, int, int]] = []
        for d, s, t in axes:
            if merged and merged[-1][1] == s * d and merged[-1][2] == t * d:
                outer = merged.pop()
                d = outer[0] * d
            merged.append((d, s, t))
        merged = merged or [(1, 1, 1)]
        return StridedCopy([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged],
                           self.src_offset, self.dst_offset)

    def in_bytes(self, itemsize: int) -> StridedCopy:
        """The same copy of elements of `itemsize` bytes (int16 codes: 2) as a copy of bytes: one more axis,
        each element's bytes in order (simplified() merges it into the rows again)."""
        if itemsize == 1:
            return self
        return StridedCopy(self.dims + [itemsize], [s * itemsize for s in self.src_strides] + [1],
                           [s * itemsize for s in self.dst_strides] + [1], self.src_offset * itemsize,
                           self.dst_offset * itemsize)


def byte_source(c, graph: Graph, name: str, symbol: str, data: np.ndarray | None = None) -> str:
    """A uint8_t pointer to a tensor's bytes: its arena slice or caller argument, or for a constant
    a flash array of its bytes (`data` replaces them, e.g. with codes already requantized)."""
    tensor = graph.tensor(name)
    if tensor.is_const:
        values = np.ascontiguousarray(tensor.data if data is None else data)
        return c.const_array(symbol, "uint8_t", values.reshape(-1).view(np.uint8))
    return c.tensor(name, "uint8")


def emit_copy(c, node: Node, symbol: str, copy: StridedCopy, x: str, y: str, table: str | None = None) -> str:
    """A qcc_copy_8bit call for `copy` (simplified to at most MAX_RANK axes), optionally through a
    256-entry byte table."""
    copy = copy.simplified()
    if len(copy.dims) > MAX_RANK:
        raise QccError(f"node '{node.name}': the copy needs {len(copy.dims)} axes after merging; "
                       f"the kernel supports {MAX_RANK}")
    if len(copy.dims) == 1 and copy.src_strides == [1] and copy.dst_strides == [1] and table is None:  # bytes
        def at(pointer, offset):
            return f"{pointer} + {offset}" if offset else pointer
        return f"memcpy({at(y, copy.dst_offset)}, {at(x, copy.src_offset)}, {copy.dims[0]});"
    pad = MAX_RANK - len(copy.dims)

    def field(values, fill):
        return [int(v) for v in [fill] * pad + list(values)]

    fields = {"dims": field(copy.dims, 1), "src_strides": field(copy.src_strides, 0),
              "dst_strides": field(copy.dst_strides, 0), "src_offset": copy.src_offset,
              "dst_offset": copy.dst_offset, "table": table or "NULL"}
    params = c.struct("qcc_copy_params", symbol, fields)
    return f"qcc_copy_8bit({params}, {x}, {y});"


def emit_gather(c, node: Node, symbol: str, in_shape, sources: list[np.ndarray], x: str, y: str) -> str:
    """A qcc_gather_8bit call: output index (i0, i1, ...) reads input index (sources[0][i0],
    sources[1][i1], ...). Axes that are the identity need no table; neighbouring identity axes merge."""
    strides = row_major_strides(in_shape)
    axes = []  # (out_dim, in_stride, source indices or None for the identity)
    for dim, stride, src in zip(in_shape, strides, sources):
        src = np.asarray(src, dtype=np.int64)
        identity = src.size == dim and np.array_equal(src, np.arange(dim))
        if identity and axes and axes[-1][2] is None and axes[-1][1] == stride * dim:
            outer = axes.pop()
            axes.append((outer[0] * dim, stride, None))
        elif identity and dim == 1:
            continue
        else:
            axes.append((int(src.size), stride, None if identity else src))
    if len(axes) <= 1 and all(src is None for _, _, src in axes):  # every axis the identity: one copy
        return f"memcpy({y}, {x}, {int(np.prod(in_shape))});"
    if len(axes) > MAX_RANK:
        raise QccError(f"node '{node.name}': the gather needs {len(axes)} axes; the kernel supports {MAX_RANK}")
    axes = [(1, 0, None)] * (MAX_RANK - len(axes)) + axes
    tables = []
    for k, (_, stride, src) in enumerate(axes):
        tables.append("NULL" if src is None else c.const_array(f"{symbol}_axis{k}", "int32_t", src * stride))
    fields = {"out_dims": [a[0] for a in axes], "in_strides": [a[1] for a in axes], "tables": tables}
    params = c.struct("qcc_gather_params", symbol, fields)
    return f"qcc_gather_8bit({params}, {x}, {y});"


def const_ints(graph: Graph, onnx_node, index: int, what: str) -> list[int] | None:
    """A constant integer input as a list, or None when the optional input is absent."""
    if index >= len(onnx_node.input) or not onnx_node.input[index]:
        return None
    return [int(v) for v in np.asarray(const_input(graph, onnx_node, index, what)).reshape(-1)]


# --- Split ---------------------------------------------------------------------------------


@register
class Split(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "Split"
    # Split-2 and -11 take the sizes as an attribute, -13 as an input, -18 adds num_outputs.
    onnx_ops = (OnnxOp("", "Split", 2, 10), OnnxOp("", "Split", 11, 12), OnnxOp("", "Split", 13, 17),
                OnnxOp("", "Split", 18))
    summary = "split sizes from the input or attribute, num_outputs (opset 18) or equal parts; any axis"
    qdq_float_ops = onnx_ops
    tflite_ops = (TfliteOp("SPLIT", 1, 4), TfliteOp("SPLIT_V", 1, 2))  # 2: int8

    def import_tflite(self, operator, model) -> None:
        """SPLIT (axis, input) into equal parts, SPLIT_V (input, size_splits, axis): TFLM takes every part's
        size from the output tensors' shapes (size_splits is only checked here against them)."""
        split_v = operator.code == "SPLIT_V"
        source, axis_position = (0, 2) if split_v else (1, 0)
        axis_values = tflite_int32s(model, axis_position, "axis")
        model.require(len(axis_values) == 1, f"the axis must be one value, got {axis_values}")
        in_shape = model.input_tensor(source, "input").shape
        rank = len(in_shape)
        model.require(-rank <= axis_values[0] < rank, f"axis {axis_values[0]} is outside the rank {rank} of the input")
        axis = axis_values[0] % rank
        count = len(operator.outputs)
        model.require(int(model.options.get("num_splits", count)) == count,
                      f"num_splits is {model.options.get('num_splits')} but the operator has {count} outputs")
        shapes = [model.output_tensor(i).shape for i in range(count)]
        sizes = [shape[axis] if len(shape) == rank else -1 for shape in shapes]
        model.require(all(len(shape) == rank and all(d == e for k, (d, e) in enumerate(zip(shape, in_shape)) if k != axis)
                          for shape in shapes) and sum(sizes) == in_shape[axis] and min(sizes) > 0,
                      f"the outputs' shapes {[list(t) for t in shapes]} do not split the input {list(in_shape)} along "
                      f"axis {axis}")
        if split_v:
            wanted = [int(v) for v in np.asarray(model.constant(1, "size_splits")).reshape(-1)]
            known = sum(v for v in wanted if v != -1)
            filled = [in_shape[axis] - known if v == -1 else v for v in wanted]
            model.require(wanted.count(-1) <= 1 and filled == sizes,
                          f"size_splits {wanted} disagrees with the outputs' sizes {sizes} along axis {axis}")
        else:
            model.require(len(set(sizes)) == 1, f"SPLIT makes equal parts, but the outputs' sizes are {sizes}")
        layout = own_layout(model, source)
        x = model.activation(source, layout, dtypes=("int8", "int16"))
        outputs = [model.output(i, tuple(in_layout(shape, layout)), layout, dtypes=(x.dtype,))
                   for i, shape in enumerate(shapes)]
        model.add_node(self.name, [x.name], outputs, {"axis": ir_axis(axis, rank, layout), "sizes": sizes})

    def from_qdq(self, group):
        """ORT's SplitSelector: one DQ, and after every output one Q with the DQ's parameters."""
        x, outputs = group.quantized_input(0), group.quantized_outputs()
        if not all(group.same_quantization(x, y) for y in outputs):
            raise NotFused("its outputs' QuantizeLinear parameters differ from its DequantizeLinear's")
        node = onnx.NodeProto()
        node.CopyFrom(group.node)
        node.input[0] = x[0]
        for i, y in enumerate(outputs):
            node.output[i] = y[0]
        return [node]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        axis = normalize_axis(int(attribute(onnx_node, "axis", 0)), rank, graph, onnx_node)
        dim, count = x.shape[axis], len(onnx_node.output)
        sizes = const_ints(graph, onnx_node, 1, "split") or None  # an empty split input means none
        if sizes is None:
            sizes = attribute(onnx_node, "split")
        num_outputs = attribute(onnx_node, "num_outputs")
        if sizes is not None:
            sizes = [int(s) for s in sizes]
            require(len(sizes) == count and sum(sizes) == dim, graph, onnx_node,
                    f"split sizes {sizes} must be one per output ({count}) and sum to the axis length {dim}")
        elif num_outputs is not None:
            require(int(num_outputs) == count, graph, onnx_node,
                    f"num_outputs is {num_outputs} but the node has {count} outputs")
            chunk = -(-dim // count)
            sizes = [chunk] * (count - 1) + [dim - chunk * (count - 1)]
        else:
            require(dim % count == 0, graph, onnx_node, f"axis length {dim} does not split evenly into {count} outputs")
            sizes = [dim // count] * count
        outputs = []
        for i, size in enumerate(sizes):
            shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
            require_nonempty(shape, graph, onnx_node, f"output {i}")
            outputs.append(add_output(graph, onnx_node, i, x.dtype, shape, x.quant))
        return Node(self.name, onnx_node.name or outputs[0], [x.name], outputs, attrs={"axis": axis, "sizes": sizes})

    def reference(self, node: Node, graph: Graph, inputs):
        bounds = np.cumsum(node.attrs["sizes"])[:-1]
        return [np.ascontiguousarray(part) for part in np.split(inputs[0], bounds, axis=node.attrs["axis"])]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x = graph.tensor(node.inputs[0])
        axis = node.attrs["axis"]
        in_strides = row_major_strides(x.shape)
        prefix = c.symbol(node.name)
        source = byte_source(c, graph, x.name, f"{prefix}_x")
        calls, begin = [], 0
        for i, (name, size) in enumerate(zip(node.outputs, node.attrs["sizes"])):
            y = graph.tensor(name)
            copy = StridedCopy(list(y.shape), in_strides, row_major_strides(y.shape), begin * in_strides[axis], 0)
            calls.append(emit_copy(c, node, f"{prefix}_params{i}", copy.in_bytes(np.dtype(x.dtype).itemsize), source,
                                   c.tensor(name, "uint8")))
            begin += size
        return "\n    ".join(calls)


# --- Slice ---------------------------------------------------------------------------------


def slice_range(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """(first index, count) of an ONNX slice along an axis of length dim, clamped as ORT does."""
    if start < 0:
        start += dim
    start = min(max(start, 0), dim - 1 if step < 0 else dim)
    if end in (2**31 - 1, 2**63 - 1):  # "to the end" in the slice's direction
        end = -1 if step < 0 else dim
    else:
        if end < 0:
            end += dim
        end = min(max(end, -1 if step < 0 else 0), dim)
    count = -(-(end - start) // step)  # ceil((end - start) / step)
    return start, max(count, 0)


def tflm_slice_bounds(begin: int, end: int, stride: int, size: int, begin_masked: bool, end_masked: bool) -> tuple[int, int]:
    """(start, stop) of one axis as TFLM's strided slice kernel computes them (strided_slice_logic.h,
    StridedSliceStartForAxis / StridedSliceEndForAxis): negative indices count from the end, then clamped
    to [0, size] (stride > 0) or [-1, size - 1] (stride < 0); a masked begin or end is the axis' end."""
    low, high = (0, size) if stride > 0 else (-1, size - 1)
    start = begin + size if begin < 0 else begin
    start = min(max(start, low), high)
    if begin_masked:
        start = 0 if stride > 0 else size - 1
    stop = end + size if end < 0 else end
    stop = min(max(stop, low), high)
    if end_masked:
        stop = size if stride > 0 else -1
    return start, stop


@register
class Slice(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "Slice"
    onnx_ops = (OnnxOp("", "Slice", 1, 9), OnnxOp("", "Slice", 10))  # attributes, then inputs with steps
    qdq_propagation_ops = (OnnxOp("", "Slice"),)
    summary = "constant starts, ends, axes and steps (negative steps too)"

    # QDQ models: ORT drops a DQ -> Slice -> Q pair with equal parameters and slices the codes.
    qdq_float_ops = onnx_ops
    # 2: int8, 4: rank 5 (TFLM slices up to rank 4), 6: ellipsis/new axis masks, 8: offset (both refused below)
    tflite_ops = (TfliteOp("STRIDED_SLICE", 1, 8),)
    TFLM_MAX_RANK = 4  # kMaxDim in TFLM's strided_slice_common.cc

    def import_tflite(self, operator, model) -> None:
        """TFLM's STRIDED_SLICE: begin, end and strides constant int32, one per axis; begin_mask, end_mask and
        shrink_axis_mask. TFLM ignores ellipsis_mask, new_axis_mask and offset (it slices as if they were 0,
        where TensorFlow means something else): qcc refuses them. A shrunk axis is sliced to length 1 and
        dropped by a Reshape that shares the bytes."""
        in_shape = model.input_tensor(0, "input").shape
        rank = len(in_shape)
        model.require(1 <= rank <= self.TFLM_MAX_RANK, f"the input has rank {rank}; TFLM's STRIDED_SLICE takes "
                      f"1 to {self.TFLM_MAX_RANK}")
        begin, end, strides = (tflite_int32s(model, i, what) for i, what in ((1, "begin"), (2, "end"), (3, "strides")))
        model.require(len(begin) == len(end) == len(strides) == rank,
                      f"begin {begin}, end {end} and strides {strides} must have one value per input axis ({rank})")
        options = model.options
        for name in ("ellipsis_mask", "new_axis_mask", "offset"):
            model.require(not options.get(name), f"has {name} {int(options.get(name))}, which TFLM's STRIDED_SLICE "
                          "ignores (it slices as if it were 0, unlike TensorFlow); qcc refuses it")
        begin_mask, end_mask = int(options.get("begin_mask", 0)), int(options.get("end_mask", 0))
        shrink_mask = int(options.get("shrink_axis_mask", 0))
        first, counts = [], []
        for a, size in enumerate(in_shape):
            step = strides[a]
            model.require(step != 0, f"the stride of axis {a} is 0")
            start, stop = tflm_slice_bounds(begin[a], end[a], step, size, begin_mask >> a & 1, end_mask >> a & 1)
            if shrink_mask >> a & 1:
                # TFLM's kernel reads [start, start + 1) in the stride's direction: nothing when the stride is
                # negative or start lies past the axis, though the output keeps its element.
                model.require(step > 0 and 0 <= start < size, f"shrinks axis {a} at begin {begin[a]} with stride {step}, "
                              "where TFLM's kernel writes nothing; give a positive stride and a begin inside the axis")
                count = 1
            else:
                count = max(0, -(-(stop - start) // step))
            model.require(count > 0, f"the slice of axis {a} is empty; qcc needs non-empty tensors")
            first.append(start)
            counts.append(count)
        layout = own_layout(model, 0)
        x = model.activation(0, layout, dtypes=("int8", "int16"))
        attrs = {"first": in_layout(first, layout), "step": in_layout(strides, layout)}
        kept = tuple(in_layout(counts, layout))
        if not shrink_mask & ((1 << rank) - 1):
            model.add_node(self.name, [x.name], [model.output(0, kept, layout, dtypes=(x.dtype,))], attrs)
            return
        quant = model.quant(model.output_tensor(0))
        model.require(model.output_tensor(0).dtype == x.dtype, f"the output is {model.output_tensor(0).dtype}, the "
                      f"input {x.dtype}; STRIDED_SLICE copies codes")
        sliced = model.intermediate("sliced", kept, quant, x.dtype)
        model.add_node(self.name, [x.name], [sliced], attrs)
        y = model.output(0, tuple(c for a, c in enumerate(counts) if not shrink_mask >> a & 1), TFLITE, dtypes=(x.dtype,))
        if layout == NCHW and not moves_only_unit_axes(kept, TO_TFLITE):
            channels_last = model.intermediate("channels_last", tuple(counts), quant, x.dtype)
            model.permute(model.graph.tensor(sliced), TO_TFLITE, channels_last)
            sliced = channels_last
        model.add_node("Reshape", [sliced], [y], {})

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        if len(onnx_node.input) > 1:  # opset 10+: inputs
            starts = const_ints(graph, onnx_node, 1, "starts")
            ends = const_ints(graph, onnx_node, 2, "ends")
            axes = const_ints(graph, onnx_node, 3, "axes")
            steps = const_ints(graph, onnx_node, 4, "steps")
            require(starts is not None and ends is not None, graph, onnx_node, "starts and ends are required")
        else:  # opset 1-9: attributes, no steps
            starts, ends = attribute(onnx_node, "starts"), attribute(onnx_node, "ends")
            axes, steps = attribute(onnx_node, "axes"), None
            require(starts is not None and ends is not None, graph, onnx_node, "starts and ends are required")
        axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
        steps = [1] * len(starts) if steps is None else steps
        require(len(starts) == len(ends) == len(axes) == len(steps), graph, onnx_node,
                "starts, ends, axes and steps must have the same length")
        first, step = [0] * rank, [1] * rank
        shape = list(x.shape)
        seen = set()
        for s, e, a, k in zip(starts, ends, axes, steps):
            a = normalize_axis(a, rank, graph, onnx_node)
            require(a not in seen, graph, onnx_node, f"axis {a} appears twice")
            require(k != 0, graph, onnx_node, "a step of 0 is invalid")
            seen.add(a)
            step[a] = int(k)
            first[a], shape[a] = slice_range(int(s), int(e), int(k), x.shape[a])
        require_nonempty(shape, graph, onnx_node, "output")
        y = add_output(graph, onnx_node, 0, x.dtype, shape, x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"first": first, "step": step})

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        shape = graph.tensor(node.outputs[0]).shape
        index = [f + k * np.arange(n) for f, k, n in zip(node.attrs["first"], node.attrs["step"], shape)]
        return [x[np.ix_(*index)]]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        in_strides = row_major_strides(x.shape)
        copy = StridedCopy(list(y.shape), [s * k for s, k in zip(in_strides, node.attrs["step"])],
                           row_major_strides(y.shape), sum(f * s for f, s in zip(node.attrs["first"], in_strides)), 0)
        prefix = c.symbol(node.name)
        return emit_copy(c, node, f"{prefix}_params", copy.in_bytes(np.dtype(x.dtype).itemsize),
                         byte_source(c, graph, x.name, f"{prefix}_x"), c.tensor(y.name, "uint8"))


# --- Pad -----------------------------------------------------------------------------------


PAD_MODES = ("constant", "edge", "reflect", "wrap")


def pad_source_index(j: np.ndarray, extent: int, mode: str) -> np.ndarray:
    """For output positions j (relative to the first element of the cropped input), the cropped
    input index each one reads in edge, reflect and wrap modes."""
    if mode == "edge":
        return np.clip(j, 0, extent - 1)
    if mode == "reflect":
        return np.where(j < 0, -j, np.where(j > extent - 1, 2 * (extent - 1) - j, j))
    return np.mod(j, extent)  # wrap


@register
class Pad(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "Pad"
    # Pad-2 pads float tensors only in ORT (its pads and value are attributes); from 11 they are inputs.
    onnx_ops = (OnnxOp("", "Pad", 11),)
    summary = "opset 11+: constant (value input is a code), edge, reflect and wrap modes; negative pads crop; axes input"
    qdq_float_ops = onnx_ops
    tflite_ops = (TfliteOp("PAD", 1, 4), TfliteOp("PADV2", 1, 4))  # 2: int8, 4: rank 5
    TFLM_MAX_RANK = 5  # PadKernelMaxDimensionCount in TFLM's reference pad.h

    def import_tflite(self, operator, model) -> None:
        """TFLM's PAD / PADV2: constant int32 paddings, one (before, after) pair per axis, none negative. The
        fill is the output's zero point, or PADV2's constant value, an int8 code that must have the output's
        scale and zero point (PadPrepare checks both)."""
        in_shape = model.input_tensor(0, "input").shape
        rank = len(in_shape)
        model.require(1 <= rank <= self.TFLM_MAX_RANK, f"the input has rank {rank}; TFLM pads ranks 1 to "
                      f"{self.TFLM_MAX_RANK}")
        pads = tflite_int32s(model, 1, "paddings")
        model.require(len(pads) == 2 * rank, f"the paddings have {len(pads)} values; TFLM reads 2 per axis ({2 * rank})")
        model.require(min(pads) >= 0, f"the paddings {pads} include a negative one; TFLM's kernel does not crop")
        out = model.output_tensor(0)
        y_quant = model.quant(out)
        value = int(y_quant.zero_point)
        x_dtype = model.input_tensor(0, "input").dtype
        if model.has_input(2):
            fill = model.input_tensor(2, "constant value")
            data = model.constant(2, "constant value")
            model.require(fill.dtype == x_dtype and data.size == 1, f"the constant value must be one {x_dtype} code, "
                          f"got {fill.dtype} of shape {list(data.shape)}")
            fill_quant = model.quant(fill)
            model.require(np.float32(fill_quant.scale) == np.float32(y_quant.scale)
                          and int(fill_quant.zero_point) == int(y_quant.zero_point),
                          "the constant value's scale or zero point differs from the output's; TFLM requires them equal")
            value = int(data.reshape(-1)[0])
        layout = own_layout(model, 0)
        x = model.activation(0, layout, dtypes=("int8", "int16"))
        # the C fills the padding byte by byte: an int16 code whose two bytes differ is refused
        model.require(x.dtype == "int8" or value in (0, -1), f"pads int16 codes with {value}; qcc fills int16 "
                      "padding with 0 (the zero point 16x8 models have) or -1")
        before, after = in_layout(pads[0::2], layout), in_layout(pads[1::2], layout)
        shape = tuple(d + b + a for d, b, a in zip(x.shape, before, after))
        y = model.output(0, shape, layout, dtypes=(x.dtype,))
        model.add_node(self.name, [x.name], [y], {"mode": "constant", "value": value, "crop": [0] * rank,
                                                  "extent": list(x.shape), "before": before, "after": after})

    def from_qdq(self, group):
        """ORT has no CPU QDQ rule for Pad: DQ -> Pad -> Q runs a float Pad. With the same parameters on
        both sides that equals Pad on the codes, the pad value quantized as ORT's QuantizeLinear does;
        a zero Pad feeding a Conv is left for the Conv to absorb (ORT's PadFusion)."""
        consumer = group.g.single_consumer(group.node.output[0])
        if group.q is None and consumer is not None and consumer.op_type == "Conv":
            return [group.node]
        node = group.on_codes()
        y = group.quantized_output()
        mode = attribute(node, "mode", "constant")
        if mode == "constant":
            # The float pad value (0.0 when the input is absent) becomes the code ORT's QuantizeLinear
            # gives it: the zero point for 0.0, not code 0.
            value = group.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.float32)
            if value is None:
                raise NotFused("its pad value is not a constant")
            scale, zero = group.constant(y[1]), group.constant(y[2])
            code = quantize_linear(np.float32(value.reshape(())), np.float32(scale.reshape(())), int(zero.reshape(())),
                                   str(zero.dtype))
            inputs = list(node.input) + [""] * (3 - len(node.input))
            inputs[2] = group.add_initializer(f"{y[0]}_pad_code", np.asarray(code, dtype=zero.dtype).reshape(()))
            node.input[:] = inputs
        return [node]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        mode = attribute(onnx_node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        require(mode in PAD_MODES, graph, onnx_node, f"mode '{mode}' is not one of {', '.join(PAD_MODES)}")
        require(len(onnx_node.input) > 1 and onnx_node.input[1], graph, onnx_node,
                "pads must be an input (Pad opset 11+); before opset 11 ORT pads float tensors only")
        pads = const_ints(graph, onnx_node, 1, "pads")
        axes = const_ints(graph, onnx_node, 3, "axes")
        axes = list(range(rank)) if axes is None else [normalize_axis(a, rank, graph, onnx_node) for a in axes]
        require(len(set(axes)) == len(axes), graph, onnx_node, f"axes {axes} has duplicates")
        require(len(pads) == 2 * len(axes), graph, onnx_node, f"pads has {len(pads)} values for {len(axes)} axes")
        begin, end = [0] * rank, [0] * rank
        for i, a in enumerate(axes):
            begin[a], end[a] = pads[i], pads[i + len(axes)]
        value = 0
        if len(onnx_node.input) > 2 and onnx_node.input[2]:
            value_data = const_input(graph, onnx_node, 2, "constant_value")
            require(str(value_data.dtype) == x.dtype and value_data.size == 1, graph, onnx_node,
                    f"constant_value must be one {x.dtype} code, got {value_data.dtype} of shape {value_data.shape}")
            value = int(value_data.reshape(-1)[0])
        # Negative pads crop first; the cropped tensor is then padded (ORT's order).
        crop = [max(-b, 0) for b in begin]
        extent = [d - max(-b, 0) - max(-e, 0) for d, b, e in zip(x.shape, begin, end)]
        require(all(e > 0 for e in extent), graph, onnx_node, f"negative pads {pads} remove the whole input {x.shape}")
        before, after = [max(b, 0) for b in begin], [max(e, 0) for e in end]
        if mode == "reflect":
            for a in range(rank):
                require(max(before[a], after[a]) <= extent[a] - 1, graph, onnx_node,
                        f"reflect pads on axis {a} must be at most {extent[a] - 1} (ORT refuses more)")
        shape = [e + b + a for e, b, a in zip(extent, before, after)]
        require_nonempty(shape, graph, onnx_node, "output")
        y = add_output(graph, onnx_node, 0, x.dtype, shape, x.quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y],
                    attrs={"mode": mode, "value": value, "crop": crop, "extent": extent, "before": before, "after": after})

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        a = node.attrs
        cropped = x[tuple(slice(c, c + e) for c, e in zip(a["crop"], a["extent"]))]
        widths = list(zip(a["before"], a["after"]))
        if a["mode"] == "constant":
            return [np.pad(cropped, widths, mode="constant", constant_values=a["value"])]
        return [np.pad(cropped, widths, mode=a["mode"])]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        a = node.attrs
        prefix = c.symbol(node.name)
        source = byte_source(c, graph, x.name, f"{prefix}_x")
        target = c.tensor(y.name, "uint8")
        if a["mode"] == "constant":
            in_strides, out_strides = row_major_strides(x.shape), row_major_strides(y.shape)
            copy = StridedCopy(a["extent"], in_strides, out_strides, sum(p * s for p, s in zip(a["crop"], in_strides)),
                               sum(p * s for p, s in zip(a["before"], out_strides)))
            calls = []
            if any(a["before"]) or any(a["after"]):  # (an int16 fill is 0 or -1: its two bytes are equal)
                calls.append(f"memset({target}, {a['value'] & 0xFF}, {y.nbytes});")
            calls.append(emit_copy(c, node, f"{prefix}_params", copy.in_bytes(np.dtype(x.dtype).itemsize), source,
                                   target))
            return "\n    ".join(calls)
        sources = [crop + pad_source_index(np.arange(n) - before, extent, a["mode"])
                   for crop, n, before, extent in zip(a["crop"], y.shape, a["before"], a["extent"])]
        return emit_gather(c, node, f"{prefix}_params", x.shape, sources, source, target)
