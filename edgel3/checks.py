"""The one set of argument and audio checks used by every edgel3 module.

One rule per quantity (modelled on ``librosa.util.valid_audio``): each
``check_*`` function validates a value, raises
:class:`~edgel3.exceptions.ParameterError` or
:class:`~edgel3.exceptions.AudioError` with a message naming the argument,
and returns the value normalised (``44100.0`` -> ``44100``). Nothing here
imports more than NumPy.

======================  ==================================================
quantity                rule
======================  ==================================================
sample rate             a positive, integer-valued real (Hz), at most
                        :data:`MAX_SAMPLE_RATE` (2**31 - 1, libsndfile's limit)
hop size                a positive real (seconds), at most
                        :data:`MAX_HOP_SIZE` (1e9 s, about 32 years)
counts (batch size...)  an integer >= 1 (``bool`` is not an integer here)
flags (``center``)      ``True`` or ``False`` (``1``/``0`` accepted)
``verbose``             ``0`` or ``1`` (``True``/``False`` accepted)
output file             not a directory, its folder (made if missing) under a
                        writable directory, one of the allowed suffixes
output folder           not a file, and under a writable directory
audio                   numeric, non-empty, 1-D or 2-D ``(n, channels)`` (not channels-
                        first), finite (all zeros warn); tensors: ``tensors.as_array``
signals                 an array is one signal; a list/tuple of arrays is
                        several; a list/tuple of plain numbers is one
======================  ==================================================

Where a real is expected, any real is accepted (Python/NumPy numbers, ``Fraction``;
never ``bool``); values no float holds (``10**400``) are refused like infinities, with
a :class:`~edgel3.exceptions.ParameterError` (never an ``OverflowError``).
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from pathlib import Path

import numpy as np

from .exceptions import AudioError, EdgeL3Warning, OutputError, ParameterError
from .tensors import as_array

__all__ = [
    "is_real",
    "shown",
    "check_sample_rate",
    "check_positive_int",
    "check_non_negative_int",
    "check_hop_size",
    "check_flag",
    "check_verbose",
    "check_choice",
    "check_fraction",
    "check_output_path",
    "check_audio",
    "split_signals",
    "as_mono",
    "MAX_SAMPLE_RATE",
    "MAX_HOP_SIZE",
    "CHANNELS_FIRST_MAX_ROWS",
    "CHANNELS_FIRST_MIN_COLUMNS",
    "ZEROS_WARNING",
    "SHORT_WARNING",
]

#: 0.2.1's warning texts (kept word for word: user filters match on them).
ZEROS_WARNING = "Provided audio is all zeros"
SHORT_WARNING = (
    "Duration of provided audio is shorter than window size (1 second). Audio will be padded."
)


#: A 2-D array with at most this many rows and at least CHANNELS_FIRST_MIN_COLUMNS
#: columns is taken for channels-first audio (``(channels, n)`` or a batch ``(k, n)``):
#: read as (samples, channels) it would be a few samples of very many channels.
CHANNELS_FIRST_MAX_ROWS = 8
#: See :data:`CHANNELS_FIRST_MAX_ROWS` (64 samples are 8 ms at 8 kHz).
CHANNELS_FIRST_MIN_COLUMNS = 64


#: Highest sample rate accepted (Hz): libsndfile's (a C ``int``); no audio file declares more.
MAX_SAMPLE_RATE = 2**31 - 1
#: Longest hop accepted (seconds, about 32 years): any hop longer than the audio gives one
#: window, and every hop up to this one is a whole number of samples a C ``int64`` holds.
MAX_HOP_SIZE = 1e9


def is_real(value) -> bool:
    """Whether ``value`` is a real number (``bool`` excluded).

    Parameters
    ----------
    value : any

    Returns
    -------
    bool
    """
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _as_float(value) -> float:
    """A real as a float; ``nan`` for non-reals, ``±inf`` for reals no float can hold."""
    if not is_real(value):
        return math.nan
    try:
        with np.errstate(over="ignore"):  # np.longdouble('1e400') -> inf, silently
            return float(value)
    except OverflowError:  # 10**400, Fraction(10**400)
        return math.inf if value > 0 else -math.inf


def shown(value, limit: int = 40) -> str:
    """``repr(value)`` for a message, cut in the middle when longer than ``limit`` characters.

    Examples
    --------
    >>> shown(10**60)
    '1000000000000000...0000000000 (61 characters)'
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:16]}...{text[-10:]} ({len(text)} characters)"


