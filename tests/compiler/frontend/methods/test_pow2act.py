"""Power-of-two activations (requant levels="pow2") and the pow2a method (Long et al. 2020)."""

import numpy as np
import pytest
import torch
from float_models import assert_nodes_agree, make

from compiler.errors import QuantizeError
from compiler.frontend import Finetune, quantize
from compiler.frontend.calibrate import activation_scale, calibrate
from compiler.frontend.fakequant import (Frozen, QRequant, pow2_level_values,
                                         pow2_thresholds)
from compiler.frontend.methods import get_method
from compiler.frontend.placement import build_fakequant
from compiler.frontend.trace import trace

def _contract(acc, m, o, bits):
    """The hardware contract in numpy.

    v = acc*m + o; code = #{j : v >= (val(j-1)+val(j))/2 + .5}.
    """
    val = [0.0] + [2.0 ** (c - 1) for c in range(1, 2 ** bits)]
    v = acc.astype(np.float64) * m[None, :, None] + o[None, :, None]
    code = np.zeros(v.shape, np.int64)
    for j in range(1, 2 ** bits):
        code += v >= (val[j - 1] + val[j]) / 2 + 0.5
    return code, np.asarray(val)[code]


def test_levels_and_thresholds():
    assert pow2_level_values(3).tolist() == [0, 1, 2, 4, 8, 16, 32, 64]
    assert pow2_thresholds(3).tolist() == [1.0, 2.0, 3.5, 6.5, 12.5, 24.5, 48.5]
    assert pow2_level_values(1).tolist() == [0, 1]


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_exact_requant_is_the_contract(bits):
    rng = np.random.default_rng(bits)
    acc = rng.integers(-3000, 3000, size=(4, 3, 25))
    acc[0, 1, 0] = 10 ** 6                 # clamps at the top code
    m = rng.uniform(0.001, 0.05, size=3)
    o = rng.uniform(-2, 5, size=3) + 0.5
    # some accumulators land exactly on a threshold: acc * m + o == threshold
    m[0], o[0] = 0.5, 0.5
    step = QRequant("r", ["x"], "test", channels=3, bits=bits, signed=False, levels="pow2")
    fr = Frozen(multiplier={"r": m}, offset={"r": o})
    got = step.exact([torch.from_numpy(acc.astype(np.float64))], fr).numpy()
    code, value = _contract(acc, m, o, bits)
    assert np.array_equal(got, value)
    assert code.max() == 2 ** bits - 1 and (code == 0).any()
    # with linear values 0, 1, 2, ... the same count is the usual clamp(floor(v))
    v = acc * m[None, :, None] + o[None, :, None]
    lin = sum((v >= j - 0.5 + 0.5).astype(np.int64) for j in range(1, 2 ** bits))
    assert np.array_equal(lin, np.clip(np.floor(v), 0, 2 ** bits - 1))


def test_real_mode_levels_and_straight_through_gradient():
    step = QRequant("r", ["x"], "test", channels=1, bits=3, signed=False, levels="pow2")
    step.scale.fill_(0.25)
    z = torch.tensor([-1.0, 0.1, 0.13, 0.3, 0.55, 0.8, 1.9, 7.0, 15.0, 20.0], requires_grad=True)
    q = step.quant(z)
    assert (q / 0.25).tolist() == [0, 0, 1, 1, 2, 4, 8, 32, 64, 64]
    q.sum().backward()
    assert z.grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError):
        QRequant("s", ["x"], "test", channels=1, bits=3, signed=True, levels="pow2")


def test_calibration_quantizer_matches_the_requant():
    rng = np.random.default_rng(0)
    z = rng.exponential(2.0, size=5000) - 0.5
    s = activation_scale(z, 3, False, levels="pow2")
    step = QRequant("r", ["x"], "test", channels=1, bits=3, signed=False, levels="pow2")
    step.scale.fill_(s)
    q = step.quant(torch.from_numpy(z)).numpy()
    from compiler.frontend.calibrate import _quantize_pow2
    assert np.allclose(q, _quantize_pow2(z, s, 3))
    # mse picks a scale at least as good as never clipping
    top = z.max() / 64
    err = lambda sc: np.mean((_quantize_pow2(z, sc, 3) - np.maximum(z, 0)) ** 2)  # noqa: E731
    assert err(s) <= err(top)
    assert activation_scale(z, 3, False, estimator="max", levels="pow2") == pytest.approx(top)
    with pytest.raises(QuantizeError, match="unsigned"):
        activation_scale(z, 3, True, levels="pow2")


