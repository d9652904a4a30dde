"""How far each rounding scheme lands from ONNX Runtime on the test networks: the share of output
values equal to ORT's and the largest difference in LSB, from `qcc verify` (20 seeded random inputs
plus the 3 extremes), with the C checked equal to the reference interpreter in every scheme.

    python benchmarks/scheme_agreement.py [NETWORK ...]
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from models import quantize  # noqa: E402
from networks import NETWORKS  # noqa: E402

from qcc.commands.verify import verify  # noqa: E402
from qcc.pipeline import ROUNDING_SCHEMES, Options  # noqa: E402


def agreement(path: Path, scheme: str) -> tuple[float, float, bool]:
    report = verify(str(path), Options(rounding=scheme), count=20)
    pairs = [p for per_output in report.per_output.values() for p in [per_output]]
    ort = [p["C vs ORT"] for p in pairs]
    c_equals_reference = all(p["C vs reference"].exact == p["C vs reference"].compared for p in pairs)
    share = sum(a.exact for a in ort) / sum(a.compared for a in ort)
    return share, max(a.max_lsb for a in ort), c_equals_reference


def main() -> None:
    logging.disable(logging.WARNING)
    names = sys.argv[1:] or list(NETWORKS)
    print(f"{'network (QDQ, uint8)':<24}" + "".join(f"{s + ': = ORT, max LSB':>28}" for s in ROUNDING_SCHEMES))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = quantize(NETWORKS[name](), Path(tmp) / f"{name}.onnx", quant_format="QDQ", activation="uint8")
            cells = []
            for scheme in ROUNDING_SCHEMES:
                share, max_lsb, exact = agreement(path, scheme)
                cells.append(f"{100 * share:.2f}%, {max_lsb:g}{'' if exact else ' (C != ref!)'}")
            print(f"{name:<24}" + "".join(f"{c:>28}" for c in cells))


if __name__ == "__main__":
    main()
