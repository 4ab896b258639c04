"""Resampling: the exact legacy resampler of the official pipeline, and an opt-in fast one.

:func:`resample_legacy` is resampy < 0.3 ``kaiser_best`` bit for bit, including
its accumulated float64 time register (FRONTEND.md §2); the official numbers
depend on it. A numba kernel does the work (NumPy fallback when numba is
missing); numba and resampy are imported lazily.
"""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
import scipy.signal

from ._checks import _as_mono, _check_rate
from .exceptions import AudioError

__all__ = ["resample", "resample_legacy"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# 2. Legacy resampler (resampy < 0.3, kaiser_best)
# ---------------------------------------------------------------------------

#: Zero crossings of the sinc on each side (resampy 0.2 ``kaiser_best``).
_KB_NUM_ZEROS = 64
#: Table entries per zero crossing, ``2**9``.
_KB_PRECISION = 2**9
#: Cut-off of the low-pass filter as a fraction of the Nyquist rate.
_KB_ROLLOFF = 0.9475937167399596
#: Kaiser window shape parameter.
_KB_BETA = 14.769656459379492


@functools.lru_cache(maxsize=1)
def _legacy_table() -> tuple[np.ndarray, np.ndarray]:
    """Right wing of the ``kaiser_best`` filter and its forward difference.

    Built once; both arrays are read-only so the cache can never be scaled in
    place (resampy 0.2 did ``interp_win *= ratio`` on its table).
    """
    n_half = _KB_NUM_ZEROS * _KB_PRECISION
    t = np.linspace(0, _KB_NUM_ZEROS, n_half + 1)
    sinc = _KB_ROLLOFF * np.sinc(_KB_ROLLOFF * t)
    taper = scipy.signal.get_window(("kaiser", _KB_BETA), 2 * n_half + 1, fftbins=False)
    table = taper[n_half:] * sinc
    delta = np.zeros_like(table)
    delta[:-1] = np.diff(table)
    table.setflags(write=False)
    delta.setflags(write=False)
    return table, delta


def _time_register(n_out: int, inc: float) -> np.ndarray:
    """Input positions of all outputs, accumulated as resampy 0.2 did (``tr += inc``).

    ``np.cumsum`` is a sequential accumulate, so element ``t`` is exactly the
    float64 value the original loop held at output ``t``.
    """
    tr = np.full(n_out, inc, dtype=np.float64)
    tr[0] = 0.0
    return np.cumsum(tr, out=tr)


_NUMBA_KERNEL = None
#: numba's workqueue threading layer aborts the process on concurrent parallel
#: launches from several Python threads; serialise them (each uses all cores).
_NUMBA_LOCK = threading.Lock()


def _get_numba_kernel():
    """Compile (or load from numba's cache) the parallel resampling kernel; None without numba."""
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        with _NUMBA_LOCK:
            if _NUMBA_KERNEL is None:
                _NUMBA_KERNEL = _build_numba_kernel()
    return _NUMBA_KERNEL or None


def _build_numba_kernel():
    try:
        import numba
    except ImportError:
        logger.info("numba is not installed; using the (slower) NumPy resampler.")
        return False

    def kernel(x, tr, poly_win, poly_delta, nwin, scale, step, num_table, y):  # pragma: no cover
        # poly_win[o, i] == win[o + i * step] (see _polyphase): same values and
        # arithmetic as resampy's flat-table loop, but contiguous reads.
        n_orig = x.shape[0]
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
                acc += (poly_win[offset, i] + eta * poly_delta[offset, i]) * x[n - i]
            # Right wing: the future input samples.
            frac = scale - frac
            index_frac = frac * num_table
            offset = int(index_frac)
            eta = index_frac - offset
            for k in range(min(n_orig - n - 1, (nwin - offset) // step)):
                acc += (poly_win[offset, k] + eta * poly_delta[offset, k]) * x[n + k + 1]
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


def _resample_numpy(x, tr, win, delta, scale, step, num_table, block: int = 8192) -> np.ndarray:
    """Vectorised twin of the numba kernel: loop over taps, vectorise over outputs.

    Each output still sums left wing then right wing, tap by tap, so the
    summation order (and hence the result) is the kernel's.
    """
    nwin, n_orig = win.shape[0], x.shape[0]
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
                src = np.where(valid, n - i if wing == "left" else n + i + 1, 0)
                acc += np.where(valid, (win[idx] + eta * delta[idx]) * x[src], 0.0)
        y[start : start + block] = acc
    return y


def _resample_legacy(
    x: np.ndarray,
    sr_orig,
    sr_new,
    *,
    register: str = "accumulated",
    backend: str = "auto",
) -> np.ndarray:
    """Core of :func:`resample_legacy`; ``register`` and ``backend`` exist for tests.

    register : {'accumulated', 'multiplied'}
        ``'multiplied'`` (``t * inc``, as resampy 0.4) is *not* the official one.
    backend : {'auto', 'numba', 'numpy'}
    """
    ratio = float(sr_new) / sr_orig
    n_out = int(x.shape[0] * ratio)
    if n_out < 1:
        raise AudioError(
            f"Audio is too short to resample: {x.shape[0]} samples at sr_orig={sr_orig} "
            f"give int({x.shape[0]} * {sr_new} / {sr_orig}) = {n_out} samples at "
            f"sr_new={sr_new}; at least one output sample is needed."
        )
    table, delta = _legacy_table()
    if ratio < 1:
        # New arrays: the cached table stays unscaled.
        win = table * ratio
        delta = np.zeros_like(win)
        delta[:-1] = np.diff(win)
    else:
        win = table
    scale = min(1.0, ratio)
    step = int(scale * _KB_PRECISION)
    inc = 1.0 / ratio
    if register == "accumulated":
        tr = _time_register(n_out, inc)
    else:
        tr = np.arange(n_out) * inc

    kernel = _get_numba_kernel() if backend in ("auto", "numba") else None
    if kernel is None:
        if backend == "numba":
            raise ImportError("backend='numba' needs numba: pip install numba")
        return _resample_numpy(x, tr, win, delta, scale, step, _KB_PRECISION)
    y = np.empty(n_out, dtype=np.float64)
    with _NUMBA_LOCK:
        kernel(
            x,
            tr,
            _polyphase(win, step),
            _polyphase(delta, step),
            int(win.shape[0]),
            float(scale),
            int(step),
            int(_KB_PRECISION),
            y,
        )
    return y


def resample_legacy(audio: np.ndarray, sr_orig: int, sr_new: int) -> np.ndarray:
    """Resample exactly as resampy < 0.3 with ``filter='kaiser_best'``.

    This is the resampler the official edgel3 weights were used with; any
    other one changes embeddings by up to several units (FRONTEND.md §2).
    Band-limited sinc interpolation with a 64-zero-crossing Kaiser-windowed
    table (512 entries per crossing, linear interpolation between entries)
    and the original's accumulated float64 time register. Runs as a parallel
    numba kernel when numba is installed (compiled on first use and cached on
    disk), otherwise as a slower vectorised NumPy loop with the same result.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)]
        Mono audio (any real dtype; computed in float64).
    sr_orig : int > 0
        Sample rate of ``audio`` in Hz.
    sr_new : int > 0
        Target sample rate in Hz.

    Returns
    -------
    np.ndarray [shape=(int(n * sr_new / sr_orig),), dtype=float64]
        The resampled audio; a float64 copy of ``audio`` when the rates are equal.

    Raises
    ------
    ParameterError
        If a sample rate is not a positive number.
    AudioError
        If ``audio`` is not 1-D, or too short to give one output sample.

    See Also
    --------
    resample : with an opt-in, faster, non-exact path.

    Examples
    --------
    >>> x = np.sin(2 * np.pi * 440 * np.arange(4410) / 44100)
    >>> y = resample_legacy(x, 44100, 8000)
    >>> y.shape, y.dtype
    ((800,), dtype('float64'))
    """
    _check_rate(sr_orig, "sr_orig")
    _check_rate(sr_new, "sr_new")
    x = np.ascontiguousarray(_as_mono(audio, "resample_legacy"))
    if sr_orig == sr_new:
        return np.array(x, dtype=np.float64, copy=True)
    return _resample_legacy(x, sr_orig, sr_new)


def resample(audio: np.ndarray, sr_orig: int, sr_new: int, *, exact: bool = True) -> np.ndarray:
    """Resample mono audio, exactly (default) or fast.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)]
        Mono audio.
    sr_orig, sr_new : int > 0
        Input and target sample rates in Hz.
    exact : bool
        ``True`` (default): :func:`resample_legacy`, the official pipeline.
        ``False``: ``resampy.resample(..., filter='kaiser_fast')`` from a
        current resampy. **Not the official pipeline**: it is several times
        faster but changes the signal and therefore the embeddings (by up to
        several units on chirps, ~1-3 on noisy audio). Use it only where
        parity with edgel3 0.2.1 does not matter.

    Returns
    -------
    np.ndarray [shape=(int(n * sr_new / sr_orig),), dtype=float64]

    Raises
    ------
    ParameterError
        If a sample rate is not a positive number.
    AudioError
        If ``audio`` is not 1-D, or too short to give one output sample.
    ImportError
        If ``exact=False`` and resampy is not installed.

    Examples
    --------
    >>> resample(np.ones(480), 48000, 8000).shape
    (80,)
    """
    if exact:
        return resample_legacy(audio, sr_orig, sr_new)
    _check_rate(sr_orig, "sr_orig")
    _check_rate(sr_new, "sr_new")
    x = _as_mono(audio, "resample")
    if sr_orig == sr_new:
        return np.array(x, dtype=np.float64, copy=True)
    n_out = int(x.shape[0] * float(sr_new) / sr_orig)
    if n_out < 1:
        raise AudioError(
            f"Audio is too short to resample: {x.shape[0]} samples at sr_orig={sr_orig} "
            f"give {n_out} samples at sr_new={sr_new}."
        )
    try:
        import resampy
    except ImportError as exc:
        raise ImportError("resample(..., exact=False) needs resampy: pip install resampy") from exc
    return np.asarray(resampy.resample(x, sr_orig, sr_new, filter="kaiser_fast"), np.float64)
