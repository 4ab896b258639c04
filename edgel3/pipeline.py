"""The one window pipeline: samples -> downmix -> resample -> 1-s windows -> batches.

Every embedding path (arrays, lists of arrays, files read whole or in
blocks, live chunks pushed as they arrive) feeds its samples through a
:class:`WindowPipeline`:

1. downmix -- channel mean in float64 (:func:`edgel3.frontend.downmix`);
2. resample to the model's rate -- the exact legacy resampler
   (:class:`~edgel3.resample.LegacyResampleStream`) or, opt-in, the fast one
   (:class:`~edgel3.resample.FastResampleStream`); both compute any chunking
   of the signal as the whole signal;
3. framing into 1-s windows as edgel3 0.2.1 did (:class:`WindowStream`,
   ``docs/frontend.rst``): centring pads the front only, the end is padded to
   a whole number of hops;
4. batching (:func:`batches`) into float32 ``(b, 1, sr)`` arrays for a runner
   (:mod:`edgel3.runners`).

The pipeline that produces the windows also reports how many there are
(:attr:`WindowPipeline.n_windows`, from its own resampler's length), so a
caller never sizes its output by another formula. The whole-signal
functions of :mod:`edgel3.frontend` give the same windows (tested bit for
bit).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np

from . import frontend
from .checks import SHORT_WARNING, ZEROS_WARNING, check_positive_int, check_sample_rate
from .exceptions import AudioError, EdgeL3Error, EdgeL3Warning
from .resample import FastResampleStream, LegacyResampleStream

__all__ = ["WindowStream", "WindowPipeline", "batches", "count_rows"]


class WindowStream:
    """The 1-s windows of :func:`edgel3.frontend.frame_audio` over a signal fed in pieces.

    Parameters
    ----------
    n_samples : int or None
        Total length of the signal at rate ``sr`` when known (fixes the end
        padding and :attr:`n_windows` at once); ``None`` for a live stream,
        whose length is fixed by :meth:`close`.
    sr : int
        Rate (Hz) = window length in samples.
    hop_size : float
        Hop in seconds (truncated to ``int(hop_size * sr)`` samples).
    center : bool
        Prepend ``int(sr / 2)`` zeros.

    Attributes
    ----------
    n_windows : int or None
        Windows the whole signal gives (``None`` until the length is known).
    """

    def __init__(self, n_samples: int | None, sr: int, *, hop_size: float, center: bool):
        self.sr = int(sr)
        self.hop = frontend.hop_length(hop_size, self.sr)
        self.center = bool(center)
        self._front = int(self.sr / 2) if self.center else 0
        self.n_samples = None
        self.n_windows = None
        self._buffer = np.zeros(self._front)
        self._start = 0  # padded-signal index of self._buffer[0]
        self._next = 0  # next window index
        self._received = 0
        self._closed = False
        if n_samples is not None:
            self._set_length(int(n_samples))

    def _set_length(self, n_samples: int) -> None:
        self.n_samples = n_samples
        self.n_windows = frontend.n_windows(n_samples, self.sr, self.hop, self.center)
        length = n_samples + self._front
        if length < self.sr:
            self._back = self.sr - length
        else:
            self._back = -(-(length - self.sr) // self.hop) * self.hop - (length - self.sr)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the windows they complete.

        Parameters
        ----------
        samples : np.ndarray [shape=(m,)]

        Returns
        -------
        np.ndarray [shape=(k, sr), dtype=float64]
            A read-only view (valid until the next call).

        Raises
        ------
        AudioError
            If more than ``n_samples`` samples arrive.
        """
        samples = np.asarray(samples, np.float64)
        self._received += samples.shape[0]
        if self.n_samples is not None and self._received > self.n_samples:
            raise AudioError(
                f"Got {self._received} samples; the window stream was opened for {self.n_samples}."
            )
        if self._received == self.n_samples and not self._closed:
            self._closed = True
            return self._emit(samples, self._back)
        return self._emit(samples)

    def close(self) -> np.ndarray:
        """Pad the end and return the windows still owed.

        Returns
        -------
        np.ndarray [shape=(k, sr), dtype=float64]

        Raises
        ------
        AudioError
            If fewer than ``n_samples`` samples were pushed.
        """
        if self.n_samples is None:
            self._set_length(self._received)
        if self._received != self.n_samples:
            raise AudioError(
                f"The window stream got {self._received} of its {self.n_samples} samples."
            )
        if self._closed:
            return np.zeros((0, self.sr))
        self._closed = True
        return self._emit(np.zeros(0), self._back)

    def _emit(self, samples: np.ndarray, back: int = 0) -> np.ndarray:
        if samples.size or back:  # one allocation: what is kept, the samples, the end padding
            buffer = np.empty(self._buffer.shape[0] + samples.shape[0] + back)
            buffer[: self._buffer.shape[0]] = self._buffer
            buffer[self._buffer.shape[0] : buffer.shape[0] - back] = samples
            buffer[buffer.shape[0] - back :] = 0.0
            self._buffer = buffer
        end = self._start + self._buffer.shape[0]
        # Windows i with i * hop + sr <= end are complete.
        last = (end - self.sr) // self.hop + 1 if end >= self.sr else 0
        if self.n_windows is not None:
            last = min(self.n_windows, last)
        count = last - self._next
        if count <= 0:
            return np.zeros((0, self.sr))
        offset = self._next * self.hop - self._start
        span = self._buffer[offset : offset + (count - 1) * self.hop + self.sr]
        windows = np.lib.stride_tricks.sliding_window_view(span, self.sr)[:: self.hop]
        self._next = last
        # A hop longer than a window starts the next window past the samples held:
        # drop only what is held, or later samples would be misplaced.
        drop = min(self._next * self.hop - self._start, self._buffer.shape[0])
        # The windows view the old buffer; the next call starts a new one.
        self._buffer = self._buffer[drop:]
        self._start += drop
        return windows


