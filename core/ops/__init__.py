"""The op table and the public builders. Importing this package fills `OPS`."""
from .base import OPS, OpDef, register  # noqa: F401
from . import sources  # noqa: F401
from .elementwise import (add, sub, mul, div, neg, relu, sigmoid, tanh, exp, log, sqrt,  # noqa
                          power, oneslike, zeroslike)
from .reduce import (reduce_sum, reduce_mean, broadcast_to, sum_to_like, broadcast_like,  # noqa
                     expand_like)
from .shape_ops import reshape, reshape_like, transpose, concat, slice  # noqa: F401
from .linalg import matmul  # noqa: F401
from .nn import (softmax, log_softmax, softmax_cross_entropy, mse, argmax, accuracy,  # noqa
                 dropout, batch_norm)
from .conv import conv2d  # noqa: F401
from .pool import max_pool2d, avg_pool2d  # noqa: F401
from .sequence import gather, where, causal_mask, gelu  # noqa: F401
from .norm_ops import layer_norm  # noqa: F401
from . import pool_transpose  # noqa: F401  (max_pool2d_grad's transpose: second order)
from . import optim_ops  # noqa: F401  (optimizer updates, used by the trainer)
from .interop_ops import erf, pow, lrn, pad, reduce_max  # noqa: F401,A004  (ops imported ONNX models need)
from . import comm_ops  # noqa: F401  (allreduce ops of data-parallel training steps)
