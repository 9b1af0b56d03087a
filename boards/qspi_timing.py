"""The timing budget of a board's quad-SPI flash read path, in numbers.

The reader (:mod:`hw.qspi`) and the PHY (:mod:`boards.qspi_phy`) fix *when*
things happen in whole cycles of the reader's clock; the board fixes how long
the wires and buffers take. :func:`margins` puts the two together for a
reader clocked at ``period_ns`` with SCLK divider ``divider`` and sample point
``read_latency``, and returns the four slacks (ns) that must all be positive:

``read_setup`` / ``read_hold``
    The flash launches a nibble at a falling SCLK edge. That edge leaves the
    forwarder one cycle after the bus shows it and reaches the flash
    ``sclk_fabric + sclk_primitive`` later; the nibble is valid ``flash_tv``
    after it and stays ``flash_tho`` past the next falling edge, ``divider``
    cycles on. The input register takes it ``read_latency`` cycles after the
    bus edge and needs it ``in_setup`` before and ``in_hold`` after.
``write_setup`` / ``write_hold``
    DQ (address, mode) changes at the pins one cycle after the bus changes it,
    ``out_delay`` after the edge; the flash takes it at the rising SCLK edge
    ``divider / 2`` cycles later (plus the SCLK path), needing ``flash_tsu``
    before and ``flash_thd`` after; DQ changes again ``divider`` cycles on.

Time 0 is the reader's clock edge at its flip-flops. Every delay is a
``(min, max)`` pair and the budget takes the worst of each, all at once.
:data:`BOARD_DELAYS` holds each board's figures with their sources;
``docs/boards.md`` walks through them.
"""

from dataclasses import dataclass

__all__ = ["PathDelays", "BOARD_DELAYS", "margins", "fastest"]


@dataclass(frozen=True)
class PathDelays:
    """Delays in ns around one board's flash; pairs are ``(min, max)``."""
    sclk_fabric: tuple      # reader clock edge -> clock primitive input (forwarder flip-flop)
    sclk_primitive: tuple   # primitive input -> SCK at the flash (primitive + trace)
    dq_trace: tuple         # one way, FPGA pin <-> flash pin
    out_delay: tuple        # clock edge -> DQ/CS# at the FPGA pin (IOB output register)
    in_setup: float         # at the FPGA pin, before the input register's edge
    in_hold: float          # at the FPGA pin, after it
    flash_tv: float         # SCK low -> output valid, max
    flash_tho: float        # output hold after SCK low, min
    flash_tsu: float        # data in set-up before SCK high
    flash_thd: float        # data in hold after SCK high


BOARD_DELAYS = {
    # Arty A7: SCLK leaves through STARTUPE2.USRCCLKO. The forwarder is one flip-flop
    # (even divider); the Vivado plan bounds flip-flop -> USRCCLKO to 0.3-1.5 ns
    # (boards/engine_top.py writes the constraint), plus 0.3 ns of clock skew.
    # USRCCLKO -> CCLK: 0.5-7.5 ns, the 7-series figure (Spartan-7 DS189; PG153's
    # template gives 0.5-6.7 for Kintex-7). The IOB figures are estimates for
    # LVCMOS33 FAST (IBUF about 1.2 ns before the input register; clock-to-pad
    # 2-5 ns); Vivado checks them against the plan's constraints. S25FL128S: tV 8,
    # tHO 2 (docs/boards.md), data in set-up 3 and hold 2 (assumed; check the data
    # sheet's SDR table).
    "arty": PathDelays(sclk_fabric=(0.3, 1.8), sclk_primitive=(0.6, 7.8), dq_trace=(0.1, 0.3),
                       out_delay=(2.0, 5.0), in_setup=1.5, in_hold=0.0,
                       flash_tv=8.0, flash_tho=2.0, flash_tsu=3.0, flash_thd=2.0),
    # ULX3S: SCLK leaves through USRMCLK, for which Lattice gives no delay; 1-12 ns
    # for the forwarder and USRMCLK together is a budget, not a figure (nextpnr does
    # not time it either). Outputs are DRIVE 4 (slow edges): 2-7 ns clock-to-pad.
    # IS25LP128F tV 7; hold 1.5 (W25Q128JV tCLQX, the smaller); set-up and hold of
    # data in 3 ns, the larger of the two parts' figures as assumed here.
    "ulx3s": PathDelays(sclk_fabric=(0.5, 3.0), sclk_primitive=(0.5, 9.0), dq_trace=(0.1, 0.3),
                        out_delay=(2.0, 7.0), in_setup=2.0, in_hold=0.5,
                        flash_tv=7.0, flash_tho=1.5, flash_tsu=3.0, flash_thd=3.0),
}


def margins(delays, period_ns, divider, read_latency):
    """The four slacks (ns) of a reader at ``period_ns``, ``divider``, ``read_latency``."""
    t, d = period_ns, divider
    sck = (delays.sclk_fabric[0] + delays.sclk_primitive[0],
           delays.sclk_fabric[1] + delays.sclk_primitive[1])
    trace = delays.dq_trace
    valid_from = t + sck[1] + delays.flash_tv + trace[1]
    valid_to = t + d * t + sck[0] + delays.flash_tho + trace[0]
    sample = read_latency * t
    rise = d * t / 2           # the rising SCLK edge, after DQ changes on the bus
    return {
        "read_setup": round(sample - delays.in_setup - valid_from, 3),
        "read_hold": round(valid_to - sample - delays.in_hold, 3),
        "write_setup": round(rise + sck[0] - delays.out_delay[1] - trace[1]
                             - delays.flash_tsu, 3),
        "write_hold": round(rise + delays.out_delay[0] + trace[0] - sck[1]
                            - delays.flash_thd, 3),
    }


def fastest(delays, period_ns, divider, *, latencies=range(0, 12)):
    """The read latency with the largest smallest slack, and that slack (None if none fit)."""
    best = None
    for latency in latencies:
        worst = min(margins(delays, period_ns, divider, latency).values())
        if best is None or worst > best[1]:
            best = (latency, worst)
    return best if best and best[1] > 0 else (None, best[1] if best else None)
