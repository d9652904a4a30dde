"""bench.html (qcc/backend/bench_html.py): on a hand-built bench report, one bar per layer in execution
order, each as long as its count against the largest layer's, the per-MAC columns worked out here,
the cycles' columns only where the report has cycles, the host's page without layers, every name
from the model escaped, nothing external; then a real Cortex-M4 bench written with
write_bench_report, its JSON the one `--format json` prints, its page as headless Chromium draws it:
the bars measured in the screenshot's pixels."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_bench import model  # noqa: F401 (the fixture: test_bench's small network, quantized)
from test_memory_report import chromium_screenshot, png_rgb

from qcc.backend.bench_html import (CYCLES_COLOUR, INSTRUCTIONS_COLOUR, TRACK_COLOUR, render_bench_html,
                                    write_bench_report)
from qcc.commands.bench import bench, render
from qcc.pipeline import Options, model_rounding

HOSTILE = "<script>alert(1)</script>&\"'"
SVG = "{http://www.w3.org/2000/svg}"


def layer(index, name, op, macs, instructions, **extra):
    per_mac = instructions / macs if macs else None
    return {"index": index, "op": op, "name": name, "macs": macs, "instructions": instructions, "per_mac": per_mac,
            **extra}


def cortex_report(name: str = "conv_b", model_name: str = "tiny.onnx") -> dict:
    """A Cortex-M4 report as bench() lays it out: a streamed chain (layers 2-3, counted in 3), a layer of
    no MACs and no instructions, and the Cortex-M4's cycle estimate."""
    layers = [layer(0, "conv_a", "QLinearConv", 1000, 5000),
              layer(1, name, "QLinearConv", 2000, 20000),
              {**layer(2, "conv_c", "QLinearConv", 400, 3), "per_mac": None, "streamed_into": 3},
              {**layer(3, "add_d", "QLinearAdd", 100, 10000), "streamed_chain": [2, 3]},
              layer(4, "flatten_e", "Flatten", 0, 0)]
    cycles = [7000, 30000, 9, 15000, 0]
    after_last, cycles_after_last = 5, 12
    per_inference = sum(entry["instructions"] for entry in layers) + after_last
    cycles_per_inference = sum(cycles) + cycles_after_last
    macs = sum(entry["macs"] for entry in layers)
    return {
        "schema_version": 1, "qcc_version": "9.8.7", "model": model_name, "target": "cortex-m4", "rounding": "ort",
        "fpu": False, "macs": macs,
        "flash": {level: {"cflags": f"-std=c99 {level} -mcpu=cortex-m4", "code_bytes": code,
                          "constant_data_bytes": 4325,
                          "objects": {"model.o": {"code_bytes": 900, "rodata_bytes": 4325, "data_bytes": 0,
                                                  "bss_bytes": 3456},
                                      "qcc_kernels.o": {"code_bytes": code - 900, "rodata_bytes": 0, "data_bytes": 0,
                                                        "bss_bytes": 0}}}
                  for level, code in (("-Os", 10606), ("-O2", 16252))},
        "instructions": {"per_inference": per_inference, "per_mac": per_inference / macs, "marker_overhead": 2,
                         "after_last_layer": after_last, "cflags": "-std=c99 -O2 -DQCC_BENCH -mcpu=cortex-m4",
                         "layers": layers},
        "cycles": {"model": "Cortex-M4 TRM instruction timings (docs/cycle_model.md)", "refill_cycles": 2,
                   "divide_cycles": 12, "flash_wait_states": 0, "per_inference": cycles_per_inference,
                   "per_mac": cycles_per_inference / macs, "marker_overhead": 6, "after_last_layer": cycles_after_last,
                   "layers": [{"index": k, "cycles": c,
                               "per_instruction": c / layers[k]["instructions"] if layers[k]["instructions"] else None}
                              for k, c in enumerate(cycles)],
                   "clock_mhz": 120.0, "ms_per_inference": cycles_per_inference / 120e3},
        "ram": {"arena_bytes": 3456, "io_bytes": 436, "model_ram_bytes": 3892, "data_bytes": 0, "bss_bytes": 3456,
                "stack_peak_bytes": 468, "stack_size_bytes": 16384},
    }


def without_cycles(report: dict) -> dict:
    """The same report from a Cortex-M without the cycle estimate (the Cortex-M0)."""
    report = copy.deepcopy(report)
    del report["cycles"]
    report["target"] = "cortex-m0"
    return report


