"""bench.html: a `qcc bench` report (qcc/commands/bench.py, docs/bench_json.md) as one self-contained
page, where the time of an inference goes: a summary (instructions, estimated cycles, MACs, flash,
RAM), then one row per layer in execution order with a horizontal bar of its instructions and,
when the report has the Cortex-M4's estimate, one of its cycles, each drawn to the largest layer's,
beside its MACs and the counts per MAC. The host's report has no per-layer counts: its page shows
the host's times, flash and RAM, and says per-layer counts need a Cortex-M target.

The page is built like report.html (qcc/backend/report_html.py: the same skeleton and look, inline
CSS and SVG, no script, no external resource, ASCII only). Layer names and ops come from the model
and are untrusted: every string goes through html.escape. The page is a pure function of the report.
`write_bench_report` writes it beside the report's JSON (`qcc bench --report DIR`).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from qcc.backend.report_html import BASE_STYLE, html_page, svg_num

BENCH_JSON, BENCH_HTML = "bench.json", "bench.html"

# A bar's box in pixels: the largest layer's bar fills it.
BAR_WIDTH, BAR_HEIGHT = 240, 12
INSTRUCTIONS_COLOUR = "#2f6db5"
CYCLES_COLOUR = "#e07b1a"
TRACK_COLOUR = "#e9e9e9"

STYLE = BASE_STYLE + """\
table.summary th { font-weight: normal; color: #444; background: #fafafa; }
table.summary td { white-space: normal; max-width: 900px; }
td.name { max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
td.bar { padding: 2px 4px; }
td.bar svg { display: block; }
td.note { color: #555; white-space: normal; min-width: 160px; max-width: 260px; }
p.note { font-size: 14px; margin: 12px 0; padding: 6px 10px; background: #fff6e0; border-left: 4px solid #e0a020; }
.detail { color: #555; }
"""


def render_bench_html(report: dict) -> str:
    """The page of a bench report dict, as bench() returns it (and `--format json` prints it)."""
    fpu = ", --fpu" if report.get("fpu") else ""
    title = (f"qcc bench: {report['model']} on {report['target']}, rounding {report['rounding']}{fpu}, "
             f"qcc {report['qcc_version']}")
    body = [_summary(report)]
    if "instructions" in report:
        body += [_legend(report), _layer_table(report)]
    else:
        body.append('<p class="note">Per-layer instructions and cycles need a Cortex-M target: the host measures '
                    "only the time of a whole inference. Bench the model with <code>--target cortex-m4</code> (the "
                    "cycle estimate models the Cortex-M4) for one bar per layer.</p>")
    return html_page(title, STYLE, body)


def write_bench_report(report: dict, directory: str | Path) -> tuple[Path, Path]:
    """DIRECTORY/bench.json (the document `qcc bench --format json` prints) and DIRECTORY/bench.html
    beside it, the directory made if needed; returns their paths."""
    page = render_bench_html(report)  # before writing anything: a report it cannot draw leaves no half
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / BENCH_JSON, folder / BENCH_HTML
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8", newline="\n")
    html_path.write_text(page, encoding="utf-8", newline="\n")
    return json_path, html_path


# --- the summary ------------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    return f"{n:,} B"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _summary(report: dict) -> str:
    """(label, value, detail) rows: the whole inference's figures."""
    rows = []
    if "instructions" in report:
        counts = report["instructions"]
        per_mac = f"; {_ratio(counts['per_mac'])} per MAC" if counts["per_mac"] is not None else ""
        rows.append(("instructions per inference", f"{_count(counts['per_inference'])}{per_mac}",
                     f"executed, measured under QEMU ({counts['cflags']}); marker overhead "
                     f"{counts['marker_overhead']} subtracted per mark; {_count(counts['after_last_layer'])} after "
                     "the last layer (the run's return)"))
    if "cycles" in report:
        cycles = report["cycles"]
        per_mac = f"; {_ratio(cycles['per_mac'])} per MAC" if cycles["per_mac"] is not None else ""
        clock = (f"; {cycles['ms_per_inference']:.3f} ms at {cycles['clock_mhz']:g} MHz"
                 if "ms_per_inference" in cycles else "")
        flash = (f"{cycles['flash_wait_states']} wait states on each data read from flash"
                 if cycles["flash_wait_states"] else "zero-wait-state memory")
        rows.append(("estimated cycles per inference", f"{_count(cycles['per_inference'])}{per_mac}{clock}",
                     f"an estimate: {cycles['model']}, branch refill {cycles['refill_cycles']}, {flash}; "
                     f"{_count(cycles['after_last_layer'])} after the last layer"))
    if "host_time" in report:
        host = report["host_time"]
        if "tflm_ms" in host:
            other = (f"TFLite Micro (reference kernels) {host['tflm_ms']:.3f} ms; C / TFLM {host['c_over_tflm']:.2f}",
                     host["tflm_configuration"])
        else:
            other = (f"ONNX Runtime {host['ort_ms']:.3f} ms; C / ORT {host['c_over_ort']:.2f}",
                     host["ort_configuration"])
        rows.append(("time per inference (host)", f"C {host['c_ms']:.3f} ms; {other[0]}",
                     f"wall clock on the machine that ran the bench, informative only; C built with {host['cflags']}; "
                     f"{other[1]}"))
    rows.append(("MACs", _count(report["macs"]), "multiply-accumulates per inference"))
    for level, sizes in report.get("flash", {}).items():
        rows.append((f"flash at {level}", f"code {_bytes(sizes['code_bytes'])}; constant data "
                     f"{_bytes(sizes['constant_data_bytes'])}",
                     f"{sizes['cflags']}; objects: {', '.join(sizes['objects'])}"))
    ram = report["ram"]
    static = (f"; .data {_bytes(ram['data_bytes'])}, .bss {_bytes(ram['bss_bytes'])}"
              if "data_bytes" in ram else "")
    stack = (f"; stack high-water {_bytes(ram['stack_peak_bytes'])} of {_bytes(ram['stack_size_bytes'])}"
             if "stack_peak_bytes" in ram else "")
    rows.append(("RAM", f"arena {_bytes(ram['arena_bytes'])}; the model's RAM {_bytes(ram['model_ram_bytes'])}"
                        f"{static}{stack}",
                 f"the model's RAM: the arena, its inputs and outputs ({_bytes(ram['io_bytes'])}) and any state"))
    cells = [f'<tr><th>{escape(label)}</th><td>{escape(value)}<br/>'
             f'<span class="detail">{escape(detail)}</span></td></tr>' for label, value, detail in rows]
    return '<table class="summary">\n' + "\n".join(cells) + "\n</table>"


# --- the layers -------------------------------------------------------------------------------


def _legend(report: dict) -> str:
    items = [f'<span><i class="swatch" style="background:{INSTRUCTIONS_COLOUR}"></i>instructions of the layer '
             "(measured)</span>"]
    if "cycles" in report:
        items.append(f'<span><i class="swatch" style="background:{CYCLES_COLOUR}"></i>its estimated Cortex-M4 '
                     "cycles</span>")
    items.append("<span>each bar drawn to the largest layer's; hover a bar for the layer's share of the "
                 "inference</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _bar(kind: str, colour: str, value: int, largest: int, title: str) -> str:
    """One layer's count as a bar in a fixed box, value / largest of its width; the tooltip covers
    the whole box, so a layer too small to show a bar still has one."""
    width = BAR_WIDTH * value / largest if largest > 0 else 0.0
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" '
            f'viewBox="0 0 {BAR_WIDTH} {BAR_HEIGHT}"><g><title>{escape(title)}</title>'
            f'<rect class="track" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" fill="{TRACK_COLOUR}"/>'
            f'<rect class="{kind}" x="0" y="0" width="{svg_num(width)}" height="{BAR_HEIGHT}" fill="{colour}"/>'
            "</g></svg>")


def _share(value: int, whole: int) -> str:
    return f"{value / whole:.1%} of the inference" if whole > 0 else "of an empty inference"


def _counted_macs(layer: dict, by_index: dict[int, dict]) -> int | None:
    """The MACs a layer's count covers: its own; a streamed chain's last layer's, the whole chain's
    (it counts their instructions together, as the report's per_mac does);
    none for a layer streamed into a later one."""
    if "streamed_into" in layer:
        return None
    if "streamed_chain" in layer:
        return sum(by_index[k]["macs"] for k in layer["streamed_chain"])
    return layer["macs"]


def _per(value: int, macs: int | None) -> float | None:
    return value / macs if macs else None


def _note(layer: dict, macs: int | None) -> str:
    if "streamed_into" in layer:
        return f"streamed: counted in layer {layer['streamed_into']}"
    if "streamed_chain" in layer:
        return (f"streamed: layers {layer['streamed_chain'][0]}-{layer['index']} together; per MAC over their "
                f"{_count(macs)} MACs")
    return ""


def _layer_table(report: dict) -> str:
    """One row per layer in execution order; the per-MAC columns divide by the MACs the count covers
    (_counted_macs: a streamed chain's in its last layer)."""
    counts = report["instructions"]
    layers = sorted(counts["layers"], key=lambda layer: layer["index"])
    by_index = {layer["index"]: layer for layer in layers}
    cycles = report.get("cycles")
    estimate = {entry["index"]: entry for entry in cycles["layers"]} if cycles else {}
    largest = max((layer["instructions"] for layer in layers), default=0)
    largest_cycles = max((entry["cycles"] for entry in estimate.values()), default=0)
    notes = any(_note(layer, _counted_macs(layer, by_index)) for layer in layers)
    head = ["#", "layer", "op", "MACs", "instructions", "", "per MAC"]
    if cycles:
        head += ["est. cycles", "", "per MAC", "per instruction"]
    if notes:
        head.append("note")
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for layer in layers:
        name, op = layer["name"], layer["op"]
        macs = _counted_macs(layer, by_index)
        per_mac = _per(layer["instructions"], macs)
        cells = [_num_cell(str(layer["index"])),
                 f'<td class="name" title="{escape(name)}">{escape(name)}</td>', f"<td>{escape(op)}</td>",
                 _num_cell(_count(layer["macs"])), _num_cell(_count(layer["instructions"]))]
        title = (f"{name} ({op}): {_count(layer['instructions'])} instructions, "
                 f"{_share(layer['instructions'], counts['per_inference'])}, {_ratio(per_mac)} per MAC")
        cells.append('<td class="bar">' + _bar("instructions", INSTRUCTIONS_COLOUR, layer["instructions"], largest,
                                               title) + "</td>")
        cells.append(_num_cell(_ratio(per_mac)))
        if cycles:
            entry = estimate[layer["index"]]
            title = (f"{name} ({op}): {_count(entry['cycles'])} estimated cycles, "
                     f"{_share(entry['cycles'], cycles['per_inference'])}, {_ratio(entry['per_instruction'])} per "
                     "instruction")
            bar = _bar("cycles", CYCLES_COLOUR, entry["cycles"], largest_cycles, title)
            cells += [_num_cell(_count(entry["cycles"])), f'<td class="bar">{bar}</td>',
                      _num_cell(_ratio(_per(entry["cycles"], macs))), _num_cell(_ratio(entry["per_instruction"]))]
        if notes:
            cells.append(f'<td class="note">{escape(_note(layer, macs))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="layers">\n' + "\n".join(rows) + "\n</table>"


def _num_cell(text: str) -> str:
    return f'<td class="num">{escape(text)}</td>'
