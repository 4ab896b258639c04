"""The log-mel input of a backbone export, computed as a microcontroller computes it.

A quantized export takes a log-mel patch, so a device computes kapre's front end
itself (docs/frontend.rst §4) from its integer microphone samples. This module is
the reference for that computation, in NumPy, in the arithmetic a Cortex-M4F/M7
uses (docs/deploy_mcu.rst):

1. int16 samples of one 1-s window at the model's rate, TF 'SAME' zero padding,
   frames of ``n_dft`` every ``n_hop`` samples;
2. each frame to float32 (``q / 32768``, exact: CMSIS ``arm_q15_to_float``), times
   the periodic Hann window;
3. the radix-2 real FFT of :mod:`edgel3.export.micro_fft` (CMSIS-DSP's
   ``arm_rfft_fast_f32`` structure), power ``re² + im²``;
4. the mel weighting from a sparse filterbank (:class:`SparseMel`: per band its
   first bin and its weights), one float32 multiply-add after another;
5. ``5 log10(max(mel, 1e-20))`` (= kapre's ``10 log10(max(sqrt(mel), 1e-10))``),
   minus the window's maximum, floored at -80;
6. int8 with the export's input scale and zero point (``roundf``, saturating).

:func:`frontend_cost` counts its operations and buffers;
:class:`edgel3.export.micro_model.MicroFrontendModel` runs an int8 export on patches made
this way (a runner, usable as ``model=``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import check_choice
from ..exceptions import ParameterError
from ..frontend import hann_window, mel_filterbank
from ..specs import FrontendConfig
from .micro_fft import check_fft_length, fft_op_counts, fft_table_bytes, packed_power, rfft_packed

__all__ = [
    "ARITHMETICS",
    "INT16_SCALE",
    "POWER_FLOOR",
    "DYNAMIC_RANGE_DB",
    "SparseMel",
    "sparse_mel",
    "sparse_mel_for",
    "to_int16",
    "micro_melspectrogram",
    "quantize_patches",
    "dequantize_patches",
    "FrontendCost",
    "frontend_cost",
]

#: Arithmetic of the reference front end (float32: Cortex-M4F/M7, ESP32-S3 have an FPU).
ARITHMETICS = ("float32",)
#: int16 -> float32 factor, a power of two (exact): CMSIS ``arm_q15_to_float``.
INT16_SCALE = np.float32(2.0**-15)
#: kapre's 1e-10 amplitude floor as a floor on mel power: ``sqrt(1e-20) = 1e-10``.
POWER_FLOOR = np.float32(1e-20)
#: Cells lower than this many dB below the window's maximum are set to -80.
DYNAMIC_RANGE_DB = np.float32(80.0)

_F32 = np.float32


@dataclass(frozen=True, eq=False)
class SparseMel:
    """A mel filterbank stored band by band: first bin, count, weights.

    Each band's non-zero weights are consecutive bins (a triangle), so a band is
    ``counts[b]`` weights starting at bin ``first_bin[b]``; ``weights`` holds
    them band after band. An empty band has count 0 (48 kHz filters 0 and 7).

    Attributes
    ----------
    first_bin : np.ndarray [shape=(n_mels,), dtype=int32]
    counts : np.ndarray [shape=(n_mels,), dtype=int32]
    weights : np.ndarray [shape=(sum(counts),), dtype=float32]
    n_bins : int
        FFT bins of the dense matrix, ``n_dft // 2 + 1``.
    """

    first_bin: np.ndarray
    counts: np.ndarray
    weights: np.ndarray
    n_bins: int

    @property
    def n_mels(self) -> int:
        """Number of bands."""
        return int(self.counts.size)

    @property
    def offsets(self) -> np.ndarray:
        """Index of each band's first weight in :attr:`weights`, shape ``(n_mels,)``."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int32)

    def dense(self) -> np.ndarray:
        """The filterbank as a dense ``(n_bins, n_mels)`` float32 matrix."""
        out = np.zeros((self.n_bins, self.n_mels), dtype=_F32)
        for band, (first, count, offset) in enumerate(
            zip(self.first_bin, self.counts, self.offsets)
        ):
            out[first : first + count, band] = self.weights[offset : offset + count]
        return out

    def _padded(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin index, weight) per band and step, zero weight past each band's count."""
        width = max(int(self.counts.max(initial=0)), 1)
        steps = np.arange(width)
        index = np.minimum(self.first_bin[:, None] + steps, self.n_bins - 1)
        inside = steps < self.counts[:, None]
        weight = np.zeros((self.n_mels, width), dtype=_F32)
        weight[inside] = self.weights
        return index, weight


