"""State that persists from one inference to the next: TFLite's resource variables (VAR_HANDLE,
READ_VARIABLE, ASSIGN_VARIABLE), initialised by CALL_ONCE, as the streaming layers of Keras export them.

What the pinned TFLM does (micro_resource_variable.cc; kernels/var_handle.cc, read_variable.cc,
assign_variable.cc, call_once.cc):
- A variable is named by its (container, shared_name); VAR_HANDLE gives its id, in any subgraph.
- Its bytes are allocated when the first ASSIGN_VARIABLE that names it is prepared (subgraph 0's
  operators first, then the other subgraphs') and set to that ASSIGN's value's zero point, cast to
  int8, in every byte (memset): what a READ sees before anything is assigned.
- READ_VARIABLE copies the bytes out, ASSIGN_VARIABLE copies bytes in (sizes must agree).
- CALL_ONCE runs its initialisation subgraph at the first Invoke() only. Reset() sets every variable
  back to its zero-point byte and does not run CALL_ONCE again.

What qcc compiles: each variable becomes a StateVariable (qcc/ir.py), bytes in a static buffer of
their own. READ_VARIABLE's output is the variable's tensor itself (no copy: nothing writes those
bytes until every reader has run); ASSIGN_VARIABLE is an AssignState node that copies its value in,
and it runs after every other node, so every read of the inference sees the value the inference
started with, as in the model, where each variable is read before it is assigned (checked). An
initialisation subgraph must assign constants: qcc evaluates it at compile time, and the C applies
its values as its first inference starts (NAME_reset() then behaves as TFLM's Reset()).
"""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.ir import Graph, Node, StateVariable, Tensor
from qcc.ops.base import Op, TfliteOp, register
from qcc.ops.explanation import Explanation
from qcc.ops.tflite_import import NCHW, TFLITE, TO_NCHW, in_layout

VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def variable_key(options: dict) -> str:
    """How TFLM tells variables apart: container and shared name (decoded; never trusted in C)."""
    def text(value) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    container, shared = text(options.get("container")), text(options.get("shared_name"))
    return f"{container}/{shared}" if container else shared


def fill_byte(tensor) -> int:
    """The byte TFLM fills a variable with before anything assigns it: the zero point of the value its
    first ASSIGN_VARIABLE writes, cast to int8 (0 without quantization)."""
    q = tensor.quant
    return int(np.int64(q.zero_point[0]).astype(np.int8).view(np.uint8)) if q is not None else 0


