"""`qcc explain`: the integer arithmetic of each layer with the model's own numbers, and one value
traced through it on a real input.

Each op says what it computes through Op.explain (qcc/ops/explanation.py): a kind and one
sentence, or for a requantizing op (convolutions, matrix products, the integer average pools) the
pieces of its arithmetic. From those this module collects, into one dict: the real-valued formula
and the integer one; S_x, Z_x, S_w and Z_w per channel, S_y, Z_y and the output clamp; M exactly,
its M0 and n in the chosen rounding scheme (M ~ M0 * 2^-n) and the relative error of M0 * 2^-n
against M; the folded constant of each channel with the terms it holds; the accumulator bound from
the range analysis; the C the backend emits; and one output element traced from the layer's input
codes: its accumulator as the op computes it, directly, sum((x - Z_x)(w - Z_w)) + bias, and in the
kernel's folded form, acc_const + sum(x(w - Z_w)), then each step of the scheme, the clamp, the
zero point and the final code, next to the reference interpreter's value for that element.

The three output formats (text, markdown, json) render that one dict; the json form is documented
in docs/explain_json.md (schema_version 1).
"""

from __future__ import annotations

import decimal
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from qcc import reference
from qcc.backend.writer import emit_layers, io_entries
from qcc.commands.compile import golden_cases
from qcc.errors import QccError
from qcc.ir import DTYPE_RANGE, Graph, Node
from qcc.numerics import SCHEMES
from qcc.numerics.accumulator_range import AccumulatorRange
from qcc.ops import op_named
from qcc.ops.explanation import Explanation, RequantExplanation
from qcc.ops.quantized import wrap_int32
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import random_inputs

SCHEMA_VERSION = 1
FORMATS = ("text", "markdown", "json")
FIRST_TERMS = 9  # how many products of the traced window the trace lists

SCHEME_FACTS = {
    "ort": {
        "description": "ONNX Runtime's float32 requantization, bit-exact: v = f32(f32(acc) * scale), q = rne(v). "
                       "M0 is the 24-bit significand of the float32 scale ORT multiplies by and n its exponent, so "
                       "M0 * 2^-n is that float32 exactly; the integer C reproduces each float32 rounding.",
        "c_function": "qcc_requantize_ort(acc, M0, n, lo, hi, acc_f32_exact)",
        "header": "runtime_c/qcc_requant_ort.h",
        "python": "qcc/numerics/ort_float32.py",
    },
    "tflm": {
        "description": "TensorFlow Lite Micro / gemmlowp: M0 = round(q * 2^31) (halves away from zero) from "
                       "frexp(M_double) = q * 2^e, n = 31 - e; a saturating rounding doubling high multiply "
                       "(first rounding) and a rounding right shift by -e (second rounding, halves away from zero).",
        "c_function": "qcc_requantize_tflm(acc, M0, e, lo, hi)",
        "header": "runtime_c/qcc_requant_tflm.h",
        "python": "qcc/numerics/tflm.py",
    },
    "single": {
        "description": "CMSIS-NN / TVM single rounding: TFLM's Q31 M0 and e (e clamped to [-31, 30]), n = 31 - e; "
                       "y = (acc * M0 + 2^(n-1)) >> n in 64 bits: one rounding, halves up.",
        "c_function": "qcc_requantize_single(acc, M0, e, lo, hi)",
        "header": "runtime_c/qcc_requant_single.h",
        "python": "qcc/numerics/single_rounding.py",
    },
}


# --- small helpers --------------------------------------------------------------------------------


def _decimal(value: Fraction, digits: int = 20) -> str:
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        return str(decimal.Decimal(value.numerator) / decimal.Decimal(value.denominator))


def _f(value) -> float:
    return float(value)


def _wrap32(value: int) -> int:
    return int(wrap_int32(value))


def _scheme_m0_n(scheme: str, mult: int, shift: int) -> tuple[int, int]:
    """(M0, n) with M ~ M0 * 2^-n: ort stores n itself, tflm and single store e = 31 - n."""
    return (mult, shift) if scheme == "ort" else (mult, 31 - shift)


