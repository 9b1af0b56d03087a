"""The weight stream of a layer engine: every byte of ``weights.bin`` and the loader's list.

For each load group, in the order the engine uses them: the thresholds of its
channels (one command per set), the biases of a raw output, the translation
table of a layer's first group, then its weights, chunk by chunk, for each of
the step's segments. The data formats are :mod:`hw.engine.packing`'s; the
decoder reads exactly what is written here, and the loader routes it by the
entries built alongside.
"""

from dataclasses import dataclass, field

import numpy as np

from hw.csd import csd_digits
from hw.engine import packing
from hw.engine.layouts import DigitFormat
from hw.engine.loader import Dest
from hw.engine.packing import Command, Kind

from ...ir import bits_for_range

__all__ = ["LayerCodes", "codes_for", "Stream", "digit_format"]


@dataclass
class LayerCodes:
    """How one segment's weights travel: ternary five per byte, or codes through a table."""
    kind: str                     # "trit5" or "codes"
    values: np.ndarray            # (N, K) integers in window lane order
    table: list = field(default_factory=list)     # codes: run-time weight of each code
    code_of: dict = field(default_factory=dict)   # codes: weight value -> code
    bits: int = 0
    positions: int = 1            # KQ: kernel positions sharing one index
    indices: np.ndarray = None    # KQ: (N, C) codebook index per kernel

    def digits_needed(self):
        vals = [int(v) for v in self.table] if self.table else [-1, 0, 1]
        digits = max((len(csd_digits(v)) for v in vals), default=1)
        shift = max((s for v in vals for _, s in csd_digits(v)), default=0)
        return max(digits, 1), shift


def codes_for(node, matrix, kernel, channels, *, replay=True):
    """The :class:`LayerCodes` of a conv or dense node whose weights are ``matrix``.

    KQ codebook weights travel as kernel indices replayed at every kernel
    position; without ``replay`` (the stem, whose buffer holds whole windows in
    its own order), or for a 1x1 kernel (nothing to replay), they travel as codes
    of their values, like any other.
    """
    kind = node.attrs.get("weight_kind")
    if kind == "ternary":
        return LayerCodes("trit5", matrix)
    if kind == "codebook" and replay and kernel > 1:
        cb = node.tensors["codebook"].astype(np.int64)        # (B, k, k)
        idx = node.tensors["indices"].astype(np.int64)        # (O, C)
        positions = kernel * kernel
        table = [int(cb[b].reshape(-1)[p]) for b in range(len(cb)) for p in range(positions)]
        return LayerCodes("codes", matrix, table=table, bits=max(1, (len(cb) - 1).bit_length()),
                          positions=positions, indices=idx)
    values = sorted({int(v) for v in np.unique(matrix)} | {0})
    return LayerCodes("codes", matrix, table=values, code_of={v: i for i, v in enumerate(values)},
                      bits=max(1, (len(values) - 1).bit_length()))


def digit_format(all_codes):
    """The run-time weight format that every layer's weights fit."""
    digits, shift = 1, 0
    for c in all_codes:
        d, s = c.digits_needed()
        digits, shift = max(digits, d), max(shift, s)
    return DigitFormat(digits, shift)


