"""``python -m compiler quantize``: zoo models, user factory files, and user errors."""

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler import qpk
from compiler.driver.cli import main

ROOT = Path(__file__).resolve().parents[3]

USER_FILE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))


def cnn():
    torch.manual_seed(0)
    return Net()


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def with_sigmoid():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10))


def not_a_module():
    return 42
'''


@pytest.fixture
def user(tmp_path):
    (tmp_path / "net.py").write_text(USER_FILE)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=96)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    np.savez(tmp_path / "unlabelled.npz", x=x)
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "wrong_shape.npz", x=x[:, :, :5, :5])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "a_file").write_text("mine")
    return tmp_path


def test_zoo_model(tmp_path, capsys):
    out = tmp_path / "digits.qpk"
    rc = main(["quantize", "digits_cnn", "-o", str(out), "--method", "pow2", "--levels", "5",
               "--epochs", "1", "--finetune-epochs", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "float epoch 1/1" in text and "finetune epoch 1/1" in text
    for row in ("float accuracy", "quantized accuracy (golden)", "agreement", "weight size"):
        assert f"| {row}" in text
    assert "exact: 359/359 argmax equal" in text
    graph = qpk.load(out)
    assert graph.metadata["quantization"]["levels"] == 5
    assert (graph["conv1"].attrs["weight_kind"], graph["conv1"].attrs["weight_bits"]) == ("pow2", 4)


@pytest.mark.parametrize("factory, extra", [("cnn", ["--finetune-epochs", "1"]),
                                            ("mlp", ["--method", "int", "--weight-bits", "3",
                                                     "--epochs", "1"])])
def test_user_factory(user, capsys, factory, extra):
    out = user / "out" / f"{factory}.qpk"
    rc = main(["quantize", f"{user / 'net.py'}:{factory}", "-o", str(out),
               "--data", str(user / "data.npz"), "--calib", "32", *extra])
    assert rc == 0
    text = capsys.readouterr().out
    assert "exact: 96/96 argmax equal" in text
    graph = qpk.load(out)
    assert graph.name == "net"
    assert "float_accuracy" in graph.metadata and "quantized_accuracy" in graph.metadata


def test_user_factory_without_labels(user, capsys):
    out = user / "u.qpk"
    assert main(["quantize", f"{user / 'net.py'}:mlp", "-o", str(out),
                 "--data", str(user / "unlabelled.npz")]) == 0
    assert "| float accuracy              | -" in capsys.readouterr().out
    assert "float_accuracy" not in qpk.load(out).metadata


@pytest.mark.parametrize("args, message", [
    (["{d}/net.py:with_sigmoid", "--data", "{d}/data.npz"],
     "error: node '_2' (nn.Sigmoid): unsupported op"),
    (["{d}/net.py:not_a_module", "--data", "{d}/data.npz"], "returned int, not a torch.nn.Module"),
    (["{d}/net.py:missing", "--data", "{d}/data.npz"], "no function 'missing'"),
    (["{d}/nope.py:cnn", "--data", "{d}/data.npz"], "nope.py: no such file"),
    (["{d}/net.py:cnn"], "needs --data FILE.npz"),
    (["{d}/net.py:cnn", "--data", "{d}/objects.npz"], "objects.npz: cannot read"),
    (["{d}/net.py:cnn", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["{d}/net.py:cnn", "--data", "{d}/unlabelled.npz", "--epochs", "2"], "training needs labels"),
    (["resnet_zoo_missing"], "unknown model 'resnet_zoo_missing'"),
    (["digits_cnn", "--data", "{d}/data.npz"], "trains on its own dataset"),
    (["{d}/net.py:cnn", "--data", "{d}/data.npz", "--method", "ternary", "--weight-bits", "3"],
     "ternary weights have 2 bits"),
])
def test_user_errors(user, capsys, args, message):
    args = [a.format(d=user) for a in args]
    rc = main(["quantize", args[0], "-o", str(user / "x.qpk"), *args[1:]])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (user / "x.qpk").exists()


@pytest.mark.parametrize("data, message", [
    ("empty.npz", "empty.npz: empty file"),
    ("wrong_shape.npz", "fails on inputs of shape [3, 1, 5, 5]: RuntimeError: mat1 and mat2"),
    ("a_file", "a_file: cannot read as .npz"),
])
def test_bad_calibration_data(user, capsys, data, message):
    rc = main(["quantize", f"{user / 'net.py'}:cnn", "-o", str(user / "x.qpk"),
               "--data", str(user / data)])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("out, message", [
    ("/proc/shiftadd.qpk", "not writable"),
    ("{d}/a_file/x.qpk", "a_file is a file"),
    ("{d}", "is a directory"),
    ("", "must not be empty"),
])
def test_unwritable_output_is_refused_before_any_work(user, capsys, out, message):
    with pytest.raises(SystemExit) if not out else contextlib.nullcontext():
        rc = main(["quantize", f"{user / 'net.py'}:cnn", "-o", out.format(d=user),
                   "--data", str(user / "data.npz"), "--epochs", "50"])
        assert rc == 1
    captured = capsys.readouterr()
    assert message in captured.err and "epoch" not in captured.out, captured.err
    assert (user / "a_file").read_text() == "mine"


def test_module_entry_point(user):
    """The real command line, in a subprocess: one line on error, status 1."""
    proc = subprocess.run([sys.executable, "-m", "compiler", "quantize",
                           f"{user / 'net.py'}:with_sigmoid", "-o", str(user / "y.qpk"),
                           "--data", str(user / "data.npz")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "(nn.Sigmoid): unsupported op" in proc.stderr


def test_parser_does_not_import_torch():
    """Every command builds the parser (with the quantize arguments); only quantize needs torch."""
    code = ("import sys\n"
            "from compiler.driver.cli import _parser\n"
            "args = _parser().parse_args(['quantize', 'digits_cnn', '-o', 'x.qpk'])\n"
            "import compiler.frontend\n"
            "assert args.method == 'ternary' and args.act_bits == 4\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_method_choices_are_the_registry():
    from compiler.frontend import method_names
    from compiler.frontend.cli import METHODS
    assert list(METHODS) == method_names()
