"""One module per op. Importing this package registers them all."""

from qcc.ops import (  # noqa: F401  (imported for their @register side effect)
    activation,
    conv,
    fully_connected,
    global_average_pool,
    io_boundary,
    max_pool,
    movement,
)
from qcc.ops.base import all_ops, op_for_onnx, op_named, supported_onnx_ops  # noqa: F401
