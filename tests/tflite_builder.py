"""`.tflite` test models written with the flatbuffers builder through the `tflite` package's generated
functions (the TFLite schema; no TensorFlow), laid out the way the converter writes them:

    b = TfliteBuilder()
    x = b.input("x", (1, 8, 8, 3), "int8", scale=0.05, zero_point=-3)
    w = b.const("w", w_int8, scale=w_scales, zero_point=0, quantized_dimension=0)  # per-axis
    bias = b.const("bias", bias_int32, scale=x_scale * w_scales, zero_point=0)
    y = b.tensor("y", (1, 8, 8, 16), "int8", scale=0.1, zero_point=5)
    b.op("CONV_2D", [x, w, bias], [y], version=3, options=dict(
        padding="SAME", stride_w=1, stride_h=1, fused_activation_function="RELU"))
    b.output(y)
    data: bytes = b.build()

Tensors are indices (ints) into subgraph 0's tensors, as in the file. Layout: buffer 0 empty, one buffer
per tensor after it (empty for activations, the data 16-byte aligned for constants), each operator
code written once with deprecated_builtin_code = min(code, 127) and builtin_code, schema version 3,
an empty QuantizationParameters table on tensors without quantization, file identifier TFL3.

An op's `options` fill its builtin options table, found from the schema: the BuiltinOptions member
named like the op (CONV_2D -> Conv2DOptions), or a pooling/reduction's shared table (Pool2DOptions,
ReducerOptions); ops without a table (RELU, LOGISTIC...) take no options. Each field is given by its
schema name: enums by name ("SAME", "RELU6") or number, vectors as lists (squeeze_dims), bools,
numbers. Ops with a table get it even without options (empty, all fields default), as the converter.

Nothing is validated: for fuzz tests, every index, shape, name, code, version, scale and byte is
written as given (within the flatbuffers field's type: int32 shapes, uint32 buffer and opcode
indices), so the compiler under test is the one that must refuse. The raw overrides:
- `tensor(..., buffer=N)`: the tensor's buffer index, whatever the buffers are;
  `tensor(..., data=b"...")`: a constant with those bytes, whatever its shape needs;
  `quantization=dict(scale=, zero_point=, quantized_dimension=, min=, max=)`: the table's fields
  exactly as given (any lengths); `omit_quantization=True`: no table at all;
  shapes with negative or huge dims; names as any str or bytes (quotes, newlines, `*/`, invalid UTF-8);
  dtype as a TensorType number.
- `op(CODE_NUMBER, ...)`: any builtin code (deprecated_builtin_code = min(code, 127)); `version=99`;
  operand indices out of range; `opcode_index=`, `builtin_code=`, `deprecated_builtin_code=`,
  `options_type=` (a BuiltinOptions name or number, "NONE" for no table) written as given.
- `build(subgraph_count=0 or 2, version=, file_identifier=, inputs=, outputs=)`.
"""

from __future__ import annotations

import inspect
import re

import flatbuffers
import numpy as np
import tflite

DTYPES = {"int8": tflite.TensorType.INT8, "uint8": tflite.TensorType.UINT8, "int16": tflite.TensorType.INT16,
          "int32": tflite.TensorType.INT32, "int64": tflite.TensorType.INT64,
          "float32": tflite.TensorType.FLOAT32, "bool": tflite.TensorType.BOOL,
          "resource": tflite.TensorType.RESOURCE}

# Ops whose options table is not named after them.
_SHARED_OPTIONS = {
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions", "SUM": "ReducerOptions", "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions", "REDUCE_ANY": "ReducerOptions",
    "REDUCE_ALL": "ReducerOptions", "L2_NORMALIZATION": "L2NormOptions",
    "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions",
    "LSTM": "LSTMOptions", "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
}
# Enum-valued fields whose enum is not named after the field.
_FIELD_ENUMS = {"fused_activation_function": "ActivationFunctionType", "output_type": "TensorType",
                "in_data_type": "TensorType", "out_data_type": "TensorType", "idx_out_type": "TensorType"}


def _enum_names(enum_class) -> dict[str, int]:
    return {name: value for name, value in vars(enum_class).items() if not name.startswith("_")}


_BUILTIN_CODES = _enum_names(tflite.BuiltinOperator)
_UNIONS = {"builtin_options": _enum_names(tflite.BuiltinOptions),
           "builtin_options_2": _enum_names(tflite.BuiltinOptions2)}


def _camel(field: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in field.split("_"))


