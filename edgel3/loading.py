"""Loading models from weight files, with a per-process cache.

* :func:`load_model_file` -- a legacy Keras-2/kapre ``.h5``/``.h5.gz`` (its
  architecture read from the file itself), a Keras 3 ``.keras`` file, or an
  exported ``.tflite`` (run by :class:`edgel3.litert.LiteRTModel`, no
  TensorFlow);
* :func:`load_official` -- an official model by :class:`~edgel3.specs.ModelSpec`,
  its weights located (and downloaded, verified) by :mod:`edgel3.weights`;
* :func:`load_embedding_model` -- 0.2.1's function, by model arguments.

Models are cached per process, keyed by file and modification time, so every
path that loads the same file shares one model.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import WeightsError
from .specs import ModelSpec, resolve_spec

__all__ = ["load_model_file", "load_official", "load_embedding_model", "clear_cache"]

_MODEL_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, build):
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
    user-made models of the same family load too. Models are cached per
    process (keyed by path and modification time).

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
        If the file is missing, corrupt or of an unsupported architecture.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f'Model file "{path}" could not be found.')
    key = ("file", str(path), path.stat().st_mtime_ns)
    if path.suffix == ".tflite":
        from .litert import LiteRTModel  # runs without TensorFlow

        return _cached(key, lambda: LiteRTModel(path))
    if path.suffix == ".keras":
        import keras

        from . import layers  # noqa: F401  (registers MelSpectrogram for deserialisation)

        def build():
            try:
                return keras.saving.load_model(path)
            except Exception as exc:
                raise WeightsError(f'Could not load Keras model "{path}": {exc}') from exc

        return _cached(key, build)
    return _cached(key, lambda: _load_legacy_file(path))


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

    Raises
    ------
    WeightsError
    """
    from .weights import get_weights_path

    path = get_weights_path(spec, weights_path=weights_path, download=download, progress=progress)
    key = ("official", spec.name, str(path))
    return _cached(key, lambda: _load_legacy_file(path, spec))


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
        Audio window ``(batch, 1, sr)`` -> embedding ``(batch, emb_dim)``.

    Raises
    ------
    ParameterError
        For invalid model arguments.
    WeightsError
        If the weights cannot be found, downloaded or loaded.
    """
    spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    return load_official(spec, weights_path=weights_path, download=download, progress=progress)
