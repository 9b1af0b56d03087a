"""Weight quantizers: valid integers for their IR kind, the expected levels, the registry."""

import numpy as np
import pytest
import torch

from compiler.errors import QuantizeError
from compiler.ir import Node
from compiler.ops.weights import check_weights
from compiler.frontend.methods import get_method, method_names


def _weights(seed=0, shape=(8, 4, 3, 3)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


def _check(method, w_int):
    node = Node("w", "conv2d", ["x"], {"weight_kind": method.kind, "weight_bits": method.bits},
                {"weight": w_int.numpy().astype(np.int64)})
    check_weights(node)       # raises GraphError if any integer is not of the kind


def test_registry_names_and_aliases():
    assert method_names()[:3] == ["ternary", "pow2", "int"]
    assert get_method("twn").kind == "ternary"
    assert get_method("inq").kind == "pow2"
    assert get_method("uniform").kind == "int"
    with pytest.raises(QuantizeError, match="unknown weight quantization method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize("name, kw", [("ternary", {}), ("pow2", {}), ("pow2", {"levels": 3}),
                                      ("pow2", {"weight_bits": 5}), ("int", {}),
                                      ("int", {"weight_bits": 2}), ("int", {"weight_bits": 8})])
@pytest.mark.parametrize("seed", range(3))
def test_integers_are_valid_for_the_kind(name, kw, seed):
    method = get_method(name, **kw)
    w = _weights(seed)
    w_int, scale = method.quantize(w)
    assert torch.equal(w_int, torch.round(w_int))
    assert float(scale) > 0
    _check(method, w_int)
    # Quantization keeps signs and does not blow up magnitudes.
    assert torch.all(w_int * w >= 0)
    assert float((scale * w_int - w).abs().max()) <= float(w.abs().max())


def test_twn_threshold_and_scale():
    w = torch.tensor([0.9, -0.5, 0.1, -0.05, 0.3, 0.0])
    w_int, scale = get_method("ternary").quantize(w)
    delta = 0.7 * float(w.abs().mean())              # 0.7 * 0.30833 = 0.2158
    expect = torch.tensor([1.0, -1.0, 0.0, 0.0, 1.0, 0.0])
    assert torch.equal(w_int, expect)
    assert 0.1 < delta < 0.3
    assert float(scale) == pytest.approx((0.9 + 0.5 + 0.3) / 3)


def test_twn_all_zero_layer():
    w_int, scale = get_method("ternary").quantize(torch.zeros(3, 3))
    assert torch.equal(w_int, torch.zeros(3, 3)) and float(scale) == 1.0


def test_pow2_levels_follow_inq():
    method = get_method("pow2", levels=4)            # 2**0 .. 2**3 times 2**n2
    assert method.bits == 4
    # max|W| = 1.0: n1 = floor(log2(4/3)) = 0, so the levels are 1, 1/2, 1/4, 1/8.
    w = torch.tensor([1.0, -0.74, 0.76, 0.3, 0.1, 0.0624, 0.0626, -1.4999 / 2])
    w_int, scale = method.quantize(w)
    assert float(scale) == 1 / 8
    #   1.0 -> 1 (8/8);  0.74 in [3/8, 3/4) -> 1/2;  0.76 in [3/4, 3/2) -> 1;  0.3 in
    #   [3/16, 3/8) -> 1/4;  0.1 in [1/16, 3/16) -> 1/8;  0.0624 < 1/16 -> 0;  0.0626 -> 1/8
    assert w_int.tolist() == [8, -4, 8, 2, 1, 0, 1, -4]


def test_pow2_top_weight_reaches_the_top_level():
    method = get_method("pow2")
    assert (method.bits, method.levels) == (4, 7)
    for seed in range(5):
        w = _weights(seed)
        w_int, scale = method.quantize(w)
        assert int(w_int.abs().max()) == 2 ** 6
        assert float(torch.log2(scale)).is_integer()   # the scale is a power of two too


def test_pow2_options():
    assert get_method("pow2", weight_bits=3).levels == 3
    assert get_method("pow2", levels=7).bits == 4
    assert get_method("pow2", levels=8).bits == 5
    with pytest.raises(QuantizeError, match="do not fit 3 bits"):
        get_method("pow2", weight_bits=3, levels=4)
    with pytest.raises(QuantizeError, match="at least 2 bits"):
        get_method("pow2", weight_bits=1)


def test_int_rounding_and_range():
    w = torch.tensor([1.0, -1.0, 0.5, 0.07, -0.3])
    w_int, scale = get_method("int", weight_bits=3).quantize(w)     # qmax 3, scale 1/3
    assert float(scale) == pytest.approx(1 / 3)
    assert w_int.tolist() == [3, -3, 2, 0, -1]


def test_option_errors():
    with pytest.raises(QuantizeError, match="ternary weights have 2 bits"):
        get_method("ternary", weight_bits=4)
    with pytest.raises(QuantizeError, match="no 'levels'"):
        get_method("ternary", levels=3)
    with pytest.raises(QuantizeError, match="no 'levels'"):
        get_method("int", levels=3)
    with pytest.raises(QuantizeError, match="2 to 16 bits"):
        get_method("int", weight_bits=1)


@pytest.mark.parametrize("name", ["ternary", "pow2", "int"])
def test_straight_through_gradient(name):
    method = get_method(name)
    w = _weights().requires_grad_(True)
    wq, scale = method.fake(w)
    w_int, s = method.quantize(w)
    assert torch.equal(wq.detach(), s * w_int)
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
