"""Input sets for golden tests and verification: seeded random codes, and the extremes
(every element at qmin, every element at qmax, qmin and qmax alternating)."""

from __future__ import annotations

import numpy as np

from qcc.ir import CODE_RANGE, Graph


def _float_range(graph: Graph, name: str) -> tuple[float, float]:
    """The real interval a float input's QuantizeLinear maps onto its codes, widened a little so
    that clamping is exercised too."""
    quantize = next(node for node in graph.consumers(name) if node.op == "QuantizeLinear")
    out = graph.tensor(quantize.outputs[0])
    scale, zero = out.quant.scalar()
    qmin, qmax = CODE_RANGE[out.dtype]
    return float(scale) * (qmin - zero - 2), float(scale) * (qmax - zero + 2)


def random_inputs(graph: Graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        case = []
        for name in graph.inputs:
            tensor = graph.tensor(name)
            if tensor.dtype == "float32":
                lo, hi = _float_range(graph, name)
                case.append(rng.uniform(lo, hi, tensor.shape).astype(np.float32))
            else:
                qmin, qmax = CODE_RANGE[tensor.dtype]
                case.append(rng.integers(qmin, qmax, tensor.shape, endpoint=True).astype(tensor.dtype))
        cases.append(case)
    return cases


def extreme_inputs(graph: Graph) -> list[list[np.ndarray]]:
    """All qmin, all qmax, alternating qmin/qmax (for float inputs: the ends of their range)."""
    cases = []
    for pattern in ("min", "max", "alternating"):
        case = []
        for name in graph.inputs:
            tensor = graph.tensor(name)
            if tensor.dtype == "float32":
                lo, hi = _float_range(graph, name)
                dtype = np.float32
            else:
                lo, hi = CODE_RANGE[tensor.dtype]
                dtype = tensor.dtype
            if pattern == "alternating":
                flat = np.where(np.arange(tensor.size) % 2 == 0, lo, hi)
            else:
                flat = np.full(tensor.size, lo if pattern == "min" else hi)
            case.append(flat.astype(dtype).reshape(tensor.shape))
        cases.append(case)
    return cases
