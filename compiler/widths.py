"""The widest signals a plan's cores need, held to :data:`compiler.limits.MAX_SIGNAL_BITS`.

A stream beat carries all channels of a pixel (or a whole vector) at once, a
window all ``k*k`` pixels, and a folded MAC reads ``pe`` rows of weights and
thresholds in one ROM word. Each is one signal of the HDL, and Amaranth cannot
build one wider than the limit; :func:`check_signal_widths` refuses such a plan
with the numbers before any hardware is generated.
"""

from amaranth.hdl import Const

from hw.mvu import DigitEncoding

from . import limits
from .errors import BuildError

__all__ = ["stage_signals", "check_signal_widths"]


def stage_signals(stage):
    """``[(what, bits)]``: the widest signals of the cores that implement ``stage``."""
    out = [("output beat", f"{stage.out_channels:,} lanes x {stage.out_lane.width} bits",
            stage.out_channels * stage.out_lane.width)]
    if not stage.in_lanes:
        return out
    w = stage.in_lanes[0].width
    out.append(("input beat", f"{stage.in_channels:,} lanes x {w} bits",
                 stage.in_channels * w))
    if stage.kind in ("conv", "maxpool"):
        k = stage.geometry["kernel"]
        out.append(("window", f"{k}x{k} pixels x {stage.in_channels:,} channels x {w} bits",
                    k * k * stage.in_channels * w))
    if stage.is_mvu:
        lane = 2 ** w if stage.in_pow2 else w          # a pow2 code's value is 2**w wide
        out.append(("input vector", f"{stage.k:,} lanes x {lane} bits", stage.k * lane))
        if stage.placement == "rom":
            wb = DigitEncoding(stage.weights.ravel()).weight_bits
            out.append(("weight ROM word", f"PE {stage.pe} x SIMD {stage.simd} x {wb} bits",
                        stage.pe * stage.simd * wb))
            if stage.thresholds is not None:
                levels = stage.thresholds.shape[1]
                # As hw.mvu.RomLayout sizes it: the accumulator, or the widest threshold.
                tw = max(stage.acc_width, *(Const.cast(int(t)).shape().width + 1 for t in
                                            (stage.thresholds.min(), stage.thresholds.max())))
                out.append(("threshold ROM word",
                            f"PE {stage.pe} x {levels:,} thresholds x {tw} bits",
                            stage.pe * levels * tw))
    return out


def check_signal_widths(plan):
    """Raise :class:`BuildError` if a stage needs a signal wider than the HDL can build."""
    for stage in plan.stages:
        for what, how, bits in stage_signals(stage):
            if bits > limits.MAX_SIGNAL_BITS:
                raise BuildError(
                    f"node '{stage.name}': its {what} would be {how} = {bits:,} bits, wider "
                    f"than the {limits.MAX_SIGNAL_BITS:,} bits one signal of the generated "
                    "hardware can hold; use fewer channels or narrower values"
                    + (", or fold it onto fewer output lanes (--fold LAYER=PExSIMD)"
                       if what.endswith("ROM word") else ""))