class Stream:
    """Collects the commands and data of the stream, and the loader's entries."""

    def __init__(self, decoder, *, pe, simd, lanes, fmt):
        self.decoder, self.pe, self.simd, self.lanes, self.fmt = decoder, pe, simd, lanes, fmt
        self.data = bytearray()
        self.entries = []
        self.commands = []         # (Command, dest) in order, for reports and tests
        self.group_bytes = []      # bytes of each load group
        self.group_cycles = []     # cycles the decoder spends on each load group
        self._group_start = 0
        self._group_cycles = 0

    def _emit(self, cmd, payload, dest, beats=0, base=0, levels=0):
        self.decoder.check(cmd)
        self.data += payload
        self.commands.append((cmd, dest))
        self._group_cycles += self.decoder.cycles(cmd)
        self.entries.append({"cmd": self.decoder.command(cmd), "dest": int(dest),
                             "beats": int(beats), "base": int(base), "levels": int(levels)})

    def end_group(self):
        self.entries.append({"cmd": self.decoder.command(Command(Kind.BIAS, 0, bits=1)),
                             "dest": int(Dest.GROUP), "beats": 0, "base": 0, "levels": 0})
        self.group_bytes.append(len(self.data) - self._group_start)
        self.group_cycles.append(self._group_cycles)
        self._group_start, self._group_cycles = len(self.data), 0

    def thresholds(self, rows, base):
        """One set: a row of sorted thresholds per lane (``pe`` rows)."""
        rows = np.asarray(rows, np.int64)
        lo, hi = int(rows.min()), int(rows.max())
        width = bits_for_range(min(lo, 0), max(hi, 0))[0]
        width = max(width, 2) + (0 if lo < 0 else 1)          # two's complement fields
        levels = rows.shape[1]
        cmd = Command(Kind.THRESH, len(rows), bits=width, levels=levels)
        self._emit(cmd, packing.thresholds(rows.tolist(), width), Dest.THRESHOLDS,
                   beats=rows.size, base=base, levels=levels)

    def bias(self, values):
        values = np.asarray(values, np.int64)
        width = bits_for_range(min(int(values.min()), 0), max(int(values.max()), 0))[0] + 1
        cmd = Command(Kind.BIAS, len(values), bits=width)
        self._emit(cmd, packing.signed_bits(values.tolist(), width), Dest.BIAS,
                   beats=len(values))

    def table(self, codes):
        positions = codes.positions
        cmd = Command(Kind.TABLE, len(codes.table), positions=positions)
        self._emit(cmd, packing.table(codes.table, self.fmt), Dest.NONE)

    def weights(self, codes, block, indices=None):
        """The weights of one group of one segment.

        ``block`` is (pe, chunks * simd) in window lane order; the buffer holds it
        chunk by chunk, ``pe`` rows of ``simd`` lanes each. For KQ, ``indices`` is the
        group's (pe, channels) codebook indices.
        """
        pe, simd = self.pe, self.simd
        chunks = block.shape[1] // simd
        order = block.reshape(pe, chunks, simd).transpose(1, 0, 2).reshape(-1)
        beats = len(order) // self.lanes
        if codes.kind == "trit5":
            cmd = Command(Kind.TRIT5, len(order))
            self._emit(cmd, packing.trits5(order), Dest.WEIGHTS, beats=beats)
            return
        if codes.positions > 1:
            # KQ: one index per kernel, replayed at every kernel position.
            cw = indices.shape[1] // simd
            idx = indices.reshape(pe, cw, simd).transpose(1, 0, 2).reshape(-1)
            per_pos = len(idx)
            cmd = Command(Kind.CODES, per_pos * codes.positions, bits=codes.bits,
                          positions=codes.positions, per_pos=per_pos, replay=True)
            self._emit(cmd, packing.bits(idx, codes.bits), Dest.WEIGHTS, beats=beats)
            return
        # The table is the sorted distinct values (codes_for): a value's code is its rank.
        table = np.asarray(codes.table, np.int64)
        vals = np.searchsorted(table, order)
        if not np.array_equal(table[np.minimum(vals, len(table) - 1)], order):
            raise ValueError("weights: a value outside the layer's code table")
        cmd = Command(Kind.CODES, len(vals), bits=codes.bits)
        self._emit(cmd, packing.bits(vals, codes.bits), Dest.WEIGHTS, beats=beats)


MAGIC = b"SAWE"
VERSION = 1


def flash_image(stream, header_bytes):
    """``weights.bin`` of an engine: a header page, then the stream the engine reads.

    Header (little-endian): magic ``SAWE``, version (2 bytes), header size (2),
    stream length (4), then zeros up to ``header_bytes``; the engine's single read
    starts right after it.
    """
    import struct
    head = MAGIC + struct.pack("<HHI", VERSION, header_bytes, len(stream.data))
    return head + bytes(header_bytes - len(head)) + bytes(stream.data)
