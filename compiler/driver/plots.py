"""The build report's figures: SVG pictures of the numbers in ``report.md``.

Dataflow builds (``report.py``) get ``layers.svg``: per stage, the cycles it takes
per inference, the slowest (the bottleneck) setting the initiation interval, and the
LUTs estimated for it (synthesis measures only the whole design).

Layer-engine builds (``backends/layer/report.py``) get ``steps.svg``: per step its
cycles, coloured by what bounds it, with the bank's (compute) and the flash's (stream)
cycles marked; and ``roofline.svg``: per step the MAC/s it achieves (its MACs over its
cycles at the engine clock) against its arithmetic intensity (MACs per weight byte
streamed from flash), under the two roofs, the bank's peak (PE x SIMD MACs a cycle) and
the flash's bandwidth times the intensity. A step above the flash roof had its weights
fetched ahead, into the stream FIFO, while the steps before it computed.

Figures are drawn from the report's dictionary, so they show what ``report.md`` and
``report.json`` say, and the same dictionary gives byte-identical files: a fixed size,
matplotlib's defaults rather than the user's ``matplotlibrc``, fixed SVG ids, text kept
as text (no glyphs from font files), and neither a date nor a tool version.
"""

import io
import math

import matplotlib.style
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, NullFormatter

__all__ = ["FIGURES", "figure_lines", "write_figures", "roofline"]

#: Per back end (the report's ``engine``), its figures: file name -> caption.
FIGURES = {
    "dataflow": {"layers.svg": "cycles and LUTs per layer"},
    "layer": {"steps.svg": "cycles per step, compute- or stream-bound",
              "roofline.svg": "roofline: MAC/s per step against MACs per weight byte"},
}

_NOTES = {"layer": "Roofline: a step above the flash's roof had its weights fetched ahead, "
                   "into the stream FIFO, while the steps before it computed."}

#: Applied over matplotlib's defaults, for as long as a figure is drawn and written.
_RC = {"svg.hashsalt": "shiftadd", "svg.fonttype": "none", "font.size": 8}
#: No date and no matplotlib version in the file.
_METADATA = {"Date": None, "Creator": None}
WIDTH = 8.0                 # inches
#: Height of the bar charts: a margin, a row per layer, and at most MAX_HEIGHT (inches).
MARGIN, ROW, MAX_HEIGHT = 1.4, 0.28, 11.0
#: Layer names longer than this are cut in the figures (the tables keep them whole).
MAX_LABEL = 28
#: Roofline points this close (decades, on both axes) share one label.
CLUSTER = 0.08


def write_figures(data, out):
    """Draw the figures of report dictionary ``data`` and write them through ``out`` (an
    :class:`~compiler.driver.outdir.OutputDir`)."""
    with matplotlib.style.context(["default", _RC]):
        for name, caption in FIGURES[data["engine"]].items():
            fig = _DRAW[name](data)
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", metadata={**_METADATA, "Title": caption})
            out.write_bytes(name, buf.getvalue())


def figure_lines(engine):
    """The report's "Figures" section: a Markdown image link per figure, each its own
    paragraph (side by side they would share the page's width)."""
    lines = ["## Figures", ""]
    for name, caption in FIGURES[engine].items():
        lines += [f"![{caption}]({name})", ""]
    return lines + ([_NOTES[engine], ""] if engine in _NOTES else [])


# -- bar charts ----------------------------------------------------------------------------

def _bar_figure(rows, columns=1):
    """A figure of ``columns`` horizontal-bar panels sharing ``rows`` labels, first at the
    top; past MAX_HEIGHT the rows and their labels get thinner, not the figure taller."""
    height = min(MAX_HEIGHT, MARGIN + ROW * len(rows))
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(1, columns, sharey=True, squeeze=False)[0]
    row_pt = 72 * (height - MARGIN) / max(len(rows), 1)
    axes[0].set_yticks(range(len(rows)), [_label(r) for r in rows],
                       fontsize=min(8, max(4, 0.7 * row_pt)))
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    for ax in axes:
        ax.xaxis.set_major_formatter(EngFormatter())     # 2 M, not 2.0 and a "1e6" apart
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    return fig, axes


def _label(name):
    return name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 3] + "..."


def _layers(data):
    layers, tp = data["layers"], data["throughput"]
    names = [layer["stage"] for layer in layers]
    fig, (cycles, luts) = _bar_figure(names, columns=2)
    ii = tp["cycles_per_inference"]
    cycles.barh(range(len(layers)), [layer["cycles"] for layer in layers],
                color=["C3" if n == tp["bottleneck"] else "C0" for n in names])
    cycles.axvline(ii, color="C3", linestyle="--", linewidth=1,
                   label=f"initiation interval: {ii:,} (bottleneck {_label(tp['bottleneck'])})")
    measured = (data.get("verification") or {}).get("cycles_per_inference")
    if measured:
        cycles.axvline(measured, color="k", linestyle=":", linewidth=1,
                       label=f"measured in simulation: {measured:,}")
    cycles.set_xlabel("cycles per inference")

    # The colour says why a stage costs what it does: weights in wiring or in ROM.
    colours = {"hardwired": "C1", "rom": "C2"}
    legend = {"hardwired": "weights hard-wired", "rom": "weights in ROM", None: "no weights"}
    kinds = [layer.get("placement") for layer in layers]
    luts.barh(range(len(layers)), [layer["estimate"]["luts"] for layer in layers],
              color=[colours.get(k, "C7") for k in kinds])
    luts.set_xlabel(f"LUTs (estimated; total {data['estimate']['luts']:,})")
    placements = [Patch(color=colours.get(k, "C7"), label=legend.get(k, k))
                  for k in dict.fromkeys(kinds)]
    _legend(fig, cycles.get_legend_handles_labels()[0] + placements)
    return fig


