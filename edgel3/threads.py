"""Thread settings: every thread pool edgel3 uses, on all cores by default.

Inference uses three pools: TensorFlow's (intra-op and inter-op), numba's
(the legacy resampler, the sparse kernels) and the BLAS library NumPy links
(the sparse executor's dense layers). By default each uses every core this
process may run on. :func:`configure_threads` sets all three at once;
``$EDGEL3_NUM_THREADS`` overrides the default, e.g. for one worker of several:

.. code-block:: python

    from edgel3.threads import configure_threads, cores_per_worker
    configure_threads(cores_per_worker(jobs))  # in each worker, before loading a model

TensorFlow reads its settings once, when its runtime starts (the first op):
call :func:`configure_threads` before loading a model, or set the variable
before starting Python. Later calls still set numba and BLAS, and report that
TensorFlow kept its earlier values.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from .checks import check_positive_int
from .exceptions import ParameterError

__all__ = [
    "ENV_VAR",
    "available_cores",
    "cores_per_worker",
    "configure_threads",
    "default_threads",
    "NUMBA_LOCK",
]

logger = logging.getLogger(__name__)

#: One parallel computation at a time per process, whatever Python thread asks: numba's
#: workqueue threading layer aborts the process on concurrent parallel launches, and an
#: executor's work arrays are its own (two concurrent calls mixed their outputs). Each
#: computation already uses every core. Held by the resampler's kernel and every
#: :class:`edgel3.sparse.SparseExecutor` and :class:`edgel3.keras_runner.KerasFileRunner`
#: call (the latter's BLAS products then split the same way as in a serial call).
NUMBA_LOCK = threading.RLock()

#: Environment variable overriding the number of threads per pool.
ENV_VAR = "EDGEL3_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``).

    Returns
    -------
    int
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cores_per_worker(jobs: int) -> int:
    """Threads per pool for one of ``jobs`` worker processes: ``max(1, cores // jobs)``.

    Parameters
    ----------
    jobs : int >= 1

    Returns
    -------
    int

    Examples
    --------
    >>> cores_per_worker(1) == available_cores()
    True
    """
    return max(1, available_cores() // check_positive_int(jobs, "jobs"))


def default_threads() -> int:
    """Threads per pool: ``$EDGEL3_NUM_THREADS`` if set, else all available cores.

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        If the environment variable is not a positive integer.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return available_cores()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ParameterError(f"{ENV_VAR} must be a positive integer; got {ENV_VAR}={value!r}.")
    return threads


def _set_tensorflow(threads: int, inter_op: int) -> str:
    if "tensorflow" not in sys.modules:
        # Read by TensorFlow when its runtime starts.
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
        return "environment"
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # the runtime has started: the settings are fixed
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        if intra not in (0, threads):
            logger.info(
                "TensorFlow already runs with %d intra-op threads; call configure_threads "
                "before loading a model to change it.",
                intra,
            )
        return "unchanged"
    return "set"


def _set_numba(threads: int) -> str:
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
        return "environment"
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return "set"


def _set_blas(threads: int) -> str:
    # A BLAS loaded later reads the environment: SciPy's OpenBLAS (edgel3.blas, the NumPy
    # runtime's GEMMs) is a different library from NumPy's and is loaded on first use.
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "environment"
    threadpool_limits(limits=threads, user_api="blas")  # the ones loaded now
    return "set"


def configure_threads(threads: int | None = None, *, inter_op: int | None = None) -> dict:
    """Set TensorFlow, numba and BLAS to ``threads`` threads each.

    Parameters
    ----------
    threads : int >= 1, optional
        Threads per pool; default :func:`default_threads` (all cores, or
        ``$EDGEL3_NUM_THREADS``). Results do not depend on it (only the
        float summation order may change TensorFlow's last bits).
    inter_op : int >= 1, optional
        TensorFlow inter-op threads (independent ops run in parallel); the
        edgel3 networks are chains, so the default is ``min(2, threads)``.

    Returns
    -------
    dict
        ``{'threads': n, 'tensorflow': how, 'numba': how, 'blas': how}`` where
        ``how`` is ``'set'``, ``'environment'`` (the library is not imported
        yet: it will read the setting when it starts), ``'unchanged'``
        (TensorFlow already started) or ``'unavailable'``.

    Raises
    ------
    ParameterError
        If ``threads`` or ``inter_op`` is not a positive integer.

    Examples
    --------
    >>> configure_threads(2)['threads']  # doctest: +SKIP
    2
    """
    threads = default_threads() if threads is None else threads
    threads = check_positive_int(threads, "threads")
    if inter_op is not None:
        inter_op = check_positive_int(inter_op, "inter_op")
    inter_op = min(2, threads) if inter_op is None else inter_op
    applied = {
        "threads": threads,
        "tensorflow": _set_tensorflow(threads, inter_op),
        "numba": _set_numba(threads),
        "blas": _set_blas(threads),
    }
    logger.debug("thread settings: %s", applied)
    return applied
