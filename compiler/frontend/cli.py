"""``python -m compiler quantize MODEL -o out.qpk``: the command's arguments and its run.

MODEL is a zoo model name (trained here on its dataset, e.g. ``digits_cnn`` on
the digits) or ``path/to/file.py:factory``, a function in a user's Python file
returning an ``nn.Module`` (trained or not). A user model needs ``--data
file.npz``: an array ``x`` of float inputs ``(N, ...)`` for calibration and,
optionally, integer labels ``y`` for accuracy and fine-tuning. The ``.npz`` is
read with ``allow_pickle=False``; nothing is ever unpickled (no ``torch.load``):
a factory that wants trained weights loads them itself.
"""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import QuantizeError
from ..table import markdown_table

# torch is imported inside the functions that need it: compiler/cli.py calls
# add_arguments() for every command, and only `quantize` should pay for torch.

__all__ = ["add_arguments", "run", "load_factory", "load_npz", "METHODS"]

ZOO_FINETUNE_EPOCHS = 15
#: the --method choices: the canonical names of compiler.frontend.methods (a test checks)
METHODS = ("ternary", "pow2", "int", "lat", "lat2", "laq", "laq-log", "pow2a", "inq", "slq",
           "mlq", "kq", "adaptive")
#: methods taking --lat-solver (the loss-aware ones)
LOSS_AWARE = ("lat", "lat2", "laq", "laq-log")


def _out_file(text):
    import argparse
    if not text.strip():
        raise argparse.ArgumentTypeError("the output file name must not be empty")
    return Path(text)


def add_arguments(parser):
    """Add the ``quantize`` command's arguments to an argparse parser."""
    parser.add_argument("model", metavar="MODEL",
                        help="a zoo model to train (digits_cnn) or path/to/file.py:factory")
    parser.add_argument("-o", "--out", type=_out_file, required=True, help="the .qpk to write")
    parser.add_argument("--method", choices=METHODS, default="ternary",
                        help="weight quantization: ternary (TWN), pow2 (INQ levels, one shot), "
                             "int (uniform), lat / lat2 (loss-aware ternary, one scale / separate "
                             "+/- scales), laq / laq-log (loss-aware m-bit, linear / power-of-two "
                             "levels), pow2a (pow2 weights and power-of-two activations), inq "
                             "(incremental INQ), slq / mlq (Xu et al.: clustering, partition, "
                             "retraining), kq (kernel codebooks), adaptive (per-layer bits) "
                             "(default: %(default)s)")
    parser.add_argument("--weight-bits", type=int, default=None, metavar="N",
                        help="bits per weight (pow2, int; kq: index bits; default 4)")
    parser.add_argument("--levels", type=int, default=None, metavar="N",
                        help="pow2, pow2a, laq-log: number of non-zero power-of-two "
                             "magnitudes")
    parser.add_argument("--act-levels", choices=("linear", "pow2"), default=None,
                        help="activation levels after each ReLU: linear, or pow2 (code c "
                             "stands for 2**(c-1)) (default: pow2 for pow2a, else linear)")
    g = parser.add_argument_group("method options (see docs/quantization.md)")
    g.add_argument("--lat-solver", choices=("exact", "approx"), default=None,
                   help="lat, lat2, laq, laq-log: exact (global optimum) or approx "
                        "(the paper's alternating rule) (default: exact for lat/lat2, "
                        "approx for laq/laq-log)")
    g.add_argument("--fractions", default=None, metavar="F,F,...",
                   help="inq/slq/mlq: quantized fraction after each partition step "
                        "(default inq/slq 0.5,0.75,0.875,1; mlq 0.5,1)")
    g.add_argument("--layer-fractions", default=None, metavar="F,F,...",
                   help="mlq: fraction of the layers quantized after each depth step (0.5,1)")
    g.add_argument("--partition", choices=("loss", "error"), default=None,
                   help="slq/mlq: rank clusters by loss increase (default) or squared error")
    g.add_argument("--snap", choices=("pow2", "csd2"), default=None,
                   help="slq/mlq: snap final centroids to powers of two (default) or to "
                        "two-term signed-digit values")
    g.add_argument("--snap-bits", type=int, default=None, metavar="N",
                   help="slq/mlq with --snap csd2: int bits of the snapped values")
    g.add_argument("--entry-bits", type=int, default=None, metavar="N",
                   help="kq: bits of the codebook entries (default 6)")
    g.add_argument("--dense-bits", type=int, default=None, metavar="N",
                   help="kq: pow2 bits of dense layers (default 4)")
    g.add_argument("--size-budget-bits", type=float, default=None, metavar="B",
                   help="adaptive: budget per weight: bits (size) or adders (default 4.0)")
    g.add_argument("--budget-kind", choices=("size", "adders"), default=None,
                   help="adaptive: the budget counts model size (default) or CSD adders")
    parser.add_argument("--act-bits", type=int, default=4, metavar="N",
                        help="activation bits (default: %(default)s)")
    parser.add_argument("--input-bits", type=int, default=8, metavar="N",
                        help="input bits (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, metavar="N",
                        help="float training epochs before quantizing (zoo models: 30; "
                             "a user model with labels: 0)")
    parser.add_argument("--finetune-epochs", type=int, default=None, metavar="N",
                        help=f"quantization-aware fine-tuning epochs (zoo models: "
                             f"{ZOO_FINETUNE_EPOCHS}; user models: 0; needs labels)")
    parser.add_argument("--data", type=Path, default=None, metavar="FILE.npz",
                        help="user models: inputs 'x' (N, ...) and optional labels 'y'")
    parser.add_argument("--calib", type=int, default=None, metavar="N",
                        help="calibration samples (default: 512; 32 for resnet18 and "
                             "resnet18_cifar, which calibrate on synthetic images)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="FILE",
                        help="resnet18 / resnet18_cifar: trained weights, a .safetensors file "
                             "or a .pth state_dict (torchvision's names; read without "
                             "unpickling code: torch.load(weights_only=True))")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")


