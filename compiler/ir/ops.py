"""The ops of the graph IR: their attributes, tensors and output shapes.

Each op is an :class:`OpSpec`. Validation checks a node against its spec and
the shapes of its inputs, and raises :class:`~compiler.errors.GraphError` naming
the node and the field at fault. The arithmetic of every op lives in
:mod:`sim.golden`; this module only knows types and shapes.

Weight kinds (attribute ``weight_kind`` of ``conv2d`` and ``dense``), all stored
as integers, with the real weight ``scale * w``:

``ternary``
    ``w`` in {-1, 0, +1}; ``weight_bits`` is 2.
``pow2``
    ``w`` is 0 or ``±2**e`` with ``0 <= e < 2**(weight_bits - 1) - 1``: one sign
    bit and ``weight_bits - 1`` bits that code zero or one of the exponents.
``int``
    ``w`` is a signed ``weight_bits``-bit integer.
``ternary2``
    asymmetric ternary (LAT2): every positive ``w`` equals one integer ``P`` and
    every negative one ``-N``, with ``1 <= P, N <= 2**(weight_bits - 1) - 1``.
    Hardware sums the inputs under ``+1`` and under ``-1`` apart and scales the
    two sums by ``P`` and ``N`` just before the requantizer.
``codebook``
    kernel codebook (KQ), ``conv2d`` only: ``w[o, c] = codebook[indices[o, c]]``,
    ``B`` kernels of ``entry_bits``-bit signed integers, ``B <= 2**weight_bits``
    (``weight_bits`` is the index width). Hardware convolves each input channel
    with each codebook kernel once and every output channel adds the partial maps
    its indices select.

Activation levels (attribute ``levels`` of ``requant`` and ``threshold``):
``linear`` (the default) outputs the integer itself; ``pow2`` outputs a code
``c`` standing for the value ``0`` if ``c == 0`` else ``2**(c - 1)``
(:func:`sim.golden.pow2_value`). Ops that compare (``maxpool``) and reshape
(``flatten``) pass codes through; ops that compute read the value.
"""

from dataclasses import dataclass, field

import math

import numpy as np

from .. import limits
from ..errors import GraphError

__all__ = ["OPS", "WEIGHT_KINDS", "INTERNAL_OPS", "OpSpec", "validate_node", "infer_shape",
           "check_weights", "pow2_max_exponent"]

WEIGHT_KINDS = ("ternary", "pow2", "int", "ternary2", "codebook")
LEVELS = ("linear", "pow2")
#: Ops the compiler inserts while it builds; a package may not contain them.
INTERNAL_OPS = ("pow2_decode",)


def pow2_max_exponent(bits):
    """Largest exponent a ``bits``-bit power-of-two weight can code."""
    return 2 ** (bits - 1) - 2


@dataclass(frozen=True)
class Attr:
    type: type
    required: bool = True
    default: object = None
    check: object = None        # callable(value) -> error message or None
    doc: str = ""


@dataclass(frozen=True)
class Tensor:
    kind: str                   # "int" or "float"
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int                  # number of inputs
    attrs: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    doc: str = ""


def _within(lo, hi):
    def check(v):
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"
    return check


_bits = _within(1, max(limits.ACT_BITS[1], limits.POW2_CODE_BITS[1]))


def _weight_scale(v):
    ok = _finite(v) or (isinstance(v, list) and 1 <= len(v) <= limits.MAX_CHANNELS
                        and all(_finite(x) for x in v))
    return None if ok else ("must be a finite number or a list of at most "
                            f"{limits.MAX_CHANNELS} of them")


