"""Argument checks shared by the front-end modules."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .exceptions import AudioError, ParameterError


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_rate(sr, name: str = "sr") -> None:
    if not _is_real(sr) or not math.isfinite(sr) or sr <= 0:
        raise ParameterError(f"{name} must be a positive sample rate in Hz; got {name}={sr!r}.")


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ParameterError(f"{name} must be a positive integer; got {name}={value!r}.")


def _as_mono(audio, func: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise AudioError(
            f"{func} expects mono audio of shape (n,); got shape {audio.shape}. "
            "Use edgel3.frontend.downmix first."
        )
    return audio
