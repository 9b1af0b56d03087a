"""Training and calibration progress: a line per epoch, and a bar on a terminal."""

import io
import re

import pytest
import torch

from boards import progress
from boards.progress import Lines
from compiler.frontend import quantize
from compiler.frontend.data import digits
from compiler.frontend.train import deterministic, fit
from compiler.zoo.models import digits_cnn


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def data():
    train, _ = digits()
    return train.x[:256], train.y[:256]


def train(data, log):
    with deterministic(7):
        fit(digits_cnn(), *data, epochs=2, seed=7, label="t", log=log)


EPOCH = r"t epoch \d/2: loss \d\.\d{4}, train accuracy \d\.\d{4}"


def test_a_line_per_epoch_off_a_terminal(data):
    out = io.StringIO()
    train(data, Lines(out))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2
    assert all(re.fullmatch(EPOCH, line) for line in lines) and lines[1].startswith("t epoch 2/2")


def test_a_bar_on_a_terminal(data, monkeypatch):
    monkeypatch.setattr(progress, "TICK", 0.05)         # draw from the first batches
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    train(data, Lines(out))
    text = out.getvalue()
    # 256 inputs in batches of 64, two epochs: 8 batches, with the time left.
    assert re.search(r"\rt epoch [12]/2: +\d+%\|.*\| \d/8 \[\d\d:\d\d<\d\d:\d\d", text), text
    lines = [seg.split("\r")[-1] for seg in text.split("\n")]
    assert len(lines) == 3 and all(re.fullmatch(EPOCH, line) for line in lines[:2])
    assert lines[2].strip() == ""                      # the bar erased at the end


def test_calibration_bar(monkeypatch):
    model, x = digits_cnn().eval(), torch.rand(16, 1, 8, 8) * 2 - 1
    out = io.StringIO()
    quantize(model, x, log=Lines(out))
    assert out.getvalue() == ""                        # calibration has no lines
    monkeypatch.setattr(progress, "TICK", 0.0)          # calibrating 16 inputs is quick
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    quantize(model, x, log=Lines(out))
    assert re.search(r"^\rcalibrating: +0%\|.*\| 0/\d+ \[", out.getvalue()), out.getvalue()