def sparse_mel(filterbank: np.ndarray) -> SparseMel:
    """The sparse form of a dense mel filterbank (the model's, or one read from a file).

    Parameters
    ----------
    filterbank : np.ndarray [shape=(n_bins, n_mels)]
        As :func:`edgel3.frontend.mel_filterbank` returns it (``power @ filterbank``).

    Returns
    -------
    SparseMel
        Weights rounded to float32; ``sparse_mel(F).dense()`` equals ``F`` in float32.

    Raises
    ------
    ParameterError
        If ``filterbank`` is not 2-D, or a band has zeros between its first and last
        non-zero bin (not a filterbank of contiguous bands).

    Examples
    --------
    >>> from edgel3.frontend import mel_filterbank
    >>> from edgel3.specs import SEA_FRONTEND
    >>> mel = sparse_mel(mel_filterbank(SEA_FRONTEND))
    >>> mel.n_mels, int(mel.first_bin[0]), int(mel.counts[0]), int(mel.counts.sum())
    (64, 1, 5, 1003)
    """
    fb = np.asarray(filterbank, dtype=_F32)
    if fb.ndim != 2:
        raise ParameterError(f"filterbank must have shape (n_bins, n_mels); got {fb.shape}.")
    first, counts, weights = [], [], []
    for band in range(fb.shape[1]):
        nonzero = np.flatnonzero(fb[:, band])
        if nonzero.size == 0:
            first.append(0)
            counts.append(0)
            continue
        start, stop = int(nonzero[0]), int(nonzero[-1]) + 1
        if stop - start != nonzero.size:
            raise ParameterError(
                f"mel band {band} has zero weights between bins {start} and {stop - 1}; "
                "the sparse form stores one run of consecutive bins per band."
            )
        first.append(start)
        counts.append(stop - start)
        weights.append(fb[start:stop, band])
    return SparseMel(
        np.asarray(first, dtype=np.int32),
        np.asarray(counts, dtype=np.int32),
        np.concatenate(weights).astype(_F32) if weights else np.zeros(0, _F32),
        int(fb.shape[0]),
    )


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1) to int16 samples, as a 16-bit ADC delivers them.

    ``round(x * 32768)``, saturating at -32768 and 32767.

    Parameters
    ----------
    audio : np.ndarray [shape=(...)]

    Returns
    -------
    np.ndarray [shape=(...), dtype=int16]

    Examples
    --------
    >>> to_int16(np.array([0.5, -1.0, 1.0, 1e-6]))
    array([ 16384, -32768,  32767,      0], dtype=int16)
    """
    scaled = np.round(np.asarray(audio, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _check_config(config: FrontendConfig) -> None:
    if not isinstance(config, FrontendConfig):
        raise ParameterError(f"config must be a FrontendConfig; got {type(config).__name__}.")
    check_fft_length(config.n_dft)


def sparse_mel_for(config: FrontendConfig, filterbank=None) -> SparseMel:
    """The sparse filterbank of ``config``: ``filterbank`` given, or the recipe's.

    Parameters
    ----------
    config : FrontendConfig
    filterbank : np.ndarray [shape=(n_bins, n_mels)] or SparseMel, optional
        Default :func:`edgel3.frontend.mel_filterbank` ``(config)``.

    Returns
    -------
    SparseMel

    Raises
    ------
    ParameterError
        If the filterbank's shape does not match ``config``.
    """
    if isinstance(filterbank, SparseMel):
        mel = filterbank
    else:
        mel = sparse_mel(mel_filterbank(config) if filterbank is None else filterbank)
    if (mel.n_bins, mel.n_mels) != (config.n_bins, config.n_mels):
        raise ParameterError(
            f"filterbank must have shape ({config.n_bins}, {config.n_mels}); "
            f"got ({mel.n_bins}, {mel.n_mels})."
        )
    return mel


def micro_melspectrogram(
    windows: np.ndarray, config: FrontendConfig, *, filterbank=None
) -> np.ndarray:
    """kapre's log-mel patch of int16 windows, in a microcontroller's float32 arithmetic.

    The same patch as :func:`edgel3.frontend.melspectrogram` on ``windows / 32768``
    (docs/deploy_mcu.rst gives the measured difference), computed the way
    docs/deploy_mcu.rst describes for a device: the radix-2 real FFT of
    :func:`~edgel3.export.micro_fft.rfft_packed`, a sparse mel filterbank summed
    bin by bin, ``5 log10`` of the mel power. An all-zero window gives all zeros,
    as in the float front end.

    Parameters
    ----------
    windows : np.ndarray [shape=(n, sample_rate), dtype=int16]
        1-s windows of int16 samples at ``config.sample_rate`` (:func:`to_int16`).
    config : FrontendConfig
        ``n_dft`` must be a power of two.
    filterbank : np.ndarray [shape=(n_bins, n_mels)] or SparseMel, optional
        The model's mel matrix (e.g. stored in its weight file); default
        :func:`edgel3.frontend.mel_filterbank` ``(config)``.

    Returns
    -------
    np.ndarray [shape=(n, n_mels, n_frames, 1), dtype=float32]
        Decibels in [-80, 0], the model's layout.

    Raises
    ------
    ParameterError
        For windows that are not int16 of shape ``(n, sample_rate)``, an
        ``n_dft`` that is not a power of two, or a filterbank of another shape.

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> t = np.arange(8000) / 8000
    >>> S = micro_melspectrogram(to_int16(0.5 * np.sin(2 * np.pi * 440 * t))[None],
    ...                          SEA_FRONTEND)
    >>> S.shape, float(S.max()), int(S[0, :, 25, 0].argmax())
    ((1, 64, 50, 1), 0.0, 16)
    """
    _check_config(config)
    windows = np.asarray(windows)
    if windows.dtype != np.int16 or windows.ndim != 2 or windows.shape[1] != config.frame_length:
        raise ParameterError(
            f"windows must be int16 samples of shape (n, {config.frame_length}); got "
            f"{windows.dtype} of shape {windows.shape} (convert float audio with to_int16)."
        )
    mel = sparse_mel_for(config, filterbank)
    pad_left, pad_right = config.same_padding
    padded = np.pad(windows, ((0, 0), (pad_left, pad_right)))
    starts = np.arange(config.n_frames) * config.n_hop
    samples = padded[:, starts[:, None] + np.arange(config.n_dft)]  # (n, frames, n_dft) int16
    frames = samples.astype(_F32) * INT16_SCALE  # exact
    frames *= hann_window(config.n_dft)
    power = packed_power(rfft_packed(frames))  # (n, frames, n_bins)
    index, weight = mel._padded()
    acc = np.zeros((*power.shape[:2], mel.n_mels), dtype=_F32)
    for step in range(weight.shape[1]):  # acc += w * P, bin after bin (weight 0: no change)
        acc += weight[:, step] * power[..., index[:, step]]
    db = _F32(5.0) * np.log10(np.maximum(acc, POWER_FLOOR))
    db -= db.max(axis=(1, 2), keepdims=True)
    np.maximum(db, -DYNAMIC_RANGE_DB, out=db)
    return np.ascontiguousarray(db.transpose(0, 2, 1))[..., None]


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C ``roundf``: nearest integer, ties away from zero (NumPy rounds ties to even)."""
    rounded = np.round(x)
    tie = np.abs(x - np.trunc(x)) == 0.5
    rounded[tie] = (np.trunc(x) + np.sign(x))[tie]
    return rounded