def host_report(tflite: bool = False) -> dict:
    report = cortex_report()
    for key in ("instructions", "cycles"):
        del report[key]
    for key in ("stack_peak_bytes", "stack_size_bytes"):
        del report["ram"][key]
    report["target"] = "host"
    if tflite:
        report["host_time"] = {"cflags": "-std=c99 -O2", "c_ms": 0.25, "tflm_ms": 1.0, "c_over_tflm": 0.25,
                               "tflm_configuration": "tflite-micro reference kernels"}
    else:
        report["host_time"] = {"cflags": "-std=c99 -O2", "c_ms": 0.25, "ort_ms": 0.5, "c_over_ort": 0.5,
                               "ort_configuration": "ONNX Runtime: CPU provider, 1 thread"}
    return report


def page_xml(page: str) -> ET.Element:
    """The whole page after its doctype, as XML: it must be well-formed."""
    assert page.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(page.split("\n", 1)[1])


def bars(root: ET.Element, kind: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == kind]


def layer_rows(root: ET.Element) -> list[list[ET.Element]]:
    table = next(t for t in root.iter("table") if t.get("class") == "layers")
    return [list(tr) for tr in table.iter("tr")][1:]


def header(root: ET.Element) -> list[str]:
    table = next(t for t in root.iter("table") if t.get("class") == "layers")
    return [th.text or "" for th in next(table.iter("tr"))]


def column(root: ET.Element, name: str, occurrence: int = 0) -> list[str]:
    """The text of one column of the layer table, by its heading (the n-th of that heading)."""
    k = [i for i, h in enumerate(header(root)) if h == name][occurrence]
    return [row[k].text for row in layer_rows(root)]


# --- a hand-built report ----------------------------------------------------------------------------


def test_one_bar_per_layer_in_execution_order_proportional_to_its_count():
    report = cortex_report()
    shuffled = copy.deepcopy(report)
    shuffled["instructions"]["layers"].reverse()  # the page orders them by index, whatever the list's order
    shuffled["cycles"]["layers"] = shuffled["cycles"]["layers"][2:] + shuffled["cycles"]["layers"][:2]
    for given in (report, shuffled):
        root = page_xml(render_bench_html(given))
        layers = report["instructions"]["layers"]
        assert column(root, "#") == [str(k) for k in range(len(layers))]
        names = [row[1].text for row in layer_rows(root)]
        assert names == [entry["name"] for entry in layers]
        for kind, counts in (("instructions", [entry["instructions"] for entry in layers]),
                             ("cycles", [entry["cycles"] for entry in report["cycles"]["layers"]])):
            drawn = bars(root, kind)
            assert len(drawn) == len(layers)
            box = float(next(root.iter(f"{SVG}svg")).get("width"))
            widths = [float(r.get("width")) for r in drawn]
            # the largest layer's bar fills its box; every other its share of the largest
            for width, count in zip(widths, counts):
                assert width == pytest.approx(box * count / max(counts), abs=0.006)
            assert widths[1] == box and widths[4] == 0 and 0 < widths[2] < 0.1
            assert all(r.get("fill") == (INSTRUCTIONS_COLOUR if kind == "instructions" else CYCLES_COLOUR)
                       for r in drawn)
        assert len(bars(root, "track")) == 2 * len(layers)


def test_counts_and_per_mac_columns():
    root = page_xml(render_bench_html(cortex_report()))
    assert column(root, "MACs") == ["1,000", "2,000", "400", "100", "0"]
    assert column(root, "instructions") == ["5,000", "20,000", "3", "10,000", "0"]
    assert column(root, "est. cycles") == ["7,000", "30,000", "9", "15,000", "0"]
    # per MAC: the count over the MACs it covers. The chain's last layer counts layers 2 and 3 together:
    # 10000 / (400 + 100) = 20 instructions per MAC (the report's per_mac, 10000 / 100, is over its own
    # MACs only); the layer streamed into it, and the one of no MACs, have none.
    assert column(root, "per MAC", 0) == ["5.00", "10.00", "-", "20.00", "-"]
    assert column(root, "per MAC", 1) == ["7.00", "15.00", "-", "30.00", "-"]
    assert column(root, "per instruction") == ["1.40", "1.50", "3.00", "1.50", "-"]
    notes = column(root, "note")
    assert notes[2] == "streamed: counted in layer 3" and notes[3].startswith("streamed: layers 2-3 together")
    assert "500 MACs" in notes[3] and notes[0] is None
    titles = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")]
    # 20000 of 35008 instructions, 30000 of 52021 cycles
    assert titles[2] == "conv_b (QLinearConv): 20,000 instructions, 57.1% of the inference, 10.00 per MAC"
    assert titles[3] == "conv_b (QLinearConv): 30,000 estimated cycles, 57.7% of the inference, 1.50 per instruction"