def test_plan_puts_pow2_levels_after_every_relu():
    model, x = make("digits_cnn")
    fq = build_fakequant(trace(model, x), get_method("pow2a"), act_bits=3)
    requants = [s for s in fq.steps if isinstance(s, QRequant)]
    for s in requants:
        assert s.levels == ("linear" if s.signed else "pow2"), s.step_name
    assert fq.info["act_levels"] == "pow2"
    # the residual branch is tied to a pow2 skip: it needs the skip's range 2**6
    tied = [s for s in requants if s.tie is not None]
    assert tied and all(s.bits == 2 ** 3 + 1 for s in tied)
    # the default for other methods stays linear, and so do their graphs and metadata
    fq2 = build_fakequant(trace(model, x), get_method("pow2"), act_bits=3)
    assert all(s.levels == "linear" for s in fq2.steps if isinstance(s, QRequant))
    assert "act_levels" not in fq2.info
    # any method can ask for pow2 activations
    fq3 = build_fakequant(trace(model, x), get_method("lat"), act_bits=3, act_levels="pow2")
    assert any(s.levels == "pow2" for s in fq3.steps if isinstance(s, QRequant))


@pytest.mark.parametrize("name", ["digits_cnn", "downsample", "pool_no_relu", "mlp"])
def test_fake_quant_exact_mode_uses_levels(name):
    """Without the IR: the exact mode's activations after a ReLU are 0 or powers of two."""
    model, x = make(name)
    fq = build_fakequant(trace(model, x), get_method("pow2a"), act_bits=3)
    calibrate(fq, x)
    fq.eval()
    vals = fq.run_exact(x, all_values=True)
    allowed = set(pow2_level_values(3).tolist())
    seen = 0
    for s in fq.steps:
        if isinstance(s, QRequant) and s.levels == "pow2":
            assert set(vals[s.step_name].unique().tolist()) <= allowed
            seen += 1
    assert seen
    # the real-valued (training) forward computes the same up to float32 rounding
    real = fq.run_real(x).double()
    exact = fq(x)
    assert (real.argmax(1) == exact.argmax(1)).float().mean() > 0.9


@pytest.mark.parametrize("kw,words", [
    (dict(weights="pow2a", act_bits=5), "1 to 4 bits"),
    (dict(weights="pow2", act_levels="log"), "unknown activation levels"),
    (dict(weights="pow2a", weight_bits=3, levels=9), "do not fit"),
])
def test_bad_options(kw, words):
    model, x = make("mlp")
    with pytest.raises(QuantizeError, match=words):
        quantize(model, x, **kw)


CASES = [(m, method, kw) for m in ["digits_cnn", "downsample", "pool_no_relu"]
         for method, kw in [("pow2a", {"act_bits": 3}), ("pow2a", {}),
                            ("lat", {"act_levels": "pow2", "act_bits": 2})]
         # 4-bit pow2 codes on an identity shortcut need a 17-bit residual requantizer
         if not (m == "digits_cnn" and kw == {})]


def test_pow2_identity_shortcut_beyond_the_requant_limit_refused():
    model, x = make("digits_cnn")
    with pytest.raises(QuantizeError, match=r"needs a 17-bit requantizer.*1 to 12 bits.*"
                                            r"identity shortcut"):
        quantize(model, x, weights="pow2a")


@pytest.mark.parametrize("model_name,method,kw", CASES)
def test_export_and_agreement(model_name, method, kw):
    model, x = make(model_name)
    y = torch.arange(64) % 3
    res = quantize(model, x, weights=method, finetune=Finetune(x, y, epochs=1, log=None), **kw)
    assert res.report.exact and res.report.ok
    back, x_int = assert_nodes_agree(res, x)
    levels = [n.attrs.get("levels") for n in back.nodes if n.op == "requant"]
    assert "pow2" in levels
    # and the IR's own lowering (thresholds) computes the same
    from compiler import passes
    from compiler.ir import interpret
    prepared = passes.prepare(back)
    assert np.array_equal(interpret.run(prepared, x_int), interpret.run(back, x_int))
