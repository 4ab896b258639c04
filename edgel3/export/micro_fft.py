"""The real FFT of a microcontroller front end, in float32, as CMSIS-DSP computes it.

``arm_rfft_fast_f32`` transforms ``N`` real samples with an ``N/2``-point complex
FFT of the samples taken in pairs (``z[n] = x[2n] + i x[2n+1]``) followed by a
*split* step (``stage_rfft_f32``) that separates the even and odd halves. Here the
complex FFT is CMSIS-DSP's radix-2 decimation-in-frequency transform
(``arm_radix2_butterfly_f32``: every stage but the last multiplies by a twiddle
factor, the last adds and subtracts; then bit reversal), and the split step is
``stage_rfft_f32`` operation for operation. Every multiply and add is rounded to
float32 on its own, as a build with ``-ffp-contract=off`` does (docs/deploy_mcu.rst,
"Arithmetic"). ``arm_rfft_fast_f32`` itself calls ``arm_cfft_f32``, whose radix-8
stages round in another order: same spectrum within float32 FFT rounding.

The output keeps CMSIS's packed layout: ``[X[0], X[N/2], Re X[1], Im X[1], ...,
Re X[N/2-1], Im X[N/2-1]]`` (DC and Nyquist are real and share the first pair).
"""

from __future__ import annotations

import functools

import numpy as np

from ..exceptions import ParameterError

__all__ = [
    "check_fft_length",
    "cfft_radix2",
    "rfft_packed",
    "packed_power",
    "fft_op_counts",
    "fft_table_bytes",
]

_F32 = np.float32
_HALF = np.float32(0.5)


def check_fft_length(n_dft: int) -> int:
    """Check that ``n_dft`` is a power of two the radix-2 real FFT handles (>= 8).

    Raises
    ------
    ParameterError
        Otherwise, with the value received.
    """
    if isinstance(n_dft, bool) or not isinstance(n_dft, (int, np.integer)):
        raise ParameterError(f"n_dft must be an integer power of two >= 8; got {n_dft!r}.")
    n_dft = int(n_dft)
    if n_dft < 8 or n_dft & (n_dft - 1):
        raise ParameterError(
            f"The radix-2 real FFT needs n_dft a power of two >= 8; got n_dft={n_dft}."
        )
    return n_dft