def _bits(low: int, high: int) -> int:
    return AccumulatorRange(np.array([low]), np.array([high])).bits


def _c_requantize(rq, index: int) -> str:
    mult, shift = int(rq.mult[index]), int(rq.shift[index])
    tail = f", {int(rq.acc_f32_exact)}" if rq.scheme == "ort" else ""
    return f"y = qcc_requantize_{rq.scheme}(acc, {mult}u, {shift}, {rq.lo}, {rq.hi}{tail}) + {rq.zero}"


def _scheme_trace(rq, index: int, acc: int) -> list[tuple[str, int | float]]:
    extra = {"acc_f32_exact": rq.acc_f32_exact} if rq.scheme == "ort" else {}
    return SCHEMES[rq.scheme].trace(acc, int(rq.mult[index]), int(rq.shift[index]), rq.lo, rq.hi, **extra)


# --- facts ------------------------------------------------------------------------------------------


def _operand(graph: Graph, name: str) -> dict:
    tensor = graph.tensor(name)
    scale, zero = tensor.quant.scalar()
    return {"tensor": graph.public_name(name), "dtype": tensor.dtype, "shape": list(tensor.shape),
            "scale": _f(scale), "zero_point": int(zero)}


def _channel_facts(layer: RequantExplanation, c: int | None) -> dict:
    """One row of the per-channel table; c None: the row that holds for every channel (per-tensor M)."""
    rq, node = layer.rq, layer.node
    i = layer.rq_index(c or 0)
    m = layer.exact_m(c or 0)
    m0, n = _scheme_m0_n(rq.scheme, int(rq.mult[i]), int(rq.shift[i]))
    approx = Fraction(m0) * Fraction(2) ** -n
    r = node.params["acc_range"]
    low, high = int(r.low[c or 0]), int(r.high[c or 0])
    return {
        "channel": c,
        "s_w": None if layer.s_w[c or 0] is None else _f(layer.s_w[c or 0]),
        "z_w": layer.z_w[c or 0],
        "M": float(m), "M_decimal": _decimal(m), "M_double": _f(rq.real_scale[i]), "M_float32": _f(rq.scale[i]),
        "M0": m0, "n": n, "stored_shift": int(rq.shift[i]), "M0_times_2_pow_minus_n": float(approx),
        "relative_error": float(approx / m - 1),
        "acc_const": layer.acc_const(c or 0), "acc_const_terms": layer.acc_const_terms(c or 0),
        "acc_low": low, "acc_high": high, "acc_bits": _bits(low, high),
        "int32_safe": bool(low >= -(2**31) and high <= 2**31 - 1),
    }


def _choose_position(layer: RequantExplanation, values, c: int, position: int | None) -> tuple[int, str]:
    count = layer.positions()
    if position is not None:
        if not 0 <= position < count:
            raise QccError(f"--position {position}: node '{layer.node.name}' has {count} output position(s) per "
                           f"channel (0..{count - 1})")
        return position, "chosen with --position"
    lo, hi = layer.rq.lo + layer.rq.zero, layer.rq.hi + layer.rq.zero
    y = values[layer.node.outputs[0]]
    codes = np.array([y[layer.output_index(c, p)] for p in range(count)])
    inside = np.flatnonzero((codes != lo) & (codes != hi))
    if inside.size:
        return int(inside[0]), ("the channel's only output element" if count == 1 else
                                "the channel's first position, row-major in batch 0, whose code is not at a clamp bound")
    return 0, "the channel's first position (every one is at a clamp bound)"