def test_the_summary():
    report = cortex_report()
    page = render_bench_html(report)
    root = page_xml(page)
    assert root.find("head/title").text == root.find("body/h1").text == (
        "qcc bench: tiny.onnx on cortex-m4, rounding ort, qcc 9.8.7")
    summary = {tr.find("th").text: "".join(tr.find("td").itertext())
               for tr in next(t for t in root.iter("table") if t.get("class") == "summary")}
    assert summary["instructions per inference"].startswith("35,008; 10.00 per MAC")  # 35008 / 3500
    assert summary["estimated cycles per inference"].startswith("52,021; 14.86 per MAC; 0.434 ms at 120 MHz")
    assert "zero-wait-state memory" in summary["estimated cycles per inference"]
    assert summary["MACs"].startswith("3,500")
    assert summary["flash at -Os"].startswith("code 10,606 B; constant data 4,325 B")
    assert summary["flash at -O2"].startswith("code 16,252 B; constant data 4,325 B")
    assert summary["RAM"].startswith("arena 3,456 B; the model's RAM 3,892 B; .data 0 B, .bss 3,456 B; "
                                     "stack high-water 468 B of 16,384 B")
    # without --clock-mhz no milliseconds; with wait states, they are named
    report["cycles"].update(flash_wait_states=2, flash_end=4 << 20)
    del report["cycles"]["clock_mhz"], report["cycles"]["ms_per_inference"]
    page = render_bench_html(report)
    assert " ms " not in page and "2 wait states on each data read from flash" in page


def test_cycles_columns_only_when_the_report_has_cycles():
    report = without_cycles(cortex_report())
    page = render_bench_html(report)
    root = page_xml(page)
    assert len(bars(root, "instructions")) == 5 and not bars(root, "cycles")
    assert not any("cycles" in h for h in header(root)) and "per instruction" not in header(root)
    assert CYCLES_COLOUR not in page and "estimated cycles" not in page
    assert "cortex-m0" in root.find("body/h1").text
    # and no note column where no layer is streamed
    for entry in report["instructions"]["layers"]:
        entry.pop("streamed_into", None)
        entry.pop("streamed_chain", None)
    assert "note" not in header(page_xml(render_bench_html(report)))


@pytest.mark.parametrize("tflite", [False, True])
def test_the_host_page_has_its_times_flash_and_ram_and_no_layers(tflite):
    page = render_bench_html(host_report(tflite))
    root = page_xml(page)
    assert "<svg" not in page and not any(t.get("class") == "layers" for t in root.iter("table"))
    summary = {tr.find("th").text: "".join(tr.find("td").itertext())
               for tr in next(t for t in root.iter("table") if t.get("class") == "summary")}
    other = ("TFLite Micro (reference kernels) 1.000 ms; C / TFLM 0.25" if tflite
             else "ONNX Runtime 0.500 ms; C / ORT 0.50")
    assert summary["time per inference (host)"].startswith(f"C 0.250 ms; {other}")
    assert summary["flash at -O2"].startswith("code 16,252 B") and summary["RAM"].startswith("arena 3,456 B")
    assert "stack" not in summary["RAM"] and "instructions per inference" not in summary
    note = next(p for p in root.iter("p") if p.get("class") == "note")
    assert "".join(note.itertext()).startswith("Per-layer instructions and cycles need a Cortex-M target")


def test_a_report_without_object_sizes():
    """bench(object_sizes=False): no flash, and RAM without .data and .bss."""
    report = cortex_report()
    del report["flash"], report["ram"]["data_bytes"], report["ram"]["bss_bytes"]
    page = render_bench_html(report)
    assert "flash at" not in page and ".bss" not in page and len(bars(page_xml(page), "instructions")) == 5


def test_every_name_from_the_model_is_escaped():
    report = cortex_report(name=HOSTILE, model_name=HOSTILE + ".onnx")
    report["instructions"]["layers"][0]["op"] = HOSTILE
    page = render_bench_html(report)
    assert "<script" not in page and "&lt;script&gt;" in page
    root = page_xml(page)
    assert len(bars(root, "instructions")) == 5  # the name closed no element early
    assert HOSTILE in root.find("body/h1").text
    cell = layer_rows(root)[1][1]
    assert cell.text == cell.get("title") == HOSTILE
    assert layer_rows(root)[0][2].text == HOSTILE
    titles = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")]
    assert titles[0].startswith(f"conv_a ({HOSTILE}): ") and titles[2].startswith(f"{HOSTILE} (QLinearConv): ")


