"""The digits dataset split and the determinism of training."""

import torch

from compiler.frontend.data import digits
from compiler.frontend.train import deterministic, fit
from compiler.zoo.models import digits_cnn


def test_digits_split():
    train, test = digits()
    assert train.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) == -1.0 and float(train.x.max()) == 1.0
    assert set(test.y.tolist()) == set(range(10))
    again, _ = digits()
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)


def test_training_is_deterministic(capsys):
    train, _ = digits()

    def run():
        with deterministic(7):
            model = digits_cnn()
            fit(model, train.x[:256], train.y[:256], epochs=2, seed=7, label="t")
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("t epoch 1/2: loss ")


def test_deterministic_restores_threads():
    before = torch.get_num_threads()
    with deterministic(0, threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
