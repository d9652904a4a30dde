"""The C of a streamed chain (qcc/passes/streaming.py): its schedule's kernel calls, in order.

Each layer's kernel runs unchanged on a view of a few rows: its parameter struct says how many
input rows it sees (a band, or the chain input from some row on), the padding above them, one
output row, and the distance between channels (in_plane, out_plane) of the buffers it reads and
writes. Each distinct view is one struct; the calls differ only in their pointers. An Add runs on
one row of one channel at a time, so a loop over the channels makes each of its rows.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace

from qcc.ir import C_TYPES, Graph, Tensor
from qcc.ops import op_named
from qcc.ops.c_emitter import CEmitter, c_comment_text
from qcc.ops.movement import reads_channels_last
from qcc.passes.memory_plan import stream_scratch
from qcc.passes.streaming import Flush, Run, Shift, Stream


class _ViewEmitter(CEmitter):
    """The model's emitter, for one view of one layer: its tensors are placeholders that each call
    replaces with the rows it reads and writes, and its scratch is the chain's kernel scratch."""

    def __init__(self, base: CEmitter, graph: Graph, symbol: str, layer_symbol: str, scratch: str, scratch_bytes: int):
        self.__dict__.update(base.__dict__)  # shares the declarations and the symbols taken
        self.graph, self._base, self._view_symbol, self._layer_symbol = graph, base, symbol, layer_symbol
        self._scratch, self._scratch_bytes = scratch, scratch_bytes

    def symbol(self, node_name: str) -> str:
        return self._view_symbol

    def const_array(self, name, ctype, values):
        # the layer's arrays (weights, constants) are the layer's, named as out of place: one for every view
        name = self._base.const_array(name.replace(self._view_symbol, self._layer_symbol, 1), ctype, values)
        self.weights_bytes = self._base.weights_bytes
        return name

    def struct(self, ctype, name, fields):
        return self._base.struct(ctype, name, fields)

    def tensor(self, name: str, as_dtype: str | None = None) -> str:
        return f"@{name}@{as_dtype or self.graph.tensor(name).dtype}@"  # replaced by _place_pointers

    def scratch(self, node) -> str:
        return self._scratch

    def scratch_size(self, node) -> int:
        return self._scratch_bytes


def emit_stream(stream: Stream, graph: Graph, c: CEmitter, step: int) -> tuple[str, dict[str, str]]:
    """The statements that run the chain: band shifts and kernel calls, in the schedule's order; and
    each layer's first call (node name -> statement), which `qcc explain` shows for the layer."""
    offsets = stream_scratch(graph, stream)
    base = c.plan.scratch[step]
    bands = [base + offset for offset in offsets[:-1]]
    kernel_scratch = f"(int32_t *)(void *)&{c.arena_symbol}.bytes[{base + offsets[-1]}]"
    kernel_bytes = c.plan.scratch_bytes[step] - offsets[-1]
    views: dict[tuple, str] = {}
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]  # the calls of each of the last layer's rows
    first_calls: dict[str, str] = {}
    for call in stream.calls:
        if isinstance(call, Shift):
            _, channels, _, width = graph.tensor(stream.banded[call.band]).shape
            plane = stream.band_rows[call.band] * width
            groups[-1].append((f"qcc_band_shift(&{c.arena_symbol}.bytes[{bands[call.band]}], {channels}, {plane}, "
                               f"{call.drop * width}, {call.keep * width});", ()))
            continue
        if isinstance(call, Flush):  # a held-back output row to its place
            _, channels, height, width = graph.tensor(stream.output).shape
            held = bands[len(stream.intermediates)] + call.index * width
            groups[-1].append((f"qcc_band_row_copy(&{c.arena_symbol}.bytes[{held}], {stream.band_rows[-1] * width}, "
                               f"{_pointer(c, stream.output, 'uint8')} + @@0@@, {height * width}, {channels}, {width});",
                               (call.row * width,)))
            continue
        stage = stream.stages[call.stage]
        if stage.takes_parts:
            if "parts" not in views:
                views["parts"] = _emit_parts(stream, graph, c, bands, kernel_scratch, kernel_bytes)
            groups[-1].append((views["parts"], (call.row,)))
            first_calls.setdefault(stage.node.name, _fill(*groups[-1][-1]))
            groups.append([])
            continue
        key = (call.stage, call.in_rows, _pad_above(stage, call))
        if key not in views:
            views[key] = _emit_view(stream, graph, c, call, c.symbol(f"{stage.node.name}_rows{len(views) + 1}"),
                                    kernel_scratch, kernel_bytes)
        groups[-1].append(_place_pointers(views[key], stream, graph, c, call, bands))
        first_calls.setdefault(stage.node.name, _fill(*groups[-1][-1]))
        if call.stage == len(stream.stages) - 1:
            groups.append([])
    names = " -> ".join(f"'{n.name}'" for n in stream.nodes)
    lines = [f"/* {c_comment_text(names)}, a row at a time ({len(stream.calls)} calls) */"]
    return "\n    ".join(lines + _as_loops([g for g in groups if g])), first_calls


