"""Loss-aware quantization (LAT, LAT2, LAQ): solvers against brute force, the Adam Hessian,
options, and export + agreement."""

import itertools

import numpy as np
import pytest
import torch
from float_models import assert_nodes_agree, make

from compiler.errors import QuantizeError
from compiler.ops import weights as ops
from compiler.frontend import Finetune, quantize
from compiler.frontend.methods import get_method
from compiler.frontend.methods.curvature import (adam_curvature, clear_curvature, curvature,
                                                 set_curvature, update_from_adam)
from compiler.frontend.methods.lat import (_TERNARY, lat2_integers, objective, solve_approx,
                                           solve_exact)

def _rand(seed, n):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    d = torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.05
    return w, d


def _brute(a, d, levels):
    """min over every assignment idx of sum d (a - alpha levels[idx])^2, alpha optimal."""
    best = float((d * a * a).sum())
    for idx in itertools.product(range(len(levels)), repeat=a.numel()):
        lv = levels[torch.tensor(idx)]
        big_b = float((d * lv * lv).sum())
        if big_b > 0:
            big_a = float((d * a * lv).sum())
            best = min(best, float((d * a * a).sum()) - big_a * big_a / big_b)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_exact_lat_equals_exhaustive_search(seed):
    n = 1 + seed % 7
    w, d = _rand(seed, n)
    if seed % 3 == 0:
        w[0] = w[-1]                      # ties in |w|
    a = w.abs()
    idx, alpha = solve_exact(a, d, _TERNARY)
    assert alpha > 0 and set(idx.tolist()) <= {0, 1}
    assert objective(a, d, _TERNARY, idx, alpha) == pytest.approx(_brute(a, d, _TERNARY),
                                                                   rel=1e-12, abs=1e-12)
    # alpha is the d-weighted mean of the kept |w| (the paper's closed form)
    keep = idx == 1
    assert float(alpha) == pytest.approx(float((d * a)[keep].sum() / d[keep].sum()))
    # and the kept set is the top-k by |w|
    assert float(a[keep].min()) >= float(a[~keep].max()) if (~keep).any() else True


@pytest.mark.parametrize("seed", range(8))
def test_approx_lat_is_a_fixed_point_no_better_than_exact(seed):
    w, d = _rand(100 + seed, 40)
    a = w.abs()
    idx, alpha = solve_approx(a, d, _TERNARY)
    # fixed point of the alternation: b = I(|w| > alpha / 2), alpha = |b d w|_1 / |b d|_1
    assert torch.equal(idx, (a >= alpha / 2).long())
    assert float(alpha) == pytest.approx(float((d * a * idx).sum() / (d * idx).sum()))
    ex_idx, ex_alpha = solve_exact(a, d, _TERNARY)
    assert objective(a, d, _TERNARY, idx, alpha) >= \
        objective(a, d, _TERNARY, ex_idx, ex_alpha) - 1e-12


def _brute_lat2(w, d):
    best = float((d * w * w).sum())
    for b in itertools.product((-1, 0, 1), repeat=w.numel()):
        b = torch.tensor(b, dtype=torch.float64)
        err = float((d * w * w).sum())
        for sign in (1, -1):
            side = b == sign
            if side.any():
                # alpha_p, alpha_n >= 0: a side whose weights sum the wrong way gets 0
                s = max(0.0, sign * float((d * w)[side].sum()))
                err -= s * s / float(d[side].sum())
        best = min(best, err)
    return best


@pytest.mark.parametrize("solver", ["exact", "approx"])
@pytest.mark.parametrize("seed", range(10))
def test_lat2_sides_against_exhaustive_search(seed, solver):
    n = 2 + seed % 6
    w, d = _rand(200 + seed, n)
    method = get_method("lat2", options={"solver": solver})
    t, ap, an = method.solve_sides(w, d)
    assert torch.all((t == 0) | (torch.sign(t) == torch.sign(w)))
    approx = (ap or 0.0) * (t > 0) - (an or 0.0) * (t < 0)
    err = float((d * (w - approx) ** 2).sum())
    best = _brute_lat2(w, d)
    if solver == "exact":
        assert err == pytest.approx(best, rel=1e-12, abs=1e-12)
    else:
        assert err >= best - 1e-12


@pytest.mark.parametrize("spacing", ["linear", "log"])
@pytest.mark.parametrize("seed", range(6))
def test_exact_laq_equals_exhaustive_search(seed, spacing):
    method = get_method("laq" if spacing == "linear" else "laq-log", weight_bits=3,
                        options={"solver": "exact"})
    levels = method.level_values()
    assert levels.tolist() == ([0, 1 / 3, 2 / 3, 1] if spacing == "linear"
                               else [0, 0.25, 0.5, 1])
    n = 2 + seed % 4
    w, d = _rand(300 + seed, n)
    a = w.abs()
    idx, alpha = solve_exact(a, d, levels)
    assert objective(a, d, levels, idx, alpha) == pytest.approx(_brute(a, d, levels),
                                                                rel=1e-12, abs=1e-12)
    ap_idx, ap_alpha = solve_approx(a, d, levels)
    assert objective(a, d, levels, ap_idx, ap_alpha) >= \
        objective(a, d, levels, idx, alpha) - 1e-12