def options_table(op_name: str) -> str | None:
    """The name of an op's builtin options table (CONV_2D -> "Conv2DOptions"), None if it has none."""
    if op_name in _SHARED_OPTIONS:
        return _SHARED_OPTIONS[op_name]
    wanted = op_name.replace("_", "").lower() + "options"
    for members in _UNIONS.values():
        for name in members:
            if name.lower() == wanted:
                return name
    return None


def _union_of(table: str) -> tuple[str, int]:
    for union, members in _UNIONS.items():
        if table in members:
            return union, members[table]
    raise ValueError(f"{table} is in neither BuiltinOptions nor BuiltinOptions2")


class TfliteBuilder:
    def __init__(self, description: str | bytes | None = None):
        self.description = description
        self.tensors: list[dict] = []
        self.ops: list[dict] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.subgraphs: list[TfliteBuilder] = []  # subgraphs 1, 2, ... (CALL_ONCE's initialisation)

    def subgraph(self) -> TfliteBuilder:
        """A further subgraph, written after subgraph 0 (its index: len(self.subgraphs) after the call),
        with its own tensors, operators, inputs and outputs; buffers and op codes are the model's."""
        child = TfliteBuilder()
        self.subgraphs.append(child)
        return child

    # --- tensors ---

    def tensor(self, name: str | bytes, shape, dtype: str | int, scale=None, zero_point=None,
               quantized_dimension: int = 0, *, data: bytes | None = None, buffer: int | None = None,
               quantization: dict | None = None, omit_quantization: bool = False,
               shape_signature=None, is_variable: bool = False) -> int:
        """A tensor of subgraph 0 (an activation, or a constant with `data`); returns its index.
        scale: a number (per tensor) or a sequence (per axis, along quantized_dimension);
        zero_point: a number (repeated for every scale) or a sequence; 0 when a scale is given."""
        if quantization is None and scale is not None:
            scales = np.atleast_1d(np.asarray(scale, np.float32))
            zero_points = np.asarray(0 if zero_point is None else zero_point, np.int64)
            if zero_points.ndim == 0:
                zero_points = np.full(scales.shape, zero_points, np.int64)
            quantization = dict(scale=scales, zero_point=zero_points, quantized_dimension=quantized_dimension)
        self.tensors.append(dict(name=name, shape=list(shape), dtype=DTYPES[dtype] if isinstance(dtype, str) else dtype,
                                 data=data, buffer=buffer, quantization=None if omit_quantization else (quantization or {}),
                                 shape_signature=shape_signature, is_variable=is_variable))
        return len(self.tensors) - 1

    def input(self, name, shape, dtype, scale=None, zero_point=None, quantized_dimension: int = 0, **raw) -> int:
        """A graph input (in the order of these calls)."""
        index = self.tensor(name, shape, dtype, scale, zero_point, quantized_dimension, **raw)
        self.inputs.append(index)
        return index

    def const(self, name, value, dtype: str | None = None, scale=None, zero_point=None,
              quantized_dimension: int = 0, **raw) -> int:
        """A constant with the array's shape and bytes (little-endian), dtype by name or the array's."""
        value = np.asarray(value)
        dtype = dtype or value.dtype.name
        data = np.ascontiguousarray(value.astype(np.dtype(dtype).newbyteorder("<"))).tobytes()
        raw.setdefault("data", data)
        return self.tensor(name, value.shape, dtype, scale, zero_point, quantized_dimension, **raw)

    def output(self, *tensors: int) -> None:
        """Graph outputs (in the order of these calls)."""
        self.outputs.extend(tensors)

    # --- operators ---

    def op(self, op: str | int, inputs: list[int], outputs: list[int], version: int = 1, options: dict | None = None,
           *, options_type: str | int | None = None, custom_code: str | None = None, intermediates: list[int] | None = None,
           opcode_index: int | None = None, builtin_code: int | None = None,
           deprecated_builtin_code: int | None = None) -> int:
        """An operator (appended to the execution order); returns its index. op: a BuiltinOperator name
        or any code number; operands: tensor indices, -1 for an omitted optional input."""
        code = _BUILTIN_CODES[op] if isinstance(op, str) else op
        code = code if builtin_code is None else builtin_code
        deprecated = min(code, 127) if deprecated_builtin_code is None else deprecated_builtin_code
        if options_type is None:
            table = options_table(op) if isinstance(op, str) else None
            if table is None and options:
                raise ValueError(f"{op} has no builtin options table: give options_type=")
        elif isinstance(options_type, str) and options_type != "NONE":
            table = options_type
        else:
            table = None  # "NONE" or a raw union number: no table (a number is still written as the type)
        self.ops.append(dict(code=code, deprecated=deprecated, version=version, custom_code=custom_code,
                             opcode_index=opcode_index, inputs=list(inputs), outputs=list(outputs),
                             intermediates=intermediates, table=table, options=dict(options or {}),
                             options_type=options_type))
        return len(self.ops) - 1

    # --- writing ---

    def _subgraph(self, b, buffers: list, codes: dict, inputs, outputs, subgraph_name):
        """This builder's tensors and operators as a SubGraph table; its constants' buffers join `buffers`
        and its op codes `codes`."""
        tensor_offsets = []
        for tensor in self.tensors:
            if tensor["buffer"] is not None:
                buffer_index = tensor["buffer"]
            else:
                buffer_index = len(buffers)
            buffers.append(_buffer(b, tensor["data"]))
            tensor_offsets.append(_tensor(b, tensor, buffer_index))
        op_offsets = []
        for op in self.ops:
            key = (op["code"], op["deprecated"], op["version"], op["custom_code"])
            codes.setdefault(key, len(codes))
            index = codes[key] if op["opcode_index"] is None else op["opcode_index"]
            op_offsets.append(_operator(b, op, index))
        graph_inputs = _int32_vector(b, self.inputs if inputs is None else inputs)
        graph_outputs = _int32_vector(b, self.outputs if outputs is None else outputs)
        tensors = _offset_vector(b, tensor_offsets)
        operators = _offset_vector(b, op_offsets)
        name = b.CreateString(subgraph_name) if subgraph_name is not None else None
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors)
        tflite.SubGraphAddInputs(b, graph_inputs)
        tflite.SubGraphAddOutputs(b, graph_outputs)
        tflite.SubGraphAddOperators(b, operators)
        if name is not None:
            tflite.SubGraphAddName(b, name)
        return tflite.SubGraphEnd(b)

    def build(self, *, version: int = 3, subgraph_count: int = 1, file_identifier: bytes = b"TFL3",
              inputs: list[int] | None = None, outputs: list[int] | None = None, subgraph_name: str | None = None) -> bytes:
        """The .tflite file. subgraph_count: how many times subgraph 0 is listed (0 and 2 for fuzzing)."""
        b = flatbuffers.Builder(1024)
        buffers = [_buffer(b, None)]
        codes: dict[tuple, int] = {}
        graphs = [self._subgraph(b, buffers, codes, inputs, outputs, subgraph_name)]
        graphs += [child._subgraph(b, buffers, codes, None, None, None) for child in self.subgraphs]
        code_offsets = [_operator_code(b, *key) for key in codes]
        subgraphs = _offset_vector(b, graphs[:1] * subgraph_count + graphs[1:])
        operator_codes = _offset_vector(b, code_offsets)
        buffer_vector = _offset_vector(b, buffers)
        description = b.CreateString(self.description) if self.description is not None else None
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, version)
        tflite.ModelAddOperatorCodes(b, operator_codes)
        tflite.ModelAddSubgraphs(b, subgraphs)
        if description is not None:
            tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffer_vector)
        b.Finish(tflite.ModelEnd(b), file_identifier=file_identifier)
        return bytes(b.Output())


