"""Random configurations through the whole product path, each proven bit-exact in Verilator.

    python -m bench.random_configs --n 1000 --seed 0 --jobs 2    # seeds 0..999
    python -m bench.random_configs --only 17 -v                  # one seed, its build log

Each seed draws a small network and its build options (:mod:`bench.randnet`),
quantizes it with seeded random calibration inputs, saves the ``.qpk`` and
builds it without synthesis, verifying the Verilog in Verilator on random
inputs without and with random valid/ready stalls. A configuration *passes*
when the build is bit-exact, is *refused* when the compiler rejects it with a
user error (for example: it does not fit the board), and *fails* on any other
exception, a mismatch or a timeout. The table also compares the plan's cycles
per inference with Verilator's steady-state measurement.

Every configuration runs in its own child process (``--timeout`` seconds, then
the child and its Verilator and cocotb processes are killed) in its own
temporary directory. Results: one JSON record per seed in ``--out``
(default ``build/bench/random_configs.json``).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):                 # `python bench/random_configs.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["run_seeds", "render", "repro_command", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "bench" / "random_configs.json"
MARK = "@@randcfg-outcome "


def repro_command(seed, verify=None):
    """The command that reruns one seed alone, with its build log."""
    extra = f" --verify {verify}" if verify not in (None, _default_verify()) else ""
    return f"python -m bench.random_configs --only {seed}{extra} -v"


def _default_verify():
    from bench.randnet import VERIFY
    return VERIFY


def _child(seed, verify, keep_dir=None):
    """Run one seed in this process; print its outcome as one marked JSON line."""
    from bench import randnet
    cfg = randnet.draw(seed)
    with tempfile.TemporaryDirectory(prefix=f"randcfg{seed}-") as tmp:
        work = Path(keep_dir) if keep_dir else Path(tmp)
        outcome = randnet.run(cfg, work, verify=verify)
    print(MARK + json.dumps(outcome.as_dict()), flush=True)


def _run_child(seed, verify, timeout):
    """One seed in a child process (own session, so a timeout kills its whole tree)."""
    cmd = [sys.executable, "-m", "bench.random_configs", "--child", str(seed),
           "--verify", str(verify)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        stage = "timeout"
        reason = f"timeout: more than {timeout:.0f} s"
    else:
        for line in reversed(out.splitlines()):
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        stage = "crash"
        reason = f"the child process died (exit status {proc.returncode})"
    from bench.randnet import Outcome, draw
    rec = Outcome.of(draw(seed), status="failed", stage=stage, reason=reason,
                     detail=(out or "")[-4000:], seconds=round(time.monotonic() - t0, 1))
    return rec.as_dict()


def _print(text):
    print(text, flush=True)


def run_seeds(seeds, *, jobs=1, verify=None, timeout=600.0, log=_print):
    """Outcome records (dicts, in seed order) of ``seeds``, ``jobs`` at a time."""
    verify = _default_verify() if verify is None else verify
    seeds = list(seeds)
    done, lock, t0 = {}, threading.Lock(), time.monotonic()
    counts = Counter()

    def one(seed):
        rec = _run_child(seed, verify, timeout)
        with lock:
            done[seed] = rec
            counts[rec["status"]] += 1
            if log:
                cyc = (f" {rec['planned']}/{rec['measured']} cyc" if rec.get("planned")
                       else "")
                elapsed = time.monotonic() - t0
                eta = elapsed / len(done) * (len(seeds) - len(done)) / 60
                log(f"[{len(done):>{len(str(len(seeds)))}}/{len(seeds)}] seed {seed}: "
                    f"{rec['status']}{cyc} ({rec['seconds']:.0f} s) | passed "
                    f"{counts['passed']}, refused {counts['refused']}, failed "
                    f"{counts['failed']} | eta {eta:.0f} min")
                if rec["status"] != "passed":
                    log(f"      {rec['config']}")
                    log(f"      {rec['status']} ({rec['stage']}): {rec['reason']}")
        return rec

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(one, seeds))
    return [done[s] for s in seeds]


def _count_row(label, records):
    by = Counter(r["status"] for r in records)
    return f"| {label} | {len(records)} | {by['passed']} | {by['refused']} | {by['failed']} |"


def _reason_key(reason):
    """A refusal's reason without its numbers and names, for grouping."""
    text = re.sub(r"'[^']*'", "'…'", reason)
    text = re.sub(r"\d[\d,]*", "N", text)
    return text[:160]