def _emit_parts(stream: Stream, graph: Graph, c: CEmitter, bands: list[int], scratch: str, scratch_bytes: int) -> str:
    """The call of a chain's last layer, fully connected, on one row of the image before it (the band of
    one row: every channel's row, contiguous), with a slot @@0@@ for the row: its part of the depth."""
    stage = stream.stages[-1]
    image = graph.tensor(stage.main)
    assert stream.band_rows[-1] == 1, "a part is one row of every channel, contiguous"
    op = op_named(stage.node.op)
    _, channels, height, width = image.shape
    fitting = max(size for size in op.part_scratch_choices(channels * width) if size <= scratch_bytes)
    params = op.emit_part(stage.node, graph, c, image.shape, fitting)
    suffix = "s8" if image.dtype == "int8" else "u8"
    acc = f"(uint32_t *)(void *)&{c.arena_symbol}.bytes[{bands[len(stream.intermediates)]}]"
    return (f"qcc_fully_connected_part_{suffix}({params}, {_pointer(c, bands[-2], image.dtype)}, {acc}, "
            f"{c.tensor(stage.output)}, {scratch}, @@0@@, {height});")


def _as_loops(groups: list[list[tuple[str, tuple[int, ...]]]]) -> list[str]:
    """The rows' calls, with each run of three or more rows that differ only by pointer offsets growing
    by the same steps written as one loop over the rows."""
    lines, i = [], 0
    while i < len(groups):
        n = 1
        if i + 1 < len(groups) and _same_calls(groups[i], groups[i + 1]):
            steps = _steps(groups[i], groups[i + 1])
            while (i + n + 1 < len(groups) and _same_calls(groups[i], groups[i + n + 1])
                   and _steps(groups[i], groups[i + n + 1]) == [s * (n + 1) for s in steps]):
                n += 1
            n += 1
        if n < 3:
            lines += [_fill(text, values) for text, values in groups[i]]
            i += 1
            continue
        steps = iter(_steps(groups[i], groups[i + 1]))
        body = []
        for text, values in groups[i]:
            body.append(_fill(text, [f"{v} + {s} * r" if s else str(v) for v, s in zip(values, steps)]))
        lines.append(f"{{ int32_t r; for (r = 0; r < {n}; ++r) {{")
        lines += ["    " + line for line in body]
        lines.append("} }")
        i += n
    return lines


def _same_calls(a, b) -> bool:
    return [text for text, _ in a] == [text for text, _ in b]


def _steps(a, b) -> list[int]:
    """Per pointer offset of a row's calls, in order: how much it grows to the next row."""
    return [y - x for (_, xs), (_, ys) in zip(a, b) for x, y in zip(xs, ys)]


def _fill(text: str, values) -> str:
    for k, value in enumerate(values):
        text = text.replace(f"@@{k}@@", str(value))
    return text


def _pad_above(stage, call: Run) -> int:
    """The rows of padding above the view: the window's rows above the input's first row."""
    return stage.pad + call.in_first - call.row * stage.stride


def _planes(stream: Stream, graph: Graph, index: int) -> tuple[int, int]:
    """Stage `index`'s channel strides: of what it reads (the whole chain input, or the band before it)
    and of what it writes (its band, or the whole chain output)."""
    def plane(name: str, band: int | None) -> int:
        _, _, height, width = graph.tensor(name).shape
        return (height if band is None else stream.band_rows[band]) * width
    stage = stream.stages[index]
    whole = index == len(stream.stages) - 1 and not stream.lag  # the chain's output, not its band
    return plane(stage.main, None if index == 0 else index - 1), plane(stage.output, None if whole else index)


