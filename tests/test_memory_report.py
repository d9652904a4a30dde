"""The memory report (qcc/backend/memory_report.py, qcc/backend/report_html.py): its numbers against ones worked out
here from the plan's storage and the graph alone (byte maps, not interval arithmetic), its SVG
well-formed with one rectangle per arena buffer and per scratch, the model's names escaped, the
CLI's --report and report.html, and the page as a real browser draws it."""

from __future__ import annotations

import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import make_model, scalar
from models import quantize
from networks import NETWORKS
from qcc.cli import main
from qcc.ir import StepMemory
from qcc.backend.memory_report import memory_report, render_text
from qcc.pipeline import Options, compile_model
from qcc.backend.report_html import render_html, tensor_colour

HOSTILE = 'x</svg><script>alert("t1")</script>&amp;'
SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"


def small_model(t1: str = "t1") -> onnx.ModelProto:
    """x -> conv c1 -> t1 -> conv c2 -> t2; add(t1, t2) -> t3 -> reshape (an alias) -> r -> maxpool -> y.
    Every activation is uint8 1x4x8x8 (256 bytes) until the pool."""
    rng = np.random.default_rng(0)
    u8 = lambda v: scalar(v, np.uint8)  # noqa: E731
    f32 = lambda v: scalar(v, np.float32)  # noqa: E731
    inits = {"s": f32(0.05), "z": u8(128), "ws": f32(0.02), "wz": scalar(0, np.int8),
             "w1": rng.integers(-50, 50, (4, 3, 3, 3), dtype=np.int8), "w2": rng.integers(-50, 50, (4, 4, 1, 1), dtype=np.int8),
             "shape": np.array([1, 4, 4, 16], np.int64)}
    nodes = [
        helper.make_node("QLinearConv", ["x", "s", "z", "w1", "ws", "wz", "s", "z"], [t1], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("QLinearConv", [t1, "s", "z", "w2", "ws", "wz", "s", "z"], ["t2"], name="c2"),
        helper.make_node("QLinearAdd", [t1, "s", "z", "t2", "s", "z", "s", "z"], ["t3"], name="add", domain="com.microsoft"),
        helper.make_node("Reshape", ["t3", "shape"], ["r"], name="reshape"),
        helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    return make_model(nodes, [("x", "uint8", [1, 3, 8, 8])], [("y", "uint8", [1, 4, 2, 8])], inits)


@pytest.fixture(scope="module")
def small_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    onnx.save(small_model(), str(path))
    return path


@pytest.fixture(scope="module")
def network_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("net")
    return quantize(NETWORKS["squeezenet11"](), folder / "squeezenet11.onnx", quant_format="QDQ", activation="int8")


# --- what the test expects, from the plan's storage and the graph -------------------------------


def expected_lifetimes(compiled) -> dict[str, tuple[int, int]]:
    """Arena buffer (its root tensor) -> (first step writing it, last step reading it). A streamed chain's
    layers all run at the chain's step; with --io-in-arena an input lives from step 0, an output to the end."""
    graph, plan = compiled.graph, compiled.plan
    step_of = list(range(len(graph.nodes)))
    for chain_step, stream in plan.streams.items():
        for node in stream.nodes:
            step_of[graph.nodes.index(node)] = chain_step
    spans: dict[str, list[int]] = {}
    writes: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs + node.outputs:
            if plan.storage[name].kind == "arena":
                spans.setdefault(plan.root[name], []).append(step_of[index])
        for name in node.outputs:
            if plan.storage[name].kind == "arena":
                writes[plan.root[name]] = min(writes.get(plan.root[name], step_of[index]), step_of[index])
    if graph.io_in_arena:
        for name in graph.inputs:
            spans.setdefault(plan.root[name], []).append(0)
            writes[plan.root[name]] = 0
        for name in graph.outputs:
            spans[plan.root[name]].append(len(graph.nodes) - 1)
    return {root: (writes[root], max(steps)) for root, steps in spans.items()}


def expected_live_bytes(compiled) -> list[int]:
    """Per step, the arena bytes touched by an alive buffer or the step's scratch, as a byte map."""
    graph, plan = compiled.graph, compiled.plan
    lifetimes = expected_lifetimes(compiled)
    sizes = {root: max(graph.tensor(t).nbytes for t in graph.tensors if plan.root[t] == root) for root in lifetimes}
    live = []
    for step in range(len(graph.nodes)):
        used = np.zeros(plan.arena_bytes, dtype=bool)
        for root, (first, last) in lifetimes.items():
            if first <= step <= last:
                offset = plan.storage[root].offset
                used[offset:offset + sizes[root]] = True
        if plan.scratch_bytes.get(step):
            used[plan.scratch[step]:plan.scratch[step] + plan.scratch_bytes[step]] = True
        live.append(int(used.sum()))
    return live


def expected_place(compiled, tensor: str) -> str:
    storage = compiled.plan.storage[tensor]
    return {"arena": f"@{storage.offset}+{compiled.graph.tensor(tensor).nbytes}", "const": "flash",
            "input": f"input {storage.index}", "output": f"output {storage.index}",
            "stream": "band"}[storage.kind]


def check_table(compiled) -> None:
    report = memory_report(compiled)
    graph, plan = compiled.graph, compiled.plan
    assert [row.live_bytes for row in report.rows] == expected_live_bytes(compiled)
    for step, (row, node) in enumerate(zip(report.rows, graph.nodes)):
        assert (row.step, row.name) == (step, node.name)
        assert row.inputs == [expected_place(compiled, t) for t in node.inputs]
        assert row.outputs == [expected_place(compiled, t) for t in node.outputs]
        size = plan.scratch_bytes.get(step, 0)
        assert row.scratch == (f"@{plan.scratch[step]}+{size}" if size else "-")
    assert max(row.live_bytes for row in report.rows) <= plan.arena_bytes


def svg_of(page: str) -> ET.Element:
    start, end = page.index("<svg "), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def rects(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if r.get("class") == kind]


def check_svg(compiled) -> None:
    page = render_html(memory_report(compiled))
    ET.fromstring(page.split("\n", 1)[1])  # the whole page (after its doctype) is well-formed XML too
    svg = svg_of(page)
    lifetimes = expected_lifetimes(compiled)
    tensors = rects(svg, "tensor")
    assert len(tensors) == len(lifetimes)
    assert len(rects(svg, "scratch")) == sum(1 for size in compiled.plan.scratch_bytes.values() if size)
    # each tensor's tooltip gives its steps and offset; its colour is its name's
    colours = {tensor_colour(root) for root in lifetimes}
    assert {r.get("fill") for r in tensors} == colours
    for root, (first, last) in lifetimes.items():
        steps = f"step {first}" if first == last else f"steps {first}-{last}"
        titles = [r.find(f"{SVG}title").text for r in tensors]
        assert any(root in t and f"at offset {compiled.plan.storage[root].offset}, {steps}" in t for t in titles), root


# --- the tests --------------------------------------------------------------------------------


def test_small_model_table(small_path):
    compiled = compile_model(small_path)
    check_table(compiled)
    rows = {row.name: row for row in memory_report(compiled).rows}
    # t1, t2 and t3 (256 bytes each) are alive together at the add, which writes t3 over t1 (its last
    # read of t1): their 256 bytes count once; r is t3's bytes under another name
    assert rows["add"].live_bytes == 2 * 256 and rows["add"].outputs == rows["add"].inputs[:1]
    assert rows["add"].mode == "in place" and "over 't1'" in rows["add"].detail
    assert rows["reshape"].inputs[0] == rows["reshape"].outputs[0] == rows["add"].outputs[0]
    assert rows["c1"].inputs == ["input 0", "flash"] and rows["pool"].outputs == ["output 0"]
    assert all(row.mode == "out of place" and row.detail == "" for name, row in rows.items() if name != "add")


def test_small_model_svg(small_path):
    compiled = compile_model(small_path)
    check_svg(compiled)
    svg = svg_of(render_html(memory_report(compiled)))
    assert len(rects(svg, "tensor")) == 3  # t1, t2, t3 with r


def test_network_table_and_svg(network_path):
    compiled = compile_model(network_path)
    assert len(compiled.graph.nodes) > 30 and compiled.plan.scratch
    check_table(compiled)
    check_svg(compiled)


@pytest.mark.parametrize("io_in_arena", [False, True])
def test_streamed_chains_and_inputs_in_the_arena(tmp_path, io_in_arena):
    """A network whose plan streams chains: each chain's input is alive at the chain's step (its layers run
    there); with --io-in-arena the inputs and outputs are arena buffers of the table and the drawing, and
    the RAM the summary gives is the arena alone, else the arena plus the inputs and outputs."""
    path = quantize(NETWORKS["resnet8"](), tmp_path / "resnet8.onnx", quant_format="QDQ", activation="int8")
    compiled = compile_model(path, Options(io_in_arena=io_in_arena))
    assert compiled.plan.streams
    check_table(compiled)
    check_svg(compiled)
    graph = compiled.graph
    io = sum(graph.tensor(t).nbytes for t in graph.inputs + graph.outputs)
    ram = compiled.plan.arena_bytes + (0 if io_in_arena else io)
    assert f"; RAM {ram} bytes, " in memory_report(compiled).summary()


def test_an_in_place_step_counts_shared_bytes_once(small_path):
    """As an in-place plan may: t3 (with r) written over t1, which the add reads for the last time."""
    compiled = compile_model(small_path)
    plan, step = compiled.plan, [n.name for n in compiled.graph.nodes].index("add")
    for name in ("t3", "r"):
        plan.storage[name] = type(plan.storage["t1"])("arena", offset=plan.storage["t1"].offset)
    plan.steps[step] = StepMemory("in place", "t3 overwrites t1 element by element, each read before it is written")
    check_table(compiled)
    report = memory_report(compiled)
    assert report.rows[step].live_bytes == 2 * 256
    assert render_text(report).splitlines()[step + 1].endswith("in place: t3 overwrites t1 element by element, each read "
                                                               "before it is written")
    svg = svg_of(render_html(report))
    marks = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "mode"]
    assert len(marks) == 1 and marks[0].find(f"{SVG}title").text.startswith(f"step {step}: in place: t3 overwrites")


def test_hostile_names_are_escaped(tmp_path):
    path = tmp_path / "hostile.onnx"
    onnx.save(small_model(t1=HOSTILE), str(path))
    page = render_html(memory_report(compile_model(path)))
    assert "<script" not in page and "&lt;script&gt;" in page
    assert page.count("</svg>") == 1
    svg = svg_of(page)
    titles = [r.find(f"{SVG}title").text for r in rects(svg, "tensor")]
    assert any(t.startswith(HOSTILE + ":") for t in titles)  # the name itself, once unescaped
    check_svg(compile_model(path))


def test_compile_report_prints_the_table_and_writes_the_page(small_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(small_path), "-o", str(out), "--report"]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.split()[:2] == ["step", "node"])
    compiled = compile_model(small_path)
    table = printed[header + 1:header + 1 + len(compiled.graph.nodes)]
    live = expected_live_bytes(compiled)
    for step, (line, node) in enumerate(zip(table, compiled.graph.nodes)):
        assert line.split()[:2] == [str(step), node.name] and f" {live[step]} " in line, line
    assert printed[header + 1 + len(table)].startswith("memory: liveness bound ")
    page = (out / "report.html").read_text()
    assert page == render_html(memory_report(compiled))

    # without --report, the same folder and nothing printed about memory
    assert main(["compile", str(small_path), "-o", str(tmp_path / "quiet")]) == 0
    assert "memory:" not in capsys.readouterr().out
    assert (tmp_path / "quiet" / "report.html").read_bytes() == (out / "report.html").read_bytes()


