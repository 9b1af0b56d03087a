"""``.qpk`` files as graphs: :func:`save` and :func:`load`.

:func:`load` trusts nothing in the file: the container is verified (magic,
version, lengths, checksums), every manifest field is type-checked, and the
graph is validated op by op with shape inference. Any defect raises
:class:`~compiler.errors.QpkError` naming the file and the field or node.
"""

import math
import re
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import GraphError, QpkError
from ..files import FileProblem, read_regular_file
from ..ir import Graph, Node, validate_graph
from ..ops import REGISTRY, get_op
from ..passes.ranges import infer_ranges
from . import container

__all__ = ["save", "load", "to_bytes", "from_bytes"]

_NODE_FIELDS = {"name", "op", "inputs", "attrs", "tensors"}
_MANIFEST_FIELDS = {"format", "version", "producer", "model", "outputs", "nodes", "tensors",
                    "metadata"}
_NAME = re.compile(limits.NAME_PATTERN)


def to_bytes(graph, producer=None):
    """The bytes of ``graph`` as a ``.qpk``; refuses a graph the reader would refuse."""
    validate_graph(graph, names=limits.NAME_PATTERN)
    internal = sorted(name for name, op in REGISTRY.items() if op.internal)
    if any(get_op(n.op).internal for n in graph.nodes):
        raise GraphError("ops inserted by the compiler ("
                         f"{', '.join(internal)}) cannot be saved in a package")
    nodes, tensors = [], {}
    for node in graph.nodes:
        refs = {}
        for key, arr in sorted(node.tensors.items()):
            tname = f"{node.name}.{key}"
            tensors[tname] = np.asarray(arr)
            refs[key] = tname
        nodes.append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                      "attrs": {k: v for k, v in node.attrs.items() if v is not None},
                      "tensors": refs})
    manifest = {
        "format": "qpk",
        "version": list(container.VERSION),
        "producer": producer or graph.producer or {"name": "shiftadd"},
        "model": {"name": graph.name},
        "outputs": list(graph.outputs),
        "nodes": nodes,
        "metadata": graph.metadata,
    }
    blob = container.pack(manifest, tensors)
    try:            # the reader's own checks (metadata, ranges, sizes): no file it refuses
        from_bytes(blob, "<package being written>")
    except QpkError as err:
        raise GraphError(f"the package would be refused: {err.where + ': ' if err.where else ''}"
                         f"{err.detail}") from None
    return blob


def save(graph, path, producer=None):
    """Validate ``graph`` and write it to ``path`` as a ``.qpk``."""
    Path(path).write_bytes(to_bytes(graph, producer))


def load(path):
    """Read, verify and validate a ``.qpk``; return its :class:`~compiler.ir.Graph`.

    Only a regular file is read, and at most :data:`compiler.limits.MAX_FILE_BYTES`
    of it (a device or a pipe could be endless).
    """
    path = Path(path)
    try:
        blob = read_regular_file(path, "a .qpk file")
    except FileProblem as problem:
        raise QpkError(path, str(problem)) from None
    return from_bytes(blob, path)


def _type_name(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value),
                                                                        type(value).__name__)


