"""Read a channels-first image flattened into a fully connected layer without moving it to channels last.

tf2onnx writes a TensorFlow model's Flatten after a convolution as Transpose (perm 0, 2, 3, 1) to
TensorFlow's channels-last order, then Reshape (or Flatten) to (N, H * W * C), then the MatMul. Run as
written, the Transpose copies the whole image once more before the layer reads it. The layer can read
the channels-first image instead, as (N, C * H * W), with its weight rows permuted at compile time
from (h, w, c) to (c, h, w) order: each output sums the same products, so the accumulators, and every
code after them, are the same in every scheme. The TFLite frontend does the same for a RESHAPE that
flattens into FULLY_CONNECTED (flattened_image in qcc/frontend/tflite/importer.py).
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, Tensor

TO_CHANNELS_LAST = [0, 2, 3, 1]
FULLY_CONNECTED = ("QLinearMatMul", "QGemm")


def apply(graph: Graph) -> None:
    for transpose in [n for n in graph.nodes if n.op == "Transpose" and n.attrs["perm"] == TO_CHANNELS_LAST]:
        found = _flattened_into(graph, transpose)
        if found is not None:
            _read_channels_first(graph, transpose, *found)


def _flattened_into(graph: Graph, transpose: Node) -> tuple[list[Node], Node] | None:
    """The Reshape (or Flatten) nodes after the Transpose and the fully connected layer that reads their
    (N, H * W * C) result as its A, one image per row; None when any of them is read by another node or
    is a graph output, so that no other reader sees the bytes reordered."""
    image = graph.tensor(transpose.inputs[0])
    if len(image.shape) != 4 or image.dtype not in ("int8", "uint8"):
        return None
    n, c, h, w = image.shape
    reshapes, tensor = [], transpose.outputs[0]
    while True:
        readers = graph.consumers(tensor)
        if tensor in graph.outputs or len(readers) != 1:
            return None
        reader = readers[0]
        if reader.op != "Reshape":
            break
        reshapes.append(reader)
        tensor = reader.outputs[0]
    flat = graph.tensor(tensor)
    if (not reshapes or reader.op not in FULLY_CONNECTED or reader.inputs[0] != tensor
            or reader.inputs.count(tensor) != 1 or tuple(flat.shape) != (n, c * h * w) or reader.attrs["trans_a"]
            or reader.attrs["rows"] != n or not graph.tensor(reader.inputs[1]).is_const):
        return None
    return reshapes, reader


def _read_channels_first(graph: Graph, transpose: Node, reshapes: list[Node], layer: Node) -> None:
    """The first Reshape reads the image itself; the Transpose goes; the layer's weights follow."""
    n, c, h, w = graph.tensor(transpose.inputs[0]).shape
    reshapes[0].inputs[0] = transpose.inputs[0]
    graph.nodes.remove(transpose)
    del graph.tensors[transpose.outputs[0]]
    weights = graph.tensor(layer.inputs[1])
    cols = layer.attrs["cols"]
    if layer.attrs["trans_b"]:  # (cols, K)
        data = weights.data.reshape(cols, h, w, c).transpose(0, 3, 1, 2).reshape(cols, c * h * w)
    else:  # (K, cols)
        data = weights.data.reshape(h, w, c, cols).transpose(2, 0, 1, 3).reshape(c * h * w, cols)
    name = f"{weights.name}__channels_first_rows"
    graph.tensors[name] = Tensor(name, weights.dtype, weights.shape, np.ascontiguousarray(data), weights.quant)
    layer.inputs[1] = name
    if not graph.consumers(weights.name):
        del graph.tensors[weights.name]
