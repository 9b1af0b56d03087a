"""Loss-aware weight quantization (Hou & Kwok, ICLR 2018; Hou, Yao & Kwok, ICLR 2017).

Each training step is a proximal Newton step: after the optimizer (Adam) has
updated the full-precision shadow weights ``w``, the quantized weights are

    w_hat = argmin over the layer's level set of  sum_i d_i (w_hat_i - w_i)**2

with ``d`` the diagonal Hessian estimate, Adam's ``sqrt(v_hat) + eps``
(:mod:`.curvature`). The forward pass uses ``w_hat``; the gradient goes
straight through to ``w``. Before any optimizer step (post-training
quantization, calibration) ``d = 1``.

The level sets here are ``alpha * {0, ±l_1, ..., ±l_k}`` with ``0 < l_1 < ... <
l_k = 1`` and one ``alpha > 0`` per layer (LAT: ``{0, ±1}``; LAQ, in
:mod:`.laq`: linear or logarithmic ``l``), or, for LAT2, ``{-alpha_n, 0,
alpha_p}`` (the positive and negative weights are two independent problems:
mapping a positive weight to ``-alpha_n`` is never better than to 0).

Two solvers:

* ``exact``: the global minimum. For a given ``alpha`` the best level of each
  weight is the nearest one, so the optimum is among the assignments met while
  ``alpha`` sweeps from +inf to 0; weight ``i`` moves up to level ``j`` when
  ``alpha`` falls below ``|w_i| / m_j`` (``m_j`` the midpoint of levels
  ``j - 1`` and ``j``). Sorting these breakpoints and keeping running sums
  ``A = sum d |w| l``, ``B = sum d l**2`` gives every assignment's best
  objective, ``sum d w**2 - A**2 / B`` at ``alpha = A / B``; the largest
  ``A**2 / B`` wins. For ternary levels this is the paper's closed form: sort
  ``|w|`` descending, ``alpha_k = sum_{top k} d|w| / sum_{top k} d``, pick the
  ``k`` maximising ``(sum_{top k} d|w|)**2 / sum_{top k} d``. Cost
  ``O(n k log(n k))``.
* ``approx``: the paper's alternating minimisation, ``b = nearest level of
  |w| / alpha`` and ``alpha = sum d |w| l_b / sum d l_b**2``, repeated until
  ``b`` stops changing (at most 100 rounds). The paper does one round per
  training step, warm-started from the previous step's ``b``; here every call
  starts afresh (ternary: from TWN's threshold ``0.7 mean|w|``, m-bit: from
  ``alpha = max|w|``) and iterates to the fixed point, so that the method stays
  a pure function of ``(w, d)`` and ``freeze()`` reproduces the training
  step's integers exactly.
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from .base import WeightMethod
from .curvature import channel_signs, curvature

__all__ = ["SOLVERS", "LossAwareMethod", "LatMethod", "Lat2Method", "project", "solve",
           "solve_exact", "solve_approx", "objective", "make", "make_lat2"]

SOLVERS = ("exact", "approx")
APPROX_ROUNDS = 100
#: default bits of a LAT2 weight: P, N <= 2**(bits-1) - 1 = 31, a ratio alpha_p/alpha_n
#: resolved to 1/62 of the larger scale
LAT2_BITS = 6


def project(x, levels):
    """Index of the nearest level (ties go up) for magnitudes ``x >= 0``; ``levels[0] == 0``."""
    mid = (levels[1:] + levels[:-1]) / 2
    return torch.searchsorted(mid, x.contiguous(), right=True)


def objective(a, d, levels, idx, alpha):
    """``sum d (a - alpha * levels[idx])**2``."""
    return float((d * (a - alpha * levels[idx]) ** 2).sum())


def solve_exact(a, d, levels):
    """``(idx, alpha)`` minimising ``sum d (a - alpha * levels[idx])**2`` over idx and alpha > 0.

    ``a >= 0`` and ``d > 0`` are 1-d float64 tensors, ``levels`` an increasing
    float64 tensor starting at 0. ``alpha`` is ``None`` when ``a`` is all zero.
    """
    n, k = a.numel(), levels.numel() - 1
    idx = torch.zeros(n, dtype=torch.int64)
    nz = torch.nonzero(a > 0).flatten()
    if nz.numel() == 0:
        return idx, None
    an, dn = a[nz], d[nz]
    mid = (levels[1:] + levels[:-1]) / 2
    step = levels[1:] - levels[:-1]
    step2 = levels[1:] ** 2 - levels[:-1] ** 2
    brk = (an[:, None] / mid[None, :]).flatten()          # (m * k,), weight-major
    order = torch.argsort(brk, descending=True, stable=True)
    gain_a = ((dn * an)[:, None] * step[None, :]).flatten()[order]
    gain_b = (dn[:, None] * step2[None, :]).flatten()[order]
    big_a, big_b = torch.cumsum(gain_a, 0), torch.cumsum(gain_b, 0)
    e = int(torch.argmax(big_a * big_a / big_b))            # the first maximum
    # A weight's breakpoints fall with its level, so it has passed exactly as many
    # levels as it has events among the first e + 1.
    idx[nz] = torch.bincount(order[:e + 1] // k, minlength=nz.numel())
    return idx, big_a[e] / big_b[e]


def solve_approx(a, d, levels, alpha0=None):
    """Alternating minimisation from ``alpha0``.

    The default ``alpha0`` is ``1.4 mean a`` for ternary, else ``max a``.
    """
    n = a.numel()
    if not bool((a > 0).any()):
        return torch.zeros(n, dtype=torch.int64), None
    if alpha0 is None:
        alpha0 = 1.4 * a.mean() if levels.numel() == 2 else a.max()
    idx = project(a / alpha0, levels)
    alpha = None
    for _ in range(APPROX_ROUNDS):
        lv = levels[idx]
        alpha = (d * a * lv).sum() / (d * lv * lv).sum()
        new = project(a / alpha, levels)
        if torch.equal(new, idx):
            return idx, alpha
        idx = new
    lv = levels[idx]
    return idx, (d * a * lv).sum() / (d * lv * lv).sum()


def solve(a, d, levels, solver):
    return (solve_exact if solver == "exact" else solve_approx)(a, d, levels)


@dataclass(frozen=True)
class LossAwareMethod(WeightMethod):
    """Base of LAT/LAT2/LAQ: quantizes with the curvature ``d`` recorded for the weight."""

    solver: str = "exact"
    uses_curvature = True           # class attribute: finetune() records Adam's d

    def hessian(self, w):
        """``d`` of the weight tensor ``w`` (float64, flattened): Adam's, or ones."""
        d = curvature(w)
        if d is None:
            return torch.ones(w.numel(), dtype=torch.float64)
        if d.shape != w.shape:
            raise AssertionError(f"curvature shape {list(d.shape)} != weight {list(w.shape)}")
        return d.detach().to(torch.float64).flatten()

    def describe(self):
        return {**super().describe(), "solver": self.solver,
                "hessian": "adam sqrt(v_hat)+eps (1 before fine-tuning)"}


