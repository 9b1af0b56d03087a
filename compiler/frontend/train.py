"""Training loops: float training and quantization-aware fine-tuning (QAT).

Both use :func:`fit`: Adam, cross-entropy, mini-batches in an order drawn from
a seeded generator, one progress line per epoch (and on a terminal a bar over the
batches with the time left, :mod:`boards.progress`). Inside :func:`deterministic`
(fixed seed, a fixed number of threads, deterministic kernels) a run gives the
same parameters bit for bit every time on one machine, which is what makes the
zoo's ``.qpk`` files reproducible.
"""

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Finetune", "deterministic", "fit", "accuracy", "finetune"]


@contextlib.contextmanager
def deterministic(seed=0, threads=1):
    """Seed torch, fix the thread count and require deterministic kernels; restore after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def accuracy(model, x, y, *, batch=512):
    """Top-1 accuracy of ``model`` (put in eval mode and restored)."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            correct += int((out.reshape(out.shape[0], -1).argmax(1) == y[i:i + batch]).sum())
    model.train(was_training)
    return correct / max(1, x.shape[0])


def fit(model, x, y, *, epochs, lr=1e-2, batch_size=64, weight_decay=0.0, seed=0,
        label="train", log=print, after_step=None):
    """Train ``model`` on ``(x, y)`` with Adam and a cosine learning-rate decay.

    ``after_step(optimizer)``, if given, runs after every optimizer step (the
    loss-aware methods read Adam's second moments there). ``log`` gets a line per
    epoch (``None``: silence).
    """
    from boards.progress import Bar       # not at the top: boards loads Amaranth
    if epochs <= 0:
        return model
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-x.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    with Bar(log, total=steps, unit="batch") as bar:
        for epoch in range(epochs):
            bar.describe(f"{label} epoch {epoch + 1}/{epochs}")
            order = torch.randperm(x.shape[0], generator=gen)
            total, correct = 0.0, 0
            for i in bar.over(range(0, x.shape[0], batch_size)):
                idx = order[i:i + batch_size]
                out = model(x[idx])
                loss = F.cross_entropy(out, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step(opt)
                sched.step()
                total += float(loss.detach()) * len(idx)
                correct += int((out.argmax(1) == y[idx]).sum())
            bar.line(f"{label} epoch {epoch + 1}/{epochs}: loss {total / x.shape[0]:.4f}, "
                     f"train accuracy {correct / x.shape[0]:.4f}")
    model.eval()
    return model


@dataclass
class Finetune:
    """Options of quantization-aware fine-tuning (the ``finetune`` argument of ``quantize``)."""

    x: torch.Tensor
    y: torch.Tensor
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    log: object = print


def finetune(fq_model, spec):
    """Fine-tune a calibrated fake-quant model with straight-through estimators.

    Float shadow weights and the folded batch norm parameters learn; activation
    scales stay as calibrated. Leaves the model in eval mode.

    Loss-aware methods (``method.uses_curvature``: lat, lat2, laq) get Adam's
    diagonal Hessian ``sqrt(v_hat) + eps`` of their weights after every step
    (:func:`~.methods.curvature.update_from_adam`), so that the next forward pass
    (and the final :meth:`freeze`) quantizes with it: the proximal Newton step.
    """
    from .methods.curvature import update_from_adam
    x = torch.as_tensor(spec.x, dtype=torch.float32)
    y = torch.as_tensor(spec.y, dtype=torch.int64)
    hook = None
    if any(getattr(s.method, "uses_curvature", False) for s in fq_model.mac_steps):
        hook = lambda opt: update_from_adam(fq_model, opt)  # noqa: E731
    return fit(fq_model, x, y, epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size,
               seed=spec.seed, label="finetune", log=spec.log, after_step=hook)
