"""What every op of the graph IR is: one class holding everything about it.

An :class:`Op` declares its attributes (with their defaults and checks) and
tensors, infers its output shape, gives the exact range of the integers it can
produce, names its golden arithmetic (:mod:`sim.golden`), and says what each
back end makes of it: the dataflow back end's stage (cores, cycles, cost), and
the layer engine's role. Code elsewhere asks the op (``op_of(node)``); it never
compares op names.

``docs/architecture.md`` ("Adding an op") lists what a new op touches.
"""

import math
from dataclasses import dataclass

import numpy as np

from .. import limits
from ..errors import GraphError

__all__ = ["Attr", "TensorSpec", "Op", "fail", "within", "shape_problem", "REGISTRY",
           "register", "op_of", "get_op"]


@dataclass(frozen=True)
class Attr:
    """An attribute: its type, whether it is required, its default and a check."""
    type: type
    required: bool = True
    default: object = None
    check: object = None        # callable(value) -> error message or None
    doc: str = ""


@dataclass(frozen=True)
class TensorSpec:
    kind: str                   # "int" or "float"
    required: bool = True
    doc: str = ""


def fail(node, message):
    raise GraphError(message, node=node.name)


def within(lo, hi):
    """An attribute check: ``lo <= value <= hi``."""
    def check(v):
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"
    return check


