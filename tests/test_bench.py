"""`qcc bench`: the measurements hold the relations a correct instrument must give (per-layer
instructions sum to the whole, runs repeat exactly, more MACs cost more; the Cortex-M4 cycle
estimate splits the same way and grows with flash wait states), the JSON has exactly the keys
docs/bench_json.md documents, and the bench hook leaves the default build unchanged."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from models import quantize
from networks import NetBuilder

from qcc.cli import main
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options

DOC = Path(__file__).resolve().parent.parent / "docs" / "bench_json.md"


def small_network():
    """Two 3x3 convolutions of one shape but for their channel counts (the second has twice the
    MACs), a depthwise one, a global pool and a dense layer."""
    net = NetBuilder("bench_small", [1, 3, 12, 12])
    x = net.conv("input", 8, 3)
    x = net.conv(x, 8, 3)
    x = net.conv(x, 16, 3)
    x = net.conv(x, 16, 3, group=16)
    x = net.flatten(net.global_pool(x))
    return net.build([net.dense(x, 4, act=None)])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(quantize(small_network(), tmp_path_factory.mktemp("bench") / "small.onnx", activation="int8",
                        quant_format="QDQ"))


def bench_json(capsys, *args) -> dict:
    assert main(["bench", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def m4_runs(model):
    # Module-scoped (two runs serve four tests), so through a subprocess: capsys is per test.
    runs = []
    # the second run estimates the cycles with flash wait states and gives milliseconds: its
    # instructions must not change
    for extra in ([], ["--flash-wait-states", "2", "--clock-mhz", "120"]):
        # --whole-tensors: every layer on its own, so each has its own count (streamed, a chain's count
        # is its last layer's: tests/test_streaming.py)
        result = subprocess.run([sys.executable, "-m", "qcc", "bench", model, "--target", "cortex-m4", "--format", "json",
                                 "--whole-tensors", *extra],
                                capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    return runs


def check_instructions(report: dict) -> None:
    counts = report["instructions"]
    layers = counts["layers"]
    # The marker overhead, measured in the image, is the documented `bx lr` + `bl` (docs/insn_count.md).
    assert counts["marker_overhead"] == 2
    # Every instruction of the run is in exactly one layer or in the run's return.
    assert sum(layer["instructions"] for layer in layers) + counts["after_last_layer"] == counts["per_inference"]
    assert 0 < counts["after_last_layer"] < 20
    assert all(layer["instructions"] >= 0 for layer in layers)
    assert counts["per_mac"] == counts["per_inference"] / report["macs"]
    for layer in layers:
        if "streamed_into" in layer:  # a streamed chain's layers are counted together, in its last one
            # (the few instructions around its mark, and layer 0's the run's prologue)
            assert layer["instructions"] < 20 and layers[layer["streamed_into"]]["instructions"] > 0
            assert layer["index"] in layers[layer["streamed_into"]]["streamed_chain"]
        elif layer["op"] == "QLinearConv" and "streamed_chain" not in layer:
            assert 1 < layer["per_mac"] < 100
        if "streamed_chain" in layer:  # the chain's instructions over the chain's MACs
            chain_macs = sum(layers[k]["macs"] for k in layer["streamed_chain"])
            assert layer["per_mac"] == layer["instructions"] / chain_macs and 1 < layer["per_mac"] < 100


def test_cortex_m4_instructions_per_layer_sum_to_the_whole_and_repeat_exactly(m4_runs):
    first, second = m4_runs
    check_instructions(first)
    assert first["instructions"] == second["instructions"]
    assert first["ram"]["stack_peak_bytes"] == second["ram"]["stack_peak_bytes"]


def check_cycles(report: dict) -> None:
    """The cycle estimate splits like the instructions, and no instruction takes less than a cycle."""
    cycles, counts = report["cycles"], report["instructions"]
    assert cycles["marker_overhead"] == 2 * (1 + cycles["refill_cycles"])  # two branches, each with its refill
    assert sum(layer["cycles"] for layer in cycles["layers"]) + cycles["after_last_layer"] == cycles["per_inference"]
    assert [layer["index"] for layer in cycles["layers"]] == [layer["index"] for layer in counts["layers"]]
    for estimate, layer in zip(cycles["layers"], counts["layers"]):
        assert estimate["cycles"] >= layer["instructions"]
        if layer["instructions"]:
            assert estimate["per_instruction"] == estimate["cycles"] / layer["instructions"]
    assert cycles["per_inference"] >= counts["per_inference"]
    assert cycles["per_mac"] == cycles["per_inference"] / report["macs"]


def test_cortex_m4_cycles_are_estimated_per_layer_and_wait_states_add_to_them(m4_runs):
    plain, waiting = m4_runs
    check_cycles(plain)
    check_cycles(waiting)
    assert plain["cycles"]["flash_wait_states"] == 0 and "flash_end" not in plain["cycles"]
    assert "clock_mhz" not in plain["cycles"]
    # the weights are read from flash: every convolution waits
    assert waiting["cycles"]["flash_wait_states"] == 2 and waiting["cycles"]["flash_end"] == 4 * 1024 * 1024
    for before, after, layer in zip(plain["cycles"]["layers"], waiting["cycles"]["layers"], plain["instructions"]["layers"]):
        if layer["op"] == "QLinearConv":
            assert after["cycles"] > before["cycles"]
    assert waiting["cycles"]["ms_per_inference"] == waiting["cycles"]["per_inference"] / 120e3


def test_more_macs_of_the_same_kind_cost_more_instructions(m4_runs):
    convs = [layer for layer in m4_runs[0]["instructions"]["layers"] if layer["op"] == "QLinearConv"]
    same_shape_8, same_shape_16 = convs[1], convs[2]  # 8 -> 8 and 8 -> 16 channels, 3x3 on 12x12
    assert same_shape_16["macs"] == 2 * same_shape_8["macs"]
    assert same_shape_16["instructions"] > same_shape_8["instructions"]


def test_flash_and_ram_are_measured(m4_runs):
    report = m4_runs[0]
    os_, o2 = report["flash"]["-Os"], report["flash"]["-O2"]
    assert 0 < os_["code_bytes"] <= o2["code_bytes"]
    # The weights are constants whatever the optimization level, and at least the manifest's bytes.
    assert os_["constant_data_bytes"] == o2["constant_data_bytes"] > 0
    assert {"model.o", "qcc_kernels.o"} <= set(o2["objects"])
    ram = report["ram"]
    assert ram["bss_bytes"] >= ram["arena_bytes"] > 0
    assert 0 < ram["stack_peak_bytes"] < ram["stack_size_bytes"]


def documented_keys() -> set[str]:
    """The key paths of the table in docs/bench_json.md (first column, in backquotes)."""
    return set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), re.MULTILINE))


def key_paths(value, prefix="") -> set[str]:
    """Paths of a JSON value as the doc writes them: LEVEL for an optimization level, FILE for an
    object file, [] for a list's items."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            name = "LEVEL" if key.startswith("-O") else "FILE" if key.endswith(".o") else key
            path = f"{prefix}.{name}" if prefix else name
            paths |= {path} | key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, prefix + "[]")
    return paths


