"""Rewrite weight forms and activation codes into ops the cores implement.

Each rewrite leaves every output bit unchanged (``tests/compiler/passes/test_forms.py``
checks it against the golden model of the original graph):

* ``ternary2`` (LAT2) weights ``P*[t>0] - N*[t<0]`` become a ternary MAC that
  keeps the two partial sums apart, ``S+ = sum_{t>0} x`` and
  ``-S- = -sum_{t<0} x`` (``2*O`` outputs), and a 1x1 MAC that scales them,
  ``P*S+ - N*S-``, right before the requantizer: two constant shift-adds per
  output channel, whatever the layer's fan-in.
* ``codebook`` (KQ) convolutions become a convolution of every input channel
  with every codebook kernel it uses (``C*B`` partial maps at most, each kernel
  convolved once per input channel) and a 1x1 MAC with 0/1 weights in which each
  output channel adds the partial maps its indices select. Multiplier-free
  work then follows the codebook size, not the number of output channels. When
  a layer has fewer output channels than partial maps, that form costs more
  adders than the plain convolution, and the layer stays a plain ``int``
  convolution of its codebook entries (the report says which, and why).
* pow2 activation codes get an explicit ``pow2_decode`` where a computing op
  reads them; the planner fuses a decode into the MAC that follows it.

``graph.metadata["weight_forms"]`` records each rewrite for the report.
"""

import numpy as np

from hw.csd import csd_digits

from ..ir import Node, bits_for_range, encodings
from ..ops import Conv2d, Pow2Decode, is_op, op_of

__all__ = ["expand_weight_forms", "insert_decodes"]


def _digits(w):
    return int(sum(len(csd_digits(v)) for v in np.asarray(w).ravel()))


def _bits_for(values):
    """Width of a signed weight holding ``-max|v| .. max|v|`` (two bits at least)."""
    hi = int(np.max(np.abs(values), initial=1))
    return max(2, bits_for_range(-hi, hi)[0])


def _mac(node, name, weight, kind, bits, *, inputs, conv_attrs=None, bias=None):
    attrs = {"weight_kind": kind, "weight_bits": bits}
    if is_op(node, Conv2d):
        attrs.update(conv_attrs)
    tensors = {"weight": weight.astype(np.int64)}
    if bias is not None:
        tensors["bias"] = bias
    return Node(name, node.op, list(inputs), attrs, tensors)


def _ternary2(node):
    w = node.tensors["weight"].astype(np.int64)
    o = w.shape[0]
    pos, neg = w[w > 0], w[w < 0]
    p = int(pos[0]) if pos.size else 1
    n = int(-neg[0]) if neg.size else 1
    split = np.concatenate([(w > 0), -(w < 0).astype(np.int64)]).astype(np.int64)
    is_conv = is_op(node, Conv2d)
    scale = np.zeros((o, 2 * o) + ((1, 1) if is_conv else ()), np.int64)
    idx = np.arange(o)
    scale[idx, idx], scale[idx, o + idx] = p, n      # P*S+ + N*(-S-)
    a = node.attrs
    conv = dict(kernel=a["kernel"], stride=a["stride"], padding=a["padding"]) \
        if is_conv else None
    sums = _mac(node, f"{node.name}.sums", split, "ternary", 2, inputs=node.inputs,
                conv_attrs=conv)
    out = _mac(node, node.name, scale, "int", _bits_for([p, n]), inputs=[sums.name],
               conv_attrs=dict(kernel=1, stride=1, padding=0), bias=node.tensors.get("bias"))
    record = {"layer": node.name, "form": "ternary2", "P": p, "N": n,
              "direct_adders": _digits(w),
              "built_adders": _digits(split) + _digits(scale),
              "stages": [sums.name, out.name]}
    return [sums, out], record


def _codebook(node):
    t, a = node.tensors, node.attrs
    w = t["weight"].astype(np.int64)
    cb, idx = t["codebook"].astype(np.int64), t["indices"].astype(np.int64)
    o, c = idx.shape
    k = cb.shape[1]
    used = sorted({(ci, int(b)) for ci in range(c) for b in idx[:, ci] if np.any(cb[b])})
    if not used:            # every kernel is zero: keep one (zero) partial map
        used = [(0, int(idx[0, 0]))]
    part = np.zeros((len(used), c, k, k), np.int64)
    select = np.zeros((o, len(used), 1, 1), np.int64)
    row = {pair: r for r, pair in enumerate(used)}
    for r, (ci, b) in enumerate(used):
        part[r, ci] = cb[b]
    for oi in range(o):
        for ci in range(c):
            r = row.get((ci, int(idx[oi, ci])))
            if r is not None:
                select[oi, r, 0, 0] = 1
    partials = _mac(node, f"{node.name}.partials", part, "int", a["entry_bits"],
                    inputs=node.inputs,
                    conv_attrs=dict(kernel=a["kernel"], stride=a["stride"],
                                    padding=a["padding"]))
    out = _mac(node, node.name, select, "ternary", 2, inputs=[partials.name],
               conv_attrs=dict(kernel=1, stride=1, padding=0), bias=t.get("bias"))
    record = {"layer": node.name, "form": "codebook", "codebook_size": int(len(cb)),
              "partial_maps": len(used), "direct_adders": _digits(w),
              "built_adders": _digits(part) + _digits(select),
              "stages": [partials.name, out.name]}
    if record["built_adders"] > record["direct_adders"]:
        plain = _mac(node, node.name, w, "int", a["entry_bits"], inputs=node.inputs,
                     conv_attrs=dict(kernel=a["kernel"], stride=a["stride"],
                                     padding=a["padding"]), bias=t.get("bias"))
        record.update(form="codebook (direct)", built_adders=record["direct_adders"],
                      stages=[node.name])
        return [plain], record
    return [partials, out], record


def expand_weight_forms(graph):
    """Replace ``ternary2`` and ``codebook`` MACs by pairs of plain MACs."""
    nodes, records = [], []
    for node in graph.nodes:
        kind = node.attrs.get("weight_kind")
        if kind == "ternary2":
            new, record = _ternary2(node)
        elif kind == "codebook":
            new, record = _codebook(node)
        else:
            nodes.append(node)
            continue
        nodes += new
        records.append(record)
    graph.replace_nodes(nodes)
    if records:
        graph.metadata["weight_forms"] = records
    return graph


def insert_decodes(graph):
    """Put a ``pow2_decode`` between pow2 codes and every op that computes with them."""
    enc = encodings(graph)
    nodes, decoded = [], {}
    for node in graph.nodes:
        if op_of(node).computes:
            for i, src in enumerate(node.inputs):
                if enc[src] != "pow2":
                    continue
                if src not in decoded:
                    decoded[src] = Node(f"{src}.value", Pow2Decode.name, [src])
                    nodes.append(decoded[src])
                node.inputs[i] = decoded[src].name
        nodes.append(node)
    # A decode must follow its source: re-sort by first use of each name.
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    for d in decoded.values():
        order[d.name] = order[d.inputs[0]] + 0.5
    nodes.sort(key=lambda n: order[n.name])
    graph.replace_nodes(nodes)
    return graph
