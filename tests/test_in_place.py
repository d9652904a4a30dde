"""In-place execution (qcc/passes/in_place.py, qcc/passes/memory_plan.py): the proof and its checks.

1. The access orders the plan trusts are checked against the C kernels' loops, transcribed here
   literally and run element by element on small geometries.
2. On every network, every pair of tensors that the plan lets share bytes while alive is an input
   and the output of one step recorded as in place, at an offset the proof accepts.
3. The C built from the in-place plan equals the reference interpreter (which never overlaps
   anything) and ORT: tests/test_networks.py does so for every network in every variant; here the
   networks are checked to actually run in place, and an overlap one row beyond the proven offset
   is shown to change the output, so those comparisons can fail.
"""

import numpy as np
import onnx
import pytest
from conv_kernels import kernel_calls
from onnx import helper

from helpers import check_exact, make_model
from models import quantize
from networks import NETWORKS
from qcc import reference
from qcc.access_order import Window2d
from qcc.backend.writer import write_output
from qcc.ir import Storage
from qcc.passes import memory_plan
from qcc.passes.in_place import is_safe, largest_safe_offset
from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import random_inputs
from qcc.toolchain.build import make, run_runner


# 1. Loop transcriptions: (last read time per input element, write time per output element).

def _replay(w: Window2d, steps):
    """(last read time per input element, write time per output element), flattened, from the kernel's
    steps in order: each step gives the input indices it reads, then the output indices it writes."""
    reads = np.full((w.batch, w.in_c, w.in_h, w.in_w), -1, dtype=np.int64)
    writes = np.full((w.batch, w.out_c, w.out_h, w.out_w), -1, dtype=np.int64)
    for t, (read, written) in enumerate(steps):
        for index in read:
            reads[index] = t
        writes[written] = t
    return reads.reshape(-1), writes.reshape(-1)


def _inside_taps(w: Window2d, oh: int, ow: int):
    """The input positions (ih, iw) that output (oh, ow)'s window reads, padding left out."""
    for kh in range(w.kernel[0]):
        for kw in range(w.kernel[1]):
            ih = oh * w.stride[0] - w.pads[0] + kh * w.dilation[0]
            iw = ow * w.stride[1] - w.pads[1] + kw * w.dilation[1]
            if 0 <= ih < w.in_h and 0 <= iw < w.in_w:
                yield ih, iw


def gemm_loops(w: Window2d, groups: int = 1):
    """qcc_conv_gemm with a chunk of one pixel: the column of (oh, ow) from every inside tap, then its channels;
    a grouped layer calls it once per group, on the group's input and output channels."""
    ins, outs = w.in_c // groups, w.out_c // groups
    return _replay(w, (([(n, slice(g * ins, (g + 1) * ins), ih, iw) for ih, iw in _inside_taps(w, oh, ow)],
                        (n, slice(g * outs, (g + 1) * outs), oh, ow))
                       for g in range(groups) for n in range(w.batch) for oh in range(w.out_h) for ow in range(w.out_w)))


def depthwise_loops(w: Window2d):
    """qcc_conv_depthwise_3x3: next_row copies input rows into the ring up to ih0 + 2."""
    def steps():
        for n in range(w.batch):
            for c in range(w.out_c):
                next_row = -w.pads[0]
                for oh in range(w.out_h):
                    ih0 = oh * w.stride[0] - w.pads[0]
                    loaded = [(n, c, r) for r in range(next_row, ih0 + 3) if 0 <= r < w.in_h]
                    next_row = max(next_row, ih0 + 3)
                    yield loaded, (n, c, oh)
    return _replay(w, steps())


def depthwise_plane_loops(w: Window2d):
    """qcc_conv_depthwise_3x3 holding a whole plane: each channel's rows that the outputs read, copied before
    its first output row."""
    def steps():
        for n in range(w.batch):
            for c in range(w.out_c):
                last = (w.out_h - 1) * w.stride[0] - w.pads[0] + 2  # the last input row a window reaches
                yield [(n, c, r) for r in range(0, min(last + 1, w.in_h))], (n, c, 0)
                for oh in range(1, w.out_h):
                    yield [], (n, c, oh)
    return _replay(w, steps())


