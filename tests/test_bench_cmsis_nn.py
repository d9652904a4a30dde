"""benchmarks/bench_cmsis_nn.py without CMSIS-NN's sources: the CMSIS-NN calls it derives from qcc's
compiled graph of a small network (shapes in NHWC, tiles width first, offsets, multipliers, weight
layouts), the C harness it writes around them, and the report's arithmetic. Building CMSIS-NN and
counting it on QEMU is the benchmark's job, not a test's."""

import importlib.util
import re
import sys

import numpy as np
import pytest
from helpers import REPO
from models import quantize
from networks import NetBuilder

from qcc.pipeline import Options, compile_model
from qcc.sample_inputs import random_inputs


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_cmsis_nn", REPO / "benchmarks" / "bench_cmsis_nn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_cmsis_nn = load_benchmark()


def small_network():
    """A 12x10 (not square) input through one layer of each kind CMSIS-NN runs."""
    net = NetBuilder("cmsis_small", [1, 3, 12, 10])
    x = net.conv("input", 8, kernel=(5, 3), stride=2)  # 6x5, pads (2, 1)
    y = net.conv(x, 8, 3, group=8)
    y = net.conv(y, 8, 1, act=None)
    x = net.add(x, y, act="relu")
    x = net.maxpool(x, k=3, stride=2, ceil_mode=1)  # 3x2
    x = net.concat([net.conv(x, 4, 1), net.conv(x, 6, 3)])
    x = net.dense(net.flatten(net.global_pool(x)), 5, act=None)
    return net.build([net.softmax(x)])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = quantize(small_network(), tmp_path_factory.mktemp("cmsis") / "small.onnx", activation="int8",
                    quant_format="QDQ")
    graph = compile_model(path, Options()).graph
    return graph, bench_cmsis_nn.map_layers(graph)


def zero(graph, tensor):
    return graph.tensor(tensor).quant.scalar()[1]


def real_value(mult, shift):
    return np.asarray(mult, np.float64) * 2.0 ** (np.asarray(shift, np.float64) - 31)


def run_function(source: str) -> str:
    return source[source.index(f"int {bench_cmsis_nn.HARNESS}(void)"):source.index("int main(void)")]


def test_each_node_gets_the_cmsis_nn_call_of_its_kind(compiled):
    graph, layers = compiled
    assert [layer.node for layer in layers] == [node.name for node in graph.nodes]
    assert [(layer.op, layer.kind, layer.function) for layer in layers] == [
        ("QLinearConv", "other conv", "arm_convolve_wrapper_s8"),
        ("QLinearConv", "depthwise", "arm_depthwise_conv_wrapper_s8"),
        ("QLinearConv", "conv 1x1", "arm_convolve_wrapper_s8"),
        ("QLinearAdd", "add", "arm_elementwise_add_s8"),
        ("MaxPool", "max pool", "arm_max_pool_s8"),
        ("QLinearConv", "conv 1x1", "arm_convolve_wrapper_s8"),
        ("QLinearConv", "conv 3x3", "arm_convolve_wrapper_s8"),
        ("QLinearConcat", "concat", "arm_concatenation_s8_x"),
        ("QLinearGlobalAveragePool", "average pool", "arm_avgpool_s8"),
        ("Flatten", "free", None),
        ("QGemm", "fully connected", "arm_fully_connected_s8"),
        ("QLinearSoftmax", "softmax", "arm_softmax_s8"),
    ]


def test_convolution_is_nhwc_with_width_first_tiles_and_ohwi_weights(compiled):
    graph, layers = compiled
    conv, node = layers[0], graph.nodes[0]
    p = conv.params
    assert p["input_dims"] == {"n": 1, "h": 12, "w": 10, "c": 3}
    assert p["filter_dims"] == {"n": 8, "h": 5, "w": 3, "c": 3}
    assert p["output_dims"] == {"n": 1, "h": 6, "w": 5, "c": 8}
    assert p["conv_params"]["padding"] == {"w": 1, "h": 2}
    assert p["conv_params"]["stride"] == {"w": 2, "h": 2}
    assert p["conv_params"]["input_offset"] == -zero(graph, node.inputs[0])
    assert p["conv_params"]["output_offset"] == zero(graph, node.outputs[0])
    weights = graph.tensor(node.inputs[1]).data  # OIHW
    _, filt = conv.arrays["filter"]
    assert filt.shape == (8, 5, 3, 3)
    assert filt[7, 4, 1, 2] == weights[7, 2, 4, 1] and np.array_equal(filt, weights.transpose(0, 2, 3, 1))
    assert conv.work == 6 * 5 * 8 * 3 * 5 * 3


def test_depthwise_weights_are_one_row_of_channels(compiled):
    graph, layers = compiled
    dw, node = layers[1], graph.nodes[1]
    assert dw.params["dw_conv_params"]["ch_mult"] == 1
    assert dw.params["filter_dims"] == {"n": 1, "h": 3, "w": 3, "c": 8}
    assert dw.params["dw_conv_params"]["padding"] == {"w": 1, "h": 1}
    weights = graph.tensor(node.inputs[1]).data  # (8, 1, 3, 3)
    _, filt = dw.arrays["filter"]
    assert filt.shape == (1, 3, 3, 8) and filt[0, 2, 0, 5] == weights[5, 0, 2, 0]


