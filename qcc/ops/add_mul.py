"""com.microsoft QLinearAdd and QLinearMul: elementwise with numpy-style broadcasting.

ONNX Runtime computes both in float32 (qcc/numerics/ort_add_mul.py states the formulas and the
operand roles of QLinearAdd); the C kernels (runtime_c/qcc_add_mul.c) reproduce every rounding
with integers. Either input may be a constant initializer.

Under the `tflm` rounding scheme both follow TensorFlow Lite Micro's integer kernels instead
(tensorflow/lite/micro/kernels/add_common.cc, mul_common.cc and reference/integer_ops/add.h, mul.h),
for uint8 as for int8; the C is runtime_c/qcc_add_mul.c's qcc_add_tflm_* / qcc_mul_tflm_*:
  ADD: twice_max = 2 max(sA, sB) (double); (MA, eA), (MB, eB) = QuantizeMultiplierSmallerThanOneExp of
       sA / twice_max, sB / twice_max; (MC, eC) = the same of twice_max / (2^20 sC);
       a' = MBQMSTOE((a - zA) * 2^20, MA, eA), b' likewise; y = MBQMSTOE(a' + b', MC, eC) + zC, clamped;
       MBQMSTOE(x, M, e) = RDBPOT(SRDHM(x, M), -e) (qcc/numerics/tflm.py).
  MUL: (M0, e) = QuantizeMultiplier(sA sB / sC) (double); y = zC + MultiplyByQuantizedMultiplier(
       (a - zA)(b - zB), M0, e), clamped (qcc's tflm requantize: saturates where TFLM's left shift wraps).

TFLite's SUB is TflmSub, ADD's TFLM kernel with the second input's scaled value subtracted (sub_common.cc,
reference/sub.h): y = MBQMSTOE(a' - b', MC, eC) + zC, clamped, the same three (M0, e) pairs as ADD in
double (the pinned wheel computes them in double; the source tree of 2026-08 divides in float, which
gives other multipliers for most scale pairs and other codes for some inputs). In every scheme it
runs TFLM's integer kernel: ONNX has no QLinearSub whose float32 arithmetic the other schemes could keep.
"""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.ops.qdq_group import check_integer_types
from qcc.ir import C_TYPES, CODE_RANGE, KERNEL_SUFFIX, Graph, Node
from qcc.numerics import ort_add_mul as ort
from qcc.numerics import tflm
from qcc.numerics.quantize_linear import codes_in_byte_order
from qcc.access_order import AccessOrder, elementwise
from qcc.ops.base import OnnxOp, Op, TfliteOp, register, require
from qcc.ops.explanation import Explanation
from qcc.ops.quantized import add_output, quantized_input, read_quant
from qcc.ops.tflite_import import fused_clamp

MAX_RANK = 8  # QCC_BROADCAST_MAX_RANK in runtime_c/qcc_add_mul.h
TFLM_ADD_LEFT_SHIFT = 20  # TFLM's left_shift for 8-bit ADD (QCC_TFLM_ADD_LEFT_SHIFT in qcc_add_mul.h)
TFLM_ADD16_LEFT_SHIFT = 15  # and for int16 (add_common.cc)


def broadcast_layout(out_shape, x_shape, y_shape) -> tuple[list[int], list[int], list[int]]:
    """Output dims and element strides of x and y (0 = broadcast), with dims of size 1 dropped
    and neighbours merged wherever both inputs step through them contiguously."""
    rank = len(out_shape)

    def strides(shape):
        shape = [1] * (rank - len(shape)) + list(shape)
        result, step = [0] * rank, 1
        for i in reversed(range(rank)):
            result[i] = step if shape[i] != 1 else 0
            step *= shape[i]
        return result

    dims, xs, ys = [], [], []
    for d, a, b in zip(out_shape, strides(x_shape), strides(y_shape)):
        if d == 1:
            continue
        if dims and xs[-1] == a * d and ys[-1] == b * d:
            dims[-1], xs[-1], ys[-1] = dims[-1] * d, a, b
        else:
            dims.append(d)
            xs.append(a)
            ys.append(b)
    return (dims, xs, ys) if dims else ([1], [0], [0])


def code_bytes(codes: np.ndarray) -> np.ndarray:
    """The bytes of int8 or uint8 codes."""
    return (np.asarray(codes, np.int64) & 0xFF).astype(np.uint8)


