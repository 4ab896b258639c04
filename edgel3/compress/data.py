"""Training data for distillation: audio windows with their provenance.

- :func:`load_windows` cuts audio files/folders into 1-s windows at one rate
  through edgel3's one window pipeline (:class:`edgel3.pipeline.WindowPipeline`:
  the checks, downmix, resampling and framing of :func:`edgel3.get_embedding`),
  keeping which file each window came from and its loudness (for SEA's
  relevance sampling).
- :func:`synth_windows` makes synthetic windows (tones, chirps, noises, clicks)
  to widen a corpus without using anyone's recordings.
- :func:`as_teacher`, :func:`teacher_targets`, :class:`Teacher` and
  :func:`to_rate` live in :mod:`edgel3.compress.teachers` (re-exported here).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..checks import check_positive_int
from ..engine import file_windows
from ..exceptions import AudioError, ParameterError
from .teachers import Teacher, as_teacher, teacher_targets, to_rate

__all__ = [
    "WindowSet",
    "Teacher",
    "load_windows",
    "file_windows",
    "synth_windows",
    "concat_windows",
    "as_teacher",
    "teacher_targets",
    "to_rate",
]

logger = logging.getLogger(__name__)

_LOUDNESS_FLOOR_DB = -120.0  # loudness of an all-zero window


def _loudness_db(windows: np.ndarray) -> np.ndarray:
    power = np.mean(np.asarray(windows, dtype=np.float64) ** 2, axis=1)
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), _LOUDNESS_FLOOR_DB).astype(
        np.float32
    )


@dataclass
class WindowSet:
    """1-s audio windows with their provenance.

    Attributes
    ----------
    windows : np.ndarray [shape=(n, sr), dtype=float32]
    sr : int
        Sample rate (= window length).
    file_index : np.ndarray [shape=(n,), dtype=int32]
        Index into ``files`` of each window's source (-1 for synthetic windows).
    files : list of str
        Source files.
    loudness : np.ndarray [shape=(n,), dtype=float32]
        RMS level of each window in dBFS.
    """

    windows: np.ndarray
    sr: int
    file_index: np.ndarray
    files: list[str] = field(default_factory=list)
    loudness: np.ndarray | None = None

    def __post_init__(self):
        if self.loudness is None:
            self.loudness = _loudness_db(self.windows)

    def __len__(self) -> int:
        return len(self.windows)

    def subset(self, index) -> WindowSet:
        """The windows at ``index`` (an index array or a boolean mask)."""
        index = np.asarray(index)
        return WindowSet(
            np.asarray(self.windows[index]),
            self.sr,
            self.file_index[index],
            list(self.files),
            self.loudness[index],
        )

    def fingerprint(self) -> str:
        """Short hash of the rate, sources, count and a sample of the samples."""
        digest = hashlib.sha1(f"{self.sr}|{len(self)}|{'|'.join(self.files)}".encode())
        step = max(1, len(self) // 64)
        digest.update(np.ascontiguousarray(self.windows[::step, ::97]).tobytes())
        return digest.hexdigest()[:16]


def concat_windows(sets: Sequence[WindowSet]) -> WindowSet:
    """Concatenate window sets of one rate (file indices are renumbered)."""
    if not sets:
        raise ParameterError("Nothing to concatenate: got no window sets.")
    rates = {s.sr for s in sets}
    if len(rates) != 1:
        raise ParameterError(f"Window sets have different rates {sorted(rates)}.")
    files, indices, offset = [], [], 0
    for s in sets:
        indices.append(np.where(s.file_index >= 0, s.file_index + offset, -1))
        files.extend(s.files)
        offset += len(s.files)
    return WindowSet(
        np.concatenate([np.asarray(s.windows) for s in sets]),
        sets[0].sr,
        np.concatenate(indices).astype(np.int32),
        files,
        np.concatenate([s.loudness for s in sets]),
    )


def load_windows(
    inputs: Iterable[str | os.PathLike],
    sr: int,
    *,
    hop_size: float = 0.5,
    center: bool = True,
    max_windows_per_file: int | None = None,
    recursive: bool = True,
    progress: bool = False,
    fast_resample: bool = False,
) -> WindowSet:
    """Read audio files (or folders of them) and cut them into 1-s windows.

    Each file goes through :class:`edgel3.pipeline.WindowPipeline` (checks,
    downmix, resampling, framing), so the windows are those
    :func:`edgel3.get_embedding` embeds for the same ``hop_size`` and
    ``center``.

    Parameters
    ----------
    inputs : path-like or iterable of path-like
        Files and/or directories (searched for audio files).
    sr : int
        Rate of the windows (Hz); audio at other rates is resampled.
    hop_size : float
        Hop between windows in seconds.
    center : bool
        Centre windows on ``i * hop_size`` as :func:`edgel3.get_embedding` does.
    max_windows_per_file : int, optional
        Keep at most this many windows per file, evenly spread.
    recursive : bool
        Descend into subdirectories.
    progress : bool
        Show a progress bar.
    fast_resample : bool
        Resample with the fast resampler instead of the exact legacy one
        (see ``docs/frontend.rst``).

    Returns
    -------
    WindowSet
        ``windows`` of shape ``(n, sr)``, float32.

    Raises
    ------
    AudioError
        If no audio file is found, or a file cannot be read or holds empty or
        non-finite audio.
    ParameterError
        For invalid options.
    """
    from tqdm.auto import tqdm

    from ..checks import check_flag, check_hop_size, check_sample_rate
    from ..files import collect_audio_files

    sr = check_sample_rate(sr)
    hop_size = check_hop_size(hop_size)
    center = check_flag(center, "center")
    if max_windows_per_file is not None:
        max_windows_per_file = check_positive_int(max_windows_per_file, "max_windows_per_file")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    files = collect_audio_files(inputs, recursive=recursive)
    if not files:
        raise AudioError(f"No audio files found in {list(map(str, inputs))!r}.")
    chunks, indices, short = [], [], 0
    for index, path in enumerate(tqdm(files, unit="file", disable=not progress)):
        windows, was_short = file_windows(
            path,
            sr,
            hop_size=hop_size,
            center=center,
            max_windows=max_windows_per_file,
            fast_resample=fast_resample,
        )
        short += was_short
        chunks.append(windows)
        indices.append(np.full(len(windows), index, dtype=np.int32))
    if short:
        logger.info("%d of %d files are shorter than 1 s (zero-padded)", short, len(files))
    return WindowSet(np.concatenate(chunks), sr, np.concatenate(indices), [str(f) for f in files])


def synth_windows(n: int, sr: int = 8000, *, seed: int = 0) -> WindowSet:
    """Synthesize ``n`` varied 1-s windows: tones, chirps, noises, clicks and mixtures.

    Each window is one of: a harmonic tone with vibrato, a linear or
    exponential chirp, band-passed/coloured noise, an amplitude-modulated
    noise, a click/impulse train, or a sum of two of these, with random onset,
    envelope and level (-50 to -10 dBFS). Free of any recording's licence.

    Parameters
    ----------
    n : int
    sr : int
    seed : int

    Returns
    -------
    WindowSet
        ``file_index`` is -1 for every window.
    """
    from scipy import signal

    rng = np.random.default_rng(seed)
    t = np.arange(sr) / sr
    nyquist = sr / 2

    def one(kind):
        if kind == 0:  # harmonic tone with vibrato
            f0 = rng.uniform(60, nyquist / 4)
            vib = 1 + rng.uniform(0, 0.03) * np.sin(2 * np.pi * rng.uniform(2, 8) * t)
            phase = 2 * np.pi * np.cumsum(f0 * vib) / sr
            harmonics = np.arange(1, rng.integers(1, 12) + 1)
            amps = rng.uniform(0.2, 1, harmonics.size) / harmonics ** rng.uniform(0.5, 2)
            x = sum(a * np.sin(h * phase) for a, h in zip(amps, harmonics) if h * f0 < nyquist)
        elif kind == 1:  # chirp
            f1, f2 = rng.uniform(50, nyquist * 0.9, size=2)
            method = "linear" if rng.random() < 0.5 else "logarithmic"
            x = signal.chirp(t, f1, 1.0, f2, method=method)
        elif kind == 2:  # band-passed noise
            low = rng.uniform(30, nyquist * 0.7)
            high = min(low * rng.uniform(1.2, 4), nyquist * 0.95)
            sos = signal.butter(4, [low, high], btype="bandpass", fs=sr, output="sos")
            x = signal.sosfilt(sos, rng.standard_normal(sr))
        elif kind == 3:  # amplitude-modulated coloured noise
            spectrum = np.fft.rfft(rng.standard_normal(sr))
            spectrum /= np.maximum(np.arange(spectrum.size), 1) ** rng.uniform(0, 1)
            x = np.fft.irfft(spectrum, n=sr)
            x *= 1 + 0.9 * np.sin(2 * np.pi * rng.uniform(0.5, 20) * t)
        else:  # click / impulse train
            x = np.zeros(sr)
            period = int(sr / rng.uniform(2, 60))
            x[rng.integers(0, period) :: period] = 1.0
            decay = np.exp(-np.arange(200) / rng.uniform(5, 60))
            x = np.convolve(x, decay * rng.standard_normal(200), mode="same")
        return x / (np.max(np.abs(x)) + 1e-12)

    windows = np.zeros((n, sr), dtype=np.float32)
    for row in range(n):
        x = one(rng.integers(0, 5))
        if rng.random() < 0.3:
            x = x + rng.uniform(0.1, 1) * one(rng.integers(0, 5))
        envelope = np.ones(sr)
        start, stop = sorted(rng.integers(0, sr, size=2)) if rng.random() < 0.4 else (0, sr)
        envelope[:start] = 0
        envelope[stop:] = 0
        level = 10 ** (rng.uniform(-50, -10) / 20)
        windows[row] = level * x * envelope / (np.sqrt(np.mean(x**2)) + 1e-12)
    np.clip(windows, -1, 1, out=windows)
    return WindowSet(windows, int(sr), np.full(n, -1, dtype=np.int32), [])
