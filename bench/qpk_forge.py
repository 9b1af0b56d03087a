"""Forged ``.qpk`` packages: what an attacker who recomputes the checksums can send.

:func:`forge` takes a valid package and returns a damaged one, chosen by a
``random.Random``: either structure-aware edits of the manifest (every field's
type and value, names, shapes, dtypes, offsets, nesting, node order, inputs,
ops, attributes, tensor references, metadata) or of tensor values, after which
the checksums are recomputed so the damage reaches the checks behind them; or
byte-level damage (flips, truncation, insertion) of the package itself.

:func:`seed_packages` gives the valid packages to start from: the zoo's and
small graphs of ``tests/graphs.py`` in every weight kind. Used by
``tests/compiler/qpk/test_container_fuzz.py`` and ``python -m bench.fuzz_qpk``.
"""

import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
from compiler.ops import REGISTRY

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["seed_packages", "forge", "split", "repack", "NASTY", "OPERATORS"]


def _container():
    from compiler.qpk import container
    return container


# --------------------------------------------------------------------------- packing

def split(blob):
    """``(manifest, data)`` of a valid package."""
    c = _container()
    _, _, _, _, mlen, _, dlen = c.HEADER.unpack_from(blob)
    manifest = json.loads(blob[c.HEADER.size:c.HEADER.size + mlen])
    start = -(-(c.HEADER.size + mlen) // 64) * 64
    return manifest, blob[start:start + dlen]


def repack(manifest, data, *, major=1, minor=1, flags=0, text=None):
    """A package with exactly this manifest (or manifest ``text``) and data, checksum recomputed."""
    c = _container()
    if text is None:
        text = json.dumps(manifest, allow_nan=True).encode()
        text = _DEEP.sub(lambda mo: b"[" * int(mo[1]) + b"1" + b"]" * int(mo[1]), text)
    header = c.HEADER.pack(c.MAGIC, major, minor, flags, len(text),
                           hashlib.sha256(text).digest(), len(data))
    head = header + text
    return head + b"\0" * (-len(head) % 64) + data


def _tensor_arrays(manifest, data):
    c = _container()
    out = {}
    for name, e in manifest["tensors"].items():
        raw = data[e["offset"]:e["offset"] + e["nbytes"]]
        out[name] = np.frombuffer(raw, dtype=c.DTYPES[e["dtype"]]).reshape(e["shape"])
    return out


def retensor(manifest, arrays):
    """Re-encode ``arrays`` (name -> array) into fresh entries and data: valid checksums."""
    c = _container()
    entries, blobs, offset = {}, [], 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        dname = next(k for k, v in c.DTYPES.items() if np.dtype(v) == arr.dtype.newbyteorder("<"))
        raw = arr.astype(c.DTYPES[dname]).tobytes()
        entries[name] = {"dtype": dname, "shape": list(arr.shape), "offset": offset,
                         "nbytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        raw += b"\0" * (-len(raw) % 64)
        blobs.append(raw)
        offset += len(raw)
    manifest = dict(manifest, tensors=entries)
    return manifest, b"".join(blobs)


# --------------------------------------------------------------------------- seeds

def seed_packages():
    """``{name: bytes}``: the zoo's packages and small test graphs of every weight kind."""
    from compiler import qpk
    seeds = {p.stem: p.read_bytes() for p in sorted((ROOT / "compiler" / "zoo").glob("*.qpk"))}
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from graphs import small_cnn
    for i, (kind, levels) in enumerate([("ternary", "linear"), ("pow2", "linear"),
                                        ("int", "linear"), ("ternary2", "linear"),
                                        ("codebook", "linear"), ("pow2", "pow2")]):
        g = small_cnn(np.random.default_rng(100 + i), kind, act_levels=levels,
                      channels=(2, 4), size=6, classes=3, calib=4)
        seeds[f"small_{kind}_{levels}"] = qpk.to_bytes(g)
    return seeds


# --------------------------------------------------------------------------- values

#: Values that break naive readers: wrong types, huge and negative numbers, odd text.
NASTY = [
    None, True, False, 0, 1, -1, 2, 3, 7, 12, 13, 16, 17, 24, 31, 32, 33, 63, 64, 65, 255, 256,
    2 ** 15, 2 ** 16, 2 ** 20, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 62,
    2 ** 63 - 1, 2 ** 63, 2 ** 64, -2 ** 63, -2 ** 64, 10 ** 30, 10 ** 400, -(10 ** 400),
    0.0, -0.0, 0.5, 1.5, -2.5, 1e-320, 1e308, -1e308, float("nan"), float("inf"),
    "", "x", "a.b", "a b", "\x00", "conv1", "input", "int", "pow2", "ternary", "codebook",
    "pow2_decode", "threshold", "requant", "linear", "float64", "int64", "uint64", "object",
    "é" * 3, "x" * 300, "0" * 5000, "../../etc/passwd", "CON", "a\nb",
    [], [1], [1, 8, 8], [0, 8, 8], [2 ** 20, 2 ** 20, 3], [1, 2 ** 31, 2 ** 31], ["a"], [None],
    [[1]], {}, {"a": 1}, {"name": None}, [1] * 70, [2 ** 32] * 4,
]


def _deep(depth, leaf=1):
    """``leaf`` in ``depth`` nested lists; past 100 a marker that :func:`repack` expands
    in the text (``json.dumps`` itself recurses)."""
    if depth > 100:
        return f"__deep_{depth}__"
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


_DEEP = re.compile(rb'"__deep_(\d+)__"')


def _nasty(rng):
    r = rng.random()
    if r < 0.8:
        return copy.deepcopy(rng.choice(NASTY))
    if r < 0.9:
        return _deep(rng.choice([30, 33, 100, 1000, 5000]))
    return rng.choice([rng.randint(-2 ** 70, 2 ** 70), rng.uniform(-1e6, 1e6),
                       rng.randint(-300, 300)])


def _paths(obj, prefix=()):
    """Every (container, key) of a JSON tree."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((obj, k))
            out += _paths(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((obj, i))
            out += _paths(v)
    return out


# --------------------------------------------------------------------------- operators

def op_replace_any(m, data, rng):
    """Replace any value anywhere in the manifest by a nasty one."""
    obj, key = rng.choice(_paths(m))
    obj[key] = _nasty(rng)
    return m, data


def op_delete_key(m, data, rng):
    dicts = [(o, k) for o, k in _paths(m) if isinstance(o, dict)] + [(m, k) for k in list(m)]
    obj, key = rng.choice(dicts)
    del obj[key]
    return m, data


def op_add_key(m, data, rng):
    dicts = [m] + [v for o, k in _paths(m) for v in [o[k]] if isinstance(v, dict)]
    rng.choice(dicts)[rng.choice(["extra", "name", "op", "bits", "shape", "levels", "x.y",
                                  "weight_forms", "", "\x00"])] = _nasty(rng)
    return m, data


def _nodes(m):
    return m["nodes"] if isinstance(m.get("nodes"), list) else []


def op_node_order(m, data, rng):
    nodes = _nodes(m)
    if len(nodes) >= 2:
        choice = rng.randrange(5)
        i, j = rng.randrange(len(nodes)), rng.randrange(len(nodes))
        if choice == 0:
            nodes[i], nodes[j] = nodes[j], nodes[i]
        elif choice == 1:
            nodes.insert(j, copy.deepcopy(nodes[i]))
        elif choice == 2:
            del nodes[i]
        elif choice == 3:
            rng.shuffle(nodes)
        else:
            nodes.reverse()
    return m, data


def op_inputs(m, data, rng):
    nodes = [n for n in _nodes(m) if isinstance(n, dict) and isinstance(n.get("inputs"), list)]
    if not nodes:
        return m, data
    n = rng.choice(nodes)
    names = [x.get("name") for x in _nodes(m) if isinstance(x, dict)]
    choice = rng.randrange(5)
    if choice == 0 and n["inputs"]:
        n["inputs"].append(n["inputs"][0])                      # duplicate
    elif choice == 1:
        n["inputs"] = []                                        # missing
    elif choice == 2:
        n["inputs"] = [rng.choice(names)]                       # any node, maybe later/self
    elif choice == 3:
        n["inputs"] = [rng.choice(names), rng.choice(names)]
    else:
        n["inputs"] = [n.get("name")]                           # a cycle (or no name)
    return m, data


def op_rename(m, data, rng):
    nodes = [n for n in _nodes(m) if isinstance(n, dict)]
    if not nodes:
        return m, data
    n = rng.choice(nodes)
    names = [x.get("name") for x in nodes]
    new = rng.choice([rng.choice(names), str(n.get("name")).upper(), f"{n.get('name')}.value",
                      f"{n.get('name')}.sums", "a" * 101, "a" * 100, "x\x00y", "1abc", "é",
                      "a-b", "", "input", _nasty(rng)])
    old = n.get("name")
    n["name"] = new
    if rng.random() < 0.7:          # keep the wiring: rename the references too
        for x in nodes:
            if isinstance(x.get("inputs"), list):
                x["inputs"] = [new if s == old else s for s in x["inputs"]]
        if isinstance(m.get("outputs"), list):
            m["outputs"] = [new if s == old else s for s in m["outputs"]]
    return m, data


#: Every registered op (the internal ones too: a package may not hold them) and a few
#: that do not exist.
OPS = sorted(REGISTRY) + ["softmax", "", "Conv2d"]


def op_change_op(m, data, rng):
    nodes = [n for n in _nodes(m) if isinstance(n, dict)]
    if nodes:
        rng.choice(nodes)["op"] = rng.choice(OPS)
    return m, data


#: Attribute values at and beyond the limits.
ATTR_VALUES = {
    "bits": [0, 1, 2, 4, 8, 12, 13, 16, 17, 20, 24, 31, 32, 33, 64, -1, 2 ** 63],
    "weight_bits": [0, 1, 2, 5, 6, 7, 8, 9, 16, 17, 31, 32, 33, 64],
    "entry_bits": [0, 1, 6, 16, 17, 32, 64],
    "kernel": [0, 1, 2, 3, 7, 15, 16, 17, 2 ** 20, -1],
    "stride": [0, 1, 2, 16, 17, 2 ** 20, -3],
    "padding": [0, 1, 2, 3, 15, 16, 2 ** 20 - 1, 2 ** 20, 2 ** 40, -1],
    "shape": [[1, 8, 8], [3, 224, 224], [1, 2 ** 20, 2 ** 20], [2 ** 20], [2 ** 16 + 1],
              [4097, 2, 2], [1, 4097, 1], [4096, 32, 32], [1, 1, 1], [0, 8, 8], [8, 8],
              [1, 8, 8, 8], [1.5, 8, 8], [True, 8, 8]],
    "signed": [True, False, 0, 1, "true"],
    "levels": ["linear", "pow2", "log", None, 1],
    "weight_kind": ["ternary", "pow2", "int", "ternary2", "codebook", "fp32", None],
    "scale": [1.0, 0.0, -1.0, 1e308, 10 ** 400, "x", None, [1.0]],
    "weight_scale": [0.1, [0.1] * 3, [0.1] * 5000, "x", [None], {}],
}


def op_attr(m, data, rng):
    nodes = [n for n in _nodes(m) if isinstance(n, dict)]
    if not nodes:
        return m, data
    n = rng.choice(nodes)
    if not isinstance(n.get("attrs"), dict):
        n["attrs"] = {}
    key = rng.choice(list(ATTR_VALUES))
    n["attrs"][key] = copy.deepcopy(rng.choice(ATTR_VALUES[key]))
    return m, data


def op_tensor_ref(m, data, rng):
    nodes = [n for n in _nodes(m) if isinstance(n, dict)]
    entries = list(m["tensors"]) if isinstance(m.get("tensors"), dict) else []
    if not nodes or not entries:
        return m, data
    n = rng.choice(nodes)
    refs = n.get("tensors") if isinstance(n.get("tensors"), dict) else {}
    role = rng.choice(["weight", "bias", "multiplier", "offset", "thresholds", "codebook",
                       "indices", "extra"])
    refs[role] = rng.choice([rng.choice(entries), rng.choice(entries), ["x"], {"a": 1}, None,
                             7, "missing"])
    n["tensors"] = refs
    return m, data


def op_tensor_entry(m, data, rng):
    entries = m.get("tensors")
    if not isinstance(entries, dict) or not entries:
        return m, data
    e = entries[rng.choice(list(entries))]
    if not isinstance(e, dict):
        return m, data
    key = rng.choice(["dtype", "shape", "offset", "nbytes", "sha256"])
    e[key] = copy.deepcopy(rng.choice({
        "dtype": ["int8", "int16", "int32", "int64", "uint8", "uint16", "float32", "float64",
                  "uint64", "object", "complex64", "<i8", ["int8"], None, 1],
        "shape": [[], [0], [2 ** 32, 2 ** 32, 0], [2 ** 63, 2 ** 63], [2 ** 64],
                  [1] * 65, [1] * 5, [-1, -8], [3, 3], [2 ** 31, 2 ** 31, 4], [1.0], "8",
                  [[1]], None],
        "offset": [0, 64, 1, 63, -64, 2 ** 63, 2 ** 64, 10 ** 30, 1.0, None],
        "nbytes": [0, 1, 8, 2 ** 63, -1, 10 ** 30, None],
        "sha256": ["", "0" * 64, "G" * 64, None, 5],
    }[key]))
    return m, data


def op_tensor_values(m, data, rng):
    """Change tensor values, dtypes or shapes, then re-encode: the checksums stay right."""
    try:
        arrays = {k: np.array(v) for k, v in _tensor_arrays(m, data).items()}
    except Exception:               # an earlier edit broke the entries: nothing to re-encode
        return m, data
    if not arrays:
        return m, data
    name = rng.choice(list(arrays))
    a = arrays[name]
    choice = rng.randrange(9)
    if choice == 0 and a.size:                          # one extreme value
        wide = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
        idx = tuple(rng.randrange(d) for d in a.shape)
        wide[idx] = rng.choice([-2 ** 63, 2 ** 63 - 1, -2 ** 31, 2 ** 31, 2 ** 30, -2 ** 30,
                                2 ** 47, 2 ** 48, 3, -1, 0]) if a.dtype.kind != "f" else \
            rng.choice([np.nan, np.inf, -np.inf, -1.0, 1e308, 0.0, 1e-320])
        arrays[name] = wide
    elif choice == 1 and a.size:                       # all extreme
        arrays[name] = np.full(a.shape, rng.choice([-2 ** 63, 2 ** 62, 2 ** 40, -2 ** 31]),
                               np.int64) if a.dtype.kind != "f" else np.full(a.shape, 1e300)
    elif choice == 2:                                  # another dtype
        dt = rng.choice([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                         np.float32, np.float64])
        with np.errstate(invalid="ignore", over="ignore"):
            arrays[name] = a.astype(dt)
    elif choice == 3 and a.ndim:                       # crop
        arrays[name] = a[tuple(slice(0, max(1, d - 1)) for d in a.shape)]
    elif choice == 4:                                  # reshape
        arrays[name] = a.reshape(-1)
    elif choice == 5 and a.ndim:                       # transpose
        arrays[name] = a.T
    elif choice == 6:                                  # empty
        arrays[name] = a.reshape(-1)[:0]
    elif choice == 7:                                  # larger
        arrays[name] = np.concatenate([a, a], axis=0) if a.ndim else a
    else:                                              # random values of its dtype
        if a.dtype.kind == "f":
            arrays[name] = np.asarray(np.random.default_rng(rng.randrange(2 ** 32))
                                      .normal(0, 100, a.shape), a.dtype)
        else:
            info = np.iinfo(a.dtype)
            arrays[name] = np.random.default_rng(rng.randrange(2 ** 32)).integers(
                info.min, info.max, a.shape, dtype=a.dtype, endpoint=True)
    return retensor(m, arrays)


def op_metadata(m, data, rng):
    target = rng.choice(["metadata", "producer", "model"])
    obj = m.get(target)
    if not isinstance(obj, dict) or rng.random() < 0.2:
        m[target] = _nasty(rng)
        return m, data
    key = rng.choice({"metadata": ["output_scale", "input_scale", "zoo_name", "dataset",
                                   "quantization", "weight_forms", "free"],
                      "producer": ["name", "version", "method"],
                      "model": ["name"]}[target])
    obj[key] = rng.choice([_nasty(rng), "x" * 2000, "a\x1bb", -1.0, 0, 1e-3, "1.0"])
    return m, data


def op_top(m, data, rng):
    key = rng.choice(["format", "version", "outputs", "nodes", "tensors"])
    m[key] = rng.choice([_nasty(rng), [1, 0], [1, 1], [1, 2], ["fc", "fc"], [], "qpk", {}])
    return m, data


def op_nesting(m, data, rng):
    obj, key = rng.choice(_paths(m))
    depth = rng.choice([26, 27, 28, 31, 32, 33, 200, 1000, 100000])
    obj[key] = _deep(depth, obj[key] if depth <= 100 else 1)
    return m, data


#: Manifest operators with their weights.
OPERATORS = [(op_replace_any, 6), (op_delete_key, 2), (op_add_key, 2), (op_node_order, 2),
             (op_inputs, 2), (op_rename, 2), (op_change_op, 2), (op_attr, 6),
             (op_tensor_ref, 2), (op_tensor_entry, 3), (op_tensor_values, 5),
             (op_metadata, 2), (op_top, 1), (op_nesting, 1)]


# --------------------------------------------------------------------------- byte damage

def byte_damage(blob, rng, manifest_text=False):
    """Flip, cut, insert or overwrite bytes; of the manifest text with its checksum redone."""
    if manifest_text:
        m, data = split(blob)
        text = bytearray(json.dumps(m).encode())
    else:
        text = bytearray(blob)
    for _ in range(rng.choice([1, 1, 2, 5])):
        choice = rng.randrange(5)
        pos = rng.randrange(len(text) + 1)
        if choice == 0 and text:
            text[min(pos, len(text) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            del text[pos:]
        elif choice == 2:
            text[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 64])))
        elif choice == 3:
            del text[pos:pos + rng.choice([1, 8, 64])]
        else:
            text[pos:pos + 1] = rng.choice([b"[", b"{", b"]", b'"', b"\\", b"9" * 5000,
                                            b"1e999", b"NaN", b"-", b"\xff"])
    if manifest_text:
        return repack(None, data, text=bytes(text))
    return bytes(text)


def header_damage(blob, rng):
    m, data = split(blob)
    choice = rng.randrange(4)
    if choice == 0:
        return repack(m, data, major=rng.choice([0, 1, 2, 65535]),
                      minor=rng.choice([0, 1, 2, 65535]))
    if choice == 1:
        return repack(m, data, flags=rng.choice([1, 2 ** 31]))
    c = _container()
    text = json.dumps(m).encode()
    header = bytearray(c.HEADER.pack(c.MAGIC, 1, 1, 0, len(text),
                                     hashlib.sha256(text).digest(), len(data)))
    field = (16, 56)[choice - 2]                     # manifest length or data length
    header[field:field + 8] = rng.choice([0, 1, 2 ** 63, 2 ** 64 - 1, len(blob),
                                          64 << 20]).to_bytes(8, "little")
    head = bytes(header) + text
    return head + b"\0" * (-len(head) % 64) + data


# --------------------------------------------------------------------------- forge

def forge(blob, rng):
    """A damaged copy of the valid package ``blob``: ``(kind, bytes)``."""
    r = rng.random()
    if r < 0.08:
        return "bytes", byte_damage(blob, rng)
    if r < 0.14:
        return "manifest text", byte_damage(blob, rng, manifest_text=True)
    if r < 0.17:
        return "header", header_damage(blob, rng)
    m, data = split(blob)
    ops, weights = zip(*OPERATORS)
    for op in rng.choices(ops, weights, k=rng.choice([1, 1, 1, 2, 3])):
        m, data = op(m, data, rng)
    version = m.get("version") if isinstance(m, dict) else None
    minor = version[1] if (isinstance(version, list) and len(version) == 2
                           and type(version[1]) is int and version[1] in (0, 1)) else 1
    return op.__name__[3:], repack(m, data, minor=minor)
