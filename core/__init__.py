"""Loom's engine: graph IR, op table, symbolic autodiff, compiler and executor.

Never imports Qt or cupy (the cupy backend is loaded lazily through `core.backend`)."""
from . import backend  # noqa: F401
from .errors import FeedError, GraphError, LoomError, ShapeError  # noqa: F401
from .graph import (Node, Variable, placeholder, parameter, constant, init_value,  # noqa: F401
                    topological_order, verify)
from .ops import (add, sub, mul, div, neg, relu, sigmoid, tanh, exp, log, sqrt, power,  # noqa
                  oneslike, zeroslike, reduce_sum, reduce_mean, broadcast_to, reshape,
                  transpose, concat, slice, matmul, softmax, log_softmax,
                  softmax_cross_entropy, mse, argmax, accuracy, dropout, batch_norm,
                  conv2d, max_pool2d, avg_pool2d, gather, where, causal_mask, layer_norm, gelu)
from .autodiff import gradients  # noqa: F401
from .executor import Executor  # noqa: F401