@pytest.mark.parametrize("name,kind,bits", [
    ("lat", "ternary", 2), ("lat2", "ternary2", 6), ("laq", "int", 4), ("laq-log", "pow2", 4),
])
@pytest.mark.parametrize("solver", ["exact", "approx"])
def test_integers_are_valid_for_the_kind(name, kind, bits, solver):
    from compiler.ir import Node
    method = get_method(name, options={"solver": solver})
    assert (method.kind, method.bits) == (kind, bits)
    for seed in range(3):
        w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
        w_int, scale = method.quantize(w)
        assert scale > 0 and w_int.shape == w.shape
        assert torch.equal(w_int, torch.round(w_int))
        ops.check_weights(Node("c", "conv2d", ["x"], {"weight_kind": kind, "weight_bits": bits},
                               {"weight": w_int.numpy().astype(np.int64)}))
        # a level times the scale, never of the opposite sign
        assert torch.all(w_int * w >= 0)


def test_lat2_integers():
    method = get_method("lat2")
    assert (method.kind, method.bits) == ("ternary2", 6)
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(2)) + 0.3
    w_int, s = method.quantize(w)
    pos, neg = w_int[w_int > 0].unique(), w_int[w_int < 0].unique()
    assert pos.numel() == 1 and neg.numel() == 1
    p, n = int(pos), -int(neg)
    assert 1 <= p <= 31 and 1 <= n <= 31 and max(p, n) == 31
    _, ap, an = method.solve_sides(w.double(), torch.ones(w.numel(), dtype=torch.float64))
    assert abs(float(s) * p - float(ap)) <= float(s) / 2 + 1e-6
    assert abs(float(s) * n - float(an)) <= float(s) / 2 + 1e-6
    assert lat2_integers(1.0, 0.5, 6) == (1 / 31, 31, 16)
    assert lat2_integers(None, 0.5, 6) == (0.5 / 31, 31, 31)
    # a layer of one sign only
    w_int, s = method.quantize(torch.rand(4, 4) + 0.1)
    assert torch.all(w_int >= 0) and w_int.max() == 31


def test_the_hessian_changes_the_solution():
    w = torch.tensor([1.0, 0.3, -0.25, 0.2], dtype=torch.float32)
    method = get_method("lat")
    plain, s_plain = method.quantize(w)
    assert plain.tolist() == [1, 0, 0, 0] and float(s_plain) == 1.0
    param = torch.nn.Parameter(w.clone())
    # a large curvature on the small weights: they must be kept, alpha follows them
    set_curvature(param, torch.tensor([1.0, 100.0, 100.0, 100.0]))
    try:
        weighted, s_w = method.quantize(param)
        assert weighted.tolist() == [1, 1, -1, 1]
        assert float(s_w) == pytest.approx((1.0 + 30 + 25 + 20) / 301)
        assert curvature(param) is not None
    finally:
        clear_curvature(param)
    # every loss-aware method and solver: a random curvature moves some weights
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, generator=g)
    param = torch.nn.Parameter(w.clone())
    set_curvature(param, torch.exp(torch.randn(64, generator=g) * 2))
    try:
        for solver in ("exact", "approx"):
            for name in ("lat", "lat2", "laq", "laq-log"):
                m = get_method(name, options={"solver": solver})
                (qa, sa), (qb, sb) = m.quantize(param), m.quantize(w)
                assert not torch.equal(qa * sa, qb * sb), (name, solver)
    # methods without curvature ignore it
        assert torch.equal(get_method("ternary").quantize(param)[0],
                           get_method("ternary").quantize(w)[0])
    finally:
        clear_curvature(param)
    assert curvature(param) is None
    with pytest.raises(ValueError, match="shape"):
        set_curvature(param, torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        set_curvature(param, torch.zeros(64))


def test_adam_curvature_is_the_bias_corrected_second_moment():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-6)
    assert adam_curvature(opt, p) is None
    grads = []
    for t in range(3):
        opt.zero_grad()
        loss = (p ** 3).sum()
        loss.backward()
        grads.append(p.grad.clone())
        opt.step()
    v = torch.zeros(5)
    for g in grads:
        v = 0.99 * v + 0.01 * g * g
    expect = (v / (1 - 0.99 ** 3)).sqrt() + 1e-6
    assert torch.allclose(adam_curvature(opt, p), expect, rtol=1e-5)