def _element_facts(layer: RequantExplanation, values, c: int, position: int) -> dict:
    """The traced element's accumulator, both ways, as the op computed it from the input codes."""
    e = layer.element(values, c, position)
    index = layer.output_index(c, position)
    first = [{"x": None if e.padded[k] else int(e.x[k]), "w": None if e.w is None else int(e.w[k]),
              "product": int(e.products[k])} for k in range(min(FIRST_TERMS, e.products.size))]
    direct = e.sum_products + e.bias
    return {
        "output_index": [int(i) for i in index], "reference_code": int(values[layer.node.outputs[0]][index]),
        "taps": int(e.products.size), "padded_taps": int(e.padded.sum()), "first_terms": first,
        "direct": {"sum_products": e.sum_products, "bias": e.bias, "acc_int64": direct, "acc": _wrap32(direct)},
        "folded": {"acc_const": e.acc_const, "sum_x_times_w_minus_zw": e.folded_sum, "minus_zw_sum_x": e.minus_zw_sum_x,
                   "acc": _wrap32(e.acc_const + e.folded_sum + e.minus_zw_sum_x)},
    }


def _trace(layer: RequantExplanation, values, c: int, position: int | None) -> dict:
    p, why = _choose_position(layer, values, c, position)
    t = _element_facts(layer, values, c, p)
    acc = t["direct"]["acc"]
    rq = layer.rq
    steps = _scheme_trace(rq, layer.rq_index(c), acc)
    clamped = int(steps[-1][1])
    code = clamped + rq.zero
    m = layer.exact_m(c)
    return {
        "channel": c, "position": p, "choice": why, "z_x": layer.z_x,
        "z_w": layer.z_w[c], **t,
        "agree": t["direct"]["acc"] == t["folded"]["acc"],
        "acc": acc,
        "acc_times_M": float(m * acc),
        "steps": [{"step": name, "value": value} for name, value in steps],
        "clamped": clamped, "zero_point": rq.zero, "code": code, "dtype": layer.y.dtype,
        "real_value": float(Fraction(float(layer.s_y)) * (code - layer.z_y)),
        "matches_reference": code == t["reference_code"],
    }


def _u8s8_pairs(node: Node) -> dict | None:
    """The int16 pair sums of ORT's uint8 x int8 GEMM on x86 without VNNI (range analysis)."""
    pairs = node.params.get("u8s8_pairs")
    if pairs is None:
        return None
    worst = pairs.worst_channel
    return {"can_saturate": pairs.can_saturate, "saturating_channels": pairs.saturating_channels().tolist(),
            "low": int(pairs.low.min()), "high": int(pairs.high.max()),
            "worst_channel": worst, "worst_k": int(pairs.worst_k[worst])}


def _requant_layer(layer: RequantExplanation, values, channel: int | None, position: int | None,
                   kernel_call: str) -> dict:
    node, graph, rq = layer.node, layer.graph, layer.rq
    if channel is not None and not 0 <= channel < layer.channels:
        raise QccError(f"--channel {channel}: node '{node.name}' has {layer.channels} output channels "
                       f"(0..{layer.channels - 1}); choose another channel, or one node with --node")
    c = channel or 0
    r = node.params["acc_range"]
    qmin, qmax = DTYPE_RANGE[layer.y.dtype]
    w = layer.w
    per_channel_rows = rq.channels > 1 or w is not None
    if channel is not None:
        rows = [_channel_facts(layer, c if per_channel_rows else None)]
    else:
        rows = [_channel_facts(layer, i) for i in range(layer.channels)] if per_channel_rows else [_channel_facts(layer, None)]
    generic, numbers = layer.c_accumulator(c)
    return {
        "node": node.name, "op": node.attrs.get("onnx_op", node.op), "kind": layer.kind, "note": layer.note,
        "input": _operand(graph, node.inputs[0]),
        "weights": None if w is None else {
            "tensor": node.inputs[1], "dtype": w.dtype, "shape": list(w.shape), "per_channel": bool(w.quant.per_channel),
        },
        "output": _operand(graph, node.outputs[0]),
        "formula": dict(layer.formula),
        "clamp": {"lo": rq.lo + rq.zero, "hi": rq.hi + rq.zero, "qmin": qmin, "qmax": qmax,
                  "folded_activation": (rq.lo + rq.zero, rq.hi + rq.zero) != (qmin, qmax)},
        "taps": layer.taps,
        "accumulator": {"low": int(r.low.min()), "high": int(r.high.max()), "bits": r.bits,
                        "int32_safe": r.int32_safe, "f32_exact": r.f32_exact},
        "ort_u8s8_int16_pairs": _u8s8_pairs(node),
        "channels": rows,
        "c": {"kernel_call": kernel_call, "accumulator": generic, "accumulator_channel": numbers,
              "requantize": _c_requantize(rq, layer.rq_index(c)), "shortcut": layer.c_shortcut(c), "channel": c},
        "trace": _trace(layer, values, c, position),
    }


