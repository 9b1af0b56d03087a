"""bench.timing's reading of a nextpnr report and its table (the builds are run by hand:
`python -m bench.timing`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import timing  # noqa: E402

def test_table_has_a_row_per_build_and_refusals():
    rows = [{"design": "small_cnn", "board": "ulx3s", "luts": 100, "ffs": 50, "fmax": 101.5,
             "path_from": "a", "path_to": "b", "path_ns": 9.85, "cycles": 156},
            {"design": "digits_hw", "board": "icebreaker", "error": "does not fit"}]
    text = timing.table(rows)
    assert "101.5" in text and "a -> b" in text and "156" in text
    assert "does not fit" in text and text.count("\n") == 3
