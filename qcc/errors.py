"""The one exception type the command line turns into a one-line message and exit code 2."""


class QccError(Exception):
    """A problem with the user's input: the message names the file, node or tensor and what to do."""
