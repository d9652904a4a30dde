"""report.html: the memory report (qcc/backend/memory_report.py) as one self-contained page: inline CSS,
no script, no external resource, and an SVG timeline of the arena (steps across, byte offsets
up, one rectangle per tensor over its lifetime, scratch hatched at its step).

Every name in it comes from the model and is untrusted: each goes through html.escape. The page
is a pure function of the report (colours come from a hash of the tensor's name, not Python's
salted hash()), so the same model gives the same bytes.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from html import escape

from qcc.backend.memory_report import COLUMNS, OUT_OF_PLACE, ArenaBuffer, MemoryReport, Scratch, row_cells

# The timeline's geometry, in pixels. The width grows with the steps, each step between the two
# bounds: a 60-layer network fits a laptop screen, a 300-layer one scrolls instead of squeezing.
PLOT_WIDTH = 980
STEP_MIN, STEP_MAX = 8, 40
PLOT_HEIGHT = 440
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 16, 58
LABEL_FONT = 10  # px; a label goes in a rectangle only where it fits


def tensor_colour(name: str) -> str:
    """A stable, light colour per tensor (black text stays readable on it)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    lightness = 0.58 + digest[2] / 255 * 0.12
    saturation = 0.55 + digest[3] / 255 * 0.25
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255))


class Timeline:
    """Byte and step coordinates -> SVG pixels."""

    def __init__(self, report: MemoryReport):
        self.steps = max(len(report.rows), 1)
        self.step_width = min(STEP_MAX, max(STEP_MIN, PLOT_WIDTH / self.steps))
        top = max(report.arena_bytes, report.liveness_bytes, report.model_order_liveness_bytes, 1)
        self.unit, self.tick = _byte_ticks(top)
        self.top_bytes = math.ceil(top * 1.04 / self.tick) * self.tick  # headroom above the arena line
        self.width = LEFT + self.steps * self.step_width + RIGHT
        self.height = TOP + PLOT_HEIGHT + BOTTOM

    def x(self, step: float) -> float:
        return LEFT + step * self.step_width

    def y(self, byte: float) -> float:
        return TOP + PLOT_HEIGHT * (1 - byte / self.top_bytes)


def _byte_ticks(top: int) -> tuple[int, int]:
    """(unit, tick step): about six ticks of 1, 2 or 5 times a power of ten, in KiB once the arena has a few."""
    unit = 1024 if top >= 4096 else 1
    rough = top / unit / 6
    power = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return unit, max(1, step) * unit


def _bytes_text(n: int, unit: int) -> str:
    return f"{n // unit} KiB" if unit > 1 else f"{n} B"


def svg_num(v: float) -> str:
    """Coordinates with at most two decimals, always written the same way."""
    return f"{v:.2f}".rstrip("0").rstrip(".")


def svg_timeline(report: MemoryReport) -> str:
    t = Timeline(report)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{svg_num(t.width)}" height="{t.height}" '
             f'viewBox="0 0 {svg_num(t.width)} {t.height}" font-family="sans-serif" font-size="{LABEL_FONT}">',
             _defs()]
    parts += _step_columns(report, t)
    parts += _axes(t)
    parts += [_buffer_rect(b, t) for b in report.buffers]
    parts += [_scratch_rect(s, t) for s in report.scratch]
    parts += _bound_lines(report, t)
    parts += _mode_marks(report, t)
    parts.append("</svg>")
    return "\n".join(parts)


def _defs() -> str:
    return ('<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">'
            '<rect class="pattern" width="6" height="6" fill="#d4d4d4"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#6b6b6b" stroke-width="2"/></pattern></defs>')


def _step_columns(report: MemoryReport, t: Timeline) -> list[str]:
    """A faint band per step under everything: its tooltip names the layer where no tensor covers it."""
    parts = []
    for row in report.rows:
        fill = "#f4f4f4" if row.step % 2 else "#fbfbfb"
        title = escape(f"step {row.step}: {row.name} ({row.op}), {row.live_bytes} bytes in use")
        parts.append(f'<rect class="step" x="{svg_num(t.x(row.step))}" y="{TOP}" width="{svg_num(t.step_width)}" '
                     f'height="{PLOT_HEIGHT}" fill="{fill}"><title>{title}</title></rect>')
    return parts


