"""Random small valid networks and build options, drawn from one integer seed.

:func:`draw` turns a seed into a :class:`Config`: a float network (op chains and
residual blocks, max pools, a global average pool or a flatten, a dense layer),
the quantization (method, weight and activation bits, activation levels) and the
build options (board, weight placement, ``--target-cycles``, ``--fold``). The
draw is a pure function of the seed: the same seed gives the same network, the
same weights and batch norm statistics (:meth:`Config.model`), the same
calibration inputs (:meth:`Config.calibration`) and the same build options.
``str(config)`` is a one-line summary.

:func:`run` takes a configuration through the product path: quantize
(:func:`compiler.frontend.quantize`), save the ``.qpk``, build it with
:func:`compiler.driver.build.build` (no synthesis, Verilator verification with and
without random stalls). It returns an :class:`Outcome`: ``passed`` (bit-exact),
``refused`` (the compiler said no with a user error: does not fit, ...) or
``failed`` (any other exception, or a mismatch), with the planned and measured
cycles per inference. ``python -m bench.random_configs`` runs many.

Every layer is small on purpose (1-8 channels, 4-16 pixels a side, at most a
few thousand weights) so that each Verilator build takes seconds.
"""

import random
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Conv", "Pool", "Res", "Config", "draw", "Outcome", "run", "METHODS", "BOARDS"]

#: weight methods and their share of the draws
METHODS = (("ternary", 3), ("pow2", 3), ("int", 3), ("lat2", 2), ("kq", 2))
BOARDS = (("ulx3s", 4), ("arty_a7", 3), ("arty_a7_100", 1), ("icebreaker", 2))
PLACEMENTS = (("auto", 4), ("hardwired", 3), ("rom", 3))
MAX_WEIGHTS = 2500          # weights of all MACs together
MAX_FLATTEN = 96            # features into a dense layer after a flatten
MAX_SIDE = 16               # largest feature map side (padding may grow a map)
CALIB = 32                  # calibration inputs
VERIFY = 8                  # Verilator inputs (without and with stalls)


@dataclass(frozen=True)
class Conv:
    """conv(k, stride, pad) -> [bn] -> [relu]; a bias when there is no batch norm."""
    name: str
    out: int
    k: int
    stride: int
    pad: int
    bn: bool
    relu: bool

    def __str__(self):
        tail = (" bn" if self.bn else " bias") + (" relu" if self.relu else "")
        return f"{self.name}=conv{self.k}/s{self.stride}p{self.pad}->{self.out}{tail}"


@dataclass(frozen=True)
class Pool:
    name: str
    k: int
    stride: int

    def __str__(self):
        return f"{self.name}=max{self.k}/s{self.stride}"


@dataclass(frozen=True)
class Res:
    """conv(k1, s, p1)-bn-relu-conv(k2, 1, p2)-bn + shortcut, relu.

    The shortcut is the identity, or (``proj``) a 1x1 conv of stride ``s`` with
    batch norm when the block changes the shape. Convs are named ``{name}a``,
    ``{name}b`` and ``{name}p``.
    """
    name: str
    out: int
    k1: int
    stride: int
    p1: int
    k2: int
    p2: int
    proj: bool

    def __str__(self):
        sc = "proj" if self.proj else "id"
        return (f"{self.name}=res[{self.k1}/s{self.stride}p{self.p1},{self.k2}p{self.p2}]"
                f"->{self.out} {sc}")


