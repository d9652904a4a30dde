"""One module per op (or family of ops). Importing this package imports and so registers them all."""

import importlib
import pkgutil

from qcc.ops.base import (QOPERATOR_RULES, TFLITE_RULES, Op, all_ops, island_op_for, op_for_onnx,  # noqa: F401
                          op_for_tflite, op_named, qdq_op_for, qdq_propagates_across, supported_onnx_ops,
                          supported_tflite_ops)

_SHARED = {"base", "c_emitter", "explanation", "qdq_group", "quantized", "tflite_import"}  # helpers of the op modules, not ops
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _SHARED:
        importlib.import_module(f"{__name__}.{_module}")
