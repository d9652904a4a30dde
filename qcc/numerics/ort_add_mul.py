"""ONNX Runtime's com.microsoft QLinearAdd and QLinearMul on x86, and their integer emulation.

What ORT 1.32 computes (MLAS qladd_avx2.cpp and qlmul.cpp; every detail measured against ORT in
tests/test_op_add_mul.py). f32() rounds to float32 (nearest, ties to even), fma(a, b, c) is
a*b + c rounded once, rne() rounds to an integer (ties to even); x, y, a, b are raw codes.

    QLinearAdd, X and Y the operands in ORT's roles (`add_swaps_operands`):
        rX = f32(sX / sC)    rY = f32(sY / sC)
        F  = f32(zC - fma(rX, zX, f32(rY * zY)))
        T  = fma(y, rY, F)                      one value per code of Y
        v  = fma(x, rX, T)
    QLinearMul (no fma):
        r  = f32(f32(sA * sB) / sC)
        v  = f32(f32(f32((a - zA) * (b - zB)) * r) + zC)
    both:
        q  = qmin if v >= 2^31 or v < -2^31 (the int32 conversion's "integer indefinite"),
             else saturate(rne(v))

The first half of this module states that arithmetic in numpy (the reference interpreter uses it).
The second half is the integer emulation that runtime_c/qcc_add_mul.c performs, written out in
numpy so that it can be checked against the first half over millions of values; the two files
must stay bit-identical.

The integer emulation. Every value involved is a dyadic rational, so it is exact on a fine enough
binary grid. Add: v = x*rX + T(y) is formed exactly as an integer number of units 2^-G (G = 32 + s)
from a 64-bit constant per code of Y (the table) plus x times rX in grid units; a T that is finer
than the grid is kept as floor(T * 2^G) with its lowest bit set ("sticky"/jammed), which is exact
for every comparison with an even number of units because the x term is even. Mul: f32(p * r) is
formed from the 40-bit product |p| * mantissa(r) rounded to 24 significant bits, then put on the
2^-32 grid (jammed when finer) and zC added. Either way the final rounding is decided from the
grid value E = n + f (n = floor, 0 <= f < 1 in 2^-32 units) without forming f32(v):

    rne(f32(E)) = n + 1 exactly when f > 1/2 + h, or n is odd and f >= 1/2 - h,

where h is half a float32 ulp at n + 1/2 (2^(k-24) with 2^k <= |n + 1/2| < 2^(k+1)): around a
half-integer f32() rounds everything within h onto it, and rne() then goes to the even neighbour.
Outside |f - 1/2| <= 2^-17 the answer is simply n + (f >= 1/2): h <= 2^-17 for every n whose
rounding can matter (|n + 1/2| < 256; beyond, the code saturates either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qcc.numerics import float32_exact
from qcc.numerics.ort_float32 import bit_length, round_shift_right_even

INT32_LIMIT = 2**31

# --- exact float32 scalars (compile-time constants) ------------------------------------------


def f32(value) -> Fraction:
    """The float32 nearest to an exact value (ties to even), as a Fraction; inf raises."""
    rounded = float32_exact.round_to_float32(value)
    if math.isinf(rounded):
        raise OverflowError(f"{float(value)} overflows float32")
    return Fraction(rounded)


def fma32(a, b, c) -> Fraction:
    return f32(Fraction(a) * Fraction(b) + Fraction(c))


def as_exact(value) -> Fraction:
    return Fraction(float(np.float32(value)))


# --- ORT's arithmetic, vectorized (the reference) ------------------------------------------------


def fma_f32(a: np.ndarray, b, c: np.ndarray) -> np.ndarray:
    """float32(a * b + c) with one rounding, elementwise: a small integers (|a| < 2^29), b and c float32.

    a * b is exact in float64 and TwoSum gives the exact error e of s = fl(a*b + c), so a*b + c
    == s + e. Rounding s to odd (s, or its neighbour toward e when s is inexact and has an even
    last bit) keeps 53 bits and an exact sticky bit, after which rounding to float32 once is
    correct (rounding to odd with 2 or more extra bits is innocuous before a final rounding).
    """
    p = np.asarray(a, np.float64) * np.float64(np.float32(b))
    c = np.asarray(c, np.float32).astype(np.float64)
    s = p + c
    virtual = s - p
    e = (p - (s - virtual)) + (c - virtual)
    even = (np.asarray(s, np.float64).view(np.int64) & 1) == 0
    odd = np.where((e != 0) & even, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
    return odd.astype(np.float32)


def to_codes(v: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """_mm256_cvtps_epi32 (rne; out of int32 range -> INT32_MIN), then saturating packs."""
    v = np.asarray(v, np.float64)
    out_of_range = (v >= INT32_LIMIT) | (v < -INT32_LIMIT)
    return np.where(out_of_range, qmin, np.clip(np.rint(np.where(out_of_range, 0, v)), qmin, qmax)).astype(np.int64)


def add_ratios(s_x, s_y, s_c) -> tuple[np.float32, np.float32]:
    return np.float32(s_x) / np.float32(s_c), np.float32(s_y) / np.float32(s_c)


def add_fixed_part(r_x, z_x: int, r_y, z_y: int, z_c: int) -> np.float32:
    """F = f32(zC - fma(rX, zX, f32(rY * zY))): (float)zC - (rX*zX + rY*zY) as ORT's compiler contracted it."""
    return np.float32(float(f32(z_c - fma32(as_exact(r_x), z_x, f32(as_exact(r_y) * z_y)))))


