"""One module per op (or family of ops). Importing this package imports and so registers them all."""

import importlib
import pkgutil

from qcc.ops.base import all_ops, op_for_onnx, op_named, qdq_op_for, supported_onnx_ops  # noqa: F401

_SHARED = {"base", "quantized"}  # helpers of the op modules, not ops
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _SHARED:
        importlib.import_module(f"{__name__}.{_module}")
