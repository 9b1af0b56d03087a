"""The build report: per layer resources and cycles, totals, throughput, weight placement.

Written as ``report.md`` (for people) and ``report.json`` (for tools), from the
same dictionary, with the figures ``report.md`` shows (``plots.py``) beside them.
Nothing in it depends on the time or place of the build, so the same inputs give
the same report.
"""

import json

from ..table import markdown_table
from .plots import figure_lines, write_figures

__all__ = ["report_dict", "report_markdown", "write_report"]


def _weights_desc(plan, stage):
    node = plan.graph[stage.nodes[0]]
    return f"{node.attrs['weight_kind']} {node.attrs['weight_bits']}b"


def _layer(plan, stage):
    g = plan.graph
    node = g[stage.nodes[0]]
    src = g[node.inputs[0]] if node.inputs else node
    row = {
        "stage": stage.name,
        "nodes": stage.nodes,
        "kind": stage.kind,
        "in_shape": list(src.shape),
        "out_shape": list(g[stage.nodes[-1]].shape),
        "out_lane": f"{'s' if stage.out_lane.signed else 'u'}{stage.out_lane.width}",
        "cycles": stage.cycles,
        "estimate": plan.estimate(stage).as_dict(),
    }
    row.update(stage.report())
    if stage.is_mvu:
        row["weights"] = _weights_desc(plan, stage)
    return row


def report_dict(result):
    """Everything the report says, as JSON-able data. ``result`` is a BuildResult."""
    plan, board = result.plan, result.board
    clock_hz = result.clock_hz or board.clock_hz
    layers = [_layer(plan, s) for s in plan.stages[1:]]
    ii = plan.cycles
    fifo = [{"stage": name, "input": i, "from": plan[name].inputs[i], "depth": d,
             "reason": plan.fifo_reasons.get((name, i), "join")}
            for (name, i), d in sorted(plan.fifo_depths.items())]
    data = {
        "model": plan.graph.name,
        "engine": "dataflow",
        "board": {"name": board.name, "device": board.device, "clock_mhz": clock_hz / 1e6},
        "options": result.options,
        "layers": layers,
        "buffers": fifo,
        "estimate": plan.resources.as_dict(),
        "budget": plan.budget,
        "throughput": {
            "cycles_per_inference": ii,
            "bottleneck": plan.bottleneck.name,
            "inferences_per_second": clock_hz / ii,
        },
        "weights": {
            "roms": [{"name": r.name, "stage": r.stage, "content": r.what, "width": r.width,
                      "words": len(r.words), "bits": r.bits, "image_offset": r.offset,
                      "hex": r.hex_file} for r in result.roms],
            "hardwired": [s.name for s in plan.stages if s.is_mvu
                          and s.placement == "hardwired"],
        },
        "files": sorted(result.files),
        "weight_forms": plan.graph.metadata.get("weight_forms", []),
        "warnings": list(result.warnings),
        "plan_met": not result.warnings,
        "timing_met": (result.synthesis or {}).get("timing_met"),
    }
    if result.verification is not None:
        data["verification"] = result.verification
    if result.synthesis is not None:
        data["synthesis"] = result.synthesis
    return data


