"""Where the folders qcc ships beside its Python code are (the Jinja templates, the hand-written
C runtime, the QEMU instruction-counting plugin): inside the installed package (a wheel carries
them as qcc/templates, qcc/runtime_c and qcc/qemu_plugin) or at the top of a source checkout.
It is in the lowest layer so that any module can find them."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"qcc installation is incomplete: no '{name}' folder next to {_PACKAGE}")
