"""Every quantization method on real data: the digits CNN, several seeds, accuracy and hardware.

Golden-model accuracy, and Yosys LUTs of each design::

    python -m bench.methods                  # the full table (3 seeds), ~15-20 min on 2 cores
    python -m bench.methods --write-docs     # ... and put it into docs/results.md
    python -m bench.methods --quick          # 1 seed, 1 epoch, plan-only hardware: a smoke run

For every seed: train the float ``digits_cnn`` on the fixed digits split (cached
on disk per seed), then for every method quantize it with the options of the
measured tables in ``docs/quantization.md`` (calibration on 512 training images,
QAT fine-tuning), check that the golden integer model and the fake-quant model
agree exactly on the test images, and record the golden model's test accuracy
and the weight storage. The model of one seed (0) of every method is also
compiled for the board (default ``arty_a7``): the hardware plan (placement,
cycles per inference) and the LUTs of Yosys' ``synth_xilinx`` (Vivado is not
needed). Work runs in ``--jobs`` worker processes with one torch thread each;
every number except the timings is the same on every run.

Results: ``bench/results/methods.md`` (the tables) and ``methods.json`` (every
number per seed); ``--write-docs`` also replaces the generated part of
``docs/results.md``. The function API is :func:`run` (a :class:`Config`) and
:func:`render`.
"""

import argparse
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):                 # `python bench/methods.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["Spec", "SPECS", "Config", "run", "render", "targets", "write_docs", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "results.md"
BEGIN = ("<!-- bench.methods: generated, do not edit by hand "
         "(python -m bench.methods --write-docs) -->")
END = "<!-- bench.methods: end -->"


@dataclass(frozen=True)
class Spec:
    """One row of the table: a registered method with its options."""

    key: str                     # row name
    method: str                  # name in compiler.frontend.methods
    weights: str                 # what the weights are, for the table
    family: str                  # baseline / loss-aware / ...
    weight_bits: int = None
    options: tuple = ()          # method_options as (name, value) pairs
    act_bits: int = 4
    act_levels: str = None       # None: the method's own (pow2a: pow2)
    seeded: bool = False         # the method takes a ``seed`` option (k-means, noise draws)
    target: str = None           # quality target it is checked against (see targets())
    paper: str = ""

    @property
    def activations(self):
        levels = self.act_levels or ("pow2" if self.method == "pow2a" else "linear")
        return f"{self.act_bits}-bit {levels}"


#: The rows, with the options of docs/quantization.md's measured tables (the CLI/zoo defaults).
SPECS = [
    Spec("ternary", "ternary", "ternary (TWN)", "baseline", target="ternary",
         paper="Li et al. 2016"),
    Spec("pow2", "pow2", "4-bit pow2, one shot + QAT", "baseline", weight_bits=4,
         target="pow2", paper="INQ levels"),
    Spec("inq", "inq", "4-bit pow2, 4 INQ stages", "baseline", weight_bits=4, target="pow2",
         paper="Zhou et al. ICLR 2017"),
    Spec("int", "int", "4-bit int (uniform)", "baseline", weight_bits=4),
    Spec("lat", "lat", "ternary, loss-aware (exact)", "loss-aware", target="ternary",
         paper="Hou & Kwok ICLR 2018"),
    Spec("lat2", "lat2", "ternary2 {-N,0,P} (exact)", "loss-aware", target="ternary",
         paper="Hou & Kwok ICLR 2018"),
    Spec("laq", "laq", "4-bit int, loss-aware linear", "loss-aware", weight_bits=4,
         paper="Hou & Kwok ICLR 2018"),
    Spec("laq-log", "laq-log", "4-bit pow2, loss-aware log", "loss-aware", weight_bits=4,
         target="pow2", paper="Hou & Kwok ICLR 2018"),
    Spec("slq", "slq", "9 clusters -> 4-bit pow2", "clustering", weight_bits=4, target="pow2",
         paper="Xu et al. AAAI 2018"),
    Spec("mlq", "mlq", "ternary, 2 layer groups", "clustering", target="ternary",
         paper="Xu et al. AAAI 2018"),
    Spec("kq", "kq", "conv: 4-bit kernel index, 6-bit codebook", "codebook", weight_bits=4,
         seeded=True, target="kq", paper="Yu et al. 2020"),
    Spec("kq-5", "kq", "conv: 5-bit kernel index, 6-bit codebook", "codebook", weight_bits=5,
         seeded=True, target="kq", paper="Yu et al. 2020"),
    Spec("adaptive", "adaptive", "int, per-layer bits, 3 bits/weight", "adaptive",
         options=(("budget", 3.0), ("budget_kind", "size")), seeded=True,
         paper="Zhou et al. AAAI 2018"),
    Spec("adaptive-adders", "adaptive", "int, per-layer bits, 1 adder/weight", "adaptive",
         options=(("budget", 1.0), ("budget_kind", "adders")), seeded=True,
         paper="Zhou et al. AAAI 2018"),
    Spec("pow2a", "pow2a", "4-bit pow2", "pow2 activations", weight_bits=4, act_bits=3,
         target="pow2", paper="Long et al. 2020"),
]
SPEC_BY_KEY = {s.key: s for s in SPECS}
#: hardware builds first, longest first (LPT scheduling on the workers), from measured
#: build times at 8f229aa: the KQ designs (Yosys 3-6 min) and pow2a first
HW_ORDER = ["kq", "pow2a", "kq-5", "int", "adaptive-adders", "slq", "laq-log", "pow2", "laq",
            "lat2", "lat", "ternary", "mlq", "inq", "adaptive"]


