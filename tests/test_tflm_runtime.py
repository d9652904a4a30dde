"""qcc.runtimes.tflm, the TFLM oracle for .tflite models, and tests/tflite_builder.py, which writes the
test models: models built here run in TFLM and give what numpy computes by hand (data movement ops,
whose results follow from their definition); intermediates and the arena are checked the same way."""

import math

import numpy as np
import pytest
import tflite

from qcc.runtimes import tflm
from tflite_builder import TfliteBuilder

RNG = np.random.default_rng(20261023)


def codes(shape, dtype=np.int8):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


def max_pool_model(shape=(1, 4, 6, 3)):
    n, h, w, c = shape
    b = TfliteBuilder()
    x = b.input("x", shape, "int8", scale=0.05, zero_point=-3)
    y = b.tensor("y", (n, h // 2, w // 2, c), "int8", scale=0.05, zero_point=-3)
    b.op("MAX_POOL_2D", [x], [y], options=dict(padding="VALID", stride_w=2, stride_h=2, filter_width=2,
                                               filter_height=2, fused_activation_function="NONE"))
    b.output(y)
    return b.build()


def max_pool_by_hand(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


# --- TFLM against hand computations ------------------------------------------------------------

def test_max_pool_2x2_stride_2_is_the_max_of_each_window():
    x = codes((1, 4, 6, 3))
    (y,) = tflm.run(max_pool_model(), [x])
    assert y.dtype == np.int8 and y.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(y, max_pool_by_hand(x))


def test_reshape_keeps_the_values():
    b = TfliteBuilder()
    x = b.input("x", (1, 2, 3, 4), "int8", scale=0.1, zero_point=2)
    shape = b.const("shape", np.array([1, 24], np.int32))
    y = b.tensor("y", (1, 24), "int8", scale=0.1, zero_point=2)
    b.op("RESHAPE", [x, shape], [y], options=dict(new_shape=[1, 24]))
    b.output(y)
    x_value = codes((1, 2, 3, 4))
    (y_value,) = tflm.run(b.build(), [x_value])
    np.testing.assert_array_equal(y_value, x_value.reshape(1, 24))


def test_concatenation_with_equal_quantization_copies():
    b = TfliteBuilder()
    x1 = b.input("x1", (1, 2, 2, 3), "int8", scale=0.25, zero_point=-1)
    x2 = b.input("x2", (1, 2, 2, 5), "int8", scale=0.25, zero_point=-1)
    y = b.tensor("y", (1, 2, 2, 8), "int8", scale=0.25, zero_point=-1)
    b.op("CONCATENATION", [x1, x2], [y], options=dict(axis=3, fused_activation_function="NONE"))
    b.output(y)
    a, c = codes((1, 2, 2, 3)), codes((1, 2, 2, 5))
    (y_value,) = tflm.run(b.build(), [a, c])
    np.testing.assert_array_equal(y_value, np.concatenate([a, c], axis=3))


PADDINGS = [[0, 0], [1, 2], [0, 1], [0, 0]]


def pad(b, x, shape, zero_point):
    paddings = b.const("paddings", np.array(PADDINGS, np.int32))
    padded = tuple(d + lo + hi for d, (lo, hi) in zip(shape, PADDINGS))
    y = b.tensor("padded", padded, "int8", scale=0.5, zero_point=zero_point)
    b.op("PAD", [x, paddings], [y])
    return y, padded


def test_pad_fills_with_the_zero_point():
    b = TfliteBuilder()
    x = b.input("x", (1, 2, 3, 2), "int8", scale=0.5, zero_point=-7)
    y, padded = pad(b, x, (1, 2, 3, 2), -7)
    b.output(y)
    x_value = codes((1, 2, 3, 2))
    (y_value,) = tflm.run(b.build(), [x_value])
    assert y_value.shape == padded
    np.testing.assert_array_equal(y_value, np.pad(x_value, PADDINGS, constant_values=-7))


def test_transpose_permutes_the_axes():
    b = TfliteBuilder()
    x = b.input("x", (1, 2, 3, 4), "int8", scale=0.5, zero_point=0)
    perm = b.const("perm", np.array([0, 3, 1, 2], np.int32))
    y = b.tensor("y", (1, 4, 2, 3), "int8", scale=0.5, zero_point=0)
    b.op("TRANSPOSE", [x, perm], [y])
    b.output(y)
    x_value = codes((1, 2, 3, 4))
    (y_value,) = tflm.run(b.build(), [x_value])
    np.testing.assert_array_equal(y_value, x_value.transpose(0, 3, 1, 2))


def single_op(op, x_shape, y_shape, constants=(), options=None, version=1, y_dtype="int8", y_quant=True):
    """x (int8, scale 0.05, zero point -3) -op-> y, with constant inputs after x."""
    b = TfliteBuilder()
    x = b.input("x", x_shape, "int8", scale=0.05, zero_point=-3)
    operands = [x] + [b.const(f"c{i}", c) for i, c in enumerate(constants)]
    quant = dict(scale=0.05, zero_point=-3) if y_quant else {}
    y = b.tensor("y", y_shape, y_dtype, **quant)
    b.op(op, operands, [y], version=version, options=options)
    b.output(y)
    return b.build()


# op, x shape, y shape, constants, options, version, y dtype, y quantized, by hand (x -> y)
BY_HAND = {
    "STRIDED_SLICE": ((1, 5, 6, 3), (1, 3, 3, 2), [np.int32([0, 0, 0, 1]), np.int32([1, 5, 6, 3]), np.int32([1, 2, 2, 1])],
                      dict(begin_mask=0, end_mask=0), 2, "int8", True, lambda x: x[:, ::2, ::2, 1:]),
    "SQUEEZE": ((1, 1, 4, 3), (4, 3), [], dict(squeeze_dims=[0, 1]), 1, "int8", True, lambda x: x[0, 0]),
    "RESIZE_NEAREST_NEIGHBOR": ((1, 2, 3, 2), (1, 4, 6, 2), [np.int32([4, 6])], dict(align_corners=False), 1, "int8", True,
                                lambda x: x.repeat(2, axis=1).repeat(2, axis=2)),
    "ARG_MAX": ((2, 7), (2,), [np.int32([1])], dict(output_type="INT32"), 2, "int32", False,
                lambda x: x.argmax(axis=1).astype(np.int32)),
    "RELU": ((2, 9), (2, 9), [], None, 2, "int8", True, lambda x: np.maximum(x, -3)),
    "DEQUANTIZE": ((2, 9), (2, 9), [], None, 2, "float32", False,
                   lambda x: np.float32(0.05) * (x.astype(np.float32) + 3)),
}


@pytest.mark.parametrize("op", BY_HAND)
def test_more_ops_by_hand(op):
    """Each exercises options the builder writes (strides, squeeze_dims, output_type...)."""
    x_shape, y_shape, constants, options, version, y_dtype, y_quant, by_hand = BY_HAND[op]
    model = single_op(op, x_shape, y_shape, constants, options, version, y_dtype, y_quant)
    x = codes(x_shape)
    (y,) = tflm.run(model, [x])
    expected = by_hand(x)
    assert y.dtype == expected.dtype and y.shape == tuple(y_shape)
    np.testing.assert_array_equal(y, expected)


def test_split_gives_equal_parts():
    b = TfliteBuilder()
    axis = b.const("axis", np.array(3, np.int32))
    x = b.input("x", (1, 2, 2, 6), "int8", scale=0.5, zero_point=0)
    parts = [b.tensor(f"part{i}", (1, 2, 2, 2), "int8", scale=0.5, zero_point=0) for i in range(3)]
    b.op("SPLIT", [axis, x], parts, version=2, options=dict(num_splits=3))
    b.output(*parts)
    x_value = codes((1, 2, 2, 6))
    for got, expected in zip(tflm.run(b.build(), [x_value]), np.split(x_value, 3, axis=3), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_run_many_equals_repeated_run():
    model = max_pool_model()
    cases = [[codes((1, 4, 6, 3))] for _ in range(4)]
    many = tflm.run_many(model, cases)
    assert len(many) == 4
    for (x,), outputs in zip(cases, many):
        (single,) = tflm.run(model, [x])
        np.testing.assert_array_equal(outputs[0], single)
        np.testing.assert_array_equal(outputs[0], max_pool_by_hand(x))


def test_an_input_of_another_dtype_or_shape_is_refused_before_tflm():
    with pytest.raises(ValueError, match="int8, uint8 was given"):
        tflm.run(max_pool_model(), [np.zeros((1, 4, 6, 3), np.uint8)])
    with pytest.raises(ValueError, match="has shape"):
        tflm.run(max_pool_model(), [np.zeros((1, 4, 6), np.int8)])


def test_tflm_errors_carry_tflm_s_own_message():
    b = TfliteBuilder()
    x = b.input("x", (1, 4), "int8", scale=0.5, zero_point=0)
    y = b.tensor("y", (1, 4), "int8", scale=0.5, zero_point=0)
    b.op("CUSTOM", [x], [y], custom_code="NoSuchOp")
    b.output(y)
    with pytest.raises(tflm.TflmError, match="Failed to get registration from op code CUSTOM"):
        tflm.run(b.build(), [np.zeros((1, 4), np.int8)])


def pad_then_pool_model():
    """x (1, 2, 3, 2) -PAD-> (1, 5, 4, 2) -MAX_POOL 2x2/2-> (1, 2, 2, 2)."""
    b = TfliteBuilder()
    x = b.input("x", (1, 2, 3, 2), "int8", scale=0.5, zero_point=4)
    padded, shape = pad(b, x, (1, 2, 3, 2), 4)
    y = b.tensor("y", (1, 2, 2, 2), "int8", scale=0.5, zero_point=4)
    b.op("MAX_POOL_2D", [padded], [y], options=dict(padding="VALID", stride_w=2, stride_h=2,
                                                    filter_width=2, filter_height=2))
    b.output(y)
    return b.build(), padded, y


def test_run_with_intermediates_gives_the_intermediate_tensor():
    model, padded, y = pad_then_pool_model()
    x = codes((1, 2, 3, 2))
    values = tflm.run_with_intermediates(model, [x], [padded, y])
    by_hand = np.pad(x, PADDINGS, constant_values=4)
    np.testing.assert_array_equal(values[padded], by_hand)
    np.testing.assert_array_equal(values[y], max_pool_by_hand(by_hand[:, :4]))  # VALID drops the last row
    # the same value as an extra output of the model
    outputs = tflm.run(tflm.with_extra_outputs(model, [padded]), [x])
    assert len(outputs) == 2
    np.testing.assert_array_equal(outputs[1], by_hand)


def test_intermediates_refuse_tensors_tflm_gives_no_memory():
    """GetTensor() reads whatever its pointer holds: out of range, or for a tensor no op uses."""
    b = TfliteBuilder()
    x = b.input("x", (1, 4), "int8", scale=0.5, zero_point=0)
    y = b.tensor("y", (1, 4), "int8", scale=0.5, zero_point=0)
    unused = b.tensor("unused", (1, 4), "int8", scale=0.5, zero_point=0)
    b.op("RELU", [x], [y])
    b.output(y)
    model, x_value = b.build(), np.array([[-2, -1, 0, 3]], np.int8)
    assert tflm.run_with_intermediates(model, [x_value], [y])[y].tolist() == [[0, 0, 0, 3]]
    with pytest.raises(IndexError):
        tflm.run_with_intermediates(model, [x_value], [3])
    with pytest.raises(ValueError, match="no operator's operand"):
        tflm.run_with_intermediates(model, [x_value], [unused])


# --- the arena ---------------------------------------------------------------------------------

def test_arena_head_holds_the_largest_live_tensors():
    """x (1,16,16,4) -PAD-> (1,19,17,4) -MAX_POOL-> (1,9,8,4) -RESHAPE-> (1,288): the most bytes alive
    at one op are PAD's input and output."""
    b = TfliteBuilder()
    x = b.input("x", (1, 16, 16, 4), "int8", scale=0.5, zero_point=0)
    padded, padded_shape = pad(b, x, (1, 16, 16, 4), 0)
    pooled_shape = (1, padded_shape[1] // 2, padded_shape[2] // 2, 4)
    pooled = b.tensor("pooled", pooled_shape, "int8", scale=0.5, zero_point=0)
    b.op("MAX_POOL_2D", [padded], [pooled], options=dict(padding="VALID", stride_w=2, stride_h=2,
                                                         filter_width=2, filter_height=2))
    flat = b.tensor("flat", (1, math.prod(pooled_shape)), "int8", scale=0.5, zero_point=0)
    b.op("RESHAPE", [pooled, b.const("shape", np.array([1, -1], np.int32))], [flat])
    b.output(flat)
    sizes = [math.prod(s) for s in ((1, 16, 16, 4), padded_shape, pooled_shape, (1, math.prod(pooled_shape)))]
    live_per_op = [sizes[0] + sizes[1], sizes[1] + sizes[2], sizes[2] + sizes[3]]

    usage = tflm.arena(b.build())
    assert isinstance(usage.head, int) and usage.head > 0
    assert usage.head >= max(live_per_op) == 1024 + 1292
    assert usage.head <= sum(-(-s // 16) * 16 for s in sizes)  # never more than all tensors side by side
    assert usage.tail > 0 and usage.total == usage.head + usage.tail
    nodes = usage.category("NodeAndRegistration struct")
    assert nodes is not None and nodes.count == 3


def test_arena_parses_tflm_s_lines():
    printed = ("[RecordingMicroAllocator] Arena allocation total 300 bytes\n"
               "[RecordingMicroAllocator] Arena allocation head 100 bytes\n"
               "[RecordingMicroAllocator] Arena allocation tail 200 bytes\n"
               "[RecordingMicroAllocator] 'Persistent buffer data' used 56 bytes with alignment overhead "
               "(requested 52 bytes for 3 allocations)\n")
    usage = tflm._parse_allocations(printed)
    assert (usage.total, usage.head, usage.tail) == (300, 100, 200)
    assert usage.categories == (tflm.TflmArenaCategory("Persistent buffer data", 56, 52, 3, "allocations"),)
    with pytest.raises(tflm.TflmError):
        tflm._parse_allocations(printed.replace("total 300", "total 301"))


# --- the version -------------------------------------------------------------------------------

def test_the_installed_tflm_is_the_pinned_one(monkeypatch):
    assert tflm.TFLM_VERSION == tflm.PINNED_TFLM_VERSION == "0.dev20261023182759"
    tflm.check_version()
    monkeypatch.setattr(tflm, "TFLM_VERSION", "0.dev20250101000000")
    with pytest.raises(RuntimeError, match="0.dev20250101000000.*0.dev20261023182759"):
        tflm.check_version()


# --- the builder's file ------------------------------------------------------------------------

def test_the_builder_writes_what_the_converter_writes():
    b = TfliteBuilder(description="a test")
    x = b.input("x", (1, 4, 4, 2), "int8", scale=0.5, zero_point=-3)
    w = b.const("w", codes((3, 1, 1, 2)), scale=[0.1, 0.2, 0.3], zero_point=0, quantized_dimension=0)
    bias = b.const("bias", np.array([1, -2, 3], np.int32), scale=[0.05, 0.1, 0.15])
    y = b.tensor("y", (1, 4, 4, 3), "int8", scale=0.25, zero_point=1)
    b.op("CONV_2D", [x, w, bias], [y], version=3, options=dict(padding="SAME", stride_w=1, stride_h=2,
                                                               fused_activation_function="RELU6"))
    z = b.tensor("z", (4, 4, 3), "int8", scale=0.25, zero_point=1)
    b.op("SQUEEZE", [y], [z], options=dict(squeeze_dims=[0]))
    b.op("CUMSUM", [z], [z])  # code 128: above the deprecated field's range
    b.output(z)
    data = b.build()

    assert data[4:8] == b"TFL3" and tflite.Model.ModelBufferHasIdentifier(data, 0)
    model = tflite.Model.GetRootAs(data, 0)
    assert model.Version() == 3 and model.Description() == b"a test" and model.SubgraphsLength() == 1
    assert model.Buffers(0).DataLength() == 0
    codes_written = [(model.OperatorCodes(i).DeprecatedBuiltinCode(), model.OperatorCodes(i).BuiltinCode(),
                      model.OperatorCodes(i).Version()) for i in range(model.OperatorCodesLength())]
    assert codes_written == [(3, 3, 3), (43, 43, 1), (127, 128, 1)]
    graph = model.Subgraphs(0)
    assert list(graph.InputsAsNumpy()) == [x] and list(graph.OutputsAsNumpy()) == [z]
    assert graph.Tensors(x).Name() == b"x" and list(graph.Tensors(y).ShapeAsNumpy()) == [1, 4, 4, 3]
    assert graph.Tensors(x).Type() == tflite.TensorType.INT8 and graph.Tensors(bias).Type() == tflite.TensorType.INT32
    q = graph.Tensors(w).Quantization()
    np.testing.assert_array_equal(q.ScaleAsNumpy(), np.float32([0.1, 0.2, 0.3]))
    assert list(q.ZeroPointAsNumpy()) == [0, 0, 0] and q.QuantizedDimension() == 0
    assert graph.Tensors(x).Quantization().ZeroPoint(0) == -3
    bias_buffer = model.Buffers(graph.Tensors(bias).Buffer())
    assert bias_buffer.DataAsNumpy().tobytes() == np.array([1, -2, 3], "<i4").tobytes()
    assert bias_buffer._tab.Vector(bias_buffer._tab.Offset(4)) % 16 == 0  # the constant's bytes start 16-byte aligned in the file

    conv = graph.Operators(0)
    assert conv.BuiltinOptionsType() == tflite.BuiltinOptions.Conv2DOptions
    options = tflite.Conv2DOptions()
    options.Init(conv.BuiltinOptions().Bytes, conv.BuiltinOptions().Pos)
    assert (options.Padding(), options.StrideW(), options.StrideH(), options.FusedActivationFunction()) == (
        tflite.Padding.SAME, 1, 2, tflite.ActivationFunctionType.RELU6)
    squeeze = graph.Operators(1)
    options = tflite.SqueezeOptions()
    options.Init(squeeze.BuiltinOptions().Bytes, squeeze.BuiltinOptions().Pos)
    assert list(options.SqueezeDimsAsNumpy()) == [0]


def test_the_builder_writes_hostile_values_as_given():
    b = TfliteBuilder(description='a "quoted" */ name\\\n')
    x = b.input('x "*/\\\n', (1, -4, 2**31 - 1), "int8", scale=[float("nan"), 0.0, -1.0], zero_point=[1, 2, 3])
    w = b.tensor("w", (16, 3, 3, 3), "int8", data=b"\x01\x02", omit_quantization=True)
    stray = b.tensor("stray", (1,), 99, buffer=12345)
    y = b.tensor("y", (1,), "int8", quantization=dict(scale=[1.0, 2.0], zero_point=[0], quantized_dimension=7))
    b.op(250, [x, 1000, -1], [y], version=99)
    b.op("ADD", [w], [stray], options_type="Conv2DOptions", options=dict(padding=9))
    b.output(y, 77)
    model = tflite.Model.GetRootAs(b.build(subgraph_count=2), 0)
    assert model.SubgraphsLength() == 2
    graph = model.Subgraphs(0)
    assert graph.Tensors(x).Name() == b'x "*/\\\n' and list(graph.Tensors(x).ShapeAsNumpy()) == [1, -4, 2**31 - 1]
    scales = graph.Tensors(x).Quantization().ScaleAsNumpy()
    assert np.isnan(scales[0]) and list(scales[1:]) == [0.0, -1.0]
    assert graph.Tensors(w).Quantization() is None and model.Buffers(graph.Tensors(w).Buffer()).DataLength() == 2
    assert graph.Tensors(stray).Buffer() == 12345 and graph.Tensors(stray).Type() == 99
    assert graph.Tensors(y).Quantization().QuantizedDimension() == 7
    assert list(graph.Operators(0).InputsAsNumpy()) == [x, 1000, -1] and list(graph.OutputsAsNumpy()) == [y, 77]
    code = model.OperatorCodes(graph.Operators(0).OpcodeIndex())
    assert (code.DeprecatedBuiltinCode(), code.BuiltinCode(), code.Version()) == (127, 250, 99)
    assert graph.Operators(1).BuiltinOptionsType() == tflite.BuiltinOptions.Conv2DOptions
    assert tflite.Model.GetRootAs(b.build(subgraph_count=0), 0).SubgraphsLength() == 0
