"""``python -m compiler flash BUILD_DIR``: load a build onto its board.

The board layer (:mod:`boards.flash`) knows the openFPGALoader command lines;
this wrapper turns its errors into the compiler's user errors so the CLI prints
one line and exits non-zero instead of a traceback.
"""

from ..errors import BuildError

__all__ = ["flash"]


def flash(build_dir, *, to_flash=False, dry_run=False, cable=None, progress=print):
    """Flash ``build_dir`` (a compiler build directory or its ``board/``); returns 0."""
    from boards import BoardError
    from boards.flash import flash as board_flash
    try:
        board_flash(build_dir, to_flash=to_flash, dry_run=dry_run, cable=cable,
                    progress=progress)
    except BoardError as err:
        raise BuildError(str(err)) from None
    return 0