@dataclass(frozen=True)
class Config:
    seed: int
    in_ch: int
    side: int
    layers: tuple             # Conv / Pool / Res
    head: str                 # "gap" or "flatten"
    hidden: int               # units of a hidden dense-bn-relu before the classifier, or 0
    classes: int
    final_bn: bool            # batch norm after the classifier (folded into its weights)
    method: str
    weight_bits: int
    method_options: tuple     # (name, value) pairs
    act_bits: int
    act_levels: str
    input_bits: int
    board: str
    weights: str
    target_cycles: int = None
    fold: tuple = ()          # (layer, pe, simd)
    macs: tuple = field(default=(), compare=False)   # (name, out, in, kernel) of every MAC

    def __str__(self):
        net = " | ".join([f"in {self.in_ch}x{self.side}x{self.side}"]
                         + [str(x) for x in self.layers]
                         + [self.head]
                         + ([f"fc{self.hidden} bn relu"] if self.hidden else [])
                         + [f"fc->{self.classes}" + (" bn" if self.final_bn else "")])
        opts = "".join(f" {k}={v}" for k, v in self.method_options if k != "seed")
        bits = "" if self.weight_bits is None else f" w{self.weight_bits}"
        act = f"a{self.act_bits}{'pow2' if self.act_levels == 'pow2' else ''}"
        quant = f"{self.method}{bits}{opts} {act} i{self.input_bits}"
        build = f"{self.board} {self.weights}"
        if self.target_cycles:
            build += f" tc={self.target_cycles}"
        if self.fold:
            build += " fold " + ",".join(f"{n}={pe}x{simd}" for n, pe, simd in self.fold)
        return f"seed {self.seed}: {net} || {quant} || {build}"

    # -- what the runner needs ----------------------------------------------------------

    def model(self):
        """The float ``nn.Module`` (eval mode), its weights and batch norms drawn from the seed."""
        return RandNet(self)

    def calibration(self, n=CALIB):
        """``n`` float inputs ``(n, C, H, W)``, drawn from the seed."""
        gen = torch.Generator().manual_seed(self.seed * 7919 + 1)
        scale = 0.5 + 2.0 * float(torch.rand((), generator=gen))
        return torch.randn((n, self.in_ch, self.side, self.side), generator=gen) * scale

    def build_options(self, out, verify=VERIFY):
        from compiler.driver.build import BuildOptions
        return BuildOptions(board=self.board, out=out, weights=self.weights,
                            target_cycles=self.target_cycles,
                            fold={n: (pe, simd) for n, pe, simd in self.fold},
                            verify=verify, seed=self.seed, synth=False)

    def quantize_kwargs(self):
        return dict(weights=self.method, weight_bits=self.weight_bits,
                    act_bits=self.act_bits, act_levels=self.act_levels,
                    input_bits=self.input_bits,
                    method_options=dict(self.method_options) or None,
                    name=f"rand{self.seed}")


# --- the draw -----------------------------------------------------------------------------

def _pick(rng, weighted):
    items, weights = zip(*weighted)
    return rng.choices(items, weights=weights)[0]


def _out_side(side, k, s, p):
    return (side + 2 * p - k) // s + 1


def _draw_conv(rng, name, c, side):
    """A conv whose kernel fits the map (k <= side) and whose output is 1..MAX_SIDE."""
    out = rng.randint(1, 8)
    options = [(k, s, p) for k in range(1, min(7, side) + 1) for s in (1, 2, 3)
               for p in range(k) if 1 <= _out_side(side, k, s, p) <= MAX_SIDE]
    k, s, p = rng.choice(options)
    return Conv(name, out, k, s, p, bn=rng.random() < 0.75, relu=rng.random() < 0.85), \
        out, _out_side(side, k, s, p)


def _draw_res(rng, name, c, side):
    """A residual block; None if no kernels fit."""
    s = rng.choice((1, 1, 2, 3)) if side > 1 else 1
    out = c if s == 1 and rng.random() < 0.6 else rng.randint(1, 8)
    target = (side - 1) // s + 1              # what a 1x1 stride-s projection gives
    combos = []
    for k1 in range(1, min(7, side) + 1):
        for p1 in range(k1):
            h1 = _out_side(side, k1, s, p1)
            if not 1 <= h1 <= MAX_SIDE:
                continue
            for k2 in range(1, min(7, h1) + 1):
                for p2 in range(k2):
                    if _out_side(h1, k2, 1, p2) == target:
                        combos.append((k1, p1, k2, p2))
    if not combos:
        return None
    k1, p1, k2, p2 = rng.choice(combos)
    proj = s != 1 or out != c
    return Res(name, out, k1, s, p1, k2, p2, proj), out, target


