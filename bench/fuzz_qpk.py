"""Fuzz the ``.qpk`` reader with forged packages, and the build with what it accepts.

    python -m bench.fuzz_qpk --variants 100000 --seed 0            # reader only
    python -m bench.fuzz_qpk --variants 100000 --seed 0 --builds 40  # + CLI in subprocesses

Every variant (:func:`bench.qpk_forge.forge` of a seed package) goes through
:func:`compiler.qpk.from_bytes`; it must end in the reader's own ``QpkError``
or a graph, never in another exception. Accepted variants are also prepared
and planned in-process (:func:`compiler.passes.prepare`,
:func:`compiler.backends.dataflow.plan.make_plan`), which may refuse them only with a
``UserError``. A sample of the accepted (``--builds``) then runs
``python -m compiler inspect`` and
``python -m compiler build FILE --no-synth --verify 0 -o DIR`` in a child
process under an address-space cap and a timeout: each must exit 0, or exit 1
with one ``error: ...`` line and no traceback.

Prints a table: variants, refused by error field group, accepted, other
exceptions (must be 0), and the outcomes of the subprocess runs. Exit status 1
if any variant or run broke the contract.
"""

import argparse
import collections
import hashlib
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):                 # `python bench/fuzz_qpk.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import qpk_forge  # noqa: E402

__all__ = ["FuzzResult", "fuzz", "field_group", "run_cli", "main"]

ROOT = Path(__file__).resolve().parent.parent


def _known_fields():
    from compiler.ops import REGISTRY as OPS
    from compiler.qpk.model import METADATA_CHECKS
    names = {"dtype", "shape", "offset", "nbytes", "sha256", "format", "version", "producer",
             "model", "outputs", "nodes", "tensors", "metadata", "name", "op", "inputs",
             "attrs", "method", *METADATA_CHECKS, "weight_forms"}
    for spec in OPS.values():
        names |= set(spec.attrs) | set(spec.tensors)
    return names


def field_group(err):
    """A short class of a reader error: where it was found and which field."""
    where = err.where or "file"
    where = re.sub(r"^node '.*'$", "node", where)
    where = re.sub(r"^nodes\[\d+\]$", "node", where)
    where = re.sub(r"^tensor .*$", "tensor entry", where)
    m = re.match(r"(?:missing |unknown )?(attribute|field|tensor) '([^']{1,30})'", err.detail)
    if m:
        return f"{where}: {m[1]} {m[2] if m[2] in _known_fields() else '(unknown name)'}"
    for word in ("must be an object", "takes", "lie outside", "weight[", "multiplier[",
                 "codebook", "non-decreasing", "padding", "larger than", "must be a feature map",
                 "must be a vector", "pow2 activation levels", "ternary2", "accumulator limit",
                 "checksum mismatch", "truncated", "bad magic",
                 "not valid JSON", "nests", "unexpected bytes", "not a name", "input '",
                 "unsupported op", "inserted by the compiler", "output", "exactly one",
                 "does not lead", "used by two", "differs only in case", "belong to no node"):
        if word in err.detail:
            return f"{where}: {word.strip(chr(39)).strip()}"
    return f"{where}: other"


class FuzzResult:
    def __init__(self):
        self.variants = 0
        self.refused = collections.Counter()          # field group -> count
        self.accepted = 0
        self.planned = 0                              # accepted and planned in-process
        self.build_refused = collections.Counter()    # UserError class of prepare/plan
        self.other = collections.Counter()            # (exception, place) -> count
        self.examples = {}                            # (exception, place) -> (kind, message)
        self.accepted_blobs = {}                      # sha256 -> (forging operator, bytes)
        self.seconds = 0.0

    @property
    def ok(self):
        return not self.other