def direct_conv_loops(w: Window2d, groups: int):
    """qcc_conv_depthwise: per output channel and row, every tap of its group's input channels (one, for a
    depthwise layer) over the row."""
    in_per_group, out_per_group = w.in_c // groups, w.out_c // groups

    def row_reads(n, oc, oh):
        g = oc // out_per_group
        for ic in range(g * in_per_group, (g + 1) * in_per_group):
            for kh in range(w.kernel[0]):
                ih = oh * w.stride[0] - w.pads[0] + kh * w.dilation[0]
                for kw in range(w.kernel[1]):
                    for ow in range(w.out_w):
                        iw = ow * w.stride[1] - w.pads[1] + kw * w.dilation[1]
                        if 0 <= ih < w.in_h and 0 <= iw < w.in_w:
                            yield n, ic, ih, iw
    return _replay(w, ((list(row_reads(n, oc, oh)), (n, oc, oh)) for n in range(w.batch) for oc in range(w.out_c)
                       for oh in range(w.out_h)))


def maxpool_loops(w: Window2d):
    """qcc_maxpool: per plane, per output pixel, its window's inside taps."""
    return _replay(w, (([(n, c, ih, iw) for ih, iw in _inside_taps(w, oh, ow)], (n, c, oh, ow))
                       for n in range(w.batch) for c in range(w.in_c) for oh in range(w.out_h) for ow in range(w.out_w)))


def _window(batch, in_c, out_c, in_hw, kernel, stride, pad, dilation):
    out = [(in_hw[i] + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1 for i in range(2)]
    return Window2d(batch, in_c, *in_hw, out_c, *out, (kernel, kernel), (stride, stride), (pad, pad), (dilation, dilation))


GEOMETRIES = [  # batch, in_c, out_c, (h, w), kernel, stride, pad, dilation
    (1, 3, 5, (7, 6), 1, 1, 0, 1), (1, 4, 2, (6, 9), 1, 2, 0, 1), (2, 3, 4, (8, 7), 3, 1, 1, 1),
    (1, 2, 3, (9, 8), 3, 2, 1, 1), (1, 3, 3, (9, 9), 5, 1, 2, 1), (1, 2, 2, (10, 8), 3, 1, 2, 2),
    (1, 4, 4, (7, 10), 3, 2, 0, 1),
]


@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_pixel_major_order_is_qcc_conv_gemms(geometry, groups):
    batch, in_c, out_c, *rest = geometry
    w = _window(batch, in_c * groups, out_c * groups, *rest)
    reads, writes = gemm_loops(w, groups)
    order = w.pixel_major(groups)
    assert np.array_equal(order.reads[0], reads) and np.array_equal(order.writes, writes)


@pytest.mark.parametrize("holding", ["ring", "plane"])
@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[4] == 3 and g[7] == 1])
def test_depthwise_ring_order_is_the_depthwise_kernels(geometry, holding):
    """The plan trusts the ring's order for both ways of holding rows: it is the ring's loop, and a whole
    plane reads each row no later."""
    batch, channels, _, hw, kernel, stride, pad, dilation = geometry
    w = _window(batch, channels, channels, hw, kernel, stride, pad, dilation)
    reads, writes = (depthwise_loops if holding == "ring" else depthwise_plane_loops)(w)
    order = w.depthwise_ring()
    assert np.array_equal(order.writes, writes)
    assert np.array_equal(order.reads[0] >= 0, reads >= 0) and np.all(order.reads[0] >= reads)
    assert holding == "plane" or np.array_equal(order.reads[0], reads)


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_plane_row_order_covers_the_depthwise_kernels_reads(geometry, multiplier):
    batch, channels, _, *rest = geometry
    w = _window(batch, channels, channels * multiplier, *rest)
    reads, writes = direct_conv_loops(w, channels)
    order = w.plane_row_major(channels)
    assert np.array_equal(order.writes, writes)
    # whole rows are taken as read (a column that no output reads is harmless to keep): never earlier
    assert np.all(order.reads[0] >= reads) and np.array_equal(order.reads[0] >= 0, order.reads[0] >= reads.clip(0))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_plane_pixel_order_is_qcc_maxpools(geometry):
    batch, channels, _, *rest = geometry
    w = _window(batch, channels, channels, *rest)
    reads, writes = maxpool_loops(w)
    order = w.plane_pixel_major()
    assert np.array_equal(order.reads[0], reads) and np.array_equal(order.writes, writes)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_the_offset_is_safe_and_for_pooling_the_largest(geometry):
    """Checked against the transcribed loops: the chosen offset is safe; for pooling, whose reads grow
    with the address, the next aligned offset is not (the bound is tight)."""
    reads, writes = gemm_loops(_window(*geometry))
    delta = largest_safe_offset(reads, writes, 4)
    assert delta is None or is_safe(reads, writes, delta)
    batch, channels, _, *rest = geometry
    reads, writes = maxpool_loops(_window(batch, channels, channels, *rest))
    delta = largest_safe_offset(reads, writes, 4)
    assert delta is not None and is_safe(reads, writes, delta)
    assert delta == 0 or not is_safe(reads, writes, delta + 4)


