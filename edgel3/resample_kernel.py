"""The kernel of the legacy resampler: resampy 0.2 ``kaiser_best``, bit for bit.

The filter table, the accumulated float64 time register, and
:func:`resample_at`, which computes any run of outputs from a block of input
(a parallel numba kernel compiled on first use and cached on disk, or a
vectorised NumPy loop with the same summation order). :mod:`edgel3.resample`
builds the one-shot and streaming resamplers on it (``docs/frontend.rst`` §2).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from .threads import NUMBA_LOCK

__all__ = [
    "time_register",
    "resample_at",
    "legacy_wing_length",
    "legacy_table",
    "kaiser_window",
    "get_numba_kernel",
    "KB_PRECISION",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# 2. Legacy resampler (resampy < 0.3, kaiser_best)
# ---------------------------------------------------------------------------

#: Zero crossings of the sinc on each side (resampy 0.2 ``kaiser_best``).
_KB_NUM_ZEROS = 64
#: Table entries per zero crossing, ``2**9``.
KB_PRECISION = 2**9
#: Cut-off of the low-pass filter as a fraction of the Nyquist rate.
_KB_ROLLOFF = 0.9475937167399596
#: Kaiser window shape parameter.
_KB_BETA = 14.769656459379492


def kaiser_window(length: int, beta: float) -> np.ndarray:
    """Symmetric Kaiser window, as ``scipy.signal.get_window(('kaiser', beta), length,
    fftbins=False)`` computes it (bit for bit, tested), without importing scipy.signal
    (0.5-0.7 s of a cold start): ``i0(beta * sqrt(1 - ((n - a) / a)**2)) / i0(beta)``.

    Parameters
    ----------
    length : int
        At least 2.
    beta : float

    Returns
    -------
    np.ndarray [shape=(length,), dtype=float64]
    """
    from scipy.special import i0

    n = np.arange(0, length, dtype=np.float64)
    alpha = (length - 1) / 2.0
    return i0(beta * np.sqrt(1 - ((n - alpha) / alpha) ** 2.0)) / i0(np.asarray(beta, np.float64))


@functools.lru_cache(maxsize=1)
def legacy_table() -> tuple[np.ndarray, np.ndarray]:
    """Right wing of the ``kaiser_best`` filter and its forward difference.

    Built once; both arrays are read-only so the cache can never be scaled in
    place (resampy 0.2 did ``interp_win *= ratio`` on its table).
    """
    n_half = _KB_NUM_ZEROS * KB_PRECISION
    t = np.linspace(0, _KB_NUM_ZEROS, n_half + 1)
    sinc = _KB_ROLLOFF * np.sinc(_KB_ROLLOFF * t)
    taper = kaiser_window(2 * n_half + 1, _KB_BETA)
    table = taper[n_half:] * sinc
    delta = np.zeros_like(table)
    delta[:-1] = np.diff(table)
    table.setflags(write=False)
    delta.setflags(write=False)
    return table, delta


def time_register(n_out: int, inc: float) -> np.ndarray:
    """Input positions of all outputs, accumulated as resampy 0.2 did (``tr += inc``).

    ``np.cumsum`` is a sequential accumulate, so element ``t`` is exactly the
    float64 value the original loop held at output ``t``.
    """
    tr = np.full(n_out, inc, dtype=np.float64)
    tr[0] = 0.0
    return np.cumsum(tr, out=tr)


_NUMBA_KERNEL = None


def get_numba_kernel():
    """Compile (or load from numba's cache) the parallel resampling kernel; None without numba."""
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        with NUMBA_LOCK:
            if _NUMBA_KERNEL is None:
                _NUMBA_KERNEL = _build_numba_kernel()
    return _NUMBA_KERNEL or None


def _build_numba_kernel():
    try:
        import numba
    except ImportError:
        logger.info("numba is not installed; using the (slower) NumPy resampler.")
        return False

    def kernel(
        x, x_start, n_orig, tr, poly_win, poly_delta, nwin, scale, step, num_table, y
    ):  # pragma: no cover
        # poly_win[o, i] == win[o + i * step] (see _polyphase): same values and
        # arithmetic as resampy's flat-table loop, but contiguous reads. x holds
        # input samples x_start.. of a signal of n_orig samples (a block, when streaming).
        for t in numba.prange(tr.shape[0]):
            time_register = tr[t]
            n = int(time_register)
            # Left wing: the current and past input samples.
            frac = scale * (time_register - n)
            index_frac = frac * num_table
            offset = int(index_frac)
            eta = index_frac - offset
            acc = 0.0
            for i in range(min(n + 1, (nwin - offset) // step)):
                acc += (poly_win[offset, i] + eta * poly_delta[offset, i]) * x[n - i - x_start]
            # Right wing: the future input samples.
            frac = scale - frac
            index_frac = frac * num_table
            offset = int(index_frac)
            eta = index_frac - offset
            for k in range(min(n_orig - n - 1, (nwin - offset) // step)):
                acc += (poly_win[offset, k] + eta * poly_delta[offset, k]) * x[n + k + 1 - x_start]
            y[t] = acc

    try:
        jitted = numba.njit(cache=True, parallel=True)(kernel)
    except RuntimeError:  # no writable cache location for this install
        jitted = numba.njit(parallel=True)(kernel)
    return jitted


def _polyphase(table: np.ndarray, step: int) -> np.ndarray:
    """Rearrange a flat table so that ``out[o, i] == table[o + i * step]``.

    Offsets run over ``0 .. step`` inclusive (the right wing can start at
    ``o == step``); entries past the table are 0 and never read. With the flat
    table, the taps of one output are ``step`` entries apart -- 4 KiB when
    upsampling, which maps every tap to the same L1 cache set.
    """
    n_taps = -(-table.shape[0] // step) + 1
    idx = np.arange(step + 1)[:, None] + step * np.arange(n_taps)[None, :]
    out = np.zeros(idx.shape, dtype=np.float64)
    inside = idx < table.shape[0]
    out[inside] = table[idx[inside]]
    return out


def _resample_numpy(
    x, tr, win, delta, scale, step, num_table, block: int = 8192, *, x_start=0, n_orig=None
) -> np.ndarray:
    """Vectorised twin of the numba kernel: loop over taps, vectorise over outputs.

    Each output still sums left wing then right wing, tap by tap, so the
    summation order (and hence the result) is the kernel's. ``x`` holds input
    samples ``x_start ..`` of a signal of ``n_orig`` samples (default: all of it).
    """
    nwin = win.shape[0]
    n_orig = x.shape[0] if n_orig is None else n_orig
    y = np.empty(tr.shape[0], dtype=np.float64)
    for start in range(0, tr.shape[0], block):
        t = tr[start : start + block]
        n = t.astype(np.int64)
        frac = scale * (t - n)
        acc = np.zeros(t.shape[0])
        for wing in ("left", "right"):
            if wing == "right":
                frac = scale - frac
            index_frac = frac * num_table
            offset = index_frac.astype(np.int64)
            eta = index_frac - offset
            if wing == "left":
                n_taps = np.minimum(n + 1, (nwin - offset) // step)
            else:
                n_taps = np.minimum(n_orig - n - 1, (nwin - offset) // step)
            for i in range(int(n_taps.max(initial=0))):
                valid = i < n_taps
                idx = np.where(valid, offset + i * step, 0)
                src = np.where(valid, (n - i if wing == "left" else n + i + 1) - x_start, 0)
                acc += np.where(valid, (win[idx] + eta * delta[idx]) * x[src], 0.0)
        y[start : start + block] = acc
    return y


@functools.lru_cache(maxsize=8)
def _scaled_table(ratio: float):
    """``(win, delta, scale, step)`` of resampy 0.2 for one rate ratio (read-only arrays)."""
    table, delta = legacy_table()
    if ratio < 1:
        # New arrays: the cached table stays unscaled.
        win = table * ratio
        delta = np.zeros_like(win)
        delta[:-1] = np.diff(win)
    else:
        win = table
    scale = min(1.0, ratio)
    step = int(scale * KB_PRECISION)
    win.setflags(write=False)
    delta.setflags(write=False)
    return win, delta, scale, step


@functools.lru_cache(maxsize=8)
def _polyphase_tables(ratio: float):
    win, delta, _, step = _scaled_table(ratio)
    return _polyphase(win, step), _polyphase(delta, step)


def resample_at(x, x_start: int, n_orig: int, tr, ratio: float, *, numpy: bool = False):
    """Outputs at time registers ``tr`` from input samples ``x_start ..`` of an ``n_orig`` signal.

    ``x`` must cover every input sample those outputs read: from
    ``int(tr[0]) - wing`` to ``int(tr[-1]) + wing`` (clipped to the signal),
    with ``wing = legacy_wing_length(ratio)``. This is how the streaming
    reader resamples block by block with the whole-signal result.
    """
    win, delta, scale, step = _scaled_table(ratio)
    kernel = None if numpy else get_numba_kernel()
    if kernel is None:
        return _resample_numpy(
            x, tr, win, delta, scale, step, KB_PRECISION, x_start=x_start, n_orig=n_orig
        )
    poly_win, poly_delta = _polyphase_tables(ratio)
    y = np.empty(tr.shape[0], dtype=np.float64)
    with NUMBA_LOCK:
        kernel(
            np.ascontiguousarray(x, dtype=np.float64),
            int(x_start),
            int(n_orig),
            tr,
            poly_win,
            poly_delta,
            int(win.shape[0]),
            float(scale),
            int(step),
            int(KB_PRECISION),
            y,
        )
    return y


def legacy_wing_length(ratio: float) -> int:
    """Most input samples one wing of the legacy filter reads, ``nwin // step``."""
    win, _, _, step = _scaled_table(float(ratio))
    return win.shape[0] // step