@dataclass
class Config:
    methods: tuple = tuple(s.key for s in SPECS)
    seeds: tuple = (0, 1, 2)
    float_epochs: int = 30
    finetune_epochs: int = 15
    finetune_lr: float = 1e-3
    calib: int = 512
    hw: str = "synth"            # synth: build + Yosys; plan: the hardware plan only; none
    hw_seed: int = 0             # the seed whose models are compiled
    board: str = "arty_a7"
    weights: str = "auto"        # BuildOptions.weights
    target_cycles: int = None
    verify: int = 0              # Verilator inputs per build (0: none)
    build_timeout: float = 900.0  # seconds per hardware build
    jobs: int = 2
    out: Path = RESULTS_DIR
    build_dir: Path = ROOT / "build" / "bench"
    cache: bool = True
    quiet: bool = False


def quick_config(**kw):
    """The ``--quick`` configuration: 1 seed, 1 epoch (float and QAT), hardware plan only."""
    return Config(**{**dict(seeds=(0,), float_epochs=1, finetune_epochs=1, hw="plan"), **kw})


# --------------------------------------------------------------------------- float models

def _code_hash():
    """What the float model depends on: its code and torch's version."""
    import torch
    h = hashlib.sha256(torch.__version__.encode())
    for rel in ("compiler/zoo/models.py", "compiler/frontend/data.py",
                "compiler/frontend/train.py", "compiler/zoo/build.py"):
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:12]


def _cache_path(cfg, seed):
    name = f"digits_cnn-seed{seed}-e{cfg.float_epochs}-{_code_hash()}.npz"
    return Path(cfg.build_dir) / "cache" / name


