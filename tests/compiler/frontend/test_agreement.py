"""Golden integer model == fake-quant model, for the digits CNN and under QAT."""

import numpy as np
import pytest
import torch
from float_models import make

from compiler.frontend import Finetune, check_agreement, quantize
from compiler.frontend.agreement import golden_accuracy, golden_logits, input_to_int
from compiler.frontend.data import digits
from compiler.frontend.train import accuracy, deterministic, fit
from compiler.zoo.models import digits_cnn


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.mark.parametrize("method", ["ternary", "pow2"])
def test_random_digits_cnn_agrees_exactly(data, method):
    train, _ = data
    model, _ = make("digits_cnn", seed=3)
    x = train.x[:200]
    result = quantize(model, x, weights=method)
    report = check_agreement(result.graph, result.model, x)
    assert report.ok and report.exact
    assert report.samples == report.argmax_equal == 200 and report.max_steps == 0
    assert report.inputs_equal
    with torch.no_grad():
        fake = result.model.eval()(x).numpy()
    assert np.array_equal(golden_logits(result.graph, x), fake)


@pytest.mark.parametrize("method", ["ternary", "pow2"])
def test_trained_and_finetuned_digits_cnn_agrees_exactly(data, method):
    train, test = data
    with deterministic(0):
        model = digits_cnn()
        fit(model, train.x, train.y, epochs=2, log=None)
        result = quantize(model, train.x[:256], weights=method,
                          finetune=Finetune(train.x[:512], train.y[:512], epochs=1, log=None))
    report = check_agreement(result.graph, result.model, test.x)
    assert report.ok and report.exact
    # The fake-quant model's accuracy (eval mode) is the golden model's accuracy.
    assert accuracy(result.model, test.x, test.y) == golden_accuracy(result.graph, test.x, test.y)
    assert golden_accuracy(result.graph, test.x, test.y) > 0.5


def test_training_mode_is_differentiable():
    model, x = make("digits_cnn")
    fq = quantize(model, x).model.train()
    out = fq(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    grads = {name: p.grad for name, p in fq.named_parameters()}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for name, g in grads.items() if name.endswith("weight"))


def test_disagreement_is_reported():
    model, x = make("digits_cnn")
    result = quantize(model, x)
    graph = result.graph.copy()
    graph["fc"].tensors["bias"] = graph["fc"].tensors["bias"] + 3
    report = check_agreement(graph, result.model, x)
    assert not report.ok and not report.exact and report.max_steps == pytest.approx(3)
    assert "FAILED" in str(report)
    with pytest.raises(AssertionError, match="disagree"):
        report.assert_ok()


def test_input_quantization_matches(data):
    train, _ = data
    model, _ = make("digits_cnn")
    result = quantize(model, train.x[:64])
    g = result.graph
    assert g.metadata["input_scale"] == pytest.approx(1 / 127)   # digits lie in [-1, 1]
    x_int = input_to_int(g, train.x)
    assert x_int.min() >= -127 and x_int.max() == 127
    assert np.array_equal(x_int, result.model.quantize_input(train.x).numpy())


def test_report_string():
    model, x = make("mlp")
    report = quantize(model, x).report
    assert str(report).startswith("exact: 64/64 argmax equal, max deviation 0 output steps")
