"""Communication as ops of the compiled step (data-parallel training, core/distributed.py).

A bucket of gradients is summed over the ranks by two ops: `allreduce_start` packs the
gradients, each scaled by this rank's share of the global batch (the `fraction` feed), into
one flat buffer and starts a non-blocking in-place allreduce on it; `allreduce_wait` waits
for it. Between the two the backward pass goes on (the compiler starts each bucket as soon as
its last gradient exists and waits just before the first update that reads it:
core/compiler/comm.py), so communication overlaps computation. `bucket_part` gives each
update its parameter's slice. `allreduce` is the blocking form for small values (the global
loss; synchronised batch-norm statistics), and is its own gradient rule's building block."""
from __future__ import annotations

import math

import numpy as np

from .. import distributed
from ..errors import ShapeError
from ..graph import placeholder
from .base import OpDef, gradient_not_implemented, make, register

# This rank's share of the global batch, fed every step by the trainer (1.0 when alone).
FRACTION = placeholder("distributed.fraction", (), "float64")

NOT_DIFFERENTIATED = gradient_not_implemented("the gradient allreduce is not differentiated")


class _Alone:
    """Outside an MPI job the sum over the ranks is this rank's value (the ops still run,
    e.g. when a step is planned or tested in one process)."""

    def iallreduce_sum(self, buffer):
        return self

    def allreduce_sum(self, buffer):
        pass

    def Wait(self):  # noqa: N802 - mpi4py's request API
        pass


def _world():
    return distributed.world() or _Alone()


# ---- buckets of gradients ------------------------------------------------------------------

def gradient_bucket(grads, shapes, params=()):
    """Nodes for the summed gradients of one bucket: [(part node) per gradient]. `params`
    names whose gradients they are (for reports)."""
    channel = {}  # the request, from the start op to the wait op of this bucket
    start = make("allreduce_start", FRACTION, *grads, shapes=tuple(map(tuple, shapes)),
                 params=tuple(params), _channel=channel)
    done = make("allreduce_wait", start, _channel=channel)
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(make("bucket_part", done, offset=offset, shape=tuple(shape)))
        offset += size
    return parts


def _start_shape(in_shapes, attrs):
    for shape, declared in zip(in_shapes[1:], attrs["shapes"]):
        if tuple(shape) != tuple(declared):
            raise ShapeError(f"gradient of shape {tuple(shape)} in a bucket laid out for {declared}")
    return (sum(math.prod(s) for s in attrs["shapes"]),)


def _start(xp, ins, attrs, out):
    fraction, *grads = ins
    offset = 0
    for g in grads:
        part = out[offset:offset + g.size]
        xp.multiply(g.reshape(-1), fraction, out=part)
        offset += g.size
    attrs["_channel"]["request"] = _world().iallreduce_sum(out)


def _wait(xp, ins, attrs, out):
    attrs["_channel"].pop("request").Wait()
    if out is not ins[0]:  # not planned in place: the sum is in the start op's buffer
        xp.copyto(out, ins[0])


def _part(xp, ins, attrs, out):
    offset = attrs["offset"]
    xp.copyto(out, ins[0][offset:offset + out.size].reshape(out.shape))


register(OpDef("allreduce_start", "opaque", _start_shape, _start, NOT_DIFFERENTIATED,
               dtype=lambda d, a: np.result_type(*d[1:]), effects=True,
               doc="pack a bucket of gradients (scaled by this rank's batch share) and start "
                   "summing it over the ranks"))
register(OpDef("allreduce_wait", "opaque", lambda s, a: tuple(s[0]), _wait, NOT_DIFFERENTIATED,
               inplace=(0,), effects=True, doc="wait for a bucket's sum"))
register(OpDef("bucket_part", "opaque", lambda s, a: tuple(a["shape"]), _part, NOT_DIFFERENTIATED,
               doc="one parameter's summed gradient, from its bucket"))


# ---- blocking allreduce of small values --------------------------------------------------------

def allreduce(x, name=None):
    """sum over the ranks of x * this rank's batch share: the global-batch mean of a
    per-rank mean (loss, accuracy, batch-norm statistics)."""
    return make("allreduce", FRACTION, x, name=name)


def _allreduce(xp, ins, attrs, out):
    fraction, x = ins
    xp.multiply(x, fraction, out=out)
    _world().allreduce_sum(out)


# The global objective is sum_r f_r L_r and y = sum_r f_r x_r, so dJ/dx_r = f_r sum_r' f_r' g_r'.
# The gradient allreduce multiplies each rank's local gradients by f_r already: locally, the
# gradient towards x_r is the allreduce of g itself.
def _allreduce_grad(n, g):
    return [None, make("allreduce", n.inputs[0], g)]


register(OpDef("allreduce", "opaque", lambda s, a: tuple(s[1]), _allreduce, _allreduce_grad,
               dtype=lambda d, a: np.result_type(d[1]), effects=True,
               doc="global-batch mean over the ranks of a per-rank mean (blocking)"))
