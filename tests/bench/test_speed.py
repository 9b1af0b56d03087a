"""bench.speed's table on the small model (seconds; the ResNet rows run only in the bench).

Nothing here asserts a time: the machine is shared, and the bench prints the targets.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))                     # the repository root

from bench import speed  # noqa: E402


def test_speed_table_of_digits_cnn(tmp_path):
    row = speed.measure("digits_cnn", workdir=tmp_path, repeat=1, log=lambda s: None)
    assert (tmp_path / "digits_cnn.qpk").is_file()
    assert row["model"] == "digits_cnn" and row["input"] == "1x8x8"
    assert row["weights"] == 5_992            # conv 72 + 1,152 + 2 x 2,304, dense 160
    for key in ("quantize_s", "prepare_s", "plan_s", "golden_s"):
        assert row[key] >= 0
    assert row["plan_outcome"].startswith("fits: ")
    # 8 channels do not fill the default bank of 16 lanes: the engine refuses in one line.
    assert row["lower_s"] is None and "not a multiple of the bank's 16 lanes" in row["stream_bytes"]
    text = speed.render([row])
    lines = text.splitlines()
    assert lines[0].startswith("| model ") and lines[2].startswith("| digits_cnn ")
    assert "Targets: quantize <= 60 s" in text and "- digits_cnn: fits: " in text
