"""The cost model's calibration: per family, a factor per part of a design.

The cost model (``cost.py`` and each op's ``cost``) counts what the cores build;
synthesis then shares, merges and splits that logic in ways the counts do not
follow, by a share that differs between the hard-wired MAC stages (constant
adder trees Yosys simplifies), the folded ones (ROMs and multiplexers; shifters
where the weights have shifted digits) and the rest (windows, FIFOs, skid
buffers, requantizers of their own). So the plan
scales each part's raw count by a factor fitted per family against Yosys on
reference builds: ``python -m bench.calibrate --write`` measures them and rewrites
``calibration.json``, which holds the factors and every measurement they come from.
A family without data is not scaled. Block RAMs are never scaled: they are counted
from the elaborated design (``memories.py``).
"""

import json
from pathlib import Path

from ...table import markdown_table
from .cost import Resources

__all__ = ["PARTS", "DATA", "part_of", "raw_parts", "scale", "factors", "write",
           "factors_table"]

#: The parts of a design that get a factor each: MAC stages hard-wired, folded with
#: ternary weights (a digit is a sign), folded with shifted digits (power-of-two and
#: integer weights: a shifter per product), and the rest.
PARTS = ("hardwired", "rom", "rom_shift", "other")
DATA = Path(__file__).with_name("calibration.json")


def part_of(stage):
    if not stage.is_mvu:
        return "other"
    if stage.placement == "hardwired":
        return "hardwired"
    return "rom" if stage.weight_field_bits <= 2 else "rom_shift"


def raw_parts(plan):
    """The plan's raw estimate per part, as ``{part: {"luts", "ffs", "brams"}}``."""
    return {p: r.as_dict() for p, r in plan.parts().items()}


_FACTORS = None


def factors(family):
    """``{"luts": {part: factor}, "ffs": {...}}`` for ``family``, or None."""
    global _FACTORS
    if _FACTORS is None:
        _FACTORS = json.loads(DATA.read_text())["factors"] if DATA.exists() else {}
    return _FACTORS.get(family)


def scale(family, part, res):
    """``res`` (a raw estimate of ``part``) as synthesis for ``family`` counts it."""
    f = factors(family)
    if f is None:
        return res
    return Resources(round(res.luts * f["luts"][part]), round(res.ffs * f["ffs"][part]),
                     res.brams, list(res.notes))


def write(calibration, rows):
    """Store fitted ``calibration`` (``{family: {resource: {part: factor}}}``) with the
    measurements ``rows`` it was fitted to (``bench.calibrate``)."""
    global _FACTORS
    data = json.loads(DATA.read_text()) if DATA.exists() else {"factors": {}, "designs": []}
    data["factors"].update(calibration)
    fitted = {(r["design"], r["family"]) for r in rows}
    data["designs"] = sorted(
        [r for r in data["designs"] if (r["design"], r["family"]) not in fitted]
        + [{k: r[k] for k in ("design", "family", "board", "cycles", "parts", "measured")}
           for r in rows], key=lambda r: (r["family"], r["design"]))
    DATA.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    _FACTORS = None


def factors_table(calibration):
    rows = [[family, resource, *(f"{f[resource][p]:.3f}" for p in PARTS)]
            for family, f in sorted(calibration.items()) for resource in ("luts", "ffs")]
    return markdown_table(["family", "resource", *PARTS], rows, align="ll" + "r" * len(PARTS))
