"""How fast a window-fed MAC really runs: the steady-state rate of Pad -> window -> MVU.

A sliding window emits in bursts: a window on every ``stride``-th pixel of every
``stride``-th row, nothing while the first ``kernel - 1`` columns and rows and the
rows between strides stream in. A folded MVU takes ``T`` cycles per window. The
window stage holds a finished window until the MVU (or the queue in front of it)
takes it, and takes no pixel meanwhile, so the two wait for each other: within a
burst the window waits for the MVU, between bursts the MVU waits for the window.
The stage's rate is then neither ``max(pixels, windows * T)`` nor their sum.

:func:`window_mvu_cycles` replays that handshake window by window, exactly as
the cores do it (``hw.window.SlidingWindow``, ``hw.fifo.StreamFIFO``,
``hw.mvu.RomMVU``), over three consecutive images, and returns the cycles
between the first windows of the last two: the period the pipeline settles to
when the pixels come as fast as the window takes them. A queue of windows
between window and MVU absorbs the bursts; :func:`queue_for_rate` finds the
shortest queue that lets the stage run at ``max(pixels, windows * T)``.
"""

from functools import lru_cache

import numpy as np

__all__ = ["window_mvu_cycles", "queue_for_rate", "QUEUE_LATENCY"]

#: Cycles from a window entering the queue to the MVU being able to take it
#: (hw.fifo.StreamFIFO over SyncFIFOBuffered: a write is readable two cycles later).
QUEUE_LATENCY = 2
IMAGES = 3


def _emitting(height, width, kernel, stride):
    """Per padded pixel (raster order): does the window emit on it?"""
    ys = np.arange(height)
    xs = np.arange(width)
    ey = (ys >= kernel - 1) & ((ys - kernel + 1) % stride == 0)
    ex = (xs >= kernel - 1) & ((xs - kernel + 1) % stride == 0)
    return (ey[:, None] & ex[None, :]).ravel()


@lru_cache(maxsize=4096)
def window_mvu_cycles(height, width, kernel, stride, cycles_per_window, queue=0):
    """Steady-state cycles per image of a window over a ``height`` x ``width`` (padded) map
    feeding an MVU that takes ``cycles_per_window`` cycles per window through ``queue``
    queued windows (0: none)."""
    emits = np.flatnonzero(_emitting(height, width, kernel, stride))
    if queue == 0:
        # Without a queue the window waits for the MVU to take each window, so window
        # j + 1 starts max(d_j, T) after window j, d_j the pixels between them (the last
        # one's to the next image's first): the replay below, in closed form.
        gaps = np.diff(np.append(emits, emits[0] + height * width))
        return int(np.maximum(gaps, cycles_per_window).sum())
    pixels = height * width
    t = 0                      # the cycle the window stage can take its next pixel
    prev = -1                  # the last pixel taken
    starts = []                # the cycle the MVU takes each window
    leaves = []                # the cycle each window leaves the window stage
    for image in range(IMAGES):
        base = image * pixels
        for p in emits:
            c = t + (base + p - prev - 1)        # the non-emitting pixels in between, one a cycle
            ready = c + 1                        # the window is valid the cycle after its pixel
            j = len(starts)
            if queue == 0:
                last = starts[-1] + cycles_per_window if starts else ready
                start = max(ready, last)
                leave = start
            else:
                # A full queue takes a window the cycle after window j - queue moved on
                # into the MVU (SyncFIFOBuffered's w_rdy comes from its level register).
                room = starts[j - queue] + 1 if j >= queue else ready
                leave = max(ready, room)
                last = starts[-1] + cycles_per_window if starts else 0
                start = max(leave + QUEUE_LATENCY, last)
            starts.append(start)
            leaves.append(leave)
            t = leave                            # the stage takes a pixel as the window goes
            prev = base + p
    per_image = len(emits)
    return starts[2 * per_image] - starts[per_image]


def queue_for_rate(height, width, kernel, stride, cycles_per_window, *, goal=None, limit=1024):
    """The shortest window queue that lets the stage take at most ``goal`` cycles per image.

    Without a ``goal`` (or one below what any queue reaches), the stage's own bound,
    ``max(pixels, windows * T)``, is the goal. A queue longer than ``limit`` is not
    considered.
    """
    windows = int(_emitting(height, width, kernel, stride).sum())
    bound = max(height * width, windows * cycles_per_window)
    goal = bound if goal is None else max(goal, bound)
    if window_mvu_cycles(height, width, kernel, stride, cycles_per_window, 0) <= goal:
        return 0
    lo, hi = 1, max(1, min(limit, windows))
    if window_mvu_cycles(height, width, kernel, stride, cycles_per_window, hi) > goal:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if window_mvu_cycles(height, width, kernel, stride, cycles_per_window, mid) <= goal:
            hi = mid
        else:
            lo = mid + 1
    return lo