def load_factory(spec):
    """Call ``factory`` from ``path/to/file.py:factory`` and return its ``nn.Module``."""
    from torch import nn
    path, sep, func = str(spec).rpartition(":")
    if not sep or not path or not func:
        raise QuantizeError(f"model {spec!r}: expected a zoo model name or path/to/file.py:factory")
    file = Path(path)
    if not file.is_file():
        raise QuantizeError(f"{file}: no such file")
    modname = f"_shiftadd_user_model_{abs(hash(str(file.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(modname, file)
    if module_spec is None:
        raise QuantizeError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[modname] = module            # so that dataclasses etc. in the file work
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise QuantizeError(f"{file}: importing it failed: {type(err).__name__}: {err}") from None
    factory = getattr(module, func, None)
    if not callable(factory):
        raise QuantizeError(f"{file}: no function '{func}'")
    try:
        model = factory()
    except Exception as err:
        raise QuantizeError(f"{file}:{func}(): {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise QuantizeError(f"{file}:{func}() returned {type(model).__name__}, not a "
                            "torch.nn.Module")
    return model


def load_npz(path):
    """A :class:`~.data.Dataset` from an ``.npz``: ``x`` and optional ``y``; never unpickles."""
    import torch

    from ..driver.inputs import check_labels, read_npz
    from .data import Dataset
    x, y = read_npz(path, QuantizeError)        # numeric and non-empty
    if x.ndim < 2:
        raise QuantizeError(f"{path}: 'x' must be a non-empty numeric array (N, ...), got "
                            f"{x.dtype} {list(x.shape)}")
    check_labels(path, y, len(x), QuantizeError)
    return Dataset(torch.from_numpy(x.astype(np.float32)),
                   torch.from_numpy(y.astype(np.int64)) if y is not None else None)


def _zoo_model(args):
    from ..zoo.models import DATASETS, FACTORIES, INPUT_SHAPES
    if args.model not in FACTORIES:
        return None
    if args.data is not None:
        what = ("calibrates on its own synthetic images" if DATASETS[args.model] == "synthetic"
                else "trains on its own dataset")
        raise QuantizeError(f"zoo model '{args.model}' {what}; drop --data")
    if DATASETS[args.model] == "synthetic":
        return _pretrained_zoo_model(args, FACTORIES[args.model], INPUT_SHAPES[args.model])
    from ..zoo.build import train_float
    epochs = 30 if args.epochs is None else args.epochs
    model, train, test = train_float(args.model, epochs=epochs, seed=args.seed)
    finetune = ZOO_FINETUNE_EPOCHS if args.finetune_epochs is None else args.finetune_epochs
    return model, train, test, finetune, args.model


def _pretrained_zoo_model(args, factory, shape):
    """A model without a dataset here: a checkpoint's weights or a seeded initialisation,
    calibrated on seeded synthetic images (docs/quantization.md, "ResNet-18")."""
    import torch

    from ..zoo.checkpoint import load_checkpoint
    from .data import synthetic
    if args.epochs or args.finetune_epochs:
        raise QuantizeError(f"zoo model '{args.model}' has no dataset here to train on; "
                            "give --checkpoint with trained weights instead")
    torch.manual_seed(args.seed)
    model = factory()
    if args.checkpoint is not None:
        load_checkpoint(model, args.checkpoint)
    model.eval()
    calib = synthetic(shape, args.calib, seed=args.seed)
    return model, calib, calib, 0, args.model


