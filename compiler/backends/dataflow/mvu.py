"""The stage of a MAC layer (``conv2d``, ``dense``): weights hard-wired or folded from ROM.

A MAC stage computes ``bias + W x`` for every input vector (a window beat of a
convolution, or a vector), requantized by the thresholds of a fused threshold
node if there is one. Its weights are placed ``hardwired`` (``hw.mvu.ConstantMVU``:
every product is wiring and an adder tree, one vector per cycle) or in ``rom``
(``hw.mvu.RomMVU``: ``pe`` outputs x ``simd`` inputs per cycle). The planner
(``plan.py``) chooses the placement and the folding.
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const

from hw.adder_tree import AdderTree
from hw.elementwise import threshold_latency
from hw.mvu import ConstantMVU, RomMVU
from hw.lanes import shape_for_range

from ...ops.weights import csd_counts
from .cost import ROM_MVU_CONTROL_FFS, Resources, compare_ffs, threshold_luts
from .stage import Stage

__all__ = ["MvuStage", "signed_width", "divisors"]


def signed_width(lo, hi):
    """Width of the narrowest *signed* type holding ``[lo, hi]``."""
    return shape_for_range(min(lo, -1), max(hi, 0)).width


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(eq=False)
class MvuStage(Stage):
    weights: np.ndarray = None       # (N, K), K in the lane order of the input beat
    bias: np.ndarray = None
    thresholds: np.ndarray = None    # (N, L) or None
    out_lo: int = 0                  # threshold code of "below all thresholds"
    acc_width: int = 0
    placement: str = "hardwired"
    in_pow2: bool = False            # input lanes are pow2 codes (decode fused in the MVU)
    pe: int = 1
    simd: int = 1
    levels_per_stage: int = 3        # adder levels between registers (cost.levels_per_stage)
    rom_style: str = None            # folded: "block" puts the ROMs in block RAM (plan.py)

    is_mvu = True

    def __post_init__(self):
        self.pe, self.simd = self.n, self.k
        digits, top = csd_counts(self.weights)
        self._digits = int(digits.sum())
        self._max_digits = max(int(digits.max(initial=0)), 1)
        self._max_shift = int(max(top.max(initial=0), 0))
        self._max_row_terms = int(digits.sum(axis=1).max(initial=0)) + 1   # + bias

    @property
    def n(self):
        return self.weights.shape[0]

    @property
    def k(self):
        return self.weights.shape[1]

    @property
    def vectors(self):
        """Matrix-vector products per inference."""
        return self.out_beats

    @property
    def cycles_per_vector(self):
        return 1 if self.placement == "hardwired" else (self.n // self.pe) * (self.k // self.simd)

    @property
    def mvu_cycles(self):
        return self.vectors * self.cycles_per_vector

    @property
    def digits(self):
        """Non-zero signed digits of all weights: the adders a hard-wired MVU needs."""
        return self._digits

    @property
    def weight_field_bits(self):
        """Bits of one weight in a ROM word (``hw.mvu.DigitEncoding``)."""
        return self._max_digits * (2 + max(self._max_shift, 0).bit_length())

    @property
    def weight_storage_bits(self):
        """Bits the weights take in ROM, folded (``hw.mvu.DigitEncoding`` per weight)."""
        return self.n * self.k * self.weight_field_bits

    @property
    def search_steps(self):
        """Steps of a folded MVU's search of the staircase (``hw.mvu.RomLayout``)."""
        return 0 if self.thresholds is None else int(self.thresholds.shape[1]).bit_length()

    @property
    def threshold_width(self):
        """Bits of a threshold in ROM, as ``hw.mvu.RomLayout`` sizes it: the
        accumulator's, or the widest threshold's."""
        return max(self.acc_width, *(Const.cast(int(t)).shape().width + 1 for t in
                                     (self.thresholds.min(), self.thresholds.max())))

    @property
    def compare_latency(self):
        """Registers of the pipelined requantizer: ``hw.elementwise.threshold_code``
        hard-wired, a register per search step folded (``hw.mvu.RomMVU``)."""
        if self.thresholds is None:
            return 0
        if self.placement == "hardwired":
            return threshold_latency(self.thresholds.shape[1])
        return self.search_steps

    @property
    def tree_stages(self):
        """Pipeline registers of the adder tree (``hw.adder_tree``: one every
        ``levels_per_stage`` levels, and one at the end)."""
        terms = (self._max_row_terms if self.placement == "hardwired"
                 else self.simd * self._max_digits)
        return -(-AdderTree.levels(terms) // self.levels_per_stage)

    @property
    def latency_bound(self):
        """The stage's registers, the adder tree's pipeline, the requantizer's and the
        output register and, folded, the ``cycles_per_vector`` of a vector's work, the
        ROM read, the weight word register and the accumulator (``hw.mvu``)."""
        folded = 0 if self.placement == "hardwired" else self.cycles_per_vector + 3
        return (super().latency_bound + self.tree_stages + self.compare_latency + 1
                + folded)

    @property
    def queue_depth(self):
        """Entries of the MVU's output queue (``hw.mvu``: ``ConstantMVU.queue_depth``,
        ``RomMVU.queue_depth``), from its latency."""
        if self.placement == "hardwired":
            return self.tree_stages + self.compare_latency + 2
        latency = self.tree_stages + self.compare_latency + 4
        return latency // self.cycles_per_vector + 2

    def queue_cost(self, fabric):
        """The output queue: LUT RAM, its pointers and level, and the count of the
        results owed to it."""
        brams, luts = fabric.memory(self.n * self.out_lane.width, self.queue_depth)
        pointers = 4 * self.queue_depth.bit_length()
        return Resources(luts=luts + pointers, ffs=pointers, brams=brams)

    def fold(self, placement, pe=None, simd=None):
        self.placement = placement
        self.pe, self.simd = (self.n, self.k) if placement == "hardwired" else (pe, simd)

    def fold_for(self, cycles):
        """Smallest ``(pe, simd)`` doing the MVU work in ``cycles`` cycles, or None."""
        per_vector = cycles // self.vectors
        best = None
        for pe in divisors(self.n):
            for simd in divisors(self.k):
                if (self.n // pe) * (self.k // simd) <= per_vector:
                    key = (pe * simd, pe)
                    if best is None or key < best[0]:
                        best = (key, pe, simd)
        return None if best is None else best[1:]

    def rate_candidates(self):
        """Cycles per inference this layer takes at every folding it can have."""
        return {self.vectors * (self.n // pe) * (self.k // simd)
                for pe in divisors(self.n) for simd in divisors(self.k)}

    def mvu(self):
        kw = dict(in_shape=self.in_lanes[0], acc_width=self.acc_width, bias=self.bias,
                  thresholds=self.thresholds, out_shape=self.out_lane, out_lo=self.out_lo,
                  in_pow2=self.in_pow2, levels_per_stage=self.levels_per_stage)
        if self.placement == "hardwired":
            return ConstantMVU(self.weights, **kw)
        return RomMVU(self.weights, pe=self.pe, simd=self.simd, rom_style=self.rom_style, **kw)

    def mvu_cost(self, fabric):
        """LUTs, FFs and BRAMs of the MVU and its requantizer."""
        in_w = self.in_lanes[0].width
        acc_w = self.acc_width
        res = Resources()
        if self.in_pow2:
            # Decoding a code is a one-hot shift: a LUT per output bit of each lane.
            code_w, in_w = in_w, 2 ** in_w
            lanes = self.k if self.placement == "hardwired" else self.pe * self.simd
            res.luts += lanes * in_w
            res.luts += 0 if self.placement == "hardwired" else lanes * code_w  # exponent add
        if self.placement == "hardwired":
            terms = self.digits + (int(np.count_nonzero(self.bias)) if self.bias is not None
                                   else 0)
            adds = max(terms - self.n, 0)
            # Early adders see input-wide operands, late ones the full accumulator.
            res.luts += adds * (in_w + acc_w + 1) // 2
            levels = max(1, int(np.ceil(np.log2(max(terms / self.n, 2)))))
            # Pipeline registers every levels_per_stage adder levels (each level halves
            # the partial sums), and the sum's register.
            res.ffs += (self.n * acc_w * (levels // self.levels_per_stage + 1) // 2
                        + self.n * acc_w)
            if self.thresholds is not None:
                res.luts += threshold_luts(fabric, self.n, self.thresholds.shape[1], acc_w)
                res.ffs += self.n * compare_ffs(self.thresholds.shape[1], acc_w)
            return res + self.queue_cost(fabric)
        digits = self._max_digits
        shift_bits = max(self._max_shift, 0).bit_length()
        terms = self.pe * self.simd * digits
        shifter = in_w * shift_bits
        res.luts += terms * (acc_w + shifter + 1) + self.pe * acc_w * 2
        res.luts += fabric.mux_luts(self.k // self.simd, self.simd * in_w)   # input chunk select
        # The input vector, the chunk (twice), the weight word's register (a block RAM's
        # own output register when the ROM is one), the tree's pipeline registers,
        # accumulator and result, the output beat.
        word_ffs = 0 if self.rom_style == "block" else self.pe * self.simd * self.weight_field_bits
        res.ffs += (self.k * in_w + 2 * self.simd * in_w + word_ffs
                    + self.pe * acc_w * (self.tree_stages + 2)
                    + self.n * self.out_lane.width + ROM_MVU_CONTROL_FFS)
        res += self.rom_cost(fabric, self.rom_style) + self.queue_cost(fabric)
        if self.thresholds is not None:
            # A comparator per lane and search step, and per step the value and the count.
            steps = self.search_steps
            res += Resources(luts=self.pe * steps * acc_w,
                             ffs=self.pe * steps * (acc_w + steps))
        return res

    def rom_cost(self, fabric, style=None):
        """The folded stage's ROMs: the weights, in block RAM with ``style="block"``, and
        the thresholds, logic (``hw.mvu.RomMVU``), one ROM per search step and lane, a
        threshold a word (``hw.mvu.RomLayout.threshold_roms``)."""
        words = (self.n // self.pe) * (self.k // self.simd)
        shapes = [(self.pe * self.simd * self.weight_field_bits, words, style)]
        if self.thresholds is not None:
            steps, tw = self.search_steps, self.threshold_width
            shapes += [(tw, (self.n // self.pe) << (steps - 1 - j), None)
                       for j in range(steps) for _ in range(self.pe)]
        res = Resources()
        for width, depth, kind in shapes:
            brams, luts = fabric.memory(width, depth, style=kind, rom=True)
            res += Resources(luts=luts, brams=brams)
        return res

    def elaboration(self):
        compares = self.thresholds.size if self.thresholds is not None else 0
        if self.placement == "hardwired":
            return (self.digits, compares, f"hard-wired layer '{self.name}' ({self.digits:,} "
                                           f"adder terms, {compares:,} compares)")
        words = (self.n // self.pe) * (self.k // self.simd) + (self.n // self.pe)
        terms = words * self.pe * self.simd // 8 + self.pe * self.simd
        if compares:
            compares = self.pe * self.search_steps
        return terms, compares, f"folded layer '{self.name}' ({words:,} ROM words)"

    def signals(self):
        out = super().signals()
        w = self.in_lanes[0].width
        lane = 2 ** w if self.in_pow2 else w          # a pow2 code's value is 2**w wide
        out.append(("input vector", f"{self.k:,} lanes x {lane} bits", self.k * lane))
        if self.placement == "rom":
            wb = self.weight_field_bits
            out.append(("weight ROM word", f"PE {self.pe} x SIMD {self.simd} x {wb} bits",
                        self.pe * self.simd * wb))
        return out

    def report(self):
        return {"placement": self.placement, "pe": self.pe, "simd": self.simd,
                "macs": int(self.weights.size * self.vectors), "acc_width": self.acc_width,
                "requantized": self.thresholds is not None}
