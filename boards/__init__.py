"""Boards: registry and budgets, the UART board top, toolchains and flashing.

    from boards import get_board, BoardTop, build, flash
    board = get_board("ulx3s")
    result = build(board, BoardTop(accelerator, board), "build/ulx3s")
    flash("build/ulx3s")

This package imports :mod:`hw` and never :mod:`compiler`; its user errors are
:class:`BoardError`, one line each, which the compiler wraps in its BuildError.
"""

from .engine_clocks import ENGINE_CLOCKS, engine_clocks
from .engine_top import EngineBoardTop, build_engine
from .flash import flash, flash_commands, flash_plan
from .flash_layout import FLASH_LAYOUTS, flash_layout, weights_image
from .host import LaneFormat
from .manifest import read_manifest, write_manifest
from .registry import ALIASES, BOARDS, DEFAULT_BOARD, Board, BoardError, board_names, get_board
from .toolchain import BoardBuildResult, build
from .top import DEFAULT_BAUD, BoardTop, UARTBridge

# The name the compiler's build step uses.
build_board = build

__all__ = ["Board", "BoardError", "BOARDS", "ALIASES", "DEFAULT_BOARD", "board_names",
           "get_board", "BoardTop", "UARTBridge", "DEFAULT_BAUD", "LaneFormat",
           "BoardBuildResult", "build", "build_board", "flash", "flash_commands", "flash_plan",
           "FLASH_LAYOUTS", "flash_layout", "weights_image", "read_manifest", "write_manifest",
           "EngineBoardTop", "build_engine", "ENGINE_CLOCKS", "engine_clocks"]
