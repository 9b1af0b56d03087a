"""The build manifest: what ``flash()`` needs to know about a board build directory.

``build()`` writes ``board.json`` into the board build directory::

    {
     "board": "ulx3s",                 registry name
     "bitstream": "top.bit",           relative to the manifest, or null (Arty without Vivado)
     "bitstream_file": "top.bit",      what the plan produces when run by hand (build_top.sh)
     "loader_board": "ulx3s",          openFPGALoader -b
     "sram_load": true,                false: openFPGALoader can only write the SPI flash
     "toolchain": "Trellis",
     "flash_images": [],               extra files for the SPI flash: {"path", "offset", "quad"}
                                       (quad: the design reads it in quad mode, so flash()
                                       sets the flash's quad-enable bit first)
     "uart": {"baud": 115200, "input": {...}, "output": {...}}   only for a BoardTop
    }

Paths are relative and keys sorted, so the same build writes the same bytes.
"""

import json
from pathlib import Path

from .registry import BoardError

__all__ = ["MANIFEST", "write_manifest", "read_manifest", "find_manifest"]

MANIFEST = "board.json"


def write_manifest(build_dir, data):
    path = Path(build_dir) / MANIFEST
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def find_manifest(build_dir):
    """``board.json`` in ``build_dir`` or in its ``board/`` subdirectory (a compiler build)."""
    build_dir = Path(build_dir)
    for candidate in (build_dir / MANIFEST, build_dir / "board" / MANIFEST):
        if candidate.is_file():
            return candidate
    if not build_dir.exists():
        raise BoardError(f"{build_dir}: no such build directory")
    raise BoardError(f"{build_dir}: no {MANIFEST} here or in {build_dir / 'board'}; "
                     "is this a build directory? (build it first)")


def read_manifest(build_dir):
    """``(manifest dict, directory it is in)``; a damaged manifest is a BoardError."""
    path = find_manifest(build_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BoardError(f"{path}: unreadable manifest ({err})") from None
    for key in ("board", "loader_board", "bitstream"):
        if key not in data:
            raise BoardError(f"{path}: manifest lacks {key!r}")
    return data, path.parent
