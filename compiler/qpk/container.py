"""The ``.qpk`` container: a header, a JSON manifest and checksummed raw tensors.

Layout (all integers little-endian; see ``docs/qpk.md``)::

    offset  size  field
    0       8     magic  b"\\x89QPK\\r\\n\\x1a\\n"
    8       2     major version
    10      2     minor version
    12      4     flags (0)
    16      8     manifest length M
    24      32    SHA-256 of the manifest bytes
    56      8     data length D
    64      M     manifest, UTF-8 JSON
    ...           zero padding to a multiple of 64
    P       D     data: each tensor's raw bytes at its manifest offset (64-aligned)

The file ends exactly at ``P + D``. Nothing in it is ever unpickled: tensors are
read with :func:`numpy.frombuffer` from a dtype named in the manifest.
"""

import hashlib
import json
import re
import struct

import numpy as np

from .. import limits
from ..errors import QpkError

MAGIC = b"\x89QPK\r\n\x1a\n"
VERSION = (1, 1)
HEADER = struct.Struct("<8sHHIQ32sQ")
ALIGN = 64
DTYPES = {
    "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
    "uint8": "<u1", "uint16": "<u2", "float32": "<f4", "float64": "<f8",
}
_HEX64 = re.compile(r"[0-9a-f]{64}")
# JSON strings (escapes included), removed before the brackets are counted.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_STEP = np.zeros(256, np.int64)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _sha256(b):
    return hashlib.sha256(b).hexdigest()


def _dtype_name(arr):
    for name, code in DTYPES.items():
        if np.dtype(code) == arr.dtype.newbyteorder("<"):
            return name
    raise ValueError(f"tensors of dtype {arr.dtype} cannot be stored in a .qpk")


def pack(manifest, tensors):
    """Serialize ``manifest`` (a JSON-able dict without ``tensors``) and named arrays."""
    entries, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dname = _dtype_name(arr)
        raw = arr.astype(DTYPES[dname], copy=False).tobytes()
        entries[name] = {"dtype": dname, "shape": list(arr.shape), "offset": offset,
                         "nbytes": len(raw), "sha256": _sha256(raw)}
        padded = raw + b"\0" * (_align(len(raw)) - len(raw))
        blobs.append(padded)
        offset += len(padded)
    manifest = dict(manifest, tensors=entries)
    mbytes = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False).encode()
    data = b"".join(blobs)
    header = HEADER.pack(MAGIC, *VERSION, 0, len(mbytes), hashlib.sha256(mbytes).digest(),
                         len(data))
    head = header + mbytes
    return head + b"\0" * (_align(len(head)) - len(head)) + data


def unpack(blob, path):
    """Parse and verify a container. Returns ``(manifest, {name: array})``.

    Every length, count and depth is checked against :mod:`compiler.limits`
    before anything is allocated for it, and every check is linear in the size
    of the blob; any defect raises :class:`QpkError`.
    """
    if len(blob) > limits.MAX_FILE_BYTES:
        raise QpkError(path, f"{len(blob):,} bytes is larger than the "
                             f"{limits.MAX_FILE_BYTES:,}-byte limit of a .qpk")
    if len(blob) < HEADER.size:
        if not blob.startswith(MAGIC[:len(blob)]) or not blob:
            raise QpkError(path, "not a .qpk file (bad magic bytes)")
        raise QpkError(path, f"truncated: {len(blob)} bytes, shorter than the "
                             f"{HEADER.size}-byte header")
    magic, major, minor, flags, mlen, mdigest, dlen = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise QpkError(path, "not a .qpk file (bad magic bytes)")
    if major != VERSION[0] or minor > VERSION[1]:
        raise QpkError(path, f"format version {major}.{minor} is not supported; this reader "
                             f"reads {VERSION[0]}.0 to {VERSION[0]}.{VERSION[1]}",
                       where="header.version")
    if flags != 0:
        raise QpkError(path, f"unknown flags 0x{flags:x}", where="header.flags")
    if mlen > limits.MAX_MANIFEST_BYTES:
        raise QpkError(path, f"manifest length {mlen:,} is larger than the "
                             f"{limits.MAX_MANIFEST_BYTES:,}-byte limit", where="header")
    data_start = _align(HEADER.size + mlen)
    if len(blob) < data_start + dlen:
        raise QpkError(path, f"truncated: {len(blob)} bytes, the header announces "
                             f"{data_start + dlen}")
    if len(blob) > data_start + dlen:
        raise QpkError(path, f"{len(blob) - data_start - dlen} unexpected bytes after the "
                             "end of the data section")
    if any(blob[HEADER.size + mlen:data_start]):
        raise QpkError(path, "the padding after the manifest is not zero (the file is "
                             "corrupted)", where="manifest")
    mbytes = bytes(blob[HEADER.size:HEADER.size + mlen])
    if hashlib.sha256(mbytes).digest() != mdigest:
        raise QpkError(path, "manifest checksum mismatch (the file is corrupted)",
                       where="manifest")
    manifest = parse_manifest(mbytes, path)
    if manifest.get("version") != [major, minor]:
        raise QpkError(path, f"field 'version' = {_short(manifest.get('version'))} disagrees "
                             f"with the header's {major}.{minor}", where="manifest")
    entries = manifest.get("tensors")
    if not isinstance(entries, dict):
        raise QpkError(path, "field 'tensors' must be an object", where="manifest")
    if len(entries) > limits.MAX_TENSORS:
        raise QpkError(path, f"{len(entries):,} tensors, more than the limit of "
                             f"{limits.MAX_TENSORS:,}", where="manifest")
    data = memoryview(blob)[data_start:data_start + dlen]
    tensors = {name: _read_tensor(path, name, e, data) for name, e in entries.items()}
    _check_gaps(path, entries, data)
    return manifest, tensors


