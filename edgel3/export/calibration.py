"""Real audio for int8 calibration: windows drawn evenly from files and folders."""

from __future__ import annotations

import os

import numpy as np

from ..checks import check_hop_size, check_positive_int, check_sample_rate
from ..exceptions import ParameterError
from ..runners import as_windows

__all__ = ["calibration_data", "calibration_inputs"]

DEFAULT_CALIBRATION_WINDOWS = 200
DEFAULT_CALIBRATION_HOP = 0.5


def calibration_data(
    sources,
    sample_rate: int,
    *,
    max_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    hop_size: float = DEFAULT_CALIBRATION_HOP,
    fast_resample: bool = False,
) -> np.ndarray:
    """1-s audio windows for int8 calibration, drawn evenly from files and folders.

    Each file goes through edgel3's window pipeline
    (:func:`edgel3.engine.file_windows`: checks, downmix, resampling to
    ``sample_rate``, framing every ``hop_size`` seconds without centring);
    files and windows are taken at even spacing so that at most
    ``max_windows`` windows come from as many files as possible.

    Parameters
    ----------
    sources : path-like or sequence of path-like
        Audio files and/or directories (searched recursively).
    sample_rate : int
        The model's rate.
    max_windows : int
    hop_size : float
        Seconds between windows within a file.
    fast_resample : bool
        Resample with the fast resampler instead of the exact legacy one.

    Returns
    -------
    np.ndarray [shape=(n, sample_rate), dtype=float32]

    Raises
    ------
    AudioError
        If a source is missing or unreadable, or no audio file is found.
    ParameterError
        For invalid options.
    """
    from ..engine import file_windows
    from ..exceptions import AudioError
    from ..files import collect_audio_files

    sample_rate = check_sample_rate(sample_rate, "sample_rate")
    max_windows = check_positive_int(max_windows, "max_windows")
    hop_size = check_hop_size(hop_size)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files = collect_audio_files(sources)
    if not files:
        raise AudioError(f"No audio files found for calibration in {list(map(str, sources))}.")
    n_files = min(len(files), max_windows)
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, n_files).round().astype(int)]
    per_file = -(-max_windows // n_files)
    windows = [
        file_windows(
            path,
            sample_rate,
            hop_size=hop_size,
            center=False,
            max_windows=per_file,
            fast_resample=fast_resample,
        )[0]
        for path in chosen
    ]
    stacked = np.concatenate(windows)
    keep = np.linspace(0, len(stacked) - 1, min(max_windows, len(stacked))).round().astype(int)
    return stacked[keep]


def calibration_inputs(
    calibration, variant, frontend, sample_rate, max_windows, hop_size, *, fast_resample=False
):
    """Network inputs (windows or log-mel patches) for the converter's representative dataset.

    Parameters
    ----------
    calibration : path-like, sequence of path-like or np.ndarray
        Audio files/folders (see :func:`calibration_data`), windows
        ``(n, sample_rate)`` or ``(n, 1, sample_rate)``, or log-mel patches
        ``(n, n_mels, n_frames, 1)`` (backbone only).
    variant : {'full', 'backbone'}
    frontend : FrontendConfig or None
        The model's front end (turns windows into a backbone's patches).
    sample_rate : int
    max_windows : int
    hop_size : float
    fast_resample : bool

    Returns
    -------
    np.ndarray [shape=(n, 1, sample_rate) or (n, n_mels, n_frames, 1), dtype=float32]

    Raises
    ------
    ParameterError
        No calibration, arrays of the wrong shape, or no windows.
    """
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
        windows = as_windows(data, sample_rate, "calibration windows")[:max_windows]
    else:
        windows = calibration_data(
            calibration,
            sample_rate,
            max_windows=max_windows,
            hop_size=hop_size,
            fast_resample=fast_resample,
        )
    if len(windows) == 0:
        raise ParameterError("calibration gave no windows.")
    if variant == "backbone":
        return melspectrogram(windows, frontend)
    return windows[:, None, :]