_TERNARY = torch.tensor([0.0, 1.0], dtype=torch.float64)


@dataclass(frozen=True)
class LatMethod(LossAwareMethod):
    """LAT: ternary ``alpha * {-1, 0, 1}``, one ``alpha`` per layer; IR kind ``ternary``."""

    def quantize(self, w):
        d = self.hessian(w)
        w = w.detach()
        a = w.abs().flatten().to(torch.float64)
        idx, alpha = solve(a, d, _TERNARY, self.solver)
        if alpha is None or not alpha > 0:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        w_int = torch.sign(w) * idx.reshape(w.shape).to(w.dtype)
        return w_int, alpha.to(w.dtype)


def lat2_integers(alpha_p, alpha_n, bits):
    """``(s, P, N)``: ``s = max(alpha_p, alpha_n) / (2**(bits-1) - 1)``, ``P = round(alpha_p / s)``.

    A missing side (``None``: no weight of that sign kept) gets the value of the other.
    """
    top = 2 ** (bits - 1) - 1
    alpha_p = alpha_n if alpha_p is None else alpha_p
    alpha_n = alpha_p if alpha_n is None else alpha_n
    s = max(float(alpha_p), float(alpha_n)) / top
    p = min(top, max(1, round(float(alpha_p) / s)))
    n = min(top, max(1, round(float(alpha_n) / s)))
    return s, p, n


