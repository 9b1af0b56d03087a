"""Reading a file a user names, as untrusted input: a regular file, bounded in size."""

import os
import stat

from . import limits

__all__ = ["FileProblem", "read_regular_file"]


class FileProblem(Exception):
    """Why a file cannot be read: ``str()`` is the message without the path."""


def read_regular_file(path, kind, limit=None):
    """The bytes of ``path``, at most ``limit`` (default :data:`compiler.limits.MAX_FILE_BYTES`)
    plus one, so that a caller can tell a file over the limit.

    Only a regular file is read: a device or a pipe could be endless. ``kind`` names
    what the file should have been ("a .qpk file") for the message about a directory.
    Raises :class:`FileProblem`.
    """
    limit = limits.MAX_FILE_BYTES if limit is None else limit
    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise FileProblem("is not a regular file")
            return f.read(limit + 1)
    except FileNotFoundError:
        raise FileProblem("no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"is a directory, not {kind}") from None
    except OSError as err:
        raise FileProblem(f"cannot read: {err.strerror or err}") from None
