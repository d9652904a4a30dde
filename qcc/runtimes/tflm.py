"""TensorFlow Lite Micro, the ground truth for .tflite models: qcc's C must equal what TFLM's
reference kernels compute, in the pinned `tflite-micro` wheel's Python interpreter.

- `run(model, inputs)` / `run_many(model, cases)`: outputs of one inference / of several.
- `run_with_intermediates(model, inputs, tensor_indices)`: values of any tensors of subgraph 0.
- `with_extra_outputs(model, tensor_indices)`: the model with those tensors added to its outputs.
- `arena(model)`: the arena TFLM itself uses for the model (`print_allocations()`).

Facts about the wheel that this module relies on (all checked on its version, `PINNED_TFLM_VERSION`):

- Inputs must have exactly the input tensor's dtype and shape (TFLM compares the type and every
  dimension; it never casts). `run` checks both first and names the input when they differ.
- TFLM reports errors by printing them (MicroPrintf, to the process's file descriptor 2) and
  raising a RuntimeError that only says "TFLM failed to allocate tensors" or "Interpreter invocation
  failed.". Each call into TFLM here runs with fd 2 redirected to a file, and a failure raises
  `TflmError` carrying both; what TFLM prints during a call that succeeds is written back to stderr.
  The redirection is process-wide while a call runs (a lock orders this module's own calls), so
  another thread's stderr output in that window would be attributed to the call.
- The wrapper's methods hold the GIL: TFLM calls from several threads run one after the other.
- TFLM does not verify the flatbuffer: a malformed model can crash the process. Run it only on
  models a verifier (or qcc's reader) accepted, or in a child process.
- `import tflite_micro` takes about 0.2 s (its schema module and the compression package, with
  PyYAML) and starts no thread. It works beside onnxruntime in one process, in either import order.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

# flatbuffers is tflite_micro's own dependency (its schema module is generated code over it).
import flatbuffers
import numpy as np
from tflite_micro.python.tflite_micro import runtime as _runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as _fb

from qcc.tflite_graph import TFLM_VERSION as TFLM_BUILD

PINNED_TFLM_VERSION = TFLM_BUILD  # qcc/tflite_graph.py: the build the generated C is exact to
TFLM_VERSION = importlib.metadata.version("tflite-micro")


class TflmError(RuntimeError):
    """TFLM refused the model or failed to run it; the message has TFLM's own lines."""


def check_version() -> None:
    """Exactness for .tflite models is promised against one TFLM build: refuse any other."""
    if TFLM_VERSION != PINNED_TFLM_VERSION:
        raise RuntimeError(
            f"tflite-micro {TFLM_VERSION} is installed, but qcc's .tflite results are checked against "
            f"tflite-micro {PINNED_TFLM_VERSION}: pip install 'tflite-micro=={PINNED_TFLM_VERSION}'")


# --- the model, as far as running it needs ------------------------------------------------------

def _numpy_dtypes() -> dict[int, np.dtype]:
    """TFLite TensorType value -> numpy dtype, for the types numpy has (FLOAT32 -> float32, BOOL -> bool...)."""
    dtypes = {}
    for name, value in vars(_fb.TensorType).items():
        if name.isupper():
            with contextlib.suppress(TypeError):
                dtypes[value] = np.dtype(name.lower())
    return dtypes


_DTYPES = _numpy_dtypes()


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]
    dtype: np.dtype | None  # None: a type numpy lacks (INT4, STRING, RESOURCE...)
    constant: bool


@dataclass(frozen=True)
class _Model:
    inputs: tuple[int, ...]       # subgraph 0's
    outputs: tuple[int, ...]
    tensors: tuple[_Tensor, ...]  # subgraph 0's
    used: frozenset[int]          # subgraph 0's tensors that TFLM allocates: inputs, outputs, operands
    activation_bytes: int         # every non-constant tensor of every subgraph, 16-byte aligned
    structures: int               # tensors and operators of every subgraph


def _read(model: bytes) -> _Model:
    try:
        return _read_flatbuffer(model)
    except (IndexError, ValueError, TypeError, OverflowError, struct.error) as e:
        raise ValueError(f"not a readable .tflite flatbuffer ({type(e).__name__}: {e})") from None


