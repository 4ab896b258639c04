"""Loading models from weight files, with a per-process cache.

* :func:`load_model_file` -- a legacy Keras-2/kapre ``.h5``/``.h5.gz`` (its
  architecture read from the file itself), a Keras 3 ``.keras`` file, or an
  exported ``.tflite`` (run by :class:`edgel3.litert.LiteRTModel`, no
  TensorFlow);
* :func:`load_official` -- an official model by :class:`~edgel3.specs.ModelSpec`,
  its weights located (and downloaded, verified) by :mod:`edgel3.weights`;
* :func:`load_embedding_model` -- 0.2.1's function, by model arguments: a
  model of the caller's own (see below);
* :func:`load_embedding_model_path` -- 0.2.1's function: where an official
  model's weight file is, or would be downloaded to.

Models are cached per process, keyed by file and modification time, so every
path that loads the same file shares one model: :func:`load_model_file` and
:func:`load_official` return that shared object (treat it as read-only). The
embedding functions run it when given ``model=None``, a name or a path.
:func:`load_embedding_model` instead returns a copy the caller owns (as 0.2.1
did): modifying or training it changes no later result of
``get_embedding(..., model=None)`` nor of another load. Copying the cached
model (:func:`copy_model`) takes a fraction of the time of reading the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import WeightsError
from .specs import ModelSpec, resolve_spec
from .tf_logging import quiet_tensorflow_import

# TensorFlow/Keras load lazily, below and in the modules this one imports; their first
# import prints C++ start-up lines (absl, oneDNN, CUDA stubs): quiet them (edgel3.tf_logging).
quiet_tensorflow_import()

__all__ = [
    "load_model_file",
    "load_official",
    "load_embedding_model",
    "load_embedding_model_path",
    "copy_model",
    "clear_cache",
    "cached",
]

_MODEL_CACHE: dict[tuple, object] = {}


def cached(key: tuple, build):
    """The per-process cached object of ``key``, built by ``build()`` the first time.

    Parameters
    ----------
    key : tuple
        Identity (kind, path, modification time...).
    build : callable

    Returns
    -------
    object
    """
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = build()
    return _MODEL_CACHE[key]


def clear_cache() -> None:
    """Forget every model loaded so far (the next use loads it again)."""
    _MODEL_CACHE.clear()


def _load_legacy_file(path: Path, spec: ModelSpec | None = None):
    from .legacy_h5 import infer_spec, read_legacy_h5
    from .networks import build_model, load_legacy_weights

    legacy = read_legacy_h5(path)
    if spec is None:
        spec = infer_spec(legacy)
    return load_legacy_weights(build_model(spec), legacy)


def load_model_file(path: str | os.PathLike):
    """Load an embedding model from a file: legacy ``.h5``/``.h5.gz``, ``.keras`` or ``.tflite``.

    The architecture of a legacy file is derived from the file itself, so
    user-made models of the same family load too. A legacy file named like an
    official one (``<stem>.h5.gz``, ``<stem>.h5``) must be that file: it is
    checked by :func:`edgel3.weights.verify_weights` (hashed once per file).
    Models are cached per
    process (keyed by path and modification time): the object returned is
    the one ``get_embedding(..., model=path)`` runs, so treat it as
    read-only; :func:`copy_model` gives a Keras model of your own.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    keras.Model or edgel3.litert.LiteRTModel
        A ``.tflite`` export runs through the LiteRT interpreter.

    Raises
    ------
    WeightsError
        If the file is missing, corrupt, of an unsupported architecture, or named
        like an official file but not that file (both hashes in the message).

    Warns
    -----
    edgel3.weights.UnverifiedWeightsWarning
        For an unpacked official ``<stem>.h5`` whose hash is not known.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f'Model file "{path}" could not be found.')
    if path.name.endswith((".h5", ".h5.gz")):
        from .weights import official_spec_of, verify_weights

        official = official_spec_of(path)
        if official is not None:  # named like an official file: it must be that file
            verify_weights(path, official)
    key = ("file", str(path), path.stat().st_mtime_ns)
    if path.suffix == ".tflite":
        from .litert import LiteRTModel  # runs without TensorFlow

        return cached(key, lambda: LiteRTModel(path))
    if path.suffix == ".keras":
        import keras

        from . import layers  # noqa: F401  (registers MelSpectrogram for deserialisation)

        def build():
            try:
                return keras.saving.load_model(path)
            except Exception as exc:
                raise WeightsError(f'Could not load Keras model "{path}": {exc}') from exc

        return cached(key, build)
    return cached(key, lambda: _load_legacy_file(path))


