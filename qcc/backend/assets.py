"""Where the Jinja templates and the hand-written C runtime are: inside the installed package
(a wheel carries them as qcc/templates and qcc/runtime_c) or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"qcc installation is incomplete: no '{name}' folder next to {_PACKAGE}")
