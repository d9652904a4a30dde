"""The one exception type the command line turns into a one-line message and exit code 2."""


class QccError(Exception):
    """A problem with the user's input: the message names the file, node or tensor and what to do."""


class FloatNodeError(QccError):
    """A node that ONNX Runtime runs in float, which qcc cannot compile; `tensor` is its output,
    so that the message can suggest where to cut the model (qcc.frontend.subgraph)."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor
