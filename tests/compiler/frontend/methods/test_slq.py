"""INQ, SLQ and MLQ: clustering, partition and freezing, snapping, export and agreement."""

import numpy as np
import pytest
import torch
from float_models import make

from compiler import qpk
from compiler.errors import QuantizeError
from compiler.ops.weights import check_weights
from compiler.frontend import Finetune, quantize
from compiler.frontend.methods import get_method, method_names
from compiler.frontend.methods.inq import INQLayer
from compiler.frontend.methods.slq import (SLQLayer, csd_digits, kmeans1d, pow2_init, snap_csd2,
                                           snap_pow2, two_term_values)
from compiler.frontend.incremental import largest_unfrozen
from compiler.frontend.train import deterministic

torch.set_num_threads(1)


def _w(seed=0, shape=(6, 4, 3, 3)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


def _is_pow2(v):
    v = abs(int(v))
    return v > 0 and v & (v - 1) == 0


def test_registry_has_the_new_methods():
    assert {"inq", "slq", "mlq", "kq", "adaptive"} <= set(method_names())
    assert get_method("inq").kind == "pow2" and get_method("pow2").name == "pow2"
    assert get_method("mlq").kind == "ternary" and get_method("slq").bits == 4
    assert get_method("slq", options={"snap": "csd2"}).kind == "int"


def test_kmeans_starts_at_powers_of_two_and_keeps_zero():
    w = _w()
    init = pow2_init(w, 9)
    assert init.numel() == 9 and (init == 0).sum() == 1
    nz = init[init != 0].abs()
    assert torch.all(torch.log2(nz) == torch.round(torch.log2(nz)))
    top = float(w.abs().max())
    assert float(nz.max()) == 2.0 ** np.floor(np.log2(4 * top / 3))
    fixed = init == 0
    cent, assign = kmeans1d(w, init, fixed=fixed)
    assert float(cent[fixed]) == 0.0 and not torch.equal(cent, init)
    # Lloyd's fixed point: every weight is at its nearest centroid, free centroids are means.
    near = torch.argmin((w.reshape(-1, 1) - cent).abs(), 1).reshape(w.shape)
    assert torch.equal(near, assign)
    for j in range(9):
        if not fixed[j] and (assign == j).any():
            assert float(cent[j]) == pytest.approx(float(w[assign == j].mean()), abs=1e-6)


def test_slq_layer_partition_freezes_what_it_says():
    w = _w(1)
    q = SLQLayer("slq", w, 4, "pow2", None)
    assert q.clusters == 5                      # symmetric: 0 and 4 magnitudes
    js = q.open_clusters()[:2]
    q.mode = "partial"
    q.freeze_clusters(js, w)
    sel = torch.isin(q.assign, torch.tensor(js))
    assert torch.equal(q.mask, sel)
    assert torch.equal(q.frozen[sel], (torch.sign(w) * q.cent[q.assign])[sel])
    # Frozen weights ignore the shadow weights; the others pass through in full precision.
    w2 = (w + 0.05).requires_grad_(True)
    out, _ = q.fake(w2)
    assert torch.equal(out[sel], q.frozen[sel]) and torch.equal(out[~sel], w2[~sel])
    out.sum().backward()
    assert torch.all(w2.grad[sel] == 0) and torch.all(w2.grad[~sel] == 1)
    ints1, s1 = q.quantize(w)
    ints2, _ = q.quantize(w2.detach())
    assert torch.equal(ints1[sel], ints2[sel])
    # Re-clustering moves only the open centroids.
    closed = q.cent[q.closed].clone()
    q.recluster(w2.detach() * 1.3)
    assert torch.equal(q.cent[q.closed], closed)


def test_inq_layer_freezes_the_largest_weights():
    w = _w(2)
    q = INQLayer(w, bits=4, levels=7)
    sel = largest_unfrozen(w, q.mask, w.numel() // 2)
    q.freeze(sel, w)
    assert q.fraction == pytest.approx(0.5, abs=1 / w.numel())
    assert float(w[q.mask].abs().min()) >= float(w[~q.mask].abs().max())
    ints, scale = q.quantize(w * 0.1)          # the frozen half keeps its levels
    assert torch.equal(ints[q.mask], torch.round(q.frozen / scale)[q.mask])
    assert all(_is_pow2(v) or v == 0 for v in ints.flatten().tolist())


def test_csd_digits_and_two_term_values():
    assert [csd_digits(n) for n in (0, 1, 3, 5, 7, 11, 15, -7)] == [0, 1, 2, 2, 2, 3, 2, 2]
    assert two_term_values(4) == [1, 2, 3, 4, 5, 6, 7]
    six = two_term_values(6)
    assert 11 not in six and 27 not in six and {31, 30, 28, 24, 9} <= set(six)


def test_snap_gives_pow2_and_two_term_values():
    cent = torch.tensor([0.0, 0.11, 0.23, 0.52, 0.9])
    counts = torch.tensor([50, 20, 10, 5, 2])
    ints, s = snap_pow2(cent, counts, 4)
    assert ints[0] == 0 and all(_is_pow2(v) for v in ints[1:].tolist())
    assert max(abs(v) for v in ints.tolist()) <= 2 ** 6
    err_pow2 = float((counts * (cent - s * ints) ** 2).sum())
    ints2, s2 = snap_csd2(cent, counts, 6)
    assert all(csd_digits(v) <= 2 and abs(v) <= 31 for v in ints2.tolist())
    assert float((counts * (cent - s2 * ints2) ** 2).sum()) <= err_pow2 + 1e-12
    t, ts = snap_pow2(torch.tensor([0.0, 0.4]), torch.tensor([3, 4]), 2)   # ternary
    assert t.tolist() == [0.0, 1.0] and ts == pytest.approx(0.4)


def test_bad_options_are_clear():
    with pytest.raises(QuantizeError, match="unknown snap 'csd3'"):
        get_method("slq", options={"snap": "csd3"})
    with pytest.raises(QuantizeError, match="increasing fractions"):
        get_method("inq", options={"fractions": (0.5, 0.4, 1.0)})
    with pytest.raises(QuantizeError, match="ending at 1"):
        get_method("slq", options={"fractions": (0.5,)})
    with pytest.raises(QuantizeError, match="takes no option 'budget'"):
        get_method("slq", options={"budget": 3})
    with pytest.raises(QuantizeError, match="no 'levels'"):
        get_method("mlq", levels=3)


METHODS = [("inq", {}), ("slq", {}), ("slq", {"snap": "csd2"}), ("mlq", {}),
           ("slq", {"partition": "error"})]


def _run(name, opts, model="conv_bn_relu", epochs=2, seed=0):
    model, x = make(model)
    y = torch.randint(0, 5, (x.shape[0],), generator=torch.Generator().manual_seed(3))
    with deterministic(seed):
        return quantize(model, x, weights=name, method_options=opts,
                        finetune=Finetune(x, y, epochs=epochs, log=None))


@pytest.mark.parametrize("name, opts", METHODS)
def test_export_and_agreement(name, opts):
    res = _run(name, opts)
    assert res.report.exact and res.report.ok
    q = res.graph.metadata["quantization"]
    assert q["method"] == name
    for node in res.graph.nodes:
        if node.op in ("conv2d", "dense"):
            check_weights(node)
            if name in ("slq", "mlq"):
                distinct = np.unique(np.abs(node.tensors["weight"]))
                assert len(distinct) <= 2 ** (q["cluster_bits"] - 1) // 2 + 1
    if name in ("slq", "mlq"):
        assert "test_accuracy_before_snap" not in q["snap"]     # no holdout given
    back = qpk.from_bytes(res.to_bytes())
    assert [n.name for n in back.nodes] == [n.name for n in res.graph.nodes]


def test_without_retraining_data_quantizes_in_one_shot():
    model, x = make("mlp")
    res = quantize(model, x, weights="slq")
    assert res.report.exact and res.graph.metadata["quantization"]["snap"] == {}


def test_deterministic():
    a = _run("mlq", {}, model="mlp").to_bytes()
    b = _run("mlq", {}, model="mlp").to_bytes()
    assert a == b


@pytest.mark.parametrize("argv", [["--method", "mlq"],
                                  ["--method", "adaptive", "--size-budget-bits", "3",
                                   "--budget-kind", "adders"]])
def test_cli_digits_one_epoch(tmp_path, argv):
    from compiler.driver.cli import main
    out = tmp_path / "x.qpk"
    assert main(["quantize", "digits_cnn", "-o", str(out), "--epochs", "1",
                 "--finetune-epochs", "1", *argv]) == 0
    graph = qpk.load(out)
    assert graph.metadata["quantization"]["method"] == argv[1]


def test_cli_option_for_the_wrong_method(tmp_path, capsys):
    from compiler.driver.cli import main
    rc = main(["quantize", "digits_cnn", "-o", str(tmp_path / "x.qpk"), "--epochs", "0",
               "--method", "ternary", "--snap", "csd2"])
    assert rc == 1 and "takes no option 'snap'" in capsys.readouterr().err