# --- flatbuffers pieces (each creates its children first: the builder does not nest) ---------------

def _int32_vector(b, values):
    return b.CreateNumpyVector(np.asarray(list(values), np.int32).reshape(-1))


def _offset_vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _buffer(b, data: bytes | None):
    vector = None
    if data is not None:
        b.StartVector(1, len(data), 16)  # 16-byte aligned, as the converter writes constants
        b.head -= len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        vector = b.EndVector()
    tflite.BufferStart(b)
    if vector is not None:
        tflite.BufferAddData(b, vector)
    return tflite.BufferEnd(b)


def _quantization(b, q: dict):
    vectors = {}
    for field, dtype in (("scale", np.float32), ("zero_point", np.int64), ("min", np.float32), ("max", np.float32)):
        if q.get(field) is not None:
            vectors[field] = b.CreateNumpyVector(np.atleast_1d(np.asarray(q[field], dtype)).reshape(-1))
    tflite.QuantizationParametersStart(b)
    for field, vector in vectors.items():
        getattr(tflite, f"QuantizationParametersAdd{_camel(field)}")(b, vector)
    if q.get("quantized_dimension") is not None:
        tflite.QuantizationParametersAddQuantizedDimension(b, q["quantized_dimension"])
    return tflite.QuantizationParametersEnd(b)


