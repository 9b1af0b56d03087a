"""The zoo's prebuilt .qpk files: present, loadable without torch, accurate, consistent."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler import passes, qpk
from compiler.errors import QpkError, UserError
from compiler.zoo import MODELS, list_models, zoo_path

ROOT = Path(__file__).resolve().parents[3]


def test_registry():
    assert list_models() == ["digits_cnn_pow2", "digits_cnn_ternary"]
    for name in list_models():
        assert zoo_path(name).is_file()
        assert zoo_path(name).name == MODELS[name][0]
    with pytest.raises(QpkError, match="no zoo model of that name") as info:
        zoo_path("resnet18")
    assert isinstance(info.value, UserError)


def test_zoo_loads_without_torch():
    code = (
        "import sys\n"
        "from compiler import qpk, passes\n"
        "from compiler.zoo import list_models, zoo_path\n"
        "from compiler.driver.model import resolve_model\n"
        "for name in list_models():\n"
        "    g = qpk.load(zoo_path(name))\n"
        "    passes.prepare(g)\n"
        "    resolve_model(name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok', len(list_models()))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 2"


@pytest.mark.parametrize("name, kind, bits", [("digits_cnn_ternary", "ternary", 2),
                                              ("digits_cnn_pow2", "pow2", 4)])
def test_zoo_models(name, kind, bits):
    from compiler.frontend.agreement import golden_accuracy
    from compiler.frontend.data import digits
    graph = qpk.load(zoo_path(name))
    meta = graph.metadata
    assert meta["zoo_name"] == name
    assert meta["quantization"]["weight_kind"] == kind
    assert meta["quantization"]["act_bits"] == 4
    macs = [n for n in graph.nodes if n.op in ("conv2d", "dense")]
    assert len(macs) == 5 and all(n.attrs["weight_bits"] == bits for n in macs)
    # The recorded accuracy is the golden model's on the fixed digits test split.
    _, test = digits()
    acc = golden_accuracy(graph, test.x, test.y)
    assert acc == pytest.approx(meta["quantized_accuracy"], abs=1e-6)
    assert acc > 0.93 and meta["float_accuracy"] > 0.95
    prepared = passes.prepare(graph)
    assert prepared.output.shape == (10,)
    assert np.isfinite(meta["output_scale"]) and meta["output_scale"] > 0
