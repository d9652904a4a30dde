"""Running the original model in ONNX Runtime, configured as qcc's ground truth. Every ORT session
that qcc (`qcc verify`) and its tests create comes from `session()`, with one configuration:

- the CPU provider, one thread, default graph optimizations;
- `session.qdqisint8allowed = 1`: int8 QDQ groups run as integer kernels, as ORT does on ARM;
- `session.x64quantprecision = 1`: on x86 CPUs without VNNI, MLAS's uint8 x int8 GEMM kernels add
  pairs of products in saturating int16 (vpmaddubsw), so their results depend on the CPU
  (onnxruntime issues 16105 and 6004). With this option ORT moves int8 weights that leave
  [-64, 64] to uint8 (w + 128, an exact rewrite) and runs its exact uint8 x uint8 kernels, on
  every x86 CPU with AVX2 (VNNI or not), so results equal those of VNNI and ARM hosts.

One fallback: with the option, ORT 1.32 has no kernel for int8 activations with weights moved to
uint8, so it cannot build such sessions (NOT_IMPLEMENTED). Those are built without the option;
int8 x int8 kernels sum exactly on every x86 CPU. The session says which configuration it has.

`alternative_session()` builds the same model in ORT's other configurations (its defaults, no
layout optimizations, no optimizations at all), which `qcc verify` runs when the C equals the
reference but not the ground truth, to tell a C mismatch from ORT disagreeing with itself.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcc.errors import QccError
from qcc.ir import Graph
from qcc.numerics.quantize_linear import dequantize_linear, quantize_linear

QDQ_IS_INT8_ALLOWED = "session.qdqisint8allowed"
X64_QUANT_PRECISION = "session.x64quantprecision"
# The ground truth's session config entries besides session.x64quantprecision (which `session()` adds where
# ORT can build the model with it)
GROUND_TRUTH_ENTRIES = {QDQ_IS_INT8_ALLOWED: "1"}
# ORT's graph optimization levels, by the names its SessionOptions take
LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


@dataclass(frozen=True)
class Alternative:
    """One of ORT's other configurations, which verify compares with the ground truth's when they part."""
    name: str  # short, for tables: "ORT defaults"
    description: str  # what it is, in a sentence's words
    entries: tuple[tuple[str, str], ...]  # session config entries
    level: str  # graph optimization level
    x64_like_truth: bool = False  # with session.x64quantprecision=1 where the ground truth has it


ALTERNATIVES = (
    Alternative("ORT defaults", "ORT with its default settings (no session config entries: "
                "session.qdqisint8allowed=0 on x86, which leaves int8 QDQ groups in float)", (), "ORT_ENABLE_ALL"),
    Alternative("ORT extended", "ORT with session.qdqisint8allowed=1 and optimizations up to ORT_ENABLE_EXTENDED "
                "(the QDQ fusions without the layout ones: no channels-last QLinearConv, no NCHWc)",
                ((QDQ_IS_INT8_ALLOWED, "1"),), "ORT_ENABLE_EXTENDED", x64_like_truth=True),
    Alternative("ORT opt. off", "ORT with every graph optimization off (ORT_DISABLE_ALL: the float ops between "
                "DequantizeLinear and QuantizeLinear, as the ONNX spec defines the model)",
                ((QDQ_IS_INT8_ALLOWED, "1"),), "ORT_DISABLE_ALL"),
)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise QccError("comparing with ONNX Runtime needs onnxruntime: pip install 'qcc[test]'") from None
    return onnxruntime


def _source(model):
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (str, Path)):
        return str(model)
    return model  # serialized bytes


def session_entries(x64_quant_precision: bool, entries: dict[str, str] | None = None) -> dict[str, str]:
    """The session config entries of a session: the ground truth's (entries None) or the given ones, with
    session.x64quantprecision=1 or not."""
    chosen = dict(GROUND_TRUTH_ENTRIES if entries is None else entries)
    if x64_quant_precision:
        chosen[X64_QUANT_PRECISION] = "1"
    return chosen


def ort_session(model, x64_quant_precision: bool, optimized_model_path: str | None = None, *,
                entries: dict[str, str] | None = None, level: str = "ORT_ENABLE_ALL"):
    """The one place an ORT InferenceSession is built. `session()` gives the ground truth; the tests
    and the probe below also build one without session.x64quantprecision, as users running ORT
    with its defaults get, to show where that differs, and `alternative_session()` ORT's other
    configurations (entries: the session config entries instead of the ground truth's; level: the
    graph optimization level). optimized_model_path: where ORT saves the graph it runs, after its
    graph optimizations."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # fatal only: ORT reports its errors as exceptions, which qcc words itself
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    for key, value in session_entries(x64_quant_precision, entries).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(_source(model), options, providers=["CPUExecutionProvider"])


