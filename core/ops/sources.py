"""Source ops: values that come from outside the computation (feeds, parameters, constants).
They have shape rules (declared or fed) but no compute: the executor binds their values."""
from __future__ import annotations

import numpy as np

from .base import OpDef, not_differentiable, register


def _declared_shape(shapes, attrs):
    return attrs.get("shape")


def _constant_shape(shapes, attrs):
    return tuple(np.shape(attrs["value"]))


def _constant_dtype(dtypes, attrs):
    v = attrs["value"]
    return v if not isinstance(v, np.ndarray) else v.dtype  # python scalars stay weak


register(OpDef("placeholder", "source", _declared_shape, None, not_differentiable, fed=True,
               doc="a value fed at run time; None in its shape = batch"))
register(OpDef("parameter", "source", _declared_shape, None, not_differentiable, fed=True,
               dtype=lambda d, a: np.dtype(a["dtype"]),
               doc="a trainable value with an initializer"))
register(OpDef("constant", "source", _constant_shape, None, not_differentiable,
               dtype=_constant_dtype, doc="a fixed value"))
