"""Build the zoo's ``.qpk`` files: ``python -m compiler.zoo.build [--out DIR]``.

For each recipe: train the float model on its dataset, quantize it (calibration
on training images, a short QAT fine-tune), check that the golden integer model
and the fake-quant model agree exactly on the test images, print float and
quantized test accuracy, and write the ``.qpk``. Every run on one machine writes
the same bytes: training runs in :func:`compiler.frontend.train.deterministic`
and nothing time- or path-dependent goes into the files.
"""

import argparse
import sys
from pathlib import Path

from ..frontend.data import digits
from ..frontend.pipeline import quantize_and_evaluate, summary_rows
from ..frontend.train import deterministic, fit
from ..table import markdown_table
from . import MODELS, ZOO_DIR
from .models import DATASETS, FACTORIES

__all__ = ["RECIPES", "train_float", "build", "main"]

#: zoo name -> how to make it
RECIPES = {
    "digits_cnn_ternary": dict(model="digits_cnn", weights="ternary", act_bits=4,
                               finetune_epochs=15),
    "digits_cnn_pow2": dict(model="digits_cnn", weights="pow2", weight_bits=4, act_bits=4,
                            finetune_epochs=15),
}
FLOAT_EPOCHS = 30
CALIB_SAMPLES = 512
SEED = 0

_DATASETS = {"digits": digits}


def train_float(model_name, *, epochs=FLOAT_EPOCHS, seed=SEED, log=print):
    """``(model, train, test)``: a zoo model trained in float on its dataset, deterministically."""
    if model_name not in FACTORIES:
        raise KeyError(model_name)
    train, test = _DATASETS[DATASETS[model_name]]()
    with deterministic(seed):
        model = FACTORIES[model_name]()
        fit(model, train.x, train.y, epochs=epochs, lr=1e-2, seed=seed, label="float", log=log)
    return model, train, test


def build(out_dir=ZOO_DIR, names=None, *, log=print):
    """Build the zoo models ``names`` (default: all) into ``out_dir``; return their outcomes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(names or RECIPES)
    trained, outcomes = {}, {}
    for name in names:
        recipe = dict(RECIPES[name])
        model_name = recipe.pop("model")
        if model_name not in trained:
            trained[model_name] = train_float(model_name, log=log)
        model, train, test = trained[model_name]
        with deterministic(SEED):
            outcome = quantize_and_evaluate(
                model, train.x[:CALIB_SAMPLES], train=train, test=test, seed=SEED,
                name=model_name, log=log,
                metadata={"zoo_name": name, "dataset": f"{DATASETS[model_name]} (fixed split)",
                          "float_epochs": FLOAT_EPOCHS},
                **recipe)
        outcome.result.save(out_dir / MODELS[name][0])
        outcomes[name] = outcome
        log(f"\n{name} -> {out_dir / MODELS[name][0]}")
        log(markdown_table(["", ""], summary_rows(outcome)) + "\n")
    return outcomes


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m compiler.zoo.build",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ZOO_DIR, help="output directory (default: the zoo)")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"models to build (default: all of {', '.join(sorted(RECIPES))})")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in RECIPES]
    if unknown:
        p.error(f"unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(sorted(RECIPES))}")
    build(args.out, args.names or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