class Session:
    """An ORT InferenceSession in the ground-truth configuration (or, with `alternative`, in one of ORT's
    other configurations), and which one that was."""

    def __init__(self, inference_session, x64_quant_precision: bool, fallback_reason: str | None = None,
                 alternative: Alternative | None = None):
        self.ort_session = inference_session
        self.x64_quant_precision = x64_quant_precision
        self.fallback_reason = fallback_reason  # ORT's error with the option, when built without it
        self.alternative = alternative  # None: the ground truth

    @property
    def entries(self) -> dict[str, str]:
        """Its session config entries."""
        given = None if self.alternative is None else dict(self.alternative.entries)
        return session_entries(self.x64_quant_precision, given)

    @property
    def level(self) -> str:
        return "ORT_ENABLE_ALL" if self.alternative is None else self.alternative.level

    def settings(self) -> dict:
        """How to build this session again: what a reproducer records."""
        return {"session_config_entries": self.entries, "graph_optimization_level": self.level,
                "intra_op_num_threads": 1, "inter_op_num_threads": 1, "providers": ["CPUExecutionProvider"]}

    def settings_text(self) -> str:
        """Its configuration in a few words: 'session.qdqisint8allowed=1, ORT_ENABLE_ALL'."""
        return ", ".join([f"{k}={v}" for k, v in self.entries.items()] + [self.level])

    def same_configuration(self, model) -> Session:
        """A session for another model (the same one with extra outputs) in this session's configuration."""
        if self.alternative is None:
            return session(model)
        return Session(ort_session(model, self.x64_quant_precision, entries=dict(self.alternative.entries),
                                   level=self.alternative.level), self.x64_quant_precision,
                       alternative=self.alternative)

    def run(self, output_names, feeds):
        try:
            return self.ort_session.run(output_names, feeds)
        except Exception as error:  # ORT's own refusal, in one line
            raise QccError(f"ONNX Runtime fails to run the model: {_first_line(error)}") from None

    def get_inputs(self):
        return self.ort_session.get_inputs()

    def get_outputs(self):
        return self.ort_session.get_outputs()

    def configuration(self) -> str:
        """One line: the ORT version and options, and what they mean on this CPU."""
        if self.alternative is not None:
            return f"ONNX Runtime {_onnxruntime().__version__}: {self.alternative.description}"
        entries = ", ".join(f"{k}={v}" for k, v in self.entries.items())
        head = f"ONNX Runtime {_onnxruntime().__version__}: CPU provider, 1 thread, default optimizations, {entries}"
        saturating = cpu_saturates_u8s8_pairs()
        cpu = ("this CPU's uint8 x int8 kernel adds product pairs in saturating int16 (x86 without VNNI)" if saturating
               else "this CPU's uint8 x int8 kernel sums exactly (VNNI, or not x86)")
        if self.x64_quant_precision:
            effect = ("so the option is what keeps ORT exact here: int8 weights beyond [-64, 64] run as uint8 through "
                      "the exact uint8 x uint8 kernels" if saturating else "so the option changes no result here")
            return f"{head}; {cpu}, {effect}"
        caution = ", so uint8 x int8 layers, if the model has any, are not exact in this session" if saturating else ""
        return (f"{head}; without {X64_QUANT_PRECISION}=1, which ORT cannot build this model with ({self.fallback_reason}; "
                f"it happens for int8 activations, whose int8 x int8 kernels sum exactly on every x86 CPU, and for weights "
                f"two nodes share); {cpu}{caution}")


def session(model, optimized_model_path: str | None = None) -> Session:
    """The ground-truth session for a model (a path, serialized bytes or an onnx.ModelProto)."""
    try:
        return Session(ort_session(model, True, optimized_model_path), True)
    except Exception as error:  # e.g. "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Failed to find kernel for ...". ...
        first_error = error
    # ORT 1.32 cannot build some sessions with the option: int8 activations with the moved weights
    # (NOT_IMPLEMENTED), or a weight initializer two nodes share (FAIL: "Attempt to replace the
    # existing tensor"). Without it, ORT may build the session; if it cannot either, that error
    # is the model's.
    reason = _first_line(first_error).split(". ")[0]
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    try:
        return Session(ort_session(model, False, optimized_model_path), False, reason)
    except Exception as error:
        raise QccError(f"ONNX Runtime cannot load the model: {_first_line(error)}") from None


