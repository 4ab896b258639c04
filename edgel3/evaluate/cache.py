"""On-disk cache of per-file embeddings, keyed by (file content, model, hop, center).

Layout: ``<cache_dir>/<model_id>/hop<hop_size>_center<0|1>/<sha[:2]>/<sha>.npy``
where ``model_id`` is :attr:`edgel3.reference.ModelReference.model_id` (made
folder-safe by :func:`folder_name`) and ``sha`` is the SHA-256 of the audio
file's bytes, so renamed or moved files hit the cache and edited files miss
it (see ``docs/evaluate.rst``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..files import atomic_write

__all__ = [
    "EmbeddingCache",
    "default_cache_dir",
    "file_digest",
    "folder_name",
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


def folder_name(model_id: str) -> str:
    """A model identity made safe as one folder name.

    Characters other than letters, digits, ``_ . - @`` become ``_``; an
    identity already made of those (every official name, ``tiny@<sha>``,
    ``model.keras@<sha>``) is kept as it is.

    Parameters
    ----------
    model_id : str
        :attr:`edgel3.reference.ModelReference.model_id`.

    Returns
    -------
    str

    Examples
    --------
    >>> folder_name('edgel3_sea_ust_audio_emb_64')
    'edgel3_sea_ust_audio_emb_64'
    >>> folder_name('my model/v2@0123456789ab')
    'my_model_v2@0123456789ab'
    """
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", str(model_id)).strip("._") or "model"


class EmbeddingCache:
    """Per-file embedding arrays of one model at one (hop, center) setting.

    Parameters
    ----------
    directory : path-like
        Root of the cache (see :func:`default_cache_dir`).
    model_id : str
        :attr:`edgel3.reference.ModelReference.model_id` of the model.
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
            self.directory
            / folder_name(model_id)
            / f"hop{self.hop_size!r}_center{int(self.center)}"
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
