"""The layer engine's flash read port, carried into the flash clock domain and back.

The engine (``sync``) asks for the weight stream with one request and takes
the words in order; the flash reader runs in a clock domain of its own
(``flash``), as fast as the board's flash path allows. :class:`FlashCrossing`
joins the two with :class:`amaranth.lib.fifo.AsyncFIFO` s, and moves every
request by the board's flash offset on the way: the engine addresses
``weights.bin`` from its first byte, the reader the whole flash.

Reset: ``reset`` (a flip-flop output in ``sync``: the UART break, start-up)
empties the request FIFO at once. The parent must hold the ``flash`` domain
in reset while ``reset`` is high (an asynchronous reset synchronizer does:
:class:`amaranth.lib.cdc.ResetSynchronizer`); that stops the reader, which
ends any read under way (CS# high), and empties the data FIFO, whose read
side shows it empty from the moment the reset is asserted (asynchronously)
until it has crossed back. So no word of a read cut short reaches the engine
after it starts over.

``reset`` must last at least :func:`reset_cycles_needed` cycles of ``sync``:
the request FIFO's read side learns of its write side's reset through
two-flip-flop synchronizers, and a request written before it has (two or
three ``domain`` clock edges) would be skipped or read twice
(:class:`~amaranth.lib.fifo.AsyncFIFO` resets its read pointer to the write
pointer it last saw). While ``domain`` is in reset no request leaves the
request FIFO: a reader held in reset may show ``req.ready``, and a request
written just after ``reset`` falls can reach the ``domain`` side before that
side's reset is released; it waits for the release instead of being lost.
"""

import math

from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.qspi import read_request

__all__ = ["FlashCrossing", "reset_cycles_needed"]


def reset_cycles_needed(sync_hz, domain_hz):
    """The shortest ``reset`` in ``sync`` cycles: four ``domain`` clock periods (two
    synchronizer stages, one edge of metastability, one of margin), rounded up, plus one."""
    return math.ceil(4 * sync_hz / domain_hz) + 1


class FlashCrossing(wiring.Component):
    """Engine side in ``sync``, reader side in ``domain``; requests moved by ``offset``.

    Members
    -------
    req : In(stream.Signature(read_request(addr_width)))
        The engine's requests (``sync``).
    data : Out(stream.Signature(unsigned(8 * word_bytes)))
        Flash words to the engine (``sync``), first flash byte in the low bits.
    reset : In(1)
        ``sync``: drop the queued request; the ``domain`` reset must follow it.
        At least :func:`reset_cycles_needed` cycles long.
    port_req : Out(stream.Signature(read_request(addr_width)))
        To the reader (``domain``), address plus ``offset``.
    port_data : In(stream.Signature(ArrayLayout(unsigned(8), word_bytes)))
        From the reader (``domain``).
    """

    def __init__(self, *, word_bytes, offset=0, domain="flash", addr_width=24,
                 req_depth=4, data_depth=16):
        if not 0 <= offset < 1 << addr_width:
            self._MustUse__silence = True
            raise ValueError(f"flash offset {offset:#x} does not fit {addr_width} address bits")
        self.word_bytes, self.offset, self.domain = word_bytes, offset, domain
        self.req_depth, self.data_depth = req_depth, data_depth
        layout = read_request(addr_width)
        super().__init__({
            "req": In(stream.Signature(layout)),
            "data": Out(stream.Signature(unsigned(8 * word_bytes))),
            "reset": In(1),
            "port_req": Out(stream.Signature(layout)),
            "port_data": In(stream.Signature(data.ArrayLayout(unsigned(8), word_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        # An AsyncFIFO is reset from its write side only (its read side follows), and
        # only by a domain reset: so the request FIFO's write side gets a domain of
        # its own, ``sync``'s clock with ``reset`` added.
        m.domains.req_w = req_w = ClockDomain(local=True)
        m.d.comb += [req_w.clk.eq(ClockSignal("sync")),
                     req_w.rst.eq(ResetSignal("sync", allow_reset_less=True) | self.reset)]

        flash_rst = ResetSignal(self.domain, allow_reset_less=True)
        layout = self.req.payload.shape()
        m.submodules.req_fifo = rq = fifo.AsyncFIFO(
            width=layout.size, depth=self.req_depth, w_domain="req_w", r_domain=self.domain)
        request = data.View(layout, rq.w_data)
        m.d.comb += [request.addr.eq(self.req.payload.addr + self.offset),
                     request.length.eq(self.req.payload.length),
                     rq.w_en.eq(self.req.valid), self.req.ready.eq(rq.w_rdy),
                     self.port_req.payload.eq(rq.r_data),
                     self.port_req.valid.eq(rq.r_rdy & ~flash_rst),
                     rq.r_en.eq(self.port_req.ready & ~flash_rst)]

        m.submodules.data_fifo = dq = fifo.AsyncFIFO(
            width=8 * self.word_bytes, depth=self.data_depth, w_domain=self.domain,
            r_domain="sync")
        m.d.comb += [dq.w_data.eq(self.port_data.payload), dq.w_en.eq(self.port_data.valid),
                     self.port_data.ready.eq(dq.w_rdy),
                     self.data.payload.eq(dq.r_data), self.data.valid.eq(dq.r_rdy),
                     dq.r_en.eq(self.data.ready)]
        return m