def _check_gaps(path, entries, data):
    """Bytes of the data section outside every tensor must be zero: no checksum covers them."""
    end = 0
    for start, stop in sorted((e["offset"], e["offset"] + e["nbytes"]) for e in entries.values()):
        if start > end and any(data[end:start]):
            break
        end = max(end, stop)
    else:
        if not any(data[end:]):
            return
    raise QpkError(path, "bytes outside every tensor are not zero (the file is corrupted)",
                   where="data")


def _short(value, n=60):
    """``repr(value)``, cut to ``n`` characters: messages quote untrusted values."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def listing(names, n=200):
    """Sorted names joined by commas, cut to ``n`` characters."""
    text = ", ".join(sorted(names))
    return text if len(text) <= n else text[:n - 3] + "..."


def json_depth(mbytes):
    """Deepest nesting of arrays and objects in JSON text, in time linear in its length."""
    stripped = _JSON_STRING.sub(b'""', mbytes)
    steps = _BRACKET_STEP[np.frombuffer(stripped, dtype=np.uint8)]
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {_short(key)} appears twice in one object")
        obj[key] = value
    return obj


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


def parse_manifest(mbytes, path):
    """The manifest as a dict: strict JSON (no NaN, no duplicate keys) of bounded depth."""
    depth = json_depth(mbytes)
    if depth > limits.MAX_JSON_DEPTH:
        raise QpkError(path, f"manifest nests {depth} levels deep, more than the limit of "
                             f"{limits.MAX_JSON_DEPTH}", where="manifest")
    try:
        # ValueError covers bad JSON, NaN, duplicate keys and integers of more
        # digits than Python converts. The depth is checked above; RecursionError
        # stays caught in case the bracket count and the parser ever disagree.
        manifest = json.loads(mbytes.decode("utf-8"), parse_constant=_reject_constant,
                              object_pairs_hook=_no_duplicates, parse_float=_finite_float)
    except RecursionError:
        raise QpkError(path, "manifest nests too deep", where="manifest") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise QpkError(path, f"manifest is not valid JSON: {err}", where="manifest") from None
    if not isinstance(manifest, dict):
        raise QpkError(path, "manifest must be a JSON object", where="manifest")
    return manifest


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _read_tensor(path, name, entry, data):
    where = f"tensor {_short(name)}"

    def bad(msg):
        raise QpkError(path, msg, where=where)

    if not isinstance(entry, dict):
        bad("entry must be an object")
    for key in ("dtype", "shape", "offset", "nbytes", "sha256"):
        if key not in entry:
            bad(f"missing field '{key}'")
    unknown = set(entry) - {"dtype", "shape", "offset", "nbytes", "sha256"}
    if unknown:
        bad(f"unknown field(s) {listing(unknown)}")
    dname, shape, offset, nbytes = entry["dtype"], entry["shape"], entry["offset"], entry["nbytes"]
    if not isinstance(dname, str) or dname not in DTYPES:
        bad(f"field 'dtype' = {_short(dname)} is not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        bad(f"field 'shape' = {_short(shape)} must be a list of integers")
    if len(shape) > limits.MAX_RANK:
        bad(f"field 'shape' has {len(shape)} dimensions, more than the limit of "
            f"{limits.MAX_RANK}")
    size = 1
    for d in shape:
        if not 1 <= d <= limits.MAX_TENSOR_ELEMENTS:
            bad(f"field 'shape' = {_short(shape)}: every dimension must lie in "
                f"[1, {limits.MAX_TENSOR_ELEMENTS:,}]")
        size *= d             # Python ints: no overflow, and each factor is bounded
    if size > limits.MAX_TENSOR_ELEMENTS:
        bad(f"field 'shape' = {shape} has {size:,} elements, more than the limit of "
            f"{limits.MAX_TENSOR_ELEMENTS:,}")
    for key, value in (("offset", offset), ("nbytes", nbytes)):
        if not _is_int(value) or value < 0:
            bad(f"field '{key}' = {_short(value)} must be a non-negative integer")
    if not isinstance(entry["sha256"], str) or not _HEX64.fullmatch(entry["sha256"]):
        bad("field 'sha256' must be 64 lowercase hexadecimal digits")
    dtype = np.dtype(DTYPES[dname])
    expected = size * dtype.itemsize
    if nbytes != expected:
        bad(f"field 'nbytes' = {nbytes} does not match shape {shape} of {dname} "
            f"({expected} bytes)")
    if offset % ALIGN:
        bad(f"field 'offset' = {offset} is not a multiple of {ALIGN}")
    if offset + nbytes > len(data):
        bad(f"bytes {offset}..{offset + nbytes} lie outside the {len(data)}-byte data section")
    raw = bytes(data[offset:offset + nbytes])
    if _sha256(raw) != entry["sha256"]:
        bad("checksum mismatch (the file is corrupted)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
