"""TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM in TFLM's integer form: int8 input, output and hidden state, int16 cell
state and gates (the arithmetic: qcc/numerics/tflm_lstm.py; the C: runtime_c/qcc_lstm.c).

What qcc compiles: the LSTM without peepholes, projection or layer normalisation, with an input gate (no CIFG),
per-tensor int8 weights, int32 biases, batch-major or time-major, any cell clip; the cell gate's activation TANH
(the only one TFLM applies that the schema can express: its other values leave TFLM's gate unactivated, an
assertion its release build skips). Every other variant is refused by name. The hidden and cell states are the operator's variable tensors:
TFLM keeps them from one inference to the next (zero-point filled at start and by Reset()), and so does qcc, as
two StateVariables (qcc/ir.py) that the kernel updates in place, step by step.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, StateVariable, Tensor
from qcc.numerics import tflm_int16, tflm_lstm
from qcc.ops.base import Op, TfliteOp, register
from qcc.ops.explanation import Explanation
from qcc.ops.quantized import sxtb16_tap_order
from qcc.ops.state import fill_byte

# TFLite's input positions (lstm_shared.h): weights per gate, recurrent weights, biases, states
INPUT_WEIGHTS = {"input": 1, "forget": 2, "cell": 3, "output": 4}
RECURRENT_WEIGHTS = {"input": 5, "forget": 6, "cell": 7, "output": 8}
BIASES = {"input": 12, "forget": 13, "cell": 14, "output": 15}
PEEPHOLES, PROJECTION, LAYER_NORMS = (9, 10, 11), (16, 17), (20, 21, 22, 23)
HIDDEN_STATE, CELL_STATE = 18, 19
TANH = 4  # ActivationFunctionType TANH


@register
class TflmLstm(Op):
    runtime_sources = ("qcc_lstm.c", "qcc_s16.c")
    runtime_header = "qcc_lstm.h"
    name = "TflmLstm"
    tflite_ops = (TfliteOp("UNIDIRECTIONAL_SEQUENCE_LSTM", 1, 1),)
    summary = ("TFLM's integer LSTM (int8 in and out, int16 cell state and gates); its hidden and cell states kept "
               "between inferences, updated in place")
    # outputs 1 and 2 (the states after the sequence) may be written over inputs 1 and 2 (the states before it):
    # the kernel reads each step's state before it writes the step's new one
    state_in_place = {1: 1, 2: 2}

    def import_tflite(self, operator, model) -> None:
        model.require(model.input_count() == 24, f"has {model.input_count()} inputs; TFLM's LSTM takes 24")
        for what, positions in (("peephole", PEEPHOLES), ("projection", PROJECTION), ("layer normalisation", LAYER_NORMS)):
            model.require(not any(model.has_input(k) for k in positions), f"has {what} weights; qcc compiles the LSTM "
                          "without peepholes, projection and layer normalisation")
        model.require(model.has_input(INPUT_WEIGHTS["input"]) and model.has_input(RECURRENT_WEIGHTS["input"]),
                      "has no input gate (CIFG); qcc compiles the LSTM with its input gate")
        activation = int(model.options.get("fused_activation_function", 0))
        model.require(activation == TANH, f"the cell gate's activation is {activation}; qcc compiles TFLM's integer "
                      "LSTM with TANH (TFLM leaves the gate unactivated for the schema's other values)")
        model.require(not model.options.get("diagonal_recurrent_tensors") and not model.options.get(
            "asymmetric_quantize_inputs"), "has diagonal recurrent weights or hybrid quantization, which qcc does not "
            "compile")
        x = model.activation(0, "tflite")
        model.require(len(x.shape) == 3, f"the input must be 3-D (batch, time, features), got {list(x.shape)}")
        time_major = bool(model.options.get("time_major", False))
        steps, batch = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
        features = x.shape[2]
        hidden, cell = (self._state(model, k, dtype) for k, dtype in ((HIDDEN_STATE, "int8"), (CELL_STATE, "int16")))
        state_size = hidden.shape[-1]
        for what, tensor in (("hidden", hidden), ("cell", cell)):
            model.require(tensor.shape == (batch, state_size), f"the {what} state is {list(tensor.shape)}; it must be "
                          f"[{batch}, {state_size}] (batch, units)")
        weights, recurrent, biases, w_scales, r_scales = [], [], [], [], []
        for gate in tflm_lstm.GATES:
            for table, cols, out, scales in ((INPUT_WEIGHTS, features, weights, w_scales),
                                             (RECURRENT_WEIGHTS, state_size, recurrent, r_scales)):
                w = model.constant(table[gate], f"{gate} weights")
                w_tensor = model.input_tensor(table[gate], f"{gate} weights")
                model.require(w.dtype == np.int8 and w.shape == (state_size, cols), f"the {gate} gate's weights must "
                              f"be int8 [{state_size}, {cols}], got {w.dtype} {list(w.shape)}")
                quant = model.quant(w_tensor)  # refuses per-axis scales: TFLM's LSTM takes one per tensor
                model.require(int(quant.zero_point) == 0, f"the {gate} gate's weights have zero point "
                              f"{int(quant.zero_point)}; TFLM's LSTM assumes 0")
                out.append(w)
                scales.append(float(quant.scale))
            bias = model.bias(BIASES[gate], state_size) if model.has_input(BIASES[gate]) else None
            biases.append(bias)
        y_tensor = model.output_tensor(0)
        model.require(y_tensor.dtype == "int8", f"the output is {y_tensor.dtype}; qcc compiles TFLM's int8 LSTM")
        y_quant = model.quant(y_tensor)
        model.require(np.float32(y_quant.scale) == np.float32(hidden.quant.scale) and int(y_quant.zero_point) == int(
            hidden.quant.zero_point), "the output's scale and zero point differ from the hidden state's; TFLM copies "
            "the hidden state's codes to the output")
        (s_x, z_x), (s_h, z_h), (s_c, z_c) = x.quant.scalar(), hidden.quant.scalar(), cell.quant.scalar()
        model.require(z_c == 0, f"the cell state's zero point is {z_c}; TFLM's LSTM takes 0")
        model.require(tflm_int16.checked_log2(s_c)[1], f"the cell state's scale {float(s_c):g} is no power of two; "
                      "TFLM's LSTM reads it as one")
        try:
            params = tflm_lstm.prepare(s_x, z_x, s_h, z_h, s_c, weights, recurrent, biases, w_scales, r_scales,
                                       float(model.options.get("cell_clip", 0.0)))
        except ValueError as error:
            model.refuse(str(error))
        y = model.output(0, x.shape[:2] + (state_size,), "tflite")
        h_next, c_next = (self._next(model, state) for state in (hidden, cell))
        node = model.add_node(self.name, [x.name, hidden.name, cell.name], [y, h_next, c_next],
                              {"time_major": time_major, "steps": steps, "batch": batch})
        node.params["lstm"] = params
        for state, written in ((hidden, h_next), (cell, c_next)):
            variable = next(v for v in model.graph.states if v.name == state.name)
            variable.written = f"{state.name}__next"
            model.graph.tensors[variable.written] = Tensor(variable.written, state.dtype, state.shape, None, state.quant)
            model.graph.nodes.append(Node("AssignState", model.node_name(f"{state.name}__assign"), [written],
                                          [variable.written], attrs={"onnx_op": "the LSTM's state",
                                                                     "variable": variable.label}))

    @staticmethod
    def _state(model, position: int, dtype: str) -> Tensor:
        """The IR tensor of a state the LSTM keeps in a TFLite variable tensor, as a StateVariable: zero-point
        filled before the first inference and by a reset (TFLM's ResetVariableTensors), whatever the buffer holds."""
        tensor = model.input_tensor(position, "state")
        model.require(tensor.is_variable and tensor.dtype == dtype, f"the {'hidden' if dtype == 'int8' else 'cell'} "
                      f"state '{model.names[tensor.index]}' must be a variable {dtype} tensor, got "
                      f"{'a variable' if tensor.is_variable else 'a non-variable'} {tensor.dtype} tensor")
        model.require((tensor.index, "tflite") not in model.ir, f"the state '{model.names[tensor.index]}' is read by "
                      "another operator too; qcc keeps an LSTM's state for that LSTM alone")
        name = model.names[tensor.index]
        quant = model.quant(tensor)
        model.graph.tensors[name] = Tensor(name, dtype, tuple(int(d) for d in tensor.shape), None, quant)
        model.ir[(tensor.index, "tflite")] = name
        fill = fill_byte(tensor) if dtype == "int8" else 0  # TFLM fills int8 variables with their zero point, others 0
        model.graph.states.append(StateVariable(name, None, fill, None, name))
        return model.graph.tensors[name]

    @staticmethod
    def _next(model, state: Tensor) -> str:
        return model.intermediate(f"{state.name}_after", state.shape, state.quant, state.dtype)

    def reference(self, node: Node, graph: Graph, inputs):
        x, h, c = inputs
        return list(tflm_lstm.run(node.params["lstm"], x, h, c, node.attrs["time_major"]))

    def macs(self, node: Node, graph: Graph) -> int:
        p = node.params["lstm"]
        return node.attrs["steps"] * node.attrs["batch"] * (p.input_weights.size + p.recurrent_weights.size)

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("tflm_integer", "TFLM's integer LSTM step by step: each gate's two int8 matrix products "
                                           "requantized to Q3.12 and added with saturation, TFLM's int16 LOGISTIC/TANH, "
                                           "the cell state updated by int16 multiplications (MultiplyByQuantizedMultiplier)"
                                           ", the hidden state requantized to int8; the same in every scheme")

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        _, units, features = node.params["lstm"].input_weights.shape
        # four gates' int16 values, their recurrent halves, and the step's input and hidden state as int16
        return 2 * (8 * units + _round4(features) + _round4(units))

    def emit(self, node: Node, graph: Graph, c) -> str:
        p: tflm_lstm.LstmParams = node.params["lstm"]
        prefix = c.symbol(node.name)
        x = graph.tensor(node.inputs[0])
        _, state_size, features = p.input_weights.shape
        fields = {
            "batch": node.attrs["batch"], "steps": node.attrs["steps"], "features": features, "units": state_size,
            "time_major": int(node.attrs["time_major"]),
            "input_weights": c.const_array(f"{prefix}_input_weights", "int8_t", _taps(p.input_weights)),
            "recurrent_weights": c.const_array(f"{prefix}_recurrent_weights", "int8_t", _taps(p.recurrent_weights)),
            "input_acc_const": c.const_array(f"{prefix}_input_acc_const", "int32_t", p.input_acc_const),
            "recurrent_acc_const": c.const_array(f"{prefix}_recurrent_acc_const", "int32_t", p.recurrent_acc_const),
            "input_m0": [m for m, _ in p.input_scaling], "input_e": [e for _, e in p.input_scaling],
            "recurrent_m0": [m for m, _ in p.recurrent_scaling], "recurrent_e": [e for _, e in p.recurrent_scaling],
            "forget_m0": p.forget_mul[0], "forget_e": p.forget_mul[1], "input_m0_mul": p.input_mul[0],
            "input_e_mul": p.input_mul[1], "hidden_m0": p.hidden_mul[0], "hidden_e": p.hidden_mul[1],
            "hidden_zero": p.hidden_zero, "cell_clip": p.cell_clip,
            "cell_tanh_multiplier": p.cell_tanh[0], "cell_tanh_shift": p.cell_tanh[1],
            "sigmoid_table": c.const_array(f"{prefix}_sigmoid_table", "uint16_t", tflm_int16.SIGMOID_TABLE_UINT16),
        }
        params = c.struct("qcc_lstm_params", f"{prefix}_params", fields)
        h, cell = node.inputs[1], node.inputs[2]
        h_next, c_next = node.outputs[1], node.outputs[2]
        copies = []
        for old, new in ((h, h_next), (cell, c_next)):  # the kernel works on the new state's bytes
            if c.plan.storage[old] != c.plan.storage[new]:
                copies.append(f"memcpy({c.tensor(new)}, {c.tensor(old)}, {graph.tensor(old).nbytes}u);")
        call = (f"qcc_lstm_s8({params}, {c.tensor(x.name)}, {c.tensor(h_next)}, {c.tensor(c_next)}, "
                f"{c.tensor(node.outputs[0])}, {c.scratch(node)});")
        return "\n    ".join(copies + [call])


def _round4(n: int) -> int:
    return -(-n // 4) * 4


def _taps(weights: np.ndarray) -> np.ndarray:
    """[4][units][k] int8 -> [4][units][k rounded up to 4] in the SMLAD order (quantized.sxtb16_tap_order)."""
    gates, units, k = weights.shape
    return sxtb16_tap_order(weights.reshape(gates * units, k), _round4(k)).reshape(-1)
