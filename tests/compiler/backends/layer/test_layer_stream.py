"""The layer engine's weight stream: codes of non-ternary weights, packed without a Python loop."""

import numpy as np
import pytest

from compiler.backends.layer.stream import Stream, codes_for
from compiler.ir import Node
from hw.engine import packing
from hw.engine.layouts import DigitFormat


class _Decoder:
    """Stands in for the StreamDecoder: the stream asks it only to check and encode commands
    and how long they take."""

    def check(self, cmd):
        pass

    def cycles(self, cmd):
        return 0

    def command(self, cmd):
        return 0


@pytest.mark.parametrize("seed, kind, levels", [(0, "pow2", [-8, -2, -1, 1, 4, 16]),
                                                (1, "int", list(range(-7, 8))),
                                                (2, "int", [-3, 5])])
def test_codes_are_the_ranks_in_the_table(seed, kind, levels):
    rng = np.random.default_rng(seed)
    pe, simd, chunks = 4, 8, 5
    matrix = rng.choice(levels, size=(12, chunks * simd))
    node = Node("conv", "conv2d", ["x"], {"weight_kind": kind})
    codes = codes_for(node, matrix, 3, None)
    assert codes.kind == "codes" and codes.table == sorted(set(levels) | {0})
    stream = Stream(_Decoder(), pe=pe, simd=simd, lanes=8, fmt=DigitFormat(2, 4))
    block = matrix[4:4 + pe]
    stream.weights(codes, block)
    order = block.reshape(pe, chunks, simd).transpose(1, 0, 2).reshape(-1)
    expected = packing.bits([codes.code_of[int(v)] for v in order], codes.bits)
    assert bytes(stream.data) == expected
    cmd, _ = stream.commands[0]
    assert cmd.count == pe * chunks * simd


def test_a_weight_outside_the_table_is_refused():
    node = Node("conv", "conv2d", ["x"], {"weight_kind": "int"})
    codes = codes_for(node, np.array([[1, 2, 3, 2]]), 1, None)
    stream = Stream(_Decoder(), pe=1, simd=4, lanes=4, fmt=DigitFormat(2, 2))
    with pytest.raises(ValueError, match="outside the layer's code table"):
        stream.weights(codes, np.array([[1, 2, 5, 2]]))
