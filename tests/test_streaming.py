"""Streamed execution (qcc/passes/streaming.py, qcc/backend/streams.py): chains of layers run a row
at a time, their intermediate tensors never whole.

The schedule's invariants are checked on its own (every call finds the rows its window reads, a
band never holds more than its rows, each row is made once and in order), and the C of streamed
chains shaped as exporters write them (a stem convolution into a max pool, residual blocks with and
without a projection, dilated and strided windows) is checked against ONNX Runtime and the reference
interpreter, which computes every tensor whole. A projection block's Add is streamed with the
shortcut's convolution where that makes the arena smaller.
"""

import numpy as np
import pytest
from onnx import helper

from helpers import check_exact, make_model
from models import quantize
from networks import NETWORKS, NetBuilder
from qcc.passes import streaming
from qcc.passes.streaming import Flush, Run, Shift
from qcc.pipeline import Options, compile_model


def check_schedule(stream) -> None:
    """Replays the calls, tracking which rows each band holds (with a lag, the output's held-back rows too)."""
    stages = stream.stages
    banded = len(stages) - 1 + (1 if stream.lag else 0)
    held = [[] for _ in range(banded)]  # rows in each band, in order
    made = [[] for _ in stages]
    flushed = []
    for call in stream.calls:
        if isinstance(call, Shift):
            rows = held[call.band]
            assert call.drop + call.keep == len(rows)
            held[call.band] = rows[call.drop:]
            continue
        if isinstance(call, Flush):  # a held-back output row, copied to its place
            assert held[-1][call.index] == call.row
            flushed.append(call.row)
            continue
        stage = stages[call.stage]
        first, last = stage.window(call.row)
        if call.stage == 0:
            assert call.in_first == first and call.in_first + call.in_rows == last + 1
        else:
            band = held[call.stage - 1]
            assert band and band[0] == call.in_first and len(band) == call.in_rows
            assert band == list(range(band[0], band[0] + len(band)))  # consecutive rows
            assert first >= band[0] and last <= band[-1]  # the whole window is there
            assert len(band) <= stream.band_rows[call.stage - 1]
        if call.stage < banded:
            band = held[call.stage]
            if band and band[0] < call.out_first:  # dropped without a Shift: nothing after them to keep
                assert band[-1] < call.out_first
                band = []
            assert call.out_first == (band[0] if band else call.row) and call.row == (band[-1] + 1 if band else call.row)
            held[call.stage] = band + [call.row]
            assert len(held[call.stage]) <= stream.band_rows[call.stage]
        assert not made[call.stage] or call.row > made[call.stage][-1]  # once each, in order
        made[call.stage].append(call.row)
    assert made[-1] == list(range(stages[-1].out_h))
    # with a lag, every output row reaches its place once, in order, `lag` rows after it is made
    assert flushed == (list(range(stages[-1].out_h)) if stream.lag else [])


@pytest.mark.parametrize("network", ["squeezenet11", "resnet8", "mobilenet_v1", "mobilenet_v2"])
def test_every_chains_schedule_holds_what_each_call_reads(tmp_path, network):
    path = quantize(NETWORKS[network](), tmp_path / f"{network}.onnx", quant_format="QDQ", activation="int8")
    compiled = compile_model(path, Options())
    chains = streaming.candidates(compiled.graph)
    assert chains and compiled.plan.streams
    for chain in chains:  # every stretch of every chain
        for start in range(len(chain.stages) - 1):
            for end in range(start + 2, len(chain.stages) + 1):
                check_schedule(streaming.sub_chain(chain, start, end))
    for stream in compiled.plan.streams.values():
        check_schedule(stream)


def _stem_pool_block(kind: str):
    """A stem convolution, then the streamed chain under test, then a small head."""
    net = NetBuilder(f"stream_{kind}", [1, 3, 30, 26], seed=5)
    x = net.conv("input", 8, 3)
    if kind == "pool":
        x = net.conv(x, 16, 3, stride=2)
        x = net.maxpool(x)
        x = net.conv(x, 8, 1)
    elif kind == "residual":
        y = net.conv(net.conv(x, 8, 3), 8, 3, act=None)
        x = net.add(y, x, act="relu")
    elif kind == "projection":
        y = net.conv(net.conv(x, 16, 3, stride=2), 16, 3, act=None)
        x = net.add(y, net.conv(x, 16, 1, stride=2, act=None), act="relu")
    elif kind == "blaze":  # BlazeFace's block: a 5x5 depthwise convolution, a 1x1 one, the Add of the block's input
        y = net.conv(net.conv(x, 8, 5, group=8, act=None), 8, 1, act=None)
        x = net.add(y, x, act="relu")
    elif kind == "depthwise":  # MobileNet's: expand, depthwise (stride 1, then 2), project
        x = net.conv(x, 24, 1)
        x = net.conv(x, 24, 3, group=24)
        x = net.conv(x, 24, 3, stride=2, group=24)
        x = net.conv(x, 8, 1, act=None)
    elif kind == "dilated":
        x = net.conv(x, 8, 5, dilation=2)
        x = net.conv(x, 12, 1, stride=2)
        x = net.maxpool(x, k=2, stride=2)
    elif kind == "dense":  # a classifier's head on the whole image: flattened into a fully connected layer
        x = net.conv(x, 12, 3, stride=2)
        return net.build([net.dense(net.flatten(x), 10, act=None)])
    return net.build([net.flatten(net.global_pool(x))])


