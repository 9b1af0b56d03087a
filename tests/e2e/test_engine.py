"""End to end on the layer engine: a ResNet-18 topology, quantized, built, proven in Verilator.

The network is ResNet-18's layout (7x7 stride-2 stem with its padded 3x3 max
pool, eight basic blocks with identity and projection shortcuts, global
average pool, dense) at width 8 on 32x32 images, so that a build simulates in
seconds. Each weight method the engine runs at run time goes through
``python -m compiler build --engine layer``: the engine, its quad-SPI reader and
a flash model with the real read timing in one Verilator model, random inputs
without and with random valid/ready stalls, every output compared with the
golden integer model.
"""

import io
import json

import pytest

from compiler import qpk
from compiler.driver.build import BuildOptions, build

METHODS = {"ternary": {}, "pow2": {}, "lat2": {}, "kq": {"weight_bits": 2}}
INPUTS = 8


@pytest.fixture(scope="module")
def resnet_qpks(tmp_path_factory):
    import torch
    from compiler.frontend import quantize
    from compiler.frontend.train import deterministic
    from compiler.zoo.models import ResNet
    out = tmp_path_factory.mktemp("resnet8")
    cache = {}

    def get(method):
        if method not in cache:
            with deterministic(0):
                model = ResNet(width=8, num_classes=10).eval()
                x = torch.randn(64, 3, 32, 32)
                result = quantize(model, x, weights=method, act_bits=4,
                                  name=f"resnet8_{method}", **METHODS[method])
            cache[method] = out / f"{method}.qpk"
            result.save(cache[method])
        return cache[method]
    return get


def _build(path, out, **kw):
    log = io.StringIO()
    options = BuildOptions(board="arty_a7_100", out=out, engine="layer", synth=False, **kw)
    return build(path, options, stream=log), log.getvalue()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resnet_topology_is_bit_exact_on_the_engine(resnet_qpks, tmp_path, method):
    path = resnet_qpks(method)
    kinds = {n.attrs["weight_kind"] for n in qpk.load(path).nodes if "weight_kind" in n.attrs}
    assert {"lat2": "ternary2", "kq": "codebook"}.get(method, method) in kinds
    result, log = _build(path, tmp_path / "b", verify=INPUTS, seed=3)
    v = result.verification
    assert v["inputs"] == INPUTS and v["mismatches"] == 0 and v["bit_exact"], log
    # The timing model (compute vs stream per load group) predicts the measured rate.
    assert abs(v["cycles_per_inference"] - result.plan.cycles) <= 0.05 * result.plan.cycles, log
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["engine"] == "layer" and report["verification"]["bit_exact"] is True
    assert {s["bound"] for s in report["steps"]} <= {"compute", "stream"}
    assert len(report["steps"]) == 18          # stem, 16 convolutions, gap + dense
    for name in ("engine.v", "weights.bin", "report.md", "build.json"):
        assert (tmp_path / "b" / name).is_file(), name
    for step in ("[1/6]", "[2/6]", "[4/6]", "[6/6]"):
        assert step in log


def test_engine_build_is_deterministic(resnet_qpks, tmp_path):
    path = resnet_qpks("ternary")
    for name in ("a", "b"):
        _build(path, tmp_path / name, verify=0)
    for f in ("engine.v", "weights.bin", "report.md"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_auto_takes_the_layer_engine_when_dataflow_does_not_fit(resnet_qpks, tmp_path):
    """As a dataflow design the network needs twice the A7-35T's LUTs (a core per layer):
    auto says so and builds the layer engine."""
    log = io.StringIO()
    result = build(resnet_qpks("ternary"), BuildOptions(board="arty_a7_35", out=tmp_path / "a",
                                                        verify=0, synth=False), stream=log)
    assert result.engine == "layer", log.getvalue()
    assert "dataflow back end (a core per layer, weights on chip) does not fit" in log.getvalue()
    # Either back end's result says its clock the same way (bench.figures reads it).
    assert result.clock_hz == result.clocks.engine_hz == 100_000_000


def test_auto_keeps_the_dataflow_back_end_when_it_fits(small_cnn_qpk, tmp_path):
    log = io.StringIO()
    result = build(small_cnn_qpk["ternary"], BuildOptions(board="arty_a7_100", out=tmp_path / "a",
                                                          verify=0, synth=False), stream=log)
    assert result.options["engine"] == "auto" and result.engine == "dataflow", log.getvalue()
    assert (tmp_path / "a" / "accel.v").is_file()