def render(records, *, command=None, wall_s=None, verify=None):
    """The Markdown report of a run."""
    lines = ["# Random configurations", ""]
    if command:
        lines += [f"`{command}`" + (f" ({wall_s / 60:.1f} min)" if wall_s else ""), ""]
    lines += ["| configurations | tried | passed | refused | failed |", "|---|---|---|---|---|",
              _count_row("all", records)]
    for tag in ("method", "weights", "act_levels", "board"):
        values = sorted({r.get("tags", {}).get(tag) for r in records} - {None})
        for v in values:
            lines.append(_count_row(f"{tag} {v}", [r for r in records
                                                   if r.get("tags", {}).get(tag) == v]))
    lines.append("")
    built = [r for r in records if r.get("planned") and r.get("measured")]
    eq = [r for r in built if r["measured"] == r["planned"]]
    over = [r for r in built if r["measured"] > r["planned"]]
    under = [r for r in built if r["measured"] < r["planned"]]
    lines += ["## Cycles per inference: plan vs Verilator", "",
              "| measured vs planned | configurations |", "|---|---|",
              f"| equal | {len(eq)} |", f"| more than planned | {len(over)} |",
              f"| fewer than planned | {len(under)} |", ""]
    if over or under:
        lines += ["| seed | planned | measured | ratio | configuration |", "|---|---|---|---|---|"]
        for r in sorted(over + under, key=lambda r: -r["measured"] / r["planned"]):
            lines.append(f"| {r['seed']} | {r['planned']} | {r['measured']} | "
                         f"{r['measured'] / r['planned']:.2f} | {r['config']} |")
        lines.append("")
    refused = [r for r in records if r["status"] == "refused"]
    if refused:
        groups = Counter(_reason_key(r["reason"]) for r in refused)
        lines += ["## Refused, by reason", "", "| configurations | reason (first seed) |",
                  "|---|---|"]
        for key, n in groups.most_common():
            first = next(r for r in refused if _reason_key(r["reason"]) == key)
            lines.append(f"| {n} | {first['reason']} (seed {first['seed']}) |")
        lines.append("")
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        lines += ["## Failed", "", "| seed | stage | reason |", "|---|---|---|"]
        for r in failed:
            lines.append(f"| {r['seed']} | {r['stage']} | {r['reason']} |")
        first = failed[0]
        lines += ["", "First failure:", "", "```", first["config"],
                  f"{first['status']} ({first['stage']}): {first['reason']}", "",
                  "reproduce: " + repro_command(first["seed"], verify), "```", ""]
    return "\n".join(lines)


def _only(seed, verify, keep, verbose):
    from bench import randnet
    cfg = randnet.draw(seed)
    print(cfg, flush=True)
    with tempfile.TemporaryDirectory(prefix=f"randcfg{seed}-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        out = randnet.run(cfg, work, verify=verify, log=sys.stdout if verbose else None)
    cyc = f"; cycles per inference planned {out.planned}, measured {out.measured}" \
        if out.planned else ""
    print(f"{out.status}{' (' + out.stage + ')' if out.status != 'passed' else ''}"
          f"{': ' + out.reason if out.reason else ''}{cyc} ({out.seconds:.0f} s)")
    if out.status == "failed" and out.detail:
        print(out.detail)
    return 0 if out.status != "failed" else 1


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.random_configs",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="configurations (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="configurations at once (default: 1)")
    p.add_argument("--verify", type=int, default=None, metavar="N",
                   help="Verilator inputs per configuration (default: bench.randnet.VERIFY)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds per configuration before it counts as failed (default: 600)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON records to write")
    p.add_argument("--only", type=int, default=None, metavar="SEED",
                   help="run one seed in this process and print its outcome")
    p.add_argument("-v", "--verbose", action="store_true", help="with --only: the build log")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="with --only: keep the .qpk and the build in DIR")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    verify = _default_verify() if args.verify is None else args.verify
    if args.child is not None:
        _child(args.child, verify)
        return 0
    if args.only is not None:
        return _only(args.only, verify, args.keep, args.verbose)
    command = "python -m bench.random_configs " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    t0 = time.monotonic()
    records = run_seeds(range(args.seed, args.seed + args.n), jobs=args.jobs, verify=verify,
                        timeout=args.timeout)
    wall = time.monotonic() - t0
    md = render(records, command=command.strip(), wall_s=wall, verify=verify)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command.strip(), "wall_s": round(wall, 1),
                                    "records": records}, indent=1) + "\n")
    print()
    print(md)
    print(f"records: {args.out}")
    return 1 if any(r["status"] == "failed" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
