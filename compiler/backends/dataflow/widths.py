"""The widest signals a plan's cores need, held to :data:`compiler.limits.MAX_SIGNAL_BITS`.

A stream beat carries all channels of a pixel (or a whole vector) at once, a
window all ``k*k`` pixels, and a folded MAC reads ``pe`` rows of weights and
thresholds in one ROM word. Each is one signal of the HDL, and Amaranth cannot
build one wider than the limit; :func:`check_signal_widths` refuses such a plan
with the numbers before any hardware is generated. Each stage lists its own
signals (``Stage.signals``).
"""

from ... import limits
from ...errors import BuildError

__all__ = ["check_signal_widths"]


def check_signal_widths(plan):
    """Raise :class:`BuildError` if a stage needs a signal wider than the HDL can build."""
    for stage in plan.stages:
        for what, how, bits in stage.signals():
            if bits > limits.MAX_SIGNAL_BITS:
                raise BuildError(
                    f"node '{stage.name}': its {what} would be {how} = {bits:,} bits, wider "
                    f"than the {limits.MAX_SIGNAL_BITS:,} bits one signal of the generated "
                    "hardware can hold; use fewer channels or narrower values"
                    + (", or fold it onto fewer output lanes (--fold LAYER=PExSIMD)"
                       if what.endswith("ROM word") else ""))