def hex_u64(value: int) -> str:
    return f"0x{value & 0xFFFFFFFFFFFFFFFF:016X}u"


class _Binary(Op):
    runtime_sources = ("qcc_add_mul.c",)
    runtime_header = "qcc_add_mul.h"

    def from_qdq(self, group):
        """ORT's BinarySelector: both inputs from a DequantizeLinear (a constant one included), one
        QuantizeLinear, all three of the same 8-bit type; scales and zero points may all differ."""
        a, b, y = group.quantized_input(0), group.quantized_input(1), group.quantized_output()
        check_integer_types(group, a, None, y)
        check_integer_types(group, b, None, y)
        return [group.replacement(self.name, [*a, *b, y[1], y[2]], domain="com.microsoft")]
    folds_clamp = True
    onnx_type = ""

    def import_node(self, onnx_node, graph: Graph) -> Node:
        a = quantized_input(graph, onnx_node, 0, "A input")
        b = quantized_input(graph, onnx_node, 3, "B input")
        require(a.dtype == b.dtype, graph, onnx_node, f"A is {a.dtype} but B is {b.dtype}; ONNX Runtime needs one type")
        quants = [read_quant(graph, onnx_node, 1, 2, "A"), read_quant(graph, onnx_node, 4, 5, "B"),
                  read_quant(graph, onnx_node, 6, 7, "output")]
        try:
            out_shape = tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            require(False, graph, onnx_node, f"shapes {a.shape} and {b.shape} do not broadcast")
        require(int(np.prod(out_shape)) > 0, graph, onnx_node, f"the output {out_shape} is empty")
        _, xs, _ = broadcast_layout(out_shape, a.shape, b.shape)
        require(len(xs) <= MAX_RANK, graph, onnx_node,
                f"broadcasting {a.shape} with {b.shape} needs {len(xs)} loop levels; qcc supports {MAX_RANK}")
        for tensor, quant in zip((a, b), quants):
            if tensor.quant is None:
                tensor.quant = quant
        y = add_output(graph, onnx_node, 0, a.dtype, out_shape, quants[2])
        (s_a, z_a), (s_b, z_b), (s_c, z_c) = (q.scalar() for q in quants)
        return Node(self.name, onnx_node.name or y, [a.name, b.name], [y], attrs={
            "onnx_op": self.onnx_type, "a_scale": s_a, "a_zero": z_a, "b_scale": s_b, "b_zero": z_b,
            "c_scale": s_c, "c_zero": z_c,
        })

    def import_tflite(self, operator, model) -> None:
        """TFLite's ADD / MUL on int8 with numpy broadcasting over TFLite's shapes. Two inputs of one 4-D shape
        are taken in whichever layout either already has (the elementwise result does not depend on it);
        anything broadcast is taken in TFLite's own layout, where its broadcasting is defined. Computed in
        the tflm scheme's arithmetic, which is TFLM's integer kernel (see the module's docstring)."""
        shapes = [model.input_tensor(i, "input").shape for i in range(2)]
        same_images = len(shapes[0]) == 4 and shapes[0] == shapes[1]
        existing = [model.layout_of(i) for i in range(2) if not model.is_constant(i)]
        layout = "nchw" if same_images and "nchw" in existing else "tflite"
        # 16x8 models: TFLM's ADD, SUB and MUL on int16 (left_shift 15; MUL with zero points 0)
        dtypes = ("int8", "int16") if self.sixteen_bit else ("int8",)
        a, b = model.activation(0, layout, "first input", dtypes), model.activation(1, layout, "second input", dtypes)
        model.require(a.dtype == b.dtype, f"the inputs are {a.dtype} and {b.dtype}; TFLM's kernel takes one type")
        if a.dtype == "int16" and self.name == "QLinearMul":
            model.require(a.quant.scalar()[1] == 0 and b.quant.scalar()[1] == 0
                          and model.quant(model.output_tensor(0)).scalar()[1] == 0,
                          "an int16 zero point is not 0; TFLM's int16 MUL requires 0 for both inputs and the output")
        try:
            out_shape = tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            model.refuse(f"the inputs' shapes {list(shapes[0])} and {list(shapes[1])} do not broadcast")
        _, xs, _ = broadcast_layout(out_shape, a.shape, b.shape)
        model.require(len(xs) <= MAX_RANK, f"broadcasting {list(a.shape)} with {list(b.shape)} needs {len(xs)} loop "
                      f"levels; qcc supports {MAX_RANK}")
        y = model.output(0, out_shape, layout, dtypes=(a.dtype,))
        (s_a, z_a), (s_b, z_b), (s_c, z_c) = (t.quant.scalar() for t in (a, b, model.graph.tensor(y)))
        node = model.add_node(self.name, [a.name, b.name], [y], {
            "a_scale": s_a, "a_zero": z_a, "b_scale": s_b, "b_zero": z_b, "c_scale": s_c, "c_zero": z_c})
        node.attrs["clamp"] = fused_clamp(model, model.graph.tensor(y).quant, a.dtype)

    def _fail(self, node: Node, graph: Graph, message: str):
        raise QccError(f"{graph.source}: node '{node.name}' ({self.onnx_type}): {message}")

    def _clamp(self, node: Node, graph: Graph) -> tuple[int, int, int, int]:
        """(qmin, qmax) of the output type and the output clamp (lo, hi) with any folded Relu/Clip."""
        qmin, qmax = CODE_RANGE[graph.tensor(node.outputs[0]).dtype]
        lo, hi = node.attrs.get("clamp", (qmin, qmax))
        return qmin, qmax, max(lo, qmin), min(hi, qmax)

    def _finish(self, node: Node, graph: Graph, codes: np.ndarray) -> np.ndarray:
        _, _, lo, hi = self._clamp(node, graph)
        out = graph.tensor(node.outputs[0])
        return np.clip(codes, lo, hi).astype(out.dtype).reshape(out.shape)

    def access_order(self, node: Node, graph: Graph) -> AccessOrder:
        """The kernels walk the output's rows in order, reading element i of an input of the output's
        shape just before writing element i (a broadcast input is read again and again: never in place)."""
        y = graph.tensor(node.outputs[0])
        full = {i: elementwise(y.size) for i, name in enumerate(node.inputs)
                if graph.tensor(name).shape == y.shape and not graph.tensor(name).is_const}
        return AccessOrder(full, elementwise(y.size))

    def macs(self, node: Node, graph: Graph) -> int:
        return graph.tensor(node.outputs[0]).size

    sixteen_bit = False  # TFLite's int16 form compiled (ADD and MUL)

    @staticmethod
    def _runs_tflm(node: Node, graph: Graph) -> bool:
        """TFLM's integer kernel: in the tflm scheme, and for int16 codes in every scheme (ORT has no int16 form)."""
        return graph.rounding == "tflm" or graph.tensor(node.outputs[0]).dtype == "int16"

    def prepare(self, node: Node, graph: Graph) -> None:
        if self._runs_tflm(node, graph):  # TFLM's integer kernel, with its own parameters
            node.params["tflm"] = self.tflm_params(node, graph)
        else:  # ORT's float32 arithmetic, in the ort and single schemes
            self._prepare_ort(node, graph)

    def _explanation(self, node: Node, note: str) -> Explanation:
        # prepare stored TFLM's parameters: the tflm scheme runs TFLM's integer kernel, not ORT's float32
        return Explanation("tflm_integer" if "tflm" in node.params else "ort_arithmetic", note)

    def _shape_field(self, node: Node, graph: Graph, x: str, y: str) -> dict:
        """The fields of the qcc_broadcast_params nested in every add/mul parameter struct."""
        dims, xs, ys = broadcast_layout(graph.tensor(node.outputs[0]).shape, graph.tensor(x).shape, graph.tensor(y).shape)
        pad = [0] * (MAX_RANK - len(dims))
        row = lambda values: list(values) + pad  # noqa: E731
        return {"rank": len(dims), "dims": row(dims), "x_strides": row(xs), "y_strides": row(ys)}

    def _typed_operand(self, c, symbol: str, graph: Graph, name: str) -> str:
        """A pointer to an operand as its own type (int8_t or uint8_t): its storage, or a const array."""
        tensor = graph.tensor(name)
        if tensor.is_const:
            return c.const_array(symbol, C_TYPES[tensor.dtype], np.asarray(tensor.data).reshape(-1))
        return c.tensor(name)

    def _emit_tflm(self, node: Node, graph: Graph, c, kernel: str, ctype: str, fields: dict) -> str:
        prefix = c.symbol(node.name)
        a = self._typed_operand(c, f"{prefix}_a", graph, node.inputs[0])
        b = self._typed_operand(c, f"{prefix}_b", graph, node.inputs[1])
        _, _, lo, hi = self._clamp(node, graph)
        shape = self._shape_field(node, graph, node.inputs[0], node.inputs[1])
        params = c.struct(ctype, f"{prefix}_params", {"shape": shape, **fields, "lo": lo, "hi": hi})
        suffix = KERNEL_SUFFIX[graph.tensor(node.outputs[0]).dtype]
        return f"{kernel}_{suffix}({params}, {a}, {b}, {c.tensor(node.outputs[0])});"

    def _operand(self, c, symbol: str, graph: Graph, name: str, values: np.ndarray | None = None) -> str:
        """A uint8 pointer to an operand's bytes: its storage, or a const array for an initializer."""
        tensor = graph.tensor(name)
        if tensor.is_const or values is not None:
            data = code_bytes(tensor.data) if values is None else values
            return c.const_array(symbol, "uint8_t", np.ascontiguousarray(data).reshape(-1))
        return c.tensor(name, as_dtype="uint8")