def _check_quantization(scale, zero_point) -> tuple[np.float32, int]:
    if not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"scale must be a positive number; got scale={scale!r}.")
    if not (-128 <= int(zero_point) <= 127) or int(zero_point) != zero_point:
        raise ParameterError(
            f"zero_point must be an integer in [-128, 127]; got zero_point={zero_point!r}."
        )
    return _F32(scale), int(zero_point)


def quantize_patches(patches: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 input of an export: ``clamp(roundf(x / scale) + zero_point, -128, 127)``.

    The arithmetic of TFLite Micro's Quantize kernel (float32 division, ties away
    from zero), written for the device in docs/deploy_mcu.rst.

    Parameters
    ----------
    patches : np.ndarray [shape=(...)]
        Decibels (float32).
    scale : float > 0
    zero_point : int in [-128, 127]
        The export's input quantization (its sidecar's ``input``).

    Returns
    -------
    np.ndarray [shape=(...), dtype=int8]

    Examples
    --------
    >>> quantize_patches(np.array([0.0, -80.0, -40.0]), 80 / 255, 127)
    array([ 127, -128,    0], dtype=int8)
    """
    scale, zero_point = _check_quantization(scale, zero_point)
    x = np.asarray(patches, dtype=_F32) / scale
    return np.clip(_round_half_away(x) + zero_point, -128, 127).astype(np.int8)


def dequantize_patches(codes: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float32 values of int8 codes, ``(q - zero_point) * scale``.

    Quantizing them again with the same scale gives ``codes`` back exactly (the
    product is within a few float32 ulps of an integer multiple of ``scale``).

    Parameters
    ----------
    codes : np.ndarray [dtype=int8]
    scale : float > 0
    zero_point : int in [-128, 127]

    Returns
    -------
    np.ndarray [dtype=float32]
    """
    scale, zero_point = _check_quantization(scale, zero_point)
    return (np.asarray(codes, dtype=_F32) - _F32(zero_point)) * scale


