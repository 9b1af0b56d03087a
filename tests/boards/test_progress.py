"""Progress bars on a terminal, plain lines elsewhere (boards.progress)."""

import io
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from boards import progress
from boards.progress import Bar, Lines, is_terminal, stream_of
from boards.toolchain import _run_step


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def fast(monkeypatch):
    """Bars that appear and redraw at once, so that a short test sees them."""
    monkeypatch.setattr(progress, "TICK", 0.01)


def epochs(say, n=3):
    with Bar(say, total=n, unit="epoch", desc="train") as bar:
        for i in bar.over(range(n)):
            bar.line(f"epoch {i + 1}/{n}")


def test_which_stream():
    out = io.StringIO()
    assert stream_of(print) is sys.stdout and stream_of(Lines(out)) is out
    assert stream_of([].append) is None and stream_of(None) is None


def test_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    assert is_terminal(Terminal()) and not is_terminal(io.StringIO()) and not is_terminal(None)
    with Bar(Lines(Terminal())) as bar:
        assert bar.drawing
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(Terminal())


def test_tqdm_disable_gives_lines():
    # tqdm reads TQDM_* when it is imported: a fresh process.
    script = ("import io, sys; from boards.progress import Bar, Lines\n"
              "class Terminal(io.StringIO):\n    isatty = lambda self: True\n"
              "out = Terminal()\n"
              "with Bar(Lines(out), total=2) as bar:\n"
              "    bar.line('one'); bar.update(2); bar.line('two')\n"
              "print(bar.drawing, repr(out.getvalue()))")
    env = {**os.environ, "TERM": "xterm", "TQDM_DISABLE": "1"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)
    assert res.stdout == "False 'one\\ntwo\\n'\n"


def test_plain_lines_off_a_terminal(fast):
    out = io.StringIO()
    epochs(Lines(out, "  "))
    assert out.getvalue() == "  epoch 1/3\n  epoch 2/3\n  epoch 3/3\n"
    said = []
    epochs(said.append)
    assert said == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    epochs(None)                                  # silence


def test_bar_on_a_terminal(fast, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    with Bar(Lines(out, "  "), total=3, unit="epoch", desc="train") as bar:
        for i in range(3):
            bar.set(i + 1, f"loss {3 - i}")
            time.sleep(5 * progress.TICK)           # a redraw or more
            bar.line(f"epoch {i + 1}/3")
    text = out.getvalue()
    # tqdm's count of the total, elapsed<left, rate and note, indented like the lines.
    assert re.search(r"\r  train: +\d+%\|.*\| [123]/3 \[\d\d:\d\d<\d\d:\d\d, .*, loss \d\]",
                     text), text
    # The lines are whole, in order, each on its own line; the bar is erased at the end.
    lines = [seg.split("\r")[-1] for seg in text.split("\n")]
    assert lines[:3] == ["  epoch 1/3", "  epoch 2/3", "  epoch 3/3"]
    assert lines[3].strip() == ""


def test_elapsed_time_of_a_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    argv = [sys.executable, "-c", "import time; time.sleep(1.5)"]
    result = SimpleNamespace(logs={}, steps=[])
    out = Terminal()
    _run_step(argv, "sleeper", tmp_path, None, result, Lines(out, "  "))
    text = out.getvalue()
    assert text.startswith("  sleeper: running...\n")
    assert re.search(r"\r  sleeper: 00:0\d elapsed\r", text), text    # drawn after a TICK (1 s)
    assert re.search(r"\r *\r  sleeper: done in \d\.\d s\n$", text), text
    # Off a terminal: the two lines only.
    said = []
    _run_step(argv, "sleeper", tmp_path, None, result, said.append)
    assert said[0] == "sleeper: running..." and re.fullmatch(r"sleeper: done in \d\.\d s", said[1])
    assert [tool for tool, _ in result.steps] == ["sleeper", "sleeper"]


def test_a_long_step_says_its_elapsed_time_in_a_log():
    """Off a terminal, a step without a total given ``every`` says a line that often."""
    lines = []
    with Bar(lines.append, desc="nextpnr-ecp5", every=0.05):
        time.sleep(0.3)
    assert len(lines) >= 3
    assert all(re.fullmatch(r"nextpnr-ecp5: \d+ s elapsed", line) for line in lines)
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count                  # stopped with the step
    quiet = []
    with Bar(quiet.append, total=5, desc="train", every=0.05):
        time.sleep(0.2)
    assert quiet == []                          # a known total says its own lines
