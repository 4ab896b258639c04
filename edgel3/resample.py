"""Resampling: the exact legacy resampler of the official pipeline, and an opt-in fast one.

:func:`resample_legacy` is resampy < 0.3 ``kaiser_best`` bit for bit, including
its accumulated float64 time register (``docs/frontend.rst`` §2); the official numbers
depend on it. The kernel lives in :mod:`edgel3.resample_kernel`; soxr
(the fast path) is imported lazily. :func:`resample_at` computes
any run of outputs from a block of input; :class:`LegacyResampleStream` uses
it to resample a signal that arrives in blocks (long files, live audio) with
the whole-signal result, bit for bit. :func:`resampled_length` is the one
formula for the number of output samples, used by every path.
"""

from __future__ import annotations

import logging

import numpy as np

from .checks import as_mono, check_sample_rate
from .exceptions import AudioError
from .resample_kernel import get_numba_kernel, legacy_wing_length, resample_at, time_register

__all__ = [
    "resample",
    "resample_legacy",
    "resampled_length",
    "legacy_wing_length",
    "time_register",
    "resample_at",
    "LegacyResampleStream",
    "FastResampleStream",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Lengths, one-shot and streaming resamplers
# ---------------------------------------------------------------------------


def resampled_length(n_samples: int, sr_orig: int, sr_new: int) -> int:
    """Output length of every resampling path: ``int(n * (sr_new / sr_orig))``.

    resampy 0.2's formula (the ratio first, in float64); the whole-signal,
    blockwise, fast and streamed paths all use it, so they agree on the number
    of samples and therefore of windows.

    Parameters
    ----------
    n_samples : int
        Input samples.
    sr_orig, sr_new : int
        Rates in Hz.

    Returns
    -------
    int

    Examples
    --------
    >>> resampled_length(9609600, 87360, 8000)
    880000
    """
    return int(n_samples * (float(sr_new) / sr_orig))


def _check_output_length(n_in: int, n_out: int, sr_orig, sr_new) -> None:
    if n_out < 1:
        raise AudioError(
            f"Audio is too short to resample: {n_in} samples at sr_orig={sr_orig} "
            f"give int({n_in} * {sr_new} / {sr_orig}) = {n_out} samples at "
            f"sr_new={sr_new}; at least one output sample is needed."
        )


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
    n_out = resampled_length(x.shape[0], sr_orig, sr_new)
    if n_out < 1:
        _check_output_length(x.shape[0], n_out, sr_orig, sr_new)
    inc = 1.0 / ratio
    if register == "accumulated":
        tr = time_register(n_out, inc)
    else:
        tr = np.arange(n_out) * inc
    if backend == "numba" and get_numba_kernel() is None:
        raise ImportError("backend='numba' needs numba: pip install numba")
    return resample_at(x, 0, x.shape[0], tr, ratio, numpy=backend == "numpy")


def resample_legacy(audio: np.ndarray, sr_orig: int, sr_new: int) -> np.ndarray:
    """Resample exactly as resampy < 0.3 with ``filter='kaiser_best'``.

    This is the resampler the official edgel3 weights were used with; any
    other one changes embeddings by up to several units (``docs/frontend.rst`` §2).
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
    sr_orig = check_sample_rate(sr_orig, "sr_orig")
    sr_new = check_sample_rate(sr_new, "sr_new")
    x = np.ascontiguousarray(as_mono(audio, "resample_legacy"))
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
        ``False``: a fast standard resampler -- soxr (``quality='HQ'``) when
        the ``soxr`` package is installed, else SciPy's polyphase
        ``resample_poly``. **Not the official pipeline**: 10-20x faster than
        the exact resampler but it changes the signal and therefore the
        embeddings (measured in ``docs/performance.rst``). Use it only where
        parity with edgel3 0.2.1 does not matter. The output has the exact
        path's length.

    Returns
    -------
    np.ndarray [shape=(int(n * sr_new / sr_orig),), dtype=float64]

    Raises
    ------
    ParameterError
        If a sample rate is not a positive number.
    AudioError
        If ``audio`` is not 1-D, or too short to give one output sample.

    Examples
    --------
    >>> resample(np.ones(480), 48000, 8000).shape
    (80,)
    """
    if exact:
        return resample_legacy(audio, sr_orig, sr_new)
    sr_orig = check_sample_rate(sr_orig, "sr_orig")
    sr_new = check_sample_rate(sr_new, "sr_new")
    x = as_mono(audio, "resample")
    if sr_orig == sr_new:
        return np.array(x, dtype=np.float64, copy=True)
    n_out = resampled_length(x.shape[0], sr_orig, sr_new)
    _check_output_length(x.shape[0], n_out, sr_orig, sr_new)
    return _fit_length(_resample_fast(x, sr_orig, sr_new), n_out)


def _fit_length(y: np.ndarray, n_out: int) -> np.ndarray:
    """Trim or zero-pad to ``n_out`` samples (the exact resampler's length)."""
    if y.shape[0] >= n_out:
        return np.ascontiguousarray(y[:n_out], dtype=np.float64)
    return np.concatenate([np.asarray(y, np.float64), np.zeros(n_out - y.shape[0])])


def _resample_fast(x: np.ndarray, sr_orig, sr_new) -> np.ndarray:
    try:
        import soxr
    except ImportError:
        from fractions import Fraction

        ratio = Fraction(int(sr_new), int(sr_orig))
        import scipy.signal  # lazily: 0.4 s of import, needed only here

        return scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator)
    return soxr.resample(x, sr_orig, sr_new, quality="HQ")


