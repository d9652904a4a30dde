"""Comparing two arrays value by value: how many are exactly equal, and the largest difference
(in LSB for codes; float32 outputs must match bit for bit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Agreement:
    compared: int = 0
    exact: int = 0
    max_lsb: float = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.dtype == np.float32:  # float outputs (--float-io) must match bit for bit
            same = a.view(np.uint32) == b.view(np.uint32)
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        else:
            diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
            same = diff == 0
        self.compared += a.size
        self.exact += int(same.sum())
        self.max_lsb = max(self.max_lsb, float(diff.max(initial=0)))

    @property
    def all_exact(self) -> bool:
        return self.exact == self.compared

    def text(self) -> str:
        """'exact/compared', and the largest difference where some differ."""
        return f"{self.exact}/{self.compared}" + ("" if self.all_exact else f" (max {self.max_lsb:g})")
