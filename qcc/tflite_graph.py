"""Reading a .tflite file: its subgraphs as plain Python values, checked before anything uses it.

The flatbuffer is read with the `tflite` package (the TFLite schema's generated Python over
`flatbuffers`). That reader trusts its input: a corrupt offset raises from deep inside it, and a
corrupt length can ask for gigabytes. So every access happens here, inside one guard, and every
value that later code indexes with (tensor and buffer indices, shapes, buffer sizes, quantization
parameters, op codes) is checked against the file before it is returned. What comes out is a
TfliteModel whose tensors' constant data and quantization are numpy arrays of the sizes their
shapes say, and whose operators name their builtin op and carry their options as a dict. The model is
subgraph 0 (what an inference runs); the others, which only CALL_ONCE may run (the initialisation of
resource variables), come as `subgraphs`, each a TfliteModel of its own.

It is the TFLite counterpart of onnx_graph.py: the op modules read operators through it
(`TfliteOperator`), and qcc/frontend/tflite/ builds the IR from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Padding import Padding
from tflite.TensorType import TensorType

from qcc.errors import QccError
from qcc.ir import MAX_TENSOR_ELEMENTS

FILE_IDENTIFIER = b"TFL3"
# The TensorFlow Lite Micro build whose reference kernels define what a .tflite computes in qcc:
# the `tflite-micro` wheel the tests run (qcc/runtimes/tflm.py checks the installed one).
TFLM_VERSION = "0.dev20261023182759"

_OPERATOR_NAMES = {code: name for name, code in vars(BuiltinOperator).items() if not name.startswith("_")}
_OPTIONS_NAMES = {code: name for name, code in vars(BuiltinOptions).items() if not name.startswith("_")}
_TYPE_NAMES = {code: name for name, code in vars(TensorType).items() if not name.startswith("_")}
ACTIVATIONS = {code: name for name, code in vars(ActivationFunctionType).items() if not name.startswith("_")}
PADDINGS = {code: name for name, code in vars(Padding).items() if not name.startswith("_")}
# TFLite element types qcc reads, as the IR's dtype names.
DTYPES = {TensorType.INT8: "int8", TensorType.UINT8: "uint8", TensorType.INT16: "int16",
          TensorType.INT32: "int32", TensorType.INT64: "int64", TensorType.FLOAT32: "float32", TensorType.BOOL: "bool"}
_NUMPY = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
          "float32": np.float32, "bool": np.bool_}
_MAX_OPERATORS = 100_000  # no microcontroller model has more; a corrupt count is refused before any loop
_MAX_SUBGRAPHS = 1_000
# Operators TFLM defines with no output tensor.
NO_OUTPUT_OPS = ("ASSIGN_VARIABLE", "CALL_ONCE")
_MAX_RANK = 8


@dataclass
class TfliteQuant:
    """r = scale * (q - zero_point), per tensor (one scale) or per slice along `axis`."""
    scale: np.ndarray  # float32, shape (n,)
    zero_point: np.ndarray  # int64, shape (n,)
    axis: int  # TFLite's quantized_dimension (meaningful when n > 1)

    @property
    def per_axis(self) -> bool:
        return self.scale.size > 1


@dataclass
class TfliteTensor:
    index: int
    name: str  # the model's name, decoded; never trusted in C (the backend escapes every name)
    dtype: str  # "int8", ..., or the TensorType name of a type qcc does not read ("FLOAT16", ...)
    shape: tuple[int, ...]
    data: np.ndarray | None  # constants: the buffer's values in `shape`
    quant: TfliteQuant | None
    is_variable: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class TfliteOperator:
    index: int  # position in the subgraph's operator list (the order TFLM runs them in)
    code: str  # the BuiltinOperator name, e.g. "CONV_2D"
    version: int
    inputs: list[int]  # tensor indices; -1 marks an omitted optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)  # the builtin options table's fields, snake_case
    custom_code: str = ""


@dataclass
class TfliteModel:
    source: str
    name: str
    description: str
    tensors: list[TfliteTensor]
    operators: list[TfliteOperator]
    inputs: list[int]
    outputs: list[int]
    index: int = 0  # the subgraph's position in the file
    # subgraph 0 only: subgraphs 1, 2, ... (subgraphs[k - 1] is subgraph k)
    subgraphs: list[TfliteModel] = field(default_factory=list)

    def label(self, operator: TfliteOperator) -> str:
        """How messages name an operator: TFLite operators have no names, so its position and its
        first output's name."""
        out = self.tensors[operator.outputs[0]].name if operator.outputs else ""
        where = f"subgraph {self.index}, " if self.index else ""
        return f"{self.source}: {where}operator {operator.index} ({operator.code}{' v' + str(operator.version)}" + (
            f", output '{out}')" if out else ")")