def check_sample_rate(sr, name: str = "sr") -> int:
    """A sample rate: a positive, integer-valued number of Hz, at most :data:`MAX_SAMPLE_RATE`.

    Parameters
    ----------
    sr : int or float
    name : str
        The argument's name, for the message.

    Returns
    -------
    int

    Raises
    ------
    ParameterError

    Examples
    --------
    >>> check_sample_rate(44100.0)
    44100
    """
    number = _as_float(sr)
    if isinstance(sr, numbers.Integral) and is_real(sr):
        ok = 0 < sr <= MAX_SAMPLE_RATE  # compared as integers: exact for any size
    else:
        ok = 0 < number <= MAX_SAMPLE_RATE and number.is_integer()
    if not ok:
        raise ParameterError(
            f"Invalid sample rate {name}={shown(sr)}: expected a positive integer number of Hz "
            f"(at most {MAX_SAMPLE_RATE})."
        )
    return int(sr)


def check_positive_int(value, name: str) -> int:
    """An integer >= 1 (batch sizes, job counts, filter counts...).

    Parameters
    ----------
    value : int
    name : str

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        For non-integers (``True`` and ``2.0`` included) and values < 1.
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer; got {name}={shown(value)}.")
    return int(value)


def check_non_negative_int(value, name: str) -> int:
    """An integer >= 0 (sample counts, indices).

    Parameters
    ----------
    value : int
    name : str

    Returns
    -------
    int

    Raises
    ------
    ParameterError
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < 0:
        raise ParameterError(f"{name} must be a non-negative integer; got {name}={shown(value)}.")
    return int(value)


def check_hop_size(hop_size) -> float:
    """A hop between windows: a positive number of seconds, at most :data:`MAX_HOP_SIZE`.

    Parameters
    ----------
    hop_size : float

    Returns
    -------
    float

    Raises
    ------
    ParameterError
    """
    number = _as_float(hop_size)
    if not 0 < number <= MAX_HOP_SIZE:  # False for nan
        raise ParameterError(
            f"Invalid hop size {shown(hop_size)}: hop_size must be a positive number of seconds "
            f"(at most {MAX_HOP_SIZE:g})."
        )
    return number


def check_flag(value, name: str) -> bool:
    """A boolean option such as ``center``: ``True``/``False`` (or ``1``/``0``).

    Parameters
    ----------
    value : bool
    name : str

    Returns
    -------
    bool

    Raises
    ------
    ParameterError
    """
    if isinstance(value, (str, bytes)) or value not in (True, False):
        raise ParameterError(f"Invalid {name} value {value!r}: expected True or False.")
    return bool(value)


def check_verbose(verbose) -> int:
    """0.2.1's verbosity: ``0`` or ``1``.

    Parameters
    ----------
    verbose : int or bool

    Returns
    -------
    int

    Raises
    ------
    ParameterError
    """
    if isinstance(verbose, (str, bytes)) or verbose not in (0, 1):
        raise ParameterError(f"Invalid verbosity level {verbose!r}: expected 0 or 1.")
    return int(verbose)


def check_choice(value, choices, name: str):
    """One of a fixed set of values.

    Parameters
    ----------
    value : any
    choices : sequence
    name : str

    Returns
    -------
    any
        ``value``.

    Raises
    ------
    ParameterError
    """
    try:
        known = value in tuple(choices)
    except (TypeError, ValueError):  # an array compared element-wise
        known = False
    if not known:
        raise ParameterError(f"{name} must be one of {tuple(choices)}; got {name}={shown(value)}.")
    return value


def check_fraction(value, name: str, *, inclusive: bool = False) -> float:
    """A number in ``(0, 1)`` (or ``[0, 1]`` with ``inclusive``).

    Parameters
    ----------
    value : float
    name : str
    inclusive : bool

    Returns
    -------
    float

    Raises
    ------
    ParameterError
    """
    number = _as_float(value)
    if not ((0 <= number <= 1) if inclusive else (0 < number < 1)):  # False for nan
        interval = "[0, 1]" if inclusive else "(0, 1)"
        raise ParameterError(f"{name} must be a number in {interval}; got {name}={shown(value)}.")
    return number