def _read_flatbuffer(model: bytes) -> _Model:
    root = _fb.Model.GetRootAs(model, 0)
    if root.SubgraphsLength() == 0:
        raise ValueError("the model has no subgraph")
    activation_bytes = structures = 0
    graph = None
    for s in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(s)
        tensors = []
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            buffer = tensor.Buffer()
            constant = 0 < buffer < root.BuffersLength() and root.Buffers(buffer).DataLength() > 0
            dtype = _DTYPES.get(tensor.Type())
            tensors.append(_Tensor(shape, dtype, constant))
            if not constant:
                elements = math.prod(max(d, 1) for d in shape)
                activation_bytes += elements * (dtype.itemsize if dtype is not None else 8) + 16
        structures += subgraph.TensorsLength() + subgraph.OperatorsLength()
        if s == 0:
            inputs = tuple(int(i) for i in subgraph.InputsAsNumpy()) if subgraph.InputsLength() else ()
            outputs = tuple(int(i) for i in subgraph.OutputsAsNumpy()) if subgraph.OutputsLength() else ()
            used = set(inputs) | set(outputs)
            for o in range(subgraph.OperatorsLength()):
                op = subgraph.Operators(o)
                for vector in (op.InputsAsNumpy(), op.OutputsAsNumpy(), op.IntermediatesAsNumpy()):
                    if isinstance(vector, np.ndarray):
                        used.update(int(i) for i in vector if i >= 0)
            graph = (inputs, outputs, tuple(tensors), frozenset(used))
    return _Model(*graph, activation_bytes=activation_bytes, structures=structures)


# --- calling TFLM -------------------------------------------------------------------------------

_STDERR_LOCK = threading.Lock()


def _call(function, *args):
    """function(*args) with fd 2 captured: TFLM prints its errors there. A failure becomes TflmError
    with the wrapper's exception text and TFLM's lines; after a success the lines go to stderr."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            result, error = function(*args), None
        except Exception as e:  # the wrapper raises RuntimeError, ValueError, IndexError
            result, error = None, e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        printed = captured.read().decode("utf-8", "replace").replace("\r\n", "\n")  # DebugLog ends lines with \r\n
    if error is not None:
        lines = printed.strip()
        raise TflmError(f"TFLM: {error}" + (f"\n{lines}" if lines else "")) from error
    if printed:
        sys.stderr.write(printed)
    return result


# Reference kernels' scratch (e.g. TRANSPOSE_CONV's int32 accumulators) is at most 4 bytes per
# activation byte; persistent data (per-channel multipliers and shifts, op data) at most 8 bytes per
# model byte; a few hundred bytes of structures per tensor and operator. The arena is allocated and
# never written beyond what TFLM uses, so a generous size costs address space only.
_MAX_ARENA = 1 << 30
_SHORT_OF_ARENA = re.compile(r"Failed to (resize buffer|allocate)|missing: \d+")


def _arena_sizes(model: bytes, info: _Model):
    """Arena sizes to try, in 4 KiB pages: TFLM places persistent data downwards from the arena's end,
    aligned, so an end that is not 16-byte aligned would add padding to the tail it reports."""
    estimate = (1 << 20) + 4 * info.activation_bytes + 8 * len(model) + 1024 * info.structures
    size = min(_MAX_ARENA, -(-estimate // 4096) * 4096)
    yield size
    while size < _MAX_ARENA:  # the estimate fell short: grow and retry
        size = min(_MAX_ARENA, size * 8)
        yield size


def _interpreter(model: bytes, info: _Model, preserve_all_tensors: bool = False):
    """A TFLM interpreter for the model, tensors allocated, with an arena that suffices."""
    config = (_runtime.InterpreterConfig.kPreserveAllTensors if preserve_all_tensors
              else _runtime.InterpreterConfig.kAllocationRecording)
    for size in _arena_sizes(model, info):
        try:
            return _call(_runtime.Interpreter.from_bytes, model, None, size, config)
        except TflmError as e:
            if size >= _MAX_ARENA or not _SHORT_OF_ARENA.search(str(e)):
                raise
    raise AssertionError("unreachable")


def _set_inputs(interpreter, info: _Model, inputs) -> None:
    if len(inputs) != len(info.inputs):
        raise ValueError(f"the model has {len(info.inputs)} inputs, {len(inputs)} were given")
    for position, (tensor_index, value) in enumerate(zip(info.inputs, inputs)):
        value = np.ascontiguousarray(value)
        tensor = info.tensors[tensor_index]
        if tensor.dtype is not None and value.dtype != tensor.dtype:
            raise ValueError(f"input {position} (tensor {tensor_index}) is {tensor.dtype}, {value.dtype} was given")
        if value.shape != tensor.shape:
            raise ValueError(f"input {position} (tensor {tensor_index}) has shape {tensor.shape}, "
                             f"{value.shape} was given")
        _call(interpreter.set_input, value, position)


def run(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One inference on TFLM's reference kernels: inputs in the model's input order, each with the
    input's dtype and shape; the outputs in the model's output order, with their dtypes."""
    return run_many(model, [inputs])[0]


