"""Finding the model a command names: a ``.qpk`` path or a zoo model."""

from pathlib import Path

from .. import qpk
from ..errors import QpkError

__all__ = ["resolve_model"]


def resolve_model(name):
    """``(graph, path)`` for a ``.qpk`` file or the name of a built-in zoo model."""
    path = Path(name)
    if path.exists() or path.suffix == ".qpk" or "/" in str(name):
        return qpk.load(path), path
    from ..zoo import list_models, zoo_path
    if name in list_models():
        return qpk.load(zoo_path(name)), zoo_path(name)
    raise QpkError(path, "no such file, and no zoo model of that name (zoo models: "
                         f"{', '.join(list_models()) or 'none'})")