@dataclass(frozen=True)
class FrontendCost:
    """Operations and memory of the microcontroller front end for one 1-s window.

    Attributes
    ----------
    macs : int
        Multiplies (and multiply-adds) of the DSP chain: window, FFT butterflies
        and split, power, mel weighting.
    ops : dict of str to int
        Every kind of operation counted (see :func:`frontend_cost`).
    buffer_bytes : int
        RAM while one window is computed: the sum of :attr:`buffers`.
    table_bytes : int
        Flash constants: the sum of :attr:`tables`.
    buffers : dict of str to int
        ``frame`` (float32 FFT input, transformed in place), ``spectrum`` (float32
        packed FFT output), ``power`` (float32 per bin), ``patch`` (float32 log-mel
        patch, kept until the window's maximum is known).
    tables : dict of str to int
        ``window``, ``cfft_twiddles``, ``rfft_twiddles``, ``bit_reversal``,
        ``mel_index`` (uint16 first bin and count per band), ``mel_weights``.
    audio_bytes : int
        The int16 1-s window the front end reads. It lives in the application's
        audio ring buffer and is **not** part of :attr:`buffer_bytes`; the int8
        patch is written straight into the interpreter's input tensor (arena).
    arithmetic : str
    """

    macs: int
    ops: dict = field(default_factory=dict)
    buffer_bytes: int = 0
    table_bytes: int = 0
    buffers: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    audio_bytes: int = 0
    arithmetic: str = "float32"


def frontend_cost(
    config: FrontendConfig, *, arithmetic: str = "float32", filterbank=None
) -> FrontendCost:
    """Operation counts and buffer sizes of :func:`micro_melspectrogram` per window.

    Counted from the code, per 1-s window (``n_frames`` FFT frames): padding
    samples are transformed like any other.

    Parameters
    ----------
    config : FrontendConfig
    arithmetic : {'float32'}
        The arithmetic of the reference implementation (docs/deploy_mcu.rst).
    filterbank : np.ndarray [shape=(n_bins, n_mels)] or SparseMel, optional
        For the mel weights' count; default the recipe's matrix.

    Returns
    -------
    FrontendCost

    Raises
    ------
    ParameterError
        For another arithmetic, or an ``n_dft`` that is not a power of two.

    Examples
    --------
    >>> from edgel3.specs import SEA_FRONTEND
    >>> cost = frontend_cost(SEA_FRONTEND)
    >>> cost.ops["log10_calls"], cost.buffers["patch"]
    (3200, 12800)
    """
    check_choice(arithmetic, ARITHMETICS, "arithmetic")
    _check_config(config)
    mel = sparse_mel_for(config, filterbank)
    frames, n_dft, cells = config.n_frames, config.n_dft, config.n_mels * config.n_frames
    fft = {name: frames * count for name, count in fft_op_counts(n_dft).items()}
    ops = {
        "int16_to_float32": frames * n_dft,
        "window_multiplies": frames * n_dft,
        **fft,
        "mel_macs": frames * int(mel.counts.sum()),
        "log10_calls": cells,
        "db_multiplies": cells,
        "max_compares": 2 * cells,  # the window's maximum, then the -80 floor
        "db_subtracts": cells,
        "quantize_divides": cells,
        "quantize_rounds": cells,
    }
    macs = (
        ops["window_multiplies"] + ops["fft_multiplies"] + ops["power_multiplies"] + ops["mel_macs"]
    )
    buffers = {
        "frame": 4 * n_dft,
        "spectrum": 4 * n_dft,
        "power": 4 * config.n_bins,
        "patch": 4 * cells,
    }
    tables = {
        "window": 4 * n_dft,
        **fft_table_bytes(n_dft),
        "mel_index": 2 * 2 * config.n_mels,
        "mel_weights": 4 * int(mel.counts.sum()),
    }
    return FrontendCost(
        macs=int(macs),
        ops=ops,
        buffer_bytes=sum(buffers.values()),
        table_bytes=sum(tables.values()),
        buffers=buffers,
        tables=tables,
        audio_bytes=2 * config.frame_length,
        arithmetic=arithmetic,
    )
