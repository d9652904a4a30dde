"""Concat on 8-bit codes, and com.microsoft QLinearConcat.

Concat moves codes: each input is one strided block copy into its slice of the output. It also
imports TFLite's CONCATENATION, which in TFLM copies int8 codes only: every input must have the
output's scale and zero point (ConcatenationPrepare compares them exactly), and no fused activation.

QLinearConcat (inputs: y_scale, y_zero_point, then a (tensor, scale, zero point) triple per
input; attribute axis) requantizes each input to the output's parameters. ONNX Runtime
(contrib_ops/cpu/quantization/qlinear_concat.cc, qlinear_lookup_table.cc) does it through a
256-entry table per input,
    table[b] = QuantizeLinear(f32(s_i * f32(b - z_i)), s_y, z_y)
(QuantizeLinear: a true float32 division, clamp, round half to even), except that an input whose
scale and zero point equal the output's is copied. qcc computes each table at compile time with
numpy float32 (IEEE exact) and emits the copy as a plain copy; the C only looks bytes up. A Relu
or Clip that follows folds into the tables (and turns a copied input into a clamping table).
"""

from __future__ import annotations

import numpy as np

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import DTYPE_RANGE, Graph, Node, QuantParams
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, register, require
from qcc.ops.tflite_import import NCHW, TFLITE, ir_axis
from qcc.numerics.quantize_linear import code_table, codes_in_byte_order, dequantize_linear, quantize_linear
from qcc.ops.explanation import KEEPS_ORT, MOVES_CODES, Explanation
from qcc.ops.movement import reads_channels_last
from qcc.ops.quantized import add_output, quantized_input, read_quant
from qcc.ops.slice_split_pad import (RUNTIME_HEADER, RUNTIME_SOURCES, StridedCopy, byte_source, emit_copy,
                                     normalize_axis, require_nonempty, row_major_strides)


def concat_shape(graph: Graph, onnx_node, shapes: list[tuple[int, ...]], axis: int) -> tuple[tuple[int, ...], int]:
    """The output shape and the normalized axis; every other dimension must agree."""
    rank = len(shapes[0])
    require(all(len(s) == rank for s in shapes), graph, onnx_node, f"inputs have different ranks: {shapes}")
    axis = normalize_axis(axis, rank, graph, onnx_node)
    for s in shapes:
        require(s[:axis] + s[axis + 1:] == shapes[0][:axis] + shapes[0][axis + 1:], graph, onnx_node,
                f"input shapes {shapes} differ outside axis {axis}")
    shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]
    require_nonempty(shape, graph, onnx_node, "output")
    return shape, axis


def in_its_slice(plan, name: str, output: str, begin: int) -> bool:
    """Whether tensor `name` lives in the bytes of `output` from `begin` on: its producer wrote it into this
    concat's slice. Sharing the output's buffer is not enough: an input of this concat can also be a slice of
    a later concat whose buffer this concat's output shares (x in both Concat(x, a) -> y and Concat(y, x))."""
    mine, theirs = plan.storage[name], plan.storage[output]
    return (plan.root[name] == plan.root[output] and mine.kind == theirs.kind == "arena"
            and mine.offset == theirs.offset + begin)