@register
class QLinearAdd(_Binary):
    name = "QLinearAdd"
    onnx_type = "QLinearAdd"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearAdd"),)
    qdq_float_ops = (OnnxOp("", "Add", 7),)  # Add-6 and before: a broadcast attribute
    island_float_ops = qdq_float_ops  # beside a float operand ORT adds in float
    tflite_ops = (TfliteOp("ADD", 1, 5),)
    sixteen_bit = True
    summary = "elementwise sum, any broadcast shapes, either input constant"
    b_sign = 1  # how TFLM's kernel combines the inputs' scaled values: a' + b_sign * b' (TflmSub: -1)

    def evaluate_float(self, node, inputs, opset):
        return np.add(inputs[0], inputs[1])

    def _roles(self, node: Node, graph: Graph):
        """((name, scale, zero point) of X, the same of Y): ORT's roles for this node's shapes."""
        a, b = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        at = node.attrs
        sides = [(a.name, at["a_scale"], at["a_zero"]), (b.name, at["b_scale"], at["b_zero"])]
        swap = ort.add_swaps_operands(a.shape, b.shape)
        return (sides[1], sides[0]) if swap else (sides[0], sides[1])

    def _ratios(self, node: Node, graph: Graph):
        (_, s_x, z_x), (_, s_y, z_y) = self._roles(node, graph)
        r_x, r_y = ort.add_ratios(s_x, s_y, node.attrs["c_scale"])
        if not (np.isfinite(r_x) and np.isfinite(r_y)):
            self._fail(node, graph, f"a scale ratio over the output scale overflows float32 ({r_x}, {r_y})")
        try:
            fixed = ort.add_fixed_part(r_x, z_x, r_y, z_y, node.attrs["c_zero"])
        except OverflowError:
            self._fail(node, graph, "the zero-point term overflows float32")
        return r_x, r_y, fixed

    def tflm_params(self, node: Node, graph: Graph) -> dict:
        """TFLM's CalculateOpDataAdd for 8-bit tensors: the three (multiplier, shift) pairs, whatever the
        graph's scheme (benchmarks/bench_cmsis_nn.py passes them to CMSIS-NN's arm_elementwise_add_s8)."""
        at = node.attrs
        s_a, s_b, s_c = float(at["a_scale"]), float(at["b_scale"]), float(at["c_scale"])
        twice_max = 2 * max(s_a, s_b)
        left_shift = self._left_shift(node, graph)
        reals = {"a": s_a / twice_max, "b": s_b / twice_max, "c": twice_max / ((1 << left_shift) * s_c)}
        params = {}
        for side, real in reals.items():
            try:
                params[f"{side}_mult"], params[f"{side}_shift"] = tflm.quantize_multiplier_smaller_than_one(real)
            except ValueError:
                op = "SUB" if self.b_sign < 0 else "ADD"
                advice = "; TFLM refuses the model" if self.b_sign < 0 else "; use another rounding scheme"
                self._fail(node, graph, f"TFLM's {op} needs 2 max(sA, sB) / (2^{left_shift} sC) < 1, got {reals['c']:g} "
                                        f"(the output scale is too small for the input scales){advice}")
        return params

    def _tflm_scaled_input(self, node: Node, graph: Graph, side: str, codes) -> np.ndarray:
        """TFLM's AddFunc for one input: MBQMSTOE((code - Z) * 2^20, M, e), for each code."""
        p = self.tflm_params(node, graph)
        shifted = (np.asarray(codes, np.int64) - node.attrs[f"{side}_zero"]) * 2**self._left_shift(node, graph)
        return tflm.multiply_by_quantized_multiplier_smaller_than_one(shifted, p[f"{side}_mult"], p[f"{side}_shift"])

    @staticmethod
    def _left_shift(node: Node, graph: Graph) -> int:
        return TFLM_ADD16_LEFT_SHIFT if graph.tensor(node.outputs[0]).dtype == "int16" else TFLM_ADD_LEFT_SHIFT

    def _reference_tflm(self, node: Node, graph: Graph, a, b) -> np.ndarray:
        """TFLM's AddFunc (reference/integer_ops/add.h), on every element at once; SUB's subtracts b'."""
        at, p = node.attrs, self.tflm_params(node, graph)
        summed = self._tflm_scaled_input(node, graph, "a", a) + self.b_sign * self._tflm_scaled_input(node, graph, "b", b)
        return tflm.multiply_by_quantized_multiplier_smaller_than_one(summed, p["c_mult"], p["c_shift"]) + at["c_zero"]

    def reference(self, node: Node, graph: Graph, inputs):
        a, b = inputs
        if self._runs_tflm(node, graph):
            return [self._finish(node, graph, self._reference_tflm(node, graph, a, b))]
        qmin, qmax, _, _ = self._clamp(node, graph)
        (x_name, _, _), _ = self._roles(node, graph)
        x, y = (a, b) if x_name == node.inputs[0] else (b, a)
        r_x, r_y, fixed = self._ratios(node, graph)
        return [self._finish(node, graph, ort.qlinear_add(x, y, r_x, r_y, fixed, qmin, qmax))]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return self._explanation(node, "under ort and single, ORT's float32 arithmetic (rX = f32(sX/sC), fma of the "
                                 "scaled codes, qcc/numerics/ort_add_mul.py), every float32 rounding reproduced with "
                                 "integers in C; under tflm, TensorFlow Lite Micro's integer ADD: each (x - Z) * 2^20 "
                                 "scaled by sX / (2 max(sA, sB)), the sum by 2 max(sA, sB) / (2^20 sC), each step "
                                 "RDBPOT(SRDHM(v, M0), -e) with QuantizeMultiplierSmallerThanOneExp's M0 and e "
                                 "(qcc/ops/add_mul.py)")

    def _prepare_ort(self, node: Node, graph: Graph) -> None:
        (x_name, _, _), (y_name, _, _) = self._roles(node, graph)
        r_x, r_y, fixed = self._ratios(node, graph)
        y = graph.tensor(y_name)
        _, _, lo, hi = self._clamp(node, graph)
        if y.is_const:  # a table of the codes Y holds only; y becomes an index into it
            codes, index = np.unique(np.asarray(y.data, np.int64), return_inverse=True)
            y_index = index.astype(np.uint8).reshape(y.shape)
        else:  # all 256 codes, in the order of their bytes
            codes, y_index = np.arange(256, dtype=np.int64), None
            if y.dtype == "int8":
                codes = np.where(codes >= 128, codes - 256, codes)
        try:
            plan = ort.plan_add(r_x, r_y, fixed, y.dtype, codes, lo, hi)
        except ort.OutsideEnvelope as exc:
            self._fail(node, graph, f"scale ratios sX/sC = {r_x:g} and sY/sC = {r_y:g} are too far apart or too large "
                                    f"for qcc's exact 64-bit form ({exc}); ONNX Runtime's result would be mostly saturated")
        node.params.update(x=x_name, y=y_name, plan=plan, y_index=y_index)

    def emit(self, node: Node, graph: Graph, c) -> str:
        p = node.params
        if "tflm" in p and graph.tensor(node.outputs[0]).dtype == "int16":  # the inputs scaled in C, no tables
            at, t = node.attrs, p["tflm"]
            fields = {"a_zero": at["a_zero"], "b_zero": at["b_zero"], "c_zero": at["c_zero"], "a_mult": t["a_mult"],
                      "a_shift": t["a_shift"], "b_mult": t["b_mult"], "b_shift": t["b_shift"], "c_mult": t["c_mult"],
                      "c_shift": t["c_shift"], "b_sign": self.b_sign}
            return self._emit_tflm(node, graph, c, "qcc_add_tflm", "qcc_add_tflm16_params", fields)
        if "tflm" in p:
            at, t = node.attrs, p["tflm"]
            prefix = c.symbol(node.name)
            # each input's scaling depends on its code alone: a table of the 256 codes, in byte order
            # (SUB: b's table negated, so that the kernel's sum is a' - b')
            tables = {f"{side}_scaled": c.const_array(f"{prefix}_{side}_scaled", "int32_t", (sign * self._tflm_scaled_input(
                node, graph, side, codes_in_byte_order(graph.tensor(name).dtype))).astype(np.int32))
                for side, name, sign in zip("ab", node.inputs, (1, self.b_sign))}
            fields = {**tables, "c_zero": at["c_zero"], "c_mult": t["c_mult"], "c_shift": t["c_shift"]}
            return self._emit_tflm(node, graph, c, "qcc_add_tflm", "qcc_add_tflm_params", fields)
        plan: ort.AddPlan = p["plan"]
        prefix = c.symbol(node.name)
        x = self._operand(c, f"{prefix}_x", graph, p["x"])
        y = self._operand(c, f"{prefix}_y", graph, p["y"], p["y_index"])
        words = np.stack([plan.table & np.uint64(0xFFFFFFFF), plan.table >> np.uint64(32)], axis=1).astype(np.uint32)
        table = c.const_array(f"{prefix}_table", "uint32_t", words.reshape(-1))
        fields = {"shape": self._shape_field(node, graph, p["x"], p["y"]), "table": table, "x_mult": hex_u64(plan.x_mult),
                  "x_flip": f"0x{plan.x_flip:X}u", "fine_shift": plan.fine_shift, "lo": f"0x{plan.lo:08X}u",
                  "hi": f"0x{plan.hi:08X}u"}
        params = c.struct("qcc_qlinear_add_params", f"{prefix}_params", fields)
        out = c.tensor(node.outputs[0], as_dtype="uint8")
        return f"qcc_qlinear_add_8bit({params}, {x}, {y}, {out});"