def train_float(cfg, seed):
    """Train the float digits CNN for ``seed`` (or load it from the cache); returns the file."""
    import numpy as np
    path = _cache_path(cfg, seed)
    if cfg.cache and path.is_file():
        return path, 0.0
    from compiler.zoo.build import train_float as zoo_train
    t = time.monotonic()
    model, _, _ = zoo_train("digits_cnn", epochs=cfg.float_epochs, seed=seed, log=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    os.replace(tmp, path)
    return path, time.monotonic() - t


def load_float(path):
    """A fresh ``digits_cnn`` with the cached float weights (numpy; nothing is unpickled)."""
    import numpy as np
    import torch
    from compiler.zoo.models import digits_cnn
    model = digits_cnn()
    with np.load(path, allow_pickle=False) as npz:
        model.load_state_dict({k: torch.from_numpy(npz[k].copy()) for k in npz.files})
    return model.eval()


# --------------------------------------------------------------------------- measuring

def weight_accounting(graph):
    """``(weights, weight_bits, bias_bits, conv_bits_per_param)`` of a graph, as stored.

    Weights count ``weight_bits`` each; a ``ternary2`` layer (LAT2) stores a 2-bit
    pattern per weight plus its two integers ``P``, ``N``; a ``codebook`` layer (KQ)
    stores its indices and codebook entries (the paper's count). Biases count their
    integer width. ``conv_bits_per_param`` is KQ's measure over the codebook layers.
    """
    from compiler.ir import bits_for_range
    n = wbits = bbits = 0
    cb_bits = cb_params = 0
    for node in graph.nodes:
        kind = node.attrs.get("weight_kind")
        if kind is None or "weight" not in node.tensors:
            continue
        w = node.tensors["weight"]
        b = node.attrs["weight_bits"]
        if kind == "codebook":
            bits = (node.tensors["indices"].size * b
                    + node.tensors["codebook"].size * node.attrs["entry_bits"])
            cb_bits += bits
            cb_params += w.size
        elif kind == "ternary2":
            bits = 2 * w.size + 2 * b
        else:
            bits = b * w.size
        n += w.size
        wbits += bits
        if "bias" in node.tensors and node.tensors["bias"].size:
            t = node.tensors["bias"]
            bbits += t.size * bits_for_range(min(int(t.min()), 0), max(int(t.max()), 0))[0]
    return n, wbits, bbits, (cb_bits / cb_params if cb_params else None)


def quantize_one(spec, seed, float_path, cfg, save=None):
    """Quantize the seed's float model with ``spec``; a dict of measurements."""
    from compiler.frontend.data import digits
    from compiler.frontend.pipeline import quantize_and_evaluate, weight_storage_bits
    from compiler.frontend.train import deterministic
    model = load_float(float_path)
    train, test = digits()
    options = dict(spec.options)
    if spec.seeded:
        options["seed"] = seed
    t = time.monotonic()
    with deterministic(seed):
        outcome = quantize_and_evaluate(
            model, train.x[:cfg.calib], train=train, test=test, weights=spec.method,
            weight_bits=spec.weight_bits, act_bits=spec.act_bits, act_levels=spec.act_levels,
            finetune_epochs=cfg.finetune_epochs, finetune_lr=cfg.finetune_lr, seed=seed,
            name="digits_cnn", log=None, method_options=options or None,
            metadata={"bench": spec.key, "float_epochs": cfg.float_epochs})
    seconds = time.monotonic() - t
    graph = outcome.result.graph
    n, wbits, bbits, cb = weight_accounting(graph)
    q = graph.metadata["quantization"]
    rep = outcome.test_report
    rec = {
        "key": spec.key, "seed": seed, "float_accuracy": outcome.float_accuracy,
        "accuracy": outcome.quant_accuracy,
        "agreement": {"samples": rep.samples, "argmax_equal": rep.argmax_equal,
                      "max_steps": rep.max_steps, "exact": rep.exact},
        "weights": n, "weight_storage_bits": wbits, "bias_bits": bbits,
        "size_bits": wbits + bbits, "bits_per_weight": wbits / n,
        "project_storage_bits": weight_storage_bits(graph),
        "layer_bits": {node.name: node.attrs["weight_bits"] for node in graph.nodes
                       if node.attrs.get("weight_kind")},
        "seconds": seconds,
    }
    if cb is not None:
        rec["kq_conv_bits_per_param"] = cb
        rec["kq_conv_bits_per_param_metadata"] = q.get("kq", {}).get("conv_bits_per_param")
    if "snap" in q:
        rec["snap"] = q["snap"]
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        outcome.result.save(save)
        rec["qpk"] = str(save)
    return rec


def plan_hardware(qpk_path, cfg):
    """The compiler's plan for the board (no Verilog): placement, cycles, estimates, fit."""
    from boards import get_board
    from compiler.backends.dataflow.cost import FABRICS
    from compiler.errors import BuildError
    from compiler.driver.model import resolve_model
    from compiler.passes import prepare
    from compiler.backends.dataflow.plan import check_budget, make_plan
    graph, _ = resolve_model(str(qpk_path))
    board = get_board(cfg.board)
    plan = make_plan(prepare(graph), FABRICS[board.family], budget=board.budget,
                     placement=cfg.weights, target_cycles=cfg.target_cycles)
    rec = {"board": board.name, "cycles": plan.cycles, "est_luts": plan.resources.luts,
           "est_ffs": plan.resources.ffs, "est_brams": plan.resources.brams,
           "placement": "/".join(sorted({s.placement for s in plan.stages if s.is_mvu})),
           "fits": True}
    try:
        check_budget(plan, board.name)
    except BuildError as err:
        rec["fits"] = False
        rec["error"] = f"BuildError: {err}"
    return rec


def compile_one(key, qpk_path, cfg):
    """Build ``qpk_path`` for the board (Verilog, Yosys); runs in a child process (timeout)."""
    from compiler.driver.build import BuildOptions, build
    out = Path(cfg.build_dir) / f"{key}-{cfg.board}"
    log = io.StringIO()
    t = time.monotonic()
    rec = {}
    try:
        res = build(str(qpk_path), BuildOptions(board=cfg.board, out=out, weights=cfg.weights,
                                                target_cycles=cfg.target_cycles,
                                                verify=cfg.verify, synth=True), stream=log)
        util = (res.synthesis or {}).get("utilization") or {}
        rec.update({"luts": util.get("luts"), "ffs": util.get("ffs"),
                    "brams": util.get("brams"), "bram_kind": util.get("bram_kind"),
                    "dsps": util.get("dsps"), "carry4": util.get("carry4"),
                    "lut_ram": util.get("lut_ram"), "tool": res.synthesis.get("tool"),
                    "timings": res.timings, "out": str(out)})
        m = re.search(r"yosys: done in ([0-9.]+) s", log.getvalue())
        rec["synth_s"] = float(m.group(1)) if m else res.timings.get("board_s")
        if res.verification:
            v = res.verification
            rec["verified"] = {"inputs": v["inputs"], "bit_exact": v["bit_exact"],
                               "cycles_per_inference": v["cycles_per_inference"],
                               "latency_cycles": v["latency_cycles"]}
    except Exception as err:              # reported in the table, with the traceback in the JSON
        rec["error"] = f"{type(err).__name__}: {str(err)[:400]}"
        rec["traceback"] = _short_traceback()
    rec["build_s"] = time.monotonic() - t
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-build.log").write_text(log.getvalue())
    return rec


def _short_traceback(limit=30):
    lines = traceback.format_exc().splitlines()
    if len(lines) > 2 * limit:               # a RecursionError repeats the same frames
        lines = lines[:limit] + [f"... ({len(lines) - 2 * limit} lines) ..."] + lines[-limit:]
    return "\n".join(lines)


def hardware_one(key, qpk_path, cfg):
    """Plan, then (``hw="synth"`` and it fits) build in a child process with a timeout."""
    try:
        rec = plan_hardware(qpk_path, cfg)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err)[:400]}",
                "traceback": _short_traceback()}
    if cfg.hw != "synth" or not rec["fits"]:
        return rec
    out = Path(cfg.build_dir) / f"{key}-{cfg.board}.build.json"
    cfg_json = json.dumps(_cfg_dict(cfg))
    cmd = [sys.executable, "-m", "bench.methods", "--internal-compile", key, str(qpk_path),
           str(out), cfg_json]
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=cfg.build_timeout)
        if proc.returncode != 0 or not out.is_file():
            rec["error"] = f"build process exited with {proc.returncode}"
            rec["traceback"] = (proc.stderr or "")[-4000:]
        else:
            rec.update(json.loads(out.read_text()))
    except subprocess.TimeoutExpired:
        rec["error"] = f"timeout: the build took more than {cfg.build_timeout:.0f} s"
        rec["build_s"] = time.monotonic() - t
    return rec