@pytest.mark.parametrize("activation", ["int8", "uint8"])
@pytest.mark.parametrize("kind", ["pool", "residual", "projection", "blaze", "depthwise", "dilated", "dense"])
def test_streamed_chains_are_exact(tmp_path, kind, activation):
    path = quantize(_stem_pool_block(kind), tmp_path / f"{kind}.onnx", quant_format="QDQ", activation=activation)
    compiled = compile_model(path, Options())
    plan = compiled.plan
    assert plan.streams, "the plan streams the chain"
    streamed = {s.output for s in plan.streams.values()}
    assert plan.arena_bytes < plan.liveness_bytes
    for stream in plan.streams.values():
        check_schedule(stream)
        assert all(plan.storage[t].kind == "stream" for t in stream.intermediates)
    assert streamed
    # only the dense head's chain ends in the fully connected layer, taking the image a row at a time
    assert any(s.ends_in_parts for s in plan.streams.values()) == (kind == "dense")
    check_exact(path, tmp_path / "exact")  # C == reference == ORT, and C == reference in the other schemes


def test_a_projection_block_streams_its_add_with_the_shortcut_where_that_is_smaller(tmp_path, monkeypatch):
    """The block's two convolutions write their output whole beside the block's input, and the projection's
    chain streams the Add over it (streaming.add_twin): the Add's input band is gone. The same block planned
    without the twin (the Add streamed after the convolutions, the projection's output whole) takes more."""
    path = quantize(_stem_pool_block("projection"), tmp_path / "projection.onnx", quant_format="QDQ", activation="int8")
    plan = compile_model(path, Options()).plan
    chains = [[n.op for n in s.nodes] for s in plan.streams.values()]
    assert chains == [["QLinearConv", "QLinearConv"], ["QLinearConv", "QLinearAdd"]]
    add_chain = list(plan.streams.values())[1]
    assert add_chain.stages[0].node.attrs["kernel"] == [1, 1] and add_chain.stages[1].side is not None
    monkeypatch.setattr(streaming, "add_twin", lambda graph, chain: None)
    alone = compile_model(path, Options()).plan
    assert [[n.op for n in s.nodes] for s in alone.streams.values()] == [["QLinearConv", "QLinearConv", "QLinearAdd"]]
    assert plan.arena_bytes < alone.arena_bytes


@pytest.mark.parametrize("activation", ["int8", "uint8"])
def test_a_blaze_block_writes_its_output_over_its_input_two_rows_behind(tmp_path, activation):
    """The 5x5 depthwise convolution reads its input two rows ahead of the row the block's Add writes: the chain
    holds each output row back two rows (streaming.with_lag) and copies it over the input row it replaces once
    no window reads that row again, so the block's output lies on its input. Exact: test_streamed_chains_are_exact."""
    path = quantize(_stem_pool_block("blaze"), tmp_path / "blaze.onnx", quant_format="QDQ", activation=activation)
    compiled = compile_model(path, Options())
    plan, graph = compiled.plan, compiled.graph
    (stream,) = plan.streams.values()
    assert [n.op for n in stream.nodes] == ["QLinearConv", "QLinearConv", "QLinearAdd"] and stream.lag == 2
    check_schedule(stream)
    block_input = stream.stages[0].main
    assert plan.storage[stream.output].offset == plan.storage[block_input].offset
    _, channels, height, width = graph.tensor(block_input).shape
    assert plan.scratch_bytes[max(plan.streams)] >= 3 * channels * width  # the three rows held back, in the chain's scratch
    assert plan.arena_bytes < 2 * channels * height * width


def test_rows_of_padding_only_stream_exactly(tmp_path):
    """A 1x1 convolution padded below: its last rows read only padding, so the chain's schedule gives
    them views of no input row at all; the C must still give the padding's values."""
    rng = np.random.default_rng(2)

    def weights(*shape):
        return rng.normal(0, 0.4, shape).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w1", "b1"], ["b"], kernel_shape=[1, 1], pads=[0, 0, 2, 0]),
             helper.make_node("Conv", ["b", "w2", "b2"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    model = make_model(nodes, [("x", "float32", [1, 3, 20, 16])], [("y", "float32", [1, 8, 1, 1])],
                       {"w0": weights(16, 3, 3, 3), "b0": weights(16), "w1": weights(16, 16, 1, 1), "b1": weights(16),
                        "w2": weights(8, 16, 3, 3), "b2": weights(8)})
    path = quantize(model, tmp_path / "padded.onnx", quant_format="QDQ", activation="int8")
    plan = compile_model(path, Options()).plan
    assert any(isinstance(call, Run) and call.in_rows == 0 for s in plan.streams.values() for call in s.calls)
    check_exact(path, tmp_path / "exact")
