"""File names made from node names (which come from a package, so from anyone)."""

import re

__all__ = ["safe_file_name"]


def safe_file_name(text, *, limit=48):
    """``text`` as a portable file-name stem: ``[A-Za-z0-9_-]`` only, at most ``limit`` chars.

    Not unique on its own: callers prefix an index where names could collide.
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_") or "x"
    return stem[:limit]
