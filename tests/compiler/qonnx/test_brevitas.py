"""A Brevitas-quantized CNN, exported to QONNX, imported, built and run in Verilator.

Two checks: the imported golden model equals the Brevitas model's own output on
the same inputs, and the built accelerator equals the golden model bit for bit
(the build's verification, with random stalls).
"""

import io
import warnings

import numpy as np
import pytest

from compiler.driver.build import BuildOptions, build
from compiler.driver.cli import main
from compiler.ir import interpret
from compiler.qonnx import import_onnx

torch = pytest.importorskip("torch")


def _brevitas_cnn():
    """Ternary stem with batch norm, a residual block sharing one quantizer, max pool,
    global average pool and a dense head with a 32-bit quantized bias."""
    import brevitas.nn as qnn
    from brevitas.quant import Int32Bias

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=2, bias=False)
            self.bn = torch.nn.BatchNorm2d(8)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = torch.nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(8, 8, 3, padding=1, weight_bit_width=4, bias=False)
            self.join = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.r2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.gap = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = qnn.QuantLinear(8, 10, weight_bit_width=4, bias=True,
                                      bias_quant=Int32Bias)

        def forward(self, x):
            x = self.pool(self.r1(self.bn(self.c1(self.q(x)))))
            x = self.r2(self.join(self.c2(x)) + self.join(x))
            return self.fc(torch.flatten(self.gap(x), 1))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.bn.parameters():
            p.uniform_(0.5, 1.5)
        net.train()
        for _ in range(4):                      # batch-norm statistics and activation scales
            net(torch.randn(32, 1, 8, 8))
    return net.eval()


@pytest.fixture(scope="module")
def brevitas_onnx(tmp_path_factory):
    from brevitas.export import export_qonnx
    net = _brevitas_cnn()
    path = tmp_path_factory.mktemp("brevitas") / "brevitas_cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.randn(1, 1, 8, 8), export_path=str(path))
    return net, path


def test_golden_model_equals_brevitas(brevitas_onnx):
    net, path = brevitas_onnx
    graph = import_onnx(path)
    assert [n.op for n in graph.nodes] == ["input", "conv2d", "threshold", "maxpool", "conv2d",
                                           "threshold", "threshold", "add", "threshold", "gap",
                                           "dense"]
    s_in, s_out = graph.metadata["input_scale"], graph.metadata["output_scale"]
    x = torch.randn(64, 1, 8, 8) * 2
    ints = np.clip(np.round(x.numpy() / s_in), -128, 127).astype(np.int64)
    with torch.no_grad():
        ref = net(torch.tensor(ints * s_in, dtype=torch.float32))
    ref = getattr(ref, "value", ref).numpy() / s_out
    gold = interpret.run(graph, ints)
    assert np.abs(ref - np.round(ref)).max() < 1e-2
    np.testing.assert_array_equal(gold, np.round(ref).astype(np.int64))
    assert gold.std(axis=0).min() > 0               # every output moves with the input


def test_imported_brevitas_cnn_builds_bit_exact(brevitas_onnx, tmp_path, capsys):
    _, path = brevitas_onnx
    qpk_path = tmp_path / "brevitas_cnn.qpk"
    assert main(["import", str(path), "-o", str(qpk_path)]) == 0
    capsys.readouterr()
    log = io.StringIO()
    result = build(qpk_path, BuildOptions(board="ulx3s", out=tmp_path / "build", verify=16,
                                          synth=False), stream=log)
    v = result.verification
    assert v["bit_exact"] and v["mismatches"] == 0 and v["inputs"] >= 16, log.getvalue()


def test_the_readme_example_exports_a_model_the_importer_takes(tmp_path):
    """``examples/brevitas_digits.py`` (the README's import route), one epoch."""
    import runpy
    from pathlib import Path
    example = runpy.run_path(str(Path(__file__).parents[3] / "examples" / "brevitas_digits.py"))
    assert example["main"](["-o", str(tmp_path / "d.onnx"), "--epochs", "1"]) == 0
    graph = import_onnx(tmp_path / "d.onnx")
    assert [n.attrs.get("weight_kind") for n in graph.nodes if n.op in ("conv2d", "dense")] \
        == ["ternary", "int", "int"]