# 2. The plan on every network.

@pytest.fixture(scope="module")
def network_plans(tmp_path_factory):
    plans = {}
    for name, build in NETWORKS.items():
        path = quantize(build(), tmp_path_factory.mktemp(name) / f"{name}.onnx", quant_format="QDQ", activation="int8")
        plans[name] = compile_model(path, Options())
    return plans


def _arena_buffers(compiled):
    """Each arena buffer once, as its largest tensor: (tensor, offset, bytes, first step, last step).
    A buffer is the tensors with one plan.root: aliases at one offset, and a concat's output with its
    inputs as slices, which must lie inside it and apart from each other."""
    graph, plan = compiled.graph, compiled.plan
    first, last = {}, {}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            first.setdefault(t, step)
        for t in node.inputs:
            last[t] = step
    members = {}
    for t, storage in plan.storage.items():
        if storage is not None and storage.kind == "arena" and t in first:
            members.setdefault(plan.root[t], []).append(t)
    buffers = []
    for tensors in members.values():
        whole = max(tensors, key=lambda t: graph.tensor(t).nbytes)
        begin, size = plan.storage[whole].offset, graph.tensor(whole).nbytes
        slices = sorted({(plan.storage[t].offset, graph.tensor(t).nbytes) for t in tensors} - {(begin, size)})
        assert all(begin <= off and off + n <= begin + size for off, n in slices)
        assert all(a + n <= b for (a, n), (b, _) in zip(slices, slices[1:]))
        buffers.append((whole, begin, size, min(first[t] for t in tensors),
                        max(last.get(t, first[t]) for t in tensors)))
    return buffers


@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_overlap_of_live_tensors_is_a_proven_in_place_step(network_plans, network):
    compiled = network_plans[network]
    graph, plan = compiled.graph, compiled.plan
    buffers = _arena_buffers(compiled)
    for i, (a, a_off, a_size, a_first, a_last) in enumerate(buffers):
        for b, b_off, b_size, b_first, b_last in buffers[i + 1:]:
            alive_together = a_first <= b_last and b_first <= a_last
            share = a_off < b_off + b_size and b_off < a_off + a_size
            if not (alive_together and share):
                continue
            (x, x_off, x_last), (y, y_off, y_first) = ((a, a_off, a_last), (b, b_off, b_first)) if a_first < b_first else \
                ((b, b_off, b_last), (a, a_off, a_first))
            step = x_last
            node = graph.nodes[step]
            reads = [i for i, t in enumerate(node.inputs) if plan.same_storage(t, x)]
            assert y_first == step and plan.same_storage(node.outputs[0], y) and reads, (network, x, y)
            if step in plan.streams:  # a streamed chain's output over its input or an Add's second input
                assert plan.steps[step].mode == "streamed"
                order = plan.streams[step].access_order(graph)
                source = order.reads[next(t for t in order.reads if plan.same_storage(t, x))]
            else:
                assert plan.steps[step].mode == "in place"
                order = memory_plan.op_named(node.op).access_order(node, graph)
                source = order.reads[reads[0]]
            assert is_safe(source, order.writes, y_off - x_off), (network, node.name)


