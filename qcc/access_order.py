"""How a C kernel walks its tensors, for the memory plan's in-place proof (qcc/passes/in_place.py).

A kernel runs as a sequence of steps (a pixel, an output row, an element: whatever its loops
finish at once). `AccessOrder` records, for every element of an input, the last step that reads
it (-1: never read), and for every element of the output the step that writes it; within one
step a kernel reads before it writes. The ops build theirs (Op.access_order) from the helpers
here, one per loop structure of runtime_c/; tests/test_in_place.py checks each against the C's
loops transcribed element by element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AccessOrder:
    reads: dict[int, np.ndarray]  # input index -> per element (row-major): the last step reading it, -1 never
    writes: np.ndarray  # per output element (row-major): the step writing it


def elementwise(size: int) -> np.ndarray:
    """Element i read and written at step i."""
    return np.arange(size, dtype=np.int64)


def last_window_covering(size: int, out_size: int, kernel: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """For each input position along one axis, the last output position whose window reads it (-1: none)."""
    position = np.arange(size, dtype=np.int64)
    last = np.full(size, -1, dtype=np.int64)
    for tap in range(kernel):
        numerator = position + pad - tap * dilation
        out = numerator // stride
        hit = (numerator >= 0) & (numerator % stride == 0) & (out < out_size)
        last = np.where(hit, np.maximum(last, out), last)
    return last


@dataclass
class Window2d:
    """The geometry of a 2-D windowed op on NCHW tensors."""
    batch: int
    in_c: int
    in_h: int
    in_w: int
    out_c: int
    out_h: int
    out_w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int]  # top, left
    dilation: tuple[int, int]

    @staticmethod
    def of(node, graph) -> Window2d:
        """From an op with the attributes kernel, strides, pads_begin and dilations (QLinearConv, MaxPool)."""
        (batch, in_c, in_h, in_w), (_, out_c, out_h, out_w) = graph.tensor(node.inputs[0]).shape, graph.tensor(node.outputs[0]).shape
        a = node.attrs
        return Window2d(batch, in_c, in_h, in_w, out_c, out_h, out_w, tuple(a["kernel"]), tuple(a["strides"]),
                        tuple(a["pads_begin"]), tuple(a["dilations"]))

    def _last_rows_cols(self):
        rows = last_window_covering(self.in_h, self.out_h, self.kernel[0], self.stride[0], self.pads[0], self.dilation[0])
        cols = last_window_covering(self.in_w, self.out_w, self.kernel[1], self.stride[1], self.pads[1], self.dilation[1])
        return rows, cols

    def pixel_major(self, groups: int = 1) -> AccessOrder:
        """One step per output pixel, all channels of its window read, then all its output channels
        written (qcc_conv_gemm: a chunk of pixels builds its columns before any write, which only
        moves reads earlier); with groups, a call per group, one after the other, each reading only its
        group's input channels and writing its group's output channels."""
        rows, cols = self._last_rows_cols()
        pixel = rows[:, None] * self.out_w + cols[None, :]
        pixel = np.where((rows[:, None] < 0) | (cols[None, :] < 0), -1, pixel)
        pixels = self.batch * self.out_h * self.out_w  # the steps of one group's call
        n = np.arange(self.batch, dtype=np.int64)[:, None, None, None] * (self.out_h * self.out_w)
        in_group = (np.arange(self.in_c, dtype=np.int64) // (self.in_c // groups))[None, :, None, None] * pixels
        reads = np.where(pixel[None, None] < 0, -1, pixel[None, None] + n + in_group)
        reads = np.broadcast_to(reads, (self.batch, self.in_c, self.in_h, self.in_w))
        writes = np.arange(pixels, dtype=np.int64).reshape(self.batch, 1, self.out_h, self.out_w)
        out_group = (np.arange(self.out_c, dtype=np.int64) // (self.out_c // groups))[None, :, None, None] * pixels
        writes = np.broadcast_to(writes + out_group, (self.batch, self.out_c, self.out_h, self.out_w))
        return AccessOrder({0: reads.reshape(-1)}, writes.reshape(-1))

    def plane_pixel_major(self) -> AccessOrder:
        """One step per output pixel of one channel plane, planes in order (pooling: channel c of the
        output reads channel c of the input)."""
        rows, cols = self._last_rows_cols()
        pixel = np.where((rows[:, None] < 0) | (cols[None, :] < 0), -1, rows[:, None] * self.out_w + cols[None, :])
        planes = np.arange(self.batch * self.in_c, dtype=np.int64)[:, None, None] * (self.out_h * self.out_w)
        reads = np.where(pixel[None] < 0, -1, pixel[None] + planes)
        writes = np.arange(self.batch * self.out_c * self.out_h * self.out_w, dtype=np.int64)
        return AccessOrder({0: reads.reshape(-1)}, writes)

    def plane_row_major(self, groups: int) -> AccessOrder:
        """One step per output row of one output channel (qcc_conv_depthwise): the row reads its window's rows of
        every input channel of its group, then writes."""
        rows, _ = self._last_rows_cols()
        steps_per_plane = self.out_h
        in_per_group, out_per_group = self.in_c // groups, self.out_c // groups
        channel = np.arange(self.in_c, dtype=np.int64)
        last_out_channel = (channel // in_per_group + 1) * out_per_group - 1  # the group's last output channel
        n = np.arange(self.batch, dtype=np.int64)[:, None, None]
        plane = (n * self.out_c + last_out_channel[None, :, None]) * steps_per_plane
        reads = np.where(rows[None, None, :] < 0, -1, plane + rows[None, None, :])
        reads = np.broadcast_to(reads[..., None], (self.batch, self.in_c, self.in_h, self.in_w))
        writes = np.repeat(np.arange(self.batch * self.out_c * self.out_h, dtype=np.int64), self.out_w)
        return AccessOrder({0: reads.reshape(-1)}, writes)

    def depthwise_ring(self) -> AccessOrder:
        """qcc_conv_depthwise_3x3: per channel, output row oh first copies input rows up to
        oh * stride - pad + 2 into its ring of 3 (each row once), then writes the row."""
        row = np.arange(self.in_h, dtype=np.int64)
        # the first output row whose window ends at or after input row r loads it
        load = np.maximum(0, -(-(row + self.pads[0] - 2) // self.stride[0]))
        load = np.where(load < self.out_h, load, -1)
        planes = np.arange(self.batch * self.in_c, dtype=np.int64)[:, None] * self.out_h
        reads = np.where(load[None, :] < 0, -1, planes + load[None, :])
        reads = np.repeat(reads.reshape(-1), self.in_w)
        writes = np.repeat(np.arange(self.batch * self.out_c * self.out_h, dtype=np.int64), self.out_w)
        return AccessOrder({0: reads}, writes)
