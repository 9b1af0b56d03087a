"""``.qpk`` files as graphs: :func:`save` and :func:`load`.

:func:`load` trusts nothing in the file: the container is verified (magic,
version, lengths, checksums), every manifest field is type-checked, and the
graph is validated op by op with shape inference. Any defect raises
:class:`~compiler.errors.QpkError` naming the file and the field or node.
"""

from pathlib import Path

import numpy as np

from ..errors import GraphError, QpkError
from ..ir import Graph, Node, validate_graph
from . import container

__all__ = ["save", "load", "to_bytes", "from_bytes"]

_NODE_FIELDS = {"name", "op", "inputs", "attrs", "tensors"}


def to_bytes(graph, producer=None):
    validate_graph(graph)
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
    return container.pack(manifest, tensors)


def save(graph, path, producer=None):
    """Validate ``graph`` and write it to ``path`` as a ``.qpk``."""
    Path(path).write_bytes(to_bytes(graph, producer))


def load(path):
    """Read, verify and validate a ``.qpk``; return its :class:`~compiler.ir.Graph`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise QpkError(path, "no such file") from None
    except IsADirectoryError:
        raise QpkError(path, "is a directory, not a .qpk file") from None
    except OSError as err:
        raise QpkError(path, f"cannot read: {err.strerror}") from None
    return from_bytes(blob, path)


def from_bytes(blob, path="<bytes>"):
    manifest, tensors = container.unpack(blob, path)

    def need(obj, key, kind, where):
        if key not in obj:
            raise QpkError(path, f"missing field '{key}'", where=where)
        if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
            raise QpkError(path, f"field '{key}' must be {kind.__name__}, not "
                                 f"{type(obj[key]).__name__}", where=where)
        return obj[key]

    if manifest.get("format") != "qpk":
        raise QpkError(path, f"field 'format' = {manifest.get('format')!r}, expected 'qpk'",
                       where="manifest")
    model = need(manifest, "model", dict, "manifest")
    outputs = need(manifest, "outputs", list, "manifest")
    raw_nodes = need(manifest, "nodes", list, "manifest")
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        raise QpkError(path, "field 'metadata' must be an object", where="manifest")

    used, nodes = set(), []
    for i, raw in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(raw, dict):
            raise QpkError(path, "must be an object", where=where)
        name = need(raw, "name", str, where)
        where = f"node '{name}'"
        unknown = set(raw) - _NODE_FIELDS
        if unknown:
            raise QpkError(path, f"unknown field(s) {', '.join(sorted(unknown))}", where=where)
        op = need(raw, "op", str, where)
        inputs = need(raw, "inputs", list, where)
        if not all(isinstance(s, str) for s in inputs):
            raise QpkError(path, "field 'inputs' must be a list of node names", where=where)
        attrs = raw.get("attrs", {})
        refs = raw.get("tensors", {})
        if not isinstance(attrs, dict):
            raise QpkError(path, "field 'attrs' must be an object", where=where)
        if not isinstance(refs, dict):
            raise QpkError(path, "field 'tensors' must be an object", where=where)
        node_tensors = {}
        for key, tname in refs.items():
            if tname not in tensors:
                raise QpkError(path, f"tensor '{key}' refers to '{tname}', which is not in "
                                     "the package", where=where)
            node_tensors[key] = tensors[tname]
            used.add(tname)
        nodes.append(Node(name, op, list(inputs), dict(attrs), node_tensors))
    unused = set(tensors) - used
    if unused:
        raise QpkError(path, f"tensor(s) {', '.join(sorted(unused))} belong to no node",
                       where="manifest")
    graph = Graph(nodes, [str(o) for o in outputs], name=str(model.get("name", path)),
                  metadata=metadata)
    try:
        validate_graph(graph)
    except GraphError as err:
        raise QpkError(path, err.detail,
                       where=f"node '{err.node}'" if err.node else "graph") from None
    graph.producer = manifest.get("producer")
    return graph
