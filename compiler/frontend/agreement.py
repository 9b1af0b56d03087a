"""Does the fake-quantized torch model compute what the golden integer model computes?

:func:`check_agreement` runs the exported graph on :mod:`sim.golden` (through
:func:`compiler.ir.interpret.run`) and the :class:`~.fakequant.FakeQuantModel` in
eval mode on the same float inputs, and compares ``golden * output_scale`` with
the fake-quant output. The contract: the same argmax on every sample and a
difference of at most one output step (``output_scale``) everywhere. The exact
mode is built to make the difference zero, and the report says whether it is.

It also reports, for information, how far the *real-valued* (training-mode)
forward pass is from the integers: float32 rounding can move a value across a
rounding boundary there, which is why QAT results are always re-checked in
exact mode.
"""

from dataclasses import dataclass

import numpy as np
import torch

from sim.golden import int_range

from ..ir import interpret

__all__ = ["AgreementReport", "check_agreement", "input_to_int", "golden_logits",
           "golden_accuracy"]


def input_to_int(graph, x):
    """The graph's input integers for float inputs ``x``: ``clamp(round(x / scale))``.

    Round half to even in float64, as :meth:`FakeQuantModel.quantize_input`.
    """
    inp = graph.input
    lo, hi = int_range(inp.attrs["bits"], inp.attrs["signed"])
    x = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return np.clip(np.round(x / inp.attrs["scale"]), lo, hi).astype(np.int64)


def golden_logits(graph, x):
    """Real outputs of the golden integer model for float inputs: ``int * output_scale``."""
    y = interpret.run(graph, input_to_int(graph, x))
    return y.astype(np.float64) * graph.metadata["output_scale"]


def golden_accuracy(graph, x, y):
    """Top-1 accuracy of the golden integer model on float inputs ``x`` and labels ``y``."""
    out = interpret.run(graph, input_to_int(graph, x))
    pred = out.reshape(out.shape[0], -1).argmax(axis=1)
    y = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    return float(np.mean(pred == y))


@dataclass
class AgreementReport:
    samples: int
    inputs_equal: bool           # fake-quant and numpy input quantization agree
    argmax_equal: int            # samples with the same argmax
    max_steps: float             # max |golden * s - fake_quant| / s
    exact: bool                  # every output bit-identical
    real_max_steps: float        # the same for the real-valued (training) forward
    real_argmax_equal: int

    @property
    def ok(self):
        # 1e-9: the deviation is measured in float (|a*s - b*s| / s), not in integers.
        return (self.inputs_equal and self.argmax_equal == self.samples
                and self.max_steps <= 1 + 1e-9)

    def __str__(self):
        verdict = "exact" if self.exact and self.ok else ("ok" if self.ok else "FAILED")
        return (f"{verdict}: {self.argmax_equal}/{self.samples} argmax equal, max deviation "
                f"{self.max_steps:g} output steps (real-valued training forward: "
                f"{self.real_argmax_equal}/{self.samples} argmax equal)")

    def assert_ok(self):
        if not self.ok:
            raise AssertionError(f"golden and fake-quant models disagree: {self}")
        return self


def check_agreement(graph, fq_model, x_float, *, batch=256):
    """Compare the golden model on ``graph`` with ``fq_model`` (eval mode) on ``x_float``."""
    x = torch.as_tensor(x_float, dtype=torch.float32)
    scale = graph.metadata["output_scale"]
    was_training = fq_model.training
    fq_model.eval()
    gold, fake, real, inputs_equal = [], [], [], True
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch):
                xb = x[i:i + batch]
                x_int = input_to_int(graph, xb)
                inputs_equal &= bool(np.array_equal(x_int, fq_model.quantize_input(xb).numpy()))
                gold.append(interpret.run(graph, x_int).astype(np.float64) * scale)
                fake.append(fq_model(xb).numpy())
                real.append(fq_model.run_real(xb).double().numpy())
    finally:
        fq_model.train(was_training)
    gold, fake, real = (np.concatenate(v).reshape(x.shape[0], -1) for v in (gold, fake, real))

    def compare(other):
        steps = float(np.max(np.abs(gold - other)) / scale) if gold.size else 0.0
        same = int(np.sum(gold.argmax(axis=1) == other.argmax(axis=1)))
        return steps, same

    steps, same = compare(fake)
    real_steps, real_same = compare(real)
    return AgreementReport(samples=int(x.shape[0]), inputs_equal=inputs_equal, argmax_equal=same,
                           max_steps=steps, exact=bool(np.array_equal(gold, fake)),
                           real_max_steps=real_steps, real_argmax_equal=real_same)
