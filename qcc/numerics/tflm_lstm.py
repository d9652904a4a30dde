"""TFLM's integer UNIDIRECTIONAL_SEQUENCE_LSTM (int8 input, output and hidden state; int16 cell state and gates),
step by step as the pinned wheel computes it (micro/kernels/lstm_eval.h, lstm_eval.cc, lstm_eval_common.cc).

Per time step, with x the step's input codes (zero point z_x), h the hidden state (int8, zero point z_h) and c
the cell state (int16, scale s_c = 2^p):

    gate_g = sat16(FC(x, W_g, b_g) + FC(h, R_g))                  g in forget, input, cell, output
        FC: acc = sum(w * (q - z)) + b in int32 (wrapping), MBQM(acc, M0, e) clamped to int16, with (M0, e) =
        QuantizeMultiplier(s_q * s_w / 2^-12) in double: each gate's pre-activation in Q3.12
    f, i, o = LOGISTIC16(gate) and g = TANH16(gate_cell), TFLM's int16 kernels (tflm_int16.sigmoid_int16) at the
        power-of-two scale 2^-12: Q0.15 out
    c = MUL16(f, c; 2^-15 s_c / s_c);  c = sat16(c + MUL16(i, g; 2^-30 / s_c));  c = clamp(c, +-clip)
        MUL16(a, b; M) = clamp16(MBQM(a * b, M0, e)), QuantizeMultiplier(M) of the double product of the scales;
        clip = int16(clamp(cell_clip / s_c, -32768, 32767)), truncated, where cell_clip > 0
    h = clamp8(MBQM(TANH16'(c) * o, M0, e) + z_h),  M = 2^-30 / s_h;  TANH16' rescales Q(15 + p) to Q3.12: the
        multiplier 3 << (12 + p) where 12 + p >= 0, else 3 with a right shift of -(12 + p)
    the step's output = h

MBQM is TFLM's int32 MultiplyByQuantizedMultiplier, wrapping where its C++ overflows (qcc/numerics/tflm.py).
Every gate reads the hidden state of the previous step; the state persists from one inference to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcc.numerics import tflm
from qcc.numerics.tflm_int16 import checked_log2, sigmoid_int16

GATES = ("forget", "input", "cell", "output")
GATE_SCALE = 2.0**-12  # the pre-activations: Q3.12
ACTIVATION_SCALE = 2.0**-15  # the gates after their non-linearity: Q0.15


def wrap_int32(values) -> np.ndarray:
    return ((np.asarray(values, np.int64) + 2**31) & 0xFFFFFFFF) - 2**31


def mbqm(x, m0: int, e: int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplier(int32 x, M0, e) on an array, x * 2^max(e, 0) wrapping in int32."""
    shifted = wrap_int32(np.asarray(x, np.int64) * (1 << max(e, 0)))
    return tflm.rounding_divide_by_pot(tflm.saturating_rounding_doubling_high_mul(shifted, m0), max(-e, 0))


def multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier of a double; ValueError where TFLM's left shift by e would overflow undefinedly."""
    m0, e = tflm.quantize_multiplier(real)
    if e > 31:
        raise ValueError(f"the multiplier {real:g} is 2^31 or more")
    return m0, e


@dataclass
class LstmParams:
    """Everything the step needs, computed at compile time (the C's parameter struct holds the same)."""
    input_weights: np.ndarray  # int8 [4, state, input], gates in GATES order
    recurrent_weights: np.ndarray  # int8 [4, state, state]
    input_acc_const: np.ndarray  # int64 [4, state]: bias - z_x * rowsum(W), reduced modulo 2^32
    recurrent_acc_const: np.ndarray  # int64 [4, state]: -z_h * rowsum(R), reduced modulo 2^32
    input_scaling: list[tuple[int, int]]  # (M0, e) per gate
    recurrent_scaling: list[tuple[int, int]]
    forget_mul: tuple[int, int]
    input_mul: tuple[int, int]
    hidden_mul: tuple[int, int]
    hidden_zero: int
    cell_clip: int  # the quantized clip, 0 for none
    cell_tanh: tuple[int, int]  # (multiplier, shift) of the cell state's TANH (sigmoid_int16's arguments)


