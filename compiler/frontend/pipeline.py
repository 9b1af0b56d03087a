"""Quantize a model and measure it: the steps the CLI and the zoo build share.

:func:`quantize_and_evaluate` calibrates, optionally fine-tunes (QAT), exports,
checks golden == fake-quant on the calibration inputs and on the test inputs,
and records float and quantized test accuracy in the graph's metadata.
"""

from dataclasses import dataclass

import torch

from .api import quantize
from .agreement import AgreementReport, check_agreement, golden_accuracy
from .train import Finetune, accuracy

__all__ = ["Outcome", "quantize_and_evaluate", "weight_storage_bits", "summary_rows"]


def weight_storage_bits(graph):
    """Bits of all weights (``numel * weight_bits``) and integer biases (their int width)."""
    from ..ir import bits_for_range
    total = 0
    for node in graph.nodes:
        if node.attrs.get("weight_kind") == "codebook":     # indices + codebook entries
            total += (node.tensors["indices"].size * node.attrs["weight_bits"]
                      + node.tensors["codebook"].size * node.attrs["entry_bits"])
        elif "weight" in node.tensors:
            total += node.tensors["weight"].size * node.attrs["weight_bits"]
        if "bias" in node.tensors and node.tensors["bias"].size:
            b = node.tensors["bias"]
            total += b.size * bits_for_range(min(int(b.min()), 0), max(int(b.max()), 0))[0]
    return total


@dataclass
class Outcome:
    result: object               # QuantResult
    float_accuracy: float        # None without labelled test data
    quant_accuracy: float
    test_report: AgreementReport
    size_bits: int


def quantize_and_evaluate(model, calib_x, *, train=None, test=None, weights="ternary",
                          weight_bits=None, levels=None, act_bits=4, input_bits=8,
                          finetune_epochs=0, finetune_lr=1e-3, seed=0, name=None,
                          metadata=None, log=print, method_options=None, act_levels=None):
    """Quantize ``model``; ``train``/``test`` are optional :class:`~.data.Dataset` (x, y)."""
    float_acc = accuracy(model, test.x, test.y) if test is not None and test.y is not None \
        else None
    spec = None
    if finetune_epochs and train is not None and train.y is not None:
        spec = Finetune(train.x, train.y, epochs=finetune_epochs, lr=finetune_lr, seed=seed,
                        log=log)
        if test is not None and test.y is not None:
            spec.holdout = (test.x, test.y)      # for methods that report (e.g. SLQ's snap)
    meta = dict(metadata or {})
    result = quantize(model, calib_x, weights=weights, weight_bits=weight_bits, levels=levels,
                      act_bits=act_bits, input_bits=input_bits, finetune=spec, name=name,
                      metadata=meta, method_options=method_options, act_levels=act_levels,
                      log=log)
    quant_acc, report = None, None
    if test is not None:
        # The calibration inputs were checked by quantize() already.
        same = (tuple(test.x.shape) == tuple(calib_x.shape)
                and bool(torch.equal(torch.as_tensor(test.x), torch.as_tensor(calib_x))))
        report = (result.report if same else
                  check_agreement(result.graph, result.model, test.x).assert_ok())
        if test.y is not None:
            quant_acc = golden_accuracy(result.graph, test.x, test.y)
    if float_acc is not None:
        result.graph.metadata["float_accuracy"] = round(float_acc, 6)
    if quant_acc is not None:
        result.graph.metadata["quantized_accuracy"] = round(quant_acc, 6)
    return Outcome(result, float_acc, quant_acc, report, weight_storage_bits(result.graph))


def summary_rows(outcome):
    """(quantity, value) rows for a table."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    rep = outcome.test_report or outcome.result.report
    q = outcome.result.graph.metadata["quantization"]
    return [
        ("method", f"{q['method']} ({q['weight_kind']}, {q['weight_bits']}-bit weights, "
                   f"{q['act_bits']}-bit activations)"),
        ("float accuracy", pct(outcome.float_accuracy)),
        ("quantized accuracy (golden)", pct(outcome.quant_accuracy)),
        ("agreement", str(rep)),
        ("weight size", f"{outcome.size_bits:,} bits ({outcome.size_bits / 8:,.0f} bytes)"),
    ]