def run_many(model: bytes, cases: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """`run` for each case, on one interpreter. reset() runs between cases: a stateless model gives
    the same outputs without it (checked on the MLPerf Tiny and TFLM example networks), but a model with state
    (variable tensors, or the signal library's noise estimators, as in TFLM's audio_preprocessor)
    would carry it from one case to the next, and each case must equal a fresh `run`."""
    model = bytes(model)
    info = _read(model)
    interpreter = _interpreter(model, info)
    results = []
    for number, inputs in enumerate(cases):
        if number:
            _call(interpreter.reset)
        _set_inputs(interpreter, info, inputs)
        _call(interpreter.invoke)
        # np.asarray: the wrapper returns a numpy scalar for a 0-d output
        results.append([np.asarray(_call(interpreter.get_output, i)) for i in range(len(info.outputs))])
    return results


def run_frames(model: bytes, frames: list[list[np.ndarray]], reset_before: int | None = None) -> list[list[np.ndarray]]:
    """Consecutive inferences on one interpreter, its state (resource variables) carried from each to the
    next, with reset() before frame `reset_before` (None: never): a streaming model's frames."""
    model = bytes(model)
    info = _read(model)
    interpreter = _interpreter(model, info)
    results = []
    for number, inputs in enumerate(frames):
        if number == reset_before:
            _call(interpreter.reset)
        _set_inputs(interpreter, info, inputs)
        _call(interpreter.invoke)
        results.append([np.array(_call(interpreter.get_output, i), copy=True) for i in range(len(info.outputs))])
    return results


def run_with_intermediates(model: bytes, inputs: list[np.ndarray], tensor_indices: list[int]) -> dict[int, np.ndarray]:
    """The values of subgraph 0's tensors `tensor_indices` after one inference.

    The default interpreter's arena reuses a tensor's bytes once its last reader ran, and the wrapper
    refuses GetTensor() there. This builds the interpreter with kPreserveAllTensors instead: TFLM's
    linear memory planner gives every tensor bytes of its own, the kernels are the same, and
    GetTensor() reads the tensor after invoke. On every tensor of the MLPerf Tiny and TFLM example
    networks, this equals the output of a model whose only extra output is that tensor
    (`with_extra_outputs`), except the elements a kernel leaves unwritten, which are whatever the
    arena held (the signal library's ENERGY writes only its [start_index, end_index) range).

    Limits of that planner: at most 1024 buffers, and it refuses models with an offline memory plan
    (OfflineMemoryAllocation metadata); `with_extra_outputs` and `run` handle both."""
    model = bytes(model)
    info = _read(model)
    for index in tensor_indices:
        if not 0 <= index < len(info.tensors):
            raise IndexError(f"tensor {index}: subgraph 0 has {len(info.tensors)} tensors")
        if index not in info.used and not info.tensors[index].constant:
            raise ValueError(f"tensor {index} is no operator's operand nor a graph input or output: TFLM gives it no memory")
    interpreter = _interpreter(model, info, preserve_all_tensors=True)
    _set_inputs(interpreter, info, inputs)
    _call(interpreter.invoke)
    return {index: np.asarray(_call(interpreter.GetTensor, index, 0)["tensor_data"]) for index in tensor_indices}


# --- rewriting the model ------------------------------------------------------------------------

class _AlignedBufferT(_fb.BufferT):
    """A buffer whose data starts 16-byte aligned, as the converter writes them (kernels read int32
    biases and other constants in place)."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            payload = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(payload), 16)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            data = builder.EndVector()
        _fb.BufferStart(builder)
        if data is not None:
            _fb.BufferAddData(builder, data)
        _fb.BufferAddOffset(builder, self.offset)
        _fb.BufferAddSize(builder, self.size)
        return _fb.BufferEnd(builder)


def with_extra_outputs(model: bytes, tensor_indices: list[int]) -> bytes:
    """The model with subgraph 0's outputs extended by `tensor_indices` (those not outputs already,
    in the given order, after the original outputs). The greedy planner keeps outputs alive to the
    end, so TFLM returns their values. Repacked with the wheel's schema object API (ModelT)."""
    root = _fb.ModelT.InitFromObj(_fb.Model.GetRootAs(model, 0))
    subgraph = root.subgraphs[0]
    outputs = [int(i) for i in (subgraph.outputs if subgraph.outputs is not None else [])]
    for index in tensor_indices:
        if int(index) not in outputs:
            outputs.append(int(index))
    subgraph.outputs = outputs
    for buffer in root.buffers or []:
        buffer.__class__ = _AlignedBufferT
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --- the arena ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TflmArenaCategory:
    """One of print_allocations()' lines: "'<name>' used <used> bytes with alignment overhead
    (requested <requested> bytes for <count> <unit>)"."""
    name: str       # e.g. "Persistent buffer data"
    used: int       # bytes, with alignment
    requested: int  # bytes
    count: int
    unit: str       # e.g. "allocations", "tensors", "NodeAndRegistration structs"