@register
class TflmSub(QLinearAdd):
    """TFLite's SUB on int8 (and int16): TFLM's ADD kernel with b' subtracted (the module's docstring), in every
    scheme."""
    name = "TflmSub"
    onnx_type = "SUB"
    onnx_ops = qdq_float_ops = island_float_ops = ()
    tflite_ops = (TfliteOp("SUB", 1, 5),)  # 2: int8; 3-5: int16 and broadcasting over 5-D (the kernel is one)
    sixteen_bit = True
    summary = "TFLM's integer SUB: ADD's kernel with the second input's scaled value subtracted"
    b_sign = -1

    def prepare(self, node: Node, graph: Graph) -> None:
        node.params["tflm"] = self.tflm_params(node, graph)

    def reference(self, node: Node, graph: Graph, inputs):
        return [self._finish(node, graph, self._reference_tflm(node, graph, *inputs))]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TensorFlow Lite Micro's integer SUB in every scheme: each (x - Z) * 2^20 "
                           "(2^15 for int16) "
                           "scaled by sX / (2 max(sA, sB)), b's scaled value subtracted from a's, the difference "
                           "scaled by 2 max(sA, sB) / (2^20 sC), each step RDBPOT(SRDHM(v, M0), -e) "
                           "(qcc/ops/add_mul.py)")


