""".tflite -> IR: each operator of subgraph 0, in the model's order, through the op registered for it.

The IR keeps images channels first (N, C, H, W): that is the layout qcc's kernels are written for.
A TFLite file keeps them channels last (N, H, W, C). Each TFLite tensor can therefore exist in the
IR in two layouts: `TFLITE`, its own order, and `NCHW`, the channels-first permutation of a
rank-4 tensor (for other ranks both are the same). An op asks for each input in the layout its
kernel reads (`activation`), and says in which layout it wrote its output (`output`). Where the
layouts differ, the importer inserts the permutation once per tensor and layout: a Transpose,
or, where the permutation moves only axes of size 1 (a 1 x 1 x C map, a single-channel image),
a Reshape that shares the bytes. The C's inputs and outputs are the model's own tensors, in
TFLite's layout and types, so an application swaps TFLM's interpreter for the C with no other change:
a float32 input is taken where one QUANTIZE alone reads it, and a float32 output where a DEQUANTIZE
writes it and no operator reads it (`float_input`, `float_output`); float anywhere else is refused.
"""

from __future__ import annotations

import numpy as np

from qcc import ops
from qcc.errors import QccError
from qcc.ir import Graph, Node, QuantParams, Tensor
from qcc.ops.state import check_variable_types, finish_variables
from qcc.ops.tflite_import import NCHW, TFLITE, TO_NCHW, TO_TFLITE, moves_only_unit_axes
from qcc.tflite_graph import TfliteModel, TfliteOperator, TfliteTensor

# Activation types the importer passes to the ops: TFLM's 8-bit integer kernels. int16 activations (16x8
# quantization) are another arithmetic: an op that compiles them asks for them (`dtypes`), and every other
# op refuses an int16 input or output by name.
ACTIVATION_DTYPES = ("int8",)
INT8_OR_INT16 = ("int8", "int16")
MODEL_INPUT_DTYPES = INT8_OR_INT16  # a model's integer inputs (whoever reads one checks its type)