def _finite(v):
    """A number that is a finite float (math.isfinite of a huge int raises OverflowError)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2 ** 1000 if isinstance(v, int) else math.isfinite(v)


def _kind(v):
    return None if v in WEIGHT_KINDS else f"must be one of {', '.join(WEIGHT_KINDS)}"


def _levels(v):
    return None if v in LEVELS else f"must be one of {', '.join(LEVELS)}"


def _shape(v):
    if not (isinstance(v, list) and len(v) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v)):
        return "must be [C, H, W] or [K] with positive integers"
    return _shape_limits(v)


def _shape_limits(shape):
    """Why a feature map or vector shape is beyond :mod:`compiler.limits`, or None."""
    if len(shape) == 1:
        if shape[0] > limits.MAX_VECTOR_LENGTH:
            return (f"is a vector of {shape[0]:,} elements, more than the limit of "
                    f"{limits.MAX_VECTOR_LENGTH:,}")
        return None
    c, h, w = shape
    if c > limits.MAX_CHANNELS:
        return f"has {c:,} channels, more than the limit of {limits.MAX_CHANNELS:,}"
    if h > limits.MAX_SIDE or w > limits.MAX_SIDE:
        return f"is {h:,}x{w:,} pixels, beyond the limit of {limits.MAX_SIDE:,} per side"
    if c * h * w > limits.MAX_FEATURE_ELEMENTS:
        return (f"has {c * h * w:,} elements, more than the limit of "
                f"{limits.MAX_FEATURE_ELEMENTS:,}")
    return None


_WEIGHTS = {
    "weight_kind": Attr(str, check=_kind, doc="ternary, pow2, int, ternary2 or codebook"),
    "weight_bits": Attr(int, check=_within(1, max(hi for _, hi in limits.WEIGHT_BITS.values())),
                        doc="bits per stored weight"),
    "weight_scale": Attr(object, required=False, check=_weight_scale,
                         doc="real value of one weight step (informative)"),
}

OPS = {spec.name: spec for spec in [
    OpSpec("input", 0, {
        "shape": Attr(list, check=_shape),
        "bits": Attr(int, check=_within(*limits.INPUT_BITS)),
        "signed": Attr(bool),
        "scale": Attr(float, required=False, doc="real value of one input step"),
    }, doc="The network input: integers of `bits` bits."),
    OpSpec("conv2d", 1, {
        "kernel": Attr(int, check=_within(1, limits.MAX_KERNEL)),
        "stride": Attr(int, required=False, default=1, check=_within(1, limits.MAX_STRIDE)),
        "padding": Attr(int, required=False, default=0, check=_within(0, limits.MAX_PADDING)),
        **_WEIGHTS,
        "entry_bits": Attr(int, required=False, check=_within(*limits.ENTRY_BITS),
                           doc="codebook weights: bits of a codebook entry"),
    }, {
        "weight": Tensor("int", doc="(O, C, k, k)"),
        "bias": Tensor("int", required=False, doc="(O,), in accumulator units"),
        "codebook": Tensor("int", required=False, doc="codebook weights: (B, k, k)"),
        "indices": Tensor("int", required=False, doc="codebook weights: (O, C)"),
    }, doc="2-D convolution, zero padding."),
    OpSpec("dense", 1, dict(_WEIGHTS), {
        "weight": Tensor("int", doc="(O, K)"),
        "bias": Tensor("int", required=False, doc="(O,), in accumulator units"),
    }, doc="Fully connected layer on a vector."),
    OpSpec("relu", 1, doc="max(x, 0)."),
    OpSpec("maxpool", 1, {
        "kernel": Attr(int, check=_within(1, limits.MAX_KERNEL)),
        "stride": Attr(int, required=False, default=None, check=_within(1, limits.MAX_STRIDE)),
    }, doc="Max pooling without padding; stride defaults to the kernel size."),
    OpSpec("gap", 1, doc="Global average pool as an integer sum over H*W; the 1/(H*W) "
                         "belongs to the scale of whatever consumes it."),
    OpSpec("flatten", 1, doc="(C, H, W) -> (C*H*W,), PyTorch order."),
    OpSpec("pow2_decode", 1, doc="The value of a pow2 activation code: 0 if c == 0 else "
                                 "2**(c-1). Inserted by the compiler; hardware fuses it "
                                 "into a following MAC."),
    OpSpec("add", 2, doc="Elementwise sum of two tensors of one shape and one scale."),
    OpSpec("requant", 1, {
        "bits": Attr(int, check=_bits),
        "signed": Attr(bool),
        "scale": Attr(float, required=False, doc="real value of one output step"),
        "levels": Attr(str, required=False, default="linear", check=_levels),
    }, {
        "multiplier": Tensor("float", doc="(C,), >= 0"),
        "offset": Tensor("float", doc="(C,)"),
    }, doc="y = clamp(floor(x * multiplier[c] + offset[c])) to `bits` bits; with pow2 "
           "levels the code of the nearest level (sim.golden.requant)."),
    OpSpec("threshold", 1, {
        "bits": Attr(int, check=_bits),
        "signed": Attr(bool),
        "scale": Attr(float, required=False),
        "levels": Attr(str, required=False, default="linear", check=_levels),
    }, {
        "thresholds": Tensor("int", doc="(C, 2**bits - 1), non-decreasing along axis 1"),
    }, doc="y = lo + #{k : x >= thresholds[c, k]}, lo the smallest `bits`-bit value."),
]}


def _fail(node, message):
    raise GraphError(message, node=node.name)


def _check_attrs(node, spec):
    for key in node.attrs:
        if key not in spec.attrs:
            _fail(node, f"unknown attribute '{key}' for op '{node.op}'")
    for key, attr in spec.attrs.items():
        if node.attrs.get(key) is None:
            if attr.required:
                _fail(node, f"missing attribute '{key}'")
            node.attrs[key] = attr.default
            continue
        value = node.attrs[key]
        if attr.type is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = node.attrs[key] = float(value)
            except OverflowError:
                _fail(node, f"attribute '{key}' is an integer of {value.bit_length()} bits, "
                            "too large for a float")
        if attr.type is float and isinstance(value, float) and not math.isfinite(value):
            _fail(node, f"attribute '{key}' = {value} must be finite")
        if attr.type is not object and (not isinstance(value, attr.type)
                                        or (attr.type is int and isinstance(value, bool))):
            _fail(node, f"attribute '{key}' must be {attr.type.__name__}, "
                        f"not {type(value).__name__} ({value!r})")
        if attr.check is not None and value is not None:
            problem = attr.check(value)
            if problem:
                _fail(node, f"attribute '{key}' = {value!r} {problem}")


def _check_tensors(node, spec):
    for key in node.tensors:
        if key not in spec.tensors:
            _fail(node, f"unknown tensor '{key}' for op '{node.op}'")
    for key, t in spec.tensors.items():
        if key not in node.tensors:
            if t.required:
                _fail(node, f"missing tensor '{key}'")
            continue
        arr = node.tensors[key]
        if not isinstance(arr, np.ndarray):
            _fail(node, f"tensor '{key}' must be an array, not {type(arr).__name__}")
        if arr.ndim > limits.MAX_RANK or arr.size > limits.MAX_TENSOR_ELEMENTS \
                or 0 in arr.shape:
            _fail(node, f"tensor '{key}' has shape {list(arr.shape)}: at most "
                        f"{limits.MAX_RANK} dimensions, each at least 1, and at most "
                        f"{limits.MAX_TENSOR_ELEMENTS:,} elements")
        ok = (np.issubdtype(arr.dtype, np.integer) if t.kind == "int"
              else np.issubdtype(arr.dtype, np.floating))
        if not ok:
            _fail(node, f"tensor '{key}' must hold {'integers' if t.kind == 'int' else 'floats'}, "
                        f"not {arr.dtype}")
        if t.kind == "float" and not np.all(np.isfinite(arr)):
            _fail(node, f"tensor '{key}' holds NaN or infinite values")


def check_weights(node):
    """Check that the integers of a weight tensor fit its declared kind and bits.

    Vectorised and linear in the number of weights; no value is negated or
    multiplied before it is known to be small, so int64 cannot wrap.
    """
    w = node.tensors["weight"].astype(np.int64)
    kind, bits = node.attrs["weight_kind"], node.attrs["weight_bits"]
    lo_bits, hi_bits = limits.WEIGHT_BITS[kind]
    if not lo_bits <= bits <= hi_bits:
        _fail(node, f"attribute 'weight_bits' = {bits}: {kind} weights take "
                    + (f"{lo_bits}" if lo_bits == hi_bits else f"{lo_bits} to {hi_bits}")
                    + " bits")
    if kind == "ternary":
        bad = ~np.isin(w, (-1, 0, 1))
        expect = "in {-1, 0, 1}"
    elif kind == "pow2":
        emax = pow2_max_exponent(bits)
        # Range first: |w| of a value outside it (say -2**63) is not taken.
        bad = (w < -(2 ** emax)) | (w > 2 ** emax)
        mag = np.where(bad, 0, np.abs(np.where(bad, 0, w)))
        is_pow2 = (mag & (mag - 1)) == 0
        bad |= (mag != 0) & ~is_pow2
        expect = f"0 or ±2**e with e <= {emax}"
    elif kind == "ternary2":
        hi = 2 ** (bits - 1) - 1
        pos, neg = np.unique(w[w > 0]), np.unique(w[w < 0])
        if len(pos) > 1 or len(neg) > 1:
            _fail(node, "ternary2 weights must take one positive and one negative value, found "
                        f"{len(pos)} positive and {len(neg)} negative values")
        bad = (w < -hi) | (w > hi)
        expect = f"one positive and one negative value within [{-hi}, {hi}]"
    elif kind == "codebook":
        _check_codebook(node, w, bits)
        return
    else:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        bad = (w < lo) | (w > hi)
        expect = f"within [{lo}, {hi}]"
    if node.attrs.get("entry_bits") is not None or "codebook" in node.tensors \
            or "indices" in node.tensors:
        _fail(node, "'entry_bits', 'codebook' and 'indices' belong to codebook weights only")
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        _fail(node, f"weight{list(idx)} = {int(w[idx])} is not a {bits}-bit {kind} value "
                    f"({expect})")


def _check_codebook(node, w, bits):
    if node.op != "conv2d":
        _fail(node, "codebook weights are for conv2d layers only")
    t = node.tensors
    for key in ("codebook", "indices"):
        if key not in t:
            _fail(node, f"codebook weights need tensor '{key}'")
    if node.attrs.get("entry_bits") is None:
        _fail(node, "codebook weights need attribute 'entry_bits'")
    cb, idx = t["codebook"].astype(np.int64), t["indices"].astype(np.int64)
    if w.ndim != 4:
        _fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, C, k, k]")
    if cb.ndim != 3 or cb.shape[1:] != w.shape[2:]:
        _fail(node, f"tensor 'codebook' has shape {list(cb.shape)}, expected "
                    f"[B, {w.shape[2]}, {w.shape[3]}] for {w.shape[2]}x{w.shape[3]} kernels")
    if idx.shape != w.shape[:2]:
        _fail(node, f"tensor 'indices' has shape {list(idx.shape)}, expected {list(w.shape[:2])}")
    if len(cb) > 2 ** bits:
        _fail(node, f"{len(cb)} codebook kernels need more than the {bits}-bit indices "
                    "('weight_bits') can address")
    eb = node.attrs["entry_bits"]
    lo, hi = -(2 ** (eb - 1)), 2 ** (eb - 1) - 1
    if cb.min() < lo or cb.max() > hi:
        _fail(node, f"codebook entries must be {eb}-bit signed integers within [{lo}, {hi}]")
    if idx.min() < 0 or idx.max() >= len(cb):
        _fail(node, f"tensor 'indices' must lie in [0, {len(cb) - 1}]")
    if not np.array_equal(cb[idx], w):
        o, c = (int(i) for i in np.argwhere(np.any(cb[idx] != w, axis=(2, 3)))[0])
        _fail(node, f"weight[{o}, {c}] is not codebook[indices[{o}, {c}]]")


def infer_shape(node, in_shapes):
    """Output shape of ``node`` given its input shapes; checks tensor shapes on the way.

    The output must lie within the feature map and vector limits of
    :mod:`compiler.limits`.
    """
    shape = _infer_shape(node, in_shapes)
    problem = _shape_limits(shape)
    if problem:
        _fail(node, f"the output {list(shape)} {problem}")
    return shape


def _check_levels(node, channels):
    """Bits of a requant/threshold output for its levels, and its number of thresholds."""
    a = node.attrs
    if a.get("levels") == "pow2":
        lo, hi = limits.POW2_CODE_BITS
        what = "power-of-two activation codes"
    else:
        lo, hi = limits.ACT_BITS
        what = "linear outputs"
    if not lo <= a["bits"] <= hi:
        _fail(node, f"attribute 'bits' = {a['bits']}: {what} take {lo} to {hi} bits")
    count = channels * (2 ** a["bits"] - 1)
    if count > limits.MAX_THRESHOLDS:
        _fail(node, f"{channels:,} channels of {a['bits']} bits need {count:,} thresholds, "
                    f"more than the limit of {limits.MAX_THRESHOLDS:,}")


def _infer_shape(node, in_shapes):
    op, a, t = node.op, node.attrs, node.tensors

    def need_fmap(shape, what="input"):
        if len(shape) != 3:
            _fail(node, f"{what} must be a feature map (C, H, W), got shape {list(shape)}")

    def check_1d(key, n):
        if key in t and t[key].shape != (n,):
            _fail(node, f"tensor '{key}' has shape {list(t[key].shape)}, expected [{n}]")

    if op == "input":
        return tuple(a["shape"])
    x = in_shapes[0]
    if op == "conv2d":
        need_fmap(x)
        w = t["weight"]
        c, h, wd = x
        k, s, p = a["kernel"], a["stride"], a["padding"]
        if w.ndim != 4 or w.shape[1:] != (c, k, k):
            _fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, {c}, {k}, {k}] "
                        f"for {c} input channels and kernel {k}")
        if p >= k:
            _fail(node, f"padding {p} must be smaller than the kernel {k}")
        if h + 2 * p < k or wd + 2 * p < k:
            _fail(node, f"kernel {k} is larger than the padded input {h + 2 * p}x{wd + 2 * p}")
        check_1d("bias", w.shape[0])
        return (w.shape[0], (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1)
    if op == "dense":
        if len(x) != 1:
            _fail(node, f"input must be a vector (K,), got shape {list(x)}; insert a flatten")
        w = t["weight"]
        if w.ndim != 2 or w.shape[1] != x[0]:
            _fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, {x[0]}]")
        check_1d("bias", w.shape[0])
        return (w.shape[0],)
    if op in ("relu", "pow2_decode"):
        return tuple(x)
    if op == "maxpool":
        need_fmap(x)
        k, s = a["kernel"], a["stride"] or a["kernel"]
        if x[1] < k or x[2] < k:
            _fail(node, f"kernel {k} is larger than the input {x[1]}x{x[2]}")
        return (x[0], (x[1] - k) // s + 1, (x[2] - k) // s + 1)
    if op == "gap":
        need_fmap(x)
        return (x[0],)
    if op == "flatten":
        return (math.prod(x),)
    if op == "add":
        if tuple(in_shapes[0]) != tuple(in_shapes[1]):
            _fail(node, f"inputs have different shapes {list(in_shapes[0])} and "
                        f"{list(in_shapes[1])}")
        return tuple(x)
    if op in ("requant", "threshold") and a.get("levels") == "pow2" and a["signed"]:
        _fail(node, "pow2 activation levels are unsigned: set 'signed' to false")
    if op in ("requant", "threshold"):
        _check_levels(node, x[0])
    if op == "requant":
        check_1d("multiplier", x[0])
        check_1d("offset", x[0])
        if np.any(t["multiplier"] < 0):
            c = int(np.argmax(t["multiplier"] < 0))
            _fail(node, f"multiplier[{c}] = {float(t['multiplier'][c])} is negative; fold the "
                        "sign into the weights of the producing layer")
        return tuple(x)
    if op == "threshold":
        levels = 2 ** a["bits"] - 1
        th = t["thresholds"]
        if th.shape != (x[0], levels):
            _fail(node, f"tensor 'thresholds' has shape {list(th.shape)}, "
                        f"expected [{x[0]}, {levels}]")
        if levels > 1 and np.any(th[:, 1:] < th[:, :-1]):      # no subtraction: no wrap-around
            _fail(node, "tensor 'thresholds' must be non-decreasing along each channel")
        return tuple(x)
    raise AssertionError(op)


def validate_node(node, in_shapes):
    """Check a node against its op spec; return its output shape."""
    spec = OPS.get(node.op)
    if spec is None:
        _fail(node, f"unsupported op '{node.op}'; supported ops: {', '.join(sorted(OPS))}")
    if len(node.inputs) != spec.arity:
        _fail(node, f"op '{node.op}' takes {spec.arity} input(s), got {len(node.inputs)}")
    _check_attrs(node, spec)
    _check_tensors(node, spec)
    if "weight" in spec.tensors:
        check_weights(node)
    return infer_shape(node, in_shapes)
