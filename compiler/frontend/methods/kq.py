"""Kernel quantization (KQ; Yu, Shi, Huang & Yu, arXiv 2003.05148).

Per conv layer with ``O x C`` kernels of ``k x k``:

1. *Kernel codebook*: k-means over the ``O*C`` kernels (vectors of ``k*k``) with
   ``B = min(2**b, O*C)`` entries (k-means++ seeding from a seeded generator,
   Lloyd's iterations); every kernel is replaced by the index of its entry, a
   ``b``-bit integer (``b = weight_bits``, default 4; a layer with fewer kernels
   uses ``ceil(log2 B)`` bits).
2. *Codebook fine-tuning*: the indices stay fixed; each codebook entry is the
   mean of the (trainable) shadow kernels assigned to it, so the gradient of
   every weight that uses an entry flows to that entry.
3. *6-bit entries*: the codebook is quantized to signed ``entry_bits`` (6)
   integers with one scale per layer, ``scale = max|codebook| / 31``, straight
   through during fine-tuning (the network always sees 6-bit entries).

Dense layers have no kernels: they use the one-shot ``pow2`` method (INQ levels,
``dense_bits``, default 4) -- multiplier-free like the rest.

Export: ``weight_kind="codebook"``, ``weight_bits = b``, ``entry_bits = 6``,
tensors ``weight`` (``codebook[indices]``), ``codebook`` ``(B, k, k)`` and
``indices`` ``(O, C)``. Bits per parameter, the paper's way:
``(O*C*b + B*k*k*entry_bits) / (O*C*k*k)``, per layer and over all conv layers
(``fq.info["kq"]``).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import QuantizeError
from ..ste import round_ste
from . import pow2
from .base import WeightMethod
from .staged import mac_steps
from ...ops import Conv2d, is_op

__all__ = ["KQMethod", "KQLayer", "kmeans_kernels", "bits_per_param", "codebook_tensors",
           "make"]

KMEANS_ITERS = 50


def kmeans_kernels(x, k, *, seed=0, iters=KMEANS_ITERS):
    """k-means++ then Lloyd on the rows of ``x`` (N, D): ``(centroids (k, D), assignment (N,))``."""
    x = x.detach().double()
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    cent = [x[first]]
    d2 = ((x - cent[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:
            j = int(torch.randint(n, (1,), generator=gen))
        else:
            j = int(torch.multinomial(d2 / total, 1, generator=gen))
        cent.append(x[j])
        d2 = torch.minimum(d2, ((x - x[j]) ** 2).sum(1))
    cent = torch.stack(cent)
    assign = torch.cdist(x, cent).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).double().reshape(-1, 1)
        cent = torch.where(counts > 0, sums / counts.clamp(min=1), cent)
        new = torch.cdist(x, cent).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return cent, assign


def bits_per_param(kernels, entries, ksize, index_bits, entry_bits=6):
    """The paper's measure of bits per weight.

    ``(kernels * index_bits + entries * k*k * entry_bits) / (kernels * k*k)``.
    """
    return (kernels * index_bits + entries * ksize * ksize * entry_bits) / (kernels * ksize * ksize)


def codebook_tensors(weight, codebook, max_entries):
    """``(codebook, indices)`` for final integer weights ``(O, C, k, k)``.

    Starts from the layer's own ``codebook`` (B, k, k) and appends any kernel of
    ``weight`` that is not in it (a kernel negated by a negative batch-norm scale);
    QuantizeError if that needs more than ``max_entries``.
    """
    o, c, k, _ = weight.shape
    book = [np.asarray(e, np.int64) for e in codebook]
    keys = {e.tobytes(): i for i, e in enumerate(book)}
    idx = np.zeros((o, c), np.int64)
    for a in range(o):
        for b in range(c):
            ker = np.ascontiguousarray(weight[a, b], dtype=np.int64)
            j = keys.get(ker.tobytes())
            if j is None:
                j = keys[ker.tobytes()] = len(book)
                book.append(ker)
            idx[a, b] = j
    if len(book) > max_entries:
        raise QuantizeError(f"codebook layer needs {len(book)} entries (negated kernels) but its "
                            f"{int(math.log2(max_entries))}-bit indices hold {max_entries}")
    return np.stack(book).reshape(-1, k, k), idx


class KQLayer:
    """One conv layer's kernel codebook (fixed indices) with the WeightMethod interface."""

    def __init__(self, weight, index_bits, entry_bits=6, seed=0):
        o, c, k, _ = weight.shape
        self.shape = tuple(weight.shape)
        self.entries = min(2 ** index_bits, o * c)
        self.bits = max(1, math.ceil(math.log2(self.entries))) if self.entries > 1 else 1
        self.name, self.kind, self.entry_bits = "kq", "codebook", entry_bits
        self.qmax = 2 ** (entry_bits - 1) - 1
        _, assign = kmeans_kernels(weight.reshape(o * c, k * k), self.entries, seed=seed)
        self.indices = assign.reshape(o, c)
        counts = torch.bincount(assign, minlength=self.entries).to(weight.dtype)
        self._counts = counts.clamp(min=1)

    def codebook(self, w):
        """Entries = mean of the shadow kernels assigned to them (differentiable)."""
        o, c, k, _ = self.shape
        flat = w.reshape(o * c, k * k)
        sums = torch.zeros(self.entries, k * k, dtype=w.dtype).index_add(
            0, self.indices.reshape(-1), flat)
        return (sums / self._counts.reshape(-1, 1)).reshape(self.entries, k, k)

    def _scale(self, book):
        top = float(book.detach().abs().max())
        return torch.tensor(top / self.qmax if top > 0 else 1.0, dtype=book.dtype)

    def fake(self, w):
        book = self.codebook(w)
        s = self._scale(book)
        q = round_ste(book / s) * s
        return q[self.indices], s

    def quantize(self, w):
        with torch.no_grad():
            book = self.codebook(w.detach())
            s = self._scale(book)
            ints = torch.clamp(torch.round(book / s), -self.qmax, self.qmax)
            return ints[self.indices], s

    def codebook_ints(self, w):
        with torch.no_grad():
            book = self.codebook(w.detach())
            return torch.clamp(torch.round(book / self._scale(book)), -self.qmax, self.qmax)

    def export_tensors(self, w, final_weight):
        """``(codebook, indices)``: int arrays matching ``final_weight``, sign flips included."""
        return codebook_tensors(final_weight, self.codebook_ints(w).numpy().astype(np.int64),
                                2 ** self.bits)

    def describe(self):
        return {"method": "kq", "weight_kind": self.kind, "weight_bits": self.bits,
                "entry_bits": self.entry_bits}


