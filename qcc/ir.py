"""The typed graph every stage reads: tensors with dtype, shape and quantization, ops with attributes.

The frontend builds it from ONNX, the passes rewrite it and fill in compile-time constants
(`Node.params`), and two consumers read the result: the numpy reference interpreter and the C
backend. Quantization parameters live on tensors, so an op's inputs are only its data tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ONNX element types that qcc reads, by name; the name doubles as the numpy dtype.
QUANTIZED_DTYPES = ("int8", "uint8")
DTYPE_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}
# Every code type, with the 16-bit activations of TFLM's 16x8 kernels. Only ops that compile int16 read it:
# elsewhere `dtype in DTYPE_RANGE` means an 8-bit code.
CODE_RANGE = {**DTYPE_RANGE, "int16": (-32768, 32767)}
# Elements of one activation tensor: more fits no microcontroller and takes no reasonable compile.
MAX_TENSOR_ELEMENTS = 2**28
# The suffix of the runtime kernels for each code type (qcc_maxpool_s8, qcc_maxpool_s16, ...).
KERNEL_SUFFIX = {"int8": "s8", "uint8": "u8", "int16": "s16"}
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t", "float32": "float"}


@dataclass
class QuantParams:
    """r = scale * (q - zero_point); per-tensor when `axis` is None, else per slice along `axis`."""

    scale: np.ndarray  # float32, shape () or (channels,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def scalar(self) -> tuple[np.float32, int]:
        """(scale, zero point) of a per-tensor quantization."""
        return np.float32(self.scale.reshape(-1)[0]), int(self.zero_point.reshape(-1)[0])


@dataclass
class Tensor:
    name: str
    dtype: str  # "int8", "uint8", "int32", "int64" or "float32"
    shape: tuple[int, ...]
    data: np.ndarray | None = None  # set for constants (initializers and folded values)
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    op: str  # the qcc op name, which is also its key in the op registry (qcc.ops.base)
    name: str  # the ONNX node name (or a generated one), used in messages and the manifest
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)  # what the model says
    params: dict[str, Any] = field(default_factory=dict)  # what qcc computed at compile time


@dataclass
class StateVariable:
    """Bytes that persist from one inference to the next: a TFLite resource variable (qcc/ops/state.py).
    The C keeps them in a static buffer of their own, apart from the arena."""
    name: str  # the IR tensor of its value as the inference starts (what READ_VARIABLE reads)
    written: str | None  # the IR tensor AssignState writes, in the same bytes (None: nothing assigns it)
    fill: int  # the byte each of its bytes holds before the first inference and after a reset (TFLM's zero point)
    first_call: np.ndarray | None  # what CALL_ONCE's initialisation assigns as the first inference starts, or None
    label: str  # the variable's shared name, for messages and comments


@dataclass
class Graph:
    name: str
    source: str  # the model file, for messages
    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    # The name a graph input or output has in the model, when its tensor moved across a boundary
    # op (the float input of a QuantizeLinear becomes the quantized C input, and so on).
    public_names: dict[str, str] = field(default_factory=dict)
    rounding: str = "ort"  # the requantization scheme (qcc.numerics.SCHEMES) the passes prepare for
    fpu: bool = False  # --fpu: the C requantizes the `ort` scheme with float32 instructions
    opset: int = 13  # the model's default-domain opset: ops whose meaning changed across versions read it
    # --io-in-arena: the inputs and outputs are arena buffers (as in TFLM) instead of the caller's arguments
    io_in_arena: bool = False
    wide_weights: bool = False  # --wide-weights: fully connected and gemm convolution weights as int16 pairs in flash
    frontend: str = "onnx"  # the model's format: "onnx" (ONNX Runtime defines it) or "tflite" (TFLite Micro does)
    # TFLite models: the model's tensor each IR tensor holds, as (tensor index, layout): "tflite" (the model's
    # own order) or "nchw" (a 4-D tensor channels first), for comparing layers with TFLM.
    tflite_tensors: dict[str, tuple[int, str]] = field(default_factory=dict)
    states: list[StateVariable] = field(default_factory=list)  # persistent between inferences, in the model's order
    # --state pairs: the graph's inputs and outputs before the pairs became state (what the model's runtime takes)
    io_before_state: tuple[list[str], list[str]] | None = None

    def state_offsets(self) -> tuple[dict[str, int], int]:
        """Each state tensor's byte offset in the state buffer (a variable's value and what is assigned to it
        share theirs), each variable on a word; and the buffer's size."""
        offsets, at = {}, 0
        for state in self.states:
            for name in (state.name, state.written):
                if name is not None:
                    offsets[name] = at
            at = (at + self.tensor(state.name).nbytes + 3) // 4 * 4
        return offsets, at

    def public_name(self, tensor_name: str) -> str:
        return self.public_names.get(tensor_name, tensor_name)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def producer(self, tensor_name: str) -> Node | None:
        for node in self.nodes:
            if tensor_name in node.outputs:
                return node
        return None

    def consumers(self, tensor_name: str) -> list[Node]:
        return [node for node in self.nodes if tensor_name in node.inputs]


# The memory plan (qcc/passes/memory_plan.py computes it): where each tensor lives at run time.
@dataclass
class Storage:
    kind: str  # "arena", "input", "output", "const", "state" or "stream"
    offset: int = 0  # byte offset in the arena (or in the state buffer)
    index: int = 0  # argument position, for inputs and outputs


@dataclass
class StepMemory:
    """How one step uses the arena beyond keeping whole tensors apart (for `--report` and `qcc inspect`)."""
    mode: str  # "in place" (its output overlaps an input it no longer needs) or "streamed"
    detail: str  # one sentence: which tensor it overwrites, how far apart, and why that is safe


@dataclass
class MemoryPlan:
    storage: dict[str, Storage]
    arena_bytes: int
    root: dict[str, str]  # tensor -> the tensor whose buffer it uses
    scratch: dict[int, int]  # node index -> arena offset of its scratch buffer
    scratch_bytes: dict[int, int]  # node index -> the size of its scratch buffer (one of its scratch_choices)
    liveness_bytes: int  # the most bytes of arena tensors alive at one step: any plan of whole tensors needs them
    steps: dict[int, StepMemory] = field(default_factory=dict)  # node index -> how it runs, where not out of place
    # The liveness bound of the nodes in the model's own order, before qcc chose an order that lowers the peak.
    model_order_liveness_bytes: int | None = None
    # Chains run a row at a time (qcc.passes.streaming.Stream), by the step that runs them: their last layer's.
    streams: dict[int, Any] = field(default_factory=dict)

    def same_storage(self, a: str, b: str) -> bool:
        """The same bytes: one buffer and one offset in it (a concat's inputs share its buffer as slices)."""
        return self.root[a] == self.root[b] and self.storage[a] == self.storage[b]
