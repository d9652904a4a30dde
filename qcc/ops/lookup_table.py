"""Lookup: an 8-bit elementwise op as a 256-entry table, and the ONNX ops that become one
(com.microsoft QLinearLeakyRelu and QLinearSigmoid).

ONNX Runtime runs these ops through a table too (contrib_ops/cpu/quantization/
qlinear_lookup_table.cc): for each input byte b, with x the code whose byte is b,

    table[b] = QuantizeLinear(f(f32(s_x * (x - z_x))), s_y, z_y)

and then y = table[byte of x] for every element. qcc computes the same 256 entries at compile
time, reproducing every float32 step exactly (qcc/numerics/float32_exact.py), and the C kernel
only indexes a const byte array in flash: no arithmetic at all at run time.

The IR op "Lookup" is generic, so other passes can create it (a float chain between a
DequantizeLinear and a QuantizeLinear maps each input code to one output code):
    node.params["table"]  uint8 array (channels, 256): row c holds the output codes' bytes of
                          channel c, indexed by the input code's byte;
    node.attrs["axis"]    None (one table, channels == 1) or the input axis the tables run along.
Build tables with qcc.numerics.quantize_linear.code_table and the node with `make_lookup_node`. Input and output may be
int8 or uint8 in any combination; a Relu/Clip after the node folds into the table.

TFLite: LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU and PRELU on int8 become the same node, each table entry
computed by emulating TFLM's integer kernel on that code (qcc/numerics/tflm_activations.py, which states
each formula and its TFLM file). That arithmetic is not ORT's float32 one:
- LOGISTIC and TANH are gemmlowp's fixed-point logistic and tanh on the input rescaled to Q4.27 (codes
  beyond TFLM's input radius go straight to -128 / 127); ORT's Sigmoid is MLAS's rational approximation
  in float32, and ORT has no 8-bit Tanh kernel. TFLM checks only LOGISTIC's output zero point (-128) and
  writes the codes of scale 1/256 whatever scale the model declares; TANH reads no output quantization
  and writes the codes of scale 1/128, zero point 0.
- HARD_SWISH runs in int16 fixed point (reference/hard_swish.h), ORT inlines HardSigmoid * x in float32.
- LEAKY_RELU and PRELU requantize each branch with TFLM's MultiplyByQuantizedMultiplier (two roundings,
  multipliers from float32 (LEAKY_RELU) or double (PRELU) scale ratios); ORT's QLinearLeakyRelu
  quantizes f32(alpha * x) and PRelu is a float island.
PRELU's alpha is a constant: one table per distinct alpha code, run along the channel axis (TFLite's
last dimension, wherever the IR holds it).
"""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.numerics.quantize_linear import code_table
from qcc.ops.qdq_group import check_integer_types
from qcc.ir import DTYPE_RANGE, QUANTIZED_DTYPES, Graph, Node
from qcc.numerics import float32_exact as fx
from qcc.access_order import AccessOrder, elementwise
from qcc.numerics import tflm_activations, tflm_int16
from qcc.ops.base import OnnxOp, Op, TfliteOp, attribute, register, require
from qcc.ops.explanation import KEEPS_ORT, Explanation
from qcc.ops.quantized import add_output, bind_quant, quantized_input, read_quant
from qcc.ops.tflite_import import add_lookup, require_int8, table_or_refuse

TABLE_ENTRIES = 256

# --- what ORT's float kernels compute, on float32 arrays --------------------------------------


