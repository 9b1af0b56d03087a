"""LUT levels into each core's registers, from a Yosys JSON netlist."""

from boards.logic_depth import logic_depth


def _cell(kind, inputs, outputs):
    conns = {**inputs, **outputs}
    dirs = {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}}
    return {"type": kind, "connections": conns, "port_directions": dirs}


def _netlist():
    # window.x (FF) -> LUT2 -> LUT3 -> CARRY4 -> MUXF7 -> mvu.acc (FF); a LUT loop-free
    # side branch of one level into the same FF; mvu.acc -> LUT1 -> out.q (FF).
    cells = {
        "ff_x": _cell("FDRE", {"D": [3], "C": [1], "CE": [1], "R": [0]}, {"Q": [2]}),
        "l2": _cell("LUT2", {"I0": [2], "I1": [3]}, {"O": [4]}),
        "l3": _cell("LUT3", {"I0": [4], "I1": [2], "I2": [3]}, {"O": [5]}),
        "c4": _cell("CARRY4", {"S": [5, 3, 3, 3], "CI": [0]}, {"O": [6, 8, 9, 10]}),
        "mx": _cell("MUXF7", {"I0": [6], "I1": [11], "S": [2]}, {"O": [12]}),
        "side": _cell("LUT1", {"I0": [3]}, {"O": [11]}),
        "ff_acc": _cell("FDRE", {"D": [12], "C": [1], "CE": [1], "R": [0]}, {"Q": [7]}),
        "l1": _cell("LUT1", {"I0": [7]}, {"O": [13]}),
        "ff_q": _cell("FDRE", {"D": [13], "C": [1], "CE": [1], "R": [0]}, {"Q": [14]}),
    }
    nets = {"bridge.accelerator.conv_window.x": {"bits": [2]},
            "bridge.accelerator.conv_mvu.acc": {"bits": [7]},
            "bridge.accelerator.conv_mvu.acc_alias_with_a_longer_name": {"bits": [7]},
            "bridge.out.q": {"bits": [14]},
            "$abc$1": {"bits": [4]}}
    return {"modules": {"top": {"cells": cells, "netnames": nets}}}


def test_levels_count_luts_not_carries_or_muxes():
    d = logic_depth(_netlist())
    assert d["cores"] == {"conv_mvu": 2, "conv_window": 0, "out": 1}
    assert d["max"] == 2
