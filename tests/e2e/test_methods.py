"""Every quantization method, on the small CNN: quantize, export, build, Verilator.

Short training only (the accuracy runs live in ``bench/methods.py``); what is
checked here is the path: each method's ``.qpk`` compiles, and its hardware
equals the golden model bit for bit on 32 random inputs, with and without
valid/ready stalls. The weight forms that need their own hardware (``lat2``:
asymmetric ternary, ``kq``: kernel codebooks, ``pow2a``: power-of-two
activations, ``adaptive``: per-layer widths) are built both hard-wired and
folded into ROMs.
"""

import copy
import io

import numpy as np
import pytest

from compiler import qpk
from compiler.ir import interpret
from compiler.driver.build import BuildOptions, build
from compiler.passes import prepare

OPTIONS = {
    "ternary": {}, "pow2": {}, "int": {}, "inq": {}, "lat": {}, "lat2": {}, "laq": {},
    "laq-log": {}, "slq": {}, "mlq": {},
    # 2-bit kernel indices: 4 kernels, so the partial maps (C x 4) are fewer than the
    # adders of the plain convolutions and the codebook form is what gets built.
    "kq": {"weight_bits": 2}, "pow2a": {"act_bits": 3},
    "adaptive": {"method_options": {"budget": 3.0}},
}
FORMS = ("lat2", "kq", "pow2a", "adaptive")
CASES = [(m, "rom") for m in OPTIONS] + [(m, "hardwired") for m in FORMS]


@pytest.fixture(scope="module")
def method_qpks(tmp_path_factory, digits_data, small_cnn_float):
    from compiler.frontend import Finetune, quantize
    from compiler.frontend.train import deterministic
    train, _ = digits_data
    out = tmp_path_factory.mktemp("methods")
    cache = {}

    def get(method):
        if method not in cache:
            kw = dict(OPTIONS[method])
            with deterministic(0):
                result = quantize(copy.deepcopy(small_cnn_float), train.x[:256], weights=method,
                                  act_bits=kw.pop("act_bits", 4), name=f"small_cnn_{method}",
                                  finetune=Finetune(train.x[:512], train.y[:512], epochs=1,
                                                    log=None), **kw)
            cache[method] = out / f"{method}.qpk"
            result.save(cache[method])
        return cache[method]
    return get


def test_every_method_is_listed():
    from compiler.frontend.methods import method_names
    assert set(method_names()) == set(OPTIONS)


@pytest.mark.parametrize("method,weights", CASES)
def test_method_builds_bit_exact(method_qpks, tmp_path, method, weights):
    path = method_qpks(method)
    graph = qpk.load(path)
    kinds = {n.attrs["weight_kind"] for n in graph.nodes if "weight_kind" in n.attrs}
    expected = {"lat2": "ternary2", "kq": "codebook"}.get(method)
    if expected:
        assert expected in kinds
    if method == "pow2a":
        assert any(n.attrs.get("levels") == "pow2" for n in graph.nodes)
    if method == "adaptive":
        assert len({n.attrs["weight_bits"] for n in graph.nodes if "weight_bits" in n.attrs}) > 1
    log = io.StringIO()
    result = build(path, BuildOptions(board="ulx3s", out=tmp_path / "b", weights=weights,
                                      target_cycles=320 if weights == "rom" else None,
                                      verify=32, synth=False), stream=log)
    v = result.verification
    assert v["inputs"] >= 32 and v["mismatches"] == 0 and v["bit_exact"], log.getvalue()
    assert v["cycles_per_inference"] <= result.plan.cycles, log.getvalue()   # no rate warning
    # The prepared graph (forms rewritten) still computes the package's function.
    x = np.random.default_rng(1).integers(-128, 128, size=(16, 1, 8, 8))
    np.testing.assert_array_equal(interpret.run(prepare(graph), x), interpret.run(graph, x))
    if method in ("lat2", "kq"):
        report = (tmp_path / "b" / "report.md").read_text()
        assert "## Weight forms" in report
        forms = result.plan.graph.metadata["weight_forms"]
        assert any(f["form"] in ("ternary2", "codebook") for f in forms), forms