def _emit_view(stream: Stream, graph: Graph, c: CEmitter, call: Run, symbol: str, scratch: str,
               scratch_bytes: int) -> str:
    """The layer's call with placeholders for its pointers, and its parameter struct for this view."""
    stage = stream.stages[call.stage]
    node = copy.copy(stage.node)
    node.attrs = dict(node.attrs)
    view = copy.copy(graph)
    view.tensors = dict(graph.tensors)
    x, y = graph.tensor(stage.main), graph.tensor(stage.output)
    if stage.side is not None:  # an Add: one row of one channel
        for name in (stage.main, stage.side, stage.output):
            view.tensors[name] = _reshaped(graph.tensor(name), (y.shape[3],))
    else:
        view.tensors[stage.main] = _reshaped(x, (1, x.shape[1], call.in_rows, x.shape[3]))
        view.tensors[stage.output] = _reshaped(y, (1, y.shape[1], 1, y.shape[3]))
        node.attrs["pads_begin"] = [_pad_above(stage, call), node.attrs["pads_begin"][1]]
        node.attrs["planes"] = _planes(stream, graph, call.stage)
    op = op_named(node.op)
    # the kernel's fastest scratch choice that fits the chain's kernel scratch
    fitting = max(size for size in op.scratch_choices(node, view) if size <= scratch_bytes)
    emitter = _ViewEmitter(c, view, symbol, c.symbol(stage.node.name), scratch, fitting)
    return op.emit(node, view, emitter)


def _reshaped(tensor: Tensor, shape) -> Tensor:
    return replace(tensor, shape=tuple(shape))


def _place_pointers(template: str, stream: Stream, graph: Graph, c: CEmitter, call: Run,
                    bands: list[int]) -> tuple[str, tuple[int, ...]]:
    """The call with its placeholders replaced by where this call reads and writes: the text, with a
    slot @@k@@ for each pointer's offset, and the offsets."""
    stage = stream.stages[call.stage]
    last = call.stage == len(stream.stages) - 1
    x, y = graph.tensor(stage.main), graph.tensor(stage.output)
    row_bytes_in, row_bytes_out = x.shape[3], y.shape[3]
    if reads_channels_last(graph, stage.main):  # a model input read in place: a row holds every channel
        row_bytes_in *= x.shape[1]
    if call.stage == 0:
        main = (stage.main, (call.in_first if stage.side is None else call.row) * row_bytes_in)
    else:
        main = (bands[call.stage - 1], (call.row - call.in_first) * row_bytes_in if stage.side is not None else 0)
    if last and not stream.lag:
        out = (stage.output, call.row * row_bytes_out)
    else:  # its band (a chain with a lag: the output's held-back rows)
        out = (bands[call.stage], (call.row - call.out_first) * row_bytes_out)
    places = {stage.main: main, stage.output: out}
    if stage.side is not None:
        places[stage.side] = (stage.side, call.row * row_bytes_out)
    in_plane, out_plane = _planes(stream, graph, call.stage)
    planes = {stage.main: in_plane, stage.output: out_plane, stage.side: y.shape[2] * y.shape[3]}
    text, offsets = template, []
    for name, (where, offset) in places.items():
        channel = f" + {planes[name]} * ch" if stage.side is not None else ""

        def pointer(token: re.Match, where=where, offset=offset, channel=channel) -> str:  # each token: a slot
            offsets.append(offset)
            return f"({_pointer(c, where, token.group(1))} + @@{len(offsets) - 1}@@{channel})"
        text = re.sub(re.escape(f"@{name}@") + r"(\w+)@", pointer, text)
    if stage.side is not None:
        text = f"{{ int32_t ch; for (ch = 0; ch < {y.shape[1]}; ++ch) {{ {text} }} }}"
    return text, tuple(offsets)


def _pointer(c: CEmitter, where, dtype: str) -> str:
    """A pointer typed as dtype to a band (its arena offset) or to a whole tensor's storage."""
    if isinstance(where, int):
        return f"({C_TYPES[dtype]} *)&{c.arena_symbol}.bytes[{where}]"
    return c.tensor(where, dtype)
