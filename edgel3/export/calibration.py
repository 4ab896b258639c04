"""Real audio for int8 calibration: windows drawn evenly from files and folders."""

from __future__ import annotations

import os

import numpy as np

from ..exceptions import ParameterError

__all__ = ["calibration_data", "calibration_inputs"]

DEFAULT_CALIBRATION_WINDOWS = 200
DEFAULT_CALIBRATION_HOP = 0.5


def calibration_data(
    sources,
    sample_rate: int,
    *,
    max_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    hop_size: float = DEFAULT_CALIBRATION_HOP,
) -> np.ndarray:
    """1-s audio windows for int8 calibration, drawn evenly from files and folders.

    Each file is read, mixed to mono, resampled to ``sample_rate`` (the exact
    legacy resampler) and cut into windows every ``hop_size`` seconds; files
    and windows are taken at even spacing so that at most ``max_windows``
    windows come from as many files as possible.

    Parameters
    ----------
    sources : path-like or sequence of path-like
        Audio files and/or directories (searched recursively).
    sample_rate : int
        The model's rate.
    max_windows : int
    hop_size : float
        Seconds between windows within a file.

    Returns
    -------
    np.ndarray [shape=(n, sample_rate), dtype=float32]

    Raises
    ------
    AudioError
        If a source is missing or unreadable, or no audio file is found.
    """
    from ..core import _check_hop_size
    from ..exceptions import AudioError
    from ..files import collect_audio_files, read_audio
    from ..frontend import downmix, frame_audio, resample

    _check_hop_size(hop_size)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files = collect_audio_files(sources)
    if not files:
        raise AudioError(f"No audio files found for calibration in {list(map(str, sources))}.")
    n_files = min(len(files), max_windows)
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, n_files).round().astype(int)]
    per_file = -(-max_windows // n_files)
    windows = []
    for path in chosen:
        audio, sr = read_audio(path)
        mono = downmix(audio)
        if sr != sample_rate:
            mono = resample(mono, sr, sample_rate)
        framed = frame_audio(mono, sample_rate, hop_size=hop_size, center=False)
        pick = np.linspace(0, len(framed) - 1, min(per_file, len(framed))).round().astype(int)
        windows.append(np.asarray(framed[pick], dtype=np.float32))
    stacked = np.concatenate(windows)
    keep = np.linspace(0, len(stacked) - 1, min(max_windows, len(stacked))).round().astype(int)
    return stacked[keep]


def calibration_inputs(calibration, variant, frontend, sample_rate, max_windows, hop_size):
    """Network inputs (windows or log-mel patches) for the representative dataset."""
    from ..frontend import melspectrogram

    if calibration is None:
        raise ParameterError(
            "quantization='int8' needs calibration audio: pass calibration=<files or folders> "
            "(real recordings like the ones the model will see) or an array of windows."
        )
    if isinstance(calibration, np.ndarray):
        data = np.asarray(calibration, dtype=np.float32)
        if frontend is not None and data.shape[1:] == (frontend.n_mels, frontend.n_frames, 1):
            if variant != "backbone":
                raise ParameterError("log-mel calibration patches only fit variant='backbone'.")
            return data[:max_windows]
        if data.ndim == 3 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 2 or data.shape[1] != sample_rate:
            raise ParameterError(
                f"calibration windows must have shape (n, {sample_rate}) or (n, 1, "
                f"{sample_rate}); got shape {calibration.shape}."
            )
        windows = data[:max_windows]
    else:
        windows = calibration_data(
            calibration, sample_rate, max_windows=max_windows, hop_size=hop_size
        )
    if len(windows) == 0:
        raise ParameterError("calibration gave no windows.")
    if variant == "backbone":
        return melspectrogram(windows, frontend)
    return windows[:, None, :]
