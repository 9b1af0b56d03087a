"""Names made from names that come from a file, so from anyone: file names from node
names, node names from another tool's."""

import re

__all__ = ["safe_file_name", "identifier"]


def safe_file_name(text, *, limit=48):
    """``text`` as a portable file-name stem: ``[A-Za-z0-9_-]`` only, at most ``limit`` chars.

    Not unique on its own: callers prefix an index where names could collide.
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_") or "x"
    return stem[:limit]


def identifier(text, fallback, prefix="n_"):
    """``text`` as a node name (:data:`compiler.limits.NAME_PATTERN`): every character
    outside ASCII letters and digits made ``_``, ``fallback`` if nothing is left, and
    ``prefix`` before a leading digit."""
    name = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in text).strip("_")
    name = name or fallback
    return prefix + name if name[0].isdigit() else name
