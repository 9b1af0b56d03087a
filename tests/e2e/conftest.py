"""The small CNN of the end-to-end tests, trained briefly on digits and quantized once."""

import pytest

from compiler.zoo.models import small_cnn


@pytest.fixture(scope="session")
def digits_data():
    from compiler.frontend.data import digits
    return digits()


@pytest.fixture(scope="session")
def small_cnn_float(digits_data):
    """The small CNN trained in float (about 98% on the digits test split)."""
    from compiler.frontend.train import deterministic, fit
    train, _ = digits_data
    with deterministic(0):
        return fit(small_cnn(), train.x, train.y, epochs=10, lr=1e-2, log=None)


@pytest.fixture(scope="session")
def small_cnn_qpk(tmp_path_factory, digits_data, small_cnn_float):
    """``{kind: path of the .qpk}`` for ternary and power-of-two weights."""
    from compiler.frontend import Finetune, quantize
    from compiler.frontend.train import deterministic
    train, _ = digits_data
    out = tmp_path_factory.mktemp("small_cnn")
    paths = {}
    model = small_cnn_float
    with deterministic(0):
        for kind in ("ternary", "pow2"):
            result = quantize(model, train.x[:256], weights=kind, act_bits=4,
                              name=f"small_cnn_{kind}",
                              finetune=Finetune(train.x, train.y, epochs=6, lr=2e-3, log=None))
            paths[kind] = out / f"small_cnn_{kind}.qpk"
            result.save(paths[kind])
    return paths