def qlinear_add(x: np.ndarray, y: np.ndarray, r_x, r_y, fixed, qmin: int, qmax: int) -> np.ndarray:
    """ORT's output codes for codes x, y (broadcast together) in ORT's X and Y roles."""
    x, y = np.broadcast_arrays(np.asarray(x, np.int64), np.asarray(y, np.int64))
    t = fma_f32(y, r_y, np.full(y.shape, fixed, np.float32))
    return to_codes(fma_f32(x, r_x, t), qmin, qmax)


def mul_ratio(s_a, s_b, s_c) -> np.float32:
    return (np.float32(s_a) * np.float32(s_b)) / np.float32(s_c)


def qlinear_mul(a: np.ndarray, b: np.ndarray, z_a: int, z_b: int, r, z_c: int, qmin: int, qmax: int) -> np.ndarray:
    p = (np.asarray(a, np.int64) - z_a) * (np.asarray(b, np.int64) - z_b)  # exact, |p| <= 65025
    v = p.astype(np.float32) * np.float32(r) + np.float32(z_c)  # float32 operations, each rounded
    return to_codes(v, qmin, qmax)


def add_swaps_operands(shape_a, shape_b) -> bool:
    """Whether ORT runs A in the role of Y (the operand inside the inner fma) and B as X.

    ORT's Broadcaster walks the dimensions from the innermost one and starts each input's
    iterator at the first dimension whose output size is not 1 (or at the last dimension the
    two shapes share, or at the other input's innermost dimension when one input is a scalar).
    When A does not advance along that dimension (size 1 there, or a scalar), ORT treats A as
    the scalar of each span and calls MlasQLinearAdd with B first. The roles never depend on B
    alone: B broadcast keeps A as X.
    """
    a, b = list(shape_a), list(shape_b)
    if not a:
        return True
    if not b:
        return a[-1] <= 1
    common = min(len(a), len(b))
    for i in range(common):
        da, db = a[-1 - i], b[-1 - i]
        if max(da, db) <= 1 and i + 1 < common:
            continue
        return da <= 1
    raise AssertionError("unreachable")


# --- the integer emulation (twin of runtime_c/qcc_add_mul.c) ---------------------------------

BIAS = 1 << 63  # grid values are held as E + 2^63 in uint64: no negative numbers, no signed shifts
CODE_BIAS = 1 << 31  # output codes are held as q + 2^31 in uint32; the low byte is q's byte
NEAR_HALF = 1 << 15  # fractions within this many 2^-32 units of 1/2 take the exact (slow) rule
WORD = (1 << 32) - 1
MASK64 = (1 << 64) - 1


def dyadic(value: Fraction) -> tuple[int, int]:
    """(m, e) with value == m * 2^e and m odd (or (0, 0))."""
    if value == 0:
        return 0, 0
    num, den = value.numerator, value.denominator
    assert den & (den - 1) == 0, "not a dyadic rational"
    e = -(den.bit_length() - 1)
    while num % 2 == 0:
        num //= 2
        e += 1
    return num, e


def on_grid(value: Fraction, grid_bits: int) -> int:
    """floor(value * 2^grid_bits), with the lowest bit set when that floor is inexact (jammed)."""
    scaled = value * 2**grid_bits
    floor = scaled.numerator // scaled.denominator
    return floor | 1 if floor != scaled else floor