def test_multipliers_are_tflm_quantize_multiplier_of_the_real_scales(compiled):
    graph, layers = compiled
    for layer, node in zip(layers, graph.nodes):
        if layer.function not in ("arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8"):
            continue
        _, mult = layer.arrays["mult"]
        _, shift = layer.arrays["shift"]
        real = node.params["requant"].real_scale
        assert mult.size == shift.size == graph.tensor(node.outputs[0]).shape[1]
        assert np.all((mult >= 2**30) & (mult < 2**31))
        assert np.allclose(real_value(mult, shift), real, rtol=1e-9, atol=0)
        requant = node.params["requant"]
        activation = layer.params.get("conv_params", layer.params.get("dw_conv_params"))["activation"]
        assert activation == {"min": requant.zero + requant.lo, "max": requant.zero + requant.hi}


def test_add_takes_tflm_add_parameters(compiled):
    graph, layers = compiled
    add, node = layers[3], graph.nodes[3]
    p, a = add.params, node.attrs
    assert (p["input_1_offset"], p["input_2_offset"], p["out_offset"]) == (-a["a_zero"], -a["b_zero"], a["c_zero"])
    assert p["left_shift"] == 20 and p["block_size"] == 6 * 5 * 8
    twice_max = 2 * max(float(a["a_scale"]), float(a["b_scale"]))
    assert real_value(p["input_1_mult"], p["input_1_shift"]) == pytest.approx(float(a["a_scale"]) / twice_max, rel=1e-9)
    assert real_value(p["input_2_mult"], p["input_2_shift"]) == pytest.approx(float(a["b_scale"]) / twice_max, rel=1e-9)
    assert real_value(p["out_mult"], p["out_shift"]) == pytest.approx(twice_max / (2**20 * float(a["c_scale"])), rel=1e-9)
    assert add.inputs == node.inputs
    # the folded Relu: nothing below the output's zero point
    assert p["out_activation_min"] == max(-128, a["c_zero"]) and p["out_activation_max"] == 127


def test_pools_concat_fully_connected_and_softmax_shapes(compiled):
    graph, layers = compiled
    pool = layers[4].params
    assert pool["output_dims"] == {"n": 1, "h": 3, "w": 2, "c": 8}  # ceil mode
    assert pool["filter_dims"]["h"] == pool["filter_dims"]["w"] == 3 and pool["pool_params"]["stride"] == {"w": 2, "h": 2}
    assert layers[4].work == 6 * 5 * 8  # per input element
    assert layers[7].params["parts"] == [
        {"input_x": 4, "input_y": 6, "input_z": 1, "input_w": 1, "output_x": 10, "offset_x": 0},
        {"input_x": 6, "input_y": 6, "input_z": 1, "input_w": 1, "output_x": 10, "offset_x": 4}]
    gap = layers[8].params
    assert (gap["filter_dims"]["h"], gap["filter_dims"]["w"]) == (3, 2) and gap["output_dims"]["h"] == 1
    fc, fc_node = layers[10], graph.nodes[10]
    assert fc.params["filter_dims"] == {"n": 10, "h": 1, "w": 1, "c": 5}  # n: accumulation depth, c: outputs
    assert fc.arrays["filter"][1].shape == (5, 10)
    assert fc.params["fc_params"]["input_offset"] == -zero(graph, fc_node.inputs[0])
    assert (layers[11].params["num_rows"], layers[11].params["row_size"]) == (1, 5)


def test_softmax_parameters_are_tflm_s():
    # input scale 1/16: beta * s * 2^26 = 2^22 = 2^30 * 2^(23 - 31); radius 31 * 2^26 / 2^23 = 248
    assert bench_cmsis_nn.softmax_parameters(1 / 16) == (2**30, 23, -248)
    mult, shift, diff_min = bench_cmsis_nn.softmax_parameters(0.1)
    assert real_value(mult, shift) == pytest.approx(0.1 * 2**26, rel=1e-9)
    assert diff_min == -int(31 * 2**26 / 2**shift)


