"""Join buffer sizing: exact need functions, and depths that keep a fork-join alive."""

import numpy as np

from compiler.backends.dataflow import buffers


def test_window_need_without_padding():
    # 3x3 window, stride 1 on a 4x5 image: output (0,0) needs pixels up to (2,2).
    need = buffers.window_need(4, 5, 3, 1, 0)[:6]
    assert need.tolist() == [2 * 5 + 3, 2 * 5 + 4, 2 * 5 + 5, 3 * 5 + 3, 3 * 5 + 4, 3 * 5 + 5]


def test_window_need_with_padding_and_stride():
    # 3x3, pad 1, stride 2 on 4x4: outputs at padded (2,2),(2,4),(4,2),(4,4)
    # -> original (1,1),(1,3),(3,1),(3,3); the last needs every pixel.
    need = buffers.window_need(4, 4, 3, 2, 1)
    assert need[:4].tolist() == [1 * 4 + 2, 1 * 4 + 4, 3 * 4 + 2, 16]
    assert need[4:].tolist() == [16 + 6, 16 + 8, 16 + 14, 32]      # the next image


def test_identity_branch_against_conv_branch():
    conv = buffers.window_need(4, 4, 3, 1, 1)
    skip = buffers.one_to_one_need(16)
    depth_conv, depth_skip = buffers.join_depths(conv, skip)
    # When the join waits for conv output j, the skip branch holds need_conv[j] - j beats.
    assert depth_skip == int(np.max(conv - np.arange(len(conv))))
    assert depth_conv <= 1


def test_compose():
    inner = np.array([3, 4, 9, 10])
    outer = np.array([0, 2, 4])
    assert buffers.compose(outer, inner).tolist() == [0, 4, 10]