def _mac_dims(layers, in_ch, side, head, hidden, classes):
    """``(name, outputs, inputs)`` of every MAC as the torch model has them; and the weights."""
    macs, c, h = [], in_ch, side
    for x in layers:
        if isinstance(x, Conv):
            macs.append((x.name, x.out, c, x.k))
            c, h = x.out, _out_side(h, x.k, x.stride, x.pad)
        elif isinstance(x, Pool):
            h = _out_side(h, x.k, x.stride, 0)
        else:
            h1 = _out_side(h, x.k1, x.stride, x.p1)
            macs.append((x.name + "a", x.out, c, x.k1))
            macs.append((x.name + "b", x.out, x.out, x.k2))
            if x.proj:
                macs.append((x.name + "p", x.out, c, 1))
            c, h = x.out, _out_side(h1, x.k2, 1, x.p2)
    feats = c if head == "gap" else c * h * h
    if hidden:
        macs.append(("fc1", hidden, feats, 0))
        feats = hidden
    macs.append(("fc", classes, feats, 0))
    return macs, c, h


def _fold_dims(method, name, o, c, k):
    """``(n, k)`` of the stage the name ``--fold name`` picks, per weight form.

    ``None`` for the inputs when the form decides them at quantization time
    (a KQ convolution's partial maps): then only SIMD 1 is certain to divide.
    """
    fan_in = c * k * k if k else c
    if method == "lat2":          # the named stage is the 1x1 MAC P*S+ - N*S-
        return o, 2 * o
    if method == "kq" and k:      # codebook form (partial maps) or plain: O outputs both
        return o, None
    return o, fan_in


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def draw(seed):
    """The :class:`Config` of ``seed`` (a pure function of it)."""
    rng = random.Random(f"shiftadd-randnet-{seed}")
    while True:
        cfg = _draw_once(rng, seed)
        if cfg is not None:
            return cfg


def _draw_once(rng, seed):
    in_ch, side = rng.randint(1, 3), rng.randint(4, 16)
    layers, c, h = [], in_ch, side
    for i in range(1, rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 4)) + 1):
        kind = _pick(rng, (("conv", 5), ("pool", 2 if h >= 2 else 0), ("res", 3)))
        if kind == "pool":
            k = rng.randint(2, min(3, h))
            s = rng.randint(1, k)
            layers.append(Pool(f"p{i}", k, s))
            h = _out_side(h, k, s, 0)
            continue
        got = _draw_res(rng, f"r{i}", c, h) if kind == "res" else None
        if got is None:
            got = _draw_conv(rng, f"c{i}", c, h)
        x, c, h = got
        layers.append(x)
    head = "flatten" if c * h * h <= MAX_FLATTEN and rng.random() < 0.4 else "gap"
    hidden = rng.randint(2, 8) if rng.random() < 0.2 else 0
    classes = rng.randint(2, 8)
    final_bn = rng.random() < 0.2
    macs, _, _ = _mac_dims(layers, in_ch, side, head, hidden, classes)
    if sum(o * ci * (k * k if k else 1) for _, o, ci, k in macs) > MAX_WEIGHTS:
        return None

    method = _pick(rng, METHODS)
    options = ()
    if method == "ternary":
        wbits = None
    elif method in ("pow2", "int"):
        wbits = rng.randint(2, 5)
    elif method == "lat2":
        wbits = rng.randint(3, 5)
    else:                                     # kq: index bits, codebook entry bits, dense bits
        wbits = rng.randint(1, 4)
        options = (("entry_bits", rng.randint(3, 6)), ("dense_bits", rng.randint(2, 5)),
                   ("seed", seed))
    if rng.random() < 0.25:
        # An identity shortcut next to pow2 codes needs 2**act_bits + 1 bits: within the
        # 12 of compiler.limits up to 3-bit codes.
        act_levels, act_bits = "pow2", rng.randint(2, 3)
    else:
        act_levels, act_bits = "linear", rng.randint(2, 5)
    input_bits = 8 if rng.random() < 0.7 else rng.randint(2, 7)

    board = _pick(rng, BOARDS)
    weights = _pick(rng, PLACEMENTS)
    target = None
    if weights != "hardwired" and rng.random() < 0.3:
        target = max(1, int(side * side * rng.choice((0.5, 1, 1.5, 2, 3, 4, 8))))
    fold = []
    if rng.random() < 0.35:
        for name, o, ci, k in rng.sample(macs, min(len(macs), rng.randint(1, 2))):
            n, kk = _fold_dims(method, name, o, ci, k)
            pe = rng.choice(_divisors(n))
            simd = 1 if kk is None else rng.choice(_divisors(kk))
            fold.append((name, pe, simd))
    return Config(seed, in_ch, side, tuple(layers), head, hidden, classes, final_bn, method,
                  wbits, options, act_bits, act_levels, input_bits, board, weights, target,
                  tuple(sorted(fold)), macs=tuple((n, o, ci, k) for n, o, ci, k in macs))