@dataclass(frozen=True)
class KQMethod(WeightMethod):
    entry_bits: int = 6
    dense_bits: int = 4
    seed: int = 0

    def quantize(self, w):
        if w.ndim != 4:
            return pow2.make(weight_bits=self.dense_bits).quantize(w)
        return KQLayer(w, self.bits, self.entry_bits, self.seed).quantize(w)

    def prepare(self, fq, layers, x):
        from ..fakequant import QRequant
        dense = pow2.make(weight_bits=self.dense_bits)
        feeds = {s.inputs[0]: s for s in fq.steps if isinstance(s, QRequant) and s.affine}
        info, params, bits = {}, 0, 0.0
        with torch.no_grad():
            for step in mac_steps(fq):
                if not is_op(step, Conv2d):
                    step.method = dense
                    continue
                # A negative folded batch-norm scale would negate the kernels of its channel
                # at export (the IR needs multipliers >= 0): fold the sign in now, so that the
                # codebook is learned on the kernels the hardware will use.
                req = feeds.get(step.step_name)
                if req is not None:
                    sign = torch.where(req.g < 0, -1.0, 1.0)
                    step.weight.mul_(sign.reshape(-1, 1, 1, 1))
                    req.g.mul_(sign)
                q = step.method = KQLayer(step.weight.detach(), self.bits, self.entry_bits,
                                          self.seed)
                o, c, k, _ = q.shape
                bpp = bits_per_param(o * c, q.entries, k, q.bits, q.entry_bits)
                info[step.step_name] = {"kernels": o * c, "entries": q.entries,
                                        "index_bits": q.bits, "bits_per_param": round(bpp, 4)}
                params += o * c * k * k
                bits += bpp * o * c * k * k
        fq.info["kq"] = {"layers": info,
                         "conv_bits_per_param": round(bits / params, 4) if params else None}

    def describe(self):
        return {**super().describe(), "entry_bits": self.entry_bits,
                "dense": f"pow2 {self.dense_bits}-bit"}


def make(weight_bits=None, levels=None, entry_bits=6, dense_bits=4, seed=0):
    if levels is not None:
        raise QuantizeError("kq takes no 'levels' option; weight_bits are the kernel index bits")
    bits = 4 if weight_bits is None else weight_bits
    if not 1 <= bits <= 12:
        raise QuantizeError(f"kq index bits (weight_bits) must be 1 to 12, not {bits}")
    if not 2 <= entry_bits <= 16:
        raise QuantizeError(f"kq entry_bits must be 2 to 16, not {entry_bits}")
    if not 2 <= dense_bits <= 8:
        raise QuantizeError(f"kq dense_bits (pow2 dense layers) must be 2 to 8, not {dense_bits}")
    return KQMethod(name="kq", kind="codebook", bits=bits, entry_bits=entry_bits,
                    dense_bits=dense_bits, seed=seed)
