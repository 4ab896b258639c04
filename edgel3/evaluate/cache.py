"""On-disk cache of per-file embeddings, keyed by (file content, model, hop, center).

Layout: ``<cache_dir>/<model_id>/hop<hop_size>_center<0|1>/<sha[:2]>/<sha>.npy``
where ``sha`` is the SHA-256 of the audio file's bytes, so renamed or moved
files hit the cache and edited files miss it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..exceptions import ParameterError
from ..files import atomic_write

__all__ = [
    "EmbeddingCache",
    "default_cache_dir",
    "file_digest",
    "model_identity",
    "CACHE_SUBDIR",
]

logger = logging.getLogger(__name__)

#: Folder name of the embedding cache under ``$EDGEL3_CACHE_DIR`` or an output folder.
CACHE_SUBDIR = "embeddings"
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """Where embeddings are cached when no ``cache_dir`` is given.

    ``$EDGEL3_CACHE_DIR/embeddings`` if that variable is set, else
    ``<out_dir>/embeddings`` if an output folder is given, else
    ``embeddings`` in the per-user edgel3 cache (``~/.cache/edgel3``).

    Parameters
    ----------
    out_dir : path-like, optional

    Returns
    -------
    pathlib.Path
    """
    from ..weights import CACHE_ENV, cache_dir

    if os.environ.get(CACHE_ENV) or out_dir is None:
        return cache_dir() / CACHE_SUBDIR
    return Path(out_dir) / CACHE_SUBDIR


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def _keras_digest(model) -> str:
    """Digest of a Keras model's architecture (without layer names) and weights."""
    digest = hashlib.sha256()
    for layer in model.layers:
        try:
            config = dict(layer.get_config())
        except Exception:  # custom layers without get_config still hash by class and weights
            config = {}
        config.pop("name", None)
        digest.update(type(layer).__name__.encode())
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        array = np.ascontiguousarray(np.asarray(weight))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_identity(model) -> dict:
    """Describe a model for cache keys and reports, without loading weight files.

    Parameters
    ----------
    model : None, str, path-like or keras.Model
        As accepted by :func:`edgel3.get_embedding`: ``None`` is the default
        official model (``sparse``, ``ft``, 95.45 %), a string is an existing
        weight file or an official name such as ``'sea-64'``.

    Returns
    -------
    dict
        ``id`` (a folder-safe key that changes when the weights change),
        ``name``, ``source`` (``'official'``, ``'file'`` or ``'keras'``) and
        ``path`` for files.

    Raises
    ------
    ParameterError
        If ``model`` is none of the above.
    """
    from ..specs import get_spec, resolve_spec

    if model is None:
        spec = resolve_spec("sparse", 128, "ft", 95.45)
        return {"id": f"{spec.name}-{spec.blob_sha1[:12]}", "name": spec.name, "source": "official"}
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if os.path.isfile(text):
            path = Path(text).resolve()
            name = path.name.split(".")[0]
            digest = file_digest(path)
            return {
                "id": f"{_safe(name)}-{digest[:16]}",
                "name": name,
                "source": "file",
                "path": str(path),
            }
        try:
            spec = get_spec(text)
        except ParameterError:
            raise ParameterError(
                f"model={text!r} is neither an existing file nor an official model name "
                "(see `edgel3 models`)."
            ) from None
        return {"id": f"{spec.name}-{spec.blob_sha1[:12]}", "name": spec.name, "source": "official"}
    if hasattr(model, "predict_on_batch") and hasattr(model, "layers"):
        name = getattr(model, "name", "model")
        return {
            "id": f"{_safe(name)}-{_keras_digest(model)[:16]}",
            "name": name,
            "source": "keras",
        }
    raise ParameterError(
        "model must be None, a keras.Model, a model name or a file path; "
        f"got {type(model).__name__}."
    )


class EmbeddingCache:
    """Per-file embedding arrays of one model at one (hop, center) setting.

    Parameters
    ----------
    directory : path-like
        Root of the cache (see :func:`default_cache_dir`).
    model_id : str
        ``model_identity(model)['id']``.
    hop_size : float
        Hop in seconds.
    center : bool

    Examples
    --------
    >>> cache = EmbeddingCache('/tmp/c', 'sea-64', hop_size=0.1, center=True)  # doctest: +SKIP
    >>> cache.get(file_digest('dog.wav')) is None                               # doctest: +SKIP
    True
    """

    def __init__(self, directory, model_id: str, *, hop_size: float, center: bool):
        self.directory = Path(directory)
        self.model_id = model_id
        self.hop_size = float(hop_size)
        self.center = bool(center)
        self.root = (
            self.directory / _safe(model_id) / f"hop{self.hop_size!r}_center{int(self.center)}"
        )

    def path(self, digest: str) -> Path:
        """File holding the embedding of the audio file with this content digest."""
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached ``(frames, emb_dim)`` float32 array, or None (missing or unreadable)."""
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        if array.ndim != 2:
            logger.warning("ignoring cache entry %s of shape %s", path, array.shape)
            return None
        return array

    def put(self, digest: str, embedding: np.ndarray) -> Path:
        """Store an embedding atomically; returns its file.

        Raises
        ------
        OutputError
            If the cache folder cannot be written.
        """
        path = self.path(digest)
        with atomic_write(path) as handle:
            np.save(handle, np.asarray(embedding, dtype=np.float32), allow_pickle=False)
        return path
