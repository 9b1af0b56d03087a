"""``quantize()``: the front end in one call (see :mod:`compiler.frontend`)."""

from dataclasses import dataclass

import torch

from .. import qpk
from ..errors import QuantizeError
from .agreement import AgreementReport, check_agreement
from .calibrate import calibrate
from .export import export
from .fakequant import FakeQuantModel
from .methods import get_method
from .placement import build_fakequant
from .trace import trace
from .train import finetune as _finetune

__all__ = ["quantize", "QuantResult"]


@dataclass
class QuantResult:
    graph: object                # compiler.ir.Graph
    model: FakeQuantModel        # the fake-quantized torch model (eval mode)
    scales: dict                 # every node's output scale (MACs: accumulator scale)
    report: AgreementReport      # golden vs fake-quant on the calibration inputs

    @property
    def output_scale(self):
        return self.graph.metadata["output_scale"]

    def producer(self):
        from .. import __version__
        return {"name": "shiftadd", "version": __version__,
                "method": self.graph.metadata["quantization"]["method"]}

    def to_bytes(self):
        return qpk.to_bytes(self.graph, self.producer())

    def save(self, path):
        """Write the graph as a ``.qpk``."""
        qpk.save(self.graph, path, self.producer())


def _as_inputs(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float32)
    try:
        return torch.as_tensor(x, dtype=torch.float32)
    except (TypeError, ValueError) as err:
        raise QuantizeError(f"calibration inputs must be a float array (N, ...): {err}") from None


def quantize(model, calib_inputs, *, weights="ternary", weight_bits=None, levels=None,
             act_bits=4, input_bits=8, finetune=None, calibration="mse", name=None,
             metadata=None, method_options=None, act_levels=None, log=None):
    """Quantize a float ``model`` into a graph IR and a fake-quantized torch model.

    ``calib_inputs`` is a batch ``(N, ...)`` of float inputs used to trace shapes
    and calibrate activation scales (and to check agreement). ``weights`` names a
    method (:func:`method_names`: ``ternary``/``twn``, ``pow2``/``inq``,
    ``int``/``uniform``) configured by ``weight_bits``/``levels``. ``finetune`` is
    an optional :class:`Finetune` (QAT data and epochs). ``metadata`` is merged
    into the graph's metadata. ``method_options`` are the method's own options
    (see :func:`~.methods.get_method`, e.g. ``{"solver": "approx"}`` for
    ``lat``/``lat2``/``laq``/``laq-log``). ``act_levels`` is ``"linear"`` or
    ``"pow2"`` (power-of-two activations after every ReLU); default: the
    method's own (``pow2a``: pow2), else linear. Methods with per-layer state
    (``inq``, ``slq``, ``mlq``, ``kq``, ``adaptive``) set it up in
    ``method.prepare`` and replace QAT by their own ``method.schedule``
    (:mod:`.methods.staged`). Calibration draws a progress bar if ``log`` (such
    as ``print``) writes to a terminal. Raises :class:`~compiler.errors.QuantizeError`
    for models or options it cannot handle; ``AssertionError`` if the golden and
    fake-quant models disagree (a bug).
    """
    method = get_method(weights, weight_bits=weight_bits, levels=levels, options=method_options)
    x = _as_inputs(calib_inputs)
    if x.ndim < 2 or x.shape[0] == 0:
        raise QuantizeError(f"calibration inputs must be a non-empty batch (N, ...), got shape "
                            f"{list(x.shape)}")
    name = name or type(model).__name__
    layers = trace(model, x)
    if tuple(x.shape[1:]) != layers.input.shape:
        raise AssertionError("trace input shape")
    fq = build_fakequant(layers, method, act_bits=act_bits, input_bits=input_bits, name=name,
                         act_levels=act_levels)
    fq.info["calibration"] = calibration
    if hasattr(method, "prepare"):
        method.prepare(fq, layers, x)
    calibrate(fq, x, estimator=calibration, log=log)
    if hasattr(method, "schedule"):
        method.schedule(fq, finetune, x)
        if finetune is not None:
            fq.info["finetune_epochs"] = finetune.epochs
    elif finetune is not None:
        _finetune(fq, finetune)
        fq.info["finetune_epochs"] = finetune.epochs
    fq.eval()
    frozen = fq.freeze()
    graph = export(fq, frozen=frozen, metadata=metadata)
    report = check_agreement(graph, fq, x).assert_ok()
    return QuantResult(graph=graph, model=fq, scales=dict(frozen.scales), report=report)
