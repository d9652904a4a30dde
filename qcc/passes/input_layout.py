"""Read a model's channels-last input image in place instead of transposing it first.

tf2onnx writes a TensorFlow model's NHWC input as a Transpose (perm 0, 3, 1, 2) into the channels-first
layout that ONNX's convolutions take. Run as written, the Transpose copies the whole image into the
arena before the first layer. Its readers can take the channels-last bytes in place instead: a
one-group convolution run as a matrix product builds its im2col columns from them (in (kernel row,
kernel column, input channel) order, its weights reordered to match), and a concatenation copies them
with channels-last strides. The TFLite frontend does the same for a `.tflite` input image
(ChannelsFirstView); here the Transpose becomes that view when every reader takes it. The values are
the same elements, read from other addresses: exact in every scheme.
"""

from __future__ import annotations

from qcc.ir import Graph, Node
from qcc.ops import op_named
from qcc.ops.movement import ChannelsFirstView

TO_CHANNELS_FIRST = [0, 3, 1, 2]


def apply(graph: Graph) -> None:
    for node in [n for n in graph.nodes if n.op == "Transpose" and n.attrs["perm"] == TO_CHANNELS_FIRST]:
        image = graph.tensor(node.inputs[0])
        if (node.inputs[0] in graph.inputs and node.inputs[0] not in graph.outputs
                and node.outputs[0] not in graph.outputs and image.dtype in ("int8", "uint8")
                and graph.consumers(node.outputs[0])
                and all(_reads_channels_last(reader, node.outputs[0], graph)
                        for reader in graph.consumers(node.outputs[0]))):
            node.op = ChannelsFirstView.name
            node.attrs = {"onnx_op": "Transpose, the input read channels last, in place"}


def _reads_channels_last(reader: Node, view: str, graph: Graph) -> bool:
    """Whether `reader` can take the view's channels-last bytes in place: a one-group convolution run as
    qcc_conv_gemm reading it as its image, or a concatenation."""
    if reader.op == "QLinearConv":
        conv = op_named(reader.op)
        return reader.inputs[0] == view and reader.attrs["groups"] == 1 and conv.runs_as_gemm(reader, graph)
    return reader.op in ("Concat", "QLinearConcat") and reader.inputs.count(view) == 1