def report_markdown(data):
    lines = [f"# Build report: {data['model']} on {data['board']['name']}", ""]
    b = data["board"]
    lines += [f"Device {b['device']}, clock {b['clock_mhz']:g} MHz. "
              f"Options: {', '.join(f'{k}={v}' for k, v in data['options'].items())}.", ""]

    lines += ["## Layers", ""]
    rows = []
    levels = stage_levels([l["stage"] for l in data["layers"]],
                          (data.get("synthesis") or {}).get("logic_depth"))
    for l in data["layers"]:
        e = l["estimate"]
        fold = f"{l['pe']}x{l['simd']}" if "pe" in l else "-"
        shapes = " -> ".join("x".join(map(str, l[k])) for k in ("in_shape", "out_shape"))
        rows.append([l["stage"], "+".join(l["nodes"]), l["kind"], shapes,
                     l.get("weights", "-"), l.get("placement", "-"), fold, l["out_lane"],
                     l["cycles"], e["luts"], e["ffs"], e["brams"]]
                    + ([levels.get(l["stage"], "-")] if levels else []))
    t = data["estimate"]
    rows.append(["total", "", "", "", "", "", "", "", data["throughput"]["cycles_per_inference"],
                 t["luts"], t["ffs"], t["brams"]]
                + ([data["synthesis"]["utilization"].get("lut_levels", "-")] if levels else []))
    lines += [markdown_table(["stage", "nodes", "core", "shape", "weights", "placement",
                              "PExSIMD", "lane", "cycles", "LUT (est)", "FF (est)",
                              "BRAM (est)"] + (["LUT levels"] if levels else []), rows,
                             "llllllllrrrr" + ("r" if levels else "")), ""]
    lines += ["PExSIMD: output channels x input lanes per cycle. Cycles: per inference for the "
              "stage; the total is the slowest stage, which sets the rate. Lane: the width of "
              "each output value (s = signed, u = unsigned).", ""]
    lines += figure_lines(data["engine"])

    tp = data["throughput"]
    lines += ["## Throughput", "",
              f"- cycles per inference (steady state): {tp['cycles_per_inference']:,} "
              f"(bottleneck: {tp['bottleneck']})",
              f"- at {b['clock_mhz']:g} MHz: {tp['inferences_per_second']:,.0f} inferences/s"]
    v = data.get("verification")
    if v:
        rate = (f"{v['cycles_per_inference']:,} cycles per inference, "
                if v.get("cycles_per_inference") is not None
                else "(one input: no rate measured), ")
        lines += [f"- measured in simulation: {rate}{v['latency_cycles']:,} cycles latency "
                  "(first input to first output)"]
    lines.append("")
    if data.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in data["warnings"]] + [""]

    if data["buffers"]:
        lines += ["## Stream buffers", "",
                  "FIFOs between stages. *join*: before an input of a residual join, the "
                  "least depth that cannot deadlock, from the dataflow analysis in "
                  "`compiler/buffers.py`. *rate*: one image of beats next to a folded layer, "
                  "so that bursts do not stall the pipeline below its slowest stage.", ""]
        lines += [markdown_table(["from", "to", "input", "depth (beats)", "why"],
                                 [[f["from"], f["stage"], f["input"], f["depth"], f["reason"]]
                                  for f in data["buffers"]], "lllrl"), ""]

    forms = data.get("weight_forms") or []
    if forms:
        lines += ["## Weight forms", "",
                  "Layers rewritten into two plain MAC stages (`compiler/passes/forms.py`). "
                  "Adders: non-zero signed digits of the weights, the adder count of a "
                  "hard-wired layer; *direct* multiplies each weight in place, *as built* is "
                  "the rewritten pair.", ""]
        rows = []
        for f in forms:
            detail = (f"P={f['P']}, N={f['N']}" if f["form"] == "ternary2" else
                      f"{f['codebook_size']} kernels, {f['partial_maps']} partial maps"
                      + ("; more partial maps than outputs, so built as a plain conv"
                         if f["form"].endswith("(direct)") else ""))
            saving = 1 - f["built_adders"] / max(f["direct_adders"], 1)
            rows.append([f["layer"], f["form"], detail, f["direct_adders"], f["built_adders"],
                         f"{saving:+.0%}".replace("+", "-") if saving > 0
                         else f"{-saving:.0%} more", " -> ".join(f["stages"])])
        lines += [markdown_table(["layer", "form", "detail", "adders direct", "adders as built",
                                  "saving", "stages"], rows, "lllrrrl"), ""]

    w = data["weights"]
    lines += ["## Where the weights live", ""]
    for name in w["hardwired"]:
        lines.append(f"- `{name}`: hard-wired into the adder trees (no memory)")
    for r in w["roms"]:
        lines.append(f"- `{r['stage']}` {r['content']}: ROM `{r['name']}`, {r['words']} words "
                     f"x {r['width']} bits = {r['bits']:,} bits; `{r['hex']}`, "
                     f"`weights.bin` offset 0x{r['image_offset']:x}")
    lines.append("")

    s = data.get("synthesis")
    if s:
        lines += synthesis_lines(s, data["estimate"], data.get("budget") or {},
                                 clock_mhz=b["clock_mhz"])

    if v:
        ok = "bit-exact" if v["bit_exact"] else f"MISMATCH ({v['mismatches']} outputs differ)"
        lines += ["## Verification", "",
                  f"{v['inputs']} random inputs (seed {v['seed']}) simulated in Verilator twice, "
                  "without stalls and with random valid/ready stalls on the input and output "
                  f"streams: {ok} against the golden integer model.", ""]
    return "\n".join(lines)


