"""The NumPy front end's inner steps: STFT frames shared between windows, power, decibels.

Used by :func:`edgel3.frontend.melspectrogram`; the same float32 operations, in the
same order, as kapre 0.1.4 (bit-identical to the straightforward implementation,
tested in ``tests/test_frontend.py``).

Windows cut from one signal overlap: at the default hop of 0.1 s, window ``i + 1`` is
window ``i`` moved 800 samples at 8 kHz, i.e. five STFT hops of 160, so 44 of its 50
frames are frames the window before already has (the other 6 reach into the window's
own zero padding). :func:`frame_runs` finds such runs *by content* (a window equal to
the one before it moved a whole number of hops), and :func:`log_mel_into` transforms
each distinct frame once. A frame's spectrum, power, mel row and log amplitude depend
on its samples alone, so every window gets the bits it would get on its own; only the
maximum over the window and the floor are per window. Batches of unrelated windows
(another hop, other clips) simply find no run.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .blas import gemm_into, single_threaded
from .specs import FrontendConfig

__all__ = ["frame_runs", "interior_frames", "log_mel_into"]


#: Elements of the windowed frames one FFT call transforms (4 MiB of float32); 2**18 to
#: 2**21 measured alike on 2 cores.
_FFT_BLOCK_ELEMENTS = 2**20
#: Samples of STFT input (frames x n_dft) per group of windows: bounds the temporaries.
_GROUP_ELEMENTS = 2**22
#: Candidate shifts fully compared per pair of windows (silence matches many).
_MAX_CANDIDATES = 8


def interior_frames(config: FrontendConfig) -> tuple[int, int]:
    """The first and last frame of the run of a window's frames that read none of its padding.

    Frame ``f`` covers the window's samples ``f * n_hop - pad_left`` to
    ``f * n_hop - pad_left + n_dft``.

    Parameters
    ----------
    config : FrontendConfig

    Returns
    -------
    (int, int)
        ``last < first`` when every frame reads padding.
    """
    pad_left = config.same_padding[0]
    first = -(-pad_left // config.n_hop)
    last = (config.frame_length + pad_left - config.n_dft) // config.n_hop
    return first, min(last, config.n_frames - 1)


def _shift_of(previous: np.ndarray, current: np.ndarray, n_hop: int, max_hops: int) -> int:
    """The smallest shift ``s = k * n_hop`` with ``current[:-s] == previous[s:]``.

    ``1 <= k <= max_hops``; 0 when there is none.
    """
    length = previous.shape[0]
    stop = min(max_hops * n_hop, length - 1)
    if stop < n_hop:
        return 0
    # Cheap screen on the first sample, then a full comparison for a few candidates.
    candidates = np.flatnonzero(previous[n_hop : stop + 1 : n_hop] == current[0])
    for k in candidates[:_MAX_CANDIDATES] + 1:
        shift = int(k) * n_hop
        if np.array_equal(current[: length - shift], previous[shift:]):
            return shift
    return 0


def frame_runs(windows: np.ndarray, config: FrontendConfig) -> list[tuple[int, int, int]]:
    """Split a batch into runs of consecutive windows cut from one signal at one shift.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, frame_length)]
    config : FrontendConfig

    Returns
    -------
    list of (start, stop, shift)
        Covering ``0 .. n`` in order. Within a run, window ``i + 1`` equals window
        ``i`` moved ``shift`` samples (a positive multiple of ``n_hop`` small enough
        that the two share an interior frame); ``shift`` is 0 for a run of one window.

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> x = np.random.default_rng(0).standard_normal(8000 + 3 * 800)
    >>> w = np.lib.stride_tricks.sliding_window_view(x, 8000)[::800]
    >>> frame_runs(np.concatenate([w, w[:1]]), SEA_FRONTEND)
    [(0, 4, 800), (4, 5, 0)]
    """
    n_windows = windows.shape[0]
    first, last = interior_frames(config)
    max_hops = last - first  # a larger shift leaves no interior frame in common
    runs: list[tuple[int, int, int]] = []
    start, shift = 0, 0
    for i in range(1, n_windows):
        previous, current = windows[i - 1], windows[i]
        if shift:
            length = previous.shape[0]
            if np.array_equal(current[: length - shift], previous[shift:]):
                continue
            runs.append((start, i, shift))
            start, shift = i, 0
            continue
        # The run so far is window i - 1 alone.
        shift = _shift_of(previous, current, config.n_hop, max_hops)
        if not shift:
            runs.append((start, i, 0))
            start = i
    if n_windows:
        runs.append((start, n_windows, shift))
    return runs


def _windowed_power(frames, window, power, fft_workers: int) -> None:
    """``|rfft(frames * window)|²`` of ``frames`` (a, b, n_dft) into ``power`` (a, b, n_bins).

    Blocks along the first axis keep the windowed frames (about 4 MiB) in cache.
    """
    per_row = frames.shape[1] * frames.shape[2]
    block = min(frames.shape[0], max(1, _FFT_BLOCK_ELEMENTS // max(per_row, 1)))
    windowed = np.empty((block,) + frames.shape[1:], np.float32)
    for start in range(0, frames.shape[0], block):
        part = frames[start : start + block]
        chunk = windowed[: part.shape[0]]
        np.multiply(part, window, out=chunk)
        spectrum = scipy.fft.rfft(chunk, axis=-1, workers=fft_workers)
        # re² and im² in place in the spectrum's float32 view, then re² + im².
        interleaved = spectrum.view(np.float32)
        np.multiply(interleaved, interleaved, out=interleaved)
        np.add(interleaved[..., 0::2], interleaved[..., 1::2], out=power[start : start + block])


def _log_amplitude(mel: np.ndarray) -> None:
    """``10 * ln(max(sqrt(mel), 1e-10)) / ln(10)`` in place, one float32 step at a time."""
    np.sqrt(mel, out=mel)
    np.maximum(mel, np.float32(1e-10), out=mel)
    np.log(mel, out=mel)
    np.multiply(mel, np.float32(10.0), out=mel)
    np.divide(mel, np.float32(np.log(10.0)), out=mel)


def _group_log_mel(windows, shift, config, window, filterbank, fft_workers) -> np.ndarray:
    """Log amplitudes ``(c, n_frames, n_mels)`` of a run's windows (``shift`` 0: each alone)."""
    count, length = windows.shape
    pad_left, pad_right = config.same_padding
    n_hop, n_frames, n_dft = config.n_hop, config.n_frames, config.n_dft
    first, last = interior_frames(config)
    shared = bool(shift) and count > 1
    padded = np.zeros((count, pad_left + length + pad_right), np.float32)
    padded[:, pad_left : pad_left + length] = windows
    per_window = np.lib.stride_tricks.sliding_window_view(padded, n_dft, axis=1)
    if not shared:  # every frame from the window's own padded copy
        frames = [per_window[:, ::n_hop]]
    else:  # the edge frames from it, the interior frames once from the run's signal
        signal = np.empty(length + (count - 1) * shift, np.float32)
        signal[:length] = windows[0]
        signal[length:] = windows[1:, length - shift :].reshape(-1)
        hops = shift // n_hop
        n_shared = (count - 1) * hops + last - first + 1
        sliding = np.lib.stride_tricks.sliding_window_view(signal, n_dft)
        frames = [
            per_window[:, : first * n_hop : n_hop],
            per_window[:, (last + 1) * n_hop :: n_hop],
            sliding[first * n_hop - pad_left :: n_hop][None, :n_shared],
        ]
    rows = [part.shape[0] * part.shape[1] for part in frames]
    power = np.empty((sum(rows), config.n_bins), np.float32)
    start = 0
    for part, n_rows in zip(frames, rows):
        block = power[start : start + n_rows].reshape(part.shape[:2] + (config.n_bins,))
        _windowed_power(part, window, block, fft_workers)
        start += n_rows
    mel = np.empty((power.shape[0], config.n_mels), np.float32)
    # One GEMM through SciPy's BLAS, the runtime's only BLAS (edgel3.blas), on one thread:
    # a small product, and no BLAS threads left spinning against numba's. A row's bits
    # do not depend on the other rows with this OpenBLAS (its blocking follows K and N).
    with single_threaded():
        gemm_into(filterbank.T, power.T, mel.T, accumulate=False)
    _log_amplitude(mel)
    if not shared:
        return mel.reshape(count, n_frames, config.n_mels)
    out = np.empty((count, n_frames, config.n_mels), np.float32)
    left, right = rows[0], rows[0] + rows[1]
    out[:, :first] = mel[:left].reshape(count, first, config.n_mels)
    out[:, last + 1 :] = mel[left:right].reshape(count, n_frames - last - 1, config.n_mels)
    index = np.arange(count)[:, None] * hops + np.arange(last - first + 1)[None, :]
    out[:, first : last + 1] = mel[right:][index]
    return out