def _tensor(b, t: dict, buffer_index: int):
    name = b.CreateString(t["name"])
    shape = _int32_vector(b, t["shape"])
    signature = _int32_vector(b, t["shape_signature"]) if t["shape_signature"] is not None else None
    quantization = _quantization(b, t["quantization"]) if t["quantization"] is not None else None
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, t["dtype"])
    tflite.TensorAddBuffer(b, buffer_index)
    tflite.TensorAddName(b, name)
    if quantization is not None:
        tflite.TensorAddQuantization(b, quantization)
    if t["is_variable"]:
        tflite.TensorAddIsVariable(b, True)
    if signature is not None:
        tflite.TensorAddShapeSignature(b, signature)
    return tflite.TensorEnd(b)


def _operator_code(b, code: int, deprecated: int, version: int, custom_code):
    custom = b.CreateString(custom_code) if custom_code is not None else None
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, deprecated)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    tflite.OperatorCodeAddVersion(b, version)
    tflite.OperatorCodeAddBuiltinCode(b, code)
    return tflite.OperatorCodeEnd(b)


def _operator(b, op: dict, opcode_index: int):
    inputs = _int32_vector(b, op["inputs"])
    outputs = _int32_vector(b, op["outputs"])
    intermediates = _int32_vector(b, op["intermediates"]) if op["intermediates"] is not None else None
    options = _options(b, op["table"], op["options"]) if op["table"] is not None else None
    union, union_type = _union_of(op["table"]) if op["table"] is not None else ("builtin_options", 0)
    if isinstance(op["options_type"], int):
        union_type = op["options_type"]
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if union_type or options is not None:
        if union == "builtin_options":
            tflite.OperatorAddBuiltinOptionsType(b, union_type)
            if options is not None:
                tflite.OperatorAddBuiltinOptions(b, options)
        else:
            tflite.OperatorAddBuiltinOptions2Type(b, union_type)
            tflite.OperatorAddBuiltinOptions2(b, options)
    if intermediates is not None:
        tflite.OperatorAddIntermediates(b, intermediates)
    return tflite.OperatorEnd(b)


_ELEMENT = re.compile(r"number_types\.(\w+)Flags, a \+")


def _field_kind(table: str, field: str) -> tuple[str, str | None]:
    """("vector", element type name such as "Int32"), ("string", None) or ("scalar", None), from the
    generated reader's accessor for the field."""
    accessor = getattr(getattr(tflite, table), _camel(field), None)
    source = inspect.getsource(accessor) if accessor is not None else ""
    if hasattr(tflite, f"{table}Start{_camel(field)}Vector"):
        match = _ELEMENT.search(source)
        if not match:
            raise ValueError(f"{table}.{field}: a vector of tables is not supported")
        return "vector", match.group(1)
    if "self._tab.String(" in source:
        return "string", None
    return "scalar", None


def _enum_value(table: str, field: str, name: str) -> int:
    candidates = [_FIELD_ENUMS.get(field), table + _camel(field), table.removesuffix("Options") + _camel(field),
                  _camel(field)]
    for candidate in candidates:
        enum_class = getattr(tflite, candidate, None) if candidate else None
        if isinstance(enum_class, type) and name.upper() in _enum_names(enum_class):
            return _enum_names(enum_class)[name.upper()]
    raise ValueError(f"{table}.{field}: no enum has a member {name!r}")


def _options(b, table: str, options: dict):
    """The options table with the given fields (schema names), children first."""
    values = {}
    for field, value in options.items():
        adder = getattr(tflite, f"{table}Add{_camel(field)}", None)
        if adder is None:
            fields = sorted(n[len(table) + 3:] for n in dir(tflite) if n.startswith(f"{table}Add"))
            raise ValueError(f"{table} has no field {field!r} (its fields: {', '.join(fields)})")
        kind, element = _field_kind(table, field)
        if kind == "vector":
            values[adder] = b.CreateNumpyVector(np.asarray(list(value), np.dtype(element.lower())).reshape(-1))
        elif kind == "string":
            values[adder] = b.CreateString(value)
        elif isinstance(value, str):
            values[adder] = _enum_value(table, field, value)
        else:
            values[adder] = value.item() if isinstance(value, np.generic) else value
    getattr(tflite, f"{table}Start")(b)
    for adder, value in values.items():
        adder(b, value)
    return getattr(tflite, f"{table}End")(b)
