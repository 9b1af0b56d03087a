"""The output directory of a build: the only place a build writes, and only its own files.

A ``.qpk`` can come from anyone, and file names are derived from what is in
it, so writing is done by construction through one object:

* :meth:`OutputDir.path` resolves a name relative to the directory and refuses
  anything that lands outside it (``..``, absolute paths, symbolic links that
  lead out), so no node name can make a build write elsewhere.
* A build owns what it wrote. ``manifest.json`` lists those files and the
  subdirectories whose contents tools write (the board build, the Verilator
  model); the next build into the same directory may replace them.
* Anything else in the directory is the user's. A directory holding such
  foreign files is refused unless ``force`` (then they are left alone; a
  foreign file whose name the build writes is replaced). Nothing is ever
  deleted except files an earlier build listed in its manifest, and no
  directory the build did not create is removed.

Every failure is a :class:`~compiler.errors.BuildError` naming the path.
"""

import json
import os
from pathlib import Path

from ..errors import BuildError
from ..names import safe_file_name

__all__ = ["OutputDir", "MANIFEST", "safe_file_name"]

MANIFEST = "manifest.json"
_MANIFEST_TOOL = "shiftadd build"


class OutputDir:
    """A build's output directory.

    Parameters
    ----------
    path : the directory (created if missing, with its parents)
    force : write into a directory that holds files no build of this tool wrote
    """

    def __init__(self, path, *, force=False):
        if path is None or str(path).strip() == "":
            raise BuildError("the output directory is empty; give -o DIR")
        self.root = Path(path)
        self._check_parents()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BuildError(f"{self.root}: exists and is not a directory") from None
        except OSError as err:
            raise BuildError(f"{self.root}: cannot create the output directory: "
                             f"{err.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BuildError(f"{self.root}: the output directory is not writable")
        self.real = self.root.resolve()
        self.owned_files, self.owned_dirs = self._read_manifest()
        self.written = set()
        self.tool_dirs = set()
        foreign = self._foreign()
        if foreign and not force:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more"
                                              if len(foreign) > 3 else "")
            raise BuildError(f"{self.root}: holds files this tool did not write ({shown}); "
                             "choose an empty or new directory, or pass --force to build "
                             "beside them (they are left alone)")

    def _check_parents(self):
        for parent in [self.root, *self.root.parents]:
            if parent.exists() and not parent.is_dir():
                where = "is" if parent == self.root else f"is under {parent}, which is"
                raise BuildError(f"{self.root}: {where} a file, not a directory")
            if parent.exists():
                break

    def _read_manifest(self):
        path = self.root / MANIFEST
        if not path.is_file():
            return set(), set()
        try:
            data = json.loads(path.read_text())
            if data.get("tool") != _MANIFEST_TOOL:
                raise ValueError("not ours")
            files = {str(f) for f in data["files"]}
            dirs = {str(d) for d in data.get("dirs", [])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return set(), set()
        return files, dirs

    def _relative_files(self):
        out = []
        for p in sorted(self.root.rglob("*")):
            if p.is_file() or p.is_symlink():
                out.append(p.relative_to(self.root).as_posix())
        return out

    def _is_owned(self, rel):
        return (rel == MANIFEST or rel in self.owned_files
                or any(rel.startswith(d + "/") for d in self.owned_dirs))

    def _foreign(self):
        return [rel for rel in self._relative_files() if not self._is_owned(rel)]

    # -- writing ------------------------------------------------------------------------

    def path(self, rel):
        """The path of ``rel`` inside the directory; BuildError if it would lie outside."""
        rel = Path(rel)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\0" in str(rel):
            raise BuildError(f"refusing to write {str(rel)!r}: not a plain path inside "
                             f"{self.root}")
        if any(len(part.encode()) > 200 for part in rel.parts):
            raise BuildError(f"refusing to write {str(rel)[:60]!r}...: a file name longer than "
                             "200 bytes")
        target = self.root / rel
        # Resolve what exists (a symbolic link could lead anywhere) and check again.
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError) as err:
            raise BuildError(f"refusing to write {target}: {err}") from None
        if resolved != self.real and self.real not in resolved.parents:
            raise BuildError(f"refusing to write {target}: it resolves to {resolved}, outside "
                             f"the output directory {self.real}")
        return target

    def _prepare(self, rel):
        target = self.path(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BuildError(f"{target.parent}: cannot create: {err.strerror}") from None
        if target.is_symlink():
            # Replace the link itself rather than write through it.
            target.unlink()
        return target

    def write_bytes(self, rel, data):
        target = self._prepare(rel)
        try:
            target.write_bytes(data)
        except OSError as err:
            raise BuildError(f"{target}: cannot write: {err.strerror}") from None
        self.written.add(Path(rel).as_posix())
        return target

    def write_text(self, rel, text):
        return self.write_bytes(rel, text.encode())

    def tool_dir(self, rel):
        """A subdirectory whose files an external tool writes; the build owns all of it."""
        target = self.path(rel)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BuildError(f"{target}: cannot create: {err.strerror}") from None
        self.tool_dirs.add(Path(rel).as_posix())
        return target

    def check_inside(self):
        """After tools ran: every file under the tool directories still lies inside."""
        for d in self.tool_dirs:
            for p in (self.root / d).rglob("*"):
                if p.is_symlink():
                    self.path(p.relative_to(self.root))

    def finish(self):
        """Remove the files an earlier build wrote and this one did not; write the manifest.

        Returns the sorted list of files this build wrote (tool directories excluded).
        """
        for rel in sorted(self.owned_files - self.written):
            stale = self.root / rel
            if stale.is_file() and not stale.is_symlink() and self._inside(stale):
                stale.unlink()
        files = sorted(self.written)
        manifest = {"tool": _MANIFEST_TOOL, "files": files, "dirs": sorted(self.tool_dirs)}
        (self.root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return files

    def _inside(self, p):
        resolved = p.resolve()
        return self.real in resolved.parents