def _is_number(value):
    """A finite number a float can hold (math.isfinite of a huge int raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2 ** 1000 if isinstance(value, int) else math.isfinite(value)


def _text_problem(value):
    if not isinstance(value, str):
        return f"must be a string, not {_type_name(value)}"
    if len(value) > limits.MAX_TEXT_LENGTH:
        return f"is {len(value):,} characters long, more than {limits.MAX_TEXT_LENGTH:,}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "holds a control character"
    return None


def _positive_number_problem(value):
    if not _is_number(value) or value <= 0:
        return f"must be a positive number, not {container._short(value)}"
    return None


#: Known metadata keys and their checks; every other key stays free-form.
METADATA_CHECKS = {
    "output_scale": _positive_number_problem,
    "input_scale": _positive_number_problem,
    "zoo_name": _text_problem,
    "dataset": _text_problem,
    "quantization": lambda v: None if isinstance(v, dict) else
    f"must be an object, not {_type_name(v)}",
}
#: Metadata the compiler writes itself while it builds: a file may not bring its own.
INTERNAL_METADATA = ("weight_forms",)


def _name_problem(name):
    if not isinstance(name, str):
        return f"must be a string, not {_type_name(name)}"
    if len(name) > limits.MAX_NAME_LENGTH:
        return f"is {len(name):,} characters long, more than {limits.MAX_NAME_LENGTH}"
    if not _NAME.fullmatch(name):
        return (f"{container._short(name)} is not a name: letters, digits and '_', not "
                "starting with a digit")
    return None


def from_bytes(blob, path="<bytes>"):
    """Verify and validate the bytes of a ``.qpk``; return its graph.

    Raises :class:`~compiler.errors.QpkError`, and nothing else, for any defect.
    """
    manifest, tensors = container.unpack(blob, path)

    def fail(message, where):
        raise QpkError(path, message, where=where)

    def need(obj, key, kind, where):
        if key not in obj:
            fail(f"missing field '{key}'", where)
        if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
            fail(f"field '{key}' must be {_type_name(kind())}, not {_type_name(obj[key])}",
                 where)
        return obj[key]

    if manifest.get("format") != "qpk":
        fail(f"field 'format' = {container._short(manifest.get('format'))}, expected 'qpk'",
             "manifest")
    unknown = set(manifest) - _MANIFEST_FIELDS
    if unknown:
        fail(f"unknown field(s) {container.listing(unknown)}", "manifest")
    model = need(manifest, "model", dict, "manifest")
    model_name = model.get("name", Path(str(path)).stem)
    problem = _text_problem(model_name)
    if problem:
        fail(f"field 'name' {problem}", "model")
    producer = manifest.get("producer")
    if producer is not None:
        if not isinstance(producer, dict):
            fail(f"field 'producer' must be an object, not {_type_name(producer)}", "manifest")
        for key in ("name", "version", "method"):
            if key in producer and _text_problem(producer[key]):
                fail(f"field '{key}' {_text_problem(producer[key])}", "producer")
    outputs = need(manifest, "outputs", list, "manifest")
    for out in outputs:
        problem = _name_problem(out)
        if problem:
            fail(f"field 'outputs': {problem}", "manifest")
    raw_nodes = need(manifest, "nodes", list, "manifest")
    if len(raw_nodes) > limits.MAX_NODES:
        fail(f"{len(raw_nodes):,} nodes, more than the limit of {limits.MAX_NODES:,}",
             "manifest")
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        fail(f"field 'metadata' must be an object, not {_type_name(metadata)}", "manifest")
    for key, check in METADATA_CHECKS.items():
        if key in metadata and check(metadata[key]):
            fail(f"field {key!r} {check(metadata[key])}", "metadata")
    for key in INTERNAL_METADATA:
        if key in metadata:
            fail(f"field {key!r} is written by the compiler during a build; a package may "
                 "not set it", "metadata")

    used, nodes = set(), []
    for i, raw in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(raw, dict):
            fail(f"must be an object, not {_type_name(raw)}", where)
        name = need(raw, "name", str, where)
        problem = _name_problem(name)
        if problem:
            fail(f"field 'name' {problem}", where)
        where = f"node '{name}'"
        unknown = set(raw) - _NODE_FIELDS
        if unknown:
            fail(f"unknown field(s) {container.listing(unknown)}", where)
        op = need(raw, "op", str, where)
        if get_op(op) is not None and get_op(op).internal:
            fail(f"op '{op}' is inserted by the compiler; a package may not contain it", where)
        inputs = need(raw, "inputs", list, where)
        for src in inputs:
            problem = _name_problem(src)
            if problem:
                fail(f"field 'inputs': {problem}", where)
        attrs = raw.get("attrs", {})
        refs = raw.get("tensors", {})
        if not isinstance(attrs, dict):
            fail(f"field 'attrs' must be an object, not {_type_name(attrs)}", where)
        if not isinstance(refs, dict):
            fail(f"field 'tensors' must be an object, not {_type_name(refs)}", where)
        node_tensors = {}
        for key, tname in refs.items():
            if not isinstance(tname, str):
                fail(f"tensor {container._short(key)} must name a tensor entry, not "
                     f"{_type_name(tname)}", where)
            if tname not in tensors:
                fail(f"tensor {container._short(key)} refers to {container._short(tname)}, "
                     "which is not in the package", where)
            if tname in used:
                fail(f"tensor {container._short(key)} refers to {container._short(tname)}, "
                     "which another node or role uses too", where)
            node_tensors[key] = tensors[tname]
            used.add(tname)
        nodes.append(Node(name, op, list(inputs), dict(attrs), node_tensors))
    unused = set(tensors) - used
    if unused:
        fail(f"tensor(s) {container.listing(unused)} belong to no node", "manifest")
    graph = Graph(nodes, list(outputs), name=model_name, metadata=metadata)
    try:
        validate_graph(graph, names=limits.NAME_PATTERN)
        infer_ranges(graph)
    except GraphError as err:
        raise QpkError(path, err.detail,
                       where=f"node '{err.node}'" if err.node else "graph") from None
    graph.producer = producer
    return graph