def emit_concat(c, graph: Graph, node: Node, tables: list[np.ndarray | None] | None = None) -> str:
    """One block copy per input into its slice of the output along the axis (through a byte table
    where one is given)."""
    y = graph.tensor(node.outputs[0])
    axis = node.attrs["axis"]
    out_strides = row_major_strides(y.shape)
    prefix = c.symbol(node.name)
    target = c.tensor(y.name, "uint8")
    emitted: dict[bytes, str] = {}  # inputs with the same parameters share one table
    calls, begin = [], 0
    for i, name in enumerate(node.inputs):
        x = graph.tensor(name)
        table = None if tables is None else tables[i]
        table_symbol = None
        if in_its_slice(c.plan, name, y.name, begin * out_strides[axis] * np.dtype(y.dtype).itemsize):  # (memory_plan)
            if table is not None:  # requantized in place, element by element
                key = table.tobytes()
                if key not in emitted:
                    emitted[key] = c.const_array(f"{prefix}_table{i}", "uint8_t", table)
                slice_bytes = c.tensor(name, "uint8")
                copy = StridedCopy([x.size], [1], [1], 0, 0)  # (tables: 8-bit codes only)
                calls.append(emit_copy(c, node, f"{prefix}_params{i}", copy, slice_bytes, slice_bytes, emitted[key]))
            begin += x.shape[axis]
            continue
        if table is not None and graph.tensor(name).is_const:
            # A constant input is requantized here, at compile time, and then only copied.
            source = byte_source(c, graph, name, f"{prefix}_x{i}", table[x.data.reshape(-1).view(np.uint8)])
        else:
            source = byte_source(c, graph, name, f"{prefix}_x{i}")
            if table is not None:
                key = table.tobytes()
                if key not in emitted:
                    emitted[key] = c.const_array(f"{prefix}_table{i}", "uint8_t", table)
                table_symbol = emitted[key]
        strides = row_major_strides(x.shape)
        if reads_channels_last(graph, name):  # a model input's channels-last bytes, seen channels first
            _, channels, height, width = x.shape
            strides = [height * width * channels, 1, width * channels, channels]
        copy = StridedCopy(list(x.shape), strides, out_strides, 0, begin * out_strides[axis])
        calls.append(emit_copy(c, node, f"{prefix}_params{i}", copy.in_bytes(np.dtype(x.dtype).itemsize), source, target,
                               table_symbol))
        begin += x.shape[axis]
    # Every input already in its slice, as it is: nothing to do at run time.
    return "\n    ".join(calls) or "/* nothing to copy: each input was written into its slice */"


