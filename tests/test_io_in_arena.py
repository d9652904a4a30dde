"""--io-in-arena: the model's inputs and outputs are arena buffers, as in TFLite Micro, so the arena is
all the RAM the model needs and a layer may write over an input no later layer reads.

The C is checked as everywhere (C == reference == the model's runtime); here also the header's
contract (fill NAME_input_X(), NAME_invoke(), read NAME_output_Y(), again on a second inference after
the first overwrote the input), that the input's bytes are reused, and that the RAM counted the same
way as TFLM's arena shrinks on the models the option is for."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import STRICT_CFLAGS, check_exact, check_tflite_exact
from models import quantize
from networks import NETWORKS
from qcc import reference
from qcc.cli import main
from qcc.passes import memory_plan
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import random_inputs

DATA = Path(__file__).resolve().parent / "data" / "tflite"


def _io_bytes(graph) -> int:
    return sum(graph.tensor(t).nbytes for t in graph.inputs + graph.outputs)


@pytest.mark.parametrize("network", ["resnet8", "mobilenet_v1"])
def test_suite_networks_are_exact_with_their_inputs_and_outputs_in_the_arena(tmp_path, network):
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", quant_format="QDQ", activation="int8")
    compiled = check_exact(path, tmp_path, io_in_arena=True)
    storage = compiled.plan.storage
    assert all(storage[t].kind == "arena" for t in compiled.graph.inputs + compiled.graph.outputs)


def test_float_inputs_and_outputs_live_in_the_arena_too(tmp_path):
    path = quantize(NETWORKS["resnet8"](), tmp_path / "resnet8.onnx", quant_format="QDQ", activation="int8")
    compiled = check_exact(path, tmp_path, float_io=True, io_in_arena=True, n_random=2)
    graph = compiled.graph
    assert {graph.tensor(t).dtype for t in graph.inputs + graph.outputs} == {"float32"}
    assert all(compiled.plan.storage[t].kind == "arena" for t in graph.inputs + graph.outputs)


@pytest.mark.parametrize("model", ["micro_speech_quantized.tflite", "ad01_int8.tflite"])
def test_tflite_models_are_exact_and_count_their_inputs_once(tmp_path, model):
    """TFLM's own examples: exact to TFLM with the option; the arena holding the inputs and outputs is
    smaller than the arena plus the caller's buffers (the input's bytes are reused once it is read)."""
    compiled = check_tflite_exact(DATA / model, tmp_path, io_in_arena=True, schemes=("tflm",))
    caller = compile_model(DATA / model, Options())
    assert compiled.plan.arena_bytes < caller.plan.arena_bytes + _io_bytes(caller.graph)
    graph, storage = compiled.graph, compiled.plan.storage
    (x,) = graph.inputs
    start, end = storage[x].offset, storage[x].offset + graph.tensor(x).nbytes
    reusers = [t for t, s in storage.items() if s is not None and s.kind == "arena" and compiled.plan.root[t] != compiled.plan.root[x]
               and s.offset < end and start < s.offset + graph.tensor(t).nbytes]
    assert reusers, "some later tensor takes the input's bytes"


HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"

static const int8_t inputs[2][MODEL_INPUT_{IN}_COUNT] = {{ {A} }, { {B} }};
static const int8_t expected[2][MODEL_OUTPUT_{OUT}_COUNT] = {{ {YA} }, { {YB} }};

int main(void)
{
    int k;
    for (k = 0; k < 2; ++k) {
        memcpy(model_input_{in_name}(), inputs[k], sizeof inputs[k]);
        if (model_invoke() != 0 || memcmp(model_output_{out_name}(), expected[k], sizeof expected[k]) != 0) {
            printf("inference %d differs\n", k);
            return 1;
        }
    }
    printf("OK\n");
    return 0;
}
"""