def test_the_json_has_exactly_the_documented_keys(m4_runs, capsys, model):
    host = bench_json(capsys, model, "--target", "host")
    streamed = bench_json(capsys, model, "--target", "cortex-m0")  # its convolutions streamed: the chain's keys
    # a .tflite on the host: the C's time beside TFLite Micro's
    tflite = bench_json(capsys, str(Path(__file__).parent / "data" / "tflite" / "hello_world_int8.tflite"), "--target",
                        "host")
    documented = documented_keys()
    measured = key_paths(m4_runs[0]) | key_paths(m4_runs[1]) | key_paths(host) | key_paths(streamed)
    assert measured | key_paths(tflite) == documented
    tflm_timing = tflite["host_time"]
    assert tflm_timing["c_ms"] > 0 and tflm_timing["tflm_ms"] > 0 and "ort_ms" not in tflm_timing
    assert "host_time" not in m4_runs[0] and "instructions" not in host
    assert m4_runs[0]["schema_version"] == host["schema_version"] == 1
    # The host: the C's time beside ORT's, measured in the same run; informative, so only its sign is checked.
    timing = host["host_time"]
    assert timing["c_ms"] > 0 and timing["ort_ms"] > 0 and timing["c_over_ort"] == pytest.approx(timing["c_ms"] / timing["ort_ms"])
    assert host["flash"]["-Os"]["code_bytes"] <= host["flash"]["-O2"]["code_bytes"]


