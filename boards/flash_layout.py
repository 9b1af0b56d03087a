"""What lives where in each board's SPI flash, and how its quad mode gets enabled.

The bitstream sits at offset 0, where the FPGA boots from. A weight image goes
at ``weights_offset``, past the largest bitstream the device can have (the
uncompressed one) with room to spare, on a 64 KiB erase-block boundary:

==============  ==========================  =========================  ==========
board           flash                       largest bitstream          weights at
==============  ==========================  =========================  ==========
arty_a7_35      S25FL128S, 16 MiB           2,192,012 B (XC7A35T)      0x400000
arty_a7_100     S25FL128S, 16 MiB           3,825,788 B (XC7A100T)     0x400000
ulx3s           IS25LP128F or W25Q128JV     1,927,725 B (LFE5U-85F)    0x400000
icebreaker      W25Q128JV, 16 MiB           104,090 B (iCE40UP5K)      0x100000
==============  ==========================  =========================  ==========

Artix-7 sizes are UG470's configuration lengths (17,536,096 and 30,606,304
bits); the ECP5 and iCE40 sizes are ``ecppack`` without ``--compress`` and
``icepack`` output measured here. 12 MiB are left for weights on the Arty and
the ULX3S, 15 MiB on the iCEBreaker.

Quad reads (0xEB) need the flash's quad-enable (QE) bit, a non-volatile bit
set once per board. openFPGALoader 0.13.0 and later sets it with
``--enable-quad``, but only through its Xilinx (and Cologne Chip) flash access
and only for parts its flash database describes with a QE bit: the Arty's
S25FL128S (CR1 bit 1) is one. On the ULX3S it cannot: its Lattice flash
access has no QE support, and its database lists neither the IS25LP128 nor the
W25Q128 with one. ``docs/boards.md`` says what to do there.
"""

from dataclasses import dataclass

from .registry import BoardError

__all__ = ["FlashLayout", "FLASH_LAYOUTS", "flash_layout", "weights_image"]

MIB = 1 << 20


@dataclass(frozen=True)
class FlashLayout:
    """A board's SPI flash: size, parts fitted, bitstream bound, weight offset, QE.

    ``quad_args`` are the openFPGALoader arguments that set QE, empty if it
    cannot; ``quad_note`` says, in one line, what to do then.
    """
    flash_bytes: int
    parts: tuple
    bitstream_bytes: int
    weights_offset: int
    quad_args: tuple = ()
    quad_note: str = ""


_ARTY_QE = ("--enable-quad",)

FLASH_LAYOUTS = {
    "arty_a7_35": FlashLayout(16 * MIB, ("S25FL128S",), 2_192_012, 0x400000, _ARTY_QE),
    "arty_a7_100": FlashLayout(16 * MIB, ("S25FL128S",), 3_825_788, 0x400000, _ARTY_QE),
    "ulx3s": FlashLayout(
        16 * MIB, ("IS25LP128F", "W25Q128JV"), 1_927_725, 0x400000, (),
        "openFPGALoader cannot set the flash's quad-enable bit on the ULX3S; a W25Q128JV-IQ "
        "has it set from the factory, an IS25LP128F needs it set once (docs/boards.md, "
        "'Quad mode')"),
    "icebreaker": FlashLayout(16 * MIB, ("W25Q128JV",), 104_090, 0x100000),
}


def flash_layout(board):
    """The :class:`FlashLayout` of a board registry name."""
    if board not in FLASH_LAYOUTS:
        raise BoardError(f"{board}: no flash layout known")
    return FLASH_LAYOUTS[board]


def weights_image(board, path):
    """The ``flash_images`` entry for a weight image read in quad mode on ``board``."""
    return {"path": str(path), "offset": flash_layout(board).weights_offset, "quad": True}
