"""Requantization schemes: how an int32 accumulator becomes an 8-bit code.

Each scheme is one module here and one header in runtime_c/ (qcc_requant_<name>.h), written as
twins: the reference interpreter calls the Python side, the generated C calls the C side, and
tests hold them equal. A scheme module provides

    fixed_point(ort_scale, real_scale) -> (multiplier, shift)   per output channel, at compile time
    requantize(acc, multiplier, shift, lo, hi) -> int32         clamp(round(acc * M), lo, hi)

where ort_scale is the float32 scale ORT computes for the op and real_scale the same ratio of
scales in double precision (what TFLM starts from).
"""

from qcc.numerics import ort_float32, single_rounding, tflm

SCHEMES = {"ort": ort_float32, "tflm": tflm, "single": single_rounding}