def layout_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A TFLite shape as the IR holds it in `layout`."""
    if layout == NCHW and len(shape) == 4:
        return tuple(shape[p] for p in TO_NCHW)
    return tuple(shape)


class TfliteImporter:
    """Builds the IR graph of one TfliteModel. While an op imports, the importer is its context:
    the op's `import_tflite(operator, model)` receives it as `model`."""

    def __init__(self, model: TfliteModel):
        self.model = model
        self.graph = Graph(name=model.name, source=model.source, tensors={}, nodes=[], inputs=[], outputs=[],
                           frontend="tflite")
        self.names = self._unique_names()
        self.ir: dict[tuple[int, str], str] = {}  # (TFLite tensor index, layout) -> IR tensor name
        self.operator: TfliteOperator | None = None
        self._node_names: set[str] = set()
        # Resource variables (qcc/ops/state.py): VAR_HANDLE's resource tensors -> variable key; the variables by
        # key (graph.states holds them too); those assigned so far; the subgraphs CALL_ONCE ran; their values.
        self.resources: dict[int, str] = {}
        self.variables: dict = {}
        self.assigned: set[str] = set()
        self.initialised: set[int] = set()
        self.initial_values: dict = {}

    # --- the import, start to end --------------------------------------------------------------

    def run(self) -> Graph:
        check_variable_types(self.model)
        for index in self.model.inputs:
            self._add_graph_input(index)
        for operator in self.model.operators:
            self.operator = operator
            op = self._op_for(operator)
            written = [i for i in operator.outputs if (i, TFLITE) in self.ir or (i, NCHW) in self.ir]
            if written or any(self.model.tensors[i].data is not None for i in operator.outputs):
                self.refuse(f"writes tensor {(written or operator.outputs)[0]}, which is a constant, a model input or "
                            "the output of an earlier operator; the file is corrupt")
            try:
                op.import_tflite(operator, self)
            except QccError:
                raise
            except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as error:
                detail = " ".join(str(error).split())[:200]
                self.refuse(f"its tensors or options are not what the TFLite schema says ({type(error).__name__}: "
                            f"{detail}); check this operator")
            for index in operator.outputs:
                if not any((index, layout) in self.ir for layout in (TFLITE, NCHW)) and index not in self.resources:
                    self.refuse(f"the import wrote no value for output tensor {index}")  # a bug in the op module
        self.operator = None
        for subgraph in self.model.subgraphs:
            if subgraph.index not in self.initialised:
                raise QccError(f"{self.model.source}: subgraph {subgraph.index} is run by no CALL_ONCE (control flow, "
                               "such as WHILE or IF, runs subgraphs); qcc compiles subgraph 0 and the initialisation "
                               "subgraphs of resource variables")
        finish_variables(self)
        self.graph.tflite_tensors = {name: key for key, name in self.ir.items()
                                     if self.model.tensors[key[0]].data is None}
        for index in self.model.outputs:
            if index in self.model.inputs or self.model.tensors[index].data is not None:
                raise QccError(f"{self.model.source}: the model's output '{self.names[index]}' is a model input or a "
                               "constant; qcc compiles models whose outputs some operator computes")
            if not any((index, layout) in self.ir for layout in (TFLITE, NCHW)):
                raise QccError(f"{self.model.source}: the model's output '{self.names[index]}' is written by no operator")
            name = self.tensor_name(index, TFLITE)
            self.graph.outputs.append(name)
            self.graph.public_names[name] = self.model.tensors[index].name or name
        self._drop_unused()
        self.graph.tflite_tensors = {name: key for name, key in self.graph.tflite_tensors.items()
                                     if name in self.graph.tensors}
        return self.graph

    def _drop_unused(self) -> None:
        """Remove the nodes whose outputs nothing reads and that are no model output (a layout conversion a
        reader chose not to use), with their tensors; nodes that store state are kept."""
        while True:
            read = {name for node in self.graph.nodes for name in node.inputs} | set(self.graph.outputs)
            unused = [node for node in self.graph.nodes if not ops.op_named(node.op).runs_last
                      and not any(name in read for name in node.outputs)]
            if not unused:
                return
            for node in unused:
                self.graph.nodes.remove(node)
                for name in node.outputs:
                    del self.graph.tensors[name]
            self.ir = {key: name for key, name in self.ir.items() if name in self.graph.tensors}

    def _unique_names(self) -> list[str]:
        names, seen = [], set()
        for tensor in self.model.tensors:
            name = tensor.name or f"tensor_{tensor.index}"
            if name in seen:
                name = f"{name}__{tensor.index}"
            seen.add(name)
            names.append(name)
        return names

    def _add_graph_input(self, index: int) -> None:
        tensor = self.model.tensors[index]
        if tensor.data is not None:
            raise QccError(f"{self.model.source}: the model's input '{self.names[index]}' is a constant")
        if tensor.dtype == "float32":
            self._check_read_by_quantize(index, tensor.dtype)
            quant = None
        elif tensor.dtype == "uint8":
            self._check_read_by_quantize(index, tensor.dtype)
            quant = self._activation_quant(tensor)
        elif tensor.dtype not in MODEL_INPUT_DTYPES:
            raise QccError(f"{self.model.source}: the model's input '{self.names[index]}' is {tensor.dtype}; qcc compiles "
                           f"{'/'.join(MODEL_INPUT_DTYPES)} inputs of TFLite models (TFLM's integer kernels), and "
                           "float32 and uint8 inputs that a QUANTIZE reads")
        else:
            quant = self._activation_quant(tensor)
        name = self.names[index]
        self.graph.tensors[name] = Tensor(name, tensor.dtype, tensor.shape, None, quant)
        self.graph.inputs.append(name)
        self.graph.public_names[name] = tensor.name or name
        self.ir[(index, TFLITE)] = name

    def readers_of(self, index: int) -> list[TfliteOperator]:
        return [o for o in self.model.operators if index in o.inputs]

    def _check_read_by_quantize(self, index: int, dtype: str) -> None:
        """A float32 or uint8 model input is compiled where a QUANTIZE alone reads it (the converter's
        inference_input_type): the C takes it as TFLM does and quantizes or requantizes it to int8 as TFLM's
        QUANTIZE; float computation, or TFLM's uint8 kernels, anywhere else are not compiled."""
        readers = self.readers_of(index)
        codes = sorted({o.code for o in readers})
        if len(readers) != 1 or codes != ["QUANTIZE"] or index in self.model.outputs:
            read = (f"read by {len(readers)} operators ({', '.join(codes)})" if readers else "read by no operator")
            raise QccError(f"{self.model.source}: the model's input '{self.names[index]}' is {dtype} and "
                           f"{read}{' and a model output' if index in self.model.outputs else ''}; qcc compiles a "
                           f"{dtype} input that one QUANTIZE alone reads (TFLM's int8 kernels after it)")

    def _op_for(self, operator: TfliteOperator) -> ops.Op:
        op = ops.op_for_tflite(operator.code, operator.version)
        if op is not None:
            return op
        if operator.code == "CUSTOM":
            self.refuse(f"is the custom op '{operator.custom_code}', whose arithmetic only the application that "
                        "registers it knows; qcc compiles builtin ops")
        versions = ops.TFLITE_RULES.versions("tflite", operator.code)
        if versions:
            self.refuse(f"is at op version {operator.version}, where qcc does not import {operator.code} (qcc imports "
                        f"it at {', '.join(versions)}): its inputs or arithmetic differ there")
        unsupported = sorted({o.code for o in self.model.operators if ops.op_for_tflite(o.code, o.version) is None})
        self.refuse(f"uses {operator.code}, which qcc does not support (unsupported here: {', '.join(unsupported)}; "
                    f"supported: {', '.join(ops.supported_tflite_ops())})")

    # --- what an op's import_tflite uses ---------------------------------------------------------

    @property
    def label(self) -> str:
        return self.model.label(self.operator)

    @property
    def options(self) -> dict:
        return self.operator.options

    def refuse(self, message: str):
        raise QccError(f"{self.label}: {message}")

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            self.refuse(message)

    def node_name(self, base: str | None = None) -> str:
        """A unique IR node name: an operator's is its first output's (TFLite operators have none)."""
        base = base or self.names[self.operator.outputs[0]]
        name, k = base, 2
        while name in self._node_names:
            name, k = f"{base}_{k}", k + 1
        self._node_names.add(name)
        return name

    def input_count(self) -> int:
        return len(self.operator.inputs)

    def has_input(self, position: int) -> bool:
        return position < len(self.operator.inputs) and self.operator.inputs[position] >= 0

    def input_tensor(self, position: int, what: str) -> TfliteTensor:
        """The TFLite tensor at this input position of the operator (refused where it is missing)."""
        self.require(self.has_input(position), f"the {what} (input {position}) is missing")
        return self.model.tensors[self.operator.inputs[position]]

    def output_tensor(self, position: int = 0) -> TfliteTensor:
        self.require(position < len(self.operator.outputs), f"output {position} is missing")
        return self.model.tensors[self.operator.outputs[position]]

    def is_constant(self, position: int) -> bool:
        return self.has_input(position) and self.model.tensors[self.operator.inputs[position]].data is not None

    def constant(self, position: int, what: str) -> np.ndarray:
        """A constant input's values, in TFLite's layout."""
        tensor = self.input_tensor(position, what)
        self.require(tensor.data is not None, f"the {what} '{self.names[tensor.index]}' must be a constant; qcc needs "
                     "it at compile time")
        return tensor.data

    def bias(self, position: int, count: int):
        """An optional int32 bias input of `count` values, as int64 (None where the model omits it)."""
        if not self.has_input(position):
            return None
        bias = self.constant(position, "bias")
        self.require(bias.dtype == np.int32 and bias.size == count, f"the bias must be {count} int32 values, got "
                     f"{bias.size} {bias.dtype}")
        return bias.astype(np.int64).reshape(-1)

    def activation(self, position: int, layout: str, what: str = "input",
                   dtypes: tuple[str, ...] = ACTIVATION_DTYPES) -> Tensor:
        """A quantized activation input as an IR tensor in `layout` (a constant becomes an IR constant), of one of
        `dtypes`: the types whose arithmetic the op compiles (int8 unless it says more)."""
        tensor = self.input_tensor(position, what)
        if tensor.data is not None:
            self.require(tensor.dtype in dtypes and tensor.quant is not None,
                         f"the constant {what} '{self.names[tensor.index]}' is {tensor.dtype}"
                         f"{'' if tensor.quant else ' without quantization'}; it must be quantized {'/'.join(dtypes)}")
            name = self.ir.get((tensor.index, layout))
            if name is None:
                name = self.names[tensor.index] if layout == TFLITE else f"{self.names[tensor.index]}__{layout}"
                data = tensor.data if layout == TFLITE or tensor.data.ndim != 4 else tensor.data.transpose(TO_NCHW)
                self.graph.tensors[name] = Tensor(name, tensor.dtype, tuple(data.shape), np.ascontiguousarray(data),
                                                  self._activation_quant(tensor))
                self.ir[(tensor.index, layout)] = name
            return self.graph.tensors[name]
        self.require(any((tensor.index, lay) in self.ir for lay in (TFLITE, NCHW)),
                     f"reads tensor '{self.names[tensor.index]}' before any operator writes it; the file is corrupt")
        self.require(tensor.dtype in dtypes, f"the {what} '{self.names[tensor.index]}' is {tensor.dtype}; qcc "
                     f"compiles TFLM's {'/'.join(dtypes)} {self.operator.code} kernel"
                     + (" (16x8 models: this operator is not compiled at int16 yet)" if tensor.dtype == "int16" else ""))
        return self.graph.tensors[self.tensor_name(tensor.index, layout)]

    def float_input(self, position: int, what: str = "input") -> Tensor:
        """The IR tensor of a float32 model input that this operator alone reads (the importer admitted it:
        `_check_read_by_quantize`); anything else is float computation inside the model, refused by name."""
        tensor = self.input_tensor(position, what)
        self.require(tensor.dtype == "float32", f"the {what} '{self.names[tensor.index]}' is {tensor.dtype}, not float32")
        self.require(tensor.index in self.model.inputs and (tensor.index, TFLITE) in self.ir,
                     f"reads the float32 tensor '{self.names[tensor.index]}', which is not a model input: a float "
                     "computation inside the model, which qcc does not compile (qcc compiles float32 only at the "
                     "model's inputs and outputs, around TFLM's integer kernels)")
        return self.graph.tensors[self.ir[(tensor.index, TFLITE)]]

    def float_output(self, position: int, shape: tuple[int, ...]) -> str:
        """The IR tensor for a float32 output of the operator, which must be a model output that no
        operator reads (float32 lives only at the C's boundary), in TFLite's layout."""
        tensor = self.output_tensor(position)
        label = self.names[tensor.index]
        self.require(tensor.dtype == "float32", f"output '{label}' is {tensor.dtype}, not float32")
        readers = self.readers_of(tensor.index)
        where = f"read by {', '.join(sorted({o.code for o in readers}))}" if readers else "not a model output"
        self.require(tensor.index in self.model.outputs and not readers,
                     f"its float32 output '{label}' is {where}: a float computation inside the model, which qcc does "
                     "not compile (qcc compiles float32 only at the model's inputs and outputs, around TFLM's integer "
                     "kernels)")
        self.require(tuple(int(d) for d in shape) == tuple(tensor.shape),
                     f"output '{label}' is declared {list(tensor.shape)}, but the op computes {list(shape)}")
        self.graph.tensors[label] = Tensor(label, "float32", tuple(tensor.shape), None, None)
        self.ir[(tensor.index, TFLITE)] = label
        return label

    def layout_of(self, position: int) -> str:
        """The layout an activation input already exists in (TFLITE where it exists in both)."""
        index = self.operator.inputs[position]
        return TFLITE if (index, TFLITE) in self.ir or (index, NCHW) not in self.ir else NCHW

    def converts_by_copy(self, position: int, layout: str) -> bool:
        """Whether reading this input in `layout` takes a Transpose that moves bytes (not a shared-bytes view)."""
        index = self.operator.inputs[position]
        if (index, layout) in self.ir or len(self.model.tensors[index].shape) != 4:
            return False
        source_shape = self.graph.tensors[self.ir[(index, self.layout_of(position))]].shape
        return not moves_only_unit_axes(source_shape, TO_NCHW if layout == NCHW else TO_TFLITE)

    def tensor_name(self, index: int, layout: str) -> str:
        """The IR tensor holding TFLite tensor `index` in `layout`, converting it once where needed."""
        if (index, layout) in self.ir:
            return self.ir[(index, layout)]
        source_layout = NCHW if layout == TFLITE else TFLITE
        source = self.graph.tensors[self.ir[(index, source_layout)]]
        if len(source.shape) != 4:
            self.ir[(index, layout)] = source.name
            return source.name
        perm = TO_NCHW if layout == NCHW else TO_TFLITE
        name = self.names[index] if layout == TFLITE else f"{self.names[index]}__{layout}"  # the model's name: its layout
        shape = tuple(source.shape[p] for p in perm)
        self.graph.tensors[name] = Tensor(name, source.dtype, shape, None, source.quant)
        node_name = self.node_name(f"{self.names[index]}__to_{layout}")
        if moves_only_unit_axes(source.shape, perm):
            self.graph.nodes.append(Node("Reshape", node_name, [source.name], [name],
                                         attrs={"onnx_op": f"layout change to {layout}, the same bytes"}))
        else:
            self.graph.nodes.append(Node("Transpose", node_name, [source.name], [name], attrs={"perm": list(perm)}))
        self.ir[(index, layout)] = name
        return name

    def flattened_image(self, position: int) -> Tensor | None:
        """The image a RESHAPE flattened into input `position`, channels first, where reading it so saves
        moving its bytes: the RESHAPE makes (N, H * W * C) of an (N, H, W, C) tensor that exists channels
        first and would need a Transpose, with the same quantization. The reader then permutes its weights
        at compile time (a fully connected layer); the RESHAPE's own copy goes unused and is dropped."""
        index = self.operator.inputs[position]
        producer = next((o for o in self.model.operators if index in o.outputs), None)
        if producer is None or producer.code != "RESHAPE" or not producer.inputs:
            return None
        source, out = self.model.tensors[producer.inputs[0]], self.model.tensors[index]
        shape = source.shape
        flattens = len(shape) == 4 and tuple(out.shape) == (shape[0], shape[1] * shape[2] * shape[3])
        if (not flattens or (source.index, NCHW) not in self.ir
                or moves_only_unit_axes(layout_shape(shape, NCHW), TO_TFLITE)):
            return None
        same_quant = (source.quant is not None and out.quant is not None
                      and np.array_equal(source.quant.scale, out.quant.scale)
                      and np.array_equal(source.quant.zero_point, out.quant.zero_point))
        if not same_quant:
            return None
        return self.graph.tensors[self.ir[(source.index, NCHW)]]

    def channels_first_view(self, position: int) -> Tensor | None:
        """Input `position` seen channels first without a copy (ChannelsFirstView), for a reader that takes
        channels-last bytes in place; None unless it is a model input image whose channels-first copy
        would move bytes (the reader then asks for it with `activation`)."""
        index = self.operator.inputs[position]
        if index not in self.model.inputs or (index, NCHW) in self.ir or not self.converts_by_copy(position, NCHW):
            return None
        source = self.graph.tensors[self.ir[(index, TFLITE)]]
        name = f"{source.name}__channels_first_view"
        if name not in self.graph.tensors:
            shape = tuple(source.shape[p] for p in TO_NCHW)
            self.graph.tensors[name] = Tensor(name, source.dtype, shape, None, source.quant)
            self.graph.nodes.append(Node("ChannelsFirstView", self.node_name(name), [source.name], [name],
                                         attrs={"onnx_op": "the input read channels last, in place"}))
        return self.graph.tensors[name]

    def view(self, tensor: Tensor, shape: tuple[int, ...], what: str) -> Tensor:
        """The same bytes under another shape (a Reshape node that shares them), made once per tensor and shape."""
        if tuple(tensor.shape) == tuple(shape):
            return tensor
        name = f"{tensor.name}__{what}"
        if name not in self.graph.tensors:
            self.graph.tensors[name] = Tensor(name, tensor.dtype, tuple(shape), None, tensor.quant)
            self.graph.nodes.append(Node("Reshape", self.node_name(name), [tensor.name], [name],
                                         attrs={"onnx_op": f"the {what} view"}))
        return self.graph.tensors[name]

    def quant(self, tensor: TfliteTensor, axis: int | None = None) -> QuantParams:
        """A tensor's quantization as the IR holds it; per axis along `axis` of the IR tensor where the
        TFLite tensor has one scale per slice (per-tensor otherwise)."""
        q = tensor.quant
        self.require(q is not None, f"tensor '{self.names[tensor.index]}' has no quantization parameters")
        if q.scale.size == 1:
            return QuantParams(q.scale.reshape(()), q.zero_point.reshape(()), None)
        self.require(axis is not None, f"tensor '{self.names[tensor.index]}' is quantized per axis "
                     f"({q.scale.size} scales along dimension {q.axis}); {self.operator.code} takes one scale here")
        return QuantParams(q.scale.copy(), q.zero_point.copy(), axis)

    def _activation_quant(self, tensor: TfliteTensor) -> QuantParams:
        q = tensor.quant
        if q is None or q.scale.size != 1:
            where = self.label if self.operator is not None else self.model.source
            raise QccError(f"{where}: tensor '{self.names[tensor.index]}' must be quantized with one scale and zero "
                           f"point, it has {'none' if q is None else str(q.scale.size) + ' scales'}")
        return QuantParams(q.scale.reshape(()), q.zero_point.reshape(()), None)

    def constant_tensor(self, suffix: str, data: np.ndarray, quant: QuantParams | None = None) -> str:
        """An IR constant the op made (weights in the IR's layout, ...), named after the node."""
        name = f"{self.names[self.operator.outputs[0]]}__{suffix}"
        k = 2
        while name in self.graph.tensors:
            name, k = f"{self.names[self.operator.outputs[0]]}__{suffix}{k}", k + 1
        self.graph.tensors[name] = Tensor(name, str(data.dtype), tuple(data.shape), np.ascontiguousarray(data), quant)
        return name

    def output(self, position: int, shape: tuple[int, ...], layout: str, quant: QuantParams | None = None,
               quantized: bool = True, dtypes: tuple[str, ...] = ACTIVATION_DTYPES) -> str:
        """The IR tensor for output `position`, in `layout`, after checking that the shape the op computed
        (in that layout) is the shape the model declares. Quantization: the model's, unless given;
        quantized=False: an output of integers that are no codes (ARG_MAX's indices), in its own dtype."""
        tensor = self.output_tensor(position)
        declared = layout_shape(tensor.shape, layout)
        self.require(tuple(int(d) for d in shape) == declared,
                     f"output '{self.names[tensor.index]}' is declared {list(tensor.shape)}, but the op computes "
                     f"{list(shape) if layout == TFLITE or len(shape) != 4 else [shape[p] for p in TO_TFLITE]} "
                     "from its inputs")
        if quantized:
            self.require(tensor.dtype in dtypes, f"output '{self.names[tensor.index]}' is {tensor.dtype}; qcc "
                         f"compiles TFLM's {'/'.join(dtypes)} {self.operator.code} kernel")
            quant = quant if quant is not None else self._activation_quant(tensor)
        name = self.names[tensor.index] if layout == TFLITE or len(shape) != 4 else f"{self.names[tensor.index]}__{layout}"
        self.graph.tensors[name] = Tensor(name, tensor.dtype, tuple(int(d) for d in shape), None, quant)
        self.ir[(tensor.index, layout)] = name
        return name

    def intermediate(self, suffix: str, shape: tuple[int, ...], quant: QuantParams | None, dtype: str = "int8") -> str:
        """An IR tensor between two nodes of one operator's import (no TFLite tensor), named after the node."""
        name = f"{self.names[self.operator.outputs[0]]}__{suffix}"
        k = 2
        while name in self.graph.tensors:
            name, k = f"{self.names[self.operator.outputs[0]]}__{suffix}{k}", k + 1
        self.graph.tensors[name] = Tensor(name, dtype, tuple(int(d) for d in shape), None, quant)
        return name

    def permute(self, source: Tensor, perm, target: str) -> Node:
        """The node writing `target` as `source` permuted by `perm`: a Reshape that shares the bytes where
        the permutation moves only axes of size 1 (the identity too), else a Transpose."""
        perm = [int(p) for p in perm]
        if moves_only_unit_axes(source.shape, perm):
            return self.add_node("Reshape", [source.name], [target], {})
        return self.add_node("Transpose", [source.name], [target], {"perm": perm})

    def add_node(self, op: str, inputs: list[str], outputs: list[str], attrs: dict) -> Node:
        node = Node(op, self.node_name(), inputs, outputs, attrs={"onnx_op": self.operator.code, **attrs})
        self.graph.nodes.append(node)
        return node


def import_tflite(model: TfliteModel) -> Graph:
    return TfliteImporter(model).run()