def test_the_page_is_self_contained_and_ascii():
    report = cortex_report(name="capa_\u03a9_\u5c64")
    page = render_bench_html(report)
    page.encode("ascii")
    for external in ("<script", "src=", "href=", "<link", "url(", "@import"):
        assert external not in page, external
    assert layer_rows(page_xml(page))[1][1].text == "capa_\u03a9_\u5c64"
    assert render_bench_html(report) == page  # a pure function of the report


def test_write_bench_report_writes_the_json_format_and_the_page(tmp_path):
    report = cortex_report()
    folder = tmp_path / "not" / "yet"
    paths = write_bench_report(report, folder)
    assert paths == (folder / "bench.json", folder / "bench.html")
    assert paths[0].read_text() == render(report, "json")  # what `qcc bench --format json` prints
    assert json.loads(paths[0].read_text()) == report
    assert paths[1].read_text() == render_bench_html(report)
    # again into the same folder (a string this time): both files replaced
    write_bench_report(host_report(), str(folder))
    assert json.loads(paths[0].read_text())["target"] == "host" and "Cortex-M target" in paths[1].read_text()


# --- a real bench, drawn by Chromium ------------------------------------------------------------------


@pytest.fixture(scope="module")
def m4_report(model):  # noqa: F811 (test_bench's fixture)
    """The small network on the Cortex-M4 (its convolutions streamed, as by default), with milliseconds."""
    return bench(model, Options(target="cortex-m4", rounding=model_rounding(model, None)), clock_mhz=120)


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def test_chromium_draws_a_bar_per_layer(m4_report, tmp_path):
    """Not skipped without Chromium: CI installs it (.ci/run). Each layer's row of the screenshot, found by
    its bars' boxes, has an instructions bar and a cycles bar as long as its counts against the
    largest layer's, in pixels; the JSON beside the page is the report."""
    layers = m4_report["instructions"]["layers"]
    cycles = [entry["cycles"] for entry in m4_report["cycles"]["layers"]]
    assert any("streamed_chain" in entry for entry in layers)  # the streamed layers' notes are on the page too
    for entry in layers:  # a chain's count over the chain's MACs, in the JSON as on the page
        if "streamed_chain" in entry:
            assert entry["per_mac"] == entry["instructions"] / sum(layers[k]["macs"] for k in entry["streamed_chain"])
    json_path, html_path = write_bench_report(m4_report, tmp_path / "report")
    assert json.loads(json_path.read_text()) == m4_report and json_path.read_text() == render(m4_report, "json")
    page = html_path.read_text()
    assert all(entry["name"] in page for entry in layers)

    shot = tmp_path / "shot.png"
    chromium_screenshot(html_path, shot, tmp_path / "profile")
    pixels = png_rgb(shot)
    instructions, estimated, track = ((pixels == rgb(c)).all(axis=2) for c in (INSTRUCTIONS_COLOUR, CYCLES_COLOUR,
                                                                                TRACK_COLOUR))
    # the rows of the screenshot crossing the bars' boxes (a legend's swatch is too short to count), in bands
    boxes = (instructions | estimated | track).sum(axis=1)
    ys = np.flatnonzero(boxes > 100)
    bands = np.split(ys, np.flatnonzero(np.diff(ys) > 1) + 1) if len(ys) else []
    assert len(bands) == len(layers), f"{len(bands)} rows of bars on the screenshot for {len(layers)} layers"
    middles = [int(band[len(band) // 2]) for band in bands]
    box = [boxes[y] / 2 for y in middles]  # each row: an instructions box and a cycles box of one width
    assert min(box) > 100 and max(box) - min(box) <= 2
    width = float(np.median(box))
    drawn = [int(instructions[y].sum()) for y in middles]
    drawn_cycles = [int(estimated[y].sum()) for y in middles]
    most, most_cycles = max(entry["instructions"] for entry in layers), max(cycles)
    for entry, got, got_cycles, count in zip(layers, drawn, drawn_cycles, cycles):
        assert abs(got - width * entry["instructions"] / most) <= 2, (entry["name"], got, width)
        assert abs(got_cycles - width * count / most_cycles) <= 2, (entry["name"], got_cycles, width)
    assert max(drawn) >= width - 2 and sum(instructions[y].any() for y in middles) >= 2