def stage_levels(stages, depth):
    """Stage -> the deepest LUT levels of its cores (``<stage>_mvu``, ``<stage>_window``,
    ...; each core to the longest stage name it starts with), from ``logic_depth``."""
    if not depth:
        return {}
    out = {}
    for core, levels in depth.items():
        owner = max((s for s in stages if core == s or core.startswith(s + "_")), key=len,
                    default=None)
        if owner is not None:
            out[owner] = max(out.get(owner, 0), levels)
    return out


def xc7_levels(clock_mhz):
    """LUT levels (with their routing) that fit a clock period on an Artix-7 -1."""
    from boards.logic_depth import LEVEL_NS_XC7, OVERHEAD_NS_XC7
    return max(1, int((1000 / clock_mhz - OVERHEAD_NS_XC7) // LEVEL_NS_XC7))


def synthesis_lines(s, estimate, budget, clock_mhz=None):
    """The report's synthesis section: the tool's summary, measured against estimated and
    available resources, and Fmax where the tool measured it."""
    lines = ["## Synthesis", "", s.get("summary", "") or "", ""]
    util = s.get("utilization") or {}
    if util:
        rows = [[k, util[k], estimate.get(k, "-"), budget.get(k, "-")]
                for k in ("luts", "ffs", "brams", "dsps") if k in util]
        lines += [markdown_table(["resource", f"measured ({s.get('tool', '?')})",
                                  "estimated", "available"], rows, "lrrr"), ""]
    clocks = s.get("clocks") or {}
    if any(c.get("fmax_mhz") for c in clocks.values()):
        rows = [[domain, f"{c['mhz']:g}", f"{c['fmax_mhz']:.1f}" if c["fmax_mhz"] else "-",
                 "-" if c["fmax_mhz"] is None else "yes" if c["fmax_mhz"] >= c["mhz"] else "NO"]
                for domain, c in clocks.items()]
        lines += [markdown_table(["clock", "requested (MHz)", "Fmax (MHz)", "met"], rows,
                                 "lrrl"), ""]
    elif s.get("fmax_mhz"):
        clock = f" (clock {clock_mhz:g} MHz)" if clock_mhz else ""
        lines += [f"Fmax: {s['fmax_mhz']:.1f} MHz{clock}", ""]
    depth = s.get("logic_depth")
    if depth:
        deepest = sorted(depth.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
        lines += [f"Logic depth (Yosys `synth_xilinx`; LUT levels on the longest path into a "
                  f"register of each core; an Artix-7 -1 holds about {xc7_levels(clock_mhz)} "
                  f"at {clock_mhz:g} MHz), the deepest cores:" if clock_mhz
                  else "Logic depth (LUT levels), the deepest cores:",
                  "", markdown_table(["core", "LUT levels"], [list(kv) for kv in deepest], "lr"),
                  ""]
    path = s.get("critical_path")
    if path:
        lines += [f"Critical path: `{path['from']}` -> `{path['to']}`, {path['ns']:g} ns.", ""]
    if s.get("timing_met") is False:
        lines += ["**Timing is NOT met**: the bitstream is not safe to use at this clock.", ""]
    return lines


def write_report(result, out):
    """Write ``report.json``, ``report.md`` and its figures through ``out``.

    ``out`` is a :class:`~compiler.driver.outdir.OutputDir`.
    """
    data = report_dict(result)
    out.write_text("report.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
    out.write_text("report.md", report_markdown(data))
    write_figures(data, out)
    return data
