"""Progress of long steps: a tqdm bar on a terminal, plain lines everywhere else.

Long steps (training epochs, calibration, Verilator's compile and simulation, Yosys,
nextpnr) report through a ``say(text)`` callback that prints one line. The contract:

* A step says the same lines whether or not its output is a terminal, so a log
  holds what a terminal's scrollback holds, without carriage returns or escapes.
* When ``say`` writes to a terminal, a :class:`Bar` below those lines shows the
  step meanwhile: count, rate and time left for a known total, elapsed time
  otherwise. It appears after :data:`TICK` seconds, is redrawn at least that often
  while the work blocks, and is erased when the step ends.
* ``say``'s stream is ``sys.stdout`` for :func:`print`, the ``stream`` attribute of
  a :class:`Lines`, and unknown (so: no bar) for anything else, such as a list's
  ``append``. ``None`` (or another false value) says nothing and draws nothing.
* A stream is a terminal if ``isatty()`` says so and ``TERM`` is not ``dumb``
  (editor shells that cannot redraw a line set it). ``TQDM_DISABLE=1`` gives the
  plain lines on a terminal too.
* Off a terminal, a step with no known total given ``every`` seconds says
  ``"<desc>: N min elapsed"`` that often (Yosys and nextpnr in a CI log).

It lives in ``boards`` because that is the lowest package the users share without
a new import direction: ``compiler`` and ``sim`` import ``boards``, never the other
way round, and ``hw`` holds hardware only. ``boards`` imports Amaranth on the way,
so the compiler and ``sim`` import this module where they use it.
"""

import os
import sys
import threading
import time

from tqdm import tqdm

__all__ = ["Bar", "Lines", "TICK", "is_terminal", "stream_of"]

#: Seconds before a bar appears (short steps stay unmarked) and between its redraws.
TICK = 1.0


def _minutes(seconds):
    m, s = divmod(int(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


class Lines:
    """A ``say`` that prints each text as a line to ``stream`` after ``prefix``; a bar
    drawn for it goes to the same stream with the same indent."""

    def __init__(self, stream, prefix=""):
        self.stream, self.prefix = stream, prefix

    def __call__(self, text):
        print(self.prefix + text, file=self.stream, flush=True)


def stream_of(say):
    """The stream ``say`` prints to, or None if that is not known."""
    return sys.stdout if say is print else getattr(say, "stream", None)


def is_terminal(stream):
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class Bar:
    """The bar of one step for ``say`` (see the module): ``total`` units of work, or
    ``None`` for elapsed time only. Off a terminal it draws nothing, and :meth:`line`
    is ``say``. Use it as a context manager, which erases the bar at the end."""

    def __init__(self, say, *, total=None, unit="it", desc="", every=None):
        self.say = say
        stream = stream_of(say)
        self._bar = self._stop = None
        if not say:
            return
        if not is_terminal(stream):
            if every and total is None:
                # A log gets a line every ``every`` seconds instead: a silent hour of
                # place and route looks like a hung job.
                self._start(lambda t0=time.monotonic(): say(
                    f"{desc}: {_minutes(time.monotonic() - t0)} elapsed"), every)
            return
        desc = getattr(say, "prefix", "") + desc
        bar = tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                   dynamic_ncols=True, delay=TICK,
                   bar_format=None if total else "{desc}: {elapsed} elapsed")
        if bar.disable:                  # TQDM_DISABLE
            return
        self._bar = bar
        # The work blocks (a subprocess, a long batch): redraw from here so that the
        # elapsed time and time left keep moving.
        self._start(bar.refresh, TICK)

    def _start(self, tick, seconds):
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(tick, seconds), daemon=True)
        self._ticker.start()

    @property
    def drawing(self):
        return self._bar is not None

    def _tick(self, tick, seconds):
        while not self._stop.wait(seconds):
            tick()

    def update(self, n=1):
        if self._bar is not None:
            self._bar.update(n)

    def set(self, n, postfix=None):
        """Progress to ``n`` units, with an optional note after the rate."""
        if self._bar is not None:
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n - self._bar.n)

    def describe(self, desc):
        if self._bar is not None:
            self._bar.set_description_str(getattr(self.say, "prefix", "") + desc, refresh=False)

    def over(self, items):
        """``items``, one unit of progress for each one done."""
        for item in items:
            yield item
            self.update()

    def line(self, text):
        """Say ``text``, above the bar if there is one."""
        if self._bar is None:
            if self.say:
                self.say(text)
            return
        with tqdm.external_write_mode(file=self._bar.fp):
            self.say(text)

    def close(self):
        if self._stop is not None:
            self._stop.set()
            self._ticker.join()
            self._stop = None
        if self._bar is not None:
            self._bar.clear()        # tqdm's close() erases only what update() drew
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