def _cfg_dict(cfg):
    d = asdict(cfg)
    d["out"], d["build_dir"] = str(cfg.out), str(cfg.build_dir)
    d["methods"], d["seeds"] = list(cfg.methods), list(cfg.seeds)
    return d


def _cfg_from_dict(d):
    d = dict(d)
    d["out"], d["build_dir"] = Path(d["out"]), Path(d["build_dir"])
    d["methods"], d["seeds"] = tuple(d["methods"]), tuple(d["seeds"])
    return Config(**d)


# --------------------------------------------------------------------------- workers

_T0 = None


def _init_worker(t0):
    global _T0
    import torch
    torch.set_num_threads(1)
    _T0 = t0


def _say(cfg, text):
    if not cfg.quiet:
        elapsed = time.time() - (_T0 or time.time())
        print(f"[{elapsed:7.1f} s] {text}\n", end="", flush=True)   # one write per line


def _task(task):
    """One unit of work in a worker: ("float", seed) or ("method", key, seed, float_path, hw)."""
    kind, cfg = task[0], _cfg_from_dict(task[-1])
    try:
        if kind == "float":
            seed = task[1]
            path, secs = train_float(cfg, seed)
            return {"kind": "float", "seed": seed, "path": str(path), "seconds": secs}
        _, key, seed, float_path, hw, _ = task
        spec = SPEC_BY_KEY[key]
        _say(cfg, f"start {key} seed {seed}" + (" (+ hardware)" if hw else ""))
        qpk = Path(cfg.build_dir) / "qpk" / f"{key}-seed{seed}.qpk"
        rec = quantize_one(spec, seed, float_path, cfg, save=qpk if hw else None)
        if hw:
            _say(cfg, f"      {key} seed {seed}: {100 * rec['accuracy']:.2f}%, "
                      f"compiling for {cfg.board} ({cfg.hw})")
            rec["hw"] = hardware_one(key, qpk, cfg)
        return {"kind": "method", **rec}
    except Exception as err:
        return {"kind": "error", "task": [t for t in task[:-1]],
                "error": f"{type(err).__name__}: {err}", "traceback": _short_traceback()}


