"""Logic depth of a Xilinx netlist: LUT levels between registers, per core.

Without Vivado there is no timing for the Arty; the depth of the logic is the
next best figure. :func:`logic_depth` reads the Yosys JSON netlist that
``synth_xilinx`` writes (flattened, mapped to 7-series cells) and counts, for
every register input, the LUTs on the longest combinational path into it. A
path's LUTs are its levels: on an Artix-7 -1 a LUT and the wire to the next
take about 1 ns, so a 100 MHz clock (10 ns, less about 1.5 ns of clock-to-out
and set-up) holds about 8 levels; carry chains (``CARRY4``, some 0.1 ns per 4
bits) and the slice multiplexers (``MUXF7``/``MUXF8``) are not counted as
levels. Each register is put in the core whose signal it drives (the
Amaranth instance path of its output net, ``bridge.accelerator.<core>.``), so
a core's depth is that of the longest path that ends in it, wherever the path
began.
"""

from collections import defaultdict

__all__ = ["logic_depth", "LEVEL_NS_XC7"]

#: What one LUT level and its routing take on an Artix-7 -1, and what a register-to-
#: register path spends outside its LUTs (docs/boards.md).
LEVEL_NS_XC7 = 1.0
OVERHEAD_NS_XC7 = 1.5

# Cells whose outputs are combinational functions of their inputs, and the LUT levels
# each adds. Distributed RAM reads asynchronously: a LUT level from address to data.
_LEVELS = {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1,
           "RAM32M": 1, "RAM64M": 1, "RAM32X1D": 1, "RAM64X1D": 1, "RAM128X1D": 1,
           "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 1, "RAM256X1S": 1,
           "CARRY4": 0, "MUXF7": 0, "MUXF8": 0, "INV": 0}
_PREFIXES = ("bridge.accelerator.", "bridge.")


def logic_depth(netlist, top="top"):
    """``{"max": levels, "cores": {core: levels}}`` for a Yosys JSON netlist (a dict);
    ``core`` is the first instance under the accelerator (``relu1_mvu``), or the
    first under the top for registers outside it (``bridge``)."""
    module = netlist["modules"][top]
    names = _net_names(module)
    driver = {}                           # bit -> combinational cell that drives it
    for name, cell in module["cells"].items():
        if cell["type"] in _LEVELS:
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) == "output":
                    for bit in bits:
                        driver[bit] = name
    depth = _depths(module, driver)
    cores = defaultdict(int)
    for name, cell in module["cells"].items():
        if cell["type"] in _LEVELS or cell["type"].startswith("$"):
            continue
        inputs = [b for p, bits in cell["connections"].items()
                  if cell["port_directions"].get(p) == "input" for b in bits]
        levels = max((depth[driver[b]] for b in inputs if b in driver), default=0)
        outputs = [b for p, bits in cell["connections"].items()
                   if cell["port_directions"].get(p) == "output" for b in bits]
        core = next((_core(names[b]) for b in outputs if b in names), None)
        if core is not None:
            cores[core] = max(cores[core], levels)
    return {"max": max(cores.values(), default=0), "cores": dict(sorted(cores.items()))}


def _depths(module, driver):
    """LUT levels at the output of every combinational cell, in topological order."""
    cells = module["cells"]
    fanin = {}
    for name in set(driver.values()):
        cell = cells[name]
        fanin[name] = {driver[b] for p, bits in cell["connections"].items()
                       if cell["port_directions"].get(p) == "input"
                       for b in bits if b in driver}
    depth, entered = {}, set()
    for start in fanin:
        stack = [(start, False)]
        while stack:
            name, ready = stack.pop()
            if name in depth:
                continue
            if ready:
                # A combinational loop (none in a synchronous design) counts once round.
                depth[name] = _LEVELS[cells[name]["type"]] + max(
                    (depth.get(d, 0) for d in fanin[name]), default=0)
            elif name not in entered:
                entered.add(name)
                stack.append((name, True))
                stack.extend((d, False) for d in fanin[name] if d not in depth)
    return depth


def _net_names(module):
    """bit -> the shortest hierarchical name a net carrying it has (Yosys' own
    ``$``-names left out)."""
    names = {}
    for name, net in module["netnames"].items():
        if name.startswith("$") or net.get("hide_name"):
            continue
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    return names


def _core(net):
    for prefix in _PREFIXES:
        if net.startswith(prefix) and "." in net[len(prefix):]:
            return net[len(prefix):].split(".", 1)[0]
    return net.split(".", 1)[0] if "." in net else "top"