@register
class Concat(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    name = "Concat"
    onnx_ops = (OnnxOp("", "Concat", 4),)  # axis required from 4
    summary = "codes of the same type along any axis (constant inputs too); no requantization"
    tflite_ops = (TfliteOp("CONCATENATION", 1, 4),)  # 2: int8
    TFLM_MAX_INPUTS = 10  # kMaxInputNum in TFLM's concatenation.cc

    def import_tflite(self, operator, model) -> None:
        """Rank-4 inputs are taken in the layout most of them already have (channels first after
        convolutions), the axis moved with them; anything else in TFLite's own layout."""
        count = model.input_count()
        model.require(1 <= count <= self.TFLM_MAX_INPUTS, f"has {count} inputs; TFLM concatenates 1 to "
                      f"{self.TFLM_MAX_INPUTS}")
        activation = model.options.get("fused_activation_function", 0)
        model.require(activation == 0, "has a fused activation; TFLM's CONCATENATION refuses one")
        out = model.output_tensor(0)
        rank = len(out.shape)
        layouts = [model.layout_of(i) for i in range(count) if model.has_input(i) and not model.is_constant(i)]
        layout = NCHW if rank == 4 and 2 * layouts.count(NCHW) >= max(len(layouts), 1) else TFLITE
        # a channels-last model input is read in place (its copy takes channels-last strides), not transposed first
        inputs = [(layout == NCHW and not model.is_constant(i) and model.channels_first_view(i))
                  or model.activation(i, layout, f"input {i}", ("int8", "int16")) for i in range(count)]
        model.require(len({x.dtype for x in inputs}) == 1, f"the inputs mix {sorted({x.dtype for x in inputs})}")
        y_quant = model.quant(out)
        for i, x in enumerate(inputs):
            model.require(len(x.shape) == rank, f"input {i} has rank {len(x.shape)}, the output {rank}")
            (s_x, z_x), (s_y, z_y) = x.quant.scalar(), y_quant.scalar()
            model.require(np.float32(s_x) == np.float32(s_y) and z_x == z_y,
                          f"input {i}'s scale {float(s_x):g} and zero point {z_x} differ from the output's "
                          f"({float(s_y):g}, {z_y}); TFLM's int8 CONCATENATION copies codes and requires them equal")
        axis = ir_axis(int(model.options.get("axis", 0)), rank, layout)
        model.require(axis is not None, f"axis {model.options.get('axis', 0)} is outside the rank {rank}")
        shape = list(inputs[0].shape)
        for i, x in enumerate(inputs):
            model.require(all(a == b for k, (a, b) in enumerate(zip(x.shape, shape)) if k != axis),
                          f"input {i}'s shape {list(model.input_tensor(i, 'input').shape)} differs from input 0's "
                          "outside the axis")
        shape[axis] = sum(x.shape[axis] for x in inputs)
        y = model.output(0, tuple(shape), layout, dtypes=(inputs[0].dtype,))
        model.add_node(self.name, [x.name for x in inputs], [y], {"axis": axis})

    def import_node(self, onnx_node, graph: Graph) -> Node:
        inputs = [quantized_input(graph, onnx_node, i, f"input {i}") for i in range(len(onnx_node.input))]
        require(len({t.dtype for t in inputs}) == 1, graph, onnx_node,
                f"inputs mix {sorted({t.dtype for t in inputs})}; Concat needs one type")
        require(attribute(onnx_node, "axis") is not None, graph, onnx_node, "the axis attribute is required")
        shape, axis = concat_shape(graph, onnx_node, [t.shape for t in inputs], int(attribute(onnx_node, "axis")))
        # The codes are not requantized: the output shares its inputs' parameters when they agree
        # (a DequantizeLinear after it gives them otherwise).
        quants = [t.quant for t in inputs if t.quant is not None]
        same = quants and all(_same_quant(q, quants[0]) for q in quants) and len(quants) == len(inputs)
        y = add_output(graph, onnx_node, 0, inputs[0].dtype, shape, quants[0] if same else None)
        return Node(self.name, onnx_node.name or y, [t.name for t in inputs], [y], attrs={"axis": axis})

    def reference(self, node: Node, graph: Graph, inputs):
        return [np.concatenate(inputs, axis=node.attrs["axis"])]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return MOVES_CODES

    def emit(self, node: Node, graph: Graph, c) -> str:
        return emit_concat(c, graph, node)


def _same_quant(a: QuantParams, b: QuantParams) -> bool:
    return (a.axis == b.axis and np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point))


def requantize_codes(x: np.ndarray, x_scale: np.float32, x_zero: int, y_scale: np.float32, y_zero: int,
                     dtype: str) -> np.ndarray:
    """ORT's QLinearConcat on codes: dequantize in float32, then QuantizeLinear; an input with the
    output's exact scale and zero point is copied."""
    if np.float32(x_scale) == np.float32(y_scale) and x_zero == y_zero:
        return x.copy()
    return quantize_linear(dequantize_linear(x, x_scale, x_zero), y_scale, y_zero, dtype)


