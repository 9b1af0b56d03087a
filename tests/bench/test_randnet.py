"""The random-configuration generator and runner, without Verilator (seconds).

The configurations themselves run through Verilator in tests/e2e/test_random_configs.py
and, many at once, in `python -m bench.random_configs`.
"""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))                     # the repository root

from bench import random_configs, randnet  # noqa: E402
from bench.randnet import Conv, Pool  # noqa: E402
from compiler.errors import BuildError  # noqa: E402
from compiler.frontend.train import deterministic  # noqa: E402

SEEDS = range(300)


def _sides(cfg):
    """The map side before every layer, and after the last."""
    h, sides = cfg.side, []
    for x in cfg.layers:
        sides.append(h)
        if isinstance(x, Conv):
            h = (h + 2 * x.pad - x.k) // x.stride + 1
        elif isinstance(x, Pool):
            h = (h - x.k) // x.stride + 1
        else:
            h = (h - 1) // x.stride + 1
    return sides, h


def test_draw_is_a_pure_function_of_the_seed():
    for seed in (0, 7, 123):
        a, b = randnet.draw(seed), randnet.draw(seed)
        assert a == b and str(a) == str(b)
        sa, sb = a.model().state_dict(), b.model().state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert torch.equal(a.calibration(), b.calibration())
        assert a.build_options("o") == b.build_options("o")
    assert len({str(randnet.draw(s)).split(": ", 1)[1] for s in range(50)}) == 50


def test_draw_is_the_same_in_another_process():
    """`--only SEED` reruns what a bench run drew: nothing may depend on the process."""
    code = ("import sys; sys.path.insert(0, '.'); from bench import randnet; "
            "m = randnet.draw(11).model(); print(randnet.draw(11)); "
            "print(float(sum(p.double().sum() for p in m.state_dict().values())))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    cfg = randnet.draw(11)
    total = float(sum(p.double().sum() for p in cfg.model().state_dict().values()))
    assert out == [str(cfg), repr(total)]


@pytest.mark.parametrize("seed", SEEDS[:5])
def test_summary_is_one_line(seed):
    text = str(randnet.draw(seed))
    assert "\n" not in text and text.startswith(f"seed {seed}: in ")


def test_drawn_networks_are_valid_and_small():
    seen = {"method": set(), "board": set(), "weights": set(), "levels": set(), "head": set(),
            "layers": set(), "identity": 0, "proj": 0, "target": 0, "fold": 0}
    for seed in SEEDS:
        cfg = randnet.draw(seed)
        assert 1 <= cfg.in_ch <= 3 and 4 <= cfg.side <= 16
        sides, last = _sides(cfg)
        assert last >= 1
        for x, h in zip(cfg.layers, sides):
            if isinstance(x, Conv):
                assert 1 <= x.k <= min(7, h) and 0 <= x.pad < x.k and 1 <= x.stride <= 3
                assert 1 <= x.out <= 8
            elif isinstance(x, Pool):
                assert 2 <= x.k <= min(3, h) and 1 <= x.stride <= x.k
            else:
                assert x.k1 <= min(7, h) and x.p1 < x.k1 and x.p2 < x.k2 and 1 <= x.out <= 8
                seen["proj" if x.proj else "identity"] += 1
            seen["layers"].add(type(x).__name__)
        with deterministic(seed), torch.no_grad():      # one thread: 40x faster here
            assert cfg.model()(cfg.calibration(4)).shape == (4, cfg.classes)
        model = cfg.model()
        assert sum(m.weight.numel() for m in model.modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))) <= randnet.MAX_WEIGHTS
        if cfg.act_levels == "pow2":
            assert 2 <= cfg.act_bits <= 3
        else:
            assert 2 <= cfg.act_bits <= 5
        names = {m[0] for m in cfg.macs}
        for name, pe, simd in cfg.fold:
            assert name in names and pe >= 1 and simd >= 1
        seen["method"].add(cfg.method)
        seen["board"].add(cfg.board)
        seen["weights"].add(cfg.weights)
        seen["levels"].add(cfg.act_levels)
        seen["head"].add(cfg.head)
        seen["target"] += cfg.target_cycles is not None
        seen["fold"] += bool(cfg.fold)
    # every kind of draw happens within a few hundred seeds
    assert seen["method"] == {m for m, _ in randnet.METHODS}
    assert seen["board"] == {b for b, _ in randnet.BOARDS}
    assert seen["weights"] == {"auto", "hardwired", "rom"}
    assert seen["levels"] == {"linear", "pow2"} and seen["head"] == {"gap", "flatten"}
    assert seen["layers"] == {"Conv", "Pool", "Res"}
    assert min(seen["identity"], seen["proj"], seen["target"], seen["fold"]) >= 10


