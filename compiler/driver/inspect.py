"""``python -m compiler inspect``: a table of a package's nodes."""

from ..ir import Graph
from ..ops import op_of
from ..ops.weights import stored_weight_bits
from ..table import markdown_table

__all__ = ["node_rows", "inspect_text"]


def _shape(s):
    return "x".join(map(str, s)) if s else "-"


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
        elif "bits" in op_of(node).attrs and "signed" in op_of(node).attrs:
            kind = ("signed" if a["signed"] else "unsigned") + " act"
            bits, params = a["bits"], 0
        else:
            kind, bits, params = "-", "-", 0
        rows.append([node.name, node.op, ", ".join(node.inputs) or "-", in_shape,
                     _shape(node.shape), kind, bits, params, op_of(node).macs(node)])
    return rows


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
