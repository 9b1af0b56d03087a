"""Adaptive per-layer bit-width (Zhou, Moosavi-Dezfooli, Cheung & Frossard, AAAI 2018).

1. *Measure* each layer's effect on the output: on (up to 256) calibration
   inputs, the float network (batch norm folded) is run with Gaussian noise of
   variance ``sigma_i**2`` (1% of the layer's RMS weight) added to layer ``i``'s
   weights only; ``theta_i = E||Z_noisy - Z||**2 / sigma_i**2`` (mean over 4 seeded
   draws) is the output noise power per unit of weight noise variance -- the
   paper's linear relation between a layer's weight noise and the output noise.
2. *Model*: uniform ``b``-bit weights have noise variance
   ``(max|W_i| / (2**(b-1) - 1))**2 / 12`` per weight, about
   ``(max|W_i|**2 / 3) * 4**-b``; so the output noise is
   ``sum_i p_i exp(-alpha b_i)`` with ``p_i = theta_i * max|W_i|**2 / 3``,
   ``alpha = ln 4``.
3. *Allocate* (:mod:`compiler.frontend.bitalloc`): the closed-form optimum under
   the budget, rounded to integers in ``[min_bits, max_bits]`` that respect it.
   ``budget_kind="size"``: ``sum N_i b_i <= budget * sum N_i`` (bits per weight);
   ``budget_kind="adders"``: ``sum N_i a_i(b_i) <= budget * sum N_i`` with
   ``a_i(b)`` the mean number of non-zero canonical-signed-digit digits of the
   layer's ``b``-bit integers (each is one adder in a shift-add multiplier).

Each layer then gets the ``int`` (uniform, default) or ``pow2`` method at its
``b_i`` bits and the network is fine-tuned as usual (QAT). The ``.qpk`` holds
per-layer ``weight_bits``; ``metadata.quantization`` the measurement and the
allocation.
"""

import math
from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from .. import bitalloc
from ..trace import run_float
from . import pow2, uniform
from .base import WeightMethod
from .slq import csd_digits
from .staged import mac_steps
from ...ops import Conv2d, Dense, is_op

__all__ = ["AdaptiveMethod", "measure_robustness", "csd_cost", "make", "BUDGET_KINDS"]

BUDGET_KINDS = ("size", "adders")
NOISE_SAMPLES = 256
NOISE_DRAWS = 4
NOISE_LEVEL = 0.01


