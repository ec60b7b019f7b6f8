"""One chunk of a convolution as one compiled call: the copies, numpy's own cblas GEMMs and
col2im, without the GIL (the kernels: native_blas_loops.conv_*). Small images (batch-innermost
columns, conv.py): the forward pass and both gradients; large ones (a GEMM per sample): the
forward pass and the weight gradient (its per-sample sums added in sample order, as numpy's
add.reduce does).

Why: a convolution's runs of the batch go to two threads at once (conv.py _each_chunk), and
each run was about ten numpy calls. Between calls each thread takes the GIL back, and with two
threads at it, each wait is a sleep and a wake (about 100 µs on a small VM): LeNet's 6->16
convolution on 14×14 took 1309 µs in two runs of 32 at once against 1251 whole on one thread.
As one compiled call per run: 604 µs (788 whole); its first convolution (1->6 on 28×28, a
GEMM per sample) 1058 -> 885 µs forward, 2196 -> 1030 for the weight gradient. The same
bits: the copies are copies, each GEMM is the cblas call numpy's matmul makes for these
contiguous operands, col2im is native_loops.col2im_batch_inner."""
from __future__ import annotations

from . import gemm_worker, native


def kernels(*arrays):
    """(native_blas_loops, the cblas gemm's address, 0 and 1 in the dtype) for these arrays, or
    None where the kernels cannot run them: numba or numpy's OpenBLAS missing, arrays not
    C-contiguous numpy arrays of one float dtype."""
    if not native.usable(*arrays):
        return None
    address = gemm_worker.gemm_address(arrays[0].dtype)
    if address is None:
        return None
    from . import native_blas_loops
    return native_blas_loops, address, native.ZERO_ONE[arrays[0].dtype]
