"""Launch helpers shared by the per-op and fused kernels: grid sizes, index-typed scalar
arguments, and the contiguity the kernels' flat indexing relies on."""
from __future__ import annotations

import numpy as np

MAX_BLOCKS = 65535  # grid-stride loops cover the rest; more blocks than this buy nothing
BLOCK = 256


def grid(blocks: int) -> tuple:
    return (max(1, min(int(blocks), MAX_BLOCKS)),)


def blocks_for(n: int, block: int = BLOCK) -> tuple:
    """Grid of a one-thread-per-element kernel over n elements."""
    return grid(-(-int(n) // block))


def index_scalar(index_type: str):
    """The numpy scalar type a kernel's IDX parameter is passed as."""
    return np.int32 if index_type == "int" else np.int64


def contiguous(arrays):
    """The arrays as C-contiguous arrays: kernels index them flat. Arena views, parameters
    and staged feeds already are, so this copies only exotic caller-made views."""
    return [a if a.flags.c_contiguous else a.copy(order="C") for a in arrays]


def is_scalar(value) -> bool:
    return not hasattr(value, "shape") or isinstance(value, np.generic)
