"""What ``requant`` and ``threshold`` share: output bits, signedness and activation levels.

``levels="linear"`` (the default) outputs the integer itself; ``levels="pow2"``
outputs a code ``c`` standing for ``0`` if ``c == 0`` else ``2**(c - 1)``
(:func:`sim.golden.pow2_value`), unsigned.
"""

from .. import limits
from .base import Attr, fail, within

__all__ = ["LEVELS", "LEVEL_ATTRS", "check_levels"]

LEVELS = ("linear", "pow2")


def _levels(v):
    return None if v in LEVELS else f"must be one of {', '.join(LEVELS)}"


LEVEL_ATTRS = {
    "bits": Attr(int, check=within(1, max(limits.ACT_BITS[1], limits.POW2_CODE_BITS[1]))),
    "signed": Attr(bool),
    "scale": Attr(float, required=False, doc="real value of one output step"),
    "levels": Attr(str, required=False, default="linear", check=_levels),
}


def check_levels(node, channels):
    """The output bits fit the levels, and the node's thresholds fit the limit."""
    a = node.attrs
    if a.get("levels") == "pow2" and a["signed"]:
        fail(node, "pow2 activation levels are unsigned: set 'signed' to false")
    if a.get("levels") == "pow2":
        lo, hi = limits.POW2_CODE_BITS
        what = "power-of-two activation codes"
    else:
        lo, hi = limits.ACT_BITS
        what = "linear outputs"
    if not lo <= a["bits"] <= hi:
        fail(node, f"attribute 'bits' = {a['bits']}: {what} take {lo} to {hi} bits")
    count = channels * (2 ** a["bits"] - 1)
    if count > limits.MAX_THRESHOLDS:
        fail(node, f"{channels:,} channels of {a['bits']} bits need {count:,} thresholds, "
                   f"more than the limit of {limits.MAX_THRESHOLDS:,}")
