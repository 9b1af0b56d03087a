"""Weight quantization methods, a registry keyed by name.

``get_method("ternary")`` returns a :class:`~.base.WeightMethod`; the options
``weight_bits`` and ``levels`` are checked by each method's factory. To add a
method (LAT, LAQ, SLQ, KQ, ...), write a module with a ``WeightMethod``
subclass and a ``make(weight_bits=None, levels=None)`` factory, and register it
below. Nothing else in the front end needs to change.
"""

import inspect

from ...errors import QuantizeError
from . import adaptive, inq, kq, laq, lat, pow2, pow2act, slq, twn, uniform
from .base import WeightMethod

__all__ = ["WeightMethod", "get_method", "method_names", "register"]

_FACTORIES = {}
_CANONICAL = []


def register(factory, *names):
    """Register ``factory(weight_bits=None, levels=None) -> WeightMethod`` under ``names``.

    The first name is the canonical one (listed by :func:`method_names`); the rest
    are aliases.
    """
    for name in names:
        if name in _FACTORIES:
            raise ValueError(f"weight method {name!r} is already registered")
        _FACTORIES[name] = factory
    _CANONICAL.append(names[0])


register(twn.make, "ternary", "twn")
register(pow2.make, "pow2")
register(uniform.make, "int", "uniform")
register(lat.make, "lat")
register(lat.make_lat2, "lat2")
register(laq.make_linear, "laq", "laq-linear")
register(laq.make_log, "laq-log")
register(pow2act.make, "pow2a")
register(inq.make, "inq")
register(slq.make_slq, "slq")
register(slq.make_mlq, "mlq")
register(kq.make, "kq")
register(adaptive.make, "adaptive")


def method_names():
    """Canonical names of the registered methods."""
    return list(_CANONICAL)


def get_method(name, *, weight_bits=None, levels=None, options=None):
    """The method ``name`` configured by ``weight_bits``/``levels``; QuantizeError if unknown.

    ``options`` (a dict) holds method-specific keyword options (e.g.
    ``{"solver": "approx"}`` for lat/lat2/laq, ``fractions`` for ``inq``); a method
    that does not take one raises QuantizeError.
    """
    if isinstance(name, WeightMethod):
        return name
    factory = _FACTORIES.get(name)
    if factory is None:
        raise QuantizeError(f"unknown weight quantization method {name!r}; known: "
                            f"{', '.join(sorted(_FACTORIES))}")
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    if opts:
        known = inspect.signature(factory).parameters
        bad = sorted(k for k in opts if k not in known or k in ("weight_bits", "levels"))
        if bad:
            takes = sorted(k for k in known if k not in ("weight_bits", "levels"))
            raise QuantizeError(f"weight method {name!r} takes no option "
                                f"{', '.join(repr(k) for k in bad)}; "
                                f"its options: {', '.join(takes) or 'none'}")
    return factory(weight_bits=weight_bits, levels=levels, **opts)
