"""Accumulator range analysis: the exact worst case of every int32 accumulator, per output channel.

For an op that sums (x - Z_x)(w - Z_w) + bias over K taps, with x free in [qmin, qmax] and the
weights known, each term is largest at one end of the input range, independently of the others:

    acc_max[c] = bias[c] + sum_k max((qmin - Z_x) * d_k, (qmax - Z_x) * d_k),   d_k = w[c,k] - Z_w[c]
    acc_min[c] = bias[c] + sum_k min(...)

(padded taps read Z_x and add 0). Both bounds are reached by some input, so they are exact. The
pass records them in node.params["acc_range"] (arrays per channel), proves where int32 cannot
overflow, warns where it can (the C then wraps modulo 2^32, as ORT's accumulator does), and marks
layers whose |acc| stays below 2^24, where f32(acc) is exact and the `ort` scheme can skip
rounding it.

It also bounds the int16 pair sums of ONNX Runtime's uint8 x int8 GEMM on x86 CPUs without VNNI
(node.params["u8s8_pairs"]): MLAS's AVX2 and AVX512BW kernels (vpmaddubsw) add the raw products
of K positions 2j and 2j+1 in a saturating int16 before widening, so where a pair can leave
[-32768, 32767] ORT run without session.x64quantprecision=1 on such a CPU differs from the exact
sum that qcc (and ORT with that option, or on VNNI and ARM CPUs) computes.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node
from qcc.numerics.accumulator_range import u8s8_pair_sum_range
from qcc.ops import op_named


def analyze(graph: Graph) -> list[str]:
    """Attach node.params["acc_range"] where an op defines one, and node.params["u8s8_pairs"] where
    ORT runs a uint8 x int8 GEMM; return the overflow warnings."""
    warnings = []
    for node in graph.nodes:
        op = op_named(node.op)
        gemm_weights = op.ort_gemm_weights(node, graph)
        if gemm_weights is not None and gemm_weights.dtype == np.int8 and graph.tensor(node.inputs[0]).dtype == "uint8":
            node.params["u8s8_pairs"] = u8s8_pair_sum_range(gemm_weights, "uint8")
        acc_range = op.accumulator_range(node, graph)
        if acc_range is None:
            continue
        node.params["acc_range"] = acc_range
        if not acc_range.int32_safe:
            channels = acc_range.unsafe_channels()
            worst = int(channels[np.argmax(np.maximum(np.abs(acc_range.low), np.abs(acc_range.high))[channels])])
            warnings.append(
                f"{graph.source}: node '{node.name}' ({node.attrs.get('onnx_op', node.op)}): the int32 accumulator can "
                f"overflow in {len(channels)} output channel(s), worst channel {worst} reaching "
                f"[{acc_range.low[worst]}, {acc_range.high[worst]}] ({acc_range.bits} bits); the C wraps modulo 2^32 "
                "exactly as ONNX Runtime does"
            )
    return warnings


def describe_u8s8_pairs(node: Node) -> str:
    """The inspect cell: whether ORT's int16 pair sums can saturate in this layer on x86 without VNNI."""
    pairs = node.params.get("u8s8_pairs")
    if pairs is None:
        return "-"
    channels = pairs.saturating_channels()
    return f"SATURATE {channels.size}/{pairs.low.size} ch" if channels.size else "fit int16"


def describe(node: Node) -> str:
    r = node.params.get("acc_range")
    if r is None:
        return "-"
    return f"{r.bits} bits, {'int32 safe' if r.int32_safe else 'CAN OVERFLOW'}{', f32 exact' if r.f32_exact else ''}"
