"""The memories of an elaborated design, as synthesis will see them.

A plan estimates its block RAM before the design exists; once it does, the
design itself says what it holds. :func:`design_memories` walks the elaborated
fragment tree and lists every memory with its shape and ports, so a plan can
count its block RAMs from what will actually be synthesized.
"""

from dataclasses import dataclass

from amaranth.hdl import Fragment, Shape
from amaranth.hdl._mem import MemoryInstance

from hw.rom import varying_bits

__all__ = ["MemorySpec", "design_memories", "count_brams"]


@dataclass(frozen=True)
class MemorySpec:
    name: str            # hierarchical name, dotted
    width: int
    depth: int
    granularity: int     # bits per write enable (the width for a ROM)
    read_ports: int
    writes: bool = True  # False: a ROM
    style: str = None    # its ``ram_style`` attribute, if the design sets one

    @property
    def copies(self):
        """How many times block RAM holds it: a block RAM has two ports, and a write
        port takes one of them."""
        spare = 1 if self.writes else 2
        return max(1, -(-self.read_ports // spare))


def design_memories(elaboratable):
    """``[MemorySpec]`` of every memory in ``elaboratable``'s elaborated hierarchy."""
    out = []
    _walk(Fragment.get(elaboratable, None), (), out)
    return out


def _walk(fragment, path, out):
    if isinstance(fragment, MemoryInstance):
        data = fragment._data
        width = Shape.cast(data.shape).width
        writes = fragment._write_ports
        if not writes:
            width = bin(varying_bits(data.init._raw) & ((1 << width) - 1)).count("1")
        out.append(MemorySpec(".".join(path), width, data.depth,
                              min((p._granularity for p in writes), default=width),
                              len(fragment._read_ports), writes=bool(writes),
                              style=fragment._attrs.get("ram_style")))
    for sub, name, _ in fragment.subfragments:
        _walk(sub, path + (str(name),), out)


def count_brams(fabric, memories):
    """``[(MemorySpec, brams, luts)]`` on ``fabric``."""
    rows = []
    for mem in memories:
        brams, luts = fabric.memory(mem.width, mem.depth, mem.granularity, mem.copies,
                                    style=mem.style, rom=not mem.writes)
        rows.append((mem, brams, luts))
    return rows
