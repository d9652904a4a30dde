"""When a kernel may write its output over an input it no longer needs, and how far apart.

Given the kernel's AccessOrder (qcc/access_order.py) and its output placed `delta` bytes after
its input's start, the kernel computes what it computes out of place exactly when every output
element is written no earlier than the last read of the input element under it:

    writes[o] >= reads[o + delta]   for every o with 0 <= o + delta < len(reads)

That is the whole proof, checked element by element (numpy, exact) for the offset the plan uses.
The C kernels take their input and output through plain (not restrict) pointers, so an overlap is
defined behaviour.

Only 8-bit tensors are overlapped: one element is one byte, so element and byte offsets agree.
"""

from __future__ import annotations

import numpy as np


def is_safe(reads: np.ndarray, writes: np.ndarray, delta: int) -> bool:
    """Every output element lands on input bytes already read for the last time (or on none)."""
    first = max(0, -delta)  # the first output element over an input element
    last = min(len(writes), len(reads) - delta)  # one past the last
    if first >= last:
        return True
    return bool(np.all(writes[first:last] >= reads[first + delta:last + delta]))


def largest_safe_offset(reads: np.ndarray, writes: np.ndarray, alignment: int) -> int | None:
    """The largest offset (output start minus input start, a multiple of `alignment`, at most 0) at
    which the output may overlap the input, or None when only offsets without overlap are safe.

    0 is tried first: an elementwise kernel or a 1x1 convolution writes each element over one it has
    just read. Otherwise the bound comes from the reads' running maximum R (R[i] >= reads[i], and
    R only grows, so an output element o is safe over every input element before the first i with
    R[i] > writes[o]); the offset is then checked exactly like any other."""
    if is_safe(reads, writes, 0):
        return 0
    running = np.maximum.accumulate(reads)
    first_unsafe = np.searchsorted(running, writes, side="right")  # per output element
    constrained = first_unsafe < len(reads)
    if not np.any(constrained):
        return 0
    bound = int(np.min(first_unsafe[constrained] - np.nonzero(constrained)[0])) - 1
    delta = min(bound, 0) // alignment * alignment
    if delta <= -len(writes) or not is_safe(reads, writes, delta):
        return None
    return delta