# --- the float model -----------------------------------------------------------------------

def _bn(n, gen, dim=2):
    """A batch norm with drawn statistics and affine, so the requantizers are not trivial."""
    bn = nn.BatchNorm2d(n) if dim == 2 else nn.BatchNorm1d(n)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
        bn.running_var.copy_(u(0.2, 3.0))
        sign = torch.where(torch.rand(n, generator=gen) < 0.1, -1.0, 1.0)
        bn.weight.copy_(u(0.3, 2.0) * sign)
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return bn


class RandNet(nn.Module):
    """The float network of a :class:`Config` (traced by torch.fx: the loops unroll)."""

    def __init__(self, cfg):
        super().__init__()
        gen = torch.Generator().manual_seed(cfg.seed * 104729 + 3)
        c = cfg.in_ch

        def conv(name, cin, cout, k, s, p, bias):
            m = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
            _init(m, gen)
            self.add_module(name, m)

        for x in cfg.layers:
            if isinstance(x, Conv):
                conv(x.name, c, x.out, x.k, x.stride, x.pad, not x.bn)
                if x.bn:
                    self.add_module(x.name + "_bn", _bn(x.out, gen))
                c = x.out
            elif isinstance(x, Pool):
                self.add_module(x.name, nn.MaxPool2d(x.k, x.stride))
            else:
                conv(x.name + "a", c, x.out, x.k1, x.stride, x.p1, False)
                self.add_module(x.name + "a_bn", _bn(x.out, gen))
                conv(x.name + "b", x.out, x.out, x.k2, 1, x.p2, False)
                self.add_module(x.name + "b_bn", _bn(x.out, gen))
                if x.proj:
                    conv(x.name + "p", c, x.out, 1, x.stride, 0, False)
                    self.add_module(x.name + "p_bn", _bn(x.out, gen))
                c = x.out
        self.layers = cfg.layers
        self.head = cfg.head
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        feats = cfg.macs[-2 if cfg.hidden else -1][2]
        if cfg.hidden:
            self.fc1 = nn.Linear(feats, cfg.hidden, bias=False)
            _init(self.fc1, gen)
            self.fc1_bn = _bn(cfg.hidden, gen, dim=1)
            feats = cfg.hidden
        self.hidden = cfg.hidden
        self.fc = nn.Linear(feats, cfg.classes)
        _init(self.fc, gen)
        self.fc_bn = _bn(cfg.classes, gen, dim=1) if cfg.final_bn else None
        self.eval()

    def forward(self, x):
        m = self.get_submodule
        for layer in self.layers:
            if isinstance(layer, Conv):
                x = m(layer.name)(x)
                if layer.bn:
                    x = m(layer.name + "_bn")(x)
                if layer.relu:
                    x = torch.relu(x)
            elif isinstance(layer, Pool):
                x = m(layer.name)(x)
            else:
                y = torch.relu(m(layer.name + "a_bn")(m(layer.name + "a")(x)))
                y = m(layer.name + "b_bn")(m(layer.name + "b")(y))
                if layer.proj:
                    x = m(layer.name + "p_bn")(m(layer.name + "p")(x))
                x = torch.relu(y + x)
        if self.head == "gap":
            x = self.gap(x)
        x = self.flatten(x)
        if self.hidden:
            x = torch.relu(self.fc1_bn(self.fc1(x)))
        x = self.fc(x)
        if self.fc_bn is not None:
            x = self.fc_bn(x)
        return x


