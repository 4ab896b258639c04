"""The HEAR 2021 common API: edgel3's models in the HEAR benchmark and its tools.

``load_model``, ``get_timestamp_embeddings`` and ``get_scene_embeddings``, with
``sample_rate``, ``timestamp_embedding_size`` and ``scene_embedding_size`` on
the model, as the HEAR benchmark, its evaluation kit (``heareval``) and its
validator (``hear-validator edgel3.hear --model sea-64``) expect
(``docs/hear.rst``). Every embedding is computed by
:func:`edgel3.get_embedding` (``runtime='auto'``, ``center=True``): the
numbers are edgel3's own for the same audio, and every model name
:func:`edgel3.reference.resolve_model` accepts works here.

* **Sample rate.** HEAR accepts 16000, 22050, 44100 and 48000 Hz. A model's
  HEAR rate is the lowest of these at or above its own rate (SEA and the
  bundled ``tiny``: 8 kHz -> 16000; sparse L3: 48 kHz -> 48000); audio is
  resampled to the model's rate inside, with edgel3's exact legacy resampler
  (:func:`edgel3.resample.resample_legacy`, as for any input rate).
* **Timestamps** are window centres in milliseconds, ``i * hop`` for
  ``i = 0, 1, ...``, with ``hop`` the hop in whole samples at the model's rate
  (:func:`edgel3.frontend.hop_length`), so exactly evenly spaced.
* **Hop.** :data:`DEFAULT_HOP_SIZE` is 50 ms: HEAR's event tasks are scored
  with a 50 ms onset tolerance and its validator warns above 50 ms; a smaller
  hop costs proportionally more windows (``load_model(hop_size=...)``).
* **Scene embeddings** are the mean over time of the timestamp embeddings
  (:data:`SCENE_POOLING`), so ``scene_embedding_size`` equals
  ``timestamp_embedding_size``.
* **Tensors.** ``audio`` may be a NumPy array or any tensor
  :func:`edgel3.tensors.as_array` reads (on any device: HEAR harnesses hand
  over GPU tensors, copied to the host here); TensorFlow input gives
  TensorFlow tensors back, PyTorch input PyTorch tensors (on the input's
  device), anything else NumPy arrays.

``import edgel3.hear`` is light; :func:`load_model` imports TensorFlow (the
model is a ``tf.Module``, as the validator requires) when it is installed.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings

import numpy as np

from . import frontend
from .checks import SHORT_WARNING, check_choice, check_hop_size
from .core import get_embedding
from .exceptions import AudioError, EdgeL3Warning, ParameterError
from .reference import resolve_model
from .tensors import as_array

__all__ = [
    "load_model",
    "get_timestamp_embeddings",
    "get_scene_embeddings",
    "HearModel",
    "HEAR_SAMPLE_RATES",
    "DEFAULT_HOP_SIZE",
    "SCENE_POOLING",
]

#: Input rates (Hz) the HEAR 2021 API allows.
HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
#: Default hop between windows (seconds): HEAR's 50 ms onset tolerance.
DEFAULT_HOP_SIZE = 0.05
#: How scene embeddings pool the timestamp embeddings over time.
SCENE_POOLING = "mean"


class HearModel:
    """An edgel3 model behind the HEAR API (a ``tf.Module`` where TensorFlow is installed).

    Made by :func:`load_model`; pass it to :func:`get_timestamp_embeddings`
    and :func:`get_scene_embeddings`.

    Attributes
    ----------
    sample_rate : int
        The HEAR rate audio must have (Hz), one of :data:`HEAR_SAMPLE_RATES`.
    model_sample_rate : int
        The rate the network runs at (Hz); audio is resampled to it exactly.
    timestamp_embedding_size, scene_embedding_size : int
        Values per embedding (equal: scenes are a mean over time).
    hop_size : float
        Hop between windows as given (seconds).
    hop_length : int
        The hop in samples at :attr:`model_sample_rate`; timestamps are
        ``i * 1000 * hop_length / model_sample_rate`` ms.
    reference : edgel3.reference.ModelReference
        The resolved edgel3 model.
    """

    def __init__(self, reference, *, sample_rate: int, hop_size: float):
        super().__init__()  # tf.Module's, in the TensorFlow subclass
        self.reference = reference
        self.model_sample_rate = int(reference.sample_rate)
        self.sample_rate = int(sample_rate)
        self.hop_size = float(hop_size)
        self.hop_length = frontend.hop_length(hop_size, self.model_sample_rate)
        self.timestamp_embedding_size = int(reference.embedding_size)
        self.scene_embedding_size = self.timestamp_embedding_size

    @property
    def timestamp_interval(self) -> float:
        """Milliseconds between consecutive timestamps."""
        return 1000.0 * self.hop_length / self.model_sample_rate

    def __repr__(self) -> str:
        return (
            f"HearModel({self.reference.name!r}, sample_rate={self.sample_rate}, "
            f"model_sample_rate={self.model_sample_rate}, hop_size={self.hop_size!r}, "
            f"embedding_size={self.timestamp_embedding_size})"
        )


@functools.lru_cache(maxsize=1)
def _model_class() -> type:
    """HearModel as a ``tf.Module`` subclass (the validator's check), or as is without TF."""
    try:
        import tensorflow as tf
    except ImportError:  # a TensorFlow-free install (NumPy runtime): NumPy tensors only
        return HearModel
    namespace = {"__doc__": HearModel.__doc__, "__module__": __name__}
    return type("HearModel", (HearModel, tf.Module), namespace)


def _hear_rate(model_rate: int) -> int:
    """The lowest HEAR rate at or above ``model_rate`` (the highest for faster models)."""
    return next((rate for rate in HEAR_SAMPLE_RATES if rate >= model_rate), HEAR_SAMPLE_RATES[-1])


def load_model(
    model=None, *, hop_size: float = DEFAULT_HOP_SIZE, sample_rate: int | None = None
) -> HearModel:
    """Load an edgel3 model for the HEAR API.

    Parameters
    ----------
    model : str, path-like, keras.Model or None
        Any model :func:`edgel3.reference.resolve_model` accepts: an official
        name (``'sea-64'``, ``'edgel3_ft_audio_sparsity_87.0'``), ``'tiny'``
        (bundled), a weight file path. ``None`` or ``''`` (what HEAR tools pass
        without ``--model``): the model :func:`edgel3.get_embedding` uses by
        default (``edgel3_ft_audio_sparsity_95.45``, sparse L3 at 48 kHz).
    hop_size : float
        Hop between windows in seconds (default :data:`DEFAULT_HOP_SIZE`,
        50 ms); at least one sample at the model's rate.
    sample_rate : {16000, 22050, 44100, 48000} or None
        The rate callers will pass audio at; ``None``: the lowest HEAR rate at
        or above the model's (16000 for 8-kHz models).

    Returns
    -------
    HearModel
        A ``tf.Module`` where TensorFlow is installed. Official weights are
        located (downloaded, verified) and the model loaded now.

    Raises
    ------
    ParameterError
        Unknown model name, invalid ``hop_size`` or ``sample_rate``.
    WeightsError
        The weights cannot be found, downloaded or loaded.

    Examples
    --------
    >>> import edgel3.hear
    >>> model = edgel3.hear.load_model("tiny")
    >>> model.sample_rate, model.timestamp_embedding_size
    (16000, 64)
    """
    reference = resolve_model(None if isinstance(model, str) and not model else model)
    hop_size = check_hop_size(hop_size)
    if sample_rate is None:
        sample_rate = _hear_rate(reference.sample_rate)
    sample_rate = check_choice(sample_rate, HEAR_SAMPLE_RATES, "sample_rate")
    reference = reference.located()
    reference.prepare()  # load now: a missing weight file fails here, not at the first batch
    return _model_class()(reference, sample_rate=sample_rate, hop_size=hop_size)


def _framework(audio) -> str:
    """'tensorflow', 'torch' or 'numpy': what the results are returned as."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.is_tensor(audio):
        return "tensorflow"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(audio, torch.Tensor):
        return "torch"
    return "numpy"


def _returned(array: np.ndarray, audio, framework: str):
    """``array`` as the caller's kind of tensor."""
    if framework == "tensorflow":
        return sys.modules["tensorflow"].convert_to_tensor(array)
    if framework == "torch":
        torch = sys.modules["torch"]
        return torch.from_numpy(np.ascontiguousarray(array)).to(audio.device)
    return array


def _check_model(model) -> HearModel:
    if not isinstance(model, HearModel):
        raise ParameterError(  # the argument order is the error most likely here
            f"model must be what edgel3.hear.load_model returns; got {type(model).__name__} "
            "(the HEAR API takes audio first, then the model)."
        )
    return model


def _embed(audio, model: HearModel) -> np.ndarray:
    """Timestamp embeddings of a ``(n_sounds, n_samples)`` batch as one float32 array."""
    batch = as_array(audio, "audio", from_device=True)
    if batch.ndim != 2:
        raise AudioError(
            f"audio must be a batch of shape (n_sounds, n_samples); got shape {batch.shape}"
            + (" (one sound? pass audio[None])." if batch.ndim == 1 else ".")
        )
    n_sounds, n_samples = batch.shape
    if n_sounds == 0 or n_samples == 0:
        raise AudioError(
            f"audio holds no {'sounds' if n_sounds == 0 else 'samples'} (shape {batch.shape}); "
            "the HEAR API needs at least one sound of at least one sample."
        )
    with warnings.catch_warnings():
        # Sounds shorter than one window are zero-padded: part of this API's contract.
        warnings.filterwarnings("ignore", re.escape(SHORT_WARNING), EdgeL3Warning)
        embeddings, _ = get_embedding(
            [batch[i] for i in range(n_sounds)],
            model.sample_rate,
            model=model.reference,
            center=True,
            hop_size=model.hop_size,
            verbose=0,
        )
    return np.stack(embeddings)


def get_timestamp_embeddings(audio, model: HearModel):
    """Embeddings of 1-s windows centred every ``model.hop_size`` seconds, and their times.

    Parameters
    ----------
    audio : tensor or np.ndarray [shape=(n_sounds, n_samples)]
        Sounds at ``model.sample_rate`` Hz, of any length (a sound shorter
        than one window is zero-padded to one window). HEAR promises values in
        ``[-1, 1]``; edgel3 does not depend on the scale (each window's
        spectrogram is normalised to its maximum). TensorFlow, PyTorch (any
        device) or JAX tensors, or NumPy arrays.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    embeddings : tensor [shape=(n_sounds, n_timestamps, D), dtype=float32]
        ``D = model.timestamp_embedding_size``.
    timestamps : tensor [shape=(n_sounds, n_timestamps), dtype=float64]
        Window centres in milliseconds, ``i * model.timestamp_interval``.
        Both are TensorFlow tensors for TensorFlow input, PyTorch tensors (on
        the input's device) for PyTorch input, NumPy arrays otherwise.

    Raises
    ------
    AudioError
        ``audio`` not 2-D, without sounds or samples, non-numeric or non-finite,
        or too short to resample to the model's rate (a single sample).

    Warns
    -----
    EdgeL3Warning
        A sound that is all zeros.

    Examples
    --------
    >>> import numpy as np, edgel3.hear
    >>> model = edgel3.hear.load_model("tiny")
    >>> audio = np.random.default_rng(0).uniform(-1, 1, (2, 16000))
    >>> emb, ts = edgel3.hear.get_timestamp_embeddings(audio, model)
    >>> emb.shape, ts[0, :3]
    ((2, 11, 64), array([  0.,  50., 100.]))
    """
    framework = _framework(audio)
    embeddings = _embed(audio, _check_model(model))
    n_sounds, n_timestamps = embeddings.shape[:2]
    stamps = np.arange(n_timestamps) * model.timestamp_interval
    stamps = np.repeat(stamps[None, :], n_sounds, axis=0)
    return _returned(embeddings, audio, framework), _returned(stamps, audio, framework)


def get_scene_embeddings(audio, model: HearModel):
    """One embedding per sound: the mean over time of its timestamp embeddings.

    Parameters
    ----------
    audio : tensor or np.ndarray [shape=(n_sounds, n_samples)]
        As in :func:`get_timestamp_embeddings`.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    tensor [shape=(n_sounds, model.scene_embedding_size), dtype=float32]
        ``mean`` over axis 1 of :func:`get_timestamp_embeddings`' embeddings
        (accumulated in float64); the caller's kind of tensor, as there.

    Raises
    ------
    AudioError
        As :func:`get_timestamp_embeddings`.
    """
    framework = _framework(audio)
    embeddings = _embed(audio, _check_model(model))
    scene = embeddings.mean(axis=1, dtype=np.float64).astype(np.float32)
    return _returned(scene, audio, framework)