def alternative_session(model, alternative: Alternative, truth: Session) -> Session:
    """The model in one of ORT's other configurations (ALTERNATIVES), with session.x64quantprecision=1 where
    the alternative keeps the ground truth's choice (`truth`, the ground truth's session) and that has it, and
    ORT can build the model so (the ground truth's fallback: without it where ORT cannot)."""
    x64 = alternative.x64_like_truth and truth.x64_quant_precision
    for option in (True, False) if x64 else (False,):
        try:
            built = ort_session(model, option, entries=dict(alternative.entries), level=alternative.level)
        except Exception as error:
            failure = error
            continue
        return Session(built, option, alternative=alternative)
    raise QccError(f"ONNX Runtime cannot load the model as {alternative.name}: {_first_line(failure)}") from None


def _first_line(error: Exception) -> str:
    """ORT's message without its '[ONNXRuntimeError] : 9 : ' prefix, on one line."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : ", "", str(error).strip())
    return " ".join(text.split())[:400]


def optimized_model(model) -> onnx.ModelProto:
    """The graph ORT runs for the model in the ground-truth configuration, after its optimizations."""
    with tempfile.TemporaryDirectory(prefix="qcc-ort-") as tmp:
        path = str(Path(tmp) / "optimized.onnx")
        session(model, path)
        return onnx.load(path)


@functools.lru_cache(maxsize=1)
def cpu_saturates_u8s8_pairs() -> bool:
    """Whether this CPU's ORT uint8 x int8 GEMM adds product pairs in saturating int16, measured:
    255*127 + 255*127 = 64770 comes out as 32767 there (the kernel ORT picks by CPUID, so this also
    holds under an emulated CPU, where /proc/cpuinfo would describe the host)."""
    initializers = {"x_scale": np.float32(1), "x_zero": np.uint8(0), "w": np.full((2, 1), 127, np.int8),
                    "w_scale": np.float32(1), "w_zero": np.int8(0), "y_scale": np.float32(256), "y_zero": np.uint8(0)}
    graph = helper.make_graph(
        [helper.make_node("QLinearMatMul", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"], ["y"])],
        "u8s8_pair_probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    y = ort_session(model, x64_quant_precision=False).run(None, {"x": np.full((1, 2), 255, np.uint8)})[0]
    return int(y[0, 0]) != 253  # 64770 / 256 rounds to 253; the saturated 32767 / 256 to 128


def _boundary_quant(graph: Graph, tensor_name: str):
    tensor = graph.tensor(tensor_name)
    scale, zero = tensor.quant.scalar()
    return scale, zero, tensor.dtype


def feeds_for(graph: Graph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """ORT's feeds for the compiled graph's input codes: where qcc removed a QuantizeLinear, floats
    that quantize exactly to the given codes."""
    feeds = {}
    for name, value in zip(graph.inputs, inputs):
        public = graph.public_name(name)
        if public != name:  # a quantized C input standing for a float model input
            scale, zero, dtype = _boundary_quant(graph, name)
            real = dequantize_linear(value, scale, zero)
            if not np.array_equal(quantize_linear(real, scale, zero, dtype), value):
                raise AssertionError(f"input '{public}': the float stand-ins do not quantize back to the codes")
            feeds[public] = real
        else:
            feeds[public] = value
    return feeds


def outputs_as_codes(graph: Graph, output_names: list[str], results: list[np.ndarray]) -> list[np.ndarray]:
    """ORT's outputs (named output_names) typed as the compiled graph's outputs: where qcc removed a
    DequantizeLinear, ORT's floats map back to unique codes."""
    by_name = dict(zip(output_names, results))
    outputs = []
    for name in graph.outputs:
        public = graph.public_name(name)
        value = by_name[public]
        if value.dtype == np.float32 and graph.tensor(name).dtype != "float32":
            # ORT's DequantizeLinear output, where qcc returns the codes: invert it, exactly
            scale, zero, dtype = _boundary_quant(graph, name)
            codes = np.rint(value.astype(np.float64) / np.float64(scale)) + zero
            codes = codes.astype(np.int64)
            if not np.array_equal(dequantize_linear(codes, scale, zero), value):
                raise AssertionError(f"output '{public}': ORT's floats are not dequantized codes")
            value = codes.astype(dtype)
        outputs.append(value.reshape(graph.tensor(name).shape))
    return outputs


def run_on_codes(sess: Session, graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ORT on the compiled graph's input codes; its outputs typed as the compiled graph's."""
    names = [o.name for o in sess.get_outputs()]
    return outputs_as_codes(graph, names, sess.run(None, feeds_for(graph, inputs)))