def _steps(data):
    steps = data["steps"]
    fig, (ax,) = _bar_figure([s["step"] for s in steps])
    y = range(len(steps))
    colours = {"compute": "C0", "stream": "C1"}
    ax.barh(y, [s["cycles"] for s in steps], color=[colours[s["bound"]] for s in steps])
    ax.plot([s["compute_cycles"] for s in steps], y, "k|", markersize=9,
            label="compute cycles (the bank)")
    ax.plot([s["stream_cycles"] for s in steps], y, "x", color="C3", markersize=5,
            label="stream cycles (the flash)")
    tp = data["throughput"]
    title = f"estimated {tp['cycles_per_inference']:,} cycles per inference"
    measured = (data.get("verification") or {}).get("cycles_per_inference")
    if measured:
        title += f" (measured in Verilator: {measured:,})"
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("cycles of the step")
    bounds = [Patch(color=colour, label=f"{bound}-bound step")
              for bound, colour in colours.items() if any(s["bound"] == bound for s in steps)]
    _legend(fig, bounds + ax.get_legend_handles_labels()[0])
    return fig


def _legend(fig, handles):
    # Below the panels, where it covers no bar however long.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
               fontsize=7, frameon=False)


# -- the roofline --------------------------------------------------------------------------

def roofline(data):
    """The roofline of an engine report: ``(peak, bandwidth, points)``, the bank's peak in
    MAC/s, the flash's weight bandwidth in bytes/s, and per step ``(name, MACs per weight
    byte, achieved MAC/s, bound)``."""
    hz = data["clocks"]["engine_hz"]
    bank = data["bank"]
    peak = bank["pe"] * bank["simd"] * hz
    bandwidth = data["clocks"]["stream_bytes_per_s"]
    # A step without weights or MACs has no intensity to place on log axes.
    points = [(s["step"], s["macs"] / s["stream_bytes"], s["macs"] * hz / s["cycles"],
               s["bound"]) for s in data["steps"]
              if s["macs"] and s["stream_bytes"] and s["cycles"]]
    return peak, bandwidth, points


def _roofline(data):
    peak, bandwidth, points = roofline(data)
    ridge = peak / bandwidth
    xs = [p[1] for p in points] + [ridge]
    lo, hi = min(xs) / 4, max(xs) * 4
    fig = Figure(figsize=(WIDTH, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Each roof solid where it is the lower one (what a step can attain), dotted beyond.
    bank = data["bank"]
    ax.plot([ridge, hi], [peak, peak], color="C0",
            label=f"bank: {bank['pe']} x {bank['simd']} MACs x "
                  f"{data['clocks']['engine_hz'] / 1e6:g} MHz = {peak / 1e9:,.3g} GMAC/s")
    ax.plot([lo, ridge], [peak, peak], color="C0", linestyle=":", linewidth=1)
    ax.plot([lo, ridge], [bandwidth * lo, peak], color="C1",
            label=f"flash: {bandwidth / 1e6:,.3g} MB/s x MACs per byte")
    ax.plot([ridge, hi], [peak, bandwidth * hi], color="C1", linestyle=":", linewidth=1)
    for bound, colour in (("compute", "C0"), ("stream", "C1")):
        mine = [p for p in points if p[3] == bound]
        if mine:
            ax.plot([p[1] for p in mine], [p[2] for p in mine], "o", color=colour,
                    markeredgecolor="k", label=f"{bound}-bound step")
    # One label per cluster, alternately above and below: neighbours overlap less.
    for k, group in enumerate(_clusters(points)):
        ax.annotate("\n".join(_label(p[0]) for p in group), group[0][1:3],
                    xytext=(4, 3 if k % 2 == 0 else -3), textcoords="offset points",
                    va="bottom" if k % 2 == 0 else "top", fontsize=6)
    ax.set_xlim(lo, hi)
    rates = [p[2] for p in points] + [peak, bandwidth * lo]
    ax.set_ylim(min(rates) / 3, max(rates) * 3)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(EngFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("arithmetic intensity: MACs per weight byte streamed from flash")
    ax.set_ylabel("MAC/s at the engine clock")
    ax.grid(which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def _clusters(points, decades=CLUSTER):
    """``points`` in groups of those within ``decades`` of the group's first on both log
    axes (a network's repeated blocks land on one spot), from left to right."""
    groups = []
    for p in sorted(points, key=lambda p: (p[1], p[2], p[0])):
        first = groups[-1][0] if groups else None
        if first and all(abs(math.log10(p[i] / first[i])) <= decades for i in (1, 2)):
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


_DRAW = {"layers.svg": _layers, "steps.svg": _steps, "roofline.svg": _roofline}
