"""ONNX Runtime's QuantizeLinear and DequantizeLinear in float32 (numpy float32 is IEEE-754 exact),
used wherever qcc computes codes from reals at compile time or checks them: the --float-io
boundary ops, the 256-entry tables (lookup ops, float islands, QLinearConcat), the ORT harness."""

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


def code_table(in_dtype: str, in_scale, in_zero: int, f, out_dtype: str, out_scale, out_zero: int) -> np.ndarray:
    """ORT's 256-entry tables (qlinear_lookup_table.cc: QLinearLeakyRelu, QLinearSigmoid,
    QLinearConcat; and qcc's float islands): for each input byte b, with x the code whose byte is b,

        table[b] = QuantizeLinear(f(DequantizeLinear(x)), out_scale, out_zero)

    `f` maps the 256 dequantized inputs, float32 of shape (1, 256), to what ORT's float kernels
    compute from them, float32 values that broadcast to (channels, 256) where the op's parameters
    vary by channel. Returns the output codes' bytes, uint8 of shape (channels or 1, 256)."""
    x = dequantize_linear(codes_in_byte_order(in_dtype), in_scale, in_zero).reshape(1, 256)
    with np.errstate(all="ignore"):
        y = np.asarray(f(x), dtype=np.float32)
    codes = quantize_linear(y, out_scale, out_zero, out_dtype)
    return np.ascontiguousarray(codes.view(np.uint8)).reshape(-1, 256)
