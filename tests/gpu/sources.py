"""Every CUDA source the GPU backend can generate for the test graphs: the fused kernels of
the bundled examples' and the hand-built graphs' fusion groups, and the per-op kernels'
representative sources (both dtypes)."""
from __future__ import annotations

from gpu.emit import kernel_for
from gpu.kernels import example_sources
from gpu.lower import lower_group

from .cases import hand_built_plans
from .plans import example_plans, fusible_tails


def group_programs():
    """[(label, tail, plan, program, input nodes)] for every fusion group tail the generator
    accepts (examples first, then the hand-built graphs)."""
    out = []
    for label, plan, _ in example_plans() + hand_built_plans():
        for k, tail in enumerate(fusible_tails(plan)):
            lowered = lower_group(tail, plan)
            if lowered is not None:
                out.append((f"{label}/group{k}:{'+'.join(n.op for n in tail)}", tail, plan,
                            *lowered))
    return out


def all_sources() -> dict:
    sources = {label: kernel_for(program).source for label, _, _, program, _ in group_programs()}
    sources.update(example_sources())
    return sources