class WindowPipeline:
    """Downmix, resample and frame a signal given whole or in pieces.

    Push the samples (any chunking, mono ``(m,)`` or ``(m, channels)``) with
    :meth:`push`, then call :meth:`close`; the windows returned, in order,
    are those of ``frame_audio(resample(downmix(signal)))``.

    Parameters
    ----------
    sr : int
        Rate of the pushed samples (Hz).
    target_sr : int
        The model's rate (Hz) = window length in samples.
    hop_size : float
        Hop in seconds.
    center : bool
        Prepend half a window of zeros.
    fast_resample : bool
        Use the fast, non-exact resampler (not the official numbers).
    n_frames : int, optional
        Total samples (per channel) the signal will have, when known: then
        :attr:`n_windows` is known at once.
    warn_zeros : bool
        Warn "all zeros" at :meth:`close` (for sources not checked upfront).

    Attributes
    ----------
    n_windows : int or None
        Windows the signal gives, computed from this pipeline's own resampler
        and framer (``None`` until the length is known).
    latency : int
        Input samples a window waits for after its last sample (the
        resampler's filter reach; 0 without resampling).
    """

    def __init__(
        self,
        sr: int,
        target_sr: int,
        *,
        hop_size: float,
        center: bool,
        fast_resample: bool = False,
        n_frames: int | None = None,
        warn_zeros: bool = False,
    ):
        self.sr = check_sample_rate(sr)
        self.target_sr = check_sample_rate(target_sr, "target_sr")
        if self.sr == self.target_sr:
            self._resampler = None
            n_target = n_frames
            self.latency = 0
        elif fast_resample:
            self._resampler = FastResampleStream(self.sr, self.target_sr, n_frames)
            n_target = self._resampler.n_out
            self.latency = 0  # soxr holds back its own delay; flushed at close
        else:
            self._resampler = LegacyResampleStream(self.sr, self.target_sr, n_frames)
            n_target = self._resampler.n_out
            self.latency = self._resampler.latency
        self._framer = WindowStream(n_target, self.target_sr, hop_size=hop_size, center=center)
        self._warn_zeros = warn_zeros
        self._nonzero = False
        self._emitted = 0

    @property
    def n_windows(self) -> int | None:
        return self._framer.n_windows

    @property
    def hop(self) -> int:
        """Hop in samples at the model's rate."""
        return self._framer.hop

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the windows now complete.

        Parameters
        ----------
        samples : np.ndarray [shape=(m,) or (m, channels)]

        Returns
        -------
        np.ndarray [shape=(k, target_sr), dtype=float64]
            Read-only view, valid until the next call.
        """
        samples = np.asarray(samples)
        if samples.ndim == 2:
            samples = samples[:, 0] if samples.shape[1] == 1 else frontend.downmix(samples)
        if self._warn_zeros and not self._nonzero:
            self._nonzero = bool(np.any(samples))
        samples = np.asarray(samples, np.float64)
        if self._resampler is not None:
            samples = self._resampler.push(samples)
        return self._count(self._framer.push(samples))

    def close(self) -> np.ndarray:
        """End of signal: return the remaining windows; warn as 0.2.1 did.

        Returns
        -------
        np.ndarray [shape=(k, target_sr), dtype=float64]

        Raises
        ------
        AudioError
            Empty input, or too short to resample to one sample.
        EdgeL3Error
            If the windows produced differ in number from :attr:`n_windows`.

        Warns
        -----
        EdgeL3Warning
            All-zero audio (with ``warn_zeros``); audio shorter than one window.
        """
        if self._framer._received == 0 and self._resampler is None:
            raise AudioError("Got empty audio (input shape (0,))")
        if self._resampler is not None:
            tail = self._resampler.close()
            windows = self._framer.push(tail)
            head = self._count(windows)
            rest = self._count(self._framer.close())
            windows = np.concatenate([head, rest]) if rest.size else head
        else:
            windows = self._count(self._framer.close())
        if self._emitted != self.n_windows:
            raise EdgeL3Error(
                f"The window pipeline produced {self._emitted} windows where its framing "
                f"gives {self.n_windows}; this is a bug in edgel3, please report it."
            )
        if self._warn_zeros and not self._nonzero:
            warnings.warn(ZEROS_WARNING, EdgeL3Warning, stacklevel=2)
        if self._framer.n_samples < self.target_sr:
            warnings.warn(SHORT_WARNING, EdgeL3Warning, stacklevel=2)
        return windows

    def _count(self, windows: np.ndarray) -> np.ndarray:
        self._emitted += windows.shape[0]
        return windows

    def run(self, signal: np.ndarray) -> Iterator[np.ndarray]:
        """Push a whole signal and close: yields at most two window arrays.

        Parameters
        ----------
        signal : np.ndarray [shape=(n,) or (n, channels)]

        Yields
        ------
        np.ndarray [shape=(k, target_sr)]
        """
        yield self.push(signal)
        yield self.close()


def count_rows(pipelines: Iterable[WindowPipeline]) -> list[int]:
    """Windows each pipeline will produce (each must know its length).

    Parameters
    ----------
    pipelines : iterable of WindowPipeline

    Returns
    -------
    list of int
    """
    counts = [p.n_windows for p in pipelines]
    if any(c is None for c in counts):
        raise EdgeL3Error("count_rows needs pipelines opened with their length (n_frames).")
    return counts


def batches(windows: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Regroup window arrays of any sizes into float32 batches ``(b, 1, sr)``.

    Parameters
    ----------
    windows : iterable of np.ndarray [shape=(k, sr)]
        Window arrays, e.g. from :meth:`WindowPipeline.push`; consumed in order.
    batch_size : int
        Windows per batch; only the last batch is smaller.

    Yields
    ------
    np.ndarray [shape=(b, 1, sr), dtype=float32]
        A reused buffer: consume (or copy) each batch before the next.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    buffer = None
    filled = 0
    for block in windows:
        if block.shape[0] == 0:
            continue
        if buffer is None:
            buffer = np.empty((batch_size, 1, block.shape[1]), np.float32)
        start = 0
        while start < block.shape[0]:
            take = min(batch_size - filled, block.shape[0] - start)
            buffer[filled : filled + take, 0] = block[start : start + take]
            filled += take
            start += take
            if filled == batch_size:
                yield buffer
                filled = 0
    if filled:
        yield buffer[:filled]
