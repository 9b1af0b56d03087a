"""Adaptive per-layer bit-width: the closed form, the integer allocation, export."""

import itertools
import math

import pytest
import torch
from float_models import make

from compiler.errors import QuantizeError
from compiler.ops.weights import check_weights
from compiler.frontend import Finetune, quantize
from compiler.frontend.bitalloc import ALPHA, allocate, closed_form, noise
from compiler.frontend.methods import get_method
from compiler.frontend.methods.adaptive import csd_cost
from compiler.frontend.train import deterministic

torch.set_num_threads(1)

P = [40.0, 3.0, 0.5]
N = [100, 2000, 400]


def test_closed_form_matches_a_brute_force_search():
    total = 3.0 * sum(N)
    b = closed_form(P, N, total)
    assert sum(n * x for n, x in zip(N, b)) == pytest.approx(total)
    # Brute force over b0, b1 on a fine grid (b2 from the budget).
    best = None
    for b0 in [i / 100 for i in range(0, 1001)]:
        for b1 in [i / 100 for i in range(0, 601)]:
            b2 = (total - N[0] * b0 - N[1] * b1) / N[2]
            d = noise(P, [b0, b1, b2])
            if best is None or d < best[0]:
                best = (d, b0, b1, b2)
    assert b[0] == pytest.approx(best[1], abs=0.02) and b[1] == pytest.approx(best[2], abs=0.02)
    assert noise(P, b) <= best[0] + 1e-12
    # The optimality condition: p_i e^(-alpha b_i) / N_i is the same for all layers.
    ratios = [p * math.exp(-ALPHA * x) / n for p, x, n in zip(P, b, N)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)


def test_closed_form_bounds():
    b = closed_form(P, N, 3.0 * sum(N), lo=2, hi=5)
    assert all(2 - 1e-9 <= x <= 5 + 1e-9 for x in b)
    assert sum(n * x for n, x in zip(N, b)) == pytest.approx(3.0 * sum(N))


@pytest.mark.parametrize("budget", [2.2, 3.0, 4.5])
def test_integer_allocation_is_the_brute_force_optimum(budget):
    bits, _ = allocate(P, N, budget, lo=2, hi=8)
    assert sum(n * b for n, b in zip(N, bits)) <= budget * sum(N)
    best = min((c for c in itertools.product(range(2, 9), repeat=3)
                if sum(n * b for n, b in zip(N, c)) <= budget * sum(N)),
               key=lambda c: noise(P, c))
    assert noise(P, bits) == pytest.approx(noise(P, best))


def test_allocation_with_a_non_linear_cost_respects_the_budget():
    cost = lambda i, b: N[i] * (0.4 * b + 0.1 * (b % 2))       # noqa: E731
    bits, _ = allocate(P, N, 1.3, lo=2, hi=8, cost=cost)
    assert sum(cost(i, b) for i, b in enumerate(bits)) <= 1.3 * sum(N)
    best = min((c for c in itertools.product(range(2, 9), repeat=3)
                if sum(cost(i, b) for i, b in enumerate(c)) <= 1.3 * sum(N)),
               key=lambda c: noise(P, c))
    assert noise(P, bits) <= noise(P, best) * 1.5


def test_budget_below_the_minimum():
    with pytest.raises(ValueError, match="below the minimum"):
        allocate(P, N, 1.5, lo=2, hi=8)


def test_csd_cost():
    w = torch.tensor([1.0, -0.5, 0.25, 0.0])       # 3-bit: ints 3, -2 (rounded 1.5 -> 2), 1, 0
    assert csd_cost(w, 3) == pytest.approx((2 + 1 + 1 + 0) / 4)


def test_options():
    with pytest.raises(QuantizeError, match="budget kind 'speed'"):
        get_method("adaptive", options={"budget_kind": "speed"})
    with pytest.raises(QuantizeError, match="instead of weight_bits"):
        get_method("adaptive", weight_bits=4)
    with pytest.raises(QuantizeError, match="positive"):
        get_method("adaptive", options={"budget": -1})


@pytest.mark.parametrize("opts", [{"budget": 3.0}, {"budget": 1.0, "budget_kind": "adders"},
                                  {"budget": 3.0, "layer_kind": "pow2"}])
def test_export_and_agreement(opts):
    model, x = make("conv_bn_relu")
    y = torch.randint(0, 5, (x.shape[0],), generator=torch.Generator().manual_seed(3))
    with deterministic(0):
        res = quantize(model, x, weights="adaptive", method_options=opts,
                       finetune=Finetune(x, y, epochs=1, log=None))
    assert res.report.exact and res.report.ok
    q = res.graph.metadata["quantization"]
    macs = [n for n in res.graph.nodes if n.op in ("conv2d", "dense")]
    assert [n.attrs["weight_bits"] for n in macs] == list(q["layer_bits"].values())
    for n in macs:
        check_weights(n)
    if opts.get("budget_kind", "size") == "size":
        size = sum(n.tensors["weight"].size * n.attrs["weight_bits"] for n in macs)
        assert size <= opts["budget"] * sum(n.tensors["weight"].size for n in macs)
    else:
        assert q["budget_used"] <= opts["budget"]


def test_budget_too_small_is_a_quantize_error():
    model, x = make("mlp")
    with pytest.raises(QuantizeError, match="below the minimum"):
        quantize(model, x, weights="adaptive", method_options={"budget": 1.0})