@functools.lru_cache(maxsize=16)
def _stage_twiddles(block: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin of ``2 pi j / block`` for ``j < block / 2``, as CMSIS stores them (float32)."""
    angle = 2.0 * np.pi * np.arange(block // 2) / block
    return np.cos(angle).astype(_F32), np.sin(angle).astype(_F32)


@functools.lru_cache(maxsize=16)
def _split_twiddles(n_dft: int) -> tuple[np.ndarray, np.ndarray]:
    """``twiddleCoef_rfft_N``: (twR, twI) = (sin, cos) of ``2 pi k / N``, ``k < N / 2``."""
    angle = 2.0 * np.pi * np.arange(n_dft // 2) / n_dft
    return np.sin(angle).astype(_F32), np.cos(angle).astype(_F32)


@functools.lru_cache(maxsize=16)
def _bit_reversal(n: int) -> np.ndarray:
    bits = n.bit_length() - 1
    index = np.arange(n)
    reversed_ = np.zeros(n, dtype=np.intp)
    for b in range(bits):
        reversed_ |= ((index >> b) & 1) << (bits - 1 - b)
    return reversed_


def cfft_radix2(real: np.ndarray, imag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward complex FFT, radix-2 decimation in frequency, in float32 step by step.

    ``arm_cfft_radix2_f32`` with ``ifftFlag = 0`` and ``bitReverseFlag = 1``:
    unnormalised, ``X[k] = sum_n z[n] exp(-2 pi i k n / M)``.

    Parameters
    ----------
    real, imag : np.ndarray [shape=(..., M), dtype=float32]
        ``M`` a power of two >= 4. Not modified.

    Returns
    -------
    real, imag : np.ndarray [shape=(..., M), dtype=float32]
        The spectrum in natural order.
    """
    re = np.array(real, dtype=_F32)
    im = np.array(imag, dtype=_F32)
    m = re.shape[-1]
    lead = re.shape[:-1]
    half = m // 2
    # Stages with twiddles: butterfly spans m, m/2, ..., 4 (CMSIS's first stage and its loop).
    while half >= 2:
        block = 2 * half
        cos, sin = _stage_twiddles(block)
        r = re.reshape(*lead, m // block, 2, half)
        i = im.reshape(*lead, m // block, 2, half)
        top_r, bot_r, top_i, bot_i = r[..., 0, :], r[..., 1, :], i[..., 0, :], i[..., 1, :]
        a0 = top_r + bot_r
        xt = top_r - bot_r
        yt = top_i - bot_i
        a1 = bot_i + top_i
        top_r[...] = a0
        top_i[...] = a1
        bot_r[...] = xt * cos + yt * sin  # p0 + p1
        bot_i[...] = yt * cos - xt * sin  # p2 - p3
        half //= 2
    # Last stage: pairs, twiddle 1, no multiply.
    r = re.reshape(*lead, m // 2, 2)
    i = im.reshape(*lead, m // 2, 2)
    a0 = r[..., 0] + r[..., 1]
    xt = r[..., 0] - r[..., 1]
    yt = i[..., 0] - i[..., 1]
    a1 = i[..., 1] + i[..., 0]
    r[..., 0], r[..., 1], i[..., 0], i[..., 1] = a0, xt, a1, yt
    order = _bit_reversal(m)
    return re[..., order], im[..., order]


def rfft_packed(frames: np.ndarray) -> np.ndarray:
    """Real FFT of float32 frames in ``arm_rfft_fast_f32``'s packed layout.

    Parameters
    ----------
    frames : np.ndarray [shape=(..., n_dft), dtype=float32]
        ``n_dft`` a power of two >= 8. Not modified (CMSIS overwrites its input).

    Returns
    -------
    np.ndarray [shape=(..., n_dft), dtype=float32]
        ``[X[0], X[n_dft/2], Re X[1], Im X[1], ...]``; ``X = numpy.fft.rfft(frames)``
        up to float32 rounding.

    Raises
    ------
    ParameterError
        If ``n_dft`` is not a power of two >= 8.

    Examples
    --------
    >>> x = np.arange(8, dtype=np.float32)
    >>> rfft_packed(x)[:4]
    array([28.      , -4.      , -4.      ,  9.656855], dtype=float32)
    """
    frames = np.asarray(frames, dtype=_F32)
    n_dft = check_fft_length(frames.shape[-1])
    m = n_dft // 2
    z_re, z_im = cfft_radix2(frames[..., 0::2], frames[..., 1::2])
    out = np.empty(frames.shape, dtype=_F32)
    t1a = z_re[..., 0] + z_re[..., 0]
    t1b = z_im[..., 0] + z_im[..., 0]
    out[..., 0] = _HALF * (t1a + t1b)
    out[..., 1] = _HALF * (t1a - t1b)
    tw_r, tw_i = _split_twiddles(n_dft)
    tw_r, tw_i = tw_r[1:], tw_i[1:]
    xa_r, xa_i = z_re[..., 1:], z_im[..., 1:]  # Z[k], k = 1 .. m-1
    xb_r, xb_i = z_re[..., m - 1 : 0 : -1], z_im[..., m - 1 : 0 : -1]  # Z[m - k]
    t1a = xb_r - xa_r
    t1b = xb_i + xa_i
    p0, p1, p2, p3 = tw_r * t1a, tw_i * t1a, tw_r * t1b, tw_i * t1b
    # C evaluates xAR + xBR + p0 + p3 left to right: ((xAR + xBR) + p0) + p3.
    out[..., 2::2] = _HALF * (((xa_r + xb_r) + p0) + p3)
    out[..., 3::2] = _HALF * (((xa_i - xb_i) + p1) - p2)
    return out


def packed_power(packed: np.ndarray) -> np.ndarray:
    """Power ``re² + im²`` per bin from a packed spectrum (DC and Nyquist unpacked).

    ``arm_cmplx_mag_squared_f32`` over the packed array would give bin 0 the sum
    ``X[0]² + X[N/2]²``; here bins 0 and N/2 are squared on their own.

    Parameters
    ----------
    packed : np.ndarray [shape=(..., n_dft), dtype=float32]

    Returns
    -------
    np.ndarray [shape=(..., n_dft // 2 + 1), dtype=float32]
    """
    packed = np.asarray(packed, dtype=_F32)
    m = packed.shape[-1] // 2
    power = np.empty((*packed.shape[:-1], m + 1), dtype=_F32)
    power[..., 0] = packed[..., 0] * packed[..., 0]
    power[..., m] = packed[..., 1] * packed[..., 1]
    re, im = packed[..., 2::2], packed[..., 3::2]
    power[..., 1:m] = re * re + im * im
    return power


def fft_op_counts(n_dft: int) -> dict[str, int]:
    """Float32 operations of one real FFT and its power spectrum, counted from the code.

    Parameters
    ----------
    n_dft : int
        Power of two >= 8.

    Returns
    -------
    dict
        ``fft_butterflies`` (radix-2, of the ``n_dft/2``-point complex FFT),
        ``fft_multiplies`` / ``fft_adds`` (butterflies and split step together),
        ``power_multiplies`` / ``power_adds``.

    Examples
    --------
    >>> fft_op_counts(1024)["fft_butterflies"]
    2304
    """
    n_dft = check_fft_length(n_dft)
    m = n_dft // 2
    stages = m.bit_length() - 1
    butterflies = (m // 2) * stages
    twiddled = (m // 2) * (stages - 1)
    # Butterfly: 4 adds (a0, xt, yt, a1), plus 4 multiplies and 2 adds with a twiddle.
    # Split: DC/Nyquist 4 adds and 2 multiplies; every other bin 8 adds and 6 multiplies
    # (4 twiddle products, 2 halvings).
    return {
        "fft_butterflies": butterflies,
        "fft_multiplies": 4 * twiddled + 2 + 6 * (m - 1),
        "fft_adds": 4 * butterflies + 2 * twiddled + 4 + 8 * (m - 1),
        "power_multiplies": 2 * (m - 1) + 2,
        "power_adds": m - 1,
    }


def fft_table_bytes(n_dft: int) -> dict[str, int]:
    """Flash the float32 real FFT needs: twiddles and the bit-reversal table.

    Parameters
    ----------
    n_dft : int
        Power of two >= 8.

    Returns
    -------
    dict
        ``cfft_twiddles`` (``n_dft/4`` complex float32 values: what the radix-2
        ``n_dft/2``-point transform reads), ``rfft_twiddles`` (``n_dft/2`` complex
        float32, ``twiddleCoef_rfft_N``), ``bit_reversal`` (``n_dft/2`` uint16
        indices).
    """
    n_dft = check_fft_length(n_dft)
    return {
        "cfft_twiddles": (n_dft // 4) * 2 * 4,
        "rfft_twiddles": (n_dft // 2) * 2 * 4,
        "bit_reversal": (n_dft // 2) * 2,
    }