def test_cortex_m0(capsys, model):
    report = bench_json(capsys, model, "--target", "cortex-m0")
    check_instructions(report)
    assert "cycles" not in report  # the timing model is the Cortex-M4's
    assert 0 < report["ram"]["stack_peak_bytes"] < report["ram"]["stack_size_bytes"] == 2048


def test_the_text_output_names_each_layer(capsys, model):
    assert main(["bench", model, "--target", "cortex-m4"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"instructions per inference: \d+, [\d.]+ per MAC", text)
    assert re.search(r"estimated Cortex-M4 cycles per inference: \d+, [\d.]+ per MAC \(an estimate: ", text)
    assert text.count("QLinearConv") == 4 and "stack high-water" in text


def test_the_bench_hook_leaves_the_default_build_unchanged(tmp_path, model):
    """model.c with and without the QCC_BENCH block compiles to the same object, byte for byte."""
    compile_to_folder(model, tmp_path / "out", Options())
    source = (tmp_path / "out" / "model.c").read_text()
    block = re.search(r"#if defined\(QCC_BENCH\)\n.*?#elif defined\(QCC_TRACE\)\n", source, re.DOTALL)
    assert block is not None
    stripped_dir = tmp_path / "stripped"
    shutil.copytree(tmp_path / "out", stripped_dir)
    (stripped_dir / "model.c").write_text(source.replace(block.group(0), "#ifdef QCC_TRACE\n"))
    objects = []
    for folder in (tmp_path / "out", stripped_dir):
        subprocess.run(["cc", "-std=c99", "-O2", "-c", "model.c", "-o", "model.o"], cwd=folder, check=True)
        objects.append((folder / "model.o").read_bytes())
    assert objects[0] == objects[1]


def big_network():
    net = NetBuilder("bench_big", [1, 3, 64, 64])
    return net.build([net.conv("input", 32, 3)])


def test_errors_are_one_line_with_status_2(capsys, model, tmp_path, monkeypatch):
    big = str(quantize(big_network(), tmp_path / "big.onnx", activation="int8", quant_format="QDQ"))
    assert main(["bench", big, "--target", "cortex-m0"]) == 2
    assert re.fullmatch(r"qcc: error: --target cortex-m0: the model needs \d+ bytes of RAM .* has 16384 \(16 KiB\)\n",
                        capsys.readouterr().err)
    assert main(["bench", model, "--target", "cortex-m9"]) == 2
    assert re.fullmatch(r"qcc: error: --target 'cortex-m9': unknown target; .*\n", capsys.readouterr().err)
    assert main(["bench", model, "--target", "cortex-m0", "--clock-mhz", "48"]) == 2
    assert capsys.readouterr().err == ("qcc: error: --flash-wait-states and --clock-mhz shape the cycle estimate, which "
                                       "models the Cortex-M4 only: use --target cortex-m4\n")
    assert main(["bench", model, "--target", "cortex-m4", "--flash-wait-states", "16"]) == 2
    assert capsys.readouterr().err == "qcc: error: --flash-wait-states 16: give 0 to 15 wait states\n"
    monkeypatch.setenv("PATH", str(tmp_path))  # no cross compiler, no QEMU
    assert main(["bench", model, "--target", "cortex-m4"]) == 2
    assert re.fullmatch(r"qcc: error: --target cortex-m4: arm-none-eabi-gcc not found; .*\n", capsys.readouterr().err)


def test_bench_ram_measures_a_model_and_a_refusal(tmp_path):
    """benchmarks/bench_ram.py on TFLM's hello_world (exact, its TFLM arena measured) and on a file qcc refuses:
    a row each, the ratios from the row's own numbers."""
    from helpers import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_ram

    model = REPO / "tests" / "data" / "tflite" / "hello_world_int8.tflite"
    row = bench_ram.measure(model, [])
    assert row["verdict"].startswith("exact") and row["tflm"] > row["ram"] > 0
    assert row["ram"] == row["arena"] + row["io"] and row["shared_arena"] >= row["in_use"] > 0
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(model.read_bytes()[:64])
    refused = bench_ram.measure(broken, [])
    assert refused["verdict"].startswith("refused")
    text = bench_ram.table([row, refused])
    assert f"{row['ram'] / row['tflm']:.2f}" in text and "| broken.tflite | refused" in text