def _other_layer(node: Node, graph: Graph, explanation: Explanation, kernel_call: str) -> dict:
    data = [n for n in node.inputs if not graph.tensor(n).is_const]
    return {"node": node.name, "op": node.attrs.get("onnx_op", node.op), "kind": explanation.kind,
            "note": explanation.note, "input_shapes": [list(graph.tensor(n).shape) for n in data],
            "output_shape": list(graph.tensor(node.outputs[0]).shape),
            "c": {"kernel_call": kernel_call}}


def _input_case(compiled, input_npz: str | None, seed: int) -> tuple[list[np.ndarray], str]:
    graph = compiled.graph
    if input_npz is None:
        return random_inputs(graph, 1, seed)[0], f"seeded random codes (seed {seed})"
    if not Path(input_npz).is_file():
        raise QccError(f"{input_npz}: no such file (--input takes an .npz with one array per model input)")
    cases = golden_cases(compiled, str(input_npz))
    if not cases:
        raise QccError(f"{input_npz}: holds no input set")
    return cases[0], f"{input_npz}, first input set"


def explain(model: str, options: Options | None = None, node: str | None = None, channel: int | None = None,
            input_npz: str | None = None, position: int | None = None, seed: int = 0) -> dict:
    """The facts of every layer (or of `node`), as one JSON-ready dict (docs/explain_json.md)."""
    options = options or Options()
    compiled = compile_model(model, options)
    graph = compiled.graph
    nodes = graph.nodes
    if node is not None:
        nodes = [n for n in graph.nodes if n.name == node]
        if not nodes:
            raise QccError(f"{model}: no node named '{node}' after compilation (its nodes: "
                           f"{', '.join(n.name for n in graph.nodes)}; Relu and Clip fold into the op before them)")
    if channel is not None and channel < 0:
        raise QccError(f"--channel {channel}: must be 0 or more")
    case, source = _input_case(compiled, input_npz, seed)
    values = reference.run(graph, case, keep_all=True)
    _, steps, _ = emit_layers(compiled, *io_entries(compiled))
    # a streamed layer: its first call, one output row (model.c calls it once per row)
    calls = {n.name: f"{s['row_call']} /* one row: the layer runs streamed */" if s["row_call"] else s["code"]
             for n, s in zip(graph.nodes, steps)}
    layers = []
    for n in nodes:
        explanation = op_named(n.op).explain(n, graph)
        if isinstance(explanation, RequantExplanation):
            layers.append(_requant_layer(explanation, values, channel, position, calls[n.name]))
        else:
            layers.append(_other_layer(n, graph, explanation, calls[n.name]))
    return {
        "schema_version": SCHEMA_VERSION,
        "model": str(model),
        "rounding": options.rounding,
        "scheme": {"name": options.rounding, **SCHEME_FACTS[options.rounding]},
        "input": source,
        "layers": layers,
    }


# --- rendering ----------------------------------------------------------------------------------


def _g(value, digits: int = 9) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _value(value) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _terms_text(terms: dict) -> str:
    names = {"bias": "bias", "minus_zx_sum_w": "-Z_x*sum(w)", "k_zx_zw": "K*Z_x*Z_w", "minus_zx_n": "-Z_x*n"}
    return " ".join(f"{names[k]}={v}" for k, v in terms.items())


def _channel_header() -> list[str]:
    return ["ch", "S_w", "Z_w", "M (exact ratio, 20 digits)", "M0", "n", "rel. error of M0*2^-n", "acc_const", "= terms",
            "acc bound", "bits", "int32"]


