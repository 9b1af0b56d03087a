"""Everything that makes one layer engine: sizes, the schedule, the command list, the stem.

The compiler fills an :class:`EngineConfig` for a model; :class:`~hw.engine.engine.LayerEngine`
builds the hardware from it. Nothing here knows about models: only numbers and
the contents of the engine's ROMs.
"""

from dataclasses import dataclass, field

from amaranth.hdl import Shape

from .layouts import DigitFormat

__all__ = ["EngineConfig", "StemConfig", "StepKind"]


class StepKind:
    STEM = 0        # the first layer, streamed from the input
    CONV = 1        # a layer on the bank, walking maps in memory


@dataclass
class StemConfig:
    """The stem: a padded, strided convolution over the input stream, optionally max pooled.

    ``groups`` groups of ``pe`` output channels; thresholds of group ``gg`` start at table
    entry ``gg * levels``; the (pooled) map is written at ``dst_base``, ``words`` per pixel.
    """
    in_shape: Shape
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    pad: int
    groups: int
    levels: int
    out_h: int
    out_w: int
    pool: dict = None           # {kernel, stride, pad} of a max pool, or None
    dst_base: int = 0


@dataclass
class EngineConfig:
    """One engine: the bank's size, memory depths, and the ROM contents."""
    pe: int
    simd: int
    act_shape: Shape            # a lane of the activation memory
    in_shape: Shape             # a lane entering the MAC bank
    fmt: DigitFormat
    acc_width: int
    accumulators: int
    mem_depth: int              # words of the activation memory
    wbuf_words: int             # weight buffer words per half
    table_depth: int            # thresholds per lane per half
    levels_max: int
    out_shape: Shape            # a value of the network's output
    input_shape: Shape          # a lane of the input stream
    input_channels: int
    steps: list = field(default_factory=list)      # sequencer ROM entries (dicts)
    entries: list = field(default_factory=list)    # loader ROM entries (dicts)
    stem: StemConfig = None
    flash_addr: int = 0
    flash_length: int = 0
    word_bytes: int = 4
    stream_fifo: int = 512      # words between the flash and the decoder
    decoder_lanes: int = 8      # weights per decoder beat
    decoder: dict = field(default_factory=dict)    # StreamDecoder's parameters
    group_bits: int = 16
    levels_per_stage: int = 2
    limits: dict = field(default_factory=dict)     # widths of configuration fields
