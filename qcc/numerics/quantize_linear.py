"""ONNX Runtime's QuantizeLinear and DequantizeLinear in float32 (numpy float32 is IEEE-754 exact),
used wherever qcc computes codes from reals at compile time or checks them: the --float-io
boundary ops, float islands, requantization tables, the ORT harness."""

from __future__ import annotations

import numpy as np

from qcc.ir import DTYPE_RANGE


def quantize_linear(x: np.ndarray, scale: np.float32, zero: int, dtype: str) -> np.ndarray:
    """ORT's QuantizeLinear: a true float32 division, clamp, round half to even, NaN to qmin."""
    qmin, qmax = DTYPE_RANGE[dtype]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    v = np.where(np.isnan(v), np.float32(qmin - zero), v)
    return (np.rint(np.clip(v, qmin - zero, qmax - zero)).astype(np.int64) + zero).astype(dtype)


def dequantize_linear(q: np.ndarray, scale, zero) -> np.ndarray:
    """ORT's DequantizeLinear: f32(f32(q - z) * s); scale and zero may be arrays that broadcast."""
    zero = np.asarray(zero).astype(np.int64)
    return (np.asarray(q).astype(np.int64) - zero).astype(np.float32) * np.asarray(scale, dtype=np.float32)


def codes_in_byte_order(dtype: str) -> np.ndarray:
    """The 256 codes of an 8-bit type in byte order: entry b is the code whose byte is b (int8: 0..127
    then -128..-1), the order in which 256-entry tables are indexed."""
    return np.arange(256, dtype=np.uint8).view(np.dtype(dtype)).astype(np.int64)