@dataclass(frozen=True)
class Lat2Method(LossAwareMethod):
    """LAT2: ``{-alpha_n, 0, alpha_p}`` per layer; IR kind ``ternary2``.

    ``w_int = P [t > 0] - N [t < 0]`` with ``alpha_p ~= s P``, ``alpha_n ~= s N``
    (:func:`lat2_integers`), so the layer is ternary with two magnitudes.
    """

    def solve_sides(self, w, d):
        """``(t, alpha_p, alpha_n)``: the ternary pattern and the two scales (float64)."""
        flat = w.flatten().to(torch.float64)
        t = torch.zeros(flat.numel(), dtype=torch.int64)
        alphas = []
        for sign in (1, -1):
            side = torch.nonzero(flat * sign > 0).flatten()
            idx, alpha = solve(flat[side] * sign, d[side], _TERNARY, self.solver)
            t[side] = idx * sign
            alphas.append(alpha if alpha is not None and alpha > 0 else None)
        return t.reshape(w.shape), alphas[0], alphas[1]

    uses_channel_signs = True       # class attribute: quantize sign(g[c]) * w[c]

    def quantize(self, w):
        d = self.hessian(w)
        signs = channel_signs(w)
        w = w.detach()
        flip = torch.ones((), dtype=w.dtype) if signs is None else \
            signs.to(w.dtype).reshape((-1,) + (1,) * (w.ndim - 1))
        # The hardware's weights are w with the channels of negative batch-norm scales
        # negated: P and N are the magnitudes of *those* (the objective is unchanged).
        t, alpha_p, alpha_n = self.solve_sides(w * flip, d)
        if alpha_p is None and alpha_n is None:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        s, p, n = lat2_integers(alpha_p, alpha_n, self.bits)
        w_int = (p * (t > 0) - n * (t < 0)).to(w.dtype) * flip
        return w_int, torch.tensor(s, dtype=w.dtype)


def _check_solver(solver):
    if solver not in SOLVERS:
        raise QuantizeError(f"unknown loss-aware solver {solver!r}; known: {', '.join(SOLVERS)}")


def make(weight_bits=None, levels=None, solver="exact"):
    """``lat``: loss-aware ternary, one scale per layer."""
    _check_solver(solver)
    if weight_bits not in (None, 2):
        raise QuantizeError(f"lat weights are ternary (2 bits), not {weight_bits} bits; "
                            "use laq for m-bit loss-aware weights")
    if levels is not None:
        raise QuantizeError("lat takes no 'levels' option (the levels are -1, 0, 1)")
    return LatMethod(name="lat", kind="ternary", bits=2, solver=solver)


def make_lat2(weight_bits=None, levels=None, solver="exact"):
    """``lat2``: loss-aware ternary with separate positive and negative scales."""
    _check_solver(solver)
    if levels is not None:
        raise QuantizeError("lat2 takes no 'levels' option (the levels are -alpha_n, 0, alpha_p)")
    bits = LAT2_BITS if weight_bits is None else weight_bits
    if not 3 <= bits <= 16:
        raise QuantizeError(f"lat2 needs 3 to 16 weight bits (they hold the integer "
                            f"magnitudes P and N), not {bits}")
    return Lat2Method(name="lat2", kind="ternary2", bits=bits, solver=solver)