def test_configurations_quantize_and_plan():
    """Quantized and planned (no Verilator): every --fold names a layer it can divide."""
    from compiler.backends.dataflow.cost import FABRICS
    from compiler.errors import BuildError, QuantizeError
    from compiler.passes import prepare
    from compiler.backends.dataflow.plan import make_plan
    from compiler.frontend import quantize
    from boards import get_board
    planned = 0
    for seed in SEEDS[:60]:
        cfg = randnet.draw(seed)
        with deterministic(seed):
            try:
                graph = quantize(cfg.model(), cfg.calibration(), **cfg.quantize_kwargs()).graph
            except QuantizeError as err:      # a known front-end refusal, see the report
                assert "is used by 2 nodes" in str(err), (str(cfg), err)
                continue
        board = get_board(cfg.board)
        opts = cfg.build_options("o")
        try:
            plan = make_plan(prepare(graph), FABRICS[board.family], budget=board.budget,
                             placement=opts.weights, target_cycles=opts.target_cycles,
                             overrides=opts.fold)
        except BuildError as err:
            raise AssertionError(f"{cfg}: {err}") from None
        for name, pe, simd in cfg.fold:
            stage = next(s for s in plan.stages if name in s.nodes)
            assert (stage.pe, stage.simd, stage.placement) == (pe, simd, "rom"), str(cfg)
        planned += 1
    assert planned >= 50


def _built(bit_exact):
    from compiler.driver.build import BuildResult
    verification = {"bit_exact": bit_exact, "mismatches": 0 if bit_exact else 3,
                    "cycles_per_inference": 120}
    return BuildResult(Path("o"), None, SimpleNamespace(cycles=100), {},
                       verification=verification, timings={"verify_s": 1.0})


def _refuse():
    raise BuildError("the model does not fit ulx3s: luts ...\nthe rest of the message")


def _crash():
    raise RuntimeError("boom")


@pytest.mark.parametrize("behaviour, status, words", [
    (lambda: _built(True), "passed", ""),
    (lambda: _built(False), "failed", "mismatch: 3 output values differ"),
    (_refuse, "refused", "the model does not fit ulx3s: luts ..."),
    (_crash, "failed", "RuntimeError: boom"),
])
def test_run_classifies_outcomes(monkeypatch, tmp_path, behaviour, status, words):
    import compiler.driver.build
    monkeypatch.setattr(compiler.driver.build, "build", lambda model, options, stream: behaviour())
    cfg = randnet.draw(1)
    out = randnet.run(cfg, tmp_path)
    assert out.status == status and out.reason == words
    assert out.config == str(cfg) and (tmp_path / "rand1.qpk").is_file()
    if behaviour in (_refuse, _crash):
        assert out.stage == "build" and out.planned is None
    else:
        assert out.stage == "verify" and (out.planned, out.measured) == (100, 120)
    assert ("Traceback" in out.detail) == (behaviour is _crash)


def test_render_counts_and_first_failure():
    recs = [
        {"seed": 3, "config": "seed 3: a", "status": "passed", "reason": "", "stage": "verify",
         "planned": 10, "measured": 10},
        {"seed": 4, "config": "seed 4: b", "status": "passed", "reason": "", "stage": "verify",
         "planned": 10, "measured": 25},
        {"seed": 5, "config": "seed 5: c", "status": "refused", "stage": "build",
         "reason": "the model does not fit icebreaker: luts: needs ~9000", "planned": None,
         "measured": None},
        {"seed": 6, "config": "seed 6: d", "status": "refused", "stage": "build",
         "reason": "the model does not fit icebreaker: luts: needs ~12000", "planned": None,
         "measured": None},
        {"seed": 7, "config": "seed 7: e", "status": "failed", "stage": "verify",
         "reason": "mismatch: 2 output values differ", "planned": 10, "measured": 10},
        {"seed": 9, "config": "seed 9: f", "status": "failed", "stage": "build",
         "reason": "timeout: more than 600 s", "planned": None, "measured": None},
    ]
    md = random_configs.render(recs)
    assert "| all | 6 | 2 | 2 | 2 |" in md
    assert "| equal | 2 |" in md and "| more than planned | 1 |" in md
    assert "| 4 | 10 | 25 | 2.50 | seed 4: b |" in md
    assert "| 2 | the model does not fit icebreaker: luts: needs ~9000 (seed 5) |" in md
    assert "seed 7: e" in md and "reproduce: python -m bench.random_configs --only 7 -v" in md
    assert md.index("seed 7: e") < md.index("reproduce")


def test_repro_command_names_a_changed_verify():
    assert random_configs.repro_command(12) == "python -m bench.random_configs --only 12 -v"
    assert random_configs.repro_command(12, 3) == \
        "python -m bench.random_configs --only 12 --verify 3 -v"


def test_render_counts_by_tag():
    recs = [{"seed": s, "config": "", "status": st, "reason": "r", "stage": "build",
             "planned": None, "measured": None, "tags": {"method": m, "board": "ulx3s"}}
            for s, st, m in [(1, "passed", "kq"), (2, "refused", "kq"), (3, "passed", "int")]]
    md = random_configs.render(recs)
    assert "| method int | 1 | 1 | 0 | 0 |" in md and "| method kq | 2 | 1 | 1 | 0 |" in md
    assert "| board ulx3s | 3 | 2 | 1 | 0 |" in md


def test_child_process_timeout_is_a_failure():
    rec = random_configs._run_child(2, 8, timeout=0.5)
    assert rec["status"] == "failed" and rec["reason"] == "timeout: more than 0 s"
    assert rec["stage"] == "timeout" and rec["planned"] is None
    cfg = randnet.draw(2)
    assert rec["config"] == str(cfg) and rec["tags"]["method"] == cfg.method