def _init(m, gen):
    """Kaiming-uniform-like weights (and bias) from the seed's generator."""
    fan_in = m.weight[0].numel()
    bound = (3.0 / fan_in) ** 0.5
    with torch.no_grad():
        m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
        if m.bias is not None:
            m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)


# --- the run ------------------------------------------------------------------------------

@dataclass
class Outcome:
    seed: int
    config: str                      # the one-line summary
    status: str                      # "passed", "refused", "failed"
    reason: str = ""                 # refusal message or failure summary
    detail: str = ""                 # traceback or build log tail for failures
    planned: int = None              # plan's cycles per inference
    measured: int = None             # Verilator's steady-state cycles per inference
    stage: str = ""                  # where it stopped: quantize / build / verify
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)   # quantize_s and the build's own timings
    tags: dict = field(default_factory=dict)      # method, board, ... for the tables

    @classmethod
    def of(cls, cfg, **kw):
        """An outcome of ``cfg`` (failed until told otherwise)."""
        tags = {"method": cfg.method, "board": cfg.board, "weights": cfg.weights,
                "act_levels": cfg.act_levels}
        return cls(cfg.seed, str(cfg), kw.pop("status", "failed"), tags=tags, **kw)

    def as_dict(self):
        return dict(self.__dict__)


def run(cfg, workdir, *, verify=VERIFY, log=None):
    """Quantize and build ``cfg`` in ``workdir``; an :class:`Outcome`. Never raises."""
    import io
    import os
    import time
    import traceback
    from pathlib import Path

    from compiler.errors import UserError

    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = Outcome.of(cfg)
    buf = io.StringIO()
    stream = log or buf
    old_cwd = os.getcwd()
    try:
        out.stage = "quantize"
        from compiler.frontend import quantize
        from compiler.frontend.train import deterministic
        with deterministic(cfg.seed):
            result = quantize(cfg.model(), cfg.calibration(), **cfg.quantize_kwargs())
        out.timings["quantize_s"] = round(time.monotonic() - t0, 1)
        qpk_path = workdir / f"rand{cfg.seed}.qpk"
        result.save(qpk_path)
        out.stage = "build"
        from compiler.driver.build import build
        # The build keeps its Verilator objects under ./build: keep them in the work dir.
        os.chdir(workdir)
        res = build(qpk_path, cfg.build_options(workdir / "out", verify), stream=stream)
        out.planned = res.plan.cycles
        out.timings.update({k: round(v, 1) for k, v in res.timings.items()})
        v = res.verification or {}
        out.measured = v.get("cycles_per_inference")
        out.stage = "verify"
        if res.ok:
            out.status = "passed"
        else:
            out.reason = f"mismatch: {v.get('mismatches')} output values differ"
            out.detail = buf.getvalue()[-4000:]
    except UserError as err:
        out.status, out.reason = "refused", str(err).splitlines()[0]
    except Exception as err:                    # noqa: BLE001 - any other exception fails
        out.reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        out.detail = traceback.format_exc()[-6000:]
    finally:
        os.chdir(old_cwd)
        out.seconds = round(time.monotonic() - t0, 1)
    return out
