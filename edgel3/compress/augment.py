"""Audio augmentation of 1-s windows for distillation: gain, mixing, noise, time shift.

All functions take a batch of windows ``(n, length)`` and a NumPy random
generator and return a new float32 array (the input is never modified).
Distillation targets come from the teacher *on the augmented audio*, so the
augmentations need not preserve anything: they only widen the input
distribution a small corpus covers (docs/compress.rst).

Note that the edgel3 mel front end normalises each window to its own maximum,
so a gain alone changes the embedding only through the -80 dB floor; gain
matters mostly combined with mixing and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ParameterError

__all__ = ["random_gain", "mix", "add_noise", "time_shift", "Augmenter"]

_EPS = 1e-12  # power floor for silent windows


def _as_batch(windows) -> np.ndarray:
    batch = np.asarray(windows, dtype=np.float32)
    if batch.ndim != 2:
        raise ParameterError(f"windows must have shape (n, length); got shape {batch.shape}.")
    return batch


def _check_range(values, name: str) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if low > high:
        raise ParameterError(f"{name} must be a (low, high) range; got {name}={values!r}.")
    return low, high


def _power(batch: np.ndarray) -> np.ndarray:
    return np.mean(batch.astype(np.float64) ** 2, axis=1)


def random_gain(windows, rng: np.random.Generator, gain_db=(-12.0, 6.0)) -> np.ndarray:
    """Scale each window by a random gain, uniform in decibels.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, length)]
    rng : np.random.Generator
    gain_db : (float, float)
        Range of gains in dB.

    Returns
    -------
    np.ndarray [shape=(n, length), dtype=float32]
    """
    batch = _as_batch(windows)
    low, high = _check_range(gain_db, "gain_db")
    gains = 10.0 ** (rng.uniform(low, high, size=len(batch)) / 20.0)
    return (batch * gains[:, None]).astype(np.float32)


def mix(windows, others, rng: np.random.Generator, snr_db=(0.0, 20.0)) -> np.ndarray:
    """Add another window to each window at a random signal-to-interference ratio.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, length)]
    others : np.ndarray [shape=(n, length)]
        The windows mixed in (e.g. the same batch shuffled).
    rng : np.random.Generator
    snr_db : (float, float)
        Range of the ratio of ``windows`` power to the added ``others`` power (dB).

    Returns
    -------
    np.ndarray [shape=(n, length), dtype=float32]
    """
    batch, other = _as_batch(windows), _as_batch(others)
    if other.shape != batch.shape:
        raise ParameterError(f"others must have shape {batch.shape}; got {other.shape}.")
    low, high = _check_range(snr_db, "snr_db")
    snr = 10.0 ** (rng.uniform(low, high, size=len(batch)) / 10.0)
    scale = np.sqrt(_power(batch) / (snr * _power(other) + _EPS))
    # A silent window simply takes the other one at its own level.
    scale = np.where(_power(batch) > _EPS, scale, 1.0)
    return (batch + other * scale[:, None].astype(np.float32)).astype(np.float32)


def add_noise(
    windows, rng: np.random.Generator, snr_db=(10.0, 40.0), *, color: str = "white"
) -> np.ndarray:
    """Add white or pink Gaussian noise at a random signal-to-noise ratio.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, length)]
    rng : np.random.Generator
    snr_db : (float, float)
        Range of SNRs (dB). Silent windows get noise at -60 dBFS.
    color : {'white', 'pink'}

    Returns
    -------
    np.ndarray [shape=(n, length), dtype=float32]
    """
    batch = _as_batch(windows)
    low, high = _check_range(snr_db, "snr_db")
    noise = rng.standard_normal(batch.shape)
    if color == "pink":
        spectrum = np.fft.rfft(noise, axis=1)
        freqs = np.arange(spectrum.shape[1], dtype=np.float64)
        spectrum /= np.sqrt(np.maximum(freqs, 1.0))
        noise = np.fft.irfft(spectrum, n=batch.shape[1], axis=1)
    elif color != "white":
        raise ParameterError(f"color must be 'white' or 'pink'; got color={color!r}.")
    snr = 10.0 ** (rng.uniform(low, high, size=len(batch)) / 10.0)
    signal = _power(batch)
    target = np.where(signal > _EPS, signal / snr, 1e-6)
    noise *= np.sqrt(target / (_power(noise) + _EPS))[:, None]
    return (batch + noise).astype(np.float32)


def time_shift(windows, rng: np.random.Generator, max_shift: float = 0.25) -> np.ndarray:
    """Shift each window by a random offset, filling with zeros.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, length)]
    rng : np.random.Generator
    max_shift : float
        Largest shift as a fraction of the window, in either direction.

    Returns
    -------
    np.ndarray [shape=(n, length), dtype=float32]
    """
    batch = _as_batch(windows)
    if not 0.0 <= max_shift < 1.0:
        raise ParameterError(f"max_shift must lie in [0, 1); got max_shift={max_shift!r}.")
    length = batch.shape[1]
    limit = int(max_shift * length)
    out = np.zeros_like(batch)
    for row, shift in enumerate(rng.integers(-limit, limit + 1, size=len(batch))):
        if shift >= 0:
            out[row, shift:] = batch[row, : length - shift]
        else:
            out[row, :shift] = batch[row, -shift:]
    return out


@dataclass
class Augmenter:
    """Random chain of augmentations, each applied to a window with its probability.

    Parameters
    ----------
    p_gain, p_mix, p_noise, p_shift : float
        Probability that a window gets each augmentation.
    gain_db : (float, float)
        Gain range (dB).
    mix_snr_db : (float, float)
        Ratio of the window to the mixed-in window (dB).
    noise_snr_db : (float, float)
        SNR range of the added noise (dB); the colour is white or pink at random.
    max_shift : float
        Largest time shift (fraction of a window).

    Examples
    --------
    >>> aug = Augmenter(p_mix=1.0)
    >>> batch = np.random.default_rng(0).normal(size=(4, 8000))
    >>> aug(batch, np.random.default_rng(1)).shape
    (4, 8000)
    """

    p_gain: float = 0.5
    p_mix: float = 0.5
    p_noise: float = 0.3
    p_shift: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    mix_snr_db: tuple[float, float] = (0.0, 20.0)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    max_shift: float = 0.25

    def __post_init__(self):
        for name in ("p_gain", "p_mix", "p_noise", "p_shift"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ParameterError(f"{name} must be a probability in [0, 1]; got {value!r}.")

    def __call__(self, windows, rng: np.random.Generator, pool=None) -> np.ndarray:
        """Augment a batch.

        Parameters
        ----------
        windows : np.ndarray [shape=(n, length)]
        rng : np.random.Generator
        pool : np.ndarray [shape=(m, length)], optional
            Windows to mix in (default: the batch itself, shuffled).

        Returns
        -------
        np.ndarray [shape=(n, length), dtype=float32]
        """
        out = _as_batch(windows).copy()
        n = len(out)

        def chosen(p):
            return np.flatnonzero(rng.random(n) < p)

        rows = chosen(self.p_shift)
        if rows.size:
            out[rows] = time_shift(out[rows], rng, self.max_shift)
        rows = chosen(self.p_mix)
        if rows.size:
            source = out if pool is None else _as_batch(pool)
            partners = source[rng.integers(0, len(source), size=rows.size)]
            out[rows] = mix(out[rows], partners, rng, self.mix_snr_db)
        rows = chosen(self.p_noise)
        if rows.size:
            color = "pink" if rng.random() < 0.5 else "white"
            out[rows] = add_noise(out[rows], rng, self.noise_snr_db, color=color)
        rows = chosen(self.p_gain)
        if rows.size:
            out[rows] = random_gain(out[rows], rng, self.gain_db)
        return out
