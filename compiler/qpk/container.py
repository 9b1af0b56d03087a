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
import struct

import numpy as np

from ..errors import QpkError

MAGIC = b"\x89QPK\r\n\x1a\n"
VERSION = (1, 1)
HEADER = struct.Struct("<8sHHIQ32sQ")
ALIGN = 64
DTYPES = {
    "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
    "uint8": "<u1", "uint16": "<u2", "float32": "<f4", "float64": "<f8",
}
MAX_MANIFEST = 64 << 20


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
    """Parse and verify a container. Returns ``(manifest, {name: array})``."""
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
    if mlen > MAX_MANIFEST:
        raise QpkError(path, f"manifest length {mlen} is implausible", where="header")
    data_start = _align(HEADER.size + mlen)
    if len(blob) < data_start + dlen:
        raise QpkError(path, f"truncated: {len(blob)} bytes, the header announces "
                             f"{data_start + dlen}")
    if len(blob) > data_start + dlen:
        raise QpkError(path, f"{len(blob) - data_start - dlen} unexpected bytes after the "
                             "end of the data section")
    mbytes = blob[HEADER.size:HEADER.size + mlen]
    if hashlib.sha256(mbytes).digest() != mdigest:
        raise QpkError(path, "manifest checksum mismatch (the file is corrupted)",
                       where="manifest")
    try:
        manifest = json.loads(mbytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise QpkError(path, f"manifest is not valid JSON: {err}", where="manifest") from None
    if not isinstance(manifest, dict):
        raise QpkError(path, "manifest must be a JSON object", where="manifest")
    if manifest.get("version") != [major, minor]:
        raise QpkError(path, f"field 'version' = {manifest.get('version')!r} disagrees with "
                             f"the header's {major}.{minor}", where="manifest")
    entries = manifest.get("tensors")
    if not isinstance(entries, dict):
        raise QpkError(path, "field 'tensors' must be an object", where="manifest")
    data = memoryview(blob)[data_start:data_start + dlen]
    return manifest, {name: _read_tensor(path, name, e, data) for name, e in entries.items()}


def _read_tensor(path, name, entry, data):
    where = f"tensor '{name}'"

    def bad(msg):
        raise QpkError(path, msg, where=where)

    if not isinstance(entry, dict):
        bad("entry must be an object")
    for key in ("dtype", "shape", "offset", "nbytes", "sha256"):
        if key not in entry:
            bad(f"missing field '{key}'")
    dname, shape, offset, nbytes = entry["dtype"], entry["shape"], entry["offset"], entry["nbytes"]
    if dname not in DTYPES:
        bad(f"field 'dtype' = {dname!r} is not one of {', '.join(DTYPES)}")
    if (not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        bad(f"field 'shape' = {shape!r} must be a list of non-negative integers")
    for key, value in (("offset", offset), ("nbytes", nbytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            bad(f"field '{key}' = {value!r} must be a non-negative integer")
    dtype = np.dtype(DTYPES[dname])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != expected:
        bad(f"field 'nbytes' = {nbytes} does not match shape {shape} of {dname} "
            f"({expected} bytes)")
    if offset + nbytes > len(data):
        bad(f"bytes {offset}..{offset + nbytes} lie outside the {len(data)}-byte data section")
    raw = bytes(data[offset:offset + nbytes])
    if _sha256(raw) != entry["sha256"]:
        bad("checksum mismatch (the file is corrupted)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
