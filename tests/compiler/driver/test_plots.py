"""The report's figures: SVG beside report.md, linked from it, the same bytes every time.

Reports are made from plans alone (no Verilog, no Verilator): a small CNN on the
dataflow back end, a small residual net on the layer engine. One build per back end
checks that the build lists the figures among its files.
"""

import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest

from boards import get_board
from compiler import qpk
from compiler.backends.dataflow.cost import FABRICS
from compiler.backends.dataflow.images import collect_roms
from compiler.backends.dataflow.plan import make_plan
from compiler.backends.layer.backend import EngineBuildResult, engine_clocks_for
from compiler.backends.layer.plan import plan_engine
from compiler.backends.layer.report import write_engine_report
from compiler.backends.layer.timing import FlashRate
from compiler.driver.build import BuildOptions, BuildResult, build
from compiler.driver.outdir import OutputDir
from compiler.driver.plots import FIGURES, MAX_HEIGHT, roofline, write_figures
from compiler.driver.report import write_report
from compiler.passes import prepare
from graphs import engine_net, small_cnn

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def dataflow_result():
    board = get_board("ulx3s")
    plan = make_plan(prepare(small_cnn(np.random.default_rng(0))), FABRICS[board.family],
                     budget=board.budget, clock_mhz=board.clock_hz / 1e6)
    return BuildResult(None, board, plan, BuildOptions().as_report(), collect_roms(plan),
                       clock_hz=board.clock_hz)


@pytest.fixture(scope="module")
def engine_result():
    board = get_board("arty_a7_100")
    clocks = engine_clocks_for(board)
    rate = FlashRate(clocks.engine_hz, clocks.flash_hz, clocks.divider)
    graph = prepare(engine_net(np.random.default_rng(0)), forms=False)
    plan = plan_engine(graph, FABRICS[board.family], board.budget, rate)
    return EngineBuildResult(None, graph.name, board, plan,
                             BuildOptions(engine="layer").as_report(), clocks)


WRITERS = {"dataflow": (write_report, "dataflow_result"),
           "layer": (write_engine_report, "engine_result")}


def write(engine, request, path):
    writer, fixture = WRITERS[engine]
    out = OutputDir(path)
    data = writer(request.getfixturevalue(fixture), out)
    out.finish()
    return data


def svg_texts(path):
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    return root, "\n".join("".join(t.itertext()) for t in root.iter(SVG + "text"))


@pytest.mark.parametrize("engine", ["dataflow", "layer"])
def test_the_figures_are_svg_beside_the_report_and_linked_from_it(engine, request, tmp_path):
    data = write(engine, request, tmp_path / "b")
    report = (tmp_path / "b" / "report.md").read_text()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "## Figures" in report
    for name, caption in FIGURES[engine].items():
        assert f"![{caption}]({name})" in report
        assert name in manifest["files"]
        assert caption in (tmp_path / "b" / name).read_text()         # the SVG's <title>
    # Text stays text, so every layer is named in the figures.
    names = ([layer["stage"] for layer in data["layers"]] if engine == "dataflow"
             else [step["step"] for step in data["steps"]])
    for name in FIGURES[engine]:
        _, text = svg_texts(tmp_path / "b" / name)
        assert all(n in text for n in names), (name, names)


@pytest.mark.parametrize("engine", ["dataflow", "layer"])
def test_the_same_report_gives_the_same_bytes_whatever_the_rc(engine, request, tmp_path):
    data = write(engine, request, tmp_path / "a")
    before = dict(matplotlib.rcParams)
    with matplotlib.rc_context({"font.size": 20, "svg.fonttype": "path",
                                "svg.hashsalt": "other", "lines.linewidth": 5}):
        write(engine, request, tmp_path / "b")
    assert dict(matplotlib.rcParams) == before                # the figures left rc alone
    # Drawn again from report.json in a fresh process with another hash seed and a
    # user's matplotlibrc: the figures need nothing but the report's data.
    (tmp_path / "matplotlibrc").write_text("font.size: 20\nsvg.fonttype: path\n"
                                           "svg.hashsalt: mine\naxes.grid: True\n")
    (tmp_path / "c").mkdir()
    script = ("import json, sys; from compiler.driver.outdir import OutputDir; "
              "from compiler.driver.plots import write_figures; "
              "write_figures(json.load(open(sys.argv[1])), OutputDir(sys.argv[2]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "MATPLOTLIBRC": str(tmp_path / "matplotlibrc")}
    subprocess.run([sys.executable, "-c", script, tmp_path / "a" / "report.json",
                    tmp_path / "c"], check=True, env=env, timeout=120)
    for name in FIGURES[data["engine"]]:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
        text = a.decode()
        assert "dc:date" not in text and not re.search(r"\d{4}-\d\d-\d\dT?", text)
        assert matplotlib.__version__ not in text and "Matplotlib v" not in text


def test_the_roofline_places_each_step_under_its_roofs(engine_result, tmp_path):
    out = OutputDir(tmp_path / "b")
    data = write_engine_report(engine_result, out)
    peak, bandwidth, points = roofline(data)
    plan, clocks = engine_result.plan, engine_result.clocks
    assert peak == plan.pe * plan.simd * clocks.engine_hz
    assert bandwidth == clocks.stream_bytes_per_s
    assert [p[0] for p in points] == [t.name for t in plan.timings]
    for (name, intensity, rate, bound), t in zip(points, plan.timings):
        assert intensity == t.macs / t.stream_bytes and bound == t.bound
        assert rate == pytest.approx(t.macs * clocks.engine_hz / t.cycles)
        assert rate <= peak                   # a step takes at least its MACs over the bank
    _, text = svg_texts(tmp_path / "b" / "roofline.svg")
    assert "MACs per weight byte" in text and "GMAC/s" in text and "MB/s" in text


def test_figures_of_many_layers_stay_bounded(dataflow_result, engine_result, tmp_path):
    out = OutputDir(tmp_path / "b")
    data = write_report(dataflow_result, out)
    small = float(svg_texts(tmp_path / "b" / "layers.svg")[0].get("height").removesuffix("pt"))
    many = dict(data, layers=[dict(layer, stage=f"{layer['stage']}_{k}_" + "x" * 60)
                              for k in range(30) for layer in data["layers"]])
    write_figures(many, out)
    root, text = svg_texts(tmp_path / "b" / "layers.svg")
    assert small < float(root.get("height").removesuffix("pt")) <= MAX_HEIGHT * 72
    assert float(root.get("width").removesuffix("pt")) <= 8 * 72
    assert "x" * 60 not in text and "..." in text          # long names cut in the figure


@pytest.mark.parametrize("engine", ["dataflow", "layer"])
def test_a_build_lists_its_figures(engine, tmp_path):
    rng = np.random.default_rng(0)
    graph = small_cnn(rng) if engine == "dataflow" else engine_net(rng)
    qpk.save(graph, tmp_path / "net.qpk")
    board = "ulx3s" if engine == "dataflow" else "arty_a7_100"
    build(tmp_path / "net.qpk", BuildOptions(board=board, engine=engine, out=tmp_path / "b",
                                             verify=0, synth=False), stream=io.StringIO())
    files = json.loads((tmp_path / "b" / "report.json").read_text())["files"]
    for name in FIGURES[engine]:
        assert name in files and (tmp_path / "b" / name).is_file()