def check_output_path(path, name: str = "output", *, suffixes=None, folder: bool = False) -> Path:
    """A file (or, with ``folder``, a folder) about to be written, checked before any work.

    The file may exist (it is replaced); missing folders may be made by the
    writer, but the nearest existing folder above must be a writable
    directory, so that the write cannot fail for the name alone.

    Parameters
    ----------
    path : str or path-like
    name : str
        How to name it in messages (``'-o/--output'``, ``'--cache'``).
    suffixes : sequence of str, optional
        Endings a file name must have (``('.keras', '.h5', '.h5.gz')``).
    folder : bool
        ``path`` is a folder to write into (it may exist), not a file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        An empty name, or one without an allowed suffix.
    OutputError
        A file path that is a directory, a path under a file, or a folder without
        write permission.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ParameterError(f"{name} must be a path; got {shown(path)}.")
    path = Path(path)
    if suffixes and not folder and not path.name.endswith(tuple(suffixes)):
        raise ParameterError(f"{name} must end in {' or '.join(suffixes)}; got {str(path)!r}.")
    if not folder and path.is_dir():
        raise OutputError(f'{name} "{path}" is a directory; give a file name.')
    above = path.absolute() if folder else path.absolute().parent
    while not above.exists() and not above.is_symlink() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise OutputError(f'Cannot write {name} "{path}": "{above}" is not a directory.')
    if not os.access(above, os.W_OK | os.X_OK):
        raise OutputError(f'Cannot write {name} "{path}": no permission to write in "{above}".')
    return path


def check_audio(audio, label: str = "audio", *, stacklevel: int = 3) -> np.ndarray:
    """Validate one signal in 0.2.1's order; warn if it is all zeros.

    Parameters
    ----------
    audio : array-like or tensor [shape=(n,) or (n, channels)]
        Samples, soundfile's layout (samples x channels); CPU tensors (PyTorch,
        TensorFlow, JAX...) via :func:`edgel3.tensors.as_array`. Integer PCM is
        accepted as it is, unscaled: the front end normalises each window to
        its maximum, so the gain cancels (see :func:`edgel3.get_embedding`).
    label : str
        How to name the signal in messages (``'audio[3]'``).
    stacklevel : int
        For the all-zeros warning.

    Returns
    -------
    np.ndarray
        The array (not copied, not converted; a tensor's memory, shared).

    Raises
    ------
    AudioError
        Unsupported objects, GPU tensors; non-numeric, empty, 0-D or more than 2-D,
        channels-first (at most :data:`CHANNELS_FIRST_MAX_ROWS` rows and at least
        :data:`CHANNELS_FIRST_MIN_COLUMNS` columns: "pass audio.T"), NaN or
        infinite samples.

    Warns
    -----
    EdgeL3Warning
        :data:`ZEROS_WARNING`.

    Examples
    --------
    >>> check_audio(np.ones((2, 16000)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgel3.exceptions.AudioError: audio looks channels-first (shape (2, 16000)): pass audio.T. ...
    """
    array = as_array(audio, label)
    if array.dtype.kind not in "biuf":
        raise AudioError(
            f"{label} must be a numeric array; got dtype {array.dtype} ({type(audio).__name__})."
        )
    if array.size == 0:
        raise AudioError(f"Got empty audio (input shape {array.shape})")
    if not np.any(array):
        warnings.warn(ZEROS_WARNING, EdgeL3Warning, stacklevel=stacklevel)
    if array.ndim > 2 or array.ndim == 0:
        hint = " (a single number is not a signal)" if array.ndim == 0 else ""
        raise AudioError(
            f"Audio array can only be 1D or 2D; got {label} of shape {array.shape}{hint}."
        )
    rows, columns = array.shape if array.ndim == 2 else (0, 0)
    if 0 < rows <= CHANNELS_FIRST_MAX_ROWS and columns >= CHANNELS_FIRST_MIN_COLUMNS:
        raise AudioError(
            f"{label} looks channels-first (shape {array.shape}): pass {label}.T. edgel3 "
            "reads a 2-D array as (samples, channels), the layout soundfile returns; to "
            "embed several signals, pass a list of 1-D arrays."
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise AudioError(f"{label} contains {bad} NaN or infinite sample(s); clean it first.")
    return array


def split_signals(audio) -> tuple[list, bool]:
    """``get_embedding``'s ``audio`` as a list of signals, and whether a list comes out.

    A list or tuple of arrays is several signals (one result each); a list or
    tuple whose items are all plain numbers (``[0.1, -0.2, ...]``) is ONE
    signal, as if passed as ``np.asarray(audio)``; anything else is one signal.

    Parameters
    ----------
    audio : np.ndarray, list or tuple

    Returns
    -------
    signals : list
    is_list : bool
        Whether the caller gets lists back.

    Raises
    ------
    AudioError
        For an empty list or tuple.

    Examples
    --------
    >>> signals, is_list = split_signals([0.1, 0.2, 0.3])
    >>> len(signals), signals[0].shape, is_list
    (1, (3,), False)
    >>> len(split_signals([np.zeros(3), np.zeros(5)])[0])
    2
    """
    if not isinstance(audio, (list, tuple)):
        return [audio], False
    if not audio:
        raise AudioError("Got an empty list of audio signals.")
    if all(is_real(item) for item in audio):
        return [np.asarray(audio)], False
    return list(audio), True


def as_mono(audio, func: str) -> np.ndarray:
    """A float64 1-D signal, or an error telling the caller to downmix.

    Parameters
    ----------
    audio : array-like or tensor [shape=(n,)] (see :func:`edgel3.tensors.as_array`)
    func : str
        The calling function, for the message.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]

    Raises
    ------
    AudioError
    """
    audio = as_array(audio, "audio").astype(np.float64, copy=False)
    if audio.ndim != 1:
        raise AudioError(
            f"{func} expects mono audio of shape (n,); got shape {audio.shape}. "
            "Use edgel3.frontend.downmix first."
        )
    return audio