def _channel_cells(row: dict) -> list[str]:
    return ["all" if row["channel"] is None else str(row["channel"]), _g(row["s_w"]),
            "-" if row["z_w"] is None else str(row["z_w"]), row["M_decimal"], str(row["M0"]), str(row["n"]),
            f"{row['relative_error']:+.3e}", str(row["acc_const"]), _terms_text(row["acc_const_terms"]),
            f"[{row['acc_low']}, {row['acc_high']}]", str(row["acc_bits"]), "safe" if row["int32_safe"] else "CAN OVERFLOW"]


def _trace_rows(t: dict, layer: dict) -> list[tuple[str, str]]:
    """(value, what it is) for each line of a trace."""
    d, f = t["direct"], t["folded"]
    rows = [(str(d["sum_products"]), "sum (x - Z_x)(w - Z_w) over the window" if layer["weights"]
             else "sum (x - Z_x) over the map")]
    if layer["weights"]:
        rows.append((str(d["bias"]), "+ bias"))
    rows.append((str(d["acc"]), "acc (int32)" + (f", wrapped from {d['acc_int64']}" if d["acc"] != d["acc_int64"] else "")))
    what = "acc_const + sum x*(w - Z_w)" if layer["weights"] else "acc_const + sum x"
    numbers = _sum_text([f["acc_const"], f["sum_x_times_w_minus_zw"]])
    if f["minus_zw_sum_x"]:
        what = "acc_const + sum x*w - Z_w*sum x"
        numbers = _sum_text([f["acc_const"], f["sum_x_times_w_minus_zw"], f["minus_zw_sum_x"]])
    rows.append((str(f["acc"]), f"the same acc folded, as the C computes it: {what} = {numbers} "
                                f"({'agrees' if t['agree'] else 'DISAGREES'})"))
    rows.append((f"{t['acc_times_M']:.10g}", "acc * M, the exact real result before any rounding"))
    rows += [(_value(s["value"]), s["step"]) for s in t["steps"]]
    rows.append((str(t["code"]), f"+ Z_y = {t['zero_point']}: the final {t['dtype']} code"))
    rows.append((str(t["reference_code"]), "the reference interpreter's code for this element: "
                                           + ("equal" if t["matches_reference"] else "DIFFERENT")))
    rows.append((f"{t['real_value']:.6g}", "its real value S_y * (q_y - Z_y)"))
    return rows


def _sum_text(values: list[int]) -> str:
    text = str(values[0])
    for v in values[1:]:
        text += f" - {-v}" if v < 0 else f" + {v}"
    return text


def _first_terms(t: dict, layer: dict) -> str:
    parts = []
    for term in t["first_terms"]:
        if term["w"] is None:
            parts.append(f"({term['x']} - {t['z_x']})")
        elif term["x"] is None:
            parts.append("pad")
        else:
            parts.append(f"({term['x']} - {t['z_x']})({term['w']} - {t['z_w']}) = {term['product']}")
    more = ", ..." if t["taps"] > len(t["first_terms"]) else ""
    return ", ".join(parts) + more