def _user_model(args):
    from .train import deterministic, fit
    model = load_factory(args.model)
    if args.data is None:
        raise QuantizeError(f"model {args.model}: a model from a file needs --data FILE.npz "
                            "with calibration inputs 'x' (and optionally labels 'y')")
    data = load_npz(args.data)
    if (args.epochs or args.finetune_epochs) and data.y is None:
        raise QuantizeError(f"{args.data}: training needs labels 'y'")
    if args.epochs:
        with deterministic(args.seed):
            fit(model, data.x, data.y, epochs=args.epochs, seed=args.seed, label="float")
    name = Path(args.model.rpartition(":")[0]).stem
    # No held-out split is known for user data: accuracy is measured on all of it.
    return model, data, data, args.finetune_epochs or 0, name


def _fractions(text, flag):
    if text is None:
        return None
    try:
        return tuple(float(f) for f in text.split(","))
    except ValueError:
        raise QuantizeError(f"{flag}: expected comma-separated fractions, got {text!r}") from None


def method_options(args):
    """The ``method_options`` dict of the method-specific flags that were given."""
    opts = {"fractions": _fractions(getattr(args, "fractions", None), "--fractions"),
            "layer_fractions": _fractions(getattr(args, "layer_fractions", None),
                                          "--layer-fractions"),
            "partition": getattr(args, "partition", None), "snap": getattr(args, "snap", None),
            "snap_bits": getattr(args, "snap_bits", None),
            "entry_bits": getattr(args, "entry_bits", None),
            "dense_bits": getattr(args, "dense_bits", None),
            "budget": getattr(args, "size_budget_bits", None),
            "budget_kind": getattr(args, "budget_kind", None)}
    return {k: v for k, v in opts.items() if v is not None}


def check_output(path):
    """Refuse an output file that cannot be written, before hours of training."""
    path = Path(path)
    if not str(path).strip():
        raise QuantizeError("-o: the output file name is empty")
    if path.is_dir():
        raise QuantizeError(f"{path}: is a directory; give a file name such as "
                            f"{path / 'model.qpk'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise QuantizeError(f"{path}: cannot be written: {parent} is a file")
            try:        # the only sure test: a file of our own, gone when closed
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError:
                raise QuantizeError(f"{path}: cannot be written: {parent} is not "
                                    "writable") from None
            break
    if path.exists() and not os.access(path, os.W_OK):
        raise QuantizeError(f"{path}: exists and is not writable")


def save_output(result, path):
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path)
    except OSError as err:
        raise QuantizeError(f"{path}: cannot write: {err.strerror or err}") from None


def run(args):
    """Run the ``quantize`` command; returns the exit status."""
    from .pipeline import quantize_and_evaluate, summary_rows
    from .train import deterministic
    if args.act_bits is None:
        pow2 = (getattr(args, "act_levels", None) or
                ("pow2" if args.method == "pow2a" else "linear")) == "pow2"
        args.act_bits = 3 if pow2 else 4
    if args.calib is None:
        from ..zoo.models import DATASETS
        args.calib = 32 if DATASETS.get(args.model) == "synthetic" else 512
    if args.calib < 1:
        raise QuantizeError(f"--calib must be >= 1, not {args.calib}")
    if getattr(args, "checkpoint", None) is not None:
        from ..zoo.models import DATASETS
        if DATASETS.get(args.model) != "synthetic":
            raise QuantizeError("--checkpoint applies to resnet18 and resnet18_cifar")
    check_output(args.out)
    options = {}
    if getattr(args, "lat_solver", None) is not None:
        if args.method not in LOSS_AWARE:
            raise QuantizeError(f"--lat-solver applies to the loss-aware methods "
                                f"({', '.join(LOSS_AWARE)}), not --method {args.method}")
        options["solver"] = args.lat_solver
    found = _zoo_model(args) if ":" not in args.model else None
    if found is None and ":" not in args.model:
        from ..zoo.models import FACTORIES
        raise QuantizeError(f"unknown model {args.model!r}: expected a zoo model "
                            f"({', '.join(sorted(FACTORIES))}) or path/to/file.py:factory")
    model, train, test, finetune, name = found or _user_model(args)
    with deterministic(args.seed):
        outcome = quantize_and_evaluate(
            model, train.x[:args.calib], train=train, test=test, weights=args.method,
            weight_bits=args.weight_bits, levels=args.levels, act_bits=args.act_bits,
            input_bits=args.input_bits, finetune_epochs=finetune, seed=args.seed, name=name,
            metadata={"source": str(args.model)},
            method_options={**method_options(args), **options} or None,
            act_levels=getattr(args, "act_levels", None))
    save_output(outcome.result, args.out)
    print(markdown_table(["quantity", "value"], summary_rows(outcome)))
    print(f"wrote {args.out}")
    return 0