@register
class AssignState(Op):
    name = "AssignState"
    tflite_ops = tuple(TfliteOp(code, 1, 1) for code in (*VARIABLE_OPS, "CALL_ONCE"))
    summary = ("state kept between inferences: read in place, assigned after its last read (by its producer, in place, "
               "where it can); CALL_ONCE's constant initialisation")
    runs_last = True  # after every reader of the state it writes
    runtime_sources = ("qcc_lookup.c",)  # --state pairs quantized differently: a table
    runtime_header = "qcc_lookup.h"

    def import_tflite(self, operator, model) -> None:
        getattr(self, "_" + operator.code.lower())(operator, model)

    # --- TFLite ---

    def _var_handle(self, operator, model) -> None:
        model.resources[operator.outputs[0]] = variable_key(operator.options)

    def _variable(self, operator, model) -> str:
        model.require(model.has_input(0) and operator.inputs[0] in model.resources,
                      "its resource input comes from no VAR_HANDLE before it")
        key = model.resources[operator.inputs[0]]
        model.require(key not in model.assigned, f"uses variable '{key}' after an ASSIGN_VARIABLE of it; qcc runs "
                      "models that read each variable before they assign it once")
        return key

    def _read_variable(self, operator, model) -> None:
        key = self._variable(operator, model)
        out = model.output_tensor(0)
        layout = state_layout(out.shape)
        state = model.variables.get(key)
        if state is None:
            name = model.output(0, layout_shape(out.shape, layout), layout)
            state = model.variables[key] = StateVariable(name, None, 0, None, key)
            model.graph.states.append(state)
            return
        existing = model.graph.tensor(state.name)
        model.require((out.dtype, layout_shape(out.shape, layout)) == (existing.dtype, tuple(existing.shape)),
                      f"reads variable '{key}' as {out.dtype} {list(out.shape)}, another READ_VARIABLE as "
                      f"{existing.dtype} {list(existing.shape)}; give every read of a variable one type and shape")
        model.ir[(out.index, layout)] = state.name

    def _assign_variable(self, operator, model) -> None:
        key = self._variable(operator, model)
        model.require(len(operator.inputs) == 2, "needs a resource and a value")
        value_tensor = model.input_tensor(1, "value")
        value = model.activation(1, state_layout(value_tensor.shape), "value")
        state = model.variables.get(key)
        if state is None:  # assigned and never read: kept anyway, as TFLM keeps it
            name = f"{model.names[operator.inputs[0]]}__state"
            model.graph.tensors[name] = Tensor(name, value.dtype, value.shape, None, value.quant)
            state = model.variables[key] = StateVariable(name, None, 0, None, key)
            model.graph.states.append(state)
        current = model.graph.tensor(state.name)
        model.require((value.dtype, tuple(value.shape)) == (current.dtype, tuple(current.shape)),
                      f"assigns {value.dtype} {list(value.shape)} to variable '{key}', which holds {current.dtype} "
                      f"{list(current.shape)}; the sizes must agree")
        written = f"{state.name}__next"
        model.graph.tensors[written] = Tensor(written, current.dtype, current.shape, None, current.quant)
        state.written = written
        state.fill = fill_byte(value_tensor)  # subgraph 0's ASSIGN is prepared first: its zero point
        model.assigned.add(key)
        model.graph.nodes.append(Node(self.name, model.node_name(f"{model.names[operator.inputs[0]]}__assign"),
                                      [value.name], [written], attrs={"onnx_op": operator.code, "variable": key}))

    def _call_once(self, operator, model) -> None:
        index = int(operator.options.get("init_subgraph_index", -1))
        subgraphs = {g.index: g for g in model.model.subgraphs}
        model.require(index in subgraphs, f"runs subgraph {index}, which the model does not have")
        model.require(not model.resources and not model.variables, "comes after operators that use variables; qcc "
                      "runs models whose CALL_ONCE comes before every variable operator")
        model.require(index not in model.initialised, f"runs subgraph {index} a second time")
        init = subgraphs[index]
        resources: dict[int, str] = {}
        for op in init.operators:
            if op.code == "VAR_HANDLE":
                resources[op.outputs[0]] = variable_key(op.options)
                continue
            if op.code != "ASSIGN_VARIABLE" or len(op.inputs) != 2 or op.inputs[0] not in resources:
                model.refuse(f"runs subgraph {index}, whose operator {op.index} ({op.code}) computes; qcc compiles "
                             "initialisation subgraphs that assign constants to variables")
            value = init.tensors[op.inputs[1]]
            model.require(value.data is not None, f"runs subgraph {index}, whose operator {op.index} initialises "
                          f"variable '{resources[op.inputs[0]]}' with a computed tensor; qcc takes constant initial values")
            model.initial_values[resources[op.inputs[0]]] = (value, f"subgraph {index}, operator {op.index}")
        model.initialised.add(index)

    # --- the IR ---

    def explain(self, node: Node, graph: Graph) -> Explanation:
        return Explanation("no_arithmetic", "stores the codes the next inference reads as the variable "
                           f"'{node.attrs.get('variable', '')}': no arithmetic, the same in every rounding scheme")

    def reference(self, node: Node, graph: Graph, inputs):
        value = np.asarray(inputs[0])
        if "table" in node.attrs:  # --state with the pair quantized differently: the codes requantized
            return [node.attrs["table"][value.view(np.uint8)].view(value.dtype)]
        return [np.array(value, copy=True)]

    def emit(self, node: Node, graph: Graph, c) -> str:
        value = graph.tensor(node.inputs[0])
        if "table" in node.attrs:
            table = c.const_array(f"{c.symbol(node.name)}_table", "uint8_t", node.attrs["table"])
            return (f"qcc_lookup_8bit({table}, {c.tensor(value.name, 'uint8')}, {c.tensor(node.outputs[0], 'uint8')}, "
                    f"{value.size}u); /* the state for the next inference, requantized */")
        if c.plan.storage[value.name] == c.plan.storage[node.outputs[0]]:
            return "/* the state for the next inference: its producer wrote it in place, after every read of the old */"
        return (f"memcpy({c.tensor(node.outputs[0])}, {c.tensor(value.name)}, {value.nbytes}u); "
                f"/* the state for the next inference */")


def layout_shape(shape, layout: str) -> tuple[int, ...]:
    return tuple(int(d) for d in in_layout(shape, layout))


def state_layout(shape) -> str:
    """The layout a variable's bytes are kept in: channels first for an image (the layout of the kernels that
    read it, so that the stream layer's concatenation and slice need no transposes), else the model's own.
    The state is the C's own buffer, never the application's, so its layout is qcc's choice."""
    return NCHW if len(shape) == 4 else TFLITE


def check_variable_types(model) -> None:
    """Before anything is imported: variables the converter kept in float32 (its default) make float
    computation around them, which qcc does not compile; say how to convert them as int8 instead."""
    for operator in model.operators:
        if operator.code == "READ_VARIABLE" and operator.outputs:
            tensor = model.tensors[operator.outputs[0]]
            if tensor.dtype != "int8":
                raise QccError(f"{model.label(operator)}: reads a {tensor.dtype} variable; TFLM computes around float "
                               "variables in float, which qcc does not compile: convert with int8 variables "
                               "(TFLiteConverter._experimental_variable_quantization = True)")


def finish_variables(model) -> None:
    """After subgraph 0's import: each variable's initialisation (CALL_ONCE's constants), checked against
    its type, and TFLM's fill byte where subgraph 0 assigns it nowhere (the initialisation's ASSIGN is then
    the first prepared)."""
    source = model.model.source
    for key, (value, where) in model.initial_values.items():
        state = model.variables.get(key)
        if state is None:
            continue  # initialised, never used by an inference
        tensor = model.graph.tensor(state.name)
        if (value.dtype, layout_shape(value.shape, state_layout(value.shape))) != (tensor.dtype, tuple(tensor.shape)):
            raise QccError(f"{source}: {where} initialises variable '{key}' with {value.dtype} {list(value.shape)}, "
                           f"but the inference uses it as {tensor.dtype} {list(tensor.shape)}")
        if state.written is None:
            state.fill = fill_byte(value)
        data = np.asarray(value.data, dtype=tensor.dtype)
        state.first_call = np.ascontiguousarray(data.transpose(TO_NCHW) if data.ndim == 4 else data)
    for key, state in model.variables.items():
        if state.written is None and key not in model.initial_values:
            raise QccError(f"{source}: variable '{key}' is read but nothing assigns it (TFLM would read bytes it never "
                           "allocated); the model is incomplete")
