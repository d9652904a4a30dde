"""The `ort` scheme's fast path (runtime_c/qcc_requant_ort.h, qcc_requantize_ort_fast, through
qcc_requant.h's channel functions as the kernels call them) against qcc's Python requantize(), which
test_rounding_ort.py holds equal to float32 arithmetic.

The fast path rounds once, on acc * M in 64 bits, where ORT rounds twice (to 24 significant bits,
then to an integer), and hands the outputs near a half to the exact path. The crafted cases are the
ones that could tell the two apart: ties of either rounding, products that land on a half only
after the first rounding (the double rounding differs from a single one there), products of 24 and
25 bits, |acc| at and around 2^24 (where f32(acc) starts to round), the ends of int32, every shift
15..57 and the clamp edges. The C runs under UBSan, built by gcc and clang with -Werror."""

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from qcc.assets import asset_dir
from qcc.numerics import ort_float32
from qcc.ops.quantized import Requant, fold_constant_channels, requant_fields
from test_rounding_ort import float32_oracle

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
CLAMPS = [(-255, 255), (0, 255), (-128, 127), (-255, 0), (-1, 1), (7, 7), (0, 0), (-200, -100)]
WIDE = (INT32_MIN, INT32_MAX)  # outside [-255, 255]: no fast path, every output exact


# ---------------------------------------------------------------- cases

def trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def ends(m: int, s: int) -> list[int]:
    """int32 ends, |acc| around 2^24 and 2^25, products of n bits for every n, clamp edges."""
    accs = [INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1, 0, 1, -1, 2, -2, 3, -3]
    for base in (2**24, 2**25, 2**26, 2**31 - 2**7):
        accs += [sign * (base + d) for sign in (1, -1) for d in (-3, -2, -1, 0, 1, 2, 3, 4)]
    if m:
        for n in range(20, 57):  # acc * m just below, at and above 2^n: 24 and 25 bits among them
            base = (1 << n) // m
            accs += [sign * (base + d) for sign in (1, -1) for d in (-1, 0, 1, 2)]
        for v in (0, 1, 2, 127, 128, 199, 200, 254, 255, 256, 300):  # r = v +- 1/2: the clamp edges, rounded
            for half in (-1, 1):
                base = ((2 * v + half) << (s - 1)) // m
                accs += [sign * (base + d) for sign in (1, -1) for d in (-1, 0, 1)]
    return [a for a in accs if INT32_MIN <= a <= INT32_MAX]


def last_ties(m: int, s: int, rng) -> list[int]:
    """acc * m == (2q + 1) * 2^(s-1): a tie of the last rounding (when the product has <= 24 bits,
    or more with the low bits zero), and the neighbours."""
    if m == 0:
        return []
    z = trailing_zeros(m)
    if z > s - 1:
        return []
    accs = []
    for u in rng.integers(-400, 400, 24).tolist() + [0, -1]:
        acc = (2 * u + 1) << (s - 1 - z)  # acc * m = (2u + 1) * (m >> z) * 2^(s-1): odd times 2^(s-1)
        accs += [acc - 1, acc, acc + 1]
    return [a for a in accs if INT32_MIN <= a <= INT32_MAX]