def test_finetune_quantizes_with_adams_hessian():
    model, x = make("conv_bn_relu")
    y = torch.arange(64) % 5
    res = quantize(model, x, weights="lat", finetune=Finetune(x, y, epochs=2, log=None))
    fq = res.model
    for step in fq.mac_steps:
        d = curvature(step.weight)
        assert d is not None and d.shape == step.weight.shape and bool(torch.all(d > 0))
    # the exported integers are the solution with that d (up to batch-norm sign flips) ...
    step = fq.mac_steps[-1]                # the final layer: no requant, no flips
    w_int, _ = step.method.quantize(step.weight)
    nodes = {n.name: n for n in res.graph.nodes}
    assert np.array_equal(nodes[step.step_name].tensors["weight"],
                          w_int.numpy().astype(np.int64))
    # d = sqrt(v_hat) + eps is not uniform: some layer quantizes differently with d = 1
    assert any(not torch.equal(s.method.quantize(s.weight)[0],
                               s.method.quantize(s.weight.detach().clone())[0])
               for s in fq.mac_steps)
    # ... and the forward pass of training uses the same: train mode == exact mode up to
    # float32 rounding
    assert res.report.real_max_steps < 1e-3
    # a method without curvature records nothing
    res2 = quantize(model, x, weights="ternary", finetune=Finetune(x, y, epochs=1, log=None))
    assert all(curvature(s.weight) is None for s in res2.model.mac_steps)


def test_update_from_adam_only_for_loss_aware_methods():
    model, x = make("mlp")
    res = quantize(model, x, weights="laq")
    fq = res.model
    opt = torch.optim.Adam(fq.parameters())
    assert update_from_adam(fq, opt) == 0          # no step yet
    fq.train()
    fq(x).sum().backward()
    opt.step()
    assert update_from_adam(fq, opt) == len(fq.mac_steps)


@pytest.mark.parametrize("kw,words", [
    (dict(weights="lat", weight_bits=4), "ternary"),
    (dict(weights="lat", levels=3), "levels"),
    (dict(weights="lat2", weight_bits=2), "3 to 16"),
    (dict(weights="lat2", levels=3), "levels"),
    (dict(weights="laq", levels=3), "levels"),
    (dict(weights="laq", weight_bits=1), "2 to 16"),
    (dict(weights="laq-log", weight_bits=3, levels=4), "do not fit"),
    (dict(weights="laq-log", levels=0), ">= 1"),
    (dict(weights="lat", method_options={"solver": "newton"}), "unknown loss-aware solver"),
    (dict(weights="ternary", method_options={"solver": "exact"}), "takes no option 'solver'"),
    (dict(weights="lat", method_options={"alpha": 1}), "takes no option 'alpha'"),
])
def test_bad_options(kw, words):
    model, x = make("mlp")
    with pytest.raises(QuantizeError, match=words):
        quantize(model, x, **kw)


def test_laq_log_levels_option():
    method = get_method("laq-log", levels=3)
    assert method.bits == 3 and method.levels == 3
    w_int, _ = method.quantize(torch.randn(50, generator=torch.Generator().manual_seed(3)))
    assert set(w_int.abs().unique().tolist()) <= {0, 1, 2, 4}


METHODS = [("lat", {}), ("lat", {"method_options": {"solver": "approx"}}),
           ("laq", {"weight_bits": 3}), ("laq", {"method_options": {"solver": "exact"}}),
           ("laq-log", {}), ("laq-log", {"method_options": {"solver": "exact"}}),
           ("lat2", {}), ("lat2", {"method_options": {"solver": "approx"}})]


@pytest.mark.parametrize("model_name", ["digits_cnn", "downsample", "pool_no_relu"])
@pytest.mark.parametrize("method,kw", METHODS)
def test_export_and_agreement(model_name, method, kw):
    model, x = make(model_name)
    y = torch.arange(64) % 3
    res = quantize(model, x, weights=method, finetune=Finetune(x, y, epochs=1, log=None), **kw)
    assert res.report.exact and res.report.ok
    back, _ = assert_nodes_agree(res, x)
    q = back.metadata["quantization"]
    assert q["method"] == method and q["solver"] in ("exact", "approx")


def test_lat_is_deterministic():
    model, x = make("digits_cnn")
    y = torch.arange(64) % 10
    blobs = [quantize(model, x, weights="lat",
                      finetune=Finetune(x, y, epochs=1, log=None)).to_bytes() for _ in range(2)]
    assert blobs[0] == blobs[1]


def test_lat2_quantizes_the_weights_the_hardware_holds():
    """A negative batch-norm scale negates a channel on export: LAT2 solves on the negated
    weights, so the layer still has one P and one N."""
    model, x = make("conv_bn_relu")
    res = quantize(model, x, weights="lat2")
    fq = res.model
    mac = fq.step("conv")
    req = next(s for s in fq.steps if getattr(s, "inputs", None) == ["conv"]
               and type(s).__name__ == "QRequant")
    flipped = (req.g.detach() < 0).nonzero().flatten()
    assert flipped.numel() > 0
    w_int = {n.name: n for n in res.graph.nodes}["conv"].tensors["weight"]
    assert len(np.unique(w_int[w_int > 0])) == 1 and len(np.unique(w_int[w_int < 0])) == 1
    # the flipped channels' integers have the opposite sign of their shadow weights
    c = int(flipped[0])
    w = mac.weight.detach()[c].numpy()
    nz = w_int[c] != 0
    assert np.all(np.sign(w_int[c][nz]) == -np.sign(w[nz]))
