"""QuantizeLinear on graph inputs and DequantizeLinear on graph outputs; TFLite's QUANTIZE and DEQUANTIZE there.

By default the boundary pass removes them from an ONNX model: the C takes and returns 8-bit codes, and the
manifest gives their scale and zero point. With --float-io they stay and run in C as ORT runs them:
    QuantizeLinear:   q = clamp(rne(f32(x / s)), qmin - z, qmax - z) + z    (NaN -> qmin)
    DequantizeLinear: r = f32(f32(q - z) * s)

A .tflite model's C takes and returns the types the model declares, as TFLM does, so its QUANTIZE of a
float32 input and DEQUANTIZE to a float32 output always stay, and compute what the pinned TFLM wheel does
(quantize_common.cc, reference/quantize.h and dequantize.h; checked on ties, huge values and signed zeros):
    QUANTIZE (int8, attrs["tflm"]): q = clamp(round_half_away(f32(x / f32(s))) + z, -128, 127), the
      rounding std::round's, not ORT's half-to-even. Where TFLM's float -> int32 cast is undefined
      (|x / s| >= 2^31, infinities, NaN) the wheel on x86 gives INT32_MIN + z, then clamped: qmin, or
      qmax after a wrap for z < 0 (an Arm build saturates instead); qcc saturates monotonically and
      maps NaN to z (qcc/numerics/tflm.py affine_quantize, runtime_c qcc_quantize_f32_s8_tflm).
    QUANTIZE int8 -> int8 is a requantization, TFLM's Requantize (two roundings,
      qcc/numerics/tflm_activations.py), a function of the input code: it becomes a Lookup table, not a
      QuantizeLinear node. Where int16 is on either side (16x8 models mixing int8 and int16 parts), the same
      Requantize runs in C (TflmRequantize): y = clamp(MBQM(x - z_x, M0, e) + z_y), M0 and e from
      QuantizeMultiplier(f64(s_x) / f64(s_y)), wrapping where TFLM's int32 arithmetic does.
    DEQUANTIZE: f32(double(s) * (q - z)), which is DequantizeLinear's value bit for bit (the double
      product is exact, so both round the exact product once), so it is DequantizeLinear's code.
All are here rather than in modules of their own: one home per op, the boundary's arithmetic. A
QUANTIZE or DEQUANTIZE of a float tensor computed inside the model is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx

from qcc.onnx_graph import quantize_output_type
from qcc.ir import CODE_RANGE, DTYPE_RANGE, KERNEL_SUFFIX, Graph, Node, QuantParams
from qcc.numerics import tflm_activations
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, node_label, register, require
from qcc.ops.tflite_import import add_lookup, require_int8, table_or_refuse
from qcc.ops.explanation import Explanation
from qcc.ops.quantized import add_output, quantized_input, read_quant
from qcc.ops.c_emitter import c_float_literal
from qcc.access_order import AccessOrder, elementwise
from qcc.errors import QccError
from qcc.numerics import tflm
from qcc.numerics.quantize_linear import dequantize_linear, quantize_linear


_ELEM_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def _per_tensor_quant(onnx_node, graph: Graph) -> QuantParams:
    quant = read_quant(graph, onnx_node, 1, 2, "", axis=int(attribute(onnx_node, "axis", 1)))
    if quant.per_channel:
        raise QccError(f"{node_label(graph, onnx_node)}: per-axis quantization of an activation is not supported")
    return quant


@register
class QuantizeLinear(Op):
    runtime_sources = ("qcc_float_io.c",)
    runtime_header = "qcc_float_io.h"
    name = "QuantizeLinear"
    onnx_ops = (OnnxOp("", "QuantizeLinear", 10),)
    tflite_ops = (TfliteOp("QUANTIZE", 1, 2),)  # 1: to int8 or uint8, 2: to int16 (refused by type)
    summary = ("on a graph input: removed (the C takes codes), or float32 in C with --float-io; TFLite: a float32 "
               "input quantized as TFLM does, and 8-bit requantization (int8 to int8, a uint8 input to int8, int8 to a "
               "uint8 output) as a table of TFLM's Requantize")

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = graph.tensor(onnx_node.input[0])
        require(x.dtype == "float32", graph, onnx_node, f"the input must be float32, got {x.dtype}")
        quant = _per_tensor_quant(onnx_node, graph)
        zero_name = onnx_node.input[2] if len(onnx_node.input) > 2 else ""
        elem = quantize_output_type(onnx_node, None) if not zero_name else None
        dtype = graph.tensor(zero_name).dtype if zero_name else _ELEM_DTYPES.get(elem, f"element type {elem}")
        require(dtype in DTYPE_RANGE, graph, onnx_node, f"output type {dtype} is not supported (int8 or uint8)")
        y = add_output(graph, onnx_node, 0, dtype, x.shape, quant)
        return Node(self.name, onnx_node.name or y, [x.name], [y])

    def import_tflite(self, operator, model) -> None:
        """QUANTIZE of a float32 model input to int8, as TFLM's AffineQuantize; from int8 to int8, or from a
        model's uint8 input to int8 (a requantization), a Lookup table of TFLM's Requantize (the module's docstring)."""
        source = model.input_tensor(0, "input")
        if source.dtype != "float32" and "int16" in (source.dtype, model.output_tensor(0).dtype):  # a 16x8 model's int8 <-> int16 boundary
            TflmRequantize.import_requantize(model)
            return
        # a model's uint8 input (the importer checks that QUANTIZE alone reads it)
        if source.dtype == "uint8" and model.output_tensor(0).dtype == "int8":
            s_x, z_x = model.quant(source).scalar()
            s_y, z_y = model.quant(model.output_tensor(0)).scalar()
            add_lookup(model, table_or_refuse(model, tflm_activations.requantize_table, s_x, z_x, s_y, z_y, "uint8"),
                       dtypes=("uint8",))
            return
        if source.dtype == "int8" and model.output_tensor(0).dtype == "uint8":  # the converter's inference_output_type
            out = model.output_tensor(0)
            model.require(out.index in model.model.outputs and not model.readers_of(out.index),
                          "writes uint8 codes that other operators read; qcc compiles a uint8 QUANTIZE output that is "
                          "a model output alone (TFLM's int8 kernels before it)")
            s_x, z_x = model.quant(source).scalar()
            s_y, z_y = model.quant(out).scalar()
            add_lookup(model, table_or_refuse(model, tflm_activations.requantize_table, s_x, z_x, s_y, z_y, "int8",
                                              "uint8"), out_dtypes=("uint8",))
            return
        if source.dtype != "float32":
            require_int8(model, "requantizing QUANTIZE")
            s_x, z_x = model.quant(source).scalar()
            s_y, z_y = model.quant(model.output_tensor(0)).scalar()
            add_lookup(model, table_or_refuse(model, tflm_activations.requantize_table, s_x, z_x, s_y, z_y))
            return
        x = model.float_input(0)
        out = model.output_tensor(0)
        model.require(out.dtype in ("int8", "int16"), f"quantizes to {out.dtype}; qcc compiles TFLM's int8 and int16 "
                      "kernels")
        y = model.output(0, x.shape, "tflite", model.quant(out), dtypes=(out.dtype,))
        model.add_node(self.name, [x.name], [y], {"tflm": True})

    def reference(self, node: Node, graph: Graph, inputs):
        y = graph.tensor(node.outputs[0])
        scale, zero = y.quant.scalar()
        if node.attrs.get("tflm"):
            qmin, qmax = CODE_RANGE[y.dtype]
            return [tflm.affine_quantize(inputs[0], scale, zero, qmin, qmax).astype(y.dtype)]
        return [quantize_linear(inputs[0], scale, zero, y.dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        if node.attrs.get("tflm"):
            return Explanation("boundary", "the float32 input boundary of a .tflite model: float32 in C, as TFLM's "
                                           "QUANTIZE computes it (f32(x / s) rounded half away from zero, saturated); "
                                           "no requantization step")
        return Explanation("boundary", "the float32 input boundary (with --float-io: float32 in C, exactly as ORT "
                                       "computes it); no requantization step")

    def access_order(self, node: Node, graph: Graph) -> AccessOrder | None:
        """qcc_quantize_f32_*: float i (its four bytes) read, then code i written; given per byte of the input,
        so that the 8-bit codes may overwrite the floats (with --io-in-arena: a float input image)."""
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        if x.dtype != "float32" or y.nbytes != y.size:
            return None
        return AccessOrder({0: np.repeat(elementwise(x.size), 4)}, elementwise(y.size))

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        scale, zero = y.quant.scalar()
        suffix = KERNEL_SUFFIX[y.dtype]
        if node.attrs.get("tflm"):
            suffix += "_tflm"
        return f"qcc_quantize_f32_{suffix}({c.tensor(x.name)}, {c.tensor(y.name)}, {x.size}, {c_float_literal(scale)}, {zero});"


@register
class DequantizeLinear(Op):
    runtime_sources = ("qcc_float_io.c",)
    runtime_header = "qcc_float_io.h"
    name = "DequantizeLinear"
    onnx_ops = (OnnxOp("", "DequantizeLinear", 10),)
    summary = "on a graph output: removed (the C returns codes), or float32 in C with --float-io"

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        quant = _per_tensor_quant(onnx_node, graph)
        if x.quant is None:
            x.quant = quant
        y = add_output(graph, onnx_node, 0, "float32", x.shape)
        return Node(self.name, onnx_node.name or y, [x.name], [y], attrs={"quant": quant})

    tflite_ops = (TfliteOp("DEQUANTIZE", 1, 2),)  # 1: uint8, 2: int8 (3: int16, 5: per channel)

    def import_tflite(self, operator, model) -> None:
        """DEQUANTIZE of int8 (or a 16x8 model's int16) codes to a float32 model output: TFLM's value is
        DequantizeLinear's (module docstring)."""
        x = model.activation(0, "tflite", dtypes=("int8", "int16"))
        y = model.float_output(0, x.shape)
        model.add_node(self.name, [x.name], [y], {"quant": x.quant})

    def reference(self, node: Node, graph: Graph, inputs):
        scale, zero = node.attrs["quant"].scalar()
        return [dequantize_linear(inputs[0], scale, zero)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("boundary", "the float32 output boundary (with --float-io, and always in a .tflite model: "
                                       "float32 in C, f32((q - z) * s) rounded once, exactly as ORT's DequantizeLinear "
                                       "and TFLM's DEQUANTIZE compute it); no requantization step")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        scale, zero = node.attrs["quant"].scalar()
        return f"qcc_dequantize_{KERNEL_SUFFIX[x.dtype]}_f32({c.tensor(x.name)}, {c.tensor(y.name)}, {x.size}, {c_float_literal(scale)}, {zero});"


@register
class TflmRequantize(Op):
    """TFLite's QUANTIZE from int8 to int16, int16 to int8 or int16 to int16: TFLM's Requantize (the module's
    docstring), in C (runtime_c/qcc_s16.c), the same in every scheme."""
    runtime_sources = ("qcc_s16.c",)
    runtime_header = "qcc_s16.h"
    name = "TflmRequantize"
    summary = "TFLM's QUANTIZE between int8 and int16 (16x8 models): y = clamp(MBQM(x - z_x, M0, e) + z_y)"

    @staticmethod
    def import_requantize(model) -> None:
        x = model.activation(0, model.layout_of(0), dtypes=("int8", "int16"))
        out = model.output_tensor(0)
        y = model.output(0, x.shape, model.layout_of(0), dtypes=("int8", "int16"))
        (s_x, z_x), (s_y, z_y) = x.quant.scalar(), model.quant(out).scalar()
        try:
            m0, e = tflm_activations.checked_multiplier(float(np.float32(s_x)) / float(np.float32(s_y)), "s_x / s_y")
        except ValueError as error:
            model.refuse(str(error))
        model.add_node(TflmRequantize.name, [x.name], [y], {"in_zero": z_x, "out_zero": z_y, "m0": m0, "e": e})

    def _codes(self, node: Node, graph: Graph, x: np.ndarray) -> np.ndarray:
        a = node.attrs
        lo, hi = CODE_RANGE[graph.tensor(node.outputs[0]).dtype]
        values = np.unique(np.asarray(x, np.int64))
        mapped = {int(v): min(max(tflm.wrap_int32(tflm.multiply_by_quantized_multiplier(int(v) - a["in_zero"], a["m0"],
                                                                                        a["e"]) + a["out_zero"]), lo), hi)
                  for v in values}
        return np.vectorize(mapped.__getitem__, otypes=[np.int64])(np.asarray(x, np.int64))

    def reference(self, node: Node, graph: Graph, inputs):
        y = graph.tensor(node.outputs[0])
        return [self._codes(node, graph, inputs[0]).astype(y.dtype).reshape(y.shape)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's Requantize between int8 and int16: MultiplyByQuantizedMultiplier("
                                           "x - Z_x, M0, e) + Z_y, clamped; the same in every scheme")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        a = node.attrs
        fields = {"count": x.size, "in_zero": a["in_zero"], "out_zero": a["out_zero"], "m0": a["m0"],
                  "left": max(a["e"], 0), "right": max(-a["e"], 0)}
        params = c.struct("qcc_requantize_params", f"{c.symbol(node.name)}_params", fields)
        return (f"qcc_requantize_{KERNEL_SUFFIX[x.dtype]}_{KERNEL_SUFFIX[y.dtype]}({params}, {c.tensor(x.name)}, "
                f"{c.tensor(y.name)});")
