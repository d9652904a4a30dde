"""--state INPUT=OUTPUT: a model that passes its state through its own inputs and outputs (a streaming
model exported with the state as an input/output pair, as many exporters write ring buffers) keeps it
inside the C instead, so the application calls it once per frame with the frame alone.

Each pair becomes a StateVariable (qcc/ir.py) like a TFLite resource variable: INPUT is no longer a C
input but the state's bytes, OUTPUT no longer a C output but what an AssignState stores there after the
inference's last read (its producer writing it in place where every read of the old state came first).
The state starts as, and NAME_reset() returns it to, the codes of real zero (INPUT's zero point).

What the application would do between two calls of the model is what the C does: copy the output's
codes into the input when both are quantized alike; for an ONNX model whose two are quantized
differently, ONNX Runtime's own DequantizeLinear then QuantizeLinear (the application feeds back the
float output), as a 256-entry table worked out at compile time. A .tflite pair must be quantized alike.
"""

from __future__ import annotations

import numpy as np

from qcc.errors import QccError
from qcc.ir import Graph, Node, StateVariable, Tensor
from qcc.numerics.quantize_linear import codes_in_byte_order, dequantize_linear, quantize_linear


def apply(graph: Graph, pairs: list[tuple[str, str]]) -> None:
    if not pairs:
        return
    if graph.states:
        raise QccError(f"{graph.source}: the model keeps its own state (resource variables); --state pairs are for "
                       "models that pass it through their inputs and outputs")
    for role, names in (("input", [p[0] for p in pairs]), ("output", [p[1] for p in pairs])):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise QccError(f"--state: the {role} {repeated[0]!r} is in another pair already; give each once")
    graph.io_before_state = (list(graph.inputs), list(graph.outputs))
    found = [(_find(graph, graph.inputs, i, "input"), _find(graph, graph.outputs, o, "output")) for i, o in pairs]
    for (input_name, output_name), (x, y) in zip(pairs, found):
        _pair(graph, graph.tensor(x), graph.tensor(y), f"--state {input_name}={output_name}")


def _find(graph: Graph, names: list[str], wanted: str, role: str) -> str:
    for name in names:
        if graph.public_name(name) == wanted:
            return name
    offered = ", ".join(repr(graph.public_name(n)) for n in names) or "none"
    raise QccError(f"{graph.source}: --state names the {role} {wanted!r}, which the model does not have "
                   f"(its {role}s: {offered})")


def _pair(graph: Graph, x: Tensor, y: Tensor, flag: str) -> None:
    if (x.dtype, tuple(x.shape)) != (y.dtype, tuple(y.shape)):
        raise QccError(f"{graph.source}: {flag}: the input is {x.dtype} {list(x.shape)}, the output {y.dtype} "
                       f"{list(y.shape)}; a state's input and output must have one type and shape")
    table = None
    if not _same_quant(x, y):
        if graph.frontend != "onnx" or x.dtype not in ("int8", "uint8"):
            raise QccError(f"{graph.source}: {flag}: the input and the output are quantized differently; the codes one "
                           "inference leaves cannot be the next one's without arithmetic qcc is not told")
        # what ONNX Runtime computes of the float output the application feeds back
        s_y, z_y = y.quant.scalar()
        s_x, z_x = x.quant.scalar()
        codes = codes_in_byte_order(y.dtype)
        table = quantize_linear(dequantize_linear(codes, s_y, z_y), s_x, int(z_x), x.dtype).view(np.uint8)
    fill = 0 if x.quant is None else int(np.asarray(x.quant.scalar()[1]).astype(x.dtype).view(np.uint8))
    graph.inputs.remove(x.name)
    graph.outputs.remove(y.name)
    written = f"{x.name}__next"
    graph.tensors[written] = Tensor(written, x.dtype, tuple(x.shape), None, x.quant)
    label = f"{graph.public_name(x.name)} <- {graph.public_name(y.name)}"
    graph.states.append(StateVariable(x.name, written, fill, None, label))
    node = Node("AssignState", f"{x.name}__assign", [y.name], [written],
                attrs={"onnx_op": "state (--state)", "variable": label})
    if table is not None:
        node.attrs["table"] = table
    graph.nodes.append(node)


def _same_quant(x: Tensor, y: Tensor) -> bool:
    if x.quant is None or y.quant is None:
        return x.quant is None and y.quant is None
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(x.quant.scalar(), y.quant.scalar()))