# --- the page in a real browser ---------------------------------------------------------------


def png_rgb(path: Path) -> np.ndarray:
    """The RGB pixels (height x width x 3) of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    previous = np.zeros(stride, dtype=np.int64)
    rows = []
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        row = unfilter(line[0], np.frombuffer(line[1:], dtype=np.uint8).astype(np.int64), previous, channels)
        rows.append(row.reshape(width, channels)[:, :3])
        previous = row
    return np.stack(rows).astype(np.uint8)


def png_pixels(path: Path) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of an 8-bit, non-interlaced RGB or RGBA PNG."""
    return set(map(tuple, np.unique(png_rgb(path).reshape(-1, 3), axis=0).tolist()))


def chromium_screenshot(page: Path, shot: Path, profile: Path) -> None:
    """Headless Chromium's screenshot of a page file (1400 x 900 pixels), its profile in a folder of the test's."""
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--window-size=1400,900", f"--screenshot={shot}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def unfilter(kind: int, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 2:
        return (line + up) % 256
    out = line.copy()
    if kind == 1:  # Sub: a running sum per channel
        return np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
    for i in range(len(out)):  # Average and Paeth depend on the byte just decoded: byte by byte
        left = out[i - bpp] if i >= bpp else 0
        upper, corner = up[i], (up[i - bpp] if i >= bpp else 0)
        if kind == 3:
            out[i] = (line[i] + (left + upper) // 2) % 256
        else:
            p = left + upper - corner
            pa, pb, pc = abs(p - left), abs(p - upper), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else upper if pb <= pc else corner
            out[i] = (line[i] + predictor) % 256
    return out


def test_chromium_draws_the_report(network_path, tmp_path):
    """Not skipped without Chromium: CI installs it (.ci/run)."""
    out = tmp_path / "out"
    assert main(["compile", str(network_path), "-o", str(out)]) == 0
    shot = tmp_path / "shot.png"
    chromium_screenshot(out / "report.html", shot, tmp_path / "profile")
    colours = png_pixels(shot)
    assert len(colours) > 100, "the screenshot is (nearly) blank"
    # the largest tensors' rectangles are drawn in their own colours
    report = memory_report(compile_model(network_path))
    largest = sorted(report.buffers, key=lambda b: -b.size * (b.last - b.first + 1))[:8]
    drawn = [b.root for b in largest if tuple(int(tensor_colour(b.root)[i:i + 2], 16) for i in (1, 3, 5)) in colours]
    assert len(drawn) >= 6, f"of the largest tensors' colours only {drawn} are on the screenshot"


def test_an_arena_above_the_most_bytes_in_use_names_the_step_and_the_buffers(tmp_path):
    """MobileNetV2 with its input in the arena: the first convolution runs in place over the input and the streamed
    chain after it over its output, three buffers at fixed offsets from each other (a block wider than any step
    needs). The summary gives the ratio, the step with the most bytes in use, and the buffer above that level;
    without the gap (the caller's buffers) it says nothing of one."""
    path = quantize(NETWORKS["mobilenet_v2"](), tmp_path / "mv2.onnx", quant_format="QDQ", activation="int8")
    report = memory_report(compile_model(path, Options(io_in_arena=True)))
    top = report.most_in_use
    assert report.arena_bytes > 1.02 * top.live_bytes
    summary = report.summary()
    assert (f"the arena is {report.arena_bytes / top.live_bytes:.2f} x the most bytes in use at one step "
            f"({top.live_bytes} at step {top.step} '{top.name}')") in summary
    above = [b for b in report.buffers if b.offset + b.size > top.live_bytes]
    assert above and all(f"'{b.root}' (steps {b.first}-{b.last}, @{b.offset}+{b.size})" in summary for b in above)
    assert "most bytes in use" not in memory_report(compile_model(path, Options())).summary()