def is_tflite(path: str | Path) -> bool:
    """A TFLite flatbuffer: its file identifier (bytes 4..8) is TFL3, whatever the file's extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == FILE_IDENTIFIER


def read_tflite(path: str | Path) -> TfliteModel:
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise QccError(f"{path}: no such file")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise QccError(f"{path}: not a TFLite model (no TFL3 file identifier); give a .tflite file")
    try:
        return _Reader(data, source).model()
    except QccError:
        raise
    except Exception as error:  # the generated reader trusts offsets: anything it raises means corrupt bytes
        detail = " ".join(str(error).split())[:120]
        raise QccError(f"{path}: not a valid .tflite file: its flatbuffer is corrupt ({type(error).__name__}"
                       f"{': ' + detail if detail else ''}); export the model again") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # DilationHFactor -> dilation_h_factor


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.source = data, source
        self.root = tflite.Model.GetRootAs(data, 0)

    def fail(self, message: str):
        raise QccError(f"{self.source}: {message}")

    def count(self, length: int, what: str, limit: int | None = None) -> int:
        """A vector's length, refused where it cannot fit the file (a corrupt length would make
        every loop over it run for hours)."""
        if length < 0 or length > len(self.data) or (limit is not None and length > limit):
            self.fail(f"{what} has {length} entries, which cannot be right for a {len(self.data)}-byte file; "
                      "the file is corrupt")
        return length

    def model(self) -> TfliteModel:
        root = self.root
        subgraphs = self.count(root.SubgraphsLength(), "the subgraph list")
        if subgraphs == 0:
            self.fail("the model has no subgraph")
        self.count(subgraphs, "the subgraph list", _MAX_SUBGRAPHS)
        codes = [self.operator_code(root.OperatorCodes(i), i)
                 for i in range(self.count(root.OperatorCodesLength(), "the operator code list"))]
        buffers = [root.Buffers(i) for i in range(self.count(root.BuffersLength(), "the buffer list"))]
        description = (root.Description() or b"").decode("utf-8", "replace")
        graphs = [self.subgraph(root.Subgraphs(k), k, codes, buffers, description) for k in range(subgraphs)]
        graphs[0].subgraphs = graphs[1:]
        return graphs[0]

    def subgraph(self, graph, index: int, codes: list, buffers: list, description: str) -> TfliteModel:
        where = "" if index == 0 else f"subgraph {index}: "
        tensors = [self.tensor(graph.Tensors(i), i, buffers, where)
                   for i in range(self.count(graph.TensorsLength(), f"{where}the tensor list"))]
        operators = [self.operator(graph.Operators(i), i, codes, len(tensors), where)
                     for i in range(self.count(graph.OperatorsLength(), f"{where}the operator list", _MAX_OPERATORS))]
        inputs = self.indices(graph.InputsAsNumpy() if graph.InputsLength() else [], len(tensors),
                              f"{where}the model's inputs")
        outputs = self.indices(graph.OutputsAsNumpy() if graph.OutputsLength() else [], len(tensors),
                               f"{where}the model's outputs")
        if -1 in inputs or -1 in outputs or (index == 0 and not outputs):
            self.fail(f"{where}the model's input or output list is empty or names no tensor")
        name = (graph.Name() or b"").decode("utf-8", "replace")
        return TfliteModel(self.source, name or "model", description, tensors, operators, inputs, outputs, index)

    def operator_code(self, code, index: int) -> tuple[str, int, str]:
        # Since schema 3a the code is builtin_code; older files only fill the deprecated int8 field
        # (the converter writes both, the deprecated one capped at 127).
        number = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        name = _OPERATOR_NAMES.get(number)
        if name is None:
            self.fail(f"operator code {index} is builtin op {number}, which this TFLite schema does not know; "
                      "the file is newer than qcc or corrupt")
        custom = (code.CustomCode() or b"").decode("utf-8", "replace") if name == "CUSTOM" else ""
        return name, int(code.Version()), custom

    def indices(self, values, tensor_count: int, what: str) -> list[int]:
        values = [int(v) for v in np.asarray(values).reshape(-1)]
        bad = [v for v in values if not -1 <= v < tensor_count]
        if bad:
            self.fail(f"{what} name tensor {bad[0]}, but the model has {tensor_count} tensors; the file is corrupt")
        return values

    def tensor(self, t, index: int, buffers: list, where: str = "") -> TfliteTensor:
        name = (t.Name() or b"").decode("utf-8", "replace")
        label = f"{where}tensor {index}" + (f" '{name}'" if name else "")
        type_code = int(t.Type())
        dtype = DTYPES.get(type_code) or _TYPE_NAMES.get(type_code, f"type {type_code}")
        rank = self.count(t.ShapeLength(), f"{label}: its shape", _MAX_RANK)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if rank else ()
        if any(d < 0 for d in shape):  # 0 is an empty tensor (an LSTM's unused intermediates): the op refuses it
            signature = list(t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else []
            hint = " (a dynamic dimension: give the model a fixed shape when converting it)" if -1 in signature else ""
            self.fail(f"{label} has shape {list(shape)}, with a negative dimension{hint}")
        if int(np.prod(shape, dtype=np.float64)) > MAX_TENSOR_ELEMENTS:
            self.fail(f"{label} has shape {list(shape)}: more than 2^28 elements, qcc's limit per tensor")
        if t.Sparsity() is not None:
            self.fail(f"{label} is stored sparse; qcc reads dense tensors: convert the model without sparsity")
        data = self.constant(t, label, dtype, shape, buffers)
        quant = self.quantization(t.Quantization(), label, dtype, shape)
        return TfliteTensor(index, name, dtype, shape, data, quant, bool(t.IsVariable()))

    def constant(self, t, label: str, dtype: str, shape, buffers: list) -> np.ndarray | None:
        buffer_index = int(t.Buffer())
        if not 0 <= buffer_index < max(len(buffers), 1):
            self.fail(f"{label} names buffer {buffer_index}, but the model has {len(buffers)} buffers; the file is corrupt")
        if not buffers:
            return None
        buffer = buffers[buffer_index]
        offset, size = int(buffer.Offset()), int(buffer.Size())
        if offset > 1:  # large models keep the data after the flatbuffer, at an offset from the file's start
            if offset + size > len(self.data):
                self.fail(f"{label}: its buffer {buffer_index} lies past the end of the file ({offset} + {size} bytes)")
            raw = np.frombuffer(self.data, np.uint8, count=size, offset=offset)
        elif buffer.DataLength():
            raw = buffer.DataAsNumpy()
        else:
            return None
        if dtype not in _NUMPY:
            self.fail(f"{label} is a constant of type {dtype}, which qcc does not read")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_NUMPY[dtype]).itemsize
        if raw.size != expected:
            self.fail(f"{label}: its buffer {buffer_index} holds {raw.size} bytes, but its shape {list(shape)} of "
                      f"{dtype} needs {expected}; the file is corrupt")
        return np.frombuffer(raw.tobytes(), dtype=np.dtype(_NUMPY[dtype]).newbyteorder("<")).astype(
            _NUMPY[dtype]).reshape(shape)

    def quantization(self, q, label: str, dtype: str, shape) -> TfliteQuant | None:
        if q is None or (q.ScaleLength() == 0 and q.ZeroPointLength() == 0):
            return None
        scales = self.count(q.ScaleLength(), f"{label}: its scales")
        zeros = self.count(q.ZeroPointLength(), f"{label}: its zero points")
        if scales == 0:
            self.fail(f"{label} has zero points but no scale")
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero = q.ZeroPointAsNumpy().astype(np.int64) if zeros else np.zeros(scales, np.int64)
        if zero.size != scale.size:
            self.fail(f"{label} has {scale.size} scales but {zero.size} zero points")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            self.fail(f"{label}: its scale {scale.tolist()[:4]} must be positive and finite")
        if np.any(scale < np.finfo(np.float32).tiny):
            self.fail(f"{label}: its scale {float(scale.min()):g} is subnormal (below 2^-126); give a normal float32 scale")
        axis = int(q.QuantizedDimension())
        if scale.size > 1 and len(shape) == 1 and shape[0] == scale.size:
            axis = 0  # converters write a per-channel bias with its filter's dimension (3): it can only mean 0
        if scale.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scale.size):
            self.fail(f"{label} has {scale.size} scales along dimension {axis} of its shape {list(shape)}; "
                      "they must match that dimension's size")
        limits = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}.get(dtype)
        if limits is not None and (zero.min() < limits[0] or zero.max() > limits[1]):
            self.fail(f"{label}: its zero point {int(zero.min() if zero.min() < limits[0] else zero.max())} "
                      f"lies outside the {dtype} range")
        return TfliteQuant(scale, zero, axis)

    def operator(self, op, index: int, codes: list, tensor_count: int, where: str = "") -> TfliteOperator:
        code_index = int(op.OpcodeIndex())
        if not 0 <= code_index < len(codes):
            self.fail(f"{where}operator {index} names operator code {code_index}, but the model has {len(codes)}; "
                      "the file is corrupt")
        name, version, custom = codes[code_index]
        label = f"{where}operator {index} ({name})"
        inputs = self.indices(op.InputsAsNumpy() if op.InputsLength() else [], tensor_count, f"{label}: its inputs")
        outputs = self.indices(op.OutputsAsNumpy() if op.OutputsLength() else [], tensor_count, f"{label}: its outputs")
        if (not outputs and name not in NO_OUTPUT_OPS) or -1 in outputs:
            self.fail(f"{label} has no output tensor; the file is corrupt")
        return TfliteOperator(index, name, version, inputs, outputs, self.options(op, label), custom)

    def options(self, op, label: str) -> dict:
        """The builtin options table as {snake_case field: value}; vectors as lists."""
        kind = int(op.BuiltinOptionsType())
        if kind == 0:
            return {}
        table_name = _OPTIONS_NAMES.get(kind)
        table_class = getattr(tflite, table_name, None) if table_name else None
        if table_class is None:
            self.fail(f"{label} has builtin options of unknown kind {kind}; the file is newer than qcc or corrupt")
        table = op.BuiltinOptions()
        options = table_class()
        options.Init(table.Bytes, table.Pos)
        values = {}
        for method in dir(table_class):
            if (method.startswith("_") or not method[0].isupper() or method in ("Init",) or method.startswith("GetRootAs")
                    or method.endswith(("BufferHasIdentifier", "Length", "IsNone", "AsNumpy"))):
                continue
            if hasattr(table_class, method + "AsNumpy"):
                length = self.count(getattr(options, method + "Length")(), f"{label}: its option {_snake(method)}")
                values[_snake(method)] = [int(v) for v in getattr(options, method + "AsNumpy")()] if length else []
            else:
                values[_snake(method)] = getattr(options, method)()
        return values