def double_rounding_cases(rng, count: int) -> list[tuple[int, int, int]]:
    """(acc, mult, shift) with acc * mult = H + d, H = (2q + 1) * 2^(shift-1) a half of the last
    rounding and d in {0, +-1, +-2^(e-1) +- {0, 1}, +-2^e, +-3 * 2^(e-1), (2u + 1) * 2^(e-1)}, where
    rounding to 24 bits drops e bits: +-2^(e-1) is a tie of the first rounding that lands on H (then a
    tie again), (2u + 1) * 2^(e-1) a tie of the first rounding anywhere."""
    cases = []
    odd = list(range(1, 4096, 2))
    while len(cases) < count:
        s, q = int(rng.integers(15, 58)), int(rng.integers(0, 255))
        h = (2 * q + 1) << (s - 1)
        e = h.bit_length() - 24
        if e < 1:
            continue
        half = 1 << (e - 1)
        # d = (2u + 1) * 2^(e-1), |d| < 2^(s-1): a tie of the first rounding anywhere between two halves
        anywhere = (2 * int(rng.integers(-(1 << max(s - e - 2, 0)), 1 << max(s - e - 2, 0))) + 1) * half
        d = [0, 1, -1, half, -half, half + 1, half - 1, -half + 1, -half - 1, 2 * half, -2 * half,
             3 * half, -3 * half, anywhere, anywhere][int(rng.integers(0, 15))]
        p = h + d
        v = trailing_zeros(p)
        start = int(rng.integers(0, len(odd)))
        for c in odd[start:] + odd[:start]:  # p = acc * mult, acc = c * 2^w, mult < 2^24, |acc| < 2^31
            if (p >> v) % c:
                continue
            w = max(0, (p // c).bit_length() - 24)
            acc = c << w
            if w <= v and acc < 2**31 and 0 < p // acc < 2**24:
                cases.append((acc if rng.random() < 0.5 else -acc, p // acc, s))
                break
    return cases


def layer(mult: int, shift: int, lo: int, hi: int, exact: bool, accs) -> dict:
    accs = np.asarray(accs, np.int64)
    if exact:
        accs = accs[np.abs(accs) <= 2**24]
    fast = ort_float32.fast_path([mult], [shift], lo, hi, exact)
    return {"mult": mult, "shift": shift, "lo": lo, "hi": hi, "exact": exact, "acc": accs,
            "fast_mult": int(fast.mult[0]), "fast_shift": fast.shift}


CRAFTED_MULTS = [0, 1, 12345, 2**23, 2**23 + 1, 2**24 - 1, 3 * 2**22, 5 * 2**21, 7 * 2**21, 9 * 2**20, 2**23 + 2**12,
                 11_184_811, 16_777_213]


def crafted_layers(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    layers = []
    for s in range(15, 58):
        for m in CRAFTED_MULTS + [int(rng.integers(2**23, 2**24)) | 1]:
            accs = ends(m, s) + last_ties(m, s, rng)
            for exact in (False, True):
                clamp = CLAMPS[(s + m + exact) % len(CLAMPS)]
                layers.append(layer(m, s, *clamp, exact, accs))
            layers.append(layer(m, s, -255, 255, False, accs))
            layers.append(layer(m, s, *WIDE, False, accs))
    for acc, m, s in double_rounding_cases(rng, 6000):
        # every such layer with its neighbours, for both exact flags (where |acc| <= 2^24)
        accs = [acc - 1, acc, acc + 1, -acc]
        layers.append(layer(m, s, -255, 255, False, accs))
        layers.append(layer(m, s, -255, 255, True, accs))
    return layers


def random_layers(seed: int, n_layers: int, per_layer: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(n_layers):
        # mostly the shifts of real layers (scales 2^-3 .. 2^-20), some anywhere in 15..57
        s = int(rng.integers(26, 44)) if rng.random() < 0.8 else int(rng.integers(15, 58))
        m = int(rng.integers(2**23, 2**24)) if rng.random() < 0.95 else int(rng.integers(0, 2**24))
        lo, hi = CLAMPS[int(rng.integers(0, len(CLAMPS)))] if rng.random() < 0.7 else \
            tuple(sorted(rng.integers(-255, 256, 2).tolist()))
        exact = bool(rng.random() < 0.5)
        bound = 2**24 if exact else 2**31
        k = per_layer // 4
        near = np.round(rng.uniform(-300, 300, k) * 2.0**s / max(m, 1))
        halves = np.floor((np.floor(rng.uniform(-300, 300, k)) + 0.5) * 2.0**s / max(m, 1))  # r near v + 1/2
        accs = np.concatenate([rng.integers(-bound, bound, k), rng.integers(-2**16, 2**16, k), near, halves,
                               halves + 1]).clip(-bound, bound - 1).astype(np.int64)
        layers.append(layer(m, s, lo, hi, exact, accs))
    return layers


# ---------------------------------------------------------------- the Python parameters and model

def test_fast_path_parameters():
    for s in range(15, 58):
        for m in CRAFTED_MULTS:
            for exact in (False, True):
                fast = ort_float32.fast_path([m], [s], -255, 255, exact)
                j, big_m = fast.shift, int(fast.mult[0])
                assert j in ort_float32.FAST_SHIFTS and 0 <= big_m < 2**31
                if big_m:
                    assert big_m == m << (32 + j - s)
                    assert exact or m * 2**24 >= 256 * 2**s
                # every normalized multiplier of a usual scale (2^-3 .. 2^-15) gets the fast path
                if 2**23 <= m and 26 <= s <= 39:
                    assert big_m
    # a layer of shifts 29..34 (what the benchmark networks have): one j for all, every channel fast
    fast = ort_float32.fast_path([2**23, 2**24 - 1, 12_000_000] * 2, [29, 30, 31, 32, 33, 34], 0, 255, True)
    assert fast.shift == 2 and np.all(fast.mult != 0)
    # a clamp window wider than an 8-bit output's: nothing fast
    assert not np.any(ort_float32.fast_path([2**23], [30], -256, 255, True).mult)
    assert not np.any(ort_float32.fast_path([2**23], [30], *WIDE, True).mult)
    # |acc| <= 2^24 proven per channel: a channel whose bound passes it (a large bias) and whose outputs need
    # not clamp takes the exact path alone; the others stay fast
    fast = ort_float32.fast_path([2**23, 2**23], [40, 40], 0, 255, [True, False])
    assert fast.mult[0] != 0 and fast.mult[1] == 0
    assert np.array_equal(fast.mult, [ort_float32.fast_path([2**23], [40], 0, 255, e).mult[0] for e in (True, False)])


def test_python_fast_path_on_crafted_cases():
    """fast_requantize (the C's arithmetic in numpy) == requantize wherever it answers."""
    total = answered = 0
    for ly in crafted_layers(1):
        want = ort_float32.requantize(ly["acc"], ly["mult"], ly["shift"], ly["lo"], ly["hi"])
        got, exact = ort_float32.fast_requantize(ly["acc"], ly["fast_mult"], ly["fast_shift"], ly["lo"], ly["hi"])
        bad = ~exact & (got != want)
        assert not bad.any(), (ly["mult"], ly["shift"], ly["lo"], ly["hi"], ly["acc"][bad][:4], got[bad][:4], want[bad][:4])
        total += ly["acc"].size
        answered += int((~exact).sum())
    assert total > 500_000 and answered > 200_000


def test_double_rounding_cases_are_the_ones_that_differ():
    """Where acc * mult lies near a half, the two roundings differ from one in a fair share of the
    crafted cases: the fast path hands every one of those to the exact path."""
    cases = double_rounding_cases(np.random.default_rng(3), 3000)
    differ = 0
    for acc, m, s in cases:
        two = int(ort_float32.requantize(np.array([acc]), m, s, -255, 255)[0])
        one = ort_float32._round_shift_right_even_int(abs(acc) * m, s) * (1 if acc > 0 else -1)
        fast = ort_float32.fast_path([m], [s], -255, 255, True)
        got, exact = ort_float32.fast_requantize(np.array([acc]), int(fast.mult[0]), fast.shift, -255, 255)
        assert exact[0] or int(got[0]) == two
        if one != two:
            differ += 1
            assert exact[0]
    assert differ > 300


# ---------------------------------------------------------------- the C

HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "qcc_requant.h"
/* stdin: layers, each int32 (mult, shift, lo, hi, zero, acc_f32_exact, exact_mult or -1 for NULL,
 * fast_shift, fast_bias, fast_window, fast_lo, fast_hi, fast_zero, count): one channel's
 * qcc_requant_params as the compiler emits them, then count int32 accumulators. stdout: per
 * accumulator, int32 qcc_requantize() (the kernels' path: qcc_requant_channel_of,
 * qcc_requantize_channel) minus zero, and int32 1 if the fast path answered. */
int main(void)
{
    int32_t h[14], acc, out[2];
    while (fread(h, sizeof h, 1, stdin) == 1) {
        const uint32_t mult = (uint32_t)h[0], exact_mult = (uint32_t)h[6];
        const int8_t shift = (int8_t)h[1];
        qcc_requant_params rq;
        qcc_requant_channel ch;
        int32_t n;
        rq.mult = &mult;
        rq.shift = &shift;
        rq.per_channel = 0;
        rq.zero = h[4];
        rq.lo = h[2];
        rq.hi = h[3];
        rq.acc_f32_exact = h[5];
        rq.exact_mult = h[6] < 0 ? NULL : &exact_mult;
        rq.fast_shift = h[7];
        rq.fast_bias = (uint32_t)h[8];
        rq.fast_window = (uint32_t)h[9];
        rq.fast_lo = h[10];
        rq.fast_hi = h[11];
        rq.fast_zero = h[12];
        ch = qcc_requant_channel_of(&rq, 0);
        for (n = 0; n < h[13]; ++n) {
            int32_t fast;
            if (fread(&acc, sizeof acc, 1, stdin) != 1) {
                return 2;
            }
            out[0] = qcc_requantize(&rq, acc, 0) - rq.zero;
            out[1] = qcc_requantize_ort_fast(&ch.fast, acc, &fast);
            if (qcc_requantize_channel(&ch, acc) != out[0] + rq.zero) {
                return 3;
            }
            fwrite(out, sizeof out, 1, stdout);
        }
    }
    return 0;
}
"""


def compile_harness(compiler: str, folder: Path) -> Path:
    (folder / "harness.c").write_text(HARNESS)
    (folder / "qcc_config.h").write_text("#define QCC_ROUNDING_ORT 1\n")
    binary = folder / f"harness_{compiler}"
    subprocess.run([compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", f"-I{folder}", f"-I{asset_dir('runtime_c')}", str(folder / "harness.c"),
                    "-o", str(binary)], check=True)
    return binary


def c_fields(ly: dict, zero: int) -> list[int]:
    """The harness's header for one layer: its qcc_requant_params as emit_requant writes them."""
    rq = Requant(scheme="ort", scale=np.float32([0]), real_scale=np.zeros(1), mult=np.array([ly["mult"]], np.uint32),
                 shift=np.array([ly["shift"]], np.int8), zero=zero, lo=ly["lo"], hi=ly["hi"], acc_f32_exact=ly["exact"],
                 fast=ort_float32.FastPath(ly["fast_shift"], np.array([ly["fast_mult"]], np.int32)))
    f = requant_fields(rq)
    exact_mult = -1 if f["exact_mult"] is None else int(f["exact_mult"][0])
    return [int(f["mult"][0]), int(f["shift"][0]), f["lo"], f["hi"], f["zero"], f["acc_f32_exact"], exact_mult,
            *(f[k] for k in ("fast_shift", "fast_bias", "fast_window", "fast_lo", "fast_hi", "fast_zero"))]


def run_harness(binary: Path, layers) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for i, ly in enumerate(layers):
        zero = 0 if ly["lo"] == INT32_MIN else (i * 37) % 511 - 255  # qcc_requantize() adds it: no int32 overflow
        parts += [np.array(c_fields(ly, zero) + [ly["acc"].size], np.int64), ly["acc"]]
    data = np.concatenate(parts).astype(np.uint32).astype("<u4").tobytes()
    out = subprocess.run([str(binary)], input=data, capture_output=True, check=True)
    assert out.stderr == b""  # UBSan reports go to stderr
    got = np.frombuffer(out.stdout, dtype="<i4").reshape(-1, 2).astype(np.int64)
    assert got.shape[0] == sum(ly["acc"].size for ly in layers)
    return got[:, 0], got[:, 1].astype(bool)


def expected(layers) -> tuple[np.ndarray, np.ndarray]:
    want = [ort_float32.requantize(ly["acc"], ly["mult"], ly["shift"], ly["lo"], ly["hi"]) for ly in layers]
    fast = [~ort_float32.fast_requantize(ly["acc"], ly["fast_mult"], ly["fast_shift"], ly["lo"], ly["hi"])[1]
            for ly in layers]
    return np.concatenate(want).astype(np.int64), np.concatenate(fast)


def first_mismatches(layers, got, want, limit=5) -> list:
    rows = [(ly["acc"][k], ly["mult"], ly["shift"], ly["lo"], ly["hi"], ly["exact"]) for ly in layers
            for k in range(ly["acc"].size)]
    return [(*rows[j], int(got[j]), int(want[j])) for j in np.flatnonzero(got != want)[:limit]]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_c_fast_path_on_crafted_cases(compiler):
    """C == Python on the crafted set, and (the scale being a float32, mult * 2^-shift) == float32
    arithmetic itself; the fast path answers exactly where the Python model of it does."""
    layers = crafted_layers(1)
    with tempfile.TemporaryDirectory() as tmp:
        got, answered = run_harness(compile_harness(compiler, Path(tmp)), layers)
    want, fast = expected(layers)
    assert np.array_equal(got, want), first_mismatches(layers, got, want)
    assert np.array_equal(answered, fast)
    oracle = np.concatenate([float32_oracle(ly["acc"], np.float32(ly["mult"] * 2.0 ** -ly["shift"]), ly["lo"], ly["hi"])
                             for ly in layers])
    assert np.array_equal(got, oracle), first_mismatches(layers, got, oracle)
    print(f"{compiler}: {got.size} crafted outputs, {int(answered.sum())} by the fast path")
    assert got.size > 500_000 and answered.sum() > 200_000


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_c_fast_path_on_random_draws(compiler):
    """C == Python on millions of drawn (acc, mult, shift, clamp); nearly all outputs of the channels
    that have a fast path take it."""
    layers = random_layers(2, 1500, 3200)
    with tempfile.TemporaryDirectory() as tmp:
        got, answered = run_harness(compile_harness(compiler, Path(tmp)), layers)
    want, fast = expected(layers)
    assert np.array_equal(got, want), first_mismatches(layers, got, want)
    assert np.array_equal(answered, fast)
    eligible = np.concatenate([np.full(ly["acc"].size, ly["fast_mult"] != 0) for ly in layers])
    print(f"{compiler}: {got.size} drawn outputs, {int(answered.sum())} by the fast path "
          f"({int(answered.sum())} of {int(eligible.sum())} in channels that have one)")
    # two fifths of the draws sit next to a half on purpose; the exact path takes some of those
    assert got.size > 4_000_000 and answered.sum() > 0.95 * eligible.sum() and eligible.mean() > 0.6


def test_a_channel_with_a_large_bias_leaves_the_others_on_the_fast_path(tmp_path):
    """A 1x1 convolution whose channel 0 has a bias near 2^28 (|acc| may pass 2^24, so f32(acc) may round):
    that channel alone cannot take the fast path (the others scale by under 2^-16: fast only where |acc| <= 2^24 is
    proven for them); C == reference == ORT on every value."""
    from helpers import check_exact
    from test_op_conv import qlinearconv_model

    rng = np.random.default_rng(6)
    w = rng.integers(-127, 128, (4, 8, 1, 1)).astype(np.int8)
    w_scale = np.array([1e-9, 2e-3, 3e-3, 1e-3], np.float32)
    model = qlinearconv_model(x_dtype="int8", x_shape=(1, 8, 3, 3), w=w, w_scale=w_scale, w_zero=np.zeros(4, np.int64),
                              x_scale=np.float32(0.05), x_zero=-3, y_scale=np.float32(8.0), y_zero=0, y_shape=(1, 4, 3, 3),
                              bias=[2**28 + 12345, 900, -700, 50], kernel_shape=[1, 1])
    compiled = check_exact(model, tmp_path, n_random=6)
    (node,) = compiled.graph.nodes
    fast = node.params["requant"].fast.mult
    assert fast[0] == 0 and np.all(fast[1:] != 0)
    # channel 0's outputs are 0 over its whole accumulator range (2^28 * 6e-12 < 1/2): the C computes that
    # constant on the fast path (weights 0, acc_const 0, scale 1), the C above equal to ORT with it
    folded = fold_constant_channels(node.params)
    assert np.all(folded["requant"].fast.mult != 0) and not folded["weights"][0].any() and folded["acc_const"][0] == 0
    assert np.array_equal(folded["weights"][1:], node.params["weights"][1:])