def _axes(t: Timeline) -> list[str]:
    right = t.x(t.steps)
    parts = []
    for byte in range(0, t.top_bytes + 1, t.tick):
        y = svg_num(t.y(byte))
        parts.append(f'<line x1="{LEFT}" y1="{y}" x2="{svg_num(right)}" y2="{y}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                     f'{_bytes_text(byte, t.unit)}</text>')
    every = next(k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**9) if k * t.step_width >= 24)
    bottom = TOP + PLOT_HEIGHT
    for step in range(0, t.steps, every):
        x = svg_num(t.x(step + 0.5))
        parts.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#333"/>')
        parts.append(f'<text x="{x}" y="{bottom + 15}" text-anchor="middle">{step}</text>')
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{svg_num(right - LEFT)}" height="{PLOT_HEIGHT}" '
                 'fill="none" stroke="#333"/>')
    parts.append(f'<text x="{svg_num((LEFT + right) / 2)}" y="{bottom + 48}" text-anchor="middle" font-size="12">'
                 'step (layer, in execution order)</text>')
    parts.append(f'<text transform="translate(16 {svg_num(TOP + PLOT_HEIGHT / 2)}) rotate(-90)" text-anchor="middle" '
                 'font-size="12">arena offset</text>')
    return parts


def _buffer_rect(b: ArenaBuffer, t: Timeline) -> str:
    x, width = t.x(b.first) + 1, (b.last - b.first + 1) * t.step_width - 2
    y_top = t.y(b.offset + b.size)
    height = max(t.y(b.offset) - y_top, 1.0)  # a few bytes still show as a line
    names = ", ".join(b.members)
    steps = f"step {b.first}" if b.first == b.last else f"steps {b.first}-{b.last}"
    title = escape(f"{names}: {b.size} bytes at offset {b.offset}, {steps}")
    rect = (f'<rect class="tensor" x="{svg_num(x)}" y="{svg_num(y_top)}" width="{svg_num(max(width, 1))}" '
            f'height="{svg_num(height)}" '
            f'fill="{tensor_colour(b.root)}" stroke="#ffffff" stroke-width="0.5"><title>{title}</title></rect>')
    return rect + _label(b.root, x, y_top, width, height)


def _label(name: str, x: float, y: float, width: float, height: float) -> str:
    """The tensor's name inside its rectangle, cut to fit: across it where it is wide enough, else
    up along it where it is tall enough (a short-lived large tensor is a narrow tall bar)."""
    letter = LABEL_FONT * 0.6
    across, along = int((width - 4) / letter), int((height - 4) / letter)
    if height >= LABEL_FONT + 3 and across >= MIN_LABEL:
        return (f'<text x="{svg_num(x + 2)}" y="{svg_num(y + LABEL_FONT + 1)}" fill="#111">'
                f'{escape(_cut(name, across))}</text>')
    if width >= LABEL_FONT + 3 and along >= MIN_LABEL:
        bottom_x, bottom_y = x + (width + LABEL_FONT) / 2 - 1, y + height - 2
        return (f'<text transform="translate({svg_num(bottom_x)} {svg_num(bottom_y)}) rotate(-90)" fill="#111">'
                f'{escape(_cut(name, along))}</text>')
    return ""


MIN_LABEL = 8  # letters: fewer name nothing


def _cut(name: str, letters: int) -> str:
    return name if len(name) <= letters else name[:letters - 1] + "\u2026"


def _scratch_rect(s: Scratch, t: Timeline) -> str:
    y_top = t.y(s.offset + s.size)
    height = max(t.y(s.offset) - y_top, 1.0)
    title = escape(f"scratch of step {s.step}: {s.size} bytes at offset {s.offset}")
    return (f'<rect class="scratch" x="{svg_num(t.x(s.step) + 1)}" y="{svg_num(y_top)}" '
            f'width="{svg_num(t.step_width - 2)}" height="{svg_num(height)}" fill="url(#hatch)" stroke="#555" '
            f'stroke-width="0.5"><title>{title}</title></rect>')


def _bound_lines(report: MemoryReport, t: Timeline) -> list[str]:
    """The arena's size and the liveness bounds as horizontal lines, labelled in the right margin
    (labels pushed apart where the values are close)."""
    lines = [("arena", report.arena_bytes, "#111", "6 3")]
    lines.append(("liveness bound", report.liveness_bytes, "#c0392b", "2 2"))
    if report.model_order_liveness_bytes != report.liveness_bytes:
        lines = [*lines[:1], ("bound, qcc order", report.liveness_bytes, "#c0392b", "2 2"),
                 ("bound, model order", report.model_order_liveness_bytes, "#e67e22", "2 2")]
    parts, last_label_y = [], -1e9
    right = t.x(t.steps)
    for label, value, colour, dash in sorted(lines, key=lambda line: -line[1]):
        y = t.y(value)
        label_y = max(y, last_label_y + 13)
        last_label_y = label_y
        parts.append(f'<line x1="{LEFT}" y1="{svg_num(y)}" x2="{svg_num(right + 6)}" y2="{svg_num(y)}" '
                     f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{svg_num(right + 10)}" y="{svg_num(label_y)}" dominant-baseline="middle" '
                     f'fill="{colour}">{label} {value} B</text>')
    return parts