def test_harness_marks_every_node_and_chains_the_buffers(compiled):
    graph, layers = compiled
    inputs = random_inputs(graph, 1, seed=0)[0]
    source = bench_cmsis_nn.harness_source(graph, layers, inputs)
    run = run_function(source)
    assert run.count("qcc_bench_layer();") == len(graph.nodes)
    calls = re.findall(r"(arm_\w+)\((.*)\);", run)
    assert [name for name, _ in calls] == [
        "arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8", "arm_convolve_wrapper_s8", "arm_elementwise_add_s8",
        "arm_max_pool_s8", "arm_convolve_wrapper_s8", "arm_convolve_wrapper_s8", "arm_concatenation_s8_x",
        "arm_concatenation_s8_x", "arm_avgpool_s8", "arm_fully_connected_s8", "arm_softmax_s8"]
    buffers = [re.findall(r"\bt\d+\b", args) for _, args in calls]
    conv0_out, dw_in, conv2_out, add_ins = buffers[0][1], buffers[1][0], buffers[2][1], buffers[3][:2]
    assert dw_in == conv0_out and add_ins == [conv0_out, conv2_out]
    assert buffers[10][0] == buffers[9][1]  # the Flatten is free: the FC reads the pool's buffer
    assert buffers[7][1] == buffers[8][1]  # both parts into one concatenated buffer
    # the graph input, NHWC
    first = re.search(r"static const int8_t t0\[360\] __attribute__\(\(aligned\(4\)\)\) = \{\s*([-\d, ]+)", source)
    expected = np.asarray(inputs[0]).transpose(0, 2, 3, 1).reshape(-1)
    values = [int(v) for v in first.group(1).split(",") if v.strip()]
    assert values == expected[:len(values)].tolist() and len(values) >= 8
    scratch = int(re.search(r"static int8_t scratch\[(\d+)\]", source).group(1))
    assert scratch >= 2 * 2 * 48  # arm_convolve_s8's im2col: two columns of 5 * 3 * 3 taps rounded to 48, int16


def test_layers_without_a_kernel_get_a_mark_and_no_call(tmp_path):
    net = NetBuilder("unmapped", [1, 3, 8, 8])
    x = net.conv("input", 4, 3, act="leaky")
    model = net.build([net.resize2x(x)])
    graph = compile_model(quantize(model, tmp_path / "u.onnx", activation="int8", quant_format="QDQ"), Options()).graph
    layers = bench_cmsis_nn.map_layers(graph)
    assert [layer.kind for layer in layers] == ["conv 3x3", bench_cmsis_nn.UNMAPPED, bench_cmsis_nn.UNMAPPED]
    assert [layer.function for layer in layers[1:]] == [None, None]
    source = bench_cmsis_nn.harness_source(graph, layers, random_inputs(graph, 1, seed=0)[0])
    run = run_function(source)
    assert run.count("qcc_bench_layer();") == 3 and run.count("(no call)") == 2 and run.count("arm_") == 1


def test_report_ratios_leave_out_what_cmsis_nn_does_not_run():
    layers = [bench_cmsis_nn.CmsisLayer(0, "a", "QLinearConv", "conv 3x3", "arm_convolve_wrapper_s8", work=1000),
              bench_cmsis_nn.CmsisLayer(1, "b", "QLinearConv", "conv 3x3", "arm_convolve_wrapper_s8", work=3000),
              bench_cmsis_nn.CmsisLayer(2, "c", "Lookup", bench_cmsis_nn.UNMAPPED)]
    qcc = {"per_inference": 9000 + 500 + 10, "layers": [{"instructions": n} for n in (4000, 5000, 500)]}
    row = {"network": "n", "macs": 4000, "layers": layers, "qcc": {"ort": qcc},
           "qcc_whole_layers": {"ort": {"a": 4000, "b": 5000, "c": 500}},
           "cmsis": {"per_inference": 6010, "per_layer": [2000, 4000, 0]}}
    networks = bench_cmsis_nn.network_table([row], ["ort"])
    # qcc: the whole run less the Lookup; 9,010 / 6,010 = 1.50
    assert "| n | 4,000 | 6,010 | 1.50 | 9,010 | 1.50 | 1 layers (Lookup): qcc 500 insn |" in networks
    kinds = bench_cmsis_nn.kind_table([row], ["ort"])
    # per MAC: CMSIS-NN 6,000 / 4,000; qcc 9,000 / 4,000; ratio 1.50, per layer 2.00 and 1.25
    assert "| conv 3x3 | 2 | 4,000 MACs | 1.50 | 2.25 | 1.50 (1.25-2.00) |" in kinds


def test_one_input_channel_and_grouped_convolutions_take_arm_convolve(tmp_path):
    """A convolution of one input channel (a keyword spotter's first layer) is a convolution, not a depthwise
    one; a grouped one takes arm_convolve_s8's groups: its filter has the group's channels."""
    net = NetBuilder("grouped", [1, 1, 10, 8])
    x = net.conv("input", 8, kernel=(4, 3))
    x = net.conv(x, 8, 3, group=2)
    x = net.conv(x, 8, 3, group=8)
    graph = compile_model(quantize(net.build([x]), tmp_path / "g.onnx", activation="int8", quant_format="QDQ"),
                          Options()).graph
    layers = bench_cmsis_nn.map_layers(graph)
    assert [(layer.kind, layer.function) for layer in layers] == [
        ("other conv", "arm_convolve_wrapper_s8"), ("grouped conv", "arm_convolve_wrapper_s8"),
        ("depthwise", "arm_depthwise_conv_wrapper_s8")]
    assert layers[0].params["filter_dims"]["c"] == 1 and layers[1].params["filter_dims"]["c"] == 4
    _, filt = layers[1].arrays["filter"]
    assert filt.shape == (8, 3, 3, 4)
