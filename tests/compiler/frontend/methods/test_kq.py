"""KQ: kernel codebooks, fixed indices, codebook gradients, 6-bit entries, bits per parameter."""

import numpy as np
import pytest
import torch
from float_models import make

from compiler.errors import QuantizeError
from compiler.frontend import Finetune, quantize
from compiler.frontend.methods import get_method
from compiler.frontend.methods.kq import KQLayer, bits_per_param, codebook_tensors, \
    kmeans_kernels
from compiler.frontend.train import deterministic

torch.set_num_threads(1)


def _w(seed=0, shape=(8, 6, 3, 3)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_indices_times_codebook_reproduce_the_weights():
    w = _w()
    q = KQLayer(w, index_bits=3)
    assert q.entries == 8 and q.bits == 3 and q.indices.shape == (8, 6)
    ints, scale = q.quantize(w)
    book = q.codebook_ints(w)
    assert torch.equal(ints, book[q.indices])
    assert int(book.abs().max()) == 31                    # 6-bit signed entries, full range
    # The codebook entries are the means of their kernels; scale * ints approximates them.
    means = q.codebook(w)
    assert float((means - scale * book).abs().max()) <= float(scale) / 2 + 1e-7
    # A layer with fewer kernels than 2**b uses one entry per kernel and fewer index bits.
    small = KQLayer(_w(1, (2, 3, 3, 3)), index_bits=4)
    assert small.entries == 6 and small.bits == 3


def test_codebook_gradient_with_fixed_indices():
    w = _w(2).requires_grad_(True)
    q = KQLayer(w.detach(), index_bits=2)
    idx = q.indices.clone()
    out, _ = q.fake(w)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * g).sum().backward()
    # Every kernel of one entry gets the same gradient: the entry's (mean) gradient.
    for j in range(q.entries):
        members = (idx == j)
        grads = w.grad[members]
        assert torch.allclose(grads, grads[0].expand_as(grads))
        expect = g[members].sum(0) / members.sum()
        assert torch.allclose(grads[0], expect, atol=1e-6)
    assert torch.equal(q.indices, idx)


def test_kmeans_kernels_is_deterministic_and_a_fixed_point():
    x = _w(3).reshape(48, 9)
    c1, a1 = kmeans_kernels(x, 5, seed=0)
    c2, a2 = kmeans_kernels(x, 5, seed=0)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    assert torch.equal(torch.cdist(x.double(), c1).argmin(1), a1)


def test_bits_per_param_formula():
    assert bits_per_param(256, 16, 3, 4, 6) == pytest.approx((256 * 4 + 16 * 9 * 6) / (256 * 9))
    assert bits_per_param(128, 16, 3, 4) == pytest.approx(1376 / 1152)


def test_codebook_tensors_add_negated_kernels():
    book = np.array([[[1, 0], [0, 1]], [[2, 2], [0, 0]]])
    w = np.stack([np.stack([book[0], book[1]]), np.stack([-book[0], book[1]])])
    cb, idx = codebook_tensors(w, book, 4)
    assert np.array_equal(cb[idx], w) and cb.shape == (3, 2, 2)
    with pytest.raises(QuantizeError, match="needs 3 entries"):
        codebook_tensors(w, book, 2)


def test_options():
    m = get_method("kq", weight_bits=5, options={"dense_bits": 3})
    assert m.kind == "codebook" and m.bits == 5 and m.entry_bits == 6
    with pytest.raises(QuantizeError, match="entry_bits"):
        get_method("kq", options={"entry_bits": 1})
    with pytest.raises(QuantizeError, match="no 'levels'"):
        get_method("kq", levels=3)


def _kq(model="conv_bn_relu"):
    model, x = make(model)
    y = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(3))
    with deterministic(0):
        return quantize(model, x, weights="kq", weight_bits=2,
                        finetune=Finetune(x, y, epochs=1, log=None))


@pytest.mark.parametrize("model", ["conv_bn_relu", "downsample"])
def test_export_and_agreement(model):
    res = _kq(model)
    assert res.report.exact and res.report.ok
    convs = [n for n in res.graph.nodes if n.op == "conv2d"]
    assert convs and all(n.attrs["weight_kind"] == "codebook" for n in convs)
    for n in convs:
        t = n.tensors
        assert np.array_equal(t["codebook"][t["indices"]], t["weight"])
        assert t["indices"].max() < 2 ** n.attrs["weight_bits"]
        assert np.abs(t["codebook"]).max() <= 31 and n.attrs["entry_bits"] == 6
    info = res.graph.metadata["quantization"]["kq"]
    assert 0 < info["conv_bits_per_param"]