@dataclass(frozen=True)
class TflmArena:
    """The arena TFLM uses for a model, as its RecordingMicroAllocator counts it after
    AllocateTensors() (invoke() allocates nothing more: the numbers after an invoke are the same).

    head: the non-persistent section, its high-water mark: every tensor that is not a constant
      (inputs and outputs included) as the greedy planner lays them out, and kernels' scratch buffers.
      Sizes and alignment (16 bytes) do not depend on the host, so an MCU running the same (reference)
      kernels needs the same head.
    tail: the persistent section: TfLiteEvalTensor and TfLiteTensor structs, node and registration
      structs, op data, per-channel multipliers and shifts, the allocator and planner themselves.
      Those hold pointers and size_t: on this 64-bit host the tail is larger than on a 32-bit MCU.
    total: head + tail, what a `tensor_arena` must hold (plus up to 16 bytes if it is not 16-byte aligned).
    categories: the per-category lines, in TFLM's order (categories with nothing allocated are not printed).
    """
    total: int
    head: int
    tail: int
    categories: tuple[TflmArenaCategory, ...]

    def category(self, name: str) -> TflmArenaCategory | None:
        return next((c for c in self.categories if c.name == name), None)


# print_allocations() writes from C++ to fd 2; a child process keeps that out of this one.
_ARENA_CHILD = """\
import sys
from tflite_micro.python.tflite_micro import runtime
model = sys.stdin.buffer.read()
try:
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[1]))
except Exception as e:
    sys.stderr.flush()
    print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
    sys.exit(3)
interpreter.print_allocations()
"""
_PREFIX = r"\[RecordingMicroAllocator\] "
_SECTION = re.compile(_PREFIX + r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(_PREFIX + r"'(.+)' used (\d+) bytes with alignment overhead "
                       r"\(requested (\d+) bytes for (\d+) (.+)\)")


def arena(model: bytes, timeout: float = 300) -> TflmArena:
    """TFLM's own arena usage for the model (see TflmArena), from print_allocations() in a child process."""
    model = bytes(model)
    info = _read(model)
    for size in _arena_sizes(model, info):
        child = subprocess.run([sys.executable, "-c", _ARENA_CHILD, str(size)], input=model,
                               capture_output=True, timeout=timeout)
        printed = child.stderr.decode("utf-8", "replace").replace("\r\n", "\n")
        if child.returncode == 0:
            return _parse_allocations(printed)
        if child.returncode < 0:
            raise TflmError(f"TFLM: the child process died of signal {-child.returncode}\n{printed.strip()}")
        if size >= _MAX_ARENA or not _SHORT_OF_ARENA.search(printed):
            raise TflmError(f"TFLM: {printed.strip()}")
    raise AssertionError("unreachable")


def _parse_allocations(printed: str) -> TflmArena:
    sections = {m.group(1): int(m.group(2)) for m in _SECTION.finditer(printed)}
    categories = tuple(TflmArenaCategory(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
                       for m in _CATEGORY.finditer(printed))
    if set(sections) != {"total", "head", "tail"} or sections["total"] != sections["head"] + sections["tail"]:
        raise TflmError(f"TFLM: unexpected print_allocations() output:\n{printed.strip()}")
    return TflmArena(sections["total"], sections["head"], sections["tail"], categories)


class Session:
    """One interpreter kept for repeated inferences of one input set (for timing, beside ONNX Runtime's
    session): `run(None, inputs)` sets the inputs and invokes once, as onnxruntime's `run(None, feeds)`."""

    def __init__(self, model: bytes):
        self.model = bytes(model)
        self.info = _read(self.model)
        self.interpreter = _interpreter(self.model, self.info)

    def run(self, _output_names, inputs: list[np.ndarray]) -> None:
        _set_inputs(self.interpreter, self.info, inputs)
        _call(self.interpreter.invoke)

    def configuration(self) -> str:
        return f"TensorFlow Lite Micro {TFLM_VERSION}, reference kernels (the tflite-micro wheel's interpreter)"