def measure_robustness(layers, x, *, seed=0):
    """``{layer name: theta}``: output noise power per unit weight-noise variance."""
    x = torch.as_tensor(x[:NOISE_SAMPLES], dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        z0 = run_float(layers, x)
        for layer in layers.layers:
            if not is_op(layer, Conv2d, Dense):
                continue
            w0 = layer.weight
            sigma = NOISE_LEVEL * float(w0.pow(2).mean().sqrt()) or NOISE_LEVEL
            acc = 0.0
            try:
                for _ in range(NOISE_DRAWS):
                    layer.weight = w0 + sigma * torch.randn(w0.shape, generator=gen)
                    acc += float(((run_float(layers, x) - z0) ** 2).sum(-1).mean())
            finally:
                layer.weight = w0
            out[layer.name] = max(acc / NOISE_DRAWS / sigma ** 2, 1e-30)
    return out


def csd_cost(w, bits):
    """Mean non-zero CSD digits per weight of ``w`` quantized to uniform ``bits``-bit integers."""
    ints, _ = uniform.make(weight_bits=bits).quantize(w)
    vals, counts = torch.unique(ints.abs().to(torch.int64), return_counts=True)
    total = sum(csd_digits(int(v)) * int(c) for v, c in zip(vals, counts))
    return total / max(1, w.numel())


@dataclass(frozen=True)
class AdaptiveMethod(WeightMethod):
    budget: float = 4.0
    budget_kind: str = "size"
    min_bits: int = 2
    max_bits: int = 8
    layer_kind: str = "int"
    seed: int = 0

    def layer_method(self, bits):
        if self.layer_kind == "pow2":
            return pow2.make(weight_bits=bits)
        return uniform.make(weight_bits=bits)

    def quantize(self, w):
        """Without a network to measure: every layer at ``round(budget)`` bits."""
        bits = min(self.max_bits, max(self.min_bits, int(round(self.budget))))
        return self.layer_method(bits).quantize(w)

    def prepare(self, fq, layers, x):
        steps = mac_steps(fq)
        theta = measure_robustness(layers, x, seed=self.seed)
        names = [layer.name for layer in layers.layers if is_op(layer, Conv2d, Dense)]
        if len(names) != len(steps):
            raise AssertionError("one MAC step per conv/linear layer")
        ws = [s.weight.detach() for s in steps]
        n = [w.numel() for w in ws]
        tops = [float(w.abs().max()) or 1e-12 for w in ws]
        p = [theta[nm] * t * t / 3 for nm, t in zip(names, tops)]

        def exact_noise(i, b):
            return theta[names[i]] * (tops[i] / (2 ** (b - 1) - 1)) ** 2 / 12

        cost = None
        if self.budget_kind == "adders":
            table = {(i, b): n[i] * csd_cost(ws[i], b) for i in range(len(ws))
                     for b in range(self.min_bits, self.max_bits + 1)}
            cost = lambda i, b: table[(i, b)]            # noqa: E731
        try:
            bits, cont = bitalloc.allocate(p, n, self.budget, lo=self.min_bits, hi=self.max_bits,
                                           cost=cost, exact_noise=exact_noise)
        except ValueError as err:
            raise QuantizeError(f"adaptive ({self.budget_kind} budget): {err}") from None
        for step, b in zip(steps, bits):
            step.method = self.layer_method(b)
        used = sum((cost or (lambda i, b: n[i] * b))(i, b) for i, b in enumerate(bits)) / sum(n)
        fq.info.update(
            weight_bits=max(bits),
            layer_bits={s.step_name: b for s, b in zip(steps, bits)},
            robustness={s.step_name: float(f"{theta[nm]:.6g}") for s, nm in zip(steps, names)},
            continuous_bits={s.step_name: round(c, 4) for s, c in zip(steps, cont)},
            budget_used=round(used, 4),
            mean_weight_bits=round(sum(ni * b for ni, b in zip(n, bits)) / sum(n), 4))

    def describe(self):
        return {**super().describe(), "budget": self.budget, "budget_kind": self.budget_kind,
                "layer_kind": self.layer_kind, "min_bits": self.min_bits,
                "max_bits": self.max_bits}


def make(weight_bits=None, levels=None, budget=4.0, budget_kind="size", min_bits=2, max_bits=8,
         layer_kind="int", seed=0):
    if weight_bits is not None or levels is not None:
        raise QuantizeError("adaptive chooses each layer's bits: give budget (--size-budget-bits) "
                            "instead of weight_bits/levels")
    if budget_kind not in BUDGET_KINDS:
        raise QuantizeError(f"adaptive: unknown budget kind {budget_kind!r}; known: "
                            f"{', '.join(BUDGET_KINDS)}")
    if layer_kind not in ("int", "pow2"):
        raise QuantizeError(f"adaptive: layer kind must be int or pow2, not {layer_kind!r}")
    if not 2 <= min_bits <= max_bits <= 16:
        raise QuantizeError(f"adaptive: need 2 <= min_bits <= max_bits <= 16, got {min_bits}, "
                            f"{max_bits}")
    budget = float(budget)
    if not math.isfinite(budget) or budget <= 0:
        raise QuantizeError(f"adaptive: the budget must be a positive number, not {budget}")
    kind = "pow2" if layer_kind == "pow2" else "int"
    return AdaptiveMethod(name="adaptive", kind=kind, bits=max_bits, budget=budget,
                          budget_kind=budget_kind, min_bits=min_bits, max_bits=max_bits,
                          layer_kind=layer_kind, seed=seed)
