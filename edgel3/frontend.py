"""NumPy front end: downmix, legacy resampling, 1-second framing, kapre mel spectrogram.

Everything here reproduces the input pipeline the official edgel3 0.2.1 weights
expect (``docs/frontend.rst``):

1. :func:`downmix` -- channel mean in float64;
2. :func:`resample_legacy` -- resampy < 0.3 ``kaiser_best``, bit for bit;
3. :func:`frame_audio` -- openl3 0.x framing into 1-second windows, with :func:`timestamps`;
4. :func:`melspectrogram` -- the kapre 0.1.4 ``Melspectrogram`` layer in float32
   (TF 'SAME' padding, periodic Hann, HTK mel with area norm, 10·log10 of the
   amplitude, per-window max, -80 dB floor).

The module imports neither TensorFlow nor Keras; numba (for the resampler) and
soxr (for the non-exact fast path) are imported lazily.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np

from .checks import (
    as_mono,
    check_hop_size,
    check_non_negative_int,
    check_positive_int,
    check_sample_rate,
)
from .exceptions import AudioError, ParameterError, WeightsError
from .resample import resample, resample_legacy
from .specs import FrontendConfig
from .stft import log_mel_into

__all__ = [
    "downmix",
    "resample",
    "resample_legacy",
    "hop_length",
    "n_windows",
    "frame_audio",
    "timestamps",
    "hann_window",
    "dft_kernels",
    "mel_filterbank",
    "melspectrogram",
    "check_stored_frontend",
    "KERNEL_TOLERANCE",
    "FILTERBANK_TOLERANCE",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# 1. Downmix
# ---------------------------------------------------------------------------


def downmix(audio: np.ndarray) -> np.ndarray:
    """Mix audio down to mono by the arithmetic mean over channels, in float64.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)]
        Samples x channels, as ``soundfile.read`` returns them.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]
        Mono audio. Float64 mono input is returned as is (no copy); anything
        else is a new array. The input is never modified.

    Raises
    ------
    AudioError
        If ``audio`` has more than two dimensions (or none).

    Examples
    --------
    >>> downmix(np.array([[1.0, 3.0], [0.0, -1.0]]))
    array([ 2. , -0.5])
    >>> x = np.zeros(4)
    >>> downmix(x) is x
    True
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float64, copy=False)
    if audio.ndim == 2:
        return np.mean(audio, axis=1, dtype=np.float64)
    raise AudioError(
        f"Audio must have shape (n,) or (n, channels); got an array of shape {audio.shape} "
        f"({audio.ndim} dimensions)."
    )


# ---------------------------------------------------------------------------
# 3. Framing into 1-second windows (openl3 0.x)
# ---------------------------------------------------------------------------


def hop_length(hop_size: float, sr: int) -> int:
    """Hop between windows in samples, ``int(hop_size * sr)`` (truncated, as in 0.2.1).

    Parameters
    ----------
    hop_size : float > 0
        Hop in seconds.
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        If ``hop_size`` is not a positive number, or shorter than one sample.

    Examples
    --------
    >>> hop_length(0.29, 48000)  # truncation, not rounding
    13919
    >>> hop_length(0.1, 8000)
    800
    """
    check_hop_size(hop_size)
    sr = check_sample_rate(sr)
    hop = int(hop_size * sr)
    if hop < 1:
        raise ParameterError(
            f"hop_size={hop_size!r} is shorter than one sample at sr={sr}; "
            f"use hop_size >= {1 / sr!r}."
        )
    return hop


