"""The `ort` rounding scheme, in Python and in C, against float32 arithmetic done by numpy.

ORT requantizes with v = f32(f32(acc) * scale), q = clamp(rne(v), lo, hi). numpy's float32
multiply and rint are IEEE-754 operations, so they are an independent oracle for the integer
emulation on every (acc, scale) pair, ties and accumulators above 2**24 included."""

import subprocess

import numpy as np
import pytest

from qcc.assets import asset_dir
from qcc.numerics import ort_float32

CLAMP = (-255, 255)  # the widest lo/hi an 8-bit output can have (qmin - z, qmax - z)


def float32_oracle(acc, scale, lo, hi):
    v = np.float32(np.asarray(acc).astype(np.float32) * np.float32(scale))
    return np.clip(np.rint(v.astype(np.float64)), lo, hi).astype(np.int64)


def draw_scales(rng, count):
    scales = np.exp(rng.uniform(np.log(1e-12), np.log(1e4), count)).astype(np.float32)
    dyadic = (rng.integers(1, 2**24, count) * 2.0 ** rng.integers(-45, -10, count)).astype(np.float32)
    return np.concatenate([scales, dyadic, np.float32([2.0**-20, 0.5, 1.0, 255.0, 256.0, 1e6, 2.0**-126])])


def draw_accumulators(rng, scale, count):
    """Uniform int32, values near 2**24..2**31, exact .5 ties of acc*scale, those around +-1/2 (where the C's
    early answer of 0 ends), and the ends of int32."""
    ties = []
    mult, shift = ort_float32.fixed_point_from_float32(scale)
    if mult and shift < 40:
        # acc * mult * 2**-shift lands on k + 1/2 when acc*mult == (2k+1) * 2**(shift-1).
        odd = rng.integers(-300, 300, count // 4) * 2 + 1
        numerator = odd * (1 << (shift - 1))
        ties = numerator[numerator % mult == 0] // mult
    return np.concatenate([
        rng.integers(-2**31, 2**31, count), rng.integers(-2**25, 2**25, count), rng.integers(-4096, 4096, count),
        np.round(rng.uniform(-300, 300, count) / np.float64(scale)).clip(-2**31, 2**31 - 1),
        ties, np.round(np.float64(0.5) / np.float64(scale)).clip(0, 2**31 - 9) + np.arange(-8, 9),
        -np.round(np.float64(0.5) / np.float64(scale)).clip(0, 2**31 - 9) + np.arange(-8, 9),
        [-2**31, -2**31 + 1, 2**31 - 1, 2**24, 2**24 + 1, -(2**24 + 3), 0, 1, -1],
    ]).astype(np.int64)


def test_fixed_point_is_the_float32_scale_exactly():
    rng = np.random.default_rng(0)
    for scale in draw_scales(rng, 2000):
        mult, shift = ort_float32.fixed_point_from_float32(scale)
        assert 0 <= mult < 2**24 and 15 <= shift <= 57
        if scale < 256 and mult:
            assert mult * 2.0**-shift == float(scale)


def test_bit_length_is_int_bit_length():
    """The one numpy bit_length (ort_float32, ort_float32_sum and ort_add_mul use it) over the whole
    uint64 range and non-negative int64, where float64's rounding would overstate by one."""
    values = sorted({max(0, (1 << k) + d) for k in range(65) for d in (-2, -1, 0, 1)} - {1 << 64, (1 << 64) + 1})
    values += [2**64 - 1 - 2**10, 2**53 + 1, 2**62 - 1, 12345678901234567]
    assert ort_float32.bit_length(np.array(values, np.uint64)).tolist() == [v.bit_length() for v in values]
    signed = [v for v in values if v < 2**63]
    assert ort_float32.bit_length(np.array(signed, np.int64)).tolist() == [v.bit_length() for v in signed]


def test_python_requantize_equals_float32_arithmetic():
    rng = np.random.default_rng(1)
    compared = 0
    for scale in draw_scales(rng, 150):
        acc = draw_accumulators(rng, scale, 8000)
        mult, shift = ort_float32.fixed_point_from_float32(scale)
        lo, hi = sorted(rng.integers(*CLAMP, 2, endpoint=True)) if rng.random() < 0.5 else CLAMP
        got = ort_float32.requantize(acc, mult, shift, lo, hi)
        np.testing.assert_array_equal(got, float32_oracle(acc, scale, lo, hi), err_msg=f"scale {scale!r}")
        compared += acc.size
    assert compared > 4_000_000


def test_exact_ties_round_to_even():
    # scale 0.5: acc 1 -> 0.5 -> 0, acc 3 -> 1.5 -> 2, acc -5 -> -2.5 -> -2
    mult, shift = ort_float32.fixed_point_from_float32(np.float32(0.5))
    got = ort_float32.requantize(np.array([1, 3, 5, -1, -3, -5]), mult, shift, *CLAMP)
    assert got.tolist() == [0, 2, 2, 0, -2, -2]


def test_float32_rounding_of_large_accumulators_is_reproduced():
    # 2**24 + 1 is not a float32: f32() makes it 2**24, so with scale 2**-17 the result is 128, not 128.0000076
    # rounded (also 128), while 2**24 + 3 -> 2**24 + 4 -> 128.00003; the point is the emulation follows f32.
    acc = np.array([2**24 + 1, 2**24 + 3, 2**25 + 2, 2**25 + 6], dtype=np.int64)
    scale = np.float32(2.0**-18)
    mult, shift = ort_float32.fixed_point_from_float32(scale)
    np.testing.assert_array_equal(ort_float32.requantize(acc, mult, shift, *CLAMP), float32_oracle(acc, scale, *CLAMP))


HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "qcc_requant_ort.h"
/* stdin: records of (int32 acc, uint32 mult, int32 shift, int32 lo, int32 hi); stdout: int32 results,
 * through the general path, and through the path for |acc| <= 2^24 where that holds */
int main(void)
{
    int32_t r[5], y;
    while (fread(r, sizeof r, 1, stdin) == 1) {
        y = qcc_requantize_ort(r[0], (uint32_t)r[1], r[2], r[3], r[4], 0);
        if (r[0] >= -(1 << 24) && r[0] <= (1 << 24) && qcc_requantize_ort(r[0], (uint32_t)r[1], r[2], r[3], r[4], 1) != y) {
            y = 0x7fffffff; /* the shortcut disagrees: no expected value is this */
        }
        fwrite(&y, sizeof y, 1, stdout);
    }
    return 0;
}
"""


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_c_requantize_equals_float32_arithmetic(tmp_path, compiler):
    source = tmp_path / "harness.c"
    source.write_text(HARNESS)
    binary = tmp_path / "harness"
    subprocess.run([compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", f"-I{asset_dir('runtime_c')}", str(source), "-o", str(binary)], check=True)
    rng = np.random.default_rng(2)
    records, expected = [], []
    for scale in draw_scales(rng, 60):
        acc = draw_accumulators(rng, scale, 4000)
        mult, shift = ort_float32.fixed_point_from_float32(scale)
        lo, hi = sorted(rng.integers(*CLAMP, 2, endpoint=True)) if rng.random() < 0.5 else CLAMP
        block = np.zeros((acc.size, 5), dtype=np.int64)
        block[:] = [0, mult, shift, lo, hi]
        block[:, 0] = acc
        records.append(block)
        expected.append(float32_oracle(acc, scale, lo, hi))
    records = np.concatenate(records)
    out = subprocess.run([str(binary)], input=records.astype(np.uint32).astype("<u4").tobytes(), capture_output=True, check=True)
    got = np.frombuffer(out.stdout, dtype="<i4")
    assert out.stderr == b""  # UBSan reports go to stderr
    assert got.size == records.shape[0] > 1_000_000
    np.testing.assert_array_equal(got, np.concatenate(expected))
