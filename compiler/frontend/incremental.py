"""Training helpers of the incremental methods (INQ, SLQ, MLQ): retrain stages, loss probes.

The loops themselves live with their methods (:mod:`.methods.inq`,
:mod:`.methods.slq`); they reuse :func:`compiler.frontend.train.fit` (Adam,
cross-entropy, seeded order) for every retraining stage, so a run is
deterministic inside :func:`compiler.frontend.train.deterministic`.
"""

import torch
import torch.nn.functional as F

from .train import fit

__all__ = ["retrain", "probe_batch", "probe_loss", "real_accuracy", "largest_unfrozen"]

#: samples of the training data used to rank clusters / layers by their loss increase
PROBE_SAMPLES = 512


def retrain(fq, finetune, epochs, *, stage, label):
    """``epochs`` of retraining of ``fq`` (train mode: frozen weights fixed, the rest learns)."""
    if finetune is None or epochs <= 0:
        return
    x = torch.as_tensor(finetune.x, dtype=torch.float32)
    y = torch.as_tensor(finetune.y, dtype=torch.int64)
    fit(fq, x, y, epochs=epochs, lr=finetune.lr, batch_size=finetune.batch_size,
        seed=finetune.seed + 1000 * (stage + 1), label=label, log=finetune.log)


def probe_batch(finetune, x_calib):
    """``(x, y)`` to measure loss increases on: the first training samples, or None."""
    if finetune is None:
        return None
    x = torch.as_tensor(finetune.x[:PROBE_SAMPLES], dtype=torch.float32)
    y = torch.as_tensor(finetune.y[:PROBE_SAMPLES], dtype=torch.int64)
    return x, y


def probe_loss(fq, batch):
    """Cross-entropy of the real-valued (training-mode) forward on ``batch``, no gradient."""
    x, y = batch
    with torch.no_grad():
        return float(F.cross_entropy(fq.run_real(x), y))


def real_accuracy(fq, x, y, *, batch=512):
    """Top-1 accuracy of the real-valued forward (quantized weights may be non-integer)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.int64)
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((fq.run_real(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, x.shape[0])


def largest_unfrozen(w, mask, count):
    """Bool mask of the ``count`` largest-magnitude weights not in ``mask`` (stable order)."""
    sel = torch.zeros_like(mask)
    if count <= 0:
        return sel
    mag = torch.where(mask, torch.full_like(w, -1.0), w.detach().abs()).flatten()
    order = torch.sort(mag, descending=True, stable=True).indices[:count]
    sel.view(-1)[order] = True
    return sel & ~mask
