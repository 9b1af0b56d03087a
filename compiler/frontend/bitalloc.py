"""Optimal per-layer bit-widths (Zhou, Moosavi-Dezfooli, Cheung & Frossard, AAAI 2018).

Model: layer ``i`` quantized to ``b_i`` bits adds output noise
``D_i(b_i) = p_i * exp(-alpha * b_i)`` (``alpha = ln 4``: one more bit halves the
quantization step, a quarter of the noise power), and the noises of the layers
add up: ``D = sum_i D_i``. Minimising ``D`` under a budget
``sum_i w_i * b_i = W`` (``w_i`` = the layer's cost of one bit per weight, e.g. its
weight count ``N_i`` for model size) gives, with a Lagrange multiplier, the
closed form

    p_i * exp(-alpha * b_i) / w_i  equal for all layers, i.e.
    b_i = W / sum(w) + (1/alpha) * (ln(p_i / w_i) - sum_j w_j ln(p_j / w_j) / sum(w))

(:func:`closed_form`, with bounds by clipping the layers that leave
``[lo, hi]`` and re-solving for the rest). :func:`allocate` turns it into
integers that respect the budget: the floor/ceil combinations of the continuous
optimum (all of them for up to 14 layers, then greedy), then single-bit moves
between layers while they lower ``D``.
"""

import itertools
import math

__all__ = ["ALPHA", "closed_form", "allocate", "noise"]

ALPHA = math.log(4.0)
EXHAUSTIVE_LAYERS = 14


def noise(p, bits, alpha=ALPHA):
    """The modelled output noise ``sum p_i exp(-alpha b_i)``."""
    return sum(pi * math.exp(-alpha * b) for pi, b in zip(p, bits))


def closed_form(p, w, total, *, lo=None, hi=None, alpha=ALPHA):
    """Real bit-widths minimising ``sum p_i e^(-alpha b_i)`` s.t. ``sum w_i b_i = total``."""
    n = len(p)
    if n == 0:
        return []
    if any(pi <= 0 for pi in p) or any(wi <= 0 for wi in w):
        raise ValueError("closed_form needs p_i > 0 and w_i > 0")
    fixed = {}
    while True:
        free = [i for i in range(n) if i not in fixed]
        rest = total - sum(w[i] * fixed[i] for i in fixed)
        if not free:
            break
        sw = sum(w[i] for i in free)
        mean_log = sum(w[i] * math.log(p[i] / w[i]) for i in free) / sw
        b = {i: rest / sw + (math.log(p[i] / w[i]) - mean_log) / alpha for i in free}
        out = {i: v for i, v in b.items()
               if (lo is not None and v < lo) or (hi is not None and v > hi)}
        if not out:
            fixed.update(b)
            break
        # Clip the worst offender first, then re-solve for the others.
        i = max(out, key=lambda i: max((lo - out[i]) if lo is not None else 0,
                                       (out[i] - hi) if hi is not None else 0))
        fixed[i] = lo if lo is not None and out[i] < lo else hi
    return [fixed[i] for i in range(n)]


def allocate(p, n, budget, *, lo=2, hi=8, cost=None, alpha=ALPHA, exact_noise=None):
    """Integer bit-widths in ``[lo, hi]`` with ``sum cost(i, b_i) <= budget * sum(n)``.

    ``cost(i, b)`` is a layer's total cost at ``b`` bits (default ``n_i * b``: model
    size in bits, so ``budget`` is bits per weight). ``exact_noise(i, b)`` replaces
    the exponential model when comparing integer choices (default the model).
    Returns ``(bits, continuous)``; ValueError if even ``lo`` bits everywhere exceed
    the budget.
    """
    L = len(p)
    cost = cost or (lambda i, b: n[i] * b)
    dn = exact_noise or (lambda i, b: p[i] * math.exp(-alpha * b))
    total = budget * sum(n)
    if sum(cost(i, lo) for i in range(L)) > total + 1e-9:
        raise ValueError(f"a budget of {budget:g} per weight is below the minimum "
                         f"({sum(cost(i, lo) for i in range(L)) / sum(n):.4g} at {lo} bits)")
    # Linear cost per bit for the closed form (exact for size, a least-squares fit else).
    bs = list(range(lo, hi + 1))
    w = [max(1e-12, sum(cost(i, b) * b for b in bs) / sum(b * b for b in bs)) for i in range(L)]
    cont = closed_form(p, w, total, lo=lo, hi=hi, alpha=alpha)

    def ok(bits):
        return sum(cost(i, b) for i, b in enumerate(bits)) <= total + 1e-9

    def score(bits):
        return sum(dn(i, b) for i, b in enumerate(bits))

    floor = [min(hi, max(lo, math.floor(c))) for c in cont]
    best = None
    if L <= EXHAUSTIVE_LAYERS:
        for ups in itertools.product((0, 1), repeat=L):
            bits = [min(hi, f + u) for f, u in zip(floor, ups)]
            if ok(bits) and (best is None or score(bits) < score(best)):
                best = bits
    if best is None:
        best = list(floor)
        while not ok(best):               # cost model off: drop the cheapest bits
            cands = [i for i in range(L) if best[i] > lo]
            i = min(cands, key=lambda i: (dn(i, best[i] - 1) - dn(i, best[i]))
                    / max(1e-12, cost(i, best[i]) - cost(i, best[i] - 1)))
            best[i] -= 1
    improved = True
    while improved:                       # greedy additions, then one-bit moves
        improved = False
        for i in sorted(range(L), key=lambda i: -(dn(i, best[i]) - dn(i, min(hi, best[i] + 1)))):
            if best[i] < hi:
                cand = best[:i] + [best[i] + 1] + best[i + 1:]
                if ok(cand):
                    best, improved = cand, True
        for i, j in itertools.permutations(range(L), 2):
            if best[i] < hi and best[j] > lo:
                cand = list(best)
                cand[i] += 1
                cand[j] -= 1
                if ok(cand) and score(cand) < score(best) - 1e-15:
                    best, improved = cand, True
    return best, cont
