"""Teachers for distillation: any model or callable, and cached teacher targets.

- :func:`as_teacher` wraps any model :func:`edgel3.reference.resolve_model`
  accepts (a name, ``'tiny'``, a file, a loaded Keras model, a runner) or any
  Python callable ``windows -> embeddings`` into one :class:`Teacher`; model
  teachers run through :func:`edgel3.runners.select_runner` (via
  :meth:`edgel3.reference.ModelReference.runner`), so a pruned teacher runs on
  the sparse executor, as every other embedding path does.
- :func:`teacher_targets` runs the teacher once over all windows of a
  :class:`~edgel3.compress.data.WindowSet` and caches the result in an
  ``.npz`` keyed by teacher identity and data.
- :func:`to_rate` resamples 1-s windows for a teacher (or student) of another rate.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from ..checks import check_output_path, check_positive_int, check_sample_rate
from ..exceptions import ParameterError
from ..reference import ModelReference, resolve_model
from ..runners import is_keras_model, is_runner

__all__ = ["Teacher", "as_teacher", "teacher_targets", "to_rate"]

logger = logging.getLogger(__name__)


def to_rate(windows: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample a batch of 1-s windows to another rate (polyphase, window by window).

    Parameters
    ----------
    windows : np.ndarray [shape=(n, sr_from)]
    sr_from, sr_to : int

    Returns
    -------
    np.ndarray [shape=(n, sr_to), dtype=float32]
    """
    if sr_from == sr_to:
        return np.asarray(windows, dtype=np.float32)
    from scipy.signal import resample_poly

    factor = gcd(int(sr_from), int(sr_to))
    out = resample_poly(windows, sr_to // factor, sr_from // factor, axis=1)
    return np.asarray(out[:, :sr_to], dtype=np.float32)


@dataclass
class Teacher:
    """A teacher: windows at ``sr`` -> embeddings.

    Attributes
    ----------
    fn : callable
        ``fn(windows) -> embeddings`` for windows ``(n, sr)`` float32 (callable
        teachers; model teachers run through :meth:`runner`).
    sr : int
        Rate the teacher expects.
    name : str
        Identity used in cache keys (a model's
        :attr:`~edgel3.reference.ModelReference.model_id`).
    batch_size : int
    reference : ModelReference, optional
        The model of a model teacher.
    """

    fn: Callable | None
    sr: int
    name: str
    batch_size: int = 64
    reference: ModelReference | None = None

    def runner(self, n_windows: int | None = None):
        """The runner a model teacher embeds ``n_windows`` windows with.

        :func:`edgel3.runners.select_runner` decides: a pruned teacher runs on
        the sparse executor for calls of at least ``edgel3.sparse.MIN_WINDOWS``
        windows, other Keras models densely, LiteRT files through LiteRT.

        Parameters
        ----------
        n_windows : int, optional
            Windows in the call (``None``: unknown).

        Returns
        -------
        Runner

        Raises
        ------
        ParameterError
            For a callable teacher (it has no runner).
        """
        if self.reference is None:
            raise ParameterError(f"Teacher {self.name!r} is a callable; it has no runner.")
        return self.reference.runner(n_windows)

    def __call__(
        self, windows: np.ndarray, sr: int | None = None, *, n_windows: int | None = None
    ) -> np.ndarray:
        """Embed windows given at rate ``sr`` (default: the teacher's).

        Parameters
        ----------
        windows : np.ndarray [shape=(n, length)]
        sr : int, optional
            Their rate; resampled (polyphase, :func:`to_rate`) when it differs
            from the teacher's.
        n_windows : int, optional
            Windows of the whole job this call is part of, for the choice of
            runner (default: ``n``).

        Returns
        -------
        np.ndarray [shape=(n, d), dtype=float32]

        Raises
        ------
        ParameterError
            If the teacher's output has the wrong shape.
        """
        windows = to_rate(np.asarray(windows, dtype=np.float32), sr or self.sr, self.sr)
        if self.reference is not None:
            from ..engine import run_batches
            from ..pipeline import batches

            runner = self.runner(len(windows) if n_windows is None else n_windows)
            return run_batches(runner, batches([windows], self.batch_size), len(windows))
        parts = [
            np.asarray(self.fn(windows[i : i + self.batch_size]), dtype=np.float32)
            for i in range(0, len(windows), self.batch_size)
        ]
        out = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        if out.ndim != 2 or len(out) != len(windows):
            raise ParameterError(
                f"Teacher {self.name!r} returned an array of shape {out.shape} for "
                f"{len(windows)} windows; expected (n_windows, emb_dim)."
            )
        return out


def as_teacher(teacher, *, sr: int | None = None, batch_size: int = 64) -> Teacher:
    """Wrap a teacher model or function.

    Parameters
    ----------
    teacher : str, path-like, keras.Model, runner, ModelReference, callable or Teacher
        Any model :func:`edgel3.reference.resolve_model` accepts (an official
        name such as ``'sea-64'``, ``'tiny'``, a ``.h5``/``.h5.gz``/``.keras``/
        ``.tflite`` file, a loaded Keras model taking audio ``(b, 1, sr)``, an
        object with the runner interface), or a callable
        ``windows (n, sr) -> embeddings (n, d)``.
    sr : int, optional
        The rate a callable expects (required for callables; read from the
        model otherwise).
    batch_size : int
        Windows per teacher call.

    Returns
    -------
    Teacher

    Raises
    ------
    ParameterError
        For a callable without ``sr``, or an unknown model name.
    WeightsError
        For a model file that does not exist.
    """
    if isinstance(teacher, Teacher):
        return teacher
    batch_size = check_positive_int(batch_size, "batch_size")
    if (
        isinstance(teacher, (str, os.PathLike, ModelReference))
        or is_keras_model(teacher)
        or is_runner(teacher)
    ):
        reference = resolve_model(teacher)
        return Teacher(None, reference.sample_rate, reference.model_id, batch_size, reference)
    if callable(teacher):
        if sr is None:
            raise ParameterError(
                "A callable teacher needs its sample rate: as_teacher(fn, sr=...)."
            )
        label = getattr(teacher, "__qualname__", type(teacher).__name__)
        return Teacher(teacher, check_sample_rate(sr), f"callable:{label}", batch_size)
    raise ParameterError(
        "teacher must be a model name, a model file, a keras.Model, a runner or a callable; "
        f"got {type(teacher).__name__}."
    )


def teacher_targets(
    teacher,
    data,
    *,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Teacher embeddings of every window, computed once and optionally cached.

    Parameters
    ----------
    teacher : see :func:`as_teacher`
        Model teachers run through :meth:`Teacher.runner` (the sparse
        executor for a pruned teacher).
    data : WindowSet
    cache : path-like, optional
        An ``.npz`` file. Reused when its key (teacher identity and data
        fingerprint) matches; (re)written otherwise.
    progress : bool

    Returns
    -------
    np.ndarray [shape=(n, d), dtype=float32]

    Raises
    ------
    ParameterError
        If ``cache`` is a file but not such a cache (it is not overwritten).
    OutputError
        If ``cache`` cannot be written (checked before the teacher runs).
    """
    from tqdm.auto import tqdm

    from ..files import atomic_write

    teacher = as_teacher(teacher)
    key = json.dumps({"teacher": teacher.name, "data": data.fingerprint(), "n": len(data)})
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    logger.info("teacher targets read from %s", cache)
                    return stored["targets"]
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ParameterError(
                f'cache "{cache}" is not a cache of teacher embeddings ({exc}); name a new '
                "file or remove it."
            ) from exc
        logger.info("cache %s was made for other data or teacher; recomputing", cache)
    if cache is not None:
        check_output_path(cache, "cache")  # before the teacher runs, not after
    step = teacher.batch_size * 8
    parts = []
    for start in tqdm(range(0, len(data), step), unit="batch", disable=not progress):
        # One runner choice for the whole set (the last chunk may be small).
        parts.append(teacher(data.windows[start : start + step], data.sr, n_windows=len(data)))
    targets = np.concatenate(parts)
    if cache is not None:
        with atomic_write(cache) as handle:
            np.savez(handle, targets=targets, key=np.array(key))
    return targets
