"""Resource and cycle estimates for the cores of a hardware plan.

These estimates exist to choose folding and to refuse a model that cannot fit a
board *before* synthesis; the report puts them next to what synthesis measured.
They count what the cores build: one LUT per adder or comparator bit (carry
chains), multiplexers by the fabric's LUT size, a flip-flop per register bit,
and block RAMs by the fabric's geometry. Memories too small for a block RAM are
counted as LUT RAM/ROM.

The named constants below are counts of the control logic of each core (the
comment beside each says what is counted). These are raw counts: the plan
scales them per family and part of the design by factors fitted to Yosys on
reference designs (``calibration.py``; ``python -m bench.calibrate`` prints
estimated beside measured LUTs and FFs per design).
"""

from dataclasses import dataclass, field

__all__ = ["Fabric", "Resources", "FABRICS", "fifo_cost", "skid_cost", "window_cost",
           "threshold_luts", "compare_ffs", "levels_per_stage", "TARGET_MHZ"]


@dataclass(frozen=True)
class Fabric:
    """What a family's logic is made of, as far as the estimates care."""
    name: str
    lut_inputs: int          # 4 or 6
    bram_configs: tuple      # (width, depth) aspect ratios of one block RAM
    small_memory_bits: int   # memories up to this size go to LUTs/FFs
    byte_lane: int = 1       # bits a write enable of a block RAM covers (its byte lanes)

    def mux_luts(self, ways, bits):
        """LUTs for a ``ways``-to-1 multiplexer ``bits`` wide."""
        per_lut = 4 if self.lut_inputs >= 6 else 2          # data inputs one LUT selects among
        luts, n = 0, ways
        while n > 1:
            n = -(-n // per_lut)
            luts += n
        return luts * bits

    def lut_rom_luts(self, depth, width):
        """LUTs for a constant ``depth`` x ``width`` table read combinationally: one
        ``2**lut_inputs`` x 1 LUT ROM per slice of the depth and bit, and the
        multiplexers joining the slices."""
        roms = -(-depth // 2 ** self.lut_inputs)
        return roms * width + self.mux_luts(roms, width)

    def memory(self, width, depth, granularity=None, copies=1, *, style=None, rom=False):
        """``(brams, luts)`` for a ``width`` x ``depth`` memory.

        Small or shallow memories are logic (LUT RAM/ROM): a block RAM would
        waste most of its depth; so are ROMs up to :data:`LOGIC_ROM_DEPTH` deep,
        and memories whose ``style`` (``ram_style``) is ``"distributed"``. A write
        port of ``granularity`` bits per enable puts each granule in whole byte
        lanes of a block RAM (a 16-bit granule takes two 9-bit lanes), which is how
        synthesis maps it. ``style="block"`` puts any memory deeper than one word in
        block RAM, as ``ram_style = "block"`` makes synthesis do. ``copies``: the memory
        is held that many times (one per read port beyond a block RAM's).
        """
        per_lut = 2 ** self.lut_inputs                        # one LUT is a 2**inputs x 1 ROM
        if depth <= 1 or width == 0:
            return 0, 0                                       # one word: constants
        if style != "block" and (width * depth <= self.small_memory_bits or depth <= per_lut
                or style == "distributed" or (rom and depth <= LOGIC_ROM_DEPTH)):
            return 0, copies * -(-depth // per_lut) * width
        return copies * min(-(-self._lane_bits(width, granularity, w) // w) * -(-depth // d)
                            for w, d in self.bram_configs), 0

    def _lane_bits(self, width, granularity, bram_width):
        """Bits of block RAM width a ``width``-bit word with write ``granularity`` takes."""
        if not granularity or granularity >= width:
            return width
        lane = self.byte_lane if bram_width >= self.byte_lane else bram_width
        return (width // granularity) * -(-granularity // lane) * lane


#: ROMs up to this deep are logic: synthesis folds their constant bits into LUTs.
LOGIC_ROM_DEPTH = 64

_18K = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))

FABRICS = {
    # RAMB18 (18 Kib); a LUT6 holds 64 x 1 of ROM.
    "xilinx": Fabric("xilinx", 6, _18K, 2048, byte_lane=9),
    # DP16KD (18 Kib), 36 bits wide at most in pseudo dual port mode.
    "ecp5": Fabric("ecp5", 4, _18K, 1024, byte_lane=9),
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


# --- what the cores around the MACs cost ---------------------------------------------------
# Registers and control logic that do not grow with the data, counted from the cores'
# own code.

#: hw.fifo.StreamFIFO (SyncFIFOBuffered): level counter compare, read/write pointer
#: increments and the ready/valid logic: about 8 LUTs beyond the storage and the
#: 2 * log2(depth) of the pointers.
FIFO_CONTROL_LUTS = 8
#: Its flags: the output-valid register and the level register's top bit.
FIFO_CONTROL_FFS = 2
#: hw.window.SlidingWindow: the x and y counters and the output valid (two counters
#: of up to 7 bits and a flag for maps up to 128 wide).
WINDOW_CONTROL_FFS = 16
#: ... and their increment, wrap and emit-position logic.
WINDOW_CONTROL_LUTS = 16
#: hw.pad.Pad: its own x and y counters, border compare and output valid.
PAD_CONTROL_FFS = 12
PAD_CONTROL_LUTS = 8
#: hw.mvu.RomMVU: the nf/sf/address counters, busy, and the stage flags of its
#: three-stage pipeline.
ROM_MVU_CONTROL_FFS = 24
#: hw.pool.GlobalSum and hw.flatten.Flatten: the pixel counter and output valid.
REDUCE_CONTROL_FFS = 16


def fifo_cost(fabric, lane, channels, depth):
    """A :class:`hw.fifo.StreamFIFO` of ``depth`` beats of ``channels`` lanes."""
    depth = max(depth, 3)          # hw.fifo.StreamFIFO's least depth
    width = lane.width * channels
    brams, luts = fabric.memory(width, depth)
    pointer = 2 * depth.bit_length()
    return Resources(luts + pointer + FIFO_CONTROL_LUTS, width + pointer + FIFO_CONTROL_FFS,
                     brams)


def skid_cost(fabric, lane, channels):
    """A :class:`hw.skid.SkidBuffer` of ``channels`` lanes: the output and skid registers,
    a 2:1 multiplexer per output bit (skid or input), and the two flags."""
    width = lane.width * channels
    return Resources(luts=width + 2, ffs=2 * width + 2)


# --- the clock ------------------------------------------------------------------------------

#: The clock the cores are pipelined for, in MHz, per family (issue 10: 100 MHz on the
#: ECP5-85F -6 and on Artix-7, 50 MHz on the iCE40UP5K).
TARGET_MHZ = {"ecp5": 100, "ice40": 50, "xilinx": 100}
#: Nanoseconds a clock period spends outside the adders of a pipeline stage: clock to
#: output, setup, the enable and the wire into the first adder.
STAGE_OVERHEAD_NS = {"ecp5": 3.0, "ice40": 4.0, "xilinx": 1.5}
#: Nanoseconds one level of an adder tree takes with its routing: a carry chain over an
#: accumulator's 10 to 20 bits and the wire to the next level. ECP5: read off nextpnr-ecp5
#: (-6) critical paths of the small CNN (a carry chain 0.5 to 1.5 ns, a wire 0.6 to 2 ns);
#: iCE40: an estimate, not measured (no design of bench.timing places on the UP5K);
#: Artix-7 -1: the three levels per stage the cores had before, untimed without Vivado.
ADDER_LEVEL_NS = {"ecp5": 3.0, "ice40": 6.0, "xilinx": 2.5}


def levels_per_stage(fabric, mhz=None):
    """Adder levels between pipeline registers (``hw.adder_tree``) that meet ``mhz``
    (default: the family's ``TARGET_MHZ``)."""
    period = 1000 / (mhz or TARGET_MHZ[fabric.name])
    return max(1, int((period - STAGE_OVERHEAD_NS[fabric.name]) // ADDER_LEVEL_NS[fabric.name]))


def window_cost(fabric, lane, channels, window):
    """Pad (if any) and sliding window: the window registers and the line buffers."""
    k, w = window.kernel, lane.width
    pix = channels * w
    res = Resources(ffs=k * k * pix + WINDOW_CONTROL_FFS, luts=WINDOW_CONTROL_LUTS)
    if k > 1:
        brams, luts = fabric.memory((k - 1) * pix, window.padded_width)
        res += Resources(luts=luts, brams=brams)
    if window.padding:
        # A 2:1 multiplexer (pad value or pixel) per output bit, two bits a LUT, and
        # the output register.
        res += Resources(luts=pix // 2 + PAD_CONTROL_LUTS, ffs=pix + PAD_CONTROL_FFS)
    return res


def threshold_luts(fabric, lanes, levels, width):
    """LUTs of ``lanes`` requantizers over ``levels`` constant thresholds
    (hw.elementwise.threshold_code).

    Few thresholds: a comparator each, two bits of comparison per LUT. Many: a
    binary search, one comparator per bit of the count, and the thresholds a LUT
    ROM read combinationally, never from block RAM.
    """
    from hw.elementwise import SEARCH_FROM
    if levels < SEARCH_FROM:
        return lanes * levels * width // 2
    steps = levels.bit_length()
    return lanes * (fabric.lut_rom_luts(levels, width) + steps * width)


def compare_ffs(levels, width):
    """Registers of one pipelined requantizer (``hw.elementwise.threshold_code``,
    ``hw.mvu.RomMVU``): a thermometer code of the comparisons, or per search step the
    value and the count."""
    from hw.elementwise import SEARCH_FROM
    if levels < SEARCH_FROM:
        return levels
    steps = levels.bit_length()
    return steps * (width + steps)