def _layer_lines(layer: dict, markdown: bool) -> list[str]:
    title = f"{layer['node']} ({layer['op']})"
    lines = [f"## {title}" if markdown else f"== {title} =="]
    if layer["kind"] != "requantize" or "trace" not in layer:
        lines += [f"{layer['note']}.", "", f"C: `{layer['c']['kernel_call']}`" if markdown else f"C: {layer['c']['kernel_call']}"]
        return lines
    x, y, fm, acc = layer["input"], layer["output"], layer["formula"], layer["accumulator"]
    if markdown:
        lines += ["", "```", f"real:    {fm['real']}", f"integer: {fm['integer']}", f"folded:  {fm['folded']}", "```", ""]
    else:
        lines += [f"real:     {fm['real']}", f"integer:  {fm['integer']}", f"folded:   {fm['folded']}"]
    w = layer["weights"]
    operands = [f"input  x: {x['dtype']} {'x'.join(map(str, x['shape']))}  S_x = {_g(x['scale'])}  Z_x = {x['zero_point']}"]
    if w:
        operands.append(f"weights : {w['dtype']} {'x'.join(map(str, w['shape']))}  "
                        f"{'per-channel' if w['per_channel'] else 'per-tensor'} (S_w, Z_w below; K = {layer['taps']} taps)")
    clamp = layer["clamp"]
    operands.append(f"output y: {y['dtype']} {'x'.join(map(str, y['shape']))}  S_y = {_g(y['scale'])}  Z_y = {y['zero_point']}  "
                    f"clamp [{clamp['lo']}, {clamp['hi']}]" + ("  (a Relu/Clip folded in)" if clamp["folded_activation"] else ""))
    operands.append(f"accumulator: bound [{acc['low']}, {acc['high']}] = {acc['bits']} bits; "
                    + ("int32 proven safe" if acc["int32_safe"] else "int32 CAN OVERFLOW (wraps mod 2^32 as ORT does)")
                    + ("; |acc| <= 2^24 so f32(acc) is exact" if acc["f32_exact"] else ""))
    pairs = layer["ort_u8s8_int16_pairs"]
    if pairs and pairs["can_saturate"]:
        operands.append(f"ORT int16 pairs: in {len(pairs['saturating_channels'])} channel(s) two adjacent uint8 x int8 "
                        f"products can sum to [{pairs['low']}, {pairs['high']}], outside int16: ONNX Runtime on x86 without "
                        "VNNI saturates them unless run with session.x64quantprecision=1; the sum above is exact")
    lines += [f"- {o}" for o in operands] if markdown else operands
    header, cells = _channel_header(), [_channel_cells(r) for r in layer["channels"]]
    if markdown:
        lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        lines.append("")
    else:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(wd) for h, wd in zip(header, widths)).rstrip())
        lines += ["  ".join(v.ljust(wd) for v, wd in zip(c, widths)).rstrip() for c in cells]
    cc = layer["c"]
    code = [cc["kernel_call"], f"/* channel {cc['channel']}: */", cc["accumulator_channel"], cc["requantize"]]
    if cc["shortcut"]:
        code.append(f"/* {cc['shortcut']} */")
    if markdown:
        lines += ["C the backend emits:", "", "```c", *code, "```", ""]
    else:
        lines += ["C:  " + code[0]] + ["    " + c for c in code[1:]]
    t = layer["trace"]
    head = (f"trace: channel {t['channel']}, output {t['output_index']} ({t['choice']}); "
            f"{t['taps']} taps" + (f", {t['padded_taps']} in the padding (x = Z_x, adding 0)" if t["padded_taps"] else ""))
    rows = _trace_rows(t, layer)
    first = f"first terms: {_first_terms(t, layer)}"
    if markdown:
        lines += [head, "", first, "", "| value | step |", "| ---: | --- |"]
        lines += [f"| {value} | {name} |" for value, name in rows]
    else:
        lines += [head, "  " + first]
        width = max(len(value) for value, _ in rows)
        lines += [f"  {value.rjust(width)}  {name}" for value, name in rows]
    return lines


def render(facts: dict, fmt: str = "text") -> str:
    """The facts as text (for reading), markdown (for notes and reviews) or json (for tools)."""
    if fmt not in FORMATS:
        raise QccError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(facts, indent=2)
    markdown = fmt == "markdown"
    scheme = facts["scheme"]
    head = [f"# qcc explain {facts['model']}" if markdown else f"qcc explain {facts['model']}",
            "",
            f"Rounding scheme `{scheme['name']}`: {scheme['description']}" if markdown
            else f"rounding scheme {scheme['name']}: {scheme['description']}",
            f"Traced input: {facts['input']}." if markdown else f"traced input: {facts['input']}"]
    lines = head
    for layer in facts["layers"]:
        lines += [""] + _layer_lines(layer, markdown)
    return "\n".join(lines) + "\n"