def _place(err):
    frame = traceback.extract_tb(err.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"


def _plan(graph):
    from compiler.backends.dataflow.cost import FABRICS
    from compiler.passes import prepare
    from compiler.backends.dataflow.plan import make_plan
    from boards import get_board
    board = get_board("arty_a7")
    make_plan(prepare(graph), FABRICS[board.family], budget=board.budget)


def fuzz(variants, seed=0, *, plan=None, keep=200, seeds=None, progress=None):
    """Forge ``variants`` packages; returns a :class:`FuzzResult`.

    ``plan``: how many accepted packages to prepare and plan in-process (None: all).
    """
    from compiler import qpk
    from compiler.errors import QpkError, UserError
    seeds = seeds or qpk_forge.seed_packages()
    names = sorted(seeds)
    rng = random.Random(seed)
    res = FuzzResult()
    t0 = time.monotonic()
    for i in range(variants):
        if progress and i and i % 10000 == 0:
            progress(f"{i:,} variants, {res.accepted:,} accepted, "
                     f"{sum(res.other.values())} other exceptions")
        kind, blob = qpk_forge.forge(seeds[rng.choice(names)], rng)
        res.variants += 1
        try:
            graph = qpk.from_bytes(blob, "forged.qpk")
        except QpkError as err:
            res.refused[field_group(err)] += 1
            continue
        except Exception as err:                     # the contract is broken: record it
            key = (type(err).__name__, "read: " + _place(err))
            res.other[key] += 1
            res.examples.setdefault(key, (kind, str(err)[:300]))
            continue
        res.accepted += 1
        digest = hashlib.sha256(blob).hexdigest()
        if len(res.accepted_blobs) < keep:
            res.accepted_blobs.setdefault(digest, (kind, blob))
        if plan is None or res.planned + sum(res.build_refused.values()) < plan:
            try:
                _plan(graph)
                res.planned += 1
            except UserError as err:
                res.build_refused[type(err).__name__] += 1
            except Exception as err:
                key = (type(err).__name__, "plan: " + _place(err))
                res.other[key] += 1
                res.examples.setdefault(key, (kind, str(err)[:300]))
    res.seconds = time.monotonic() - t0
    return res


def _limit_memory(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_cli(args, *, memory=8 << 30, timeout=300, cwd=None):
    """``python -m compiler ARGS`` in a child with an address-space cap: ``(verdict, detail)``.

    Verdicts: ``ok`` (exit 0), ``refused`` (exit 1, one ``error:`` line, no
    traceback), ``timeout``, ``broken`` (anything else).
    """
    try:
        proc = subprocess.run([sys.executable, "-m", "compiler", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd or ROOT,
                              preexec_fn=_limit_memory(memory))
    except subprocess.TimeoutExpired:
        return "timeout", f"more than {timeout} s"
    err = proc.stderr.strip()
    if proc.returncode == 0:
        return "ok", ""
    lines = err.splitlines()
    if (proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
            and "Traceback" not in err):
        return "refused", lines[0]
    return "broken", f"exit {proc.returncode}: {err[-600:]}"


def _spread(blobs, n):
    """Up to ``n`` of ``{digest: (kind, blob)}``, taking the forging operators in turn."""
    by_kind = collections.defaultdict(list)
    for digest, (kind, blob) in sorted(blobs.items()):
        by_kind[kind].append((digest, blob))
    picked = []
    while len(picked) < n and any(by_kind.values()):
        for kind in sorted(by_kind):
            if by_kind[kind] and len(picked) < n:
                picked.append(by_kind[kind].pop(0))
    return picked


def run_builds(blobs, n, *, memory=8 << 30, timeout=300, progress=None):
    """``inspect`` and ``build --no-synth --verify 0`` on up to ``n`` accepted packages,
    spread over the operators that forged them."""
    outcomes = collections.Counter()
    broken = []
    with tempfile.TemporaryDirectory(prefix="fuzz_qpk_") as tmp:
        for i, (digest, blob) in enumerate(_spread(blobs, n)):
            path = Path(tmp) / f"{digest[:16]}.qpk"
            path.write_bytes(blob)
            for cmd, args in (("inspect", ["inspect", str(path)]),
                              ("build", ["build", str(path), "--no-synth", "--verify", "0",
                                         "-o", str(Path(tmp) / f"out_{digest[:16]}")])):
                verdict, detail = run_cli(args, memory=memory, timeout=timeout)
                outcomes[(cmd, verdict)] += 1
                if verdict in ("broken", "timeout"):
                    keep = Path(tempfile.gettempdir()) / f"fuzz_qpk_{digest[:16]}.qpk"
                    keep.write_bytes(blob)
                    broken.append((cmd, str(keep), detail))
            if progress:
                progress(f"run {i + 1}/{min(n, len(blobs))}: "
                         + ", ".join(f"{c} {v}: {k}" for (c, v), k in sorted(outcomes.items())))
    return outcomes, broken


def render(res, outcomes=None, broken=()):
    from compiler.table import markdown_table
    rows = [["variants", f"{res.variants:,}"]]
    refused = sum(res.refused.values())
    rows.append(["refused (QpkError)", f"{refused:,}"])
    for group, n in sorted(res.refused.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append([f"  {group}", f"{n:,}"])
    rows.append(["accepted", f"{res.accepted:,}"])
    if res.planned or res.build_refused:
        rows.append(["  prepared and planned in-process", f"{res.planned:,}"])
        for cls, n in sorted(res.build_refused.items()):
            rows.append([f"  refused by the build ({cls})", f"{n:,}"])
    rows.append(["other exceptions", f"{sum(res.other.values()):,}"])
    for (cls, place), n in sorted(res.other.items()):
        rows.append([f"  {cls} at {place}", f"{n:,}"])
    if outcomes is not None:
        for (cmd, verdict), n in sorted(outcomes.items()):
            rows.append([f"subprocess `{cmd}`: {verdict}", f"{n:,}"])
    text = markdown_table(["", "count"], rows, "lr")
    text += f"\n\n{res.variants:,} variants in {res.seconds:.0f} s"
    for key, (kind, msg) in res.examples.items():
        text += f"\nexample of {key[0]} at {key[1]} (forged by {kind}): {msg}"
    for cmd, path, detail in broken:
        text += f"\n{cmd} broke on {path}: {detail}"
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fuzz_qpk", description=__doc__.split("\n")[0])
    p.add_argument("--variants", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--builds", type=int, default=0, metavar="N",
                   help="run inspect and build on N accepted packages in subprocesses")
    p.add_argument("--memory-mib", type=int, default=8192,
                   help="address-space cap of each subprocess (default: %(default)s MiB; "
                        "Yosys' WebAssembly runtime alone reserves 4 GiB of addresses)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds per subprocess (default: %(default)s)")
    p.add_argument("--no-plan", action="store_true",
                   help="do not prepare and plan accepted packages in-process")
    args = p.parse_args(argv)

    def say(text):
        print(text, file=sys.stderr, flush=True)

    res = fuzz(args.variants, args.seed, plan=0 if args.no_plan else None, progress=say)
    outcomes, broken = None, []
    if args.builds:
        outcomes, broken = run_builds(res.accepted_blobs, args.builds,
                                      memory=args.memory_mib << 20, timeout=args.timeout,
                                      progress=say)
    print(render(res, outcomes, broken))
    return 0 if res.ok and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
