"""``python -m compiler quantize --method lat|lat2|laq|laq-log|pow2a``: one short run each."""

import pytest

from compiler import qpk
from compiler.driver.cli import main


@pytest.mark.parametrize("method, extra, kind, bits", [
    ("lat", [], "ternary", 2),
    ("lat", ["--lat-solver", "approx"], "ternary", 2),
    ("lat2", [], "ternary2", 6),
    ("laq", ["--weight-bits", "3", "--lat-solver", "exact"], "int", 3),
    ("laq-log", [], "pow2", 4),
    ("pow2a", ["--act-bits", "3"], "pow2", 4),
])
def test_zoo_model(tmp_path, capsys, method, extra, kind, bits):
    out = tmp_path / f"{method}.qpk"
    rc = main(["quantize", "digits_cnn", "-o", str(out), "--method", method,
               "--epochs", "1", "--finetune-epochs", "1", *extra])
    assert rc == 0
    text = capsys.readouterr().out
    assert "exact: 359/359 argmax equal" in text
    graph = qpk.load(out)
    q = graph.metadata["quantization"]
    assert q["method"] == method
    attrs = graph["conv1"].attrs
    assert (attrs["weight_kind"], attrs["weight_bits"]) == (kind, bits)
    if method in ("lat", "lat2", "laq", "laq-log"):
        solver = extra[extra.index("--lat-solver") + 1] if "--lat-solver" in extra else \
            ("exact" if method.startswith("lat") else "approx")
        assert q["solver"] == solver
    if method == "pow2a":
        assert q["act_levels"] == "pow2"
        assert graph["relu1"].attrs["levels"] == "pow2"


@pytest.mark.parametrize("args, message", [
    (["--method", "ternary", "--lat-solver", "exact"], "--lat-solver applies to the loss-aware"),
    (["--method", "lat", "--weight-bits", "3"], "lat weights are ternary"),
    (["--method", "pow2a", "--act-bits", "6"], "power-of-two activations need 1 to 4 bits"),
])
def test_errors(tmp_path, capsys, args, message):
    rc = main(["quantize", "digits_cnn", "-o", str(tmp_path / "x.qpk"), "--epochs", "0",
               "--finetune-epochs", "0", *args])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.qpk").exists()
