"""The quantization front end: a float PyTorch model -> graph IR and ``.qpk``.

The only package of the project that imports torch. The path (``quantize()`` in
:mod:`compiler.frontend.api` runs it all)::

    trace (torch.fx, batch norm folded)      compiler/quantize/trace.py
    -> place quantizers                      compiler/quantize/plan.py
    -> fake-quant model                      compiler/quantize/fakequant.py
    -> calibrate activation scales           compiler/quantize/calibrate.py
    -> optional QAT fine-tuning              compiler/quantize/train.py
    -> export graph IR                       compiler/quantize/export.py
    -> check golden == fake-quant            compiler/quantize/agreement.py

Weight methods live in :mod:`compiler.frontend.methods`. ``docs/quantization.md``
explains the arithmetic.

Importing this package does not import torch: the names below load their
modules on first use, so that ``python -m compiler`` can offer the ``quantize``
command without paying for torch in every other command.
"""

import importlib

__all__ = ["quantize", "QuantResult", "Finetune", "AgreementReport", "check_agreement",
           "golden_accuracy", "input_to_int", "method_names", "get_method", "trace",
           "build_fakequant", "calibrate", "export", "FakeQuantModel"]

_HOME = {
    "quantize": "api", "QuantResult": "api", "Finetune": "train",
    "AgreementReport": "agreement", "check_agreement": "agreement",
    "golden_accuracy": "agreement", "input_to_int": "agreement",
    "method_names": "methods", "get_method": "methods", "trace": "trace",
    "build_fakequant": "plan", "calibrate": "calibrate", "export": "export",
    "FakeQuantModel": "fakequant",
}


def __getattr__(name):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
