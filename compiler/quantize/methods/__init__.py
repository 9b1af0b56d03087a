"""Weight quantization methods, a registry keyed by name.

``get_method("ternary")`` returns a :class:`~.base.WeightMethod`; the options
``weight_bits`` and ``levels`` are checked by each method's factory. To add a
method (LAT, LAQ, SLQ, KQ, ...), write a module with a ``WeightMethod``
subclass and a ``make(weight_bits=None, levels=None)`` factory, and register it
below. Nothing else in the front end needs to change.
"""

from ...errors import QuantizeError
from . import pow2, twn, uniform
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
register(pow2.make, "pow2", "inq")
register(uniform.make, "int", "uniform")


def method_names():
    """Canonical names of the registered methods."""
    return list(_CANONICAL)


def get_method(name, *, weight_bits=None, levels=None):
    """The method ``name`` configured by ``weight_bits``/``levels``; QuantizeError if unknown."""
    if isinstance(name, WeightMethod):
        return name
    factory = _FACTORIES.get(name)
    if factory is None:
        raise QuantizeError(f"unknown weight quantization method {name!r}; known: "
                            f"{', '.join(sorted(_FACTORIES))}")
    return factory(weight_bits=weight_bits, levels=levels)
