"""The report of a layer-engine build: the bank, each step and what bounds it, the buffers;
with the figures ``report.md`` shows (``compiler/driver/plots.py``) beside it."""

import json

from ...driver.plots import figure_lines, write_figures
from ...driver.report import synthesis_lines
from ...table import markdown_table

__all__ = ["engine_report_dict", "engine_report_markdown", "write_engine_report"]


def engine_report_dict(result):
    plan, board, clocks = result.plan, result.board, result.clocks
    build = plan.build
    steps = []
    for step, t, groups in zip(build.steps, plan.timings, build.groups):
        steps.append({"step": step.name, "kind": step.kind, "mode": step.mode,
                      "nodes": list(step.nodes), "out": [step.out_channels, step.out_h,
                                                         step.out_w],
                      "groups": groups, "macs": t.macs, "compute_cycles": t.compute,
                      "stream_cycles": t.stream, "cycles": t.cycles,
                      "stream_bytes": t.stream_bytes, "bound": t.bound,
                      "mac_utilization": t.utilization / (plan.pe * plan.simd)})
    data = {
        "model": result.model,
        "engine": "layer",
        "board": {"name": board.name, "device": board.device,
                  "clock_mhz": clocks.engine_hz / 1e6},
        "clocks": clocks.as_dict(),
        "options": result.options,
        "bank": {"pe": plan.pe, "simd": plan.simd,
                 "weight_format": {"digits": build.config.fmt.digits,
                                   "max_shift": build.config.fmt.max_shift},
                 "acc_width": build.config.acc_width},
        "steps": steps,
        "buffers": [{"name": b.name, "width": b.width, "depth": b.depth, "bits": b.bits,
                     "brams": b.brams, "luts": b.luts} for b in plan.buffers],
        "estimate": plan.resources.as_dict(),
        "budget": plan.budget,
        "candidates": [{"pe": p, "simd": s, "cycles": c, "luts": lu, "brams": br, "fits": f}
                       for p, s, c, lu, br, f in plan.candidates],
        "throughput": {"cycles_per_inference": plan.cycles,
                       "inferences_per_second": plan.fps,
                       "stream_bytes": len(build.stream.data)},
        "files": sorted(result.files),
        "warnings": list(result.warnings),
        "timing_met": (result.synthesis or {}).get("timing_met"),
    }
    if result.verification is not None:
        data["verification"] = result.verification
    if result.synthesis is not None:
        data["synthesis"] = result.synthesis
    return data


def engine_report_markdown(data):
    b, bank, tp = data["board"], data["bank"], data["throughput"]
    c = data["clocks"]
    lines = [f"# Build report: {data['model']} on {b['name']} (layer engine)", "",
             f"Device {b['device']}. Engine clock {b['clock_mhz']:g} MHz; flash reader "
             f"{c['flash_hz'] / 1e6:g} MHz, SCLK {c['sclk_hz'] / 1e6:g} MHz (quad reads: "
             f"{c['stream_bytes_per_s'] / 1e6:g} MB/s of weights). "
             f"Options: {', '.join(f'{k}={v}' for k, v in data['options'].items())}.", "",
             f"Bank: PE {bank['pe']} output channels x SIMD {bank['simd']} input lanes, "
             f"run-time weights of {bank['weight_format']['digits']} signed digit(s) "
             f"(shift <= {bank['weight_format']['max_shift']}), {bank['acc_width']}-bit "
             "accumulators.", ""]
    lines += ["## Steps", ""]
    rows = []
    for s in data["steps"]:
        rows.append([s["step"], s["kind"], s["mode"], "x".join(map(str, s["out"])), s["groups"],
                     f"{s['macs']:,}", f"{s['compute_cycles']:,}", f"{s['stream_cycles']:,}",
                     f"{s['stream_bytes']:,}", s["bound"], f"{s['mac_utilization']:.0%}"])
    lines += [markdown_table(["step", "kind", "epilogue", "out CxHxW", "groups", "MACs",
                              "compute cycles", "stream cycles", "stream bytes", "bound by",
                              "MAC use"], rows, "lllrrrrrrlr"), ""]
    lines += ["Compute cycles: the bank's beats (and the epilogue's searches where slower); "
              "stream cycles: the flash delivering the step's bytes. The loader works up to two "
              "groups ahead, so each group costs the larger of the two; *bound by* names the "
              "larger for the step. MAC use: MACs per bank lane and cycle.", ""]
    lines += figure_lines(data["engine"])
    lines += ["## Throughput", "",
              f"- estimated: {tp['cycles_per_inference']:,} cycles per inference, "
              f"{tp['inferences_per_second']:,.2f} inferences/s; weight stream "
              f"{tp['stream_bytes']:,} bytes per inference"]
    v = data.get("verification")
    if v:
        lines.append(f"- measured in Verilator (flash model included): "
                     f"{v['cycles_per_inference']:,} cycles per inference")
    lines.append("")
    lines += ["## Buffers (on-chip)", ""]
    lines += [markdown_table(["buffer", "words", "bits/word", "KiB", "block RAMs", "LUTs"],
                             [[x["name"], f"{x['depth']:,}", x["width"],
                               f"{x['bits'] / 8192:,.1f}", x["brams"], x["luts"]]
                              for x in data["buffers"]], "lrrrrr"), ""]
    e, budget = data["estimate"], data.get("budget") or {}
    lines += [f"Estimated: {e['luts']:,} LUTs, {e['ffs']:,} FFs, {e['brams']} block RAMs "
              f"(board: {budget.get('luts', '?'):,} LUTs, {budget.get('brams', '?')} block "
              "RAMs).", ""]
    if data["candidates"]:
        lines += ["## Banks considered", ""]
        lines += [markdown_table(["PE x SIMD", "cycles (est)", "LUTs (est)", "block RAMs",
                                  "fits"],
                                 [[f"{x['pe']}x{x['simd']}", f"{x['cycles']:,}",
                                   f"{x['luts']:,}", x["brams"], "yes" if x["fits"] else "no"]
                                  for x in data["candidates"]], "lrrrl"), ""]
    s = data.get("synthesis")
    if s:
        lines += synthesis_lines(s, e, budget, clock_mhz=data["board"]["clock_mhz"])
        lines += [f"`weights.bin` goes to flash offset 0x{s.get('weights_flash_offset') or 0:x} "
                  "(`python -m compiler flash` writes it there).", ""]
    if v:
        ok = "bit-exact" if v["bit_exact"] else f"MISMATCH ({v['mismatches']} outputs differ)"
        lines += ["## Verification", "",
                  f"{v['inputs']} random inputs (seed {v['seed']}) through the engine, its "
                  "quad-SPI reader and a flash model with the real command, address, dummy and "
                  "nibble timing, in Verilator, without stalls and with random valid/ready "
                  f"stalls: {ok} against the golden integer model.", ""]
    if data.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in data["warnings"]] + [""]
    return "\n".join(lines)


def write_engine_report(result, out):
    data = engine_report_dict(result)
    out.write_text("report.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
    out.write_text("report.md", engine_report_markdown(data))
    write_figures(data, out)
    return data
