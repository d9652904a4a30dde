"""Read a model's channels-last input image in place instead of transposing it first.

tf2onnx writes a TensorFlow model's NHWC input as a Transpose (perm 0, 3, 1, 2) into the channels-first
layout that ONNX's convolutions take. Run as written, the Transpose copies the whole image into the
arena before the first layer. Its readers can take the channels-last bytes in place instead: a
one-group convolution run as a matrix product builds its im2col columns from them (in (kernel row,
kernel column, input channel) order, its weights reordered to match), and a concatenation copies them
with channels-last strides. The TFLite frontend does the same for a `.tflite` input image
(ChannelsFirstView); here the Transpose becomes that view when every reader takes it. The values are
the same elements, read from other addresses: exact in every scheme.

A model whose uint8 input image is requantized to int8 (TFLite's QUANTIZE, or tf2onnx's DequantizeLinear ->
QuantizeLinear: a table either way) before its convolutions: the convolutions apply the table as they load
each input byte (LookupOnLoad, qcc_conv_params.in_table) and read the uint8 image in place, so neither the
int8 copy nor its channels-first transpose exists. Each column holds the codes the table gives: exact too.
"""

from __future__ import annotations

from qcc.ir import Graph, Node
from qcc.ops import op_named
from qcc.ops.lookup_table import LookupOnLoad
from qcc.ops.movement import ChannelsFirstView

TO_CHANNELS_FIRST = [0, 3, 1, 2]
TABLES = ("Lookup", "FloatIsland")  # one 256-entry table from input bytes to output codes (params["table"])


def apply(graph: Graph) -> None:
    for node in [n for n in graph.nodes if n.op == "Transpose" and n.attrs["perm"] == TO_CHANNELS_FIRST]:
        image = graph.tensor(node.inputs[0])
        readers = graph.consumers(node.outputs[0])
        if (node.outputs[0] in graph.outputs or image.dtype not in ("int8", "uint8") or not readers
                or not all(_reads_channels_last(reader, node.outputs[0], graph) for reader in readers)):
            continue
        if node.inputs[0] in graph.inputs and node.inputs[0] not in graph.outputs:
            node.op = ChannelsFirstView.name
            node.attrs = {"onnx_op": "Transpose, the input read channels last, in place"}
        elif all(r.op == "QLinearConv" for r in readers) and (table := _table_of_an_input(graph, node.inputs[0])):
            table.op = LookupOnLoad.name
            node.op = ChannelsFirstView.name
            node.attrs = {"onnx_op": "Transpose, the input read channels last, in place"}


def _table_of_an_input(graph: Graph, name: str) -> Node | None:
    """The Lookup (one table) that maps a model input into `name`, read by nothing else: its convolutions can
    apply it as they load the input (LookupOnLoad): a TFLite model's uint8 image requantized to int8, or the same
    through tf2onnx (DequantizeLinear -> QuantizeLinear, a float island)."""
    lookup = graph.producer(name)
    if (lookup is None or lookup.op not in TABLES or lookup.attrs.get("axis") is not None or "clamp" in lookup.attrs
            or lookup.inputs[0] not in graph.inputs or lookup.inputs[0] in graph.outputs or name in graph.outputs
            or len(graph.consumers(name)) != 1):
        return None
    return lookup


def _reads_channels_last(reader: Node, view: str, graph: Graph) -> bool:
    """Whether `reader` can take the view's channels-last bytes in place: a one-group convolution run as
    qcc_conv_gemm reading it as its image, or a concatenation."""
    if reader.op == "QLinearConv":
        conv = op_named(reader.op)
        return reader.inputs[0] == view and reader.attrs["groups"] == 1 and conv.runs_as_gemm(reader, graph)
    return reader.op in ("Concat", "QLinearConcat") and reader.inputs.count(view) == 1
