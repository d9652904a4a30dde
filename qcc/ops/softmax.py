"""com.microsoft QLinearSoftmax: softmax over the codes of one axis, through an exp table.

What ORT 1.32 computes (contrib_ops/cpu/quantization/qlinear_softmax.cc, QlinearSoftmaxCPU; read
in the x86-64 binary, since the public sources differ in the last step):

- A table of 256 float32 values, built once in double precision (D = the reduced length):
      bit_shift = max(0, double(logf(FLT_MAX / float(D))) - 5) / s_x
      t[i]      = f32(exp((i - 255 + bit_shift) * s_x))          i = 0 .. 255
  Entry i is exp for an input code that lies i - 255 below the row's maximum (int8 uses the same
  values, stored rotated by 128). The shift keeps the row sum below FLT_MAX / e^5; z_x is unused.
  qcc builds the table the same way with the C library's exp (Python's math.exp) and logf.
- Per row: m = max(x); t_j = t[x_j - m + 255]; s = t_0 + t_1 + ... summed in float32 one element
  after another (scalar addss, in index order); Y = floor(f32(1 / s_y)) (a float32 integer);
      q_j = nearbyint(double(t_j) * Y / double(s))   in double precision
      y_j = saturate(q_j + z_y)
  t_j * Y is exact in double and the quotient cannot round onto or across a half (Y < 2^24), so
  q_j is the exact rational t_j * Y / s rounded half to even.
- Axis: opset < 13 flattens the input to 2-D at `axis` (D = product of the dimensions from axis
  on); opset >= 13 reduces the single dimension `axis` (ORT transposes it last). A missing axis
  is -1 whatever the opset: the schema's default reaches the kernel, not the kernel's fallback
  of 1 before opset 13. The `opset` attribute is required (ORT refuses a node without it).

The C (runtime_c/qcc_softmax.c) holds the table as exact integers, each float32 as its 24-bit
significand m and biased exponent E (value m * 2^(E - 150), E = 0 for 0.0), adds them with the
float32 round-half-to-even rule in integers, and rounds t * Y / s exactly with a per-row
reciprocal and one exact correction: no float anywhere, equal to ORT on every value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

from qcc.ops.qdq_group import check_integer_types
from qcc.ir import DTYPE_RANGE, Graph, Node
from qcc.numerics import tflm, tflm_int16
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, register, require
from qcc.ops.explanation import KEEPS_ORT, Explanation
from qcc.ops.quantized import add_output, bind_quant, quantized_input, read_quant

FLT_MAX = np.finfo(np.float32).max
MAX_Y = 2**24  # Y = floor(1 / s_y) must stay below this (s_y > 2^-24): the C's 64-bit bounds rely on it


def _c_logf():
    """The C library's logf, which ORT calls (its float32 result differs from f32(log(double)) for
    a few reduced lengths above 60000); f32(log) where no C math library can be loaded."""
    name = ctypes.util.find_library("m") or ctypes.util.find_library("c")
    try:
        logf = ctypes.CDLL(name).logf
    except (OSError, AttributeError, TypeError):
        return lambda v: np.float32(math.log(float(v)))
    logf.restype, logf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda v: np.float32(logf(float(v)))


_logf = _c_logf()


def exp_table(s_x: np.float32, reduce_len: int) -> np.ndarray:
    """ORT's QlinearBuildLookupTableUint32: 256 float32, entry i for a code i - 255 below the row max."""
    s_x = float(np.float32(s_x))
    log_range = float(_logf(FLT_MAX / np.float32(reduce_len)))  # float division, then logf
    bit_shift = max(0.0, log_range - 5.0) / s_x
    return np.array([np.float32(math.exp((i - 255.0 + bit_shift) * s_x)) for i in range(256)], dtype=np.float32)


def y_factor(s_y: np.float32) -> int:
    """ORT's Y_scale = std::floor(1.0F / y_scale): a float32 division, then floor."""
    with np.errstate(divide="ignore", over="ignore"):
        y = np.floor(np.float32(1.0) / np.float32(s_y))
    return int(y) if np.isfinite(y) else MAX_Y


