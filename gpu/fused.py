"""Fusion groups as single generated kernels: the backend's `fuse(nodes, plan)` hook."""
from __future__ import annotations

from .cache import active
from .emit import kernel_for
from .launch import contiguous, grid
from .lower import lower_group


class FusedKernel:
    """One compiled kernel computing a fusion group's last member.

    `inputs`: where the caller takes the input arrays from, in call order — for a fusion group
    its external input nodes (through the plan's aliases); `kernel(ins, out)` writes the last
    member's value into `out` (contiguous, the member's planned shape and dtype)."""

    def __init__(self, program, inputs, cache=None):
        self.program, self.inputs = program, list(inputs)
        spec = kernel_for(program)
        self.name, self.source = spec.name, spec.source
        self._grid, self._block = grid(spec.blocks), (spec.block,)
        # compiled now, at bind time: the step itself never compiles
        self._kernel = (cache or active()).get(("fused", spec.source),
                                               lambda: (spec.name, spec.source))

    def __call__(self, ins, out):
        self._kernel(self._grid, self._block, (*contiguous(ins), out))


def fuse(nodes, plan, cache=None):
    """The backend's fuse hook: a FusedKernel for the group, or None to decline (an op or
    dtype the generator does not handle; the executor then runs the members one by one)."""
    lowered = lower_group(nodes, plan)
    if lowered is None:
        return None
    program, inputs = lowered
    return FusedKernel(program, inputs, cache)