EXPECTED_IN_PLACE = {"ds_cnn", "mobilenet_v1", "mobilenet_v2", "squeezenet11", "detector_head"}


@pytest.mark.parametrize("network", sorted(EXPECTED_IN_PLACE))
def test_networks_run_in_place_below_the_liveness_bound(network_plans, network):
    plan = network_plans[network].plan
    assert any(s.mode == "in place" for s in plan.steps.values())
    assert plan.arena_bytes < plan.liveness_bytes


# 3. A real overlap beyond the proof breaks the C.

def _depthwise_chain_model():
    """A depthwise convolution between two table lookups (Sigmoid): no chain to stream, so it runs in place."""
    rng = np.random.default_rng(3)
    c = 8
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w1", "b1"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
             helper.make_node("Sigmoid", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "w2", "b2"], ["y"], kernel_shape=[1, 1])]
    inits = {"w0": rng.normal(0, 0.5, (c, 3, 1, 1)).astype(np.float32), "b0": rng.normal(0, 0.1, c).astype(np.float32),
             "w1": rng.normal(0, 0.5, (c, 1, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.1, c).astype(np.float32),
             "w2": rng.normal(0, 0.5, (4, c, 1, 1)).astype(np.float32), "b2": rng.normal(0, 0.1, 4).astype(np.float32)}
    return make_model(nodes, [("x", "float32", [1, 3, 12, 10])], [("y", "float32", [1, 4, 12, 10])], inits)


def test_depthwise_in_place_is_exact_and_one_row_further_is_not(tmp_path):
    path = quantize(_depthwise_chain_model(), tmp_path / "dw.onnx", quant_format="QDQ", activation="int8")
    check_exact(path, tmp_path / "exact")  # the in-place plan, C against ORT
    compiled = compile_model(path, Options())
    graph, plan = compiled.graph, compiled.plan
    step = next(i for i, n in enumerate(graph.nodes) if n.op == "QLinearConv" and n.attrs["groups"] > 1)
    node = graph.nodes[step]
    assert plan.steps[step].mode == "in place"
    x, y = node.inputs[0], node.outputs[0]
    assert plan.storage[y].offset - plan.storage[x].offset == 0  # the ring holds the rows still needed

    # Move the output one row (10 bytes) past its proven place: its first row then overwrites input
    # row 1 of channel 0, which output row 1 still has to read.
    moved = dict(plan.storage)
    moved[y] = Storage("arena", offset=plan.storage[x].offset + 12)
    compiled.plan = memory_plan.MemoryPlan(moved, plan.arena_bytes + 12, plan.root, plan.scratch, plan.scratch_bytes,
                                           plan.liveness_bytes, plan.steps)
    assert all(s.offset + compiled.graph.tensor(t).nbytes <= compiled.plan.arena_bytes
               for t, s in moved.items() if s is not None and s.kind == "arena")
    cases = random_inputs(graph, 2, seed=1)
    out_dir = tmp_path / "moved"
    out_dir.mkdir()
    manifest = write_output(compiled, out_dir, cases)
    make(out_dir, "runner")
    expected = [reference.run(graph, case)[0] for case in cases]
    got = [run_runner(out_dir, manifest, case)[0] for case in cases]
    assert not all(np.array_equal(e, g) for e, g in zip(expected, got))


def test_a_grouped_convolution_runs_in_place_group_by_group_and_is_exact(tmp_path):
    """The depthwise model with its middle layer made a 2-group convolution (4 channels per group): a call per
    group, each writing its output channels over input bytes that only its own group had still to read."""
    model = _depthwise_chain_model()
    grouped = next(n for n in model.graph.node if n.op_type == "Conv" and any(a.name == "group" for a in n.attribute))
    next(a for a in grouped.attribute if a.name == "group").i = 2
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    w1.CopyFrom(helper.make_tensor("w1", onnx.TensorProto.FLOAT, [8, 4, 3, 3],
                                   np.random.default_rng(4).normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32).ravel()))
    path = quantize(model, tmp_path / "grouped.onnx", quant_format="QDQ", activation="int8")
    check_exact(path, tmp_path / "exact")  # the in-place plan, C against ORT
    compiled = compile_model(path, Options())
    step = next(i for i, n in enumerate(compiled.graph.nodes) if n.op == "QLinearConv" and n.attrs["groups"] == 2)
    node = compiled.graph.nodes[step]
    assert compiled.plan.steps[step].mode == "in place"
    x, y = node.inputs[0], node.outputs[0]
    # the output starts within the input's first group: group 1 still reads bytes past it
    assert 0 <= compiled.plan.storage[x].offset - compiled.plan.storage[y].offset < compiled.graph.tensor(x).nbytes // 2
    assert kernel_calls(tmp_path / "exact" / "out").count("qcc_conv_gemm_s8") >= 2


