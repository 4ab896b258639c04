"""One BLAS for the NumPy runtime: ``sgemm`` with ``beta`` and in-place output.

NumPy's ``matmul`` cannot accumulate into its output (``C = A @ B + C``), which
the dense conv needs (one GEMM per kernel tap, summed in place). SciPy's BLAS
wrapper can. Every matrix product on the runtime's path goes through this one
BLAS library: NumPy and SciPy wheels each bundle their own OpenBLAS, and two
thread pools that busy-wait after each call halve each other's rate on a small
machine (measured: 194 -> 91 GFLOP/s for the conv GEMMs after one NumPy
``matmul``; ``docs/runtime.rst``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sgemm", "sgemm_address", "gemm_into", "matmul_f32", "single_threaded"]

_SGEMM: list = []
_SGEMM_ADDRESS: list = []
_CONTROLLER: list = []


def sgemm():
    """SciPy's BLAS ``sgemm``, imported on first use (``scipy.linalg``: ~0.2 s).

    Returns
    -------
    callable
        ``sgemm(alpha, a, b, beta=0.0, c=None, overwrite_c=0)``: ``alpha * a @ b +
        beta * c`` on Fortran-ordered float32 matrices; with ``overwrite_c=1`` and a
        Fortran-contiguous float32 ``c``, the result is written into ``c``.
    """
    if not _SGEMM:
        from scipy.linalg.blas import sgemm as found

        _SGEMM.append(found)
    return _SGEMM[0]


def sgemm_address() -> int:
    """The C address of SciPy's BLAS ``sgemm``, which numba code calls without the GIL.

    SciPy's Python wrapper (:func:`sgemm`) holds the GIL during the product, so two
    threads calling it take turns. The same OpenBLAS routine, reached through
    :mod:`scipy.linalg.cython_blas`, runs in a ``nogil`` numba kernel
    (:mod:`edgel3.dense_kernels`), one per thread.

    Returns
    -------
    int
        Address of the Fortran ``sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb,
        beta, c, ldc)`` (every argument a pointer).
    """
    if not _SGEMM_ADDRESS:
        from numba.extending import get_cython_function_address

        sgemm()  # the same library as the Python wrapper (and threadpoolctl's view of it)
        address = get_cython_function_address("scipy.linalg.cython_blas", "sgemm")
        _SGEMM_ADDRESS.append(int(address))
    return _SGEMM_ADDRESS[0]


def matmul_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for C-contiguous float32 matrices, through :func:`sgemm` (no copies).

    Parameters
    ----------
    a : np.ndarray [shape=(m, k), dtype=float32]
    b : np.ndarray [shape=(k, n), dtype=float32]

    Returns
    -------
    np.ndarray [shape=(m, n), dtype=float32], C-contiguous

    Examples
    --------
    >>> a = np.ones((2, 3), np.float32); b = np.ones((3, 4), np.float32)
    >>> matmul_f32(a, b).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
    """
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    # (a @ b).T = b.T @ a.T, and a C-contiguous matrix is its transpose in Fortran order.
    return sgemm()(1.0, b.T, a.T).T


def gemm_into(a: np.ndarray, b: np.ndarray, c: np.ndarray, *, accumulate: bool) -> None:
    """``c[...] = a @ b`` (or ``c += a @ b``), in place, for Fortran-ordered float32.

    Parameters
    ----------
    a : np.ndarray [shape=(m, k), dtype=float32]
    b : np.ndarray [shape=(k, n), dtype=float32]
        Fortran-contiguous (e.g. the transpose of a C-contiguous slice of rows): read
        in place.
    c : np.ndarray [shape=(m, n), dtype=float32]
        Fortran-contiguous: written in place.
    accumulate : bool
        Add to ``c`` (``beta=1``) instead of overwriting it.
    """
    result = sgemm()(1.0, a, b, beta=float(accumulate), c=c, overwrite_c=1)
    if result.ctypes.data != c.ctypes.data:  # a wrapper that copied: put the result back
        c[...] = result


def single_threaded():
    """A context in which every BLAS library loaded runs on one thread (then restored).

    For small products next to numba's parallel kernels: a BLAS call on several
    threads leaves them busy-waiting on the cores numba's threads need (the sparse
    95.45 % model ran at 11 instead of 25 windows/s because of its front end's mel
    product). One thread also makes the product's bits independent of the thread count.

    Returns
    -------
    context manager
        From :mod:`threadpoolctl`.

    Examples
    --------
    >>> with single_threaded():
    ...     c = matmul_f32(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))
    """
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        sgemm()  # SciPy's BLAS loaded first, so that the controller sees it
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
