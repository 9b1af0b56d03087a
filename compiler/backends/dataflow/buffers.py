"""How deep the buffers before a join must be so that a fork-join never deadlocks.

A fork sends each beat to all its branches at once and a join takes one beat
from each of its inputs at once. If branch A needs many fork beats before it
can emit its j-th beat (a convolution waits for rows below), the fork must keep
feeding branch B meanwhile, and B's output piles up before the join. With too
little room the fork stalls, A starves, and everything stops.

The analysis is exact and timing-free. For every stage, ``need[j]`` is the
number of input beats it must have received before it can produce output beat
``j``; composing these along a path gives the number of *fork* beats a join
input needs for its beat ``j``. When the join waits for A's beat ``j`` it has
consumed ``j`` beats of B, while B has had ``need_A[j]`` fork beats and so can
have produced ``P_B(need_A[j])`` beats. The buffer on B's input to the join
must hold the difference::

    depth_B = max_j  P_B(need_A[j]) - j,     P_B(i) = #{j' : need_B[j'] <= i}

and symmetrically for A. Two consecutive inferences are analysed so that beats
of the next image that a branch produces early are counted too.
"""

import numpy as np

__all__ = ["window_need", "one_to_one_need", "reduce_need", "compose", "join_depths"]

IMAGES = 2   # consecutive inferences analysed


def _tile(need, ins):
    """Repeat one image's need function for consecutive images."""
    return np.concatenate([need + n * ins for n in range(IMAGES)])


def window_need(height, width, kernel, stride, padding):
    """Pad + sliding window: input pixels needed before each output window.

    The pad stage walks the padded image in raster order and needs one input
    pixel per interior position; window ``(oy, ox)`` is complete once padded
    pixel ``(oy*s + k - 1, ox*s + k - 1)`` has been emitted.
    """
    ph, pw = height + 2 * padding, width + 2 * padding
    interior = np.zeros((ph, pw), dtype=np.int64)
    interior[padding:padding + height, padding:padding + width] = 1
    consumed = np.cumsum(interior.ravel()).reshape(ph, pw)   # inputs taken up to a position
    oh, ow = (ph - kernel) // stride + 1, (pw - kernel) // stride + 1
    ys = np.arange(oh) * stride + kernel - 1
    xs = np.arange(ow) * stride + kernel - 1
    need = consumed[ys[:, None], xs[None, :]].ravel()
    return _tile(need, height * width)


def one_to_one_need(beats):
    """A stage that emits one beat per input beat."""
    return np.arange(1, IMAGES * beats + 1, dtype=np.int64)


def reduce_need(beats_in):
    """A stage that emits one beat after taking a whole image (sums, flatten)."""
    return np.arange(1, IMAGES + 1, dtype=np.int64) * beats_in


def compose(outer, inner):
    """Need of ``outer`` (fed by ``inner``) counted in ``inner``'s input beats."""
    idx = outer - 1
    out = np.zeros_like(outer)
    has = idx >= 0
    out[has] = inner[idx[has]]
    return out


def _produced(need, available):
    """Beats a stage with ``need`` can emit given ``available`` input beats (vectorized)."""
    return np.searchsorted(need, available, side="right")


def join_depths(need_a, need_b):
    """Buffer depths ``(depth_a, depth_b)`` for the two inputs of a join.

    ``need_a`` and ``need_b`` are in beats of the common fork; both branches
    must produce the same number of beats.
    """
    if len(need_a) != len(need_b):
        raise ValueError("the branches of a join produce different numbers of beats")
    j = np.arange(len(need_a))
    depth_b = int(np.max(_produced(need_b, need_a) - j, initial=0))
    depth_a = int(np.max(_produced(need_a, need_b) - j, initial=0))
    return max(depth_a, 0), max(depth_b, 0)