def _run_tasks(tasks, cfg, t0, on_result):
    if cfg.jobs <= 1:                     # in this process (the tests): restore what we set
        import torch
        threads = torch.get_num_threads()
        _init_worker(t0)
        try:
            for t in tasks:
                on_result(_task(t))
        finally:
            torch.set_num_threads(threads)
        return
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.jobs, initializer=_init_worker, initargs=(t0,)) as pool:
        for res in pool.imap_unordered(_task, tasks, chunksize=1):
            on_result(res)


def _print(text):
    print(text + "\n", end="", flush=True)       # one write: lines of workers do not mix


def run(cfg=None, log=_print):
    """Run the benchmark; returns the results dict (also written to ``cfg.out``)."""
    cfg = cfg or Config()
    unknown = [m for m in cfg.methods if m not in SPEC_BY_KEY]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(SPEC_BY_KEY)}")
    if cfg.hw not in ("synth", "plan", "none"):
        raise ValueError(f"hw must be synth, plan or none, not {cfg.hw!r}")
    global _T0
    t0 = _T0 = time.time()
    say = (lambda text: None) if cfg.quiet or log is None else \
        (lambda text: log(f"[{time.time() - t0:7.1f} s] {text}"))
    cd = _cfg_dict(cfg)
    say(f"bench.methods: {len(cfg.methods)} methods x seeds {list(cfg.seeds)}, "
        f"{cfg.float_epochs} float + {cfg.finetune_epochs} fine-tuning epochs, "
        f"hardware: {cfg.hw} on {cfg.board} (seed {cfg.hw_seed}), {cfg.jobs} worker(s)")

    floats, errors = {}, []

    def on_float(res):
        if res["kind"] != "float":
            errors.append(res)
            say(f"FAILED {res['task']}: {res['error']}")
            return
        floats[res["seed"]] = res["path"]
        how = f"trained in {res['seconds']:.1f} s" if res["seconds"] else "from cache"
        say(f"float model seed {res['seed']}: {how}")

    _run_tasks([("float", s, cd) for s in cfg.seeds], cfg, t0, on_float)

    hw_keys = [k for k in HW_ORDER if k in cfg.methods] + \
        [k for k in cfg.methods if k not in HW_ORDER]
    tasks = []
    if cfg.hw_seed in floats:
        tasks += [("method", k, cfg.hw_seed, floats[cfg.hw_seed], cfg.hw != "none", cd)
                  for k in hw_keys]
    tasks += [("method", k, s, floats[s], False, cd)
              for s in cfg.seeds if s != cfg.hw_seed and s in floats for k in cfg.methods]
    records = []

    def on_method(res):
        if res["kind"] != "method":
            errors.append(res)
            say(f"FAILED {res['task'][:3]}: {res['error']}")
            return
        records.append(res)
        line = (f"done  {res['key']} seed {res['seed']}: golden {100 * res['accuracy']:.2f}% "
                f"(float {100 * res['float_accuracy']:.2f}%), {res['bits_per_weight']:.2f} "
                f"bits/weight, quantized in {res['seconds']:.1f} s")
        hw = res.get("hw")
        if hw:
            if hw.get("luts") is not None:
                line += (f"; {hw['board']}: {hw['luts']:,} LUTs (Yosys, {hw['synth_s']:.0f} s), "
                         f"{hw['cycles']:,} cycles/inference")
            elif "cycles" in hw:
                line += (f"; {hw['board']}: plan {hw['cycles']:,} cycles, est. "
                         f"{hw['est_luts']:,} LUTs")
            if hw.get("error"):
                line += f"; hardware: {hw['error'][:160]}"
        say(line)

    _run_tasks(tasks, cfg, t0, on_method)
    wall = time.time() - t0
    records.sort(key=lambda r: (cfg.methods.index(r["key"]), r["seed"]))
    results = {"config": cd, "command": command_line(cfg), "records": records,
               "errors": errors, "wall_s": wall, "environment": _environment()}
    results["rows"] = aggregate(results)
    say(f"total wall time {wall:.0f} s ({wall / 60:.1f} min)")
    return results


