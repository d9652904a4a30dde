"""Fold a constant Pad of the zero point's code into the convolution that reads it.

A convolution's padded taps read the input's zero point (a real zero): a Pad that surrounds the
input's rows and columns with that same code, read by nothing but the convolution, is the
convolution's own padding made explicit. Exporters write it that way (PyTorch's models through
TFLite, TFLite's explicit PAD before a VALID convolution): folded, the padded copy never exists in
the arena, and the convolution can run in place or streamed like any other. The values are equal
element for element, so the fold is exact in every scheme and against either runtime.
"""

from __future__ import annotations

from qcc.ir import Graph

_SPATIAL = (2, 3)  # the rows and columns of a channels-first image


def apply(graph: Graph) -> None:
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
