"""The NumPy front end's inner steps: STFT power in cache-sized blocks, and decibels.

Used by :func:`edgel3.frontend.melspectrogram`; the same float32 operations, in the
same order, as kapre 0.1.4 (bit-identical to the straightforward implementation,
tested in ``tests/test_frontend.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .specs import FrontendConfig

__all__ = ["fft_block_windows", "stft_power", "decibels"]


#: Elements of the windowed frames one FFT call transforms (4 MiB of float32); 2**18 to
#: 2**21 measured alike on 2 cores.
_FFT_BLOCK_ELEMENTS = 2**20


def fft_block_windows(config: FrontendConfig, group: int) -> int:
    """Windows per FFT block: about ``_FFT_BLOCK_ELEMENTS``, dividing ``group`` evenly."""
    per_window = config.n_frames * config.n_dft
    block = min(group, max(1, _FFT_BLOCK_ELEMENTS // per_window))
    n_blocks = -(-group // block)
    return -(-group // n_blocks)


def stft_power(
    windows: np.ndarray,
    config: FrontendConfig,
    window: np.ndarray,
    padded: np.ndarray,
    windowed: np.ndarray,
    power: np.ndarray,
) -> None:
    """STFT power ``re² + im²`` of a block of windows, written into ``power``.

    Parameters
    ----------
    windows : np.ndarray [shape=(c, frame_length)]
        Cast to float32.
    config : FrontendConfig
    window : np.ndarray [shape=(n_dft,), dtype=float32]
        The periodic Hann window.
    padded : np.ndarray [shape=(>= c, pad_left + frame_length + pad_right), dtype=float32]
        Scratch whose padding columns are zero.
    windowed : np.ndarray [shape=(>= c, n_frames, n_dft), dtype=float32]
        Scratch.
    power : np.ndarray [shape=(c, n_frames, n_bins), dtype=float32]
        Output.
    """
    count = windows.shape[0]
    pad_left = config.same_padding[0]
    padded = padded[:count]
    padded[:, pad_left : pad_left + config.frame_length] = windows
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_dft, axis=1)
    windowed = windowed[:count]
    np.multiply(frames[:, :: config.n_hop], window, out=windowed)
    spectrum = scipy.fft.rfft(windowed, axis=-1, workers=-1)
    # re² and im² in place in the spectrum's float32 view, then re² + im² into ``power``.
    interleaved = spectrum.view(np.float32)
    np.multiply(interleaved, interleaved, out=interleaved)
    np.add(interleaved[..., 0::2], interleaved[..., 1::2], out=power)


def decibels(mel: np.ndarray, out: np.ndarray) -> None:
    """Mel power to kapre decibels, in place, then into ``out`` (mel-major).

    ``10 * ln(max(sqrt(mel), 1e-10)) / ln(10)`` in float32 (NumPy's ``log``),
    minus the maximum of each window, floored at -80: one float32 operation at
    a time, in this order, so that every value is rounded as before.

    Parameters
    ----------
    mel : np.ndarray [shape=(c, n_frames, n_mels), dtype=float32]
        Overwritten.
    out : np.ndarray [shape=(c, n_mels, n_frames)]
        Output.
    """
    np.sqrt(mel, out=mel)
    np.maximum(mel, np.float32(1e-10), out=mel)
    np.log(mel, out=mel)
    np.multiply(mel, np.float32(10.0), out=mel)
    np.divide(mel, np.float32(np.log(10.0)), out=mel)
    mel -= mel.max(axis=(1, 2), keepdims=True)
    np.maximum(mel, np.float32(-80.0), out=mel)
    out[...] = mel.transpose(0, 2, 1)