def test_the_header_gives_the_arena_s_inputs_outputs_and_invoke(tmp_path):
    """An application written against model.h alone: two inferences in a row through the pointers,
    the second after the first overwrote its input, both equal to the reference's outputs."""
    model = DATA / "micro_speech_quantized.tflite"
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "--io-in-arena"]) == 0
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["io_in_arena"] is True
    header = (out / "model.h").read_text()
    (entry_in,), (entry_out,) = manifest["inputs"], manifest["outputs"]
    assert f"int8_t *model_input_{entry_in['c_name']}(void);" in header and "int model_invoke(void);" in header
    graph = compile_model(model, Options(io_in_arena=True)).graph
    cases = random_inputs(graph, 2, seed=3)
    outputs = [reference.run(graph, case)[0] for case in cases]

    def values(a):
        return ", ".join(str(int(v)) for v in np.asarray(a).reshape(-1))
    text = HARNESS.replace("{IN}", entry_in["c_name"].upper()).replace("{OUT}", entry_out["c_name"].upper())
    text = text.replace("{in_name}", entry_in["c_name"]).replace("{out_name}", entry_out["c_name"])
    text = text.replace("{A}", values(cases[0][0])).replace("{B}", values(cases[1][0]))
    text = text.replace("{YA}", values(outputs[0])).replace("{YB}", values(outputs[1]))
    (out / "app.c").write_text(text)
    sources = [str(p) for p in out.glob("*.c") if p.name not in ("test_model.c", "qcc_runner.c")]
    subprocess.run(["gcc", *STRICT_CFLAGS.split(), "-o", str(out / "app"), *sources], check=True, cwd=out)
    result = subprocess.run([str(out / "app")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stdout


def test_bench_counts_the_invoke_on_the_arena_s_inputs(tmp_path, capsys):
    """qcc bench with the option: the runner fills the arena's input, then counts model_invoke alone."""
    model = DATA / "micro_speech_quantized.tflite"
    assert main(["bench", str(model), "--target", "cortex-m4", "--io-in-arena", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    whole = report["instructions"]["per_inference"]
    assert whole == sum(layer["instructions"] for layer in report["instructions"]["layers"]) + \
        report["instructions"]["after_last_layer"]
    assert report["ram"]["bss_bytes"] == compile_model(model, Options(io_in_arena=True)).plan.arena_bytes


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_the_arena_with_inputs_and_outputs_is_never_larger_than_apart(tmp_path, network):
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", quant_format="QDQ", activation="int8")
    caller = compile_model(path, Options())
    in_arena = compile_model(path, Options(io_in_arena=True))
    assert in_arena.plan.arena_bytes <= caller.plan.arena_bytes + _io_bytes(caller.graph)


def test_inputs_and_outputs_after_the_arena_when_sharing_places_worse(tmp_path, monkeypatch):
    """Where the plans sharing the arena with the inputs come out larger (here forced: they keep every tensor
    whole), qcc takes the caller's plan with the inputs and outputs after its arena; that C is exact too."""
    real, real_plan_with = memory_plan._plan_for, memory_plan._plan_with

    def worse_when_shared(graph, below_liveness):
        return real(graph, not graph.io_in_arena and below_liveness)

    def whole_when_shared(graph, streams, in_place=True, trial=False, offsets=None):
        if graph.io_in_arena:
            return real_plan_with(graph, [], in_place=False)
        return real_plan_with(graph, streams, in_place, trial, offsets)
    monkeypatch.setattr(memory_plan, "_plan_for", worse_when_shared)
    monkeypatch.setattr(memory_plan, "_plan_with", whole_when_shared)
    path = quantize(NETWORKS["resnet8"](), tmp_path / "resnet8.onnx", quant_format="QDQ", activation="int8")
    caller = compile_model(path, Options())
    compiled = check_exact(path, tmp_path, io_in_arena=True, n_random=2)
    graph, plan = compiled.graph, compiled.plan
    end = caller.plan.arena_bytes
    for name in graph.inputs + graph.outputs:  # each after the one before, on a word
        end = -(-(end + graph.tensor(name).nbytes) // 4) * 4
    assert plan.arena_bytes == end
    assert all(plan.storage[t].kind == "arena" and plan.storage[t].offset >= caller.plan.arena_bytes
               for t in graph.inputs + graph.outputs)


def test_the_caller_s_chains_streamed_with_the_inputs_in_the_arena_where_the_shared_choice_stops(tmp_path, monkeypatch):
    """With the inputs in the arena, the greedy choice of chains can stop early (FITI's YOLOv5s 192: each first
    stretch alone saves less than STREAM_MIN_SAVING while another step is as high); here forced to stream nothing.
    qcc also places the chains chosen for the caller's buffers with the inputs and outputs sharing the arena,
    keeps that plan where it is the smallest, and its C is exact."""
    real = memory_plan._choose_streams

    def none_when_shared(graph, offsets):
        return [] if graph.io_in_arena else real(graph, offsets)
    monkeypatch.setattr(memory_plan, "_choose_streams", none_when_shared)
    path = quantize(NETWORKS["resnet8"](), tmp_path / "resnet8.onnx", quant_format="QDQ", activation="int8")
    caller = compile_model(path, Options())
    assert caller.plan.streams, "the caller's plan streams some chain"
    compiled = check_exact(path, tmp_path, io_in_arena=True, n_random=2)
    graph, plan = compiled.graph, compiled.plan
    assert [[n.name for n in s.nodes] for s in plan.streams.values()] == [
        [n.name for n in s.nodes] for s in caller.plan.streams.values()]
    assert all(plan.storage[t].kind == "arena" for t in graph.inputs + graph.outputs)
    assert plan.arena_bytes < caller.plan.arena_bytes + _io_bytes(caller.graph)
