"""The runner interface: what turns a batch of 1-s windows into embeddings.

A *runner* is any object with

* ``sample_rate`` -- the window length in samples (= the model's rate, Hz);
* ``embedding_size`` -- the number of values per embedding;
* ``predict_on_batch(windows)`` -- float32 ``(b, 1, sample_rate)`` in,
  ``(b, embedding_size)`` out.

Runners behind it today: :class:`KerasRunner` (dense TensorFlow),
:class:`edgel3.sparse.SparseExecutor` (pruned models, zeros skipped) and
:class:`edgel3.litert.LiteRTModel` (exported ``.tflite`` files, no
TensorFlow). :func:`select_runner` is the one place that picks among them;
every embedding path calls it. An object of the user's with this interface
can be passed as ``model=`` anywhere.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .exceptions import ParameterError

__all__ = [
    "Runner",
    "KerasRunner",
    "is_runner",
    "is_keras_model",
    "select_runner",
    "model_sample_rate",
    "as_windows",
]


@runtime_checkable
class Runner(Protocol):
    """Structural type of a runner (see the module docstring)."""

    sample_rate: int
    embedding_size: int

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """``(b, 1, sample_rate)`` float32 -> ``(b, embedding_size)``."""


def is_keras_model(model) -> bool:
    """Whether ``model`` looks like a Keras model (has layers and ``predict_on_batch``).

    Parameters
    ----------
    model : any

    Returns
    -------
    bool
    """
    return hasattr(model, "layers") and hasattr(model, "predict_on_batch")


def is_runner(model) -> bool:
    """Whether ``model`` has the runner interface (and is not a plain Keras model).

    Parameters
    ----------
    model : any

    Returns
    -------
    bool
    """
    return (
        not is_keras_model(model)
        and callable(getattr(model, "predict_on_batch", None))
        and getattr(model, "sample_rate", None) is not None
    )


def model_sample_rate(model) -> int:
    """Sample rate (= window length in samples) a loaded model or runner expects.

    Read from a runner's ``sample_rate``, a Keras model's
    :class:`~edgel3.layers.MelSpectrogram` layer, or the last axis of its input.

    Parameters
    ----------
    model : keras.Model or runner

    Returns
    -------
    int
    """
    if getattr(model, "sample_rate", None) is not None:
        return int(model.sample_rate)
    from .layers import MelSpectrogram

    for layer in model.layers:
        if isinstance(layer, MelSpectrogram):
            return layer.config.sample_rate
    return int(model.input_shape[-1])


class KerasRunner:
    """Run a Keras embedding model with ``predict_on_batch`` (dense TensorFlow).

    Parameters
    ----------
    model : keras.Model
        Audio window ``(b, 1, sr)`` -> embedding ``(b, D)``.

    Attributes
    ----------
    model : keras.Model
    sample_rate : int
    embedding_size : int
    """

    def __init__(self, model):
        self.model = model
        self.sample_rate = model_sample_rate(model)
        self.embedding_size = int(model.output_shape[-1])

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed a batch.

        Parameters
        ----------
        windows : np.ndarray [shape=(b, 1, sample_rate), dtype=float32]

        Returns
        -------
        np.ndarray [shape=(b, embedding_size), dtype=float32]
        """
        return np.asarray(self.model.predict_on_batch(windows), dtype=np.float32)

    def __repr__(self) -> str:
        return f"KerasRunner({self.model.name!r})"


def select_runner(model, n_windows: int | None = None) -> Runner:
    """The fastest exact runner for ``model`` on a call of ``n_windows`` windows.

    Pruned Keras models go through :mod:`edgel3.sparse` (zeros skipped, same
    results within float32 rounding) when it wins -- for calls of at least
    ``sparse.MIN_WINDOWS`` windows, or streams of unknown length, which pay
    for its one-time set-up; other Keras models through :class:`KerasRunner`;
    runners (LiteRT models, sparse executors, user objects) run as they are.

    Parameters
    ----------
    model : keras.Model or runner
    n_windows : int, optional
        Windows in the call (``None``: unknown, a stream).

    Returns
    -------
    Runner

    Raises
    ------
    ParameterError
        If ``model`` is neither.
    """
    if is_runner(model):
        return model
    if not is_keras_model(model):
        raise ParameterError(
            "model must be a keras.Model or an object with sample_rate, embedding_size and "
            f"predict_on_batch; got {type(model).__name__}."
        )
    from . import sparse

    if n_windows is None or n_windows >= sparse.MIN_WINDOWS:
        executor = sparse.sparse_executor(model)
        if executor is not None:
            return executor
    return KerasRunner(model)


def as_windows(windows, sample_rate: int, name: str = "windows") -> np.ndarray:
    """The 1-s windows a runner takes, as float32 ``(n, sample_rate)``.

    Parameters
    ----------
    windows : array-like [shape=(n, 1, sample_rate) or (n, sample_rate)]
    sample_rate : int
    name : str
        What the windows are, for the error message.

    Returns
    -------
    np.ndarray [shape=(n, sample_rate), dtype=float32]

    Raises
    ------
    ParameterError
        If ``windows`` has another shape.
    """
    data = np.asarray(windows, np.float32)
    if data.ndim == 3 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 2 or data.shape[1] != sample_rate:
        raise ParameterError(
            f"{name} must have shape (b, 1, {sample_rate}) or (b, {sample_rate}); "
            f"got shape {np.shape(windows)}."
        )
    return data