@dataclass
class AddPlan:
    """Everything the C kernel gets for one QLinearAdd (see qcc_qlinear_add_params)."""

    table: np.ndarray  # uint64 per Y index: (T(y) on the grid, jammed) - x_bias * x_mult + 2^63
    x_mult: int  # rX in grid units (even)
    x_flip: int  # 0x80 for int8: codes are read as code + 128 (= byte ^ 0x80)
    fine_shift: int  # s: the grid is 2^-(32 + s)
    lo: int  # output clamp, as code + 2^31
    hi: int


class OutsideEnvelope(ValueError):
    """The exact integer form would not fit 64 bits (absurd scale ratios)."""


def plan_add(r_x, r_y, fixed, dtype: str, y_codes: np.ndarray, lo: int, hi: int) -> AddPlan:
    """The kernel constants for rX, rY, F, the codes the table is indexed by, and the output clamp."""
    r_x, r_y, fixed = as_exact(r_x), as_exact(r_y), as_exact(fixed)
    if not (r_x > 0 and r_y > 0):
        raise OutsideEnvelope("a scale ratio rounds to zero in float32")
    m_x, e_x = dyadic(r_x)
    # x * rX must be an even number of grid units: 2^(e_x) >= 2 * 2^-(32 + s)
    fine_shift = max(0, -31 - e_x)
    grid_bits = 32 + fine_shift
    x_mult = int(r_x * 2**grid_bits)
    x_bias = 128 if dtype == "int8" else 0
    t = [fma32(int(y), r_y, fixed) for y in np.asarray(y_codes).reshape(-1)]
    fine = [on_grid(v, grid_bits) - x_bias * x_mult for v in t]
    lowest, highest = min(fine), max(fine) + 255 * x_mult
    # |E| < 2^62 grid units: the biased uint64 sums never wrap, and |v| < 2^(30 - s) never reaches
    # the int32 overflow at 2^31 (ORT's qmin), which the kernel therefore need not test.
    if fine_shift > 31 or lowest <= -(1 << 62) or highest >= 1 << 62:
        raise OutsideEnvelope(f"|v| could reach 2^{max(abs(lowest), abs(highest)).bit_length() - grid_bits}")
    table = np.array([(v + BIAS) & MASK64 for v in fine], dtype=np.uint64)
    return AddPlan(table, x_mult, 0x80 if dtype == "int8" else 0, fine_shift, lo + CODE_BIAS, hi + CODE_BIAS)


def _clz32(v: np.ndarray) -> np.ndarray:
    """Leading zeros of 32-bit values 1 <= v < 2^31."""
    return 32 - bit_length(v)


def round_up(hb: np.ndarray, r: np.ndarray) -> np.ndarray:
    """1 where rne(f32(E)) = n + 1 for the grid value E = (hb - 2^31) + r * 2^-32 (r jammed)."""
    hb, r = hb.astype(np.int64), r.astype(np.int64)
    w = np.clip(hb - (CODE_BIAS - 512), 0, 1023)  # n + 512 with n clamped to [-512, 511]
    m = np.where(w >= 512, w - 512, 511 - w)  # |n + 1/2| - 1/2
    half_ulp = np.int64(0x80) << (31 - _clz32(2 * m + 1))  # 2^(k - 24) in 2^-32 units
    threshold = np.where(w & 1, (1 << 31) - half_ulp - 1, (1 << 31) + half_ulp)
    exact = (r > threshold).astype(np.int64)
    near = np.abs(r - (1 << 31)) <= NEAR_HALF
    return np.where(near, exact, r >> 31)


