"""LAQ: loss-aware m-bit weights (Hou & Kwok, ICLR 2018), linear or logarithmic levels.

Levels ``alpha * {0, ±l_1, ..., ±l_k}`` per layer, chosen by the proximal Newton
step of :mod:`.lat` (diagonal Hessian from Adam, ``exact`` or ``approx`` solver):

* ``laq`` (linear): ``l_j = j / k``, ``k = 2**(m-1) - 1``. Integers
  ``w_int = ±j``, ``scale = alpha / k``: the IR's ``int`` kind with ``m`` bits.
* ``laq-log`` (logarithmic): ``l_j = 2**(j - k)``, ``j = 1..k``, i.e.
  ``alpha * {0, ±2**-(k-1), ..., ±1/2, ±1}``. Integers ``w_int = ±2**(j-1)``,
  ``scale = alpha / 2**(k-1)``: the IR's ``pow2`` kind with ``m`` bits;
  ``k = 2**(m-1) - 1`` unless ``levels`` asks for fewer magnitudes.

Default solver: ``approx`` (the paper's); ``exact`` costs ``k`` sort keys per
weight and is affordable for small layers or few bits.
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from ...ops import pow2_max_exponent
from .lat import LossAwareMethod, _check_solver, solve

__all__ = ["LaqMethod", "make_linear", "make_log"]


@dataclass(frozen=True)
class LaqMethod(LossAwareMethod):
    spacing: str = "linear"         # "linear" or "log"
    levels: int = 7                 # k: non-zero magnitudes per sign

    def level_values(self):
        """``[0, l_1, ..., l_k = 1]`` (float64)."""
        j = torch.arange(1, self.levels + 1, dtype=torch.float64)
        lv = j / self.levels if self.spacing == "linear" else torch.pow(2.0, j - self.levels)
        return torch.cat([torch.zeros(1, dtype=torch.float64), lv])

    def quantize(self, w):
        d = self.hessian(w)
        w = w.detach()
        a = w.abs().flatten().to(torch.float64)
        idx, alpha = solve(a, d, self.level_values(), self.solver)
        if alpha is None or not alpha > 0:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        idx = idx.reshape(w.shape)
        if self.spacing == "linear":
            mag, unit = idx.to(torch.float64), self.levels
        else:
            mag = torch.where(idx > 0, torch.pow(2.0, (idx - 1).to(torch.float64)),
                              torch.zeros((), dtype=torch.float64))
            unit = 2.0 ** (self.levels - 1)
        w_int = torch.sign(w) * mag.to(w.dtype)
        return w_int, (alpha / unit).to(w.dtype)

    def describe(self):
        return {**super().describe(), "levels": self.levels, "spacing": self.spacing}


def make_linear(weight_bits=None, levels=None, solver="approx"):
    _check_solver(solver)
    if levels is not None:
        raise QuantizeError("laq (linear levels) takes no 'levels' option; use weight_bits "
                            "(or laq-log for a number of power-of-two levels)")
    bits = 4 if weight_bits is None else weight_bits
    if not 2 <= bits <= 16:
        raise QuantizeError(f"laq needs 2 to 16 weight bits, not {bits}")
    return LaqMethod(name="laq", kind="int", bits=bits, solver=solver, spacing="linear",
                     levels=2 ** (bits - 1) - 1)


def make_log(weight_bits=None, levels=None, solver="approx"):
    _check_solver(solver)
    if weight_bits is not None and weight_bits < 2:
        raise QuantizeError(f"laq-log weights need at least 2 bits (sign + code), not "
                            f"{weight_bits}")
    if levels is not None and levels < 1:
        raise QuantizeError(f"laq-log 'levels' must be >= 1, not {levels}")
    if weight_bits is None and levels is None:
        weight_bits = 4
    elif weight_bits is None:
        weight_bits = 2
        while pow2_max_exponent(weight_bits) + 1 < levels:
            weight_bits += 1
    most = pow2_max_exponent(weight_bits) + 1
    levels = most if levels is None else levels
    if levels > most:
        raise QuantizeError(f"{levels} laq-log levels do not fit {weight_bits} bits "
                            f"(at most {most}: one sign bit and a code for zero or an exponent)")
    return LaqMethod(name="laq-log", kind="pow2", bits=weight_bits, solver=solver,
                     spacing="log", levels=levels)
