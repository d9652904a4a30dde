"""Fold a constant Pad of the zero point's code into the convolution that reads it.

A convolution's padded taps read the input's zero point (a real zero): a Pad that surrounds the
input's rows and columns with that same code, read by nothing but the convolution, is the
convolution's own padding made explicit. Exporters write it that way (PyTorch's models through
TFLite, TFLite's explicit PAD before a VALID convolution): folded, the padded copy never exists in
the arena, and the convolution can run in place or streamed like any other. The values are equal
element for element, so the fold is exact in every scheme and against either runtime.

A TFLite model pads in its own channels-last layout, before the layout change to the convolution's
channels-first one (a Transpose for a model's input image, a Reshape for a single-channel one): a
constant Pad read only by such a layout change
first trades places with it (transposing the unpadded image, then padding the transposed axes), which
equals it element for element, so that the Pad meets its convolution and folds into it.
"""

from __future__ import annotations

from qcc.ir import Graph, Tensor

_SPATIAL = (2, 3)  # the rows and columns of a channels-first image
_TO_CHANNELS_FIRST = (0, 3, 1, 2)


def apply(graph: Graph) -> None:
    _pads_after_transposes(graph)
    for conv in [n for n in graph.nodes if n.op == "QLinearConv"]:
        pad = graph.producer(conv.inputs[0])
        if pad is None or pad.op != "Pad" or not _folds(graph, pad, conv):
            continue
        a = pad.attrs
        conv.attrs["pads_begin"] = [p + a["before"][axis] for p, axis in zip(conv.attrs["pads_begin"], _SPATIAL)]
        conv.attrs["pads_end"] = [p + a["after"][axis] for p, axis in zip(conv.attrs["pads_end"], _SPATIAL)]
        source = graph.tensor(pad.inputs[0])
        if source.quant is None:  # see _folds: the codes mean what the padded ones do
            source.quant = graph.tensor(pad.outputs[0]).quant
        conv.inputs[0] = pad.inputs[0]
        graph.nodes.remove(pad)
        del graph.tensors[pad.outputs[0]]


def _folds(graph: Graph, pad, conv) -> bool:
    a = pad.attrs
    padded, source = graph.tensor(pad.outputs[0]), graph.tensor(pad.inputs[0])
    if a.get("mode") != "constant" or len(padded.shape) != 4 or any(a.get("crop", [0])):
        return False
    if any(a["before"][axis] or a["after"][axis] for axis in (0, 1)):
        return False  # batch or channels padded: not a convolution's padding
    if graph.consumers(padded.name) != [conv] or padded.name in graph.outputs or source.is_const:
        return False
    # A Pad moves codes. Where the input's parameters are unknown (a QOperator graph's int8 input, as tf2onnx
    # writes it, and a Transpose of it: their scale lives in their readers' inputs), its codes mean what the
    # padded ones do.
    same_codes = padded.quant is not None and (source.quant is None or source.quant.scalar() == padded.quant.scalar())
    return same_codes and a["value"] == padded.quant.scalar()[1]


def _pads_after_transposes(graph: Graph) -> None:
    """A Pad read only by a Transpose that a convolution alone reads trades places with it."""
    for pad in [n for n in graph.nodes if n.op == "Pad"]:
        readers = graph.consumers(pad.outputs[0])
        if (pad.attrs.get("mode") != "constant" or any(pad.attrs.get("crop", [0])) or len(readers) != 1
                or readers[0].op not in ("Transpose", "Reshape") or pad.outputs[0] in graph.outputs):
            continue
        transpose, perm = readers[0], _permutation(graph, readers[0])
        if perm is None:
            continue
        convs = graph.consumers(transpose.outputs[0])
        if [c.op for c in convs] != ["QLinearConv"] or transpose.outputs[0] in graph.outputs:
            continue  # no convolution to fold into: the Pad stays where the model has it
        source, padded = graph.tensor(pad.inputs[0]), graph.tensor(pad.outputs[0])
        moved = f"{transpose.outputs[0]}__unpadded"
        if moved in graph.tensors:
            continue
        graph.tensors[moved] = Tensor(moved, source.dtype, tuple(source.shape[p] for p in perm), None,
                                      source.quant if source.quant is not None else padded.quant)
        del graph.tensors[pad.outputs[0]]
        transpose.inputs[0], transpose.outputs[0], pad_output = pad.inputs[0], moved, transpose.outputs[0]
        pad.inputs[0], pad.outputs[0] = moved, pad_output
        for key in ("before", "after", "extent"):
            pad.attrs[key] = [pad.attrs[key][p] for p in perm]
        graph.nodes.remove(transpose)
        graph.nodes.insert(graph.nodes.index(pad), transpose)


def _permutation(graph: Graph, node) -> list[int] | None:
    """The axes a layout change takes: a Transpose's perm, or for a Reshape that moves only axes of size 1 (a
    single-channel image's channels-last to channels-first change, the same bytes) that permutation."""
    if node.op == "Transpose":
        return node.attrs["perm"]
    before, after = graph.tensor(node.inputs[0]).shape, graph.tensor(node.outputs[0]).shape
    if len(before) == 4 and tuple(before[p] for p in _TO_CHANNELS_FIRST) == tuple(after) and before[3] == 1:
        return list(_TO_CHANNELS_FIRST)
    return None
