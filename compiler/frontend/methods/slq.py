"""Single- and multi-level quantization (SLQ, MLQ; Xu, Wang, Yang, Chen, Liu & Li, AAAI 2018).

**SLQ** (``slq``), per layer with ``b`` bits:

1. *Clustering*: 1-D k-means over the layer's weights with ``K = 2**(b-1) + 1``
   centroids. Zero is one of them and stays exactly 0 (it is never updated);
   the others start at powers of two, ``±2**n`` for ``n1 - K/2 + 1 <= n <= n1``
   with INQ's ``n1 = floor(log2(4 * max|W| / 3))``.
2. *Loss-based partition*: for every cluster not yet quantized, the increase of
   the training loss (on the first 512 training samples, real-valued forward)
   when that cluster alone is quantized (its weights set to its centroid). The
   clusters that hurt least are quantized and frozen first, until the layer's
   quantized fraction reaches the schedule's next step (50%, 75%, 87.5%, 100%
   of the weights by default); the others form the re-trained group.
3. *Retrain* the re-trained group in full precision (the quantized weights are
   fixed), *re-cluster* it with the remaining centroids (Lloyd's algorithm
   started from their current values), and repeat until every cluster is
   quantized.

**MLQ** (``mlq``, ternary by default): the same width-level partition plus
*incremental layer compensation* in depth: the layers are quantized a group
at a time (default: half of the layers, then the rest), the group chosen by
the same criterion (the layers whose one-shot clustering hurts the loss
least go first); while a group is partitioned and retrained, the layers not
yet reached stay full precision and retrain with it.

**Hardware snap**: the final centroids are arbitrary reals; a shift-add datapath
needs ``centroid = scale * integer`` with a cheap integer. ``snap="pow2"``
(default) maps every centroid to ``scale * ±2**e`` (IR kind ``pow2``, ``b``
bits: ``e <= 2**(b-1) - 2``; with ``b = 2`` this is ternary, kind ``ternary``),
``snap="csd2"`` to a value with at most two non-zero signed digits,
``scale * (±2**a ± 2**c)`` (IR kind ``int`` with ``snap_bits`` bits, default
``b + 2``). The layer's one scale is the candidate (``|c| / v`` for every
centroid ``c`` and code value ``v``) minimising the squared error over the
layer's weights. The accuracy just before and just after the snap goes into
the ``.qpk`` metadata (``snap``); after the snap the folded batch norms are
retuned for one stage (the weights stay fixed).
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from ...ops import pow2_max_exponent
from ..incremental import probe_batch, probe_loss, real_accuracy, retrain
from .base import WeightMethod
from .inq import DEFAULT_FRACTIONS
from .staged import LayerQuantizer, check_fractions, mac_steps, stage_epochs

__all__ = ["SLQMethod", "MLQMethod", "SLQLayer", "kmeans1d", "pow2_init", "snap_pow2",
           "snap_csd2", "csd_digits", "two_term_values", "make_slq", "make_mlq", "SNAPS"]

SNAPS = ("pow2", "csd2")
KMEANS_ITERS = 50


# -- clustering ------------------------------------------------------------------------------

def pow2_init(w, k):
    """``k`` (odd) initial centroids: 0 and ``±2**n`` for the ``(k-1)/2`` top INQ exponents."""
    top = float(w.abs().max()) if w.numel() else 0.0
    top = top if top > 0 else 1.0
    n1 = float(torch.floor(torch.log2(torch.tensor(top * 4 / 3, dtype=torch.float64))))
    mags = [2.0 ** (n1 - i) for i in range((k - 1) // 2)]
    return torch.tensor(sorted([-m for m in mags] + [0.0] + mags), dtype=w.dtype)


def _nearest(w, cent):
    return torch.argmin((w.reshape(-1, 1) - cent.reshape(1, -1)).abs(), dim=1).reshape(w.shape)


def kmeans1d(w, init, *, fixed=None, iters=KMEANS_ITERS):
    """Lloyd's algorithm on the values ``w``: ``(centroids, assignment)``.

    ``fixed`` (bool per centroid) marks centroids that never move (zero). An empty
    cluster keeps its centroid. Deterministic: ties go to the lower index.
    """
    cent = init.clone().to(w.dtype)
    fixed = torch.zeros(cent.shape, dtype=torch.bool) if fixed is None else fixed
    flat = w.detach().reshape(-1)
    assign = _nearest(flat, cent)
    for _ in range(iters):
        sums = torch.zeros_like(cent).index_add_(0, assign, flat)
        counts = torch.zeros_like(cent).index_add_(0, assign, torch.ones_like(flat))
        new = torch.where((counts > 0) & ~fixed, sums / counts.clamp(min=1), cent)
        new_assign = _nearest(flat, new)
        done = torch.equal(new_assign, assign) and torch.equal(new, cent)
        cent, assign = new, new_assign
        if done:
            break
    return cent, assign.reshape(w.shape)


# -- snapping centroids to hardware values ------------------------------------------------------

def csd_digits(n):
    """Non-zero digits of the canonical signed-digit (non-adjacent) form of the integer ``n``."""
    n, count = abs(int(n)), 0
    while n:
        if n & 1:
            count += 1
            n -= 2 - (n & 3)          # digit +1 if n % 4 == 1, -1 if n % 4 == 3
        n >>= 1
    return count


def two_term_values(bits):
    """Positive integers of a signed ``bits``-bit ``int`` with at most two non-zero CSD digits."""
    hi = 2 ** (bits - 1) - 1
    return [v for v in range(1, hi + 1) if csd_digits(v) <= 2]


def _snap(cent, counts, codes):
    """Best ``(ints per centroid, scale)`` with ints in ``±codes`` or 0, weighted squared error."""
    codes = torch.tensor(sorted(codes), dtype=torch.float64)
    c = cent.double()
    n = counts.double()
    levels = torch.cat([torch.zeros(1, dtype=torch.float64), codes])
    cands = sorted({float(abs(x) / v) for x in c.tolist() if x != 0 for v in codes.tolist()})
    best = None
    for s in cands:
        idx = torch.argmin((c.abs().reshape(-1, 1) - s * levels.reshape(1, -1)).abs(), dim=1)
        ints = torch.sign(c) * levels[idx]
        err = float((n * (c - s * ints) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, ints, s)
    if best is None:                  # every centroid is 0
        return torch.zeros_like(c), 1.0
    return best[1], best[2]


def snap_pow2(cent, counts, bits):
    """Centroids -> ``scale * (0 or ±2**e)``, ``e <= pow2_max_exponent(bits)``."""
    return _snap(cent, counts, [2.0 ** e for e in range(pow2_max_exponent(bits) + 1)])


def snap_csd2(cent, counts, bits):
    """Centroids -> ``scale * v`` with ``v`` a signed ``bits``-bit integer of <= 2 CSD digits."""
    return _snap(cent, counts, [float(v) for v in two_term_values(bits)])


# -- the per-layer state --------------------------------------------------------------------

class SLQLayer(LayerQuantizer):
    """One layer's clusters: centroids, assignment, which clusters are quantized.

    With ``symmetric`` (default) the clusters are over ``|W|`` and a weight's value
    is ``sign(W) * centroid``: centroids come in ``±`` pairs, as the IR's sign-symmetric
    kinds (``ternary``, ``pow2``) need. Otherwise over ``W`` itself.
    """

    def __init__(self, name, weight, bits, snap, snap_bits, symmetric=True):
        kind, out_bits = ("int", snap_bits) if snap == "csd2" else \
            (("ternary", 2) if bits == 2 else ("pow2", bits))
        super().__init__(name, kind, out_bits, weight)
        self.levels_bits, self.snap_kind, self.snap_bits = bits, snap, snap_bits
        self.symmetric = symmetric
        self.k = 2 ** (bits - 1) + 1
        self.reset(weight)

    def _values(self, w):
        return w.abs() if self.symmetric else w

    def _sign(self, w):
        return torch.sign(w) if self.symmetric else torch.ones_like(w)

    def reset(self, w):
        """Cluster ``w`` afresh (k-means from powers of two); nothing quantized."""
        w = w.detach()
        init = pow2_init(w, self.k)
        if self.symmetric:
            init = init[init >= 0]
        self.zero = int(torch.nonzero(init == 0)[0])
        fixed = torch.zeros(init.numel(), dtype=torch.bool)
        fixed[self.zero] = True
        self.cent, self.assign = kmeans1d(self._values(w), init, fixed=fixed)
        self.closed = torch.zeros(init.numel(), dtype=torch.bool)
        self.mask = torch.zeros(w.shape, dtype=torch.bool)
        self.frozen = torch.zeros_like(w)
        self.sign = self._sign(w)
        self.snapped = None           # (ints per centroid, scale) once snapped

    @property
    def clusters(self):
        return self.cent.numel()

    def recluster(self, w):
        """Re-cluster the re-trained (unfrozen) weights with the open centroids."""
        open_ = ~self.closed
        free = ~self.mask
        if not open_.any() or not free.any():
            return
        idx = torch.nonzero(open_).flatten()
        cent, assign = kmeans1d(self._values(w.detach())[free], self.cent[idx],
                                fixed=(idx == self.zero))
        self.cent = self.cent.clone()
        self.cent[idx] = cent
        self.assign = self.assign.clone()
        self.assign[free] = idx[assign]

    def open_clusters(self):
        """Open clusters that still have unfrozen members."""
        members = torch.zeros(self.clusters, dtype=torch.bool)
        members[self.assign[~self.mask]] = True
        return [int(j) for j in torch.nonzero(members & ~self.closed).flatten()]

    def freeze_clusters(self, js, w):
        sel = torch.isin(self.assign, torch.tensor(js, dtype=torch.long)) & ~self.mask
        sign = self._sign(w.detach())
        self.sign = torch.where(sel, sign, self.sign)
        self.frozen = torch.where(sel, self.sign * self.cent[self.assign], self.frozen)
        self.mask = self.mask | sel
        self.closed = self.closed.clone()
        self.closed[list(js)] = True

    def counts(self):
        return torch.bincount(self.assign.flatten(), minlength=self.clusters)

    # LayerQuantizer interface
    def scale(self):
        return torch.tensor(self.table()[1], dtype=torch.float32)

    def rule_index(self, w):
        """Index of the nearest open centroid (of any, once all are closed)."""
        open_ = ~self.closed if (~self.closed).any() else torch.ones(self.clusters,
                                                                    dtype=torch.bool)
        idx = torch.nonzero(open_).flatten()
        return idx[_nearest(self._values(w), self.cent[idx])]

    def rule(self, w):
        return self._sign(w) * self.cent[self.rule_index(w)]

    def table(self):
        """``(ints per centroid, scale)``: the snap of the current centroids."""
        if self.snapped is not None:
            return self.snapped
        fn = snap_csd2 if self.snap_kind == "csd2" else snap_pow2
        return fn(self.cent, self.counts(), self.snap_bits if self.snap_kind == "csd2"
                  else self.levels_bits)

    def quantize(self, w):
        with torch.no_grad():
            w = w.detach()
            ints, s = self.table()
            idx = torch.where(self.mask, self.assign, self.rule_index(w))
            sign = torch.where(self.mask, self.sign, self._sign(w))
            return (sign * ints[idx]).to(w.dtype), torch.tensor(s, dtype=w.dtype)

    def snap(self):
        """Replace the frozen centroid values by their snapped hardware values."""
        ints, s = self.table()
        self.snapped = (ints, s)
        self.frozen = (s * self.sign * ints[self.assign]).to(self.frozen.dtype)
        self.mask = torch.ones_like(self.mask)


# -- the methods ------------------------------------------------------------------------------

def _cluster_deltas(fq, step, q, probe):
    """Loss increase of quantizing each open cluster of ``q`` alone (or its squared error)."""
    out = {}
    if probe is None:
        w = step.weight.detach()
        for j in q.open_clusters():
            sel = (q.assign == j) & ~q.mask
            out[j] = float(((q._values(w) - q.cent[j]) ** 2)[sel].sum())
        return out
    base = probe_loss(fq, probe)
    for j in q.open_clusters():
        saved = (q.mask, q.frozen, q.closed, q.sign)
        q.freeze_clusters([j], step.weight)
        out[j] = probe_loss(fq, probe) - base
        q.mask, q.frozen, q.closed, q.sign = saved
    return out


def _partition(fq, step, q, frac, probe):
    """Freeze the clusters of least loss increase until ``frac`` of the layer is quantized."""
    deltas = _cluster_deltas(fq, step, q, probe)
    for j in sorted(deltas, key=lambda j: (deltas[j], j)):
        if q.fraction >= frac - 1e-9:
            break
        q.freeze_clusters([j], step.weight)
    if frac >= 1.0 and q.open_clusters():
        q.freeze_clusters(q.open_clusters(), step.weight)


def _snap_and_report(fq, layers, finetune, epochs, stage, label):
    report = {}
    sets = []
    if finetune is not None:
        sets.append(("train", finetune.x, finetune.y))
        hold = getattr(finetune, "holdout", None)
        if hold is not None:
            sets.append(("test", hold[0], hold[1]))
    for tag, x, y in sets:
        report[f"{tag}_accuracy_before_snap"] = round(real_accuracy(fq, x, y), 6)
    for q in layers:
        q.snap()
    for tag, x, y in sets:
        report[f"{tag}_accuracy_after_snap"] = round(real_accuracy(fq, x, y), 6)
    retrain(fq, finetune, epochs, stage=stage, label=f"{label} after snap")
    for q in layers:
        q.mode = "full"
    if finetune is not None and finetune.log:
        finetune.log(f"{label}: snap {report}")
    return report


@dataclass(frozen=True)
class SLQMethod(WeightMethod):
    levels_bits: int = 4
    snap: str = "pow2"
    snap_bits: int = None
    fractions: tuple = DEFAULT_FRACTIONS
    partition: str = "loss"
    symmetric: bool = True

    def layer(self, step):
        return SLQLayer(self.name, step.weight.detach(), self.levels_bits, self.snap,
                        self.snap_bits, self.symmetric)

    def quantize(self, w):
        """One shot (no partition, no retraining): cluster, snap."""
        q = SLQLayer(self.name, w.detach(), self.levels_bits, self.snap, self.snap_bits,
                     self.symmetric)
        return q.quantize(w)

    def prepare(self, fq, layers, x):
        for step in mac_steps(fq):
            step.method = self.layer(step)

    def _width_stages(self, fq, pairs, finetune, epochs, stage0, label):
        probe = probe_batch(finetune, None) if self.partition == "loss" else None
        for i, frac in enumerate(self.fractions):
            for step, q in pairs:
                if i:
                    q.recluster(step.weight)
                _partition(fq, step, q, frac, probe)
            retrain(fq, finetune, epochs, stage=stage0 + i, label=f"{label} {100 * frac:g}%")
        return stage0 + len(self.fractions)

    def schedule(self, fq, finetune, x):
        pairs = [(s, s.method) for s in mac_steps(fq)]
        for _, q in pairs:
            q.mode = "partial"
        epochs = stage_epochs(finetune, len(self.fractions))
        stage = self._width_stages(fq, pairs, finetune, epochs, 0, self.name)
        fq.info["snap"] = _snap_and_report(fq, [q for _, q in pairs], finetune, epochs, stage,
                                           self.name)
        fq.info["stage_epochs"] = epochs

    def describe(self):
        return {**super().describe(), "cluster_bits": self.levels_bits,
                "centroids": 2 ** (self.levels_bits - 1) + 1, "snap": self.snap,
                "fractions": list(self.fractions), "partition": self.partition,
                "symmetric": self.symmetric}


@dataclass(frozen=True)
class MLQMethod(SLQMethod):
    layer_fractions: tuple = (0.5, 1.0)

    def schedule(self, fq, finetune, x):
        steps = mac_steps(fq)
        pairs = [(s, s.method) for s in steps]
        for _, q in pairs:
            q.mode = "float"
        probe = probe_batch(finetune, None) if self.partition == "loss" else None
        n_stages = len(self.layer_fractions) * len(self.fractions)
        epochs = stage_epochs(finetune, n_stages)
        todo, stage, order = list(pairs), 0, []
        for d, lf in enumerate(self.layer_fractions):
            count = int(round(lf * len(pairs))) - (len(pairs) - len(todo))
            if not todo or count <= 0:
                continue
            # The layers whose (fresh, one-shot) clustering hurts the loss least go first.
            scores = []
            for step, q in todo:
                q.reset(step.weight)
                if probe is None:
                    scores.append(float(((step.weight.detach() - q.rule(step.weight)) ** 2)
                                        .mean()))
                    continue
                q.mode = "full"
                scores.append(probe_loss(fq, probe))
                q.mode = "float"
            ranked = [p for _, p in sorted(zip(scores, range(len(todo))))]
            group = [todo[i] for i in ranked[:count]]
            todo = [p for i, p in enumerate(todo) if i not in ranked[:count]]
            order.append([s.step_name for s, _ in group])
            for _, q in group:
                q.mode = "partial"
            stage = self._width_stages(fq, group, finetune, epochs, stage,
                                       f"{self.name} depth {d + 1}")
        fq.info["layer_order"] = order
        fq.info["snap"] = _snap_and_report(fq, [q for _, q in pairs], finetune, epochs, stage,
                                           self.name)
        fq.info["stage_epochs"] = epochs

    def describe(self):
        return {**super().describe(), "layer_fractions": list(self.layer_fractions)}


def _make(cls, name, default_bits, weight_bits, levels, snap, snap_bits, fractions, partition,
          symmetric, **extra):
    if levels is not None:
        raise QuantizeError(f"{name} takes no 'levels' option: it clusters into "
                            f"2**(weight_bits-1)+1 centroids")
    bits = default_bits if weight_bits is None else weight_bits
    if not 2 <= bits <= 8:
        raise QuantizeError(f"{name} weights need 2 to 8 bits, not {bits}")
    if snap not in SNAPS:
        raise QuantizeError(f"{name}: unknown snap {snap!r}; known: {', '.join(SNAPS)}")
    if partition not in ("loss", "error"):
        raise QuantizeError(f"{name}: unknown partition {partition!r}; known: loss, error")
    if snap == "csd2":
        snap_bits = bits + 2 if snap_bits is None else int(snap_bits)
        if not 3 <= snap_bits <= 16:
            raise QuantizeError(f"{name}: snap_bits must be 3 to 16, not {snap_bits}")
        kind, out_bits = "int", snap_bits
    else:
        if snap_bits is not None:
            raise QuantizeError(f"{name}: snap_bits applies to snap='csd2' only")
        kind, out_bits = ("ternary", 2) if bits == 2 else ("pow2", bits)
    fr = check_fractions(fractions, QuantizeError)
    return cls(name=name, kind=kind, bits=out_bits, levels_bits=bits, snap=snap,
               snap_bits=snap_bits, fractions=fr, partition=partition,
               symmetric=bool(symmetric), **extra)


def make_slq(weight_bits=None, levels=None, snap="pow2", snap_bits=None,
             fractions=DEFAULT_FRACTIONS, partition="loss", symmetric=True):
    return _make(SLQMethod, "slq", 4, weight_bits, levels, snap, snap_bits, fractions,
                 partition, symmetric)


def make_mlq(weight_bits=None, levels=None, snap="pow2", snap_bits=None, fractions=(0.5, 1.0),
             partition="loss", symmetric=True, layer_fractions=(0.5, 1.0)):
    lf = check_fractions(layer_fractions, QuantizeError)
    return _make(MLQMethod, "mlq", 2, weight_bits, levels, snap, snap_bits, fractions,
                 partition, symmetric, layer_fractions=lf)
