"""ImageNet ResNet-18 (torchvision's layout, 224x224) on the layer engine, proven in Verilator.

The product's headline: ``quantize resnet18`` then ``build --board arty_a7_100``.
``auto`` finds that a core per layer cannot hold 11.7 M weights and builds the
layer engine; one image goes through the engine, its quad-SPI reader and the
flash model (about 10 M cycles, a few minutes), without and with random
stalls, and is compared with the golden model value for value.
"""

import io
import json

import pytest

from compiler.driver.build import BuildOptions, build
from compiler.driver.cli import main


@pytest.fixture(scope="module")
def resnet18_qpk(tmp_path_factory):
    path = tmp_path_factory.mktemp("resnet18") / "resnet18.qpk"
    assert main(["quantize", "resnet18", "-o", str(path)]) == 0
    return path


def test_resnet18_builds_for_the_arty_a7_100_and_is_bit_exact(resnet18_qpk, tmp_path):
    log = io.StringIO()
    result = build(resnet18_qpk, BuildOptions(board="arty_a7_100", out=tmp_path / "b", verify=1,
                                              synth=False), stream=log)
    text = log.getvalue()
    assert result.engine == "layer", text
    assert "does not fit" in text                      # auto said why it left dataflow
    v = result.verification
    assert v["inputs"] == 1 and v["bit_exact"] and v["mismatches"] == 0, text
    assert abs(v["cycles_per_inference"] - result.plan.cycles) <= 0.05 * result.plan.cycles
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["bank"]["pe"] * report["bank"]["simd"] >= 256
    assert sum(b["brams"] for b in report["buffers"]) <= 270
    assert {s["bound"] for s in report["steps"]} == {"compute", "stream"}
    # The Vivado plan has the flash pins and the engine's clocks.
    board = tmp_path / "b" / "board"
    xdc = "".join(p.read_text() for p in board.rglob("*.xdc"))
    assert "qspi" in xdc.lower() or "flash" in xdc.lower(), sorted(board.rglob("*"))


def test_resnet18_does_not_fit_the_arty_a7_35(resnet18_qpk, tmp_path):
    """The A7-35T's 100 RAMB18s: refused with what each buffer needs, nothing written."""
    log = io.StringIO()
    from compiler.errors import BuildError
    with pytest.raises(BuildError) as err:
        build(resnet18_qpk, BuildOptions(board="arty_a7_35", out=tmp_path / "b", verify=0,
                                         synth=False), stream=log)
    message = str(err.value)
    assert "activations" in message and "block RAMs" in message and "100 block RAMs" in message
    assert not (tmp_path / "b" / "engine.v").exists()