def load_official(spec: ModelSpec, *, weights_path=None, download=True, progress=False):
    """Load an official model, locating (or downloading) its verified weight file.

    Parameters
    ----------
    spec : ModelSpec
    weights_path : path-like, optional
        A weight file, or a directory holding it.
    download : bool
        Allow downloading missing weights.
    progress : bool
        Show a download progress bar.

    Returns
    -------
    keras.Model
        The per-process shared model (read-only; :func:`load_embedding_model`
        returns a copy of one's own).

    Raises
    ------
    WeightsError
        If the weights cannot be found or downloaded, or are not the official
        file (see :func:`edgel3.weights.get_weights_path`).

    Warns
    -----
    edgel3.weights.UnverifiedWeightsWarning
        For an unpacked official ``<stem>.h5`` whose hash is not known.
    """
    from .weights import get_weights_path

    path = get_weights_path(spec, weights_path=weights_path, download=download, progress=progress)
    key = ("official", spec.name, str(path))
    return cached(key, lambda: _load_legacy_file(path, spec))


def copy_model(model):
    """A copy of a Keras model with its own weights (same architecture, same outputs).

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    keras.Model
        New layers and weight variables holding copies of ``model``'s values:
        changing or training either model leaves the other unchanged.
    """
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def load_embedding_model(
    model_type: str = "sparse",
    emb_dim: int = 128,
    retrain_type: str = "ft",
    sparsity: float = 95.45,
    *,
    weights_path: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
):
    """Load an official embedding model, downloading its weights if needed.

    Weights are looked for in ``weights_path``, then ``$EDGEL3_WEIGHTS_DIR``,
    then the per-user cache; missing ones are downloaded from the pinned
    official URL and verified (see :mod:`edgel3.weights`).

    The model belongs to the caller, as in 0.2.1: modifying or training it
    changes no later result of ``get_embedding(..., model=None)`` nor any
    other model this function returns. The file is read once per process;
    later calls copy the cached model (:func:`copy_model`, about 0.07 s for
    SEA-64 against 0.3 s to read the file).

    Parameters
    ----------
    model_type : {'sparse', 'sea'}
    emb_dim : {512, 256, 128, 64}
        Embedding size of ``'sea'`` models.
    retrain_type : {'ft', 'kd'}
        Retraining of ``'sparse'`` models.
    sparsity : float
        Sparsity (%) of ``'sparse'`` models, one of
        :data:`edgel3.specs.SPARSITIES`.
    weights_path : path-like, optional
        A weight file, or a directory holding it.
    download : bool
        Allow downloading missing weights.
    progress : bool
        Show a download progress bar.

    Returns
    -------
    keras.Model
        Audio window ``(batch, 1, sr)`` -> embedding ``(batch, emb_dim)``; a
        new object on every call.

    Raises
    ------
    ParameterError
        For invalid model arguments.
    WeightsError
        If the weights cannot be found, downloaded or loaded.
    """
    spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    shared = load_official(spec, weights_path=weights_path, download=download, progress=progress)
    return copy_model(shared)


def load_embedding_model_path(
    model_type: str = "sparse",
    emb_dim: int = 128,
    retrain_type: str = "ft",
    sparsity: float = 95.45,
) -> str:
    """Where an official model's weight file is, or where a download would put it.

    0.2.1's function (same arguments, same order). Nothing is downloaded or
    verified. 0.2.1 returned ``<package>/<stem>.h5``, written at install
    time; weights now live in ``$EDGEL3_WEIGHTS_DIR`` or the per-user cache
    (:func:`edgel3.weights.find_weights`), usually gzipped (``.h5.gz``).

    Parameters
    ----------
    model_type, emb_dim, retrain_type, sparsity
        As in :func:`load_embedding_model`.

    Returns
    -------
    str
        The file found locally, else ``<cache>/<stem>.h5.gz``
        (:func:`edgel3.weights.cache_dir`).

    Raises
    ------
    ParameterError
        For invalid model arguments.
    WeightsError
        If ``$EDGEL3_WEIGHTS_DIR`` names a missing directory.
    """
    from .weights import cache_dir, find_weights

    spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    found = find_weights(spec)
    return str(found if found is not None else cache_dir() / spec.filename)