def prepare(s_x: float, z_x: int, s_h: float, z_h: int, s_c: float, weights, recurrent, biases, weight_scales,
            recurrent_scales, cell_clip: float) -> LstmParams:
    """LstmParams from the model's quantization: weights/recurrent/biases are per gate (GATES order)."""
    w = np.stack([np.asarray(a, np.int8) for a in weights])
    r = np.stack([np.asarray(a, np.int8) for a in recurrent])
    b = np.stack([np.zeros(w.shape[1], np.int64) if a is None else np.asarray(a, np.int64) for a in biases])
    input_acc = wrap_int32(b - z_x * w.astype(np.int64).sum(axis=2))
    recurrent_acc = wrap_int32(-z_h * r.astype(np.int64).sum(axis=2))
    f32 = lambda v: float(np.float32(v))  # noqa: E731 (TFLite's scales are float32)
    input_scaling = [multiplier(f32(s_x) * f32(s) / GATE_SCALE) for s in weight_scales]
    recurrent_scaling = [multiplier(f32(s_h) * f32(s) / GATE_SCALE) for s in recurrent_scales]
    power, _ = checked_log2(s_c)  # TFLM keeps the rounded exponent whether or not the scale is a power of two
    shift = 15 + power - 3
    cell_tanh = (3, -shift) if shift < 0 else (0, shift)
    clip = 0
    if cell_clip > 0:
        clip = int(min(max(float(np.float32(cell_clip)) / f32(s_c), -32768.0), 32767.0))
    return LstmParams(w, r, input_acc, recurrent_acc, input_scaling, recurrent_scaling,
                      multiplier(ACTIVATION_SCALE * f32(s_c) / f32(s_c)),
                      multiplier(ACTIVATION_SCALE * ACTIVATION_SCALE / f32(s_c)),
                      multiplier(ACTIVATION_SCALE * ACTIVATION_SCALE / f32(s_h)), z_h, clip, cell_tanh)


def _fc(codes, weights, acc_const, scaling) -> np.ndarray:
    acc = wrap_int32(weights.astype(np.int64) @ np.asarray(codes, np.int64) + acc_const)
    return np.clip(mbqm(acc, *scaling), -32768, 32767)


def step(p: LstmParams, x, h, c) -> tuple[np.ndarray, np.ndarray]:
    """One time step of one batch row: (h, c) after it (int64 arrays of int8 / int16 codes)."""
    gates = []
    for g in range(4):
        pre = np.clip(_fc(x, p.input_weights[g], p.input_acc_const[g], p.input_scaling[g])
                      + _fc(h, p.recurrent_weights[g], p.recurrent_acc_const[g], p.recurrent_scaling[g]), -32768, 32767)
        gates.append(sigmoid_int16(pre, 0, 0, tanh=GATES[g] == "cell").astype(np.int64))
    forget, input_gate, cell, output = gates
    c = np.clip(mbqm(forget * c, *p.forget_mul), -32768, 32767)
    c = np.clip(c + np.clip(mbqm(input_gate * cell, *p.input_mul), -32768, 32767), -32768, 32767)
    if p.cell_clip:
        c = np.clip(c, -p.cell_clip, p.cell_clip)
    squashed = sigmoid_int16(c, *p.cell_tanh, tanh=True).astype(np.int64)
    h = np.clip(wrap_int32(mbqm(squashed * output, *p.hidden_mul) + p.hidden_zero), -128, 127)
    return h, c


def run(p: LstmParams, x: np.ndarray, h: np.ndarray, c: np.ndarray, time_major: bool):
    """The whole sequence: x int8 (batch, time, input) or (time, batch, input); h (batch, state) int8 and c
    (batch, state) int16, the state as the inference starts. Returns (output like x with state columns, h, c)."""
    x = np.asarray(x, np.int64)
    h, c = np.asarray(h, np.int64).copy(), np.asarray(c, np.int64).copy()
    steps, batch = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    out = np.zeros((*x.shape[:2], h.shape[1]), np.int64)
    for n in range(batch):
        for t in range(steps):
            at = (t, n) if time_major else (n, t)
            h[n], c[n] = step(p, x[at], h[n], c[n])
            out[at] = h[n]
    return out.astype(np.int8), h.astype(np.int8), c.astype(np.int16)