def _mode_marks(report: MemoryReport, t: Timeline) -> list[str]:
    """A mark under the axis at each step that does not run out of place; its tooltip says how it runs."""
    parts = []
    bottom = TOP + PLOT_HEIGHT
    for row in report.rows:
        if row.mode != OUT_OF_PLACE:
            x = t.x(row.step + 0.5)
            letter = "S" if row.mode == "streamed" else "P"
            title = escape(f"step {row.step}: {row.mode}: {row.detail}")
            parts.append(f'<g class="mode"><title>{title}</title>'
                         f'<circle cx="{svg_num(x)}" cy="{bottom + 25}" r="5" fill="#2c3e50"/>'
                         f'<text x="{svg_num(x)}" y="{bottom + 28}" text-anchor="middle" fill="#fff" font-size="8">'
                         f'{letter}</text></g>')
    return parts


# The look every qcc page shares (report.html, bench.html: qcc/backend/bench_html.py).
BASE_STYLE = """
body { font-family: sans-serif; margin: 16px 24px; color: #111; }
h1 { font-size: 20px; margin: 0 0 6px; }
p.summary { margin: 4px 0 10px; font-size: 14px; }
.legend { font-size: 13px; margin: 6px 0 10px; }
.legend span { display: inline-block; margin-right: 18px; }
.swatch { display: inline-block; width: 22px; height: 12px; vertical-align: middle; margin-right: 5px; border: 1px solid #555; }
table { border-collapse: collapse; font-size: 12px; margin-top: 14px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f7f7f7; }
"""

STYLE = BASE_STYLE + """\
.line { display: inline-block; width: 24px; vertical-align: middle; margin-right: 5px; border-top: 2px dashed; }
.timeline { overflow-x: auto; }
td.runs { white-space: normal; max-width: 480px; }
"""

HATCH_CSS = "background: repeating-linear-gradient(45deg, #6b6b6b 0 2px, #d4d4d4 2px 6px);"


def _legend(report: MemoryReport) -> str:
    examples = sorted(report.buffers, key=lambda b: -b.size)[:3]
    swatches = "".join(f'<i class="swatch" style="background:{tensor_colour(b.root)}"></i>' for b in examples)
    items = [f"<span>{swatches}tensor: its bytes over its lifetime (one colour per tensor; hover for its name)</span>",
             f'<span><i class="swatch" style="{HATCH_CSS}"></i>scratch of one step</span>',
             '<span><i class="line" style="border-color:#111"></i>arena size</span>',
             '<span><i class="line" style="border-color:#c0392b; border-top-style:dotted"></i>liveness bound (most bytes of '
             'tensors alive at one step)</span>']
    if report.model_order_liveness_bytes != report.liveness_bytes:
        items.append('<span><i class="line" style="border-color:#e67e22; border-top-style:dotted"></i>the same in the '
                     "model's own node order</span>")
    if any(row.mode != OUT_OF_PLACE for row in report.rows):
        items.append("<span>P / S under a step: it runs in place / streamed (hover for how)</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _table(report: MemoryReport) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    classes = ["num", "", "", "num", "", "", "", "runs"]
    rows = []
    for row in report.rows:
        cells = "".join(f'<td class="{k}">{escape(c)}</td>' if k else f"<td>{escape(c)}</td>"
                        for k, c in zip(classes, row_cells(row)))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def html_page(title: str, style: str, body: list[str]) -> str:
    """A self-contained page: the title (plain text, escaped here) as its <title> and heading, the
    style inline, then the body's parts (HTML, each name in them already escaped), one a line."""
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8"/>', f"<title>{escape(title)}</title>",
        f"<style>{style}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        *body,
        "</body>", "</html>", ""])
    # ASCII only (names outside it as character references): the file reads the same whatever the
    # locale that writes it or the browser's guess at its encoding
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def render_html(report: MemoryReport) -> str:
    return html_page(f"qcc memory report: {report.model}", STYLE, [
        f'<p class="summary">{escape(report.summary())}. {len(report.rows)} steps, {len(report.buffers)} arena tensors, '
        f"{len(report.scratch)} scratch buffers.</p>",
        _legend(report),
        f'<div class="timeline">{svg_timeline(report)}</div>',
        _table(report)])
