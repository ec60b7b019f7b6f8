"""Loom's engine: graph IR, op table, symbolic autodiff, compiler and executor.

Never imports Qt or cupy (the cupy backend is loaded lazily through `core.backend`)."""
import os

# OpenBLAS keeps its threads spinning for 2^28 cycles after every GEMM, holding the cores the
# executor's own threads need for the next op (core/ops/cpu.py): let them sleep at once. Read
# when numpy first loads OpenBLAS, so it holds where core is imported before numpy.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import backend  # noqa: E402,F401
from .errors import FeedError, GraphError, LoomError, ShapeError  # noqa: E402,F401
from .graph import (Node, Variable, placeholder, parameter, constant, init_value,  # noqa: E402,F401
                    topological_order, verify)
from .ops import (add, sub, mul, div, neg, relu, sigmoid, tanh, exp, log, sqrt, power,  # noqa
                  oneslike, zeroslike, reduce_sum, reduce_mean, broadcast_to, reshape,
                  transpose, concat, slice, matmul, softmax, log_softmax,
                  softmax_cross_entropy, mse, argmax, accuracy, dropout, batch_norm,
                  conv2d, max_pool2d, avg_pool2d, gather, where, causal_mask, layer_norm, gelu)
from .autodiff import gradients  # noqa: F401
from .executor import Executor  # noqa: F401
