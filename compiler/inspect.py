"""``python -m compiler inspect``: a table of a package's nodes."""

import numpy as np

from .ir import Graph
from .table import markdown_table

__all__ = ["node_rows", "inspect_text"]


def _shape(s):
    return "x".join(map(str, s)) if s else "-"


def macs(node, graph):
    """Multiply-accumulates of a conv or dense node per inference."""
    if node.op == "conv2d":
        o, c, k, _ = node.tensors["weight"].shape
        return o * c * k * k * node.shape[1] * node.shape[2]
    if node.op == "dense":
        return int(node.tensors["weight"].size)
    return 0


def node_rows(graph: Graph):
    rows = []
    for node in graph.nodes:
        in_shape = _shape(graph[node.inputs[0]].shape) if node.inputs else "-"
        a = node.attrs
        if "weight" in node.tensors:
            kind, bits = a["weight_kind"], a["weight_bits"]
            params = sum(int(t.size) for k, t in node.tensors.items() if k in ("weight", "bias"))
            if kind == "codebook":
                bits = f"{stored_weight_bits(node) / node.tensors['weight'].size:.2f}"
        elif node.op in ("requant", "threshold", "input"):
            kind = ("signed" if a["signed"] else "unsigned") + " act"
            bits, params = a["bits"], 0
        else:
            kind, bits, params = "-", "-", 0
        rows.append([node.name, node.op, ", ".join(node.inputs) or "-", in_shape,
                     _shape(node.shape), kind, bits, params, macs(node, graph)])
    return rows


def stored_weight_bits(node):
    """Bits that store a layer's weights: one code per weight, or KQ's indices + codebook."""
    a, t = node.attrs, node.tensors
    if a.get("weight_kind") == "codebook":
        return int(t["indices"].size * a["weight_bits"] + t["codebook"].size * a["entry_bits"])
    return int(t["weight"].size * a["weight_bits"])


def inspect_text(graph: Graph, path=None):
    rows = node_rows(graph)
    weight_bits = sum(stored_weight_bits(n) for n in graph.nodes if "weight" in n.tensors)
    params = sum(r[7] for r in rows)
    total_macs = sum(r[8] for r in rows)
    table = markdown_table(
        ["node", "op", "inputs", "in shape", "out shape", "weights / values", "bits",
         "params", "MACs"],
        rows + [["total", "", "", "", "", "", "", params, total_macs]], "lllllllrr")
    producer = graph.producer or {}
    head = [f"model: {graph.name}" + (f"  ({path})" if path else ""),
            f"nodes: {len(graph.nodes)}, output: {', '.join(graph.outputs)}"
            + (f", made by {producer.get('name')} {producer.get('version', '')}".rstrip()
               if producer.get("name") else "")]
    n_weights = sum(int(n.tensors["weight"].size) for n in graph.nodes if "weight" in n.tensors)
    foot = [f"weight storage: {weight_bits:,} bits ({weight_bits / 8 / 1024:.2f} KiB), "
            f"{weight_bits / max(n_weights, 1):.2f} bits per weight"]
    scale = graph.metadata.get("output_scale")
    if scale:
        foot.append(f"output scale: {scale:.6g} per integer step")
    return "\n".join(head + ["", table, ""] + foot)