class LegacyResampleStream:
    """The exact legacy resampler applied to a signal that arrives in blocks.

    Feed input samples with :meth:`push` (any block sizes), then call
    :meth:`close`; the concatenated outputs equal
    ``resample_legacy(whole_signal, sr_orig, sr_new)`` bit for bit. The
    accumulated time register is continued across blocks (a cumulative sum
    started from the previous block's last value is the whole signal's sum,
    term by term) and each output is computed once every input sample its
    filter reads has arrived, so an output lags its input by
    :func:`legacy_wing_length` samples at most.

    Parameters
    ----------
    sr_orig, sr_new : int
        Input and output rates (Hz), different.
    n_orig : int, optional
        Total number of input samples, when known in advance (a file); it
        fixes :attr:`n_out` at once. ``None`` for a live stream: the length
        is known at :meth:`close`.

    Attributes
    ----------
    n_out : int or None
        Outputs the whole signal gives, :func:`resampled_length` (``None``
        until known).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=44100)
    >>> stream = LegacyResampleStream(44100, 8000)
    >>> y = np.concatenate([stream.push(x[:10000]), stream.push(x[10000:]), stream.close()])
    >>> bool(np.array_equal(y, resample_legacy(x, 44100, 8000)))
    True
    """

    def __init__(self, sr_orig: int, sr_new: int, n_orig: int | None = None):
        self.sr_orig, self.sr_new = int(sr_orig), int(sr_new)
        self.ratio = float(sr_new) / sr_orig
        self.n_orig = None if n_orig is None else int(n_orig)
        self.n_out = None
        if self.n_orig is not None:
            self.n_out = resampled_length(self.n_orig, sr_orig, sr_new)
            _check_output_length(self.n_orig, self.n_out, sr_orig, sr_new)
        self._inc = 1.0 / self.ratio
        self._wing = legacy_wing_length(self.ratio)
        self._buffer = np.zeros(0)
        self._start = 0  # input index of self._buffer[0]
        self._received = 0
        self._done = 0  # outputs emitted
        self._last = 0.0  # time register of the last emitted output

    @property
    def latency(self) -> int:
        """Input samples an output waits for beyond its own position (the filter's reach)."""
        return self._wing + 1

    def _registers(self, count: int) -> np.ndarray:
        """Registers of the next ``count`` outputs, continuing the accumulation."""
        if self._done == 0:
            return time_register(count, self._inc)
        tr = np.full(count, self._inc)
        tr[0] = self._last + self._inc  # the whole signal's next term, to the bit
        return np.cumsum(tr, out=tr)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add input samples; return the outputs whose filter support is now complete.

        Parameters
        ----------
        block : np.ndarray [shape=(m,)]

        Returns
        -------
        np.ndarray [shape=(k,), dtype=float64]

        Raises
        ------
        AudioError
            If more than ``n_orig`` samples arrive.
        """
        block = np.asarray(block, np.float64)
        self._received += block.shape[0]
        if self.n_orig is not None and self._received > self.n_orig:
            raise AudioError(
                f"Got {self._received} input samples; the stream was opened for {self.n_orig}."
            )
        self._buffer = np.concatenate([self._buffer, block]) if self._buffer.size else block
        if self._received == self.n_orig:
            return self._emit(self.n_out - self._done)
        # Output t is complete once int(tr[t]) + wing < received; tr[t] <= t * inc + eps.
        ready = self._received - self._wing - 1
        count = max(0, int(ready * self.ratio) - self._done)
        if self.n_out is not None:
            count = min(self.n_out - self._done, count)
        if count <= 0:
            return np.zeros(0)
        tr = self._registers(count + 1)
        keep = int(np.searchsorted(tr.astype(np.int64), ready, side="right"))
        return self._emit(min(keep, count), tr)

    def close(self) -> np.ndarray:
        """The outputs still owed once the whole signal was pushed.

        Returns
        -------
        np.ndarray [shape=(k,), dtype=float64]

        Raises
        ------
        AudioError
            If fewer than ``n_orig`` samples were pushed, or the signal is too
            short to give one output sample.
        """
        if self.n_orig is None:
            self.n_orig = self._received
            self.n_out = resampled_length(self.n_orig, self.sr_orig, self.sr_new)
            _check_output_length(self.n_orig, self.n_out, self.sr_orig, self.sr_new)
        if self._received != self.n_orig:
            raise AudioError(f"The stream got {self._received} of its {self.n_orig} input samples.")
        return self._emit(self.n_out - self._done)

    flush = close

    def _emit(self, count: int, tr: np.ndarray | None = None) -> np.ndarray:
        if count <= 0:
            return np.zeros(0)
        tr = self._registers(count) if tr is None else tr[:count]
        n_orig = self._received if self.n_orig is None else self.n_orig
        y = resample_at(self._buffer, self._start, n_orig, tr, self.ratio)
        self._done += count
        self._last = float(tr[-1])
        # Keep what the next output's left wing reads: from int(next tr) - wing on.
        drop = max(0, int(self._last) - self._wing - 1 - self._start)
        if drop:
            self._buffer = self._buffer[drop:].copy()
            self._start += drop
        return y


class FastResampleStream:
    """Blockwise twin of ``resample(..., exact=False)`` (soxr's stream, or whole-signal).

    soxr resamples a stream with the same filter as a whole signal; without
    soxr the blocks are collected and resampled at :meth:`close` (so memory
    then grows with the signal).

    Parameters
    ----------
    sr_orig, sr_new : int
        Rates in Hz.
    n_orig : int, optional
        Total input samples (fixes :attr:`n_out`); ``None`` for a live stream.
    """

    def __init__(self, sr_orig: int, sr_new: int, n_orig: int | None = None):
        self.n_out = None if n_orig is None else resampled_length(n_orig, sr_orig, sr_new)
        self._sr = (int(sr_orig), int(sr_new))
        self._received = 0
        self._emitted = 0
        try:
            import soxr
        except ImportError:
            self._stream, self._pending = None, []
        else:
            self._stream = soxr.ResampleStream(sr_orig, sr_new, 1, dtype="float64", quality="HQ")

    def _take(self, y: np.ndarray) -> np.ndarray:
        if self.n_out is not None:
            y = y[: max(0, self.n_out - self._emitted)]
        self._emitted += y.shape[0]
        return np.asarray(y, np.float64)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Resample the next input block; return the outputs it completes."""
        block = np.asarray(block, np.float64)
        self._received += block.shape[0]
        if self._stream is None:
            self._pending.append(block)
            return np.zeros(0)
        return self._take(self._stream.resample_chunk(block))

    def close(self) -> np.ndarray:
        """The remaining outputs, padded to the exact path's length."""
        if self.n_out is None:
            self.n_out = resampled_length(self._received, *self._sr)
            _check_output_length(self._received, self.n_out, *self._sr)
        if self._stream is None:
            whole = np.concatenate(self._pending) if self._pending else np.zeros(0)
            tail = _resample_fast(whole, *self._sr)
        else:
            tail = self._stream.resample_chunk(np.zeros(0), last=True)
        tail = self._take(tail)
        missing = self.n_out - self._emitted
        self._emitted = self.n_out
        return np.concatenate([tail, np.zeros(max(0, missing))])

    flush = close
