"""Resource and cycle estimates for the cores of a hardware plan.

These estimates exist to choose folding and to refuse a model that cannot fit a
board *before* synthesis; the report puts them next to what synthesis measured.
They count what the cores build: one LUT per adder or comparator bit (carry
chains), multiplexers by the fabric's LUT size, a flip-flop per register bit,
and block RAMs by the fabric's geometry. Memories too small for a block RAM are
counted as LUT RAM/ROM.
"""

from dataclasses import dataclass, field

__all__ = ["Fabric", "Resources", "FABRICS"]


@dataclass(frozen=True)
class Fabric:
    """What a family's logic is made of, as far as the estimates care."""
    name: str
    lut_inputs: int          # 4 or 6
    bram_configs: tuple      # (width, depth) aspect ratios of one block RAM
    small_memory_bits: int   # memories up to this size go to LUTs/FFs

    def mux_luts(self, ways, bits):
        """LUTs for a ``ways``-to-1 multiplexer ``bits`` wide."""
        per_lut = 4 if self.lut_inputs >= 6 else 2          # data inputs one LUT selects among
        luts, n = 0, ways
        while n > 1:
            n = -(-n // per_lut)
            luts += n
        return luts * bits

    def memory(self, width, depth):
        """``(brams, luts)`` for a ``width`` x ``depth`` memory.

        Small or shallow memories are logic (LUT RAM/ROM): a block RAM would
        waste most of its depth.
        """
        per_lut = 2 ** self.lut_inputs                        # one LUT is a 2**inputs x 1 ROM
        if depth <= 1:
            return 0, 0                                       # one word: constants
        if width * depth <= self.small_memory_bits or depth <= per_lut:
            return 0, -(-depth // per_lut) * width
        return min(-(-width // w) * -(-depth // d) for w, d in self.bram_configs), 0


_18K = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))

FABRICS = {
    # RAMB18 (18 Kib); a LUT6 holds 64 x 1 of ROM.
    "xilinx": Fabric("xilinx", 6, _18K, 2048),
    # DP16KD (18 Kib), 36 bits wide at most in pseudo dual port mode.
    "ecp5": Fabric("ecp5", 4, _18K, 1024),
    # EBR (4 Kib); no distributed RAM, so small memories become logic.
    "ice40": Fabric("ice40", 4, ((2, 2048), (4, 1024), (8, 512), (16, 256)), 512),
}


@dataclass
class Resources:
    luts: int = 0
    ffs: int = 0
    brams: int = 0
    notes: list = field(default_factory=list)

    def __add__(self, other):
        return Resources(self.luts + other.luts, self.ffs + other.ffs,
                         self.brams + other.brams, self.notes + other.notes)

    def __iadd__(self, other):
        self.luts += other.luts
        self.ffs += other.ffs
        self.brams += other.brams
        return self

    def as_dict(self):
        return {"luts": self.luts, "ffs": self.ffs, "brams": self.brams}