def leaky_relu(x: np.ndarray, alpha) -> np.ndarray:
    """ORT's LeakyRelu (QLinearLeakyRelu's table, and the float op in an island): x >= 0 ? x : f32(alpha * x)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x >= 0, x, np.float32(alpha) * x)


# MLAS's logistic constants (core/mlas/lib/logistic.cpp, MlasLogisticConstants), as the C compiler
# rounds the decimal literals: straight to float32.
LOGISTIC_RANGE = fx.f32("18.0")
LOGISTIC_ALPHA = [fx.f32(s) for s in ("4.37031012579801e-11", "1.15627324459942e-07", "6.08574864600143e-05",
                                      "8.51377133304701e-03", "2.48287947061529e-01")]  # alpha_9 .. alpha_1
LOGISTIC_BETA = [fx.f32(s) for s in ("6.10247389755681e-13", "5.76102136993427e-09", "6.29106785017040e-06",
                                     "1.70198817374094e-03", "1.16817656904453e-01",
                                     "9.93151921023180e-01")]  # beta_10 .. beta_0


def mlas_logistic(v: float) -> float:
    """ORT's sigmoid on x86-64 with FMA3 (MlasLogisticKernelFma3, x86_64/LogisticKernelFma3.S), a
    rational approximation, not exp: clamp to [-18, 18]; p = x * (odd polynomial in x^2) and
    q = (even polynomial in x^2), each Horner step one fma; f32(p / q) + 0.5; clamp below at 0.
    That kernel has no upper clamp, so 1.0000001 comes out near x = 17.844 (the portable C
    kernel, used on ARM, clamps at 1 and rounds its multiply-adds twice: a different table)."""
    x = -LOGISTIC_RANGE if -LOGISTIC_RANGE > v else v  # vmaxps(lower, v): NaN passes through
    x = x if not LOGISTIC_RANGE < x else LOGISTIC_RANGE  # vminps(upper, x)
    x2 = fx.mul(x, x)
    a9, a7, a5, a3, a1 = LOGISTIC_ALPHA
    p = fx.fma(x2, a9, a7)
    for a in (a5, a3, a1):
        p = fx.fma(x2, p, a)
    p = fx.mul(x, p)
    b10, b8, b6, b4, b2, b0 = LOGISTIC_BETA
    q = fx.fma(x2, b10, b8)
    for b in (b6, b4, b2, b0):
        q = fx.fma(x2, q, b)
    y = fx.add(fx.div(p, q), 0.5)
    return y if not 0.0 > y else 0.0  # vmaxps(0, y)


# mlas_logistic on each element of a float32 array (the float32_exact steps take Python floats).
mlas_logistic_array = np.vectorize(lambda v: mlas_logistic(float(v)), otypes=[np.float32])


# --- the IR op --------------------------------------------------------------------------------


def make_lookup_node(name: str, x: str, y: str, table: np.ndarray, axis: int | None = None,
                     onnx_op: str = "Lookup") -> Node:
    """A Lookup node: y = table[c][byte of x] (c the index along `axis`, or 0 without one).
    The caller adds the output tensor y (8-bit, x's shape) to the graph."""
    table = np.asarray(table, dtype=np.uint8).reshape(-1, TABLE_ENTRIES)
    if axis is None and table.shape[0] != 1:
        raise ValueError(f"Lookup '{name}': {table.shape[0]} tables need an axis")
    return Node("Lookup", name, [x], [y], attrs={"axis": axis, "onnx_op": onnx_op}, params={"table": table})


def _channel_split(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    """(outer, channels, inner): the element at (o, c, i) has flat index (o * channels + c) * inner + i."""
    if axis is None:
        return 1, 1, int(np.prod(shape, dtype=np.int64))
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(shape[axis]),
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


@register
class Lookup(Op):
    name = "Lookup"
    onnx_ops = (OnnxOp("com.microsoft", "QLinearLeakyRelu"), OnnxOp("com.microsoft", "QLinearSigmoid"))
    summary = ("a 256-byte table per op (or per channel) built at compile time as ORT builds it "
               "(Sigmoid: MLAS's FMA3 rational approximation); a Relu/Clip after it folds into the table")
    runtime_sources = ("qcc_lookup.c",)
    runtime_header = "qcc_lookup.h"
    folds_clamp = True
    qdq_float_ops = (OnnxOp("", "LeakyRelu", 6), OnnxOp("", "Sigmoid", 6))
    island_float_ops = (OnnxOp("", "LeakyRelu", 6),)  # where ORT leaves it in float (a float neighbour)
    # Up to the version of each op's int16 kernel, so that an int16 model is refused by its type.
    tflite_ops = (TfliteOp("LOGISTIC", 1, 3), TfliteOp("TANH", 1, 3), TfliteOp("HARD_SWISH", 1, 1),
                  TfliteOp("LEAKY_RELU", 1, 2), TfliteOp("PRELU", 1, 1))

    def evaluate_float(self, node, inputs, opset):
        return leaky_relu(inputs[0], np.float32(attribute(node, "alpha", 0.01)))

    def from_qdq(self, group):
        x, y = group.quantized_input(0), group.quantized_output()
        check_integer_types(group, x, None, y)
        return [group.replacement(f"QLinear{group.node.op_type}", [*x, y[1], y[2]], domain="com.microsoft",
                                  **group.attributes())]

    def import_node(self, onnx_node, graph: Graph) -> Node:
        x = quantized_input(graph, onnx_node, 0, "input")
        require(len(onnx_node.input) >= 4 and onnx_node.input[3], graph, onnx_node, "the Y_scale input is missing")
        x_quant = read_quant(graph, onnx_node, 1, 2, "input")
        y_quant = read_quant(graph, onnx_node, 3, 4, "output")
        (s_x, z_x), (s_y, z_y) = x_quant.scalar(), y_quant.scalar()
        qmin, qmax = DTYPE_RANGE[x.dtype]
        require(qmin <= z_x <= qmax and qmin <= z_y <= qmax, graph, onnx_node,
                f"zero points must be {x.dtype} codes, got {z_x} and {z_y}")
        if onnx_node.op_type == "QLinearLeakyRelu":
            alpha = float(attribute(onnx_node, "alpha", 0.01))
            require(np.isfinite(alpha), graph, onnx_node, f"alpha must be finite, got {alpha}")
            f = lambda v: leaky_relu(v, alpha)  # noqa: E731
        else:
            f = mlas_logistic_array
        x_name = bind_quant(graph, onnx_node, 0, x_quant)
        y = add_output(graph, onnx_node, 0, x.dtype, x.shape, y_quant)
        table = code_table(x.dtype, s_x, z_x, f, x.dtype, s_y, z_y)
        return make_lookup_node(onnx_node.name or y, x_name, y, table, onnx_op=onnx_node.op_type)

    def import_tflite(self, operator, model) -> None:
        """TFLM's int8 LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU and PRELU as tables (see the module's docstring); int16
        LOGISTIC and TANH as TflmSigmoid16."""
        if operator.code in ("LOGISTIC", "TANH") and model.input_tensor(0, "input").dtype == "int16":
            TflmSigmoid16.import_int16(model, tanh=operator.code == "TANH")
            return
        require_int8(model)
        x_tensor = model.input_tensor(0, "input")
        (s_x, z_x), y_quant = model.quant(x_tensor).scalar(), model.quant(model.output_tensor(0))
        s_y, z_y = y_quant.scalar()
        code = operator.code
        if code == "LOGISTIC":
            model.require(z_y == -128, f"the output's zero point is {z_y}; TFLM's int8 LOGISTIC requires -128 (its "
                          "output scale is 1/256)")
            add_lookup(model, table_or_refuse(model, tflm_activations.logistic_table, s_x, z_x))
        elif code == "TANH":
            add_lookup(model, table_or_refuse(model, tflm_activations.tanh_table, s_x, z_x))
        elif code == "HARD_SWISH":
            add_lookup(model, table_or_refuse(model, tflm_activations.hard_swish_table, s_x, z_x, s_y, z_y))
        elif code == "LEAKY_RELU":
            alpha = np.float32(model.options.get("alpha", 0.0))
            model.require(np.isfinite(alpha), f"alpha {float(alpha)} must be finite")
            add_lookup(model, table_or_refuse(model, tflm_activations.leaky_relu_table, s_x, z_x, s_y, z_y, alpha))
        else:
            self._import_prelu(model, x_tensor, s_x, z_x, s_y, z_y)

    def _import_prelu(self, model, x_tensor, s_x, z_x, s_y, z_y) -> None:
        """PRELU's alpha must be a constant int8 tensor (TFLM reads it as int8 whatever its type) with one
        scale, broadcast to the input without enlarging it and varying only along the last dimension."""
        model.require(model.input_count() == 2, f"has {model.input_count()} inputs; PRELU takes the input and alpha")
        alpha = model.constant(1, "alpha")
        alpha_tensor = model.input_tensor(1, "alpha")
        model.require(alpha.dtype == np.int8, f"alpha is {alpha_tensor.dtype}; TFLM's int8 PRELU reads it as int8")
        s_a, z_a = model.quant(alpha_tensor).scalar()
        shape = tuple(x_tensor.shape)
        try:
            fits = np.broadcast_shapes(shape, alpha.shape) == shape
        except ValueError:
            fits = False
        model.require(fits, f"alpha's shape {list(alpha.shape)} does not broadcast to the input's {list(shape)}")
        channels = shape[-1] if shape else 1
        rows = np.broadcast_to(alpha, shape).reshape(-1, channels) if shape else alpha.reshape(1, 1)
        model.require(bool(np.all(rows == rows[:1])), f"alpha {list(alpha.shape)} varies along more than the last "
                      f"dimension of the input {list(shape)}; qcc's tables run along the channel dimension only")
        per_channel = rows[0]
        codes, index = np.unique(per_channel, return_inverse=True)
        tables = table_or_refuse(model, tflm_activations.prelu_tables, s_x, z_x, s_a, z_a, s_y, z_y, codes)
        if codes.size == 1:
            add_lookup(model, tables[0])
        else:
            add_lookup(model, tables[index.reshape(-1)], per_channel=True)

    def prepare(self, node: Node, graph: Graph) -> None:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        table = node.params["table"]
        axis = node.attrs.get("axis")
        where = f"{graph.source}: node '{node.name}' ({node.attrs.get('onnx_op', 'Lookup')})"
        if x.dtype not in QUANTIZED_DTYPES or y.dtype not in QUANTIZED_DTYPES or x.shape != y.shape:
            raise QccError(f"{where}: a lookup maps 8-bit codes elementwise; got {x.dtype}{list(x.shape)} -> "
                           f"{y.dtype}{list(y.shape)}")
        if axis is not None:
            if not -len(x.shape) <= axis < len(x.shape):
                raise QccError(f"{where}: axis {axis} is out of range for shape {list(x.shape)}")
            axis = node.attrs["axis"] = axis % len(x.shape)
        channels = 1 if axis is None else x.shape[axis]
        if table.dtype != np.uint8 or table.size != channels * TABLE_ENTRIES:
            raise QccError(f"{where}: expected {channels} uint8 table(s) of 256 entries, got {table.dtype} {table.shape}")
        table = node.params["table"] = table.reshape(channels, TABLE_ENTRIES)
        if x.size >= 2**31:
            raise QccError(f"{where}: {x.size} elements is beyond the kernel's int32 counts")
        if "clamp" in node.attrs:  # a folded Relu/Clip: clamp the table's output codes (idempotent)
            lo, hi = node.attrs["clamp"]
            codes = np.clip(table.view(y.dtype), lo, hi).astype(y.dtype)
            node.params["table"] = codes.view(np.uint8)

    def reference(self, node: Node, graph: Graph, inputs):
        (x,) = inputs
        table = node.params["table"]
        axis = node.attrs.get("axis")
        byte = np.ascontiguousarray(x).view(np.uint8)
        if axis is None:
            y = table[0][byte]
        else:
            shape = [1] * x.ndim
            shape[axis] = table.shape[0]
            channel = np.arange(table.shape[0]).reshape(shape)
            y = table[channel, byte]
        return [y.view(graph.tensor(node.outputs[0]).dtype)]

    def explain(self, node: Node, graph: Graph) -> Explanation:
        if graph.frontend == "tflite":
            return Explanation("table", "a 256-entry table per op (or per channel) computed at compile time by "
                                        "emulating TFLM's integer kernel on each code; a lookup at run time, no "
                                        "arithmetic, the same in every scheme")
        return Explanation("table", "a 256-entry table per op (or per channel) computed at compile time as ORT "
                                    "computes it; a lookup at run time, no arithmetic; " + KEEPS_ORT)

    def access_order(self, node: Node, graph: Graph) -> AccessOrder:
        size = graph.tensor(node.outputs[0]).size  # qcc_lookup_*: element i read, then written
        return AccessOrder({0: elementwise(size)}, elementwise(size))

    def emit(self, node: Node, graph: Graph, c) -> str:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        prefix = c.symbol(node.name)
        table = node.params["table"]
        tables = c.const_array(f"{prefix}_table", "uint8_t", table.reshape(-1))
        x_bytes, y_bytes = c.tensor(x.name, "uint8"), c.tensor(y.name, "uint8")
        if node.attrs.get("axis") is None:
            return f"qcc_lookup_8bit({tables}, {x_bytes}, {y_bytes}, {x.size});"
        outer, channels, inner = _channel_split(x.shape, node.attrs["axis"])
        fields = {"outer": outer, "channels": channels, "inner": inner, "tables": tables}
        params = c.struct("qcc_lookup_params", f"{prefix}_params", fields)
        return f"qcc_lookup_channels_8bit({params}, {x_bytes}, {y_bytes});"


@register
class LookupOnLoad(Lookup):
    """A Lookup its reader applies as it loads each code, so the table's output is never stored: a model's
    uint8 input image requantized to int8 (TFLite's QUANTIZE, the converter's inference_input_type; tf2onnx's
    DequantizeLinear -> QuantizeLinear) and read by one-group convolutions through a ChannelsFirstView
    (qcc/passes/input_layout.py). qcc_conv_gemm's
    im2col maps each byte of the input through the table (qcc_conv_params.in_table). The reference computes
    the table's output as Lookup does; the C has no code and no bytes for it (it shares the input's storage)."""
    name = "LookupOnLoad"
    summary = "a table its convolution applies as it loads each input code: no code, no copy"
    aliases_input = True
    folds_clamp = False
    runtime_sources = ()
    runtime_header = None
    onnx_ops = qdq_float_ops = island_float_ops = tflite_ops = ()  # made by a pass from a Lookup, never imported

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("table", "a 256-entry table computed at compile time as the runtime computes each code "
                                    "(TFLM's Requantize, or ORT's float32 DequantizeLinear -> QuantizeLinear), applied "
                                    "by the next convolution as it loads each input code; the same in every scheme")

    def access_order(self, node: Node, graph: Graph) -> AccessOrder | None:
        return None

    def emit(self, node: Node, graph: Graph, c) -> str:
        return "/* the input's codes mapped through a table by the next convolution as it loads them (in_table) */"

    def stored_value(self, node: Node, graph: Graph, index: int, data: bytes) -> np.ndarray:
        """The bytes are the input's: mapped through the table they are the output's value."""
        y = graph.tensor(node.outputs[0])
        return node.params["table"][0][np.frombuffer(data, dtype=np.uint8)].view(y.dtype).reshape(y.shape)


def load_table(graph: Graph, view: str) -> np.ndarray | None:
    """The table (256 output-code bytes) a convolution applies as it loads the channels-last bytes under `view`,
    or None: where the view's source is a LookupOnLoad's output."""
    producer = graph.producer(view)
    source = graph.producer(producer.inputs[0]) if producer is not None else None
    return source.params["table"][0] if source is not None and source.op == LookupOnLoad.name else None


@register
class TflmSigmoid16(Op):
    """TFLite's LOGISTIC and TANH on int16 (16x8 models): TFLM's interpolation in its 256-entry sigmoid table
    (qcc/numerics/tflm_int16.py), in C (runtime_c/qcc_s16.c) with the table in flash; zero points 0, the output's
    scale 2^-15, as TFLM requires."""
    runtime_sources = ("qcc_s16.c",)
    runtime_header = "qcc_s16.h"
    name = "TflmSigmoid16"
    summary = "TFLM's int16 LOGISTIC and TANH: interpolation in its table of sigmoid(i / 24)"

    @staticmethod
    def import_int16(model, tanh: bool) -> None:
        layout = model.layout_of(0)
        x = model.activation(0, layout, dtypes=("int16",))
        out = model.output_tensor(0)
        y_quant = model.quant(out)
        model.require(out.dtype == "int16" and x.quant.scalar()[1] == 0 and int(y_quant.zero_point) == 0,
                      f"int16 -> {out.dtype} with zero points {x.quant.scalar()[1]} and {int(y_quant.zero_point)}; TFLM's "
                      "int16 kernel takes int16 -> int16 with zero points 0")
        try:
            multiplier, shift = tflm_int16.sigmoid_scaling(x.quant.scalar()[0], y_quant.scale, tanh)
        except ValueError as error:
            model.refuse(str(error))
        y = model.output(0, x.shape, layout, dtypes=("int16",))
        model.add_node(TflmSigmoid16.name, [x.name], [y], {"tanh": tanh, "multiplier": multiplier, "shift": shift})

    def reference(self, node: Node, graph: Graph, inputs):
        a = node.attrs
        return [tflm_int16.sigmoid_int16(inputs[0], a["multiplier"], a["shift"], a["tanh"])]

    def access_order(self, node: Node, graph: Graph) -> AccessOrder:
        size = graph.tensor(node.outputs[0]).size
        return AccessOrder({0: elementwise(size)}, elementwise(size))

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", f"TFLM's int16 {'TANH' if node.attrs['tanh'] else 'LOGISTIC'}: the code "
                                           "rescaled to 1/(3 * 4096), then a linear interpolation in TFLM's table of "
                                           "sigmoid(i / 24); the same in every scheme")

    def emit(self, node: Node, graph: Graph, c) -> str:
        a = node.attrs
        multiplier, shift = (3 << a["shift"], 0) if a["multiplier"] == 0 else (a["multiplier"], a["shift"])
        fields = {"count": graph.tensor(node.inputs[0]).size, "multiplier": multiplier, "shift": shift,
                  "rounding": 1 << (shift - 1) if shift > 0 else 0, "tanh": int(a["tanh"]),
                  "table": c.const_array(f"{c.symbol(node.name)}_sigmoid_table", "uint16_t",
                                         tflm_int16.SIGMOID_TABLE_UINT16)}
        params = c.struct("qcc_sigmoid16_params", f"{c.symbol(node.name)}_params", fields)
        return f"qcc_sigmoid_s16({params}, {c.tensor(node.inputs[0])}, {c.tensor(node.outputs[0])});"
