"""Weight ROM images: ``$readmemh`` files for simulation, one binary for flash.

Every ROM of every folded layer is written twice: as ``<rom>.hex`` (one word per
line, as Verilog's ``$readmemh`` reads it) and as a region of ``weights.bin``,
the image a board's SPI flash holds. ``weights.bin`` layout (little-endian)::

    0    4   magic b"SAWI"
    4    2   version (1)
    6    2   number of ROMs R
    8    R * 48 bytes of entries:
             32  name (UTF-8, zero padded)
             4   offset of the ROM's data from the start of the file
             4   word width in bits
             4   number of words
             4   bytes per word (ceil(width / 8))
    ...  each ROM's words, little-endian, starting on a 256-byte (flash page) boundary

The words are exactly the ROM contents in the Verilog: both come from
:class:`hw.mvu.RomLayout`.
"""

import struct
from dataclasses import dataclass

from hw.mvu import RomLayout

from ...names import safe_file_name

__all__ = ["Rom", "collect_roms", "hex_text", "flash_image"]

PAGE = 256
MAGIC = b"SAWI"


@dataclass
class Rom:
    name: str
    stage: str
    what: str            # "weights" or "thresholds"
    width: int
    words: list
    offset: int = 0      # in weights.bin, set by flash_image
    index: int = 0       # position in the build's list of ROMs

    @property
    def hex_file(self):
        """Its ``$readmemh`` file: numbered, and made of safe characters whatever the node name."""
        return f"weights/{self.index:03d}_{safe_file_name(self.stage)}_{self.what}.hex"

    @property
    def bytes_per_word(self):
        return (self.width + 7) // 8

    @property
    def bits(self):
        return self.width * len(self.words)


def collect_roms(plan):
    """The ROMs of a plan's folded layers, in stage order."""
    roms = []
    for stage in plan.stages:
        if not stage.is_mvu or stage.placement != "rom":
            continue
        layout = RomLayout(stage.weights, pe=stage.pe, simd=stage.simd,
                           acc_width=stage.acc_width, thresholds=stage.thresholds)
        width, words = layout.weight_rom()
        roms.append(Rom(f"{stage.name}_weights", stage.name, "weights", width, words))
        for suffix, width, words in layout.threshold_roms():
            roms.append(Rom(f"{stage.name}_thresholds{suffix}", stage.name, "thresholds",
                            width, words))
    for index, rom in enumerate(roms):
        rom.index = index
    return roms


def hex_text(rom):
    digits = max(1, (rom.width + 3) // 4)
    return "".join(f"{w:0{digits}x}\n" for w in rom.words)


def flash_image(roms):
    """The bytes of ``weights.bin``; sets each ROM's ``offset``."""
    header = bytearray(MAGIC + struct.pack("<HH", 1, len(roms)))
    entries_end = len(header) + 48 * len(roms)
    offset = -(-entries_end // PAGE) * PAGE
    blobs = []
    for rom in roms:
        rom.offset = offset
        data = b"".join(w.to_bytes(rom.bytes_per_word, "little") for w in rom.words)
        name = rom.name.encode()[:32].ljust(32, b"\0")
        header += name + struct.pack("<IIII", offset, rom.width, len(rom.words),
                                     rom.bytes_per_word)
        padded = data + b"\xff" * (-(-len(data) // PAGE) * PAGE - len(data))   # erased flash
        blobs.append(padded)
        offset += len(padded)
    header += b"\xff" * (-(-len(header) // PAGE) * PAGE - len(header))
    return bytes(header) + b"".join(blobs)
