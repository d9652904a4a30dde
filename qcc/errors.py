"""The one exception type the API raises and the command line turns into a one-line message and exit code 2."""

import contextlib


class QccError(Exception):
    """A problem with the user's input: the message names the file, node or tensor and what to do."""


class FloatNodeError(QccError):
    """A node that ONNX Runtime runs in float, which qcc cannot compile; `tensor` is its output,
    so that the message can suggest where to cut the model (qcc.frontend.onnx.subgraph)."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor


@contextlib.contextmanager
def malformed(source: str, node_name: str, op_type: str):
    """An op reading a node whose inputs or attributes are not what the ONNX spec says fails in
    Python (an IndexError, a TypeError, ...): say so in one line that names the node."""
    try:
        yield
    except QccError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as error:
        detail = " ".join(str(error).split())[:200]
        raise QccError(f"{source}: node '{node_name}' ({op_type}): its inputs or attributes are not what the ONNX spec "
                       f"says ({type(error).__name__}: {detail}); check this node") from None


def one_line(text: str) -> str:
    """The message on one terminal line: control characters a model's names may hold (newlines,
    carriage returns, escape sequences) are shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