def decide(e: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Output bytes from biased grid values e = E * 2^32 + 2^63 (uint64, E jammed at 2^-32)."""
    e = np.asarray(e, np.uint64)
    hb = (e >> np.uint64(32)).astype(np.int64)
    r = (e & np.uint64(WORD)).astype(np.int64)
    q = np.clip(hb + round_up(hb, r), lo, hi)
    return (q & 0xFF).astype(np.uint8)


def jam_shift(e: np.ndarray, shift: int) -> np.ndarray:
    """Biased grid values 2^-(32+shift) -> 2^-32, the dropped bits kept as a sticky lowest bit."""
    if shift == 0:
        return e
    s = np.uint64(shift)
    sticky = (e & ((np.uint64(1) << s) - np.uint64(1))) != 0
    coarse = (e >> s) | sticky.astype(np.uint64)
    return coarse + np.uint64(BIAS - (BIAS >> shift))


def add_emulated(plan: AddPlan, x_bytes: np.ndarray, y_index: np.ndarray) -> np.ndarray:
    """The C kernel's output bytes for X bytes and Y table indices (broadcast together)."""
    x_bytes, y_index = np.broadcast_arrays(np.asarray(x_bytes), np.asarray(y_index))
    xu = (x_bytes.astype(np.uint64) ^ np.uint64(plan.x_flip))
    mult = np.uint64(plan.x_mult & MASK64)
    e = plan.table[y_index.astype(np.int64)] + xu * mult  # uint64 wraps like C
    return decide(jam_shift(e, plan.fine_shift), plan.lo, plan.hi)


@dataclass
class MulPlan:
    """Everything the C kernel gets for one QLinearMul (see qcc_qlinear_mul_params)."""

    flip: int  # 0x80 for int8: codes are read as code + 128 (= byte ^ 0x80)
    a_zero: int  # zero points in that code space (z + 128 for int8)
    b_zero: int
    r_mult: int  # r = r_mult * 2^(r_shift - 32), r_mult its float32 significand (< 2^24)
    r_shift: int
    c_offset: int  # zC * 2^32 + 2^63 (mod 2^64): zC on the biased grid
    overflow_at: int  # 2^31 - 64 - zC: v >= 2^31 (int32 overflow: qmin) exactly when f32(p*r) >= this
    lo: int  # output clamp, as code + 2^31 (an int32 overflow gives qmin, so lo)
    hi: int


def plan_mul(r, z_a: int, z_b: int, z_c: int, dtype: str, lo: int, hi: int) -> MulPlan:
    m, e = dyadic(as_exact(r))
    if m:  # the 24-bit significand (fewer bits for a subnormal r): then kept >= 2^23 below
        widen = min(24 - m.bit_length(), e + 149)
        m, e = m << widen, e - widen
    flip = 128 if dtype == "int8" else 0
    return MulPlan(flip, z_a + flip, z_b + flip, m, e + 32, ((z_c << 32) + BIAS) & MASK64,
                   INT32_LIMIT - 64 - z_c, lo + CODE_BIAS, hi + CODE_BIAS)


GRID_LIMIT = 38  # kept < 2^25 placed at most 2^38 units up fits 63 bits; placed higher, f32(|p| r) >= 2^30


def mul_emulated(plan: MulPlan, a_bytes: np.ndarray, b_bytes: np.ndarray) -> np.ndarray:
    """The C kernel's output bytes for A and B bytes (broadcast together)."""
    a_bytes, b_bytes = np.broadcast_arrays(np.asarray(a_bytes), np.asarray(b_bytes))
    p = (((a_bytes.astype(np.int64) ^ plan.flip) - plan.a_zero) * ((b_bytes.astype(np.int64) ^ plan.flip) - plan.b_zero))
    w = np.abs(p).astype(np.uint64) * np.uint64(plan.r_mult)  # |p| * r exactly, < 2^40 units of 2^(r_shift-32)
    # f32(): w kept to 24 significant bits, ties to even -> kept * 2^excess
    excess = np.maximum(bit_length(w) - 24, 0).astype(np.uint64)
    kept = round_shift_right_even(w, excess)
    position = excess.astype(np.int64) + plan.r_shift  # f32(|p| * r) = kept * 2^position units of 2^-32
    # |f32(p r)| >= 2^30: the code is saturated, or qmin when v reaches 2^31
    huge = (position > GRID_LIMIT) & (kept != 0)
    units = np.clip(position - 32, 0, 63 - 24).astype(np.uint64)
    overflow = (position - 32 > 63 - 24) | ((kept << units) >= np.uint64(plan.overflow_at))
    huge_code = np.where((p > 0) & ~overflow, plan.hi, plan.lo)
    # otherwise on the 2^-32 grid: shifted left, or right with a sticky lowest bit
    left = np.clip(position, 0, GRID_LIMIT).astype(np.uint64)
    right = np.clip(-position, 0, 63).astype(np.uint64)
    sticky = (kept & ((np.uint64(1) << right) - np.uint64(1))) != 0
    scaled = np.where(position >= 0, kept << left, (kept >> right) | sticky.astype(np.uint64))
    c = np.uint64(plan.c_offset)
    e = np.where(p < 0, c - scaled, c + scaled)
    return np.where(huge, (huge_code & 0xFF).astype(np.uint8), decide(e, plan.lo, plan.hi))
