"""IEEE-754 binary32 arithmetic computed exactly, for compile-time constants.

Each operation forms the exact rational result with fractions.Fraction and rounds it once to the
nearest float32, ties to even (the default rounding of x86 SSE/AVX and ARM): a product, a sum, a
quotient, and a fused multiply-add (one rounding of a*b + c, which numpy and Python 3.11 do not
offer). Values go in and come out as Python floats, which hold every float32 exactly.

Speed does not matter here: these build tables of 256 entries at compile time. The generated C
never sees a float, only the integer codes these computations produce.

Special values follow IEEE-754: a result too large for float32 becomes +-inf (overflow under round
to nearest); an operation with an infinite or NaN operand gives what float64 gives (inf, NaN or a
signed zero, all exact, so no rounding is involved). One simplification: an exactly zero result
of finite operands is +0.0 (no caller depends on the sign of zero).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

SIGNIFICAND_BITS = 24
MIN_NORMAL_EXPONENT = -126  # 2**-126 is the smallest normal float32
MIN_QUANTUM_EXPONENT = MIN_NORMAL_EXPONENT - (SIGNIFICAND_BITS - 1)  # 2**-149: the subnormal step
OVERFLOW = Fraction(2**128)  # a rounded magnitude this large is out of range: inf


def _special(*values) -> bool:
    """True when an operand is inf or NaN: then float64 arithmetic gives the exact IEEE result."""
    return any(isinstance(v, (float, np.floating)) and not math.isfinite(v) for v in values)


def exact(value) -> Fraction:
    """The exact rational value of a finite int, float, numpy scalar or decimal string."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str):
        return Fraction(value)  # the decimal itself, not its nearest double
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"float32_exact works on finite values, got {value}")
    return Fraction(value)


def round_to_float32(value) -> float:
    """The float32 nearest to an exact value (ties to even), as a Python float; +-inf on overflow."""
    x = exact(value)
    if x == 0:
        return 0.0
    sign = -1.0 if x < 0 else 1.0
    x = abs(x)
    # e = floor(log2(x)): estimate from the bit lengths, then correct by one.
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if x < Fraction(2) ** e:
        e -= 1
    quantum = max(e - (SIGNIFICAND_BITS - 1), MIN_QUANTUM_EXPONENT)
    steps = round(x / Fraction(2) ** quantum)  # Fraction.__round__ rounds half to even
    if steps * Fraction(2) ** quantum >= OVERFLOW:
        return sign * math.inf
    return sign * math.ldexp(steps, quantum)  # steps < 2**25: exact in a float


def f32(value) -> float:
    """f32(x): an exact value (int, float, decimal string, Fraction) rounded to float32."""
    return round_to_float32(exact(value))


def mul(a, b) -> float:
    if _special(a, b):
        return float(a) * float(b)
    return round_to_float32(exact(a) * exact(b))


def add(a, b) -> float:
    if _special(a, b):
        return float(a) + float(b)
    return round_to_float32(exact(a) + exact(b))


def div(a, b) -> float:
    """a / b in float32 for b != 0 (a true division, not a multiplication by 1/b)."""
    if _special(a, b):
        return float(a) / float(b)
    denominator = exact(b)
    if denominator == 0:
        raise ZeroDivisionError("float32_exact.div by zero")
    return round_to_float32(exact(a) / denominator)


def fma(a, b, c) -> float:
    """a * b + c with a single rounding, like the FMA3 vfmadd instructions."""
    if _special(a, b, c):
        return float(a) * float(b) + float(c)  # a*b of float32 operands is exact in float64
    return round_to_float32(exact(a) * exact(b) + exact(c))
