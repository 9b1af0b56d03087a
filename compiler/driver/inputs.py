"""Input files for a model: ``.npz`` (``x``, optional labels ``y``), ``.npy``, or an image.

:func:`read_inputs` returns the model's input integers, ``(N, *input shape)``, and
the labels if the file has them. Integer arrays are taken as the input integers
themselves (each must fit the input's bits); float arrays are real values,
quantized with the model's input scale (``clamp(round(x / scale))``, as the
quantizer does). An image (PNG, JPEG, ...) is converted to the input's channels
(grey for 1, RGB for 3), resized to its height and width, and mapped from pixels
``0 .. 255`` onto the model's input range: ``metadata["input_range"]`` if the
``.qpk`` has one, else ``[-1, 1]`` for a signed input and ``[0, 1]`` for an
unsigned one; then quantized as a float array is. Nothing is unpickled, and no
file larger than :data:`MAX_INPUT_BYTES` is read.
"""

import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["InputError", "read_npz", "check_labels", "read_inputs", "MAX_INPUT_BYTES"]

#: Bytes of an input file, and of any array in an ``.npz`` once decompressed.
MAX_INPUT_BYTES = 256 << 20

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}


class InputError(UserError):
    """An input file cannot be read or does not match the model's input."""


def _size_checked(path, error):
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror or err}") from None
    if path.is_dir():
        raise error(f"{path}: is a directory, not a file")
    if size > MAX_INPUT_BYTES:
        raise error(f"{path}: {size:,} bytes; at most {MAX_INPUT_BYTES:,} are read")
    return path


def read_npz(path, error=InputError):
    """``(x, y)`` from an ``.npz`` (``y`` None if absent), unpickling nothing; a bad file
    raises ``error`` naming it."""
    path = _size_checked(path, error)
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file, not an .npz")
    try:
        with zipfile.ZipFile(path) as z:
            big = [i.filename for i in z.infolist() if i.file_size > MAX_INPUT_BYTES]
        if big:
            raise error(f"{path}: '{big[0]}' unpacks to more than {MAX_INPUT_BYTES:,} bytes")
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files:
                found = ", ".join(npz.files) or "none"
                raise error(f"{path}: no array 'x' (found: {found})")
            x = np.asarray(npz["x"])
            y = np.asarray(npz["y"]) if "y" in npz.files else None
    except EOFError:
        raise error(f"{path}: empty file, not an .npz") from None
    except (ValueError, zipfile.BadZipFile, KeyError) as err:   # object arrays need pickle
        raise error(f"{path}: cannot read as .npz: {err}") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror or err}") from None
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 1 or x.size == 0:
        raise error(f"{path}: 'x' must be a non-empty numeric array, got "
                    f"{x.dtype} {list(x.shape)}")
    return x, y


def check_labels(path, y, n, error=InputError):
    """Refuse labels ``y`` that are not ``n`` integers."""
    if y is not None and (not np.issubdtype(y.dtype, np.integer) or y.shape != (n,)):
        raise error(f"{path}: 'y' must be integer labels of shape [{n}], got "
                    f"{y.dtype} {list(y.shape)}")


def _read_npy(path):
    path = _size_checked(path, InputError)
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise InputError(f"{path}: cannot read as .npy: {err}") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number) or x.size == 0:
        raise InputError(f"{path}: not a non-empty numeric array")
    return x


def _read_image(path, graph):
    from PIL import Image, UnidentifiedImageError
    path = _size_checked(path, InputError)
    shape = graph.input.attrs["shape"]
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise InputError(f"{path}: the model's input is {list(shape)}; an image can feed "
                         "only a (1 or 3, H, W) input")
    c, h, w = shape
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_INPUT_BYTES // 4:
                raise InputError(f"{path}: {img.width}x{img.height} pixels is too large")
            img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read as an image: {err}") from None
    pixels = pixels.reshape(h, w, c).transpose(2, 0, 1) / 255.0
    lo, hi = graph.metadata.get("input_range") or ((-1.0, 1.0) if graph.input.attrs["signed"]
                                                   else (0.0, 1.0))
    return (lo + pixels * (hi - lo))[None]


def _to_ints(path, x, graph):
    from sim.golden import int_range
    inp = graph.input.attrs
    shape = tuple(inp["shape"])
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise InputError(f"{path}: inputs of shape {list(x.shape)}; the model takes "
                         f"{list(shape)} (or a batch of them, [N, {', '.join(map(str, shape))}])")
    lo, hi = int_range(inp["bits"], inp["signed"])
    if np.issubdtype(x.dtype, np.integer):
        bad = (x < lo) | (x > hi)
        if bad.any():
            k = int(np.argwhere(bad)[0][0])
            raise InputError(f"{path}: input {k} has integers outside the model's "
                             f"{inp['bits']}-bit {'signed' if inp['signed'] else 'unsigned'} "
                             f"range [{lo}, {hi}]; give floats to have them quantized")
        return x.astype(np.int64)
    x = x.astype(np.float64)
    if not inp.get("scale"):
        raise InputError(f"{path}: the model records no input scale to quantize real values "
                         "with; give its input integers")
    if not np.isfinite(x).all():
        raise InputError(f"{path}: inputs must be finite numbers")
    return np.clip(np.round(x / inp["scale"]), lo, hi).astype(np.int64)


def read_inputs(path, graph):
    """``(x, y)``: the input integers ``(N, *shape)`` of ``graph`` from ``path``, and its
    labels (``None`` unless an ``.npz`` has ``y``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    y = None
    if suffix == ".npz":
        x, y = read_npz(path)
    elif suffix == ".npy":
        x = _read_npy(path)
    elif suffix in IMAGE_SUFFIXES:
        x = _read_image(path, graph)
    else:
        raise InputError(f"{path}: expected an .npz (x, optional y), an .npy or an image "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    x = _to_ints(path, x, graph)
    check_labels(path, y, len(x))
    return x, None if y is None else y.astype(np.int64)