def _environment():
    import platform
    import torch
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        git = ["git", "-C", str(ROOT)]
        env["commit"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "compiler", "hw", "sim",
                                      "boards"], capture_output=True, text=True).stdout.strip()
        env["dirty"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        pass
    return env


def command_line(cfg):
    """The command that reproduces ``cfg`` (relative to the defaults)."""
    default = Config()
    quick = quick_config()
    base = quick if (cfg.seeds, cfg.float_epochs, cfg.finetune_epochs) == \
        (quick.seeds, quick.float_epochs, quick.finetune_epochs) else default
    args = ["python", "-m", "bench.methods"] + (["--quick"] if base is quick else [])
    if cfg.methods != default.methods:
        args += ["--methods", ",".join(cfg.methods)]
    if cfg.seeds != base.seeds:
        args += ["--seeds", ",".join(str(s) for s in cfg.seeds)]
    for name, flag in (("float_epochs", "--float-epochs"), ("finetune_epochs", "--finetune-epochs"),
                       ("hw", "--hw"), ("board", "--board"), ("weights", "--weights"),
                       ("target_cycles", "--target-cycles"), ("verify", "--verify"),
                       ("build_timeout", "--build-timeout"), ("jobs", "--jobs")):
        if getattr(cfg, name) != getattr(base, name):
            args += [flag, f"{getattr(cfg, name):g}" if isinstance(getattr(cfg, name), float)
                     else str(getattr(cfg, name))]
    return " ".join(args)


# --------------------------------------------------------------------------- tables

def _mean(xs):
    return sum(xs) / len(xs)


def _std(xs):
    """Sample standard deviation (n - 1); 0 for one value."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def aggregate(results):
    """One row per method: means and spreads over the seeds, and the hardware of ``hw_seed``."""
    cfg = results["config"]
    rows = []
    for key in cfg["methods"]:
        recs = [r for r in results["records"] if r["key"] == key]
        if not recs:
            rows.append({"key": key, "missing": True})
            continue
        spec = SPEC_BY_KEY[key]
        acc = [r["accuracy"] for r in recs]
        flt = [r["float_accuracy"] for r in recs]
        delta = [a - f for a, f in zip(acc, flt)]
        hw_rec = next((r for r in recs if r["seed"] == cfg["hw_seed"] and "hw" in r), None)
        row = {
            "key": key, "method": spec.method, "weights": spec.weights,
            "activations": spec.activations, "seeds": [r["seed"] for r in recs],
            "accuracy": acc, "accuracy_mean": _mean(acc), "accuracy_std": _std(acc),
            "float_mean": _mean(flt), "delta": delta, "delta_mean": _mean(delta),
            "delta_std": _std(delta), "delta_worst": min(delta),
            "bits_per_weight": _mean([r["bits_per_weight"] for r in recs]),
            "size_bits": _mean([r["size_bits"] for r in recs]),
            "size_bits_all": [r["size_bits"] for r in recs],
            "exact": all(r["agreement"]["exact"] for r in recs),
            "layer_bits": [r["layer_bits"] for r in recs],
            "target": spec.target, "paper": spec.paper,
        }
        if any("kq_conv_bits_per_param" in r for r in recs):
            row["kq_conv_bits_per_param"] = _mean([r["kq_conv_bits_per_param"] for r in recs])
        if hw_rec is not None:
            row["hw"] = hw_rec["hw"]
        rows.append(row)
    return rows


def _pct(x):
    return f"{100 * x:.2f}"


def _hw_cells(row):
    hw = row.get("hw")
    if hw is None:
        return "-", "-"
    cycles = f"{hw['cycles']:,}" if "cycles" in hw else "-"
    if hw.get("luts") is not None:
        return f"{hw['luts']:,}", cycles
    if "cycles" in hw and not hw.get("fits", True):
        return f"does not fit (est. {hw['est_luts']:,})", "-"
    if hw.get("error"):
        what = "timeout" if hw["error"].startswith("timeout") else hw["error"].split(":")[0]
        return f"failed: {what} (est. {hw.get('est_luts', 0):,})", cycles
    if "est_luts" in hw:
        return f"est. {hw['est_luts']:,}", cycles
    return "-", cycles


def main_table(results):
    from compiler.table import markdown_table
    rows = []
    for row in results["rows"]:
        if row.get("missing"):
            rows.append([f"`{row['key']}`", "(failed)"] + ["-"] * 7)
            continue
        n = len(row["accuracy"])
        bpw = f"{row['bits_per_weight']:.2f}"
        if "kq_conv_bits_per_param" in row:
            bpw += f" (conv {row['kq_conv_bits_per_param']:.2f})"
        spread = f" ± {_pct(row['accuracy_std'])}" if n > 1 else ""
        dspread = f" ± {_pct(row['delta_std'])}" if n > 1 else ""
        size = row["size_bits"]
        luts, cycles = _hw_cells(row)
        rows.append([f"`{row['key']}`", row["weights"], row["activations"], bpw,
                     f"{_pct(row['accuracy_mean'])}{spread}",
                     f"{100 * row['delta_mean']:+.2f}{dspread}",
                     f"{size:,.0f} b ({size / 8192:.2f} KiB)", luts, cycles])
    return markdown_table(["method", "weights", "activations", "bits/weight",
                           "test acc. % (golden)", "Δ vs float (pts)", "weight size",
                           "LUTs (Yosys)", "cycles/inference"], rows,
                          align="lllrrrrrr")


def detail_tables(results):
    from compiler.table import markdown_table
    cfg = results["config"]
    seeds = cfg["seeds"]
    per_seed = []
    for row in results["rows"]:
        if row.get("missing"):
            continue
        accs = dict(zip(row["seeds"], row["accuracy"]))
        allocs = []
        for layer in row["layer_bits"]:
            text = "/".join(str(b) for b in layer.values())
            if text not in allocs:
                allocs.append(text)
        per_seed.append([f"`{row['key']}`"] + [_pct(accs[s]) if s in accs else "-" for s in seeds]
                        + ["; ".join(allocs),
                           "exact" if row["exact"] else "NOT EXACT"])
    out = ["Per seed (golden test accuracy, %), the bits of each layer "
           "(conv1/conv2/block_conv1/block_conv2/fc; KQ: index bits; every allocation the seeds "
           "gave) and the "
           "golden-vs-fake-quant agreement on the 359 test images:", "",
           markdown_table(["method"] + [f"seed {s}" for s in seeds] + ["layer bits", "agreement"],
                          per_seed, align="l" + "r" * len(seeds) + "ll")]
    hw_rows = []
    for row in results["rows"]:
        hw = row.get("hw")
        if not hw:
            continue
        hw_rows.append([f"`{row['key']}`", hw.get("placement", "-"),
                        f"{hw['cycles']:,}" if "cycles" in hw else "-",
                        f"{hw['est_luts']:,}" if "est_luts" in hw else "-",
                        f"{hw['luts']:,}" if hw.get("luts") is not None else "-",
                        f"{hw['ffs']:,}" if hw.get("ffs") is not None else "-",
                        f"{hw['brams']} {hw.get('bram_kind') or ''}".strip()
                        if hw.get("brams") is not None else "-",
                        str(hw.get("dsps", "-")) if hw.get("luts") is not None else "-",
                        f"{hw['synth_s']:.0f}" if hw.get("synth_s") else "-",
                        (hw.get("error") or "").replace("|", "/")[:160]])
    if hw_rows:
        out += ["", f"Hardware of the seed-{cfg['hw_seed']} models on `{cfg['board']}` "
                f"(`BuildOptions(weights={cfg['weights']!r}, target_cycles="
                f"{cfg['target_cycles']}, verify={cfg['verify']}, synth=True)`; plan estimates "
                "from the compiler's cost model, LUTs/FFs/BRAMs from Yosys `synth_xilinx`):", "",
                markdown_table(["method", "placement", "cycles", "est. LUTs", "Yosys LUTs",
                                "FFs", "BRAM", "DSPs", "synth s", "problem"], hw_rows,
                               align="llrrrrrrrl")]
    return "\n".join(out)


#: quality targets: (name, rule, spec.target)
TARGETS = [
    ("ternary methods within 2 points of float", "ternary", 2.0),
    ("4-bit power-of-two methods within 1 point of float", "pow2", 1.0),
    ("KQ at most 2 bits per conv parameter (the paper's count)", "kq", 2.0),
]


def targets(results):
    """``[(target, key, value text, met)]`` for every row that has a target."""
    out = []
    for name, tag, limit in TARGETS:
        for row in results["rows"]:
            if row.get("missing") or row["target"] != tag:
                continue
            if tag == "kq":
                v = row["kq_conv_bits_per_param"]
                out.append((name, row["key"], f"{v:.2f} bits/param (conv); accuracy "
                            f"{100 * row['delta_mean']:+.2f} pts", v <= limit))
            else:
                d = 100 * row["delta_mean"]
                worst = 100 * row["delta_worst"]
                out.append((name, row["key"], f"mean {d:+.2f} pts (worst seed {worst:+.2f})",
                            d >= -limit))
    return out


def render(results):
    """The Markdown of a run: main table, command, wall time, targets, details."""
    from compiler.table import markdown_table
    cfg = results["config"]
    floats = {}
    for rec in results["records"]:
        floats[rec["seed"]] = rec["float_accuracy"]
    fvals = [floats[s] for s in sorted(floats)]
    lines = [
        f"Digits CNN (`compiler.zoo.models.digits_cnn`, 5,992 weights) on the fixed digits "
        f"split (1,438 train / 359 test images), seeds {', '.join(map(str, cfg['seeds']))}: "
        f"float model {cfg['float_epochs']} epochs, "
        + (f"test accuracy {_pct(_mean(fvals))} ± {_pct(_std(fvals))}% "
           f"({', '.join(_pct(v) for v in fvals)}); " if fvals else "")
        + f"calibration on {cfg['calib']} training images, {cfg['finetune_epochs']} epochs of "
        f"fine-tuning (lr {cfg['finetune_lr']:g}). Accuracy: the golden integer model on the "
        f"359 test images, mean ± sample std over the seeds; Δ is quantized − float per seed "
        f"(one test image = 0.28 points). Hardware: the seed-{cfg['hw_seed']} model.",
        "",
        main_table(results),
        "",
        f"Command: `{results['command']}` — wall time {results['wall_s']:.0f} s "
        f"({results['wall_s'] / 60:.1f} min) with {cfg['jobs']} worker process(es), one torch "
        f"thread each ({results['environment']['cpus']} CPUs visible)"
        + (f", at commit {results['environment']['commit']}"
           + (" with local changes to compiler/hw/sim/boards" if results["environment"].get("dirty")
              else "") if results["environment"].get("commit") else "") + ".",
    ]
    t = targets(results)
    if t:
        lines += ["", "Quality targets:", "",
                  markdown_table(["target", "method", "measured", "met?"],
                                 [[n, f"`{k}`", v, "met" if ok else "**not met**"]
                                  for n, k, v, ok in t])]
    lines += ["", detail_tables(results)]
    if results["errors"]:
        lines += ["", "Failures:", ""]
        for e in results["errors"]:
            lines += [f"* `{e['task']}`: {e['error']}"]
    return "\n".join(lines) + "\n"


def write_results(results, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = render(results)
    (out_dir / "methods.md").write_text("# bench.methods\n\n" + md)
    text = json.dumps(results, indent=1, sort_keys=True, default=str) + "\n"
    (out_dir / "methods.json").write_text(text.replace(str(ROOT) + "/", ""))   # repo-relative
    return md


def write_docs(md, path=DOCS):
    """Put ``md`` between the generated-part markers of ``docs/results.md``."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Results\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no generated part (the markers {BEGIN!r} ... {END!r})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n\n" + md + "\n" + END + tail)