def finite(v):
    """A number that is a finite float (math.isfinite of a huge int raises OverflowError)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2 ** 1000 if isinstance(v, int) else math.isfinite(v)


def shape_problem(shape):
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


class Op:
    """The base of every op. Subclasses set the class attributes and override what differs.

    Class attributes
    ----------------
    name : the op's one name, from the tracer to the report
    arity : number of inputs
    attrs, tensors : ``{name: Attr}``, ``{name: TensorSpec}``
    internal : made by the compiler; a package may not contain it
    passes_codes : only compares or moves values, so power-of-two activation
        codes pass through it unchanged (``compiler.ir.encoding``)
    computes : reads the values of its inputs (a pow2 code must be decoded first)
    is_mac : a multiply-accumulate layer (conv2d, dense): weights, MAC counts
    """
    name = None
    arity = 1
    attrs = {}
    tensors = {}
    internal = False
    passes_codes = False
    computes = True
    is_mac = False
    is_input = False
    doc = ""

    # -- validation ------------------------------------------------------------------------

    def validate(self, node, in_shapes):
        """Check ``node`` (attributes, tensors, limits), fill in defaults; return its shape."""
        if len(node.inputs) != self.arity:
            fail(node, f"op '{self.name}' takes {self.arity} input(s), got {len(node.inputs)}")
        self._check_attrs(node)
        self._check_tensors(node)
        self.resolve(node)
        self.check(node)
        shape = tuple(self.infer_shape(node, [tuple(s) for s in in_shapes]))
        problem = shape_problem(shape)
        if problem:
            fail(node, f"the output {list(shape)} {problem}")
        return shape

    def resolve(self, node):
        """Defaults that depend on other attributes (a pool's stride is its kernel)."""

    def check(self, node):
        """Checks beyond types and ranges (the integers of a weight tensor)."""

    def infer_shape(self, node, in_shapes):
        return in_shapes[0]

    def _check_attrs(self, node):
        for key in node.attrs:
            if key not in self.attrs:
                fail(node, f"unknown attribute '{key}' for op '{self.name}'")
        for key, attr in self.attrs.items():
            if node.attrs.get(key) is None:
                if attr.required:
                    fail(node, f"missing attribute '{key}'")
                node.attrs[key] = attr.default
                continue
            value = node.attrs[key]
            if attr.type is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = node.attrs[key] = float(value)
                except OverflowError:
                    fail(node, f"attribute '{key}' is an integer of {value.bit_length()} bits, "
                               "too large for a float")
            if attr.type is float and isinstance(value, float) and not math.isfinite(value):
                fail(node, f"attribute '{key}' = {value} must be finite")
            if attr.type is not object and (not isinstance(value, attr.type)
                                            or (attr.type is int and isinstance(value, bool))):
                fail(node, f"attribute '{key}' must be {attr.type.__name__}, "
                           f"not {type(value).__name__} ({value!r})")
            if attr.check is not None and value is not None:
                problem = attr.check(value)
                if problem:
                    fail(node, f"attribute '{key}' = {value!r} {problem}")

    def _check_tensors(self, node):
        for key in node.tensors:
            if key not in self.tensors:
                fail(node, f"unknown tensor '{key}' for op '{self.name}'")
        for key, t in self.tensors.items():
            if key not in node.tensors:
                if t.required:
                    fail(node, f"missing tensor '{key}'")
                continue
            arr = node.tensors[key]
            if not isinstance(arr, np.ndarray):
                fail(node, f"tensor '{key}' must be an array, not {type(arr).__name__}")
            if arr.ndim > limits.MAX_RANK or arr.size > limits.MAX_TENSOR_ELEMENTS \
                    or 0 in arr.shape:
                fail(node, f"tensor '{key}' has shape {list(arr.shape)}: at most "
                           f"{limits.MAX_RANK} dimensions, each at least 1, and at most "
                           f"{limits.MAX_TENSOR_ELEMENTS:,} elements")
            ok = (np.issubdtype(arr.dtype, np.integer) if t.kind == "int"
                  else np.issubdtype(arr.dtype, np.floating))
            if not ok:
                fail(node, f"tensor '{key}' must hold "
                           f"{'integers' if t.kind == 'int' else 'floats'}, not {arr.dtype}")
            if t.kind == "float" and not np.all(np.isfinite(arr)):
                fail(node, f"tensor '{key}' holds NaN or infinite values")

    @staticmethod
    def need_fmap(node, shape, what="input"):
        if len(shape) != 3:
            fail(node, f"{what} must be a feature map (C, H, W), got shape {list(shape)}")

    @staticmethod
    def check_1d(node, key, n):
        t = node.tensors
        if key in t and t[key].shape != (n,):
            fail(node, f"tensor '{key}' has shape {list(t[key].shape)}, expected [{n}]")

    # -- arithmetic --------------------------------------------------------------------------

    def value_range(self, node, srcs):
        """``(lo, hi)``: the integers the node can produce for inputs within ``srcs``' ranges."""
        return srcs[0].lo, srcs[0].hi

    def golden(self, node, args):
        """The node's output for input values ``args`` (batched int64 arrays)."""
        raise NotImplementedError(f"op '{self.name}' has no golden model")

    def macs(self, node):
        """Multiply-accumulates per inference (MAC layers)."""
        return 0

    def encoding(self, node, inputs):
        """What the node's integers stand for: ``"linear"`` values or ``"pow2"`` codes,
        given its inputs' encodings (``compiler.ir.encoding``)."""
        return inputs[0] if self.passes_codes else "linear"

    # -- back ends ---------------------------------------------------------------------------

    def dataflow(self, node, builder):
        """The dataflow back end's stage for ``node`` (see ``compiler.backends.dataflow``)."""
        raise NotImplementedError(f"op '{self.name}' has no dataflow hardware")

    #: The op's role in the layer engine's schedule (``compiler.backends.layer.schedule``):
    #: "conv", "dense", "threshold", "add", "pool", "gap", "flatten", or None (not scheduled).
    engine_role = None


REGISTRY = {}


def register(cls):
    """Class decorator: add an op to the registry (one instance per op)."""
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name):
    """The :class:`Op` called ``name``, or None."""
    return REGISTRY.get(name)


def op_of(node):
    """The :class:`Op` of ``node`` (a GraphError if the op is unknown)."""
    op = REGISTRY.get(node.op)
    if op is None:
        fail(node, f"unsupported op '{node.op}'; supported ops: "
                   f"{', '.join(sorted(n for n, o in REGISTRY.items() if not o.internal))}")
    return op