def _shared_concat_input_model():
    """m = MaxPool(x); a = Concat(Conv(m), m); b = Concat(a, m); out = Conv(Concat(b, a)): `a` is read by two
    concats, each requantizing it to its own scale. The plan makes `a` (and `b`) slices of the last concat's
    output, so that concat rewrites them in place; `b` must copy `a` into its own slice. (Found by the fuzzer:
    the copy was emitted as a rewrite in place of `a`, because `a` and `b` share the last concat's buffer.)"""
    from qdq_builder import QdqGraph

    g = QdqGraph(13, seed=7)
    x = g.qdq(g.input("input", [1, 3, 10, 10]), 0.02, 128)
    m = g.qdq(g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2]), 0.02, 128)
    conv = g.node("Conv", [m, g.weights((6, 3, 1, 1), 0.02), g.int32_bias((6,), np.float32(0.02 * 0.02))])
    c = g.qdq(conv, 0.05, 128)
    a = g.qdq(g.node("Concat", [c, m], axis=1), 0.06, 120)
    b = g.qdq(g.node("Concat", [a, m], axis=1), 0.07, 110)
    d = g.qdq(g.node("Concat", [b, a], axis=1), 0.08, 100)
    out = g.node("Conv", [d, g.weights((4, 21, 1, 1), 0.02), g.int32_bias((4,), np.float32(0.08 * 0.02))])
    g.output(g.qdq(out, 0.1, 128), "y")
    return g.model()


def test_an_input_of_two_concats_is_copied_into_the_slice_of_the_one_it_does_not_live_in(tmp_path):
    compiled = check_exact(_shared_concat_input_model(), tmp_path, n_random=3)
    plan, graph = compiled.plan, compiled.graph
    concats = [(step, node) for step, node in enumerate(graph.nodes) if node.op == "QLinearConcat"]
    (_, first), (_, second), (last_step, last) = concats
    # the last concat's inputs were written into its slices: in place, requantized there
    assert plan.steps[last_step].mode == "in place"
    assert all(plan.root[t] == plan.root[last.outputs[0]] for t in last.inputs)
    # the second reads the first's output, which lives in the last concat's buffer but not in its own slice
    a = first.outputs[0]
    assert a in second.inputs and plan.root[a] == plan.root[second.outputs[0]]
    assert plan.storage[a].offset != plan.storage[second.outputs[0]].offset


def test_the_placement_puts_first_the_buffers_that_the_greedy_order_left_on_top():
    """Greedy by size places the widest block (an in-place pair: b1 then b2 over it, 4 bytes lower) at 0, and the two
    buffers alive beside b1 (i at step 2, s at steps 3-4) then only fit above it: 24 bytes where no step uses more
    than 20. Placing those two first lets the block go above them: 20 bytes."""
    from qcc.passes.memory_plan import _arrange, _improved, _most_in_use, _Piece

    block = [_Piece("b1", 4, 12, 2, 4), _Piece("b2", 0, 8, 5, 7)]
    clusters = [block, [_Piece("i", 0, 8, 0, 2)], [_Piece("s", 0, 8, 3, 4)]]
    greedy = _arrange(clusters, [])
    assert max(p.rel + p.size for p in greedy) == 24 and _most_in_use(greedy) == 20
    improved = _improved(clusters)
    assert max(p.rel + p.size for p in improved) == 20
    for a in improved:  # still a placement: no two pieces alive together share a byte
        assert not any(b is not a and a.overlaps(b) for b in improved)
