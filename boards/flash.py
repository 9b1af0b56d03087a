"""Loading a build onto its board with openFPGALoader.

``flash()`` reads the build's manifest (``board.json``, see
:mod:`boards.manifest`) and runs, for the FPGA's configuration SRAM::

    openFPGALoader -b <board> <bitstream>

or, with ``to_flash=True``, for the SPI flash the FPGA boots from::

    openFPGALoader -b <board> -f <bitstream>

Extra flash images in the manifest (a weight image) are written to the SPI
flash at their offsets first, so the design finds them when it starts.
"""

import subprocess
from pathlib import Path

from .manifest import read_manifest
from .registry import BoardError, get_board
from .tools import require

__all__ = ["flash", "flash_commands", "LOADER"]

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


def flash_commands(build_dir, *, to_flash=False, cable=None):
    """The openFPGALoader command lines (lists of arguments) ``flash()`` would run."""
    manifest, where = read_manifest(build_dir)
    board, bitstream = _bitstream(manifest, Path(where))
    base = [LOADER, "-b", manifest["loader_board"]]
    if cable:
        base += ["-c", cable]
    commands = []
    for image in manifest.get("flash_images", []):
        path = Path(where) / image["path"]
        if not path.is_file():
            raise BoardError(f"{path}: flash image missing; build again")
        # Raw data at an offset ("bin" stops openFPGALoader parsing it as a bitstream).
        commands.append(base + ["-f", "--file-type", "bin", "-o", hex(int(image["offset"])),
                                str(path)])
    write_flash = to_flash or not manifest.get("sram_load", True)
    commands.append(base + (["-f"] if write_flash else []) + [str(bitstream)])
    return commands


def flash(build_dir, *, to_flash=False, dry_run=False, cable=None, progress=print):
    """Load the bitstream of ``build_dir`` (SRAM, or SPI flash with ``to_flash``).

    ``build_dir`` is a board build directory or a compiler build directory
    holding one in ``board/``. With ``dry_run`` the commands are printed, not
    run. Returns the command lines (lists of arguments).
    """
    manifest, _ = read_manifest(build_dir)
    commands = flash_commands(build_dir, to_flash=to_flash, cable=cable)
    if not to_flash and not manifest.get("sram_load", True):
        progress(f"{manifest['board']}: openFPGALoader can only write this board's SPI flash; "
                 "writing the flash")
    if dry_run:
        for argv in commands:
            progress(" ".join(argv))
        return commands
    loader = require(LOADER)
    for argv in commands:
        progress(" ".join(argv))
        rc = subprocess.run([loader, *argv[1:]], stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise BoardError(f"{LOADER} failed (exit status {rc}); is the board plugged in, "
                             "and may this user open it (udev rules)?")
    return commands