def log_mel_into(
    windows: np.ndarray,
    config: FrontendConfig,
    window: np.ndarray,
    filterbank: np.ndarray,
    out: np.ndarray,
    *,
    fft_workers: int = -1,
) -> None:
    """kapre decibels of a batch of windows, written into ``out`` (mel-major).

    Per window: TF 'SAME' zero padding, windowed frames, ``re² + im²``, the mel
    product, ``10 * ln(max(sqrt(mel), 1e-10)) / ln(10)``, minus the window's
    maximum, floored at -80. Frames that overlapping windows share are computed
    once (:func:`frame_runs`); the result is the same bits either way.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, frame_length)]
        Cast to float32.
    config : FrontendConfig
    window : np.ndarray [shape=(n_dft,), dtype=float32]
        The periodic Hann window.
    filterbank : np.ndarray [shape=(n_bins, n_mels), dtype=float32]
    out : np.ndarray [shape=(n, n_mels, n_frames)]
        Output.
    fft_workers : int
        SciPy FFT threads (-1: every core); 1 where the caller's own threads
        already keep every core busy. Each frame's result is the same either way.
    """
    group = max(1, _GROUP_ELEMENTS // (config.n_frames * config.n_dft))
    spans: list[list[int]] = []
    for start, stop, shift in frame_runs(windows, config):
        if not shift and spans and not spans[-1][2]:
            spans[-1][1] = stop  # windows transformed alone: one group for them all
        else:
            spans.append([start, stop, shift])
    for start, stop, shift in spans:
        for first in range(start, stop, group):
            last = min(first + group, stop)
            log_mel = _group_log_mel(
                windows[first:last], shift, config, window, filterbank, fft_workers
            )
            log_mel -= log_mel.max(axis=(1, 2), keepdims=True)
            np.maximum(log_mel, np.float32(-80.0), out=log_mel)
            out[first:last] = log_mel.transpose(0, 2, 1)