@register
class QLinearConcat(Op):
    runtime_sources = RUNTIME_SOURCES
    runtime_header = RUNTIME_HEADER
    folds_clamp = True
    name = "QLinearConcat"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearConcat"),)
    summary = "any axis; each input requantized by a 256-entry table (copied when its parameters equal the output's)"

    # QDQ models: ORT's "*DQ" rule turns DQ -> Concat -> Q into QLinearConcat when every input comes
    # from a DequantizeLinear and all inputs and the output have one 8-bit type; scales may differ.
    qdq_float_ops = (OnnxOp("", "Concat", 4),)

    def from_qdq(self, group):
        y = group.quantized_output()
        inputs = [group.quantized_input(i) for i in range(len(group.node.input))]
        for x in inputs:
            check_integer_types(group, x, None, y)
        names = [y[1], y[2]] + [name for x in inputs for name in x]
        return [group.replacement("QLinearConcat", names, domain="com.microsoft", **group.attributes())]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        count = len(onnx_node.input) - 2
        require(count >= 3 and count % 3 == 0, graph, onnx_node,
                "expected y_scale, y_zero_point, then a (tensor, scale, zero point) triple per input")
        y_quant = read_quant(graph, onnx_node, 0, 1, "output")
        # The output type is the zero point's; without one (a QDQ group whose Q omits it), the inputs'.
        dtype = graph.tensor(onnx_node.input[1] or onnx_node.input[2]).dtype
        require(dtype in DTYPE_RANGE, graph, onnx_node, f"the output would be {dtype}; qcc supports int8 and uint8")
        inputs, quants = [], []
        for i in range(count // 3):
            x = quantized_input(graph, onnx_node, 2 + 3 * i, f"input {i}")
            require(x.dtype == dtype, graph, onnx_node, f"input {i} is {x.dtype} but the output is {dtype}")
            quant = read_quant(graph, onnx_node, 3 + 3 * i, 4 + 3 * i, f"input {i}")
            zero_type = graph.tensor(onnx_node.input[4 + 3 * i]).dtype if onnx_node.input[4 + 3 * i] else dtype
            require(zero_type == dtype, graph, onnx_node, f"the zero point of input {i} is {zero_type}, not {dtype}")
            if x.quant is None and not x.is_const:
                x.quant = quant
            inputs.append(x)
            quants.append(quant)
        shape, axis = concat_shape(graph, onnx_node, [t.shape for t in inputs], int(attribute(onnx_node, "axis", 0)))
        y = add_output(graph, onnx_node, 0, dtype, shape, y_quant)
        return Node(self.name, onnx_node.name or y, [t.name for t in inputs], [y],
                    attrs={"axis": axis, "input_quant": [q.scalar() for q in quants]})

    def _clamp(self, node: Node, graph: Graph) -> tuple[int, int]:
        qmin, qmax = DTYPE_RANGE[graph.tensor(node.outputs[0]).dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        return max(lo, qmin), min(hi, qmax)

    def prepare(self, node: Node, graph: Graph) -> None:
        """A byte table per input (None: a plain copy)."""
        y = graph.tensor(node.outputs[0])
        s_y, z_y = y.quant.scalar()
        qmin, qmax = DTYPE_RANGE[y.dtype]
        lo, hi = self._clamp(node, graph)
        tables = []
        for s_x, z_x in node.attrs["input_quant"]:
            copies = np.float32(s_x) == np.float32(s_y) and z_x == z_y
            if copies and (lo, hi) == (qmin, qmax):
                tables.append(None)
                continue
            if copies:  # ORT copies such an input; a table here only for the folded clamp
                table = codes_in_byte_order(y.dtype).astype(y.dtype).view(np.uint8)
            else:
                table = code_table(y.dtype, s_x, z_x, lambda v: v, y.dtype, s_y, z_y).reshape(-1)
            tables.append(np.clip(table.view(y.dtype), lo, hi).astype(y.dtype).view(np.uint8))
        node.params["tables"] = tables

    def reference(self, node: Node, graph: Graph, inputs):
        y = graph.tensor(node.outputs[0])
        s_y, z_y = y.quant.scalar()
        lo, hi = self._clamp(node, graph)
        parts = [requantize_codes(x, s_x, z_x, s_y, z_y, y.dtype) for x, (s_x, z_x) in zip(inputs, node.attrs["input_quant"])]
        return [np.clip(np.concatenate(parts, axis=node.attrs["axis"]), lo, hi).astype(y.dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("table", "each input requantized by a 256-entry table computed at compile time with ORT's "
                                    "float32 arithmetic (copied when its parameters equal the output's); " + KEEPS_ORT)

    def emit(self, node: Node, graph: Graph, c) -> str:
        return emit_concat(c, graph, node, node.params["tables"])
