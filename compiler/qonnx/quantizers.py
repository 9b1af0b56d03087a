"""QONNX's quantizers as exact staircases of an integer accumulator.

Every quantizer QONNX has for activations (``Quant``, ``BipolarQuant``,
``Trunc``, ``MultiThreshold``) maps a real value to an integer level, and does
so monotonically. Its real input is an affine function of the integers the
hardware carries, ``scale[c] * a + offset[c]`` (optionally through a ReLU), so
the whole chain is a non-decreasing staircase of ``a``: exactly a ``threshold``
node, ``lo + #{k : a >= T[c, k]}``. :func:`staircase` finds ``T`` by binary
search on the quantizer's own expression in float64 (the QONNX reference
semantics, in double precision), so the thresholds agree with it at every
integer, ties included.

The real value is that of the file's own (float32) parameters, taken exactly:
where it falls on a rounding tie only through float32 rounding (``65 * 0.05f *
0.5 / 0.25`` is 6.5000001, not 6.5), qonnx's float32 executor and Brevitas may
round the other way. Power-of-two scales are exact in both.

The level functions follow ``qonnx.custom_op.general`` (``int_quant``,
``binary_quant``, ``trunc_v1``/``trunc_v2``, ``multithreshold``).
"""

import numpy as np

__all__ = ["UNREACHED", "min_int", "max_int", "rounding", "staircase"]

#: A threshold no accumulator reaches (and its negation, one every accumulator
#: reaches). Far beyond :data:`compiler.limits.ACC_BITS`; the compiler clamps
#: thresholds to the accumulator's range before building anything.
UNREACHED = 1 << 61


def min_int(signed, narrow, bits):
    return -(2 ** (bits - 1)) + int(narrow) if signed else 0


def max_int(signed, narrow, bits):
    return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - int(narrow)


def _half_up(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _half_down(x):
    return np.sign(x) * np.ceil(np.abs(x) - 0.5)


def _up(x):
    return np.sign(x) * np.ceil(np.abs(x))


_ROUNDING = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
             "UP": _up, "DOWN": np.fix, "HALF_UP": _half_up, "HALF_DOWN": _half_down}


def rounding(mode):
    """QONNX's rounding mode by name, or None if there is no such mode."""
    return _ROUNDING.get(str(mode).upper())


def staircase(level, scale, offset, *, relu, lo, count):
    """Thresholds ``T`` (``(C, count)``, int64) with ``lo + #{k : a >= T[c, k]}`` equal to
    ``level(real)`` for every integer ``a``, where ``real = scale[c] * a + offset[c]``
    (``max(real, 0)`` if ``relu``).

    ``level`` maps an array of reals of shape ``(C, count)`` (channel ``c`` in row ``c``)
    to integer levels; it must be non-decreasing in the real and, as ``scale > 0``, so
    is the staircase. A level never reached gets :data:`UNREACHED`; one always reached,
    ``-UNREACHED``.
    """
    s = np.asarray(scale, np.float64)[:, None]
    b = np.asarray(offset, np.float64)[:, None]
    target = lo + 1 + np.arange(count)[None, :]
    shape = (s.shape[0], count)
    below = np.full(shape, -UNREACHED, dtype=np.int64)        # the answer is >= below
    above = np.full(shape, UNREACHED, dtype=np.int64)         # and <= above
    while np.any(below < above):
        mid = below + (above - below) // 2
        real = mid.astype(np.float64) * s + b
        if relu:
            real = np.maximum(real, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            reached = level(real) >= target
        above = np.where(reached, mid, above)
        below = np.where(reached, below, mid + 1)
    return above
