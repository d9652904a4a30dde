"""Decide where the C function's inputs and outputs sit.

A graph input consumed by QuantizeLinear becomes a quantized C input, and a graph output
produced by DequantizeLinear becomes a quantized C output; the boundary ops go away unless
float I/O is asked for (always, for a .tflite model: its C has the model's own input and output types). By this pass the frontend has already fused the QDQ groups ORT runs as
integer kernels and turned float islands into tables, so a QuantizeLinear or DequantizeLinear
left anywhere else stands at a float computation qcc has no integer form for: it is refused by
name rather than computed as something else.
"""

from __future__ import annotations

from qcc.errors import QccError
from qcc.ir import QUANTIZED_DTYPES, Graph, Node, Tensor
from qcc.numerics.quantize_linear import dequantize_linear
from qcc.ops.quantized import same_quant


def apply(graph: Graph, float_io: bool) -> None:
    # A .tflite model's C takes and returns the types the model declares (float32 too), as TFLM does:
    # its QUANTIZE and DEQUANTIZE at the boundary always stay.
    float_io = float_io or graph.frontend == "tflite"
    output_names = [graph.public_name(name) for name in graph.outputs]  # before inputs take the codes' names
    for node in list(graph.nodes):
        if node.op == "QuantizeLinear":
            source = node.inputs[0]
            if source not in graph.inputs:
                _refuse(graph, node, "its input is computed inside the graph")
            if len(graph.consumers(source)) > 1 or source in graph.outputs:
                _refuse(graph, node, f"graph input '{source}' is also read as float elsewhere")
            if not float_io:
                quantized = node.outputs[0]
                graph.inputs[graph.inputs.index(source)] = quantized
                graph.public_names[quantized] = graph.public_name(source)
                graph.nodes.remove(node)
        elif node.op == "DequantizeLinear":
            result = node.outputs[0]
            if result not in graph.outputs:
                _refuse(graph, node, "its output is used inside the graph")
            if graph.consumers(result):
                _refuse(graph, node, f"graph output '{result}' is also read inside the graph")
            codes = graph.tensor(node.inputs[0])
            if codes.is_const:  # a constant's DequantizeLinear (a weight's) as an output: ORT returns its values
                _constant_output(graph, node, codes, float_io)
            elif not float_io:
                quantized = node.inputs[0]  # (codes that are also an input or output get a copy below)
                if codes.quant is not None and not same_quant(codes.quant, node.attrs["quant"]):
                    # The DequantizeLinear reads the codes with other parameters than they were
                    # written with: the C output is a view of them with the DequantizeLinear's.
                    view = f"{quantized}__read_as_output"
                    graph.tensors[view] = Tensor(view, codes.dtype, codes.shape, None, node.attrs["quant"])
                    graph.nodes[graph.nodes.index(node)] = Node("Reinterpret", view, [quantized], [view],
                                                                attrs={"onnx_op": "Reinterpret"})
                    quantized = view
                else:
                    graph.nodes.remove(node)
                graph.outputs[graph.outputs.index(result)] = quantized  # named below
    _copy_repeated_outputs(graph, output_names)
    for name in graph.inputs + graph.outputs:
        tensor = graph.tensor(name)
        if tensor.dtype in ("int64", "int32") and name in graph.outputs and graph.producer(name) is not None \
                and graph.producer(name).op == "ArgExtreme":
            continue  # ArgMax/ArgMin indices (int32: TFLite's)
        sixteen = tensor.dtype == "int16" and graph.frontend == "tflite"  # 16x8 models (TFLite only, so far)
        if tensor.dtype not in QUANTIZED_DTYPES + ("float32",) and not sixteen:
            raise QccError(f"{graph.source}: graph {'input' if name in graph.inputs else 'output'} "
                           f"'{graph.public_name(name)}' is {tensor.dtype}; qcc supports int8, uint8 and float32 I/O "
                           "(int16 in .tflite models, and int64 or int32 indices from ArgMax/ArgMin)")
        if tensor.dtype == "float32" and not _is_boundary_float(graph, name):
            raise QccError(f"{graph.source}: float tensor '{graph.public_name(name)}' is computed by float ops; "
                           "qcc compiles the quantized part of a model only (QuantizeLinear at the inputs, "
                           "DequantizeLinear at the outputs)")


def _constant_output(graph: Graph, node: Node, codes: Tensor, float_io: bool) -> None:
    """A DequantizeLinear of constant codes at a graph output becomes a constant, copied to the output below:
    the codes read with the node's scale and zero point, or with --float-io their float32 values, computed as
    ORT's DequantizeLinear computes them."""
    quant, result = node.attrs["quant"], node.outputs[0]
    if float_io:
        scale, zero = quant.scalar()
        graph.tensors[result] = Tensor(result, "float32", codes.shape, dequantize_linear(codes.data, scale, zero))
        constant = result
    else:
        k = 1
        while f"{codes.name}__read_as_output_{k}" in graph.tensors:
            k += 1
        constant = f"{codes.name}__read_as_output_{k}"
        graph.tensors[constant] = Tensor(constant, codes.dtype, codes.shape, codes.data, quant)
        graph.outputs[graph.outputs.index(result)] = constant
    graph.nodes.remove(node)


def _copy_repeated_outputs(graph: Graph, output_names: list[str]) -> None:
    """A C output is its own caller buffer: a graph output that is a graph input (a model that only
    quantizes, or only an Identity), a constant, or an output named twice gets a copy of its own."""
    seen = set(graph.inputs)
    for i, name in enumerate(graph.outputs):
        tensor = graph.tensor(name)
        if name in seen or tensor.is_const:
            k = 1
            while f"{name}__copy_{k}" in graph.tensors:
                k += 1
            copy = f"{name}__copy_{k}"
            graph.tensors[copy] = Tensor(copy, tensor.dtype, tensor.shape, None, tensor.quant)
            graph.nodes.append(Node("Reshape", copy, [name], [copy], attrs={"onnx_op": "Identity"}))
            graph.outputs[i] = copy
        if graph.public_name(graph.outputs[i]) != output_names[i]:
            graph.public_names[graph.outputs[i]] = output_names[i]
        seen.add(graph.outputs[i])


def _is_boundary_float(graph: Graph, name: str) -> bool:
    if name in graph.inputs:
        return all(node.op == "QuantizeLinear" for node in graph.consumers(name))
    producer = graph.producer(name)
    if producer is not None and producer.op == "Reshape" and graph.tensor(producer.inputs[0]).is_const:
        return True  # a constant output's copy: what ORT returns for it (a weight's DequantizeLinear, with --float-io)
    return producer is not None and producer.op == "DequantizeLinear"


def _refuse(graph: Graph, node, why: str) -> None:
    raise QccError(
        f"{graph.source}: node '{node.name}' ({node.op}): {why}; no QDQ group ORT fuses and no elementwise float "
        "island accounts for it, so ORT computes there in float, which qcc does not compile: quantize the ops "
        "around it (or cut the model before it with --outputs)"
    )
