"""The `single` rounding scheme: TFLM's Q31 multiplier with one rounding, as CMSIS-NN
(CMSIS_NN_USE_SINGLE_ROUNDING, arm_nn_requantize) and TVM's QNN (rounding UPWARD) compute it:

    y = (acc * M0 + 2**(30 - e)) >> (31 - e)     in 64 bits, halves rounded up (toward +inf)

with (M0, e) from TFLM's QuantizeMultiplier, e clamped to [-31, 30] (at e > 30 the multiplier
saturates to 2**31 - 1, e = 30, as TFLITE_SINGLE_ROUNDING does). The cheapest form on a
Cortex-M: one 32x32->64 multiply-accumulate and a shift. Twin of runtime_c/qcc_requant_single.h.
"""

from __future__ import annotations

import numpy as np

from qcc.numerics.tflm import quantize_multiplier


def fixed_point(ort_scale, real_scale) -> tuple[int, int]:
    m0, e = quantize_multiplier(float(real_scale))
    if e > 30:
        return 2**31 - 1, 30
    return m0, max(e, -31)


def requantize(acc, mult, shift, lo, hi) -> np.ndarray:
    acc = np.asarray(acc, np.int64)
    total_shift = 31 - np.asarray(shift, np.int64)
    product = acc * np.asarray(mult, np.int64) + (np.int64(1) << (total_shift - 1))
    return np.clip(product >> total_shift, lo, hi).astype(np.int32)  # numpy >> on int64 floors


def trace(acc, mult, shift, lo, hi) -> list[tuple[str, int | float]]:
    """The steps of requantize() for one accumulator as (step, value) pairs, in Python integers;
    the last value is requantize()'s result (before the zero point is added). The value marked
    "real value" is the unrounded quotient (as a double, for reading)."""
    acc, m0, e = int(acc), int(mult), int(shift)
    total_shift = 31 - e
    product = acc * m0
    half = 1 << (total_shift - 1)
    y = (product + half) >> total_shift  # Python's >> floors, like the C's floor division
    return [
        (f"acc * M0 = acc * {m0} (the 64-bit product)", product),
        (f"acc * M0 / 2^{total_shift} (real value before the only rounding)", product / 2.0**total_shift),
        (f"+ 2^{total_shift - 1} (one half: halves round up)", product + half),
        (f"shift right by {total_shift} = 31 - e, flooring: the only rounding", y),
        (f"clamp to [{int(lo)}, {int(hi)}] (the output range minus Z_y)", min(max(y, int(lo)), int(hi))),
    ]
