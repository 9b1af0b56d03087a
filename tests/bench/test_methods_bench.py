"""bench.methods in quick mode on two methods: the script's whole path, in seconds.

The full table (every method, 3 seeds, Yosys) is run by hand: `python -m bench.methods`.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import methods  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cfg = methods.quick_config(methods=("ternary", "inq"), jobs=1, out=tmp / "results",
                               build_dir=tmp / "build", quiet=True)
    return cfg, methods.run(cfg, log=None)


def test_quick_run_measures_every_row(quick):
    cfg, results = quick
    assert results["errors"] == []
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == ["ternary", "inq"]
    assert {(r["key"], r["seed"]) for r in results["records"]} == {("ternary", 0), ("inq", 0)}
    for row in rows.values():
        assert row["exact"], "golden and fake-quant models must agree exactly"
        assert 0.0 <= row["accuracy_mean"] <= 1.0 and row["accuracy_std"] == 0.0
        assert row["delta_mean"] == pytest.approx(row["accuracy_mean"] - row["float_mean"])
        hw = row["hw"]                          # quick: the plan only, no Yosys
        assert hw["cycles"] > 0 and hw["est_luts"] > 0 and "luts" not in hw
    assert rows["ternary"]["bits_per_weight"] == 2.0
    assert rows["inq"]["bits_per_weight"] == 4.0
    # 5,992 weights; the size adds the integer bias of the classifier
    assert rows["ternary"]["size_bits"] > 2 * 5992


def test_quick_run_tables_and_files(quick, tmp_path):
    cfg, results = quick
    md = methods.write_results(results, cfg.out)
    assert results["command"] == "python -m bench.methods --quick --methods ternary,inq --jobs 1"
    assert "| `ternary` | ternary (TWN)" in md and "| `inq`" in md
    assert "cycles/inference" in md and "Quality targets" in md and "wall time" in md
    saved = json.loads((cfg.out / "methods.json").read_text())
    assert [r["key"] for r in saved["rows"]] == ["ternary", "inq"]
    assert (cfg.out / "methods.md").read_text().endswith(md)
    kinds = {k for _, k, _, _ in methods.targets(results)}
    assert kinds == {"ternary", "inq"}

    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\nby hand\n\n{methods.BEGIN}\nold\n{methods.END}\n\nafter\n")
    methods.write_docs(md, doc)
    methods.write_docs(md, doc)                 # idempotent: replaces the generated part
    text = doc.read_text()
    assert text.startswith("# Results\n\nby hand\n") and text.endswith(f"{methods.END}\n\nafter\n")
    assert text.count("| `ternary`") == md.count("| `ternary`") and "\nold\n" not in text


def test_quick_run_is_deterministic(quick, tmp_path):
    cfg, results = quick
    again = methods.run(methods.quick_config(methods=("ternary",), jobs=1, out=tmp_path,
                                             build_dir=cfg.build_dir, quiet=True), log=None)
    first = next(r for r in results["records"] if r["key"] == "ternary")
    second = again["records"][0]
    for k in ("accuracy", "float_accuracy", "size_bits", "layer_bits"):
        assert first[k] == second[k]
    assert first["hw"]["cycles"] == second["hw"]["cycles"]


def test_unknown_method_is_refused():
    with pytest.raises(SystemExit):
        methods.main(["--quick", "--methods", "ternary,nope"])