@register
class QLinearMul(_Binary):
    name = "QLinearMul"
    onnx_type = "QLinearMul"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearMul"),)
    qdq_float_ops = (OnnxOp("", "Mul", 7),)
    island_float_ops = qdq_float_ops  # beside a float operand ORT multiplies in float
    tflite_ops = (TfliteOp("MUL", 1, 7),)
    sixteen_bit = True
    summary = "elementwise product, any broadcast shapes, either input constant"

    def evaluate_float(self, node, inputs, opset):
        return np.multiply(inputs[0], inputs[1])

    def _ratio(self, node: Node, graph: Graph):
        at = node.attrs
        r = ort.mul_ratio(at["a_scale"], at["b_scale"], at["c_scale"])
        if not np.isfinite(r):
            self._fail(node, graph, f"s_A * s_B / s_C = {r} overflows float32")
        return r

    def tflm_params(self, node: Node, graph: Graph) -> dict:
        """TFLM's CalculateOpDataMul: QuantizeMultiplier of sA sB / sC in double."""
        at = node.attrs
        real = float(at["a_scale"]) * float(at["b_scale"]) / float(at["c_scale"])
        mult, shift = tflm.quantize_multiplier(real)
        if shift > 31:
            self._fail(node, graph, f"s_A * s_B / s_C = {real:g} is 2^31 or more; TFLM's MUL cannot shift by it")
        return {"mult": mult, "shift": shift}

    def _reference_tflm(self, node: Node, graph: Graph, a, b) -> np.ndarray:
        """TFLM's MulElementwise (reference/integer_ops/mul.h), on every element at once."""
        at, p = node.attrs, self.tflm_params(node, graph)
        prod = (np.asarray(a, np.int64) - at["a_zero"]) * (np.asarray(b, np.int64) - at["b_zero"])
        return at["c_zero"] + tflm.requantize(prod, p["mult"], p["shift"], tflm.INT32_MIN, tflm.INT32_MAX).astype(np.int64)

    def reference(self, node: Node, graph: Graph, inputs):
        a, b = inputs
        if self._runs_tflm(node, graph):
            return [self._finish(node, graph, self._reference_tflm(node, graph, a, b))]
        at = node.attrs
        qmin, qmax, _, _ = self._clamp(node, graph)
        codes = ort.qlinear_mul(a, b, at["a_zero"], at["b_zero"], self._ratio(node, graph), at["c_zero"], qmin, qmax)
        return [self._finish(node, graph, codes)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return self._explanation(node, "under ort and single, ORT's float32 arithmetic (f32(f32(p) * r) + Z_c, "
                                 "qcc/numerics/ort_add_mul.py), every float32 rounding reproduced with integers in C; "
                                 "under tflm, TensorFlow Lite Micro's integer MUL: Z_c + MultiplyByQuantizedMultiplier("
                                 "(a - Z_a)(b - Z_b), M0, e) with QuantizeMultiplier(sA sB / sC) (qcc/ops/add_mul.py)")

    def _prepare_ort(self, node: Node, graph: Graph) -> None:
        at = node.attrs
        _, _, lo, hi = self._clamp(node, graph)
        dtype = graph.tensor(node.outputs[0]).dtype
        node.params["plan"] = ort.plan_mul(self._ratio(node, graph), at["a_zero"], at["b_zero"], at["c_zero"], dtype, lo, hi)

    def emit(self, node: Node, graph: Graph, c) -> str:
        if "tflm" in node.params:
            at, t = node.attrs, node.params["tflm"]
            fields = {"a_zero": at["a_zero"], "b_zero": at["b_zero"], "c_zero": at["c_zero"], "mult": t["mult"],
                      "shift": t["shift"]}
            return self._emit_tflm(node, graph, c, "qcc_mul_tflm", "qcc_mul_tflm_params", fields)
        plan: ort.MulPlan = node.params["plan"]
        prefix = c.symbol(node.name)
        a = self._operand(c, f"{prefix}_a", graph, node.inputs[0])
        b = self._operand(c, f"{prefix}_b", graph, node.inputs[1])
        fields = {"shape": self._shape_field(node, graph, node.inputs[0], node.inputs[1]), "flip": f"0x{plan.flip:X}u",
                  "a_zero": plan.a_zero, "b_zero": plan.b_zero, "r_mult": f"0x{plan.r_mult:X}u", "r_shift": plan.r_shift,
                  "c_offset": hex_u64(plan.c_offset), "overflow_at": hex_u64(plan.overflow_at),
                  "lo": f"0x{plan.lo:08X}u", "hi": f"0x{plan.hi:08X}u"}
        params = c.struct("qcc_qlinear_mul_params", f"{prefix}_params", fields)
        out = c.tensor(node.outputs[0], as_dtype="uint8")
        return f"qcc_qlinear_mul_8bit({params}, {a}, {b}, {out});"