# --------------------------------------------------------------------------- command line

def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.methods",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 1 float + 1 fine-tuning epoch, hardware plan only (no Yosys)")
    p.add_argument("--methods", default=None, metavar="A,B,...",
                   help=f"rows to run (default: all: {','.join(SPEC_BY_KEY)})")
    p.add_argument("--seeds", default=None, metavar="S,S,...", help="seeds (default 0,1,2)")
    p.add_argument("--float-epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--hw", choices=("synth", "plan", "none"), default=None,
                   help="synth: build + Yosys LUTs (default); plan: the plan only; none")
    p.add_argument("--board", default=None, help="board to compile for (default arty_a7)")
    p.add_argument("--weights", choices=("auto", "hardwired", "rom"), default=None,
                   help="weight placement for the builds (default auto)")
    p.add_argument("--target-cycles", type=int, default=None)
    p.add_argument("--verify", type=int, default=None,
                   help="Verilator inputs per build (default 0: cycles from the plan)")
    p.add_argument("--build-timeout", type=float, default=None, metavar="S",
                   help="time limit of one hardware build (default 900 s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default 2)")
    p.add_argument("--out", type=Path, default=None, help="results directory")
    p.add_argument("--no-cache", action="store_true", help="retrain the float models")
    p.add_argument("--write-docs", action="store_true",
                   help="also write the tables into docs/results.md")
    p.add_argument("--internal-compile", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.internal_compile:                     # the child process of hardware_one()
        key, qpk, out, cfg_json = args.internal_compile
        rec = compile_one(key, qpk, _cfg_from_dict(json.loads(cfg_json)))
        Path(out).write_text(json.dumps(rec, default=str))
        return 0

    cfg = quick_config() if args.quick else Config()
    kw = {}
    if args.methods:
        kw["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.seeds:
        kw["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        if cfg.hw_seed not in kw["seeds"]:
            kw["hw_seed"] = kw["seeds"][0]
    for name in ("float_epochs", "finetune_epochs", "hw", "board", "weights", "target_cycles",
                 "verify", "build_timeout", "jobs", "out"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.no_cache:
        kw["cache"] = False
    cfg = replace(cfg, **kw)
    try:
        results = run(cfg)
    except ValueError as err:
        p.error(str(err))
    md = write_results(results, cfg.out)
    print()
    print(md)
    print(f"wrote {Path(cfg.out) / 'methods.md'} and methods.json")
    if args.write_docs:
        write_docs(md)
        print(f"wrote {DOCS}")
    print(f"total wall time {results['wall_s']:.0f} s ({results['wall_s'] / 60:.1f} min)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
