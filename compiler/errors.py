"""Errors a user can cause, reported as one line without a traceback.

Every error a user can trigger with bad input (a damaged ``.qpk``, an unsupported
layer, a model too large for the board) is a :class:`UserError`. The CLI prints
its message and exits with status 1; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """An error in the user's input. ``str(err)`` is the complete message."""


class QpkError(UserError):
    """A ``.qpk`` package is unreadable or inconsistent.

    The message names the file and, where it applies, the node or field at fault.
    """

    def __init__(self, path, message, *, where=None):
        self.path = str(path) if path is not None else None
        self.where = where
        self.detail = message
        prefix = f"{self.path}: " if self.path else ""
        loc = f"{where}: " if where else ""
        super().__init__(f"{prefix}{loc}{message}")


class GraphError(UserError):
    """A graph is malformed or uses something the compiler does not support.

    ``node`` names the offending node so that the message can point at it.
    """

    def __init__(self, message, *, node=None):
        self.node = node
        self.detail = message
        super().__init__(f"node '{node}': {message}" if node else message)


class BuildError(UserError):
    """A build cannot proceed (does not fit the board, missing tool, bad option)."""


class QuantizeError(UserError):
    """A PyTorch model cannot be quantized (unsupported op, bad option)."""


class OnnxImportError(UserError):
    """An ONNX/QONNX file cannot be read or has something with no exact integer form.

    The message names the file and, where it applies, the ONNX node and why.
    """

    def __init__(self, path, message, *, node=None):
        self.path, self.node, self.detail = str(path), node, message
        where = f"node '{node}': " if node else ""
        super().__init__(f"{self.path}: {where}{message}")
