"""Embed long files in constant memory: blockwise read, resample and framing.

The whole-signal path (:func:`edgel3.get_embedding`) holds the file, its
resampled copy and a padded copy in memory, which grows with the file's
length. Here a file is read in blocks (soundfile), downmixed and resampled
block by block with the exact legacy resampler, cut into the same 1-s windows
and batched, so memory is bounded by the block and batch sizes:

* :class:`LegacyResampleStream` -- resampy < 0.3 ``kaiser_best`` over blocks.
  The accumulated time register is continued across blocks (a cumulative sum
  started from the previous block's last value is the whole signal's sum,
  term by term), and each block of outputs gets exactly the input samples its
  filter wings read, so the output equals :func:`edgel3.frontend.resample_legacy`
  bit for bit.
* :class:`WindowStream` -- the windows of :func:`edgel3.frontend.frame_audio`
  (centring, end padding, truncated hop) over a signal that arrives in pieces.
* :func:`iter_file_batches` -- file -> float32 batches ``(b, 1, sr)``, the
  batches the whole-file path would feed the model.

:func:`edgel3.process_file` streams every file longer than
:data:`STREAM_MIN_SECONDS`; results are identical to the whole-file path.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import frontend
from .exceptions import AudioError, EdgeL3Warning
from .resample import FastResampleStream, _resample_at, _time_register, legacy_wing_length

__all__ = [
    "AudioInfo",
    "LegacyResampleStream",
    "WindowStream",
    "audio_info",
    "iter_file_batches",
    "should_stream",
    "BLOCK_FRAMES",
    "STREAM_MIN_SECONDS",
]

logger = logging.getLogger(__name__)

#: Input frames read per block (about 6 s at 44.1 kHz: 1.5 MiB of float64 mono).
BLOCK_FRAMES = 2**18
#: Files at least this long (seconds) are streamed by :func:`edgel3.process_file`.
STREAM_MIN_SECONDS = 60.0


@dataclass(frozen=True)
class AudioInfo:
    """What the stream needs to know about a file before reading it.

    Attributes
    ----------
    path : str
    sample_rate : int
    frames : int
        Samples per channel.
    channels : int
    """

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header (rate, frames, channels) without decoding it.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioError
        If the file is missing or not readable by soundfile.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f'File "{path}" could not be found.')
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f'Could not read audio file "{path}": {exc}') from exc
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels))


def should_stream(info: AudioInfo) -> bool:
    """Whether :func:`edgel3.process_file` streams this file (long enough to matter).

    Parameters
    ----------
    info : AudioInfo

    Returns
    -------
    bool
    """
    return info.frames >= STREAM_MIN_SECONDS * info.sample_rate


# --------------------------------------------------------------------------- resampling


class LegacyResampleStream:
    """The exact legacy resampler applied to a signal that arrives in blocks.

    Feed the ``n_orig`` input samples with :meth:`push` (any block sizes), then
    call :meth:`flush`; the concatenated outputs equal
    ``resample_legacy(whole_signal, sr_orig, sr_new)`` exactly.

    Parameters
    ----------
    sr_orig, sr_new : int
        Input and output rates (Hz), different.
    n_orig : int
        Total number of input samples (fixes the output length and the right
        wing's clipping at the end of the signal).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=44100)
    >>> stream = LegacyResampleStream(44100, 8000, x.size)
    >>> y = np.concatenate([stream.push(x[:10000]), stream.push(x[10000:]), stream.flush()])
    >>> bool(np.array_equal(y, frontend.resample_legacy(x, 44100, 8000)))
    True
    """

    def __init__(self, sr_orig: int, sr_new: int, n_orig: int):
        self.ratio = float(sr_new) / sr_orig
        self.n_orig = int(n_orig)
        self.n_out = int(self.n_orig * self.ratio)
        if self.n_out < 1:
            raise AudioError(
                f"Audio is too short to resample: {self.n_orig} samples at sr_orig={sr_orig} "
                f"give int({self.n_orig} * {sr_new} / {sr_orig}) = {self.n_out} samples at "
                f"sr_new={sr_new}; at least one output sample is needed."
            )
        self._inc = 1.0 / self.ratio
        self._wing = legacy_wing_length(self.ratio)
        self._buffer = np.zeros(0)
        self._start = 0  # input index of self._buffer[0]
        self._received = 0
        self._done = 0  # outputs emitted
        self._last = 0.0  # time register of the last emitted output

    def _registers(self, count: int) -> np.ndarray:
        """Registers of the next ``count`` outputs, continuing the accumulation."""
        if self._done == 0:
            return _time_register(count, self._inc)
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
        """
        block = np.asarray(block, np.float64)
        self._received += block.shape[0]
        if self._received > self.n_orig:
            raise AudioError(
                f"Got {self._received} input samples; the stream was opened for {self.n_orig}."
            )
        self._buffer = np.concatenate([self._buffer, block]) if self._buffer.size else block
        if self._received == self.n_orig:
            return self._emit(self.n_out - self._done)
        # Output t is complete once int(tr[t]) + wing < received; tr[t] <= t * inc + eps.
        ready = self._received - self._wing - 1
        count = min(self.n_out - self._done, max(0, int(ready * self.ratio) - self._done))
        if count <= 0:
            return np.zeros(0)
        tr = self._registers(count + 1)
        keep = int(np.searchsorted(tr.astype(np.int64), ready, side="right"))
        return self._emit(min(keep, count), tr)

    def flush(self) -> np.ndarray:
        """Outputs still owed once all ``n_orig`` samples were pushed.

        Returns
        -------
        np.ndarray [shape=(k,), dtype=float64]

        Raises
        ------
        AudioError
            If fewer than ``n_orig`` samples were pushed.
        """
        if self._received != self.n_orig:
            raise AudioError(f"The stream got {self._received} of its {self.n_orig} input samples.")
        return self._emit(self.n_out - self._done)

    def _emit(self, count: int, tr: np.ndarray | None = None) -> np.ndarray:
        if count <= 0:
            return np.zeros(0)
        tr = self._registers(count) if tr is None else tr[:count]
        y = _resample_at(self._buffer, self._start, self.n_orig, tr, self.ratio)
        self._done += count
        self._last = float(tr[-1])
        # Keep what the next output's left wing reads: from int(next tr) - wing on.
        drop = max(0, int(self._last) - self._wing - 1 - self._start)
        if drop:
            self._buffer = self._buffer[drop:].copy()
            self._start += drop
        return y


# --------------------------------------------------------------------------- windows


class WindowStream:
    """The 1-s windows of :func:`edgel3.frontend.frame_audio` over a signal fed in pieces.

    Parameters
    ----------
    n_samples : int
        Total length of the signal at rate ``sr`` (fixes the end padding).
    sr : int
        Rate (Hz) = window length in samples.
    hop_size : float
        Hop in seconds (truncated to ``int(hop_size * sr)`` samples).
    center : bool
        Prepend ``int(sr / 2)`` zeros.

    Attributes
    ----------
    n_windows : int
        Windows the whole signal gives.
    """

    def __init__(self, n_samples: int, sr: int, *, hop_size: float, center: bool):
        self.sr = int(sr)
        self.hop = frontend.hop_length(hop_size, self.sr)
        self.n_samples = int(n_samples)
        self.n_windows = frontend.n_windows(self.n_samples, self.sr, self.hop, bool(center))
        front = int(self.sr / 2) if center else 0
        length = self.n_samples + front
        if length < self.sr:
            self._back = self.sr - length
        else:
            self._back = -(-(length - self.sr) // self.hop) * self.hop - (length - self.sr)
        self._buffer = np.zeros(front)
        self._start = 0  # padded-signal index of self._buffer[0]
        self._next = 0  # next window index
        self._received = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the windows they complete.

        Parameters
        ----------
        samples : np.ndarray [shape=(m,)]

        Returns
        -------
        np.ndarray [shape=(k, sr), dtype=float64]
            A read-only view (valid until the next call).
        """
        samples = np.asarray(samples, np.float64)
        self._received += samples.shape[0]
        if self._received > self.n_samples:
            raise AudioError(
                f"Got {self._received} samples; the window stream was opened for {self.n_samples}."
            )
        if self._received == self.n_samples:
            samples = np.concatenate([samples, np.zeros(self._back)])
        return self._emit(samples)

    def _emit(self, samples: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, samples])
        end = self._start + self._buffer.shape[0]
        # Windows i with i * hop + sr <= end are complete.
        last = min(self.n_windows, (end - self.sr) // self.hop + 1 if end >= self.sr else 0)
        count = last - self._next
        if count <= 0:
            return np.zeros((0, self.sr))
        offset = self._next * self.hop - self._start
        span = self._buffer[offset : offset + (count - 1) * self.hop + self.sr]
        windows = np.lib.stride_tricks.sliding_window_view(span, self.sr)[:: self.hop]
        self._next = last
        drop = self._next * self.hop - self._start
        # The windows view the old buffer; the next call starts a new one.
        self._buffer = self._buffer[drop:]
        self._start += drop
        return windows


# --------------------------------------------------------------------------- files


def _read_blocks(info: AudioInfo, block_frames: int) -> Iterator[tuple[np.ndarray, int, bool]]:
    """Yield ``(mono, non_finite, any_nonzero)`` per block.

    ``mono`` is downmixed as :func:`edgel3.frontend.downmix` does; the counts
    are taken on the raw ``(frames, channels)`` samples, as the whole-file
    checks are.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(info.path) as handle:
            while True:
                block = handle.read(block_frames, dtype="float64", always_2d=True)
                if block.shape[0] == 0:
                    break
                bad = block.size - int(np.count_nonzero(np.isfinite(block)))
                mono = block[:, 0].copy() if block.shape[1] == 1 else frontend.downmix(block)
                yield mono, bad, bool(np.any(block))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f'Could not read audio file "{info.path}": {exc}') from exc


def iter_file_batches(
    info: AudioInfo,
    target_sr: int,
    *,
    hop_size: float,
    center: bool,
    batch_size: int,
    fast_resample: bool = False,
    block_frames: int = BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Stream a file as float32 window batches ``(b, 1, target_sr)``.

    Yields exactly the batches the whole-file path feeds the model (same
    windows, same batch boundaries). Checks and warnings follow
    :func:`edgel3.get_embedding`: empty or non-finite audio raises
    :class:`~edgel3.exceptions.AudioError` (non-finite samples are counted
    over the whole file first); "all zeros" and "shorter than window"
    warnings are issued once the whole file was read.

    Parameters
    ----------
    info : AudioInfo
        From :func:`audio_info`.
    target_sr : int
        The model's rate.
    hop_size : float
    center : bool
    batch_size : int
    fast_resample : bool
        Use the fast, non-exact resampler (see :func:`edgel3.frontend.resample`).
    block_frames : int
        Input frames per read.

    Yields
    ------
    np.ndarray [shape=(b, 1, target_sr), dtype=float32]
        The buffer is reused: consume (or copy) each batch before the next.

    Raises
    ------
    AudioError
        Unreadable, empty, non-finite or too short audio.
    """
    if info.frames == 0:
        shape = (0,) if info.channels == 1 else (0, info.channels)
        raise AudioError(f"Got empty audio (input shape {shape})")
    if info.sample_rate == target_sr:
        resampler = None
        n_target = info.frames
    elif fast_resample:
        resampler = FastResampleStream(info.sample_rate, target_sr, info.frames)
        n_target = resampler.n_out
    else:
        resampler = LegacyResampleStream(info.sample_rate, target_sr, info.frames)
        n_target = resampler.n_out
    windows = WindowStream(n_target, target_sr, hop_size=hop_size, center=center)
    batch = np.empty((batch_size, 1, target_sr), np.float32)
    filled = 0
    nonzero = False
    bad = 0
    read = 0
    for block, block_bad, block_nonzero in _read_blocks(info, block_frames):
        read += block.shape[0]
        bad += block_bad
        if bad:
            continue  # keep counting over the whole file, as the whole-file check does
        nonzero = nonzero or block_nonzero
        if resampler is not None:
            block = resampler.push(block)
            if read == info.frames and isinstance(resampler, FastResampleStream):
                block = np.concatenate([block, resampler.flush()])
        frames = windows.push(block)
        done = 0
        while done < frames.shape[0]:
            take = min(batch_size - filled, frames.shape[0] - done)
            batch[filled : filled + take, 0] = frames[done : done + take]
            filled += take
            done += take
            if filled == batch_size:
                yield batch
                filled = 0
    if bad:
        raise AudioError(f"audio contains {bad} NaN or infinite sample(s); clean it first.")
    if read != info.frames:
        raise AudioError(
            f'Could not read audio file "{info.path}": got {read} of {info.frames} frames.'
        )
    if not nonzero:
        warnings.warn("Provided audio is all zeros", EdgeL3Warning, stacklevel=2)
    if n_target < target_sr:
        warnings.warn(
            "Duration of provided audio is shorter than window size (1 second). "
            "Audio will be padded.",
            EdgeL3Warning,
            stacklevel=2,
        )
    if filled:
        yield batch[:filled]