def n_windows(n_samples: int, sr: int, hop_len: int, center: bool) -> int:
    """Number of 1-second windows :func:`frame_audio` produces.

    ``1 + ceil(max(L - sr, 0) / hop_len)`` with ``L = n_samples + int(sr / 2)``
    when ``center`` else ``n_samples``.

    Parameters
    ----------
    n_samples : int >= 0
        Length of the signal at rate ``sr``.
    sr : int > 0
        Sample rate in Hz (= window length in samples).
    hop_len : int > 0
        Hop in samples (see :func:`hop_length`).
    center : bool
        Whether ``int(sr / 2)`` zeros are prepended.

    Returns
    -------
    int

    Examples
    --------
    >>> n_windows(80000, 8000, 800, True), n_windows(80000, 8000, 800, False)
    (96, 91)
    """
    check_positive_int(sr, "sr")
    check_positive_int(hop_len, "hop_len")
    n_samples = check_non_negative_int(n_samples, "n_samples")
    length = n_samples + (int(sr / 2) if center else 0)
    return 1 + -(-max(length - sr, 0) // hop_len)


def _padded_signal(audio: np.ndarray, sr: int, hop_len: int, center: bool) -> np.ndarray:
    """Front (centring) and end zero padding, docs/frontend.rst §3 steps 2-3."""
    front = int(sr / 2) if center else 0
    length = audio.shape[0] + front
    if length < sr:
        back = sr - length
    else:
        back = -(-(length - sr) // hop_len) * hop_len - (length - sr)
    padded = np.zeros(length + back, dtype=np.float64)
    padded[front:length] = audio
    return padded


def frame_audio(audio: np.ndarray, sr: int, *, hop_size: float, center: bool) -> np.ndarray:
    """Cut mono audio into overlapping 1-second windows exactly as edgel3 0.2.1 did.

    With ``center=True``, ``int(sr / 2)`` zeros are prepended (nothing is
    appended for centring); the end is zero-padded to a whole number of hops
    (or to one window when the signal is shorter than ``sr``).

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)]
        Mono audio at the model's rate ``sr``.
    sr : int > 0
        Sample rate in Hz; one window is ``sr`` samples.
    hop_size : float > 0
        Hop between windows in seconds (truncated to ``int(hop_size * sr)`` samples).
    center : bool
        Centre window ``i`` on time ``i * hop_size`` instead of starting it there.

    Returns
    -------
    np.ndarray [shape=(n_windows, sr), dtype=float64]
        A **read-only** strided view into one padded copy of the signal
        (windows overlap in memory; no per-window copy is made). Cast slices
        to float32 to feed a model (:mod:`edgel3.pipeline` batches them).

    Raises
    ------
    ParameterError
        If ``sr`` or ``hop_size`` is invalid.
    AudioError
        If ``audio`` is not 1-D.

    Examples
    --------
    >>> w = frame_audio(np.ones(16000), 8000, hop_size=0.25, center=True)
    >>> w.shape, w.flags.writeable
    ((7, 8000), False)
    >>> float(w[0, :4000].max()), float(w[0, 4000:].min())
    (0.0, 1.0)
    """
    check_positive_int(sr, "sr")
    hop = hop_length(hop_size, sr)
    audio = as_mono(audio, "frame_audio")
    padded = _padded_signal(audio, sr, hop, center)
    windows = np.lib.stride_tricks.sliding_window_view(padded, sr)[::hop]
    return windows


def timestamps(n_frames: int, hop_size: float) -> np.ndarray:
    """Time (s) of each window: its centre with ``center=True``, else its start.

    Parameters
    ----------
    n_frames : int >= 0
        Number of windows.
    hop_size : float
        Hop in seconds (the untruncated value, as in 0.2.1).

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
        ``arange(n_frames) * hop_size``.

    Examples
    --------
    >>> timestamps(3, 0.25)
    array([0.  , 0.25, 0.5 ])
    """
    return np.arange(n_frames) * float(hop_size)


# ---------------------------------------------------------------------------
# 4. kapre 0.1.4 Melspectrogram
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hann_cached(n_dft: int) -> np.ndarray:
    # scipy.signal.get_window("hann", n_dft, fftbins=True), bit for bit (tests/test_frontend.py),
    # without importing scipy.signal (0.4 s of a TensorFlow-free start).
    angle = np.linspace(-np.pi, np.pi, n_dft + 1)
    window = (0.5 + 0.5 * np.cos(angle))[:-1].astype(np.float32)
    window.setflags(write=False)
    return window


def hann_window(n_dft: int) -> np.ndarray:
    """Periodic Hann window in float32, as kapre 0.1.4 bakes into its DFT kernels.

    Parameters
    ----------
    n_dft : int > 0
        Window length.

    Returns
    -------
    np.ndarray [shape=(n_dft,), dtype=float32]
        ``0.5 - 0.5 cos(2 pi n / n_dft)``: ``w[0] = 0``, ``w[n_dft // 2] = 1``.

    Examples
    --------
    >>> w = hann_window(1024)
    >>> w.dtype, float(w[0]), float(w[512])
    (dtype('float32'), 0.0, 1.0)
    """
    check_positive_int(n_dft, "n_dft")
    return _hann_cached(int(n_dft)).copy()


def dft_kernels(config: FrontendConfig) -> tuple[np.ndarray, np.ndarray]:
    """The windowed DFT kernels stored in the weight files (for validation only).

    kapre 0.1.4 ``get_stft_kernels``: ``real[n, k] = w[n] cos(w_k n)``,
    ``imag[n, k] = -w[n] sin(w_k n)`` with ``w_k = k * 2 * pi / n_dft``
    (float64, left to right) and ``w`` the float32 periodic Hann window.
    :func:`melspectrogram` uses an FFT instead; these exist to check stored
    kernels.

    Parameters
    ----------
    config : FrontendConfig

    Returns
    -------
    real, imag : np.ndarray [shape=(n_dft, 1, 1, n_bins), dtype=float32]

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> real, imag = dft_kernels(SEA_FRONTEND)
    >>> real.shape
    (1024, 1, 1, 513)
    """
    n_dft = config.n_dft
    w_k = np.arange(config.n_bins) * 2 * np.pi / float(n_dft)
    angle = w_k.reshape(-1, 1) * np.arange(n_dft).reshape(1, -1)
    window = _hann_cached(n_dft).reshape(1, -1)
    real = np.multiply(np.cos(angle), window).T.astype(np.float32)
    imag = np.multiply(-np.sin(angle), window).T.astype(np.float32)
    return real[:, None, None, :], imag[:, None, None, :]


def _mel_filterbank_f64(config: FrontendConfig) -> np.ndarray:
    """librosa < 0.7 ``filters.mel(htk=True, norm=1)`` in float64, shape (n_mels, n_bins)."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fftfreqs = np.linspace(0, float(config.sample_rate) / 2, config.n_bins, endpoint=True)
    mels = np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.mel_fmax), config.n_mels + 2)
    mel_f = mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((config.n_mels, config.n_bins))
    for i in range(config.n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    # Area (Slaney) normalisation: what librosa < 0.7 did for norm=1.
    enorm = 2.0 / (mel_f[2 : config.n_mels + 2] - mel_f[: config.n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


@functools.lru_cache(maxsize=8)
def _mel_filterbank_cached(config: FrontendConfig) -> np.ndarray:
    fb = np.ascontiguousarray(_mel_filterbank_f64(config).T, dtype=np.float32)
    fb.setflags(write=False)
    return fb


def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """HTK-scale mel filterbank with area normalisation, as stored by kapre 0.1.4.

    Built in float64 and cast to float32 it is bit-identical to the matrix in
    the official weight files. Bins 0 and ``n_dft / 2`` get no weight; at
    48 kHz / 256 mels, filters 0 and 7 contain no bin at all (all-zero columns).

    Parameters
    ----------
    config : FrontendConfig
        Uses ``sample_rate``, ``n_dft``, ``n_mels``, ``fmin``, ``mel_fmax``.

    Returns
    -------
    np.ndarray [shape=(n_bins, n_mels), dtype=float32]
        Apply as ``power @ filterbank``.

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> mel_filterbank(SEA_FRONTEND).shape
    (513, 64)
    """
    return _mel_filterbank_cached(config).copy()


def melspectrogram(
    windows: np.ndarray,
    config: FrontendConfig,
    *,
    filterbank: np.ndarray | None = None,
    fft_workers: int = -1,
) -> np.ndarray:
    """The kapre 0.1.4 ``Melspectrogram`` layer of the official models, in float32 NumPy.

    Per window: TF 'SAME' zero padding, STFT frames of ``n_dft`` every
    ``n_hop`` samples, periodic Hann, power ``re² + im²``, mel weighting,
    ``A = sqrt(mel power)``, ``10 * log10(max(A, 1e-10))``, minus the maximum
    over the window, floored at -80. Each window is independent: the result
    does not depend on which other windows are in the batch. An all-zero
    window gives all zeros (not -80), as in the original.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, frame_length), float32 or float64]
        One-second windows at ``config.sample_rate`` (e.g. from
        :func:`frame_audio`). Cast to float32 before the transform.
    config : FrontendConfig
        Front-end constants (``SEA_FRONTEND`` or ``SPARSE_FRONTEND``).
    filterbank : np.ndarray [shape=(n_bins, n_mels)], optional
        Mel matrix, e.g. the one loaded from a weight file; defaults to
        :func:`mel_filterbank` ``(config)``.
    fft_workers : int
        FFT threads (-1: every core); 1 when the caller runs one window chunk per
        core itself. The result does not depend on it.

    Returns
    -------
    np.ndarray [shape=(n, n_mels, n_frames, 1), dtype=float32]
        Decibels in [-80, 0]; mel band low→high, STFT frame, channel (the
        model's channels-last layout).

    Raises
    ------
    ParameterError
        If ``windows`` or ``filterbank`` do not match ``config``.

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> t = np.arange(8000) / 8000
    >>> S = melspectrogram(np.sin(2 * np.pi * 440 * t)[None], SEA_FRONTEND)
    >>> S.shape, float(S.max())
    ((1, 64, 50, 1), 0.0)
    >>> int(S[0, :, 25, 0].argmax())  # 440 Hz lies in mel band 16
    16
    """
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] != config.frame_length:
        raise ParameterError(
            f"windows must have shape (n, {config.frame_length}) for sample_rate="
            f"{config.sample_rate}; got shape {windows.shape}."
        )
    if filterbank is None:
        fb = _mel_filterbank_cached(config)
    else:
        fb = np.ascontiguousarray(filterbank, dtype=np.float32)
        if fb.shape != (config.n_bins, config.n_mels):
            raise ParameterError(
                f"filterbank must have shape ({config.n_bins}, {config.n_mels}); "
                f"got shape {fb.shape}."
            )
    out = np.empty((windows.shape[0], config.n_mels, config.n_frames, 1), dtype=np.float32)
    log_mel_into(
        windows, config, _hann_cached(config.n_dft), fb, out[..., 0], fft_workers=fft_workers
    )
    return out


#: Stored DFT kernels vs recomputed (bit-exact in SEA-64).
KERNEL_TOLERANCE = 1e-6
#: Stored mel matrix vs recomputed (bit-exact in SEA-64).
FILTERBANK_TOLERANCE = 2e-9


def check_stored_frontend(
    arrays: Sequence[np.ndarray], config: FrontendConfig, source: str
) -> np.ndarray:
    """Check a weight file's kapre DFT kernels and mel matrix against the recipe here.

    Parameters
    ----------
    arrays : sequence of np.ndarray
        The kapre layer's stored (real kernels, imaginary kernels, mel filterbank).
    config : FrontendConfig
    source : str
        The file, for messages.

    Returns
    -------
    np.ndarray [shape=(n_bins, n_mels)]
        The stored filterbank.

    Raises
    ------
    WeightsError
        If a shape differs or a value is off by more than the tolerance.
    """
    if len(arrays) != 3:
        raise WeightsError(
            f"{source}: the mel-spectrogram layer stores {len(arrays)} arrays; expected 3 "
            "(real kernels, imaginary kernels, mel filterbank)."
        )
    real, imag, filterbank = arrays
    expected_real, expected_imag = dft_kernels(config)
    expected_fb = mel_filterbank(config)
    checks = (
        ("real DFT kernels", real, expected_real, KERNEL_TOLERANCE),
        ("imaginary DFT kernels", imag, expected_imag, KERNEL_TOLERANCE),
        ("mel filterbank", filterbank, expected_fb, FILTERBANK_TOLERANCE),
    )
    for label, stored, expected, tolerance in checks:
        if stored.shape != expected.shape:
            raise WeightsError(
                f"{source}: stored {label} have shape {stored.shape}; the front end "
                f"{config} needs {expected.shape}."
            )
        error = float(np.max(np.abs(stored.astype(np.float64) - expected)))
        if error > tolerance:
            raise WeightsError(
                f"{source}: stored {label} differ from the kapre-0.1.4 recipe by {error:.3g} "
                f"(tolerance {tolerance:g}); this file was not made with the expected front end."
            )
    return filterbank
