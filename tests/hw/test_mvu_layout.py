"""RomLayout's threshold ROMs: the search RomMVU runs over them finds every staircase's
count, for any number of thresholds (a power of two minus one or not), groups and lanes.
Pure Python on the ROM words, as a compiler writes them into image files."""

import numpy as np
import pytest

from hw.mvu import RomLayout


def searched_code(layout, roms, group, lane, value):
    """``hw.mvu.RomMVU._search`` step by step: slot from the count so far, one word read
    at ``group * slots + slot``, one comparison."""
    steps, tw = layout.search_steps, layout.th_shape.width
    count = 0
    for i, j in enumerate(reversed(range(steps))):
        _, width, words = roms[i * layout.pe + lane]
        assert width == tw
        slot = count >> (j + 1)
        word = words[(group << (steps - 1 - j)) + slot]
        threshold = word - (1 << tw) if word >> (tw - 1) else word
        if slot < len(layout.step_candidates(j)) and value >= threshold:
            count |= 1 << j
    return count


@pytest.mark.parametrize("levels", [1, 2, 3, 6, 7, 15, 16, 31, 40])
@pytest.mark.parametrize("pe", [1, 3])
def test_search_over_the_threshold_roms_counts_the_staircase(levels, pe):
    rng = np.random.default_rng(levels * 10 + pe)
    n, k = 2 * pe * 3, 4
    thresholds = np.sort(rng.integers(-200, 200, size=(n, levels)), axis=1)
    thresholds[0, :] = 7                                # every threshold equal
    layout = RomLayout(np.ones((n, k), dtype=int), pe=pe, simd=2, acc_width=10,
                       thresholds=thresholds)
    roms = layout.threshold_roms()
    assert len(roms) == layout.search_steps * pe
    assert len({suffix for suffix, _, _ in roms}) == len(roms)
    for row in range(n):
        group, lane = divmod(row, pe)
        for value in [-512, -201, 7, 6, 199, 511, *rng.integers(-210, 210, size=24)]:
            want = int(np.count_nonzero(value >= thresholds[row]))
            assert searched_code(layout, roms, group, lane, int(value)) == want, (row, value)


def test_unregistered_comparisons_keep_one_rom_with_every_threshold():
    thresholds = np.arange(12).reshape(4, 3)
    layout = RomLayout(np.ones((4, 2), dtype=int), pe=2, simd=1, acc_width=6,
                       thresholds=thresholds, register_compares=False)
    assert layout.search_steps is None
    (suffix, width, words), = layout.threshold_roms()
    assert suffix == "" and width == 2 * 3 * layout.th_shape.width and len(words) == 2
