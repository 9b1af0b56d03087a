"""Loading a build onto its board with openFPGALoader.

``flash()`` reads the build's manifest (``board.json``, see
:mod:`boards.manifest`) and runs, for the FPGA's configuration SRAM::

    openFPGALoader -b <board> <bitstream>

or, with ``to_flash=True``, for the SPI flash the FPGA boots from::

    openFPGALoader -b <board> -f <bitstream>

Extra flash images in the manifest (a weight image) are written to the SPI
flash at their offsets first, so the design finds them when it starts; each
must lie past the device's largest bitstream and inside the flash
(:mod:`boards.flash_layout`). If an image is read in quad mode (``"quad":
true``), the flash's quad-enable bit is set before anything is written, where
openFPGALoader can (``--enable-quad`` on the Arty); where it cannot, the
reason and the way out are printed instead (the ULX3S).
"""

import subprocess
from pathlib import Path

from .flash_layout import FLASH_LAYOUTS
from .manifest import read_manifest
from .registry import BoardError, get_board
from .tools import require

__all__ = ["flash", "flash_commands", "flash_plan", "LOADER"]

LOADER = "openFPGALoader"


def _bitstream(manifest, where):
    """The bitstream to load, or a BoardError saying why there is none and what to do."""
    board = get_board(manifest["board"])
    name = manifest.get("bitstream")
    expected = manifest.get("bitstream_file")
    if name is None and expected and (where / expected).is_file():
        # Not built by build() (an Arty plan run by hand in Vivado); build() deletes
        # stale bitstreams, so one that is here now was made from this plan.
        name = expected
    if name is None:
        if not board.open_toolchain:
            raise BoardError(
                f"{where}: no bitstream; {board.name} needs Vivado, which was not found when "
                f"this was built. Run `sh build_top.sh` in {where} on a machine with Vivado "
                "(or rebuild with vivado on PATH), then flash again")
        raise BoardError(f"{where}: no bitstream; the toolchain was not run for this build "
                         "(build again without --no-synth)")
    path = where / name
    if not path.is_file():
        raise BoardError(f"{path}: bitstream missing (deleted or moved?); build again")
    return board, path


def flash_plan(build_dir, *, to_flash=False, cable=None):
    """``(commands, notes)``: the openFPGALoader command lines ``flash()`` would run
    (lists of arguments) and the lines it would print first."""
    manifest, where = read_manifest(build_dir)
    board, bitstream = _bitstream(manifest, Path(where))
    layout = FLASH_LAYOUTS.get(board.name)
    base = [LOADER, "-b", manifest["loader_board"]]
    if cable:
        base += ["-c", cable]
    commands, notes = [], []
    images = manifest.get("flash_images", [])
    if any(image.get("quad") for image in images) and layout is not None:
        if layout.quad_args:
            # Quad-enable is a non-volatile bit: setting it again is harmless.
            commands.append(base + list(layout.quad_args))
        elif layout.quad_note:
            notes.append(f"{board.name}: {layout.quad_note}")
    for image in images:
        path = Path(where) / image["path"]
        if not path.is_file():
            raise BoardError(f"{path}: flash image missing; build again")
        offset, size = int(image["offset"]), path.stat().st_size
        if layout is not None and offset < layout.bitstream_bytes:
            raise BoardError(f"{path}: offset {offset:#x} is inside the bitstream "
                             f"({layout.bitstream_bytes:,} bytes from 0 on {board.name}); use "
                             f"{layout.weights_offset:#x}")
        if layout is not None and offset + size > layout.flash_bytes:
            raise BoardError(f"{path}: {size:,} bytes at {offset:#x} do not fit the "
                             f"{layout.flash_bytes >> 20} MiB flash of {board.name}")
        # Raw data at an offset ("bin" stops openFPGALoader parsing it as a bitstream).
        commands.append(base + ["-f", "--file-type", "bin", "-o", hex(offset), str(path)])
    write_flash = to_flash or not manifest.get("sram_load", True)
    commands.append(base + (["-f"] if write_flash else []) + [str(bitstream)])
    return commands, notes


def flash_commands(build_dir, *, to_flash=False, cable=None):
    """The openFPGALoader command lines (lists of arguments) ``flash()`` would run."""
    return flash_plan(build_dir, to_flash=to_flash, cable=cable)[0]


def flash(build_dir, *, to_flash=False, dry_run=False, cable=None, progress=print):
    """Load the bitstream of ``build_dir`` (SRAM, or SPI flash with ``to_flash``).

    ``build_dir`` is a board build directory or a compiler build directory
    holding one in ``board/``. With ``dry_run`` the commands are printed, not
    run. Returns the command lines (lists of arguments).
    """
    manifest, _ = read_manifest(build_dir)
    commands, notes = flash_plan(build_dir, to_flash=to_flash, cable=cable)
    if not to_flash and not manifest.get("sram_load", True):
        progress(f"{manifest['board']}: openFPGALoader can only write this board's SPI flash; "
                 "writing the flash")
    for note in notes:
        progress(note)
    if dry_run:
        for argv in commands:
            progress(" ".join(argv))
        return commands
    loader = require(LOADER)
    for argv in commands:
        progress(" ".join(argv))
        rc = subprocess.run([loader, *argv[1:]], stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            hint = ("; --enable-quad needs openFPGALoader 0.13.0 or later"
                    if "--enable-quad" in argv else "")
            raise BoardError(f"{LOADER} failed (exit status {rc}); is the board plugged in, "
                             f"and may this user open it (udev rules)?{hint}")
    return commands