def packed_table(table: np.ndarray) -> np.ndarray:
    """Each float32 as the integer (E << 24) | m, value m * 2^(E - 150): E the biased exponent (1 for
    subnormals, whose m lacks the implicit bit; 0 only for 0.0), m the 24-bit significand."""
    bits = np.asarray(table, dtype=np.float32).view(np.uint32).astype(np.int64)
    field, fraction = bits >> 23, bits & 0x7FFFFF
    m = np.where(field > 0, fraction | (1 << 23), fraction)
    e = np.where(field > 0, field, np.where(fraction > 0, 1, 0))
    return (e * 2**24 + m).astype(np.uint32)


@register
class QLinearSoftmax(Op):
    name = "QLinearSoftmax"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearSoftmax"),)
    summary = ("softmax along an axis, opset < 13 (2-D coercion) and >= 13 semantics; ORT's exp table, "
               "float32 row sum and double rounding reproduced in integers; a Relu/Clip after it folds into its clamp")
    runtime_sources = ("qcc_softmax.c",)
    runtime_header = "qcc_softmax.h"
    # Softmax before 13 coerces its input to 2-D at axis; from 13 it reduces one axis.
    qdq_float_ops = (OnnxOp("", "Softmax", 1, 12), OnnxOp("", "Softmax", 13))

    def from_qdq(self, group):
        """ORT fuses DQ -> Softmax -> Q into QLinearSoftmax with opset = Softmax's since-version and the
        Softmax's axis (default 1 before opset 13, -1 from it)."""
        x, y = group.quantized_input(0), group.quantized_output()
        check_integer_types(group, x, None, y)
        since = 13 if group.opset >= 13 else 11 if group.opset >= 11 else 1
        axis = group.attributes().get("axis", -1 if since == 13 else 1)
        return [group.replacement("QLinearSoftmax", [*x, y[1], y[2]], domain="com.microsoft", opset=since, axis=axis)]
    folds_clamp = True

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        rank = len(x.shape)
        require(rank >= 1, graph, onnx_node, "the input must have at least one dimension")
        opset = attribute(onnx_node, "opset")
        require(opset is not None, graph, onnx_node, "the 'opset' attribute is missing (ONNX Runtime requires it)")
        opset = int(opset)
        axis = int(attribute(onnx_node, "axis", -1))  # ORT's schema default, for every opset
        require(-rank <= axis < rank, graph, onnx_node, f"axis {axis} is out of range for shape {list(x.shape)}")
        axis %= rank
        require(len(onnx_node.input) >= 4 and onnx_node.input[3], graph, onnx_node, "the y_scale input is missing")
        x_quant = read_quant(graph, onnx_node, 1, 2, "input")
        y_quant = read_quant(graph, onnx_node, 3, 4, "output")
        s_y, z_y = y_quant.scalar()
        qmin, qmax = DTYPE_RANGE[x.dtype]
        require(qmin <= z_y <= qmax, graph, onnx_node, f"the output zero point {z_y} is not a {x.dtype} code")
        require(y_factor(s_y) < MAX_Y, graph, onnx_node,
                f"y_scale {float(s_y):g} is below 2^-24 (1/y_scale too large); use a larger output scale")
        outer = int(np.prod(x.shape[:axis], dtype=np.int64))
        if opset < 13:  # ORT coerces to 2-D: one softmax over all dimensions from axis on
            depth, inner = int(np.prod(x.shape[axis:], dtype=np.int64)), 1
        else:
            depth, inner = int(x.shape[axis]), int(np.prod(x.shape[axis + 1:], dtype=np.int64))
        require(0 < x.size < 2**31, graph, onnx_node, f"{x.size} elements is outside the kernel's int32 counts")
        x_name = bind_quant(graph, onnx_node, 0, x_quant)
        y = add_output(graph, onnx_node, 0, x.dtype, x.shape, y_quant)
        return Node(self.name, onnx_node.name or y, [x_name], [y],
                    attrs={"axis": axis, "opset": opset, "outer": outer, "depth": depth, "inner": inner})

    def prepare(self, node: Node, graph: Graph) -> None:
        s_x, _ = graph.tensor(node.inputs[0]).quant.scalar()
        y = graph.tensor(node.outputs[0])
        s_y, _ = y.quant.scalar()
        qmin, qmax = DTYPE_RANGE[y.dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        node.params["table"] = exp_table(s_x, node.attrs["depth"])
        node.params["y_factor"] = y_factor(s_y)
        node.params["lo"], node.params["hi"] = max(lo, qmin), min(hi, qmax)

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        y = graph.tensor(node.outputs[0])
        _, z_y = y.quant.scalar()
        a, p = node.attrs, node.params
        codes = x.astype(np.int64).reshape(a["outer"], a["depth"], a["inner"])  # rows along axis 1
        t = p["table"][codes - codes.max(axis=1, keepdims=True) + 255]
        s = np.cumsum(t, axis=1, dtype=np.float32)[:, -1:, :]  # float32, one element after another
        q = np.rint(t.astype(np.float64) * float(p["y_factor"]) / s.astype(np.float64))  # double, half to even
        q = np.minimum(np.maximum(q + z_y, p["lo"]), p["hi"])
        return [q.astype(y.dtype).reshape(y.shape)]

    def macs(self, node: Node, graph: Graph) -> int:
        return graph.tensor(node.inputs[0]).size

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("ort_arithmetic", "ORT's exp table, float32 row sum and double rounding, reproduced with "
                                             "integers; " + KEEPS_ORT)

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        _, z_y = y.quant.scalar()
        prefix = c.symbol(node.name)
        a, p = node.attrs, node.params
        table = c.const_array(f"{prefix}_exp", "uint32_t", packed_table(p["table"]))
        fields = {"outer": a["outer"], "depth": a["depth"], "inner": a["inner"], "exp_table": table,
                  "y_factor": f"{p['y_factor']}u", "zero": z_y, "lo": p["lo"], "hi": p["hi"]}
        params = c.struct("qcc_softmax_params", f"{prefix}_params", fields)
        suffix = "s8" if x.dtype == "int8" else "u8"
        return f"qcc_softmax_{suffix}({params}, {c.tensor(x.name)}, {c.tensor(y.name)});"


# TFLM's int8 SOFTMAX (tensorflow/lite/kernels/internal/reference/softmax.h, softmax_common.cc).
SCALED_DIFF_INTEGER_BITS = 5  # the exp's input is Q5.26
ACCUMULATION_INTEGER_BITS = 12  # the row sum is Q12.19


def tflm_softmax_tables(s_x: np.float32, beta: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """TFLM's per-difference values, for each d = 0..255 (a code d below the row's maximum):
    exp[d] = exp_on_negative_values(SRDHM(-d * 2^left_shift, M)) in Q0.31 and sum[d] = exp[d] rescaled to
    Q12.19 (RDBPOT by 12), both 0 where -d < diff_min (TFLM skips those elements: they add nothing and
    output the lowest code). M and left_shift: PreprocessSoftmaxScaling(beta, s_x, 5), in double."""
    multiplier, left_shift, diff_min = tflm.softmax_scaling(s_x, beta, SCALED_DIFF_INTEGER_BITS)
    exp = np.zeros(256, np.int64)
    for d in range(256):
        if -d >= diff_min:
            rescaled = int(tflm.saturating_rounding_doubling_high_mul(-d * 2**left_shift, multiplier))
            exp[d] = tflm.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
    total = np.array([tflm.rounding_divide_by_pot(int(e), ACCUMULATION_INTEGER_BITS) for e in exp])
    return exp, total, {"multiplier": multiplier, "left_shift": left_shift, "diff_min": diff_min}


@register
class TflmSoftmax(Op):
    """TFLite's SOFTMAX on int8 as TFLM computes it: per row (the last axis), each code's difference d from
    the row's maximum indexes two compile-time tables (gemmlowp's fixed-point exp of d scaled by
    beta * s_x, and the same rescaled for the sum); the row's sum of the second goes through TFLM's
    fixed-point reciprocal (GetReciprocal: Newton-Raphson in Q2.29), and each output is
    RDBPOT(SRDHM(reciprocal, exp[d]), bits + 23) - 128. The output's scale is 1/256 and zero point
    -128, as TFLM requires. ONNX Runtime's QLinearSoftmax is another arithmetic (float32 tables)."""
    runtime_sources = ("qcc_softmax.c",)
    runtime_header = "qcc_softmax.h"
    name = "TflmSoftmax"
    tflite_ops = (TfliteOp("SOFTMAX", 1, 3),)
    summary = "TFLM's int8 softmax: gemmlowp's fixed-point exp (a table by difference from the row max) and reciprocal"

    def import_tflite(self, operator, model) -> None:
        x = model.activation(0, "tflite", dtypes=("int8", "int16"))
        if x.dtype == "int16":
            TflmSoftmax16.import_int16(model, x)
            return
        out = model.output_tensor(0)
        model.require(out.dtype == "int8", f"the output is {out.dtype}; qcc compiles TFLM's int8 -> int8 softmax")
        y_quant = model.quant(out)
        model.require(float(y_quant.scale) == 1.0 / 256 and int(y_quant.zero_point) == -128,
                      f"the output's scale {float(y_quant.scale):g} and zero point {int(y_quant.zero_point)} must be "
                      "1/256 and -128 (TFLM refuses others)")
        depth = x.shape[-1] if x.shape else 1
        model.require(depth < 256, f"a row has {depth} values; TFLM's int8 softmax aborts where a row's sum of "
                      "exponentials reaches 2^27 (possible from 256 values on), so qcc refuses such rows")
        beta = float(model.options.get("beta", 1.0))
        model.require(beta > 0 and math.isfinite(beta), f"beta {beta} must be positive and finite")
        _, left_shift, _ = tflm.softmax_scaling(x.quant.scalar()[0], beta, SCALED_DIFF_INTEGER_BITS)
        model.require(left_shift >= 0, f"beta * s_x = {beta * float(x.quant.scalar()[0]):g} is below 2^-26, "
                      "where TFLM's multiplier is undefined")
        y = model.output(0, x.shape, "tflite")
        model.add_node(self.name, [x.name], [y], {"beta": beta})

    def prepare(self, node: Node, graph: Graph) -> None:
        exp, total, facts = tflm_softmax_tables(graph.tensor(node.inputs[0]).quant.scalar()[0], node.attrs["beta"])
        node.params.update(exp=exp, sum=total, **facts)

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        exp, total = node.params["exp"], node.params["sum"]
        rows = x.reshape(-1, x.shape[-1] if x.ndim else 1).astype(np.int64)
        out = np.empty(rows.shape, np.int64)
        for r, row in enumerate(rows):
            d = row.max() - row
            scale, bits = tflm.reciprocal(int(total[d].sum()), ACCUMULATION_INTEGER_BITS)
            products = tflm.saturating_rounding_doubling_high_mul(np.int64(scale), exp[d])
            out[r] = tflm.rounding_divide_by_pot(products, bits + 31 - 8) - 128
        return [np.clip(out, -128, 127).astype(np.int8).reshape(x.shape)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's fixed-point softmax: exp of each code's difference from the row "
                                           "maximum from a compile-time table (gemmlowp's exp_on_negative_values), the "
                                           "row sum's reciprocal in Q0.31 (GetReciprocal), each output "
                                           "RDBPOT(SRDHM(reciprocal, exp), bits + 23) - 128")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x = graph.tensor(node.inputs[0])
        prefix = c.symbol(node.name)
        depth = x.shape[-1] if x.shape else 1
        fields = {"rows": x.size // depth, "depth": depth,
                  "exp_table": c.const_array(f"{prefix}_exp", "int32_t", node.params["exp"].astype(np.int32)),
                  "sum_table": c.const_array(f"{prefix}_sum", "int32_t", node.params["sum"].astype(np.int32))}
        params = c.struct("qcc_softmax_tflm_params", f"{prefix}_params", fields)
        return f"qcc_softmax_tflm_s8({params}, {c.tensor(x.name)}, {c.tensor(node.outputs[0])});"


@register
class TflmSoftmax16(Op):
    """TFLite's SOFTMAX on int16 (16x8 models) as TFLM computes it: interpolated int16 tables of exp and
    1 / (1 + x) (qcc/numerics/tflm_int16.py states the arithmetic), computed at compile time into flash where
    TFLM builds them in its arena at start-up. Input and output zero points 0, the output's scale 1/32768."""
    runtime_sources = ("qcc_softmax.c",)
    runtime_header = "qcc_softmax.h"
    name = "TflmSoftmax16"
    summary = "TFLM's int16 softmax: interpolated exp and reciprocal tables (LUTPopulate) computed at compile time"
    MAX_DEPTH = 65536  # the row's int32 sum of int16 exponentials (each at most 32767) cannot overflow below it

    @staticmethod
    def import_int16(model, x) -> None:
        out = model.output_tensor(0)
        model.require(out.dtype == "int16", f"the input is int16 but the output is {out.dtype}; qcc compiles TFLM's "
                      "int16 -> int16 softmax")
        y_quant = model.quant(out)
        model.require(x.quant.scalar()[1] == 0 and int(y_quant.zero_point) == 0,
                      "an int16 zero point is not 0; TFLM's int16 softmax requires 0 for the input and the output")
        model.require(abs(float(y_quant.scale) - 1 / 32768) <= 0.001 / 32768, f"the output's scale "
                      f"{float(y_quant.scale):g} must be 1/32768 (TFLM refuses others)")
        depth = x.shape[-1] if x.shape else 1
        model.require(depth < TflmSoftmax16.MAX_DEPTH, f"a row has {depth} values; the int32 sum of its int16 "
                      "exponentials could overflow")
        beta = float(model.options.get("beta", 1.0))
        try:
            tflm_int16.softmax_multiplier(x.quant.scalar()[0], beta)
        except ValueError as error:
            model.refuse(str(error))
        y = model.output(0, x.shape, "tflite", dtypes=("int16",))
        model.add_node(TflmSoftmax16.name, [x.name], [y], {"beta": beta})

    def prepare(self, node: Node, graph: Graph) -> None:
        m0, e = tflm_int16.softmax_multiplier(graph.tensor(node.inputs[0]).quant.scalar()[0], node.attrs["beta"])
        exp_lut, reciprocal_lut = tflm_int16.softmax_luts()
        node.params.update(m0=m0, e=e, exp_lut=exp_lut, reciprocal_lut=reciprocal_lut)

    def reference(self, node: Node, graph: Graph, inputs):
        p = node.params
        return [tflm_int16.softmax_int16(inputs[0], p["m0"], p["e"], p["exp_lut"], p["reciprocal_lut"])]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's int16 softmax: each code's difference from the row maximum "
                                           "scaled by MultiplyByQuantizedMultiplier, exp from an interpolated 513-entry "
                                           "table, the row sum's reciprocal from another (LUTPopulate, computed at "
                                           "compile time), each output (exp * r) >> (31 - clz(sum)) rounded")

    def emit(self, node: Node, graph: Graph, c) -> str:
        x = graph.tensor(node.inputs[0])
        p = node.params
        depth = x.shape[-1] if x.shape else 1
        prefix = c.symbol(node.name)  # (a second softmax shares the tables: const_array keeps one of equal arrays)
        fields = {"rows": x.size // depth, "depth": depth, "m0": p["m0"], "left": max(p["e"], 0),
                  "right": max(-p["e"], 0),
                  "exp_lut": c.const_array(f"{prefix}_exp_lut", "int16_t", p["exp_lut"]),
                  "reciprocal_lut": c.const_array(f"{prefix}_reciprocal_lut", "int16_t", p["reciprocal_lut"])}
        params = c.struct("qcc_softmax_tflm16_params", f"{prefix}_params", fields)
        return f"qcc_softmax_tflm_s16({params}, {c.tensor(x.name)}, {c.tensor(node.outputs[0])});"
