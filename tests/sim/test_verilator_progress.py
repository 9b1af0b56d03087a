"""A simulation's progress: a bar of output beats on a terminal, a line now and then
elsewhere (sim.verilator._ProgressWatch reading the bench's progress file)."""

import io
import json
import time

from boards import progress
from boards.progress import Lines
from sim.verilator import _ProgressWatch


class Terminal(io.StringIO):
    def isatty(self):
        return True


def watch(path, say, every):
    w = _ProgressWatch(path, 10, 20, say, every=every)
    w.start()
    path.write_text(json.dumps({"cycles": 1500, "in": 5, "out": 8}))
    time.sleep(10 * w.every)
    w.stop()


def test_lines_off_a_terminal(tmp_path):
    said = []
    watch(tmp_path / "progress.json", said.append, every=0.02)
    assert len(said) == 1 and said[0].startswith(
        "  ... 1,500 cycles simulated, 5 of 10 input beats in, 8 of 20 output beats out (")


def test_bar_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "TICK", 0.02)
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    watch(tmp_path / "progress.json", Lines(out, "  "), every=15.0)
    text = out.getvalue()
    assert "\r  simulating:  40%|" in text and "| 8/20 [" in text and "1,500 cycles]" in text
    assert "\n" not in text and text.endswith("\r")          # no lines, the bar erased
