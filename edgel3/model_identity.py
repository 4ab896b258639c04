"""Model identities for caches, manifests and Parquet rows.

Used by :attr:`edgel3.reference.ModelReference.model_id`.

A file's identity is its name and the SHA-1 of its bytes (an official model's
file stem when the digest is published); a loaded Keras model's is a digest of
its architecture (without layer names) and weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from .specs import REGISTRY

__all__ = ["file_identity", "keras_digest"]


@functools.lru_cache(maxsize=64)
def _file_identity_cached(path: str, size: int, mtime_ns: int, bundled: bool) -> str:
    from .weights import file_blob_sha1

    digest = file_blob_sha1(path)
    if not bundled:
        for spec in REGISTRY.values():
            if spec.blob_sha1 == digest:
                return spec.name
    return f"{Path(path).name.split('.')[0] if bundled else Path(path).name}@{digest[:12]}"


def file_identity(path: Path, *, bundled: bool = False) -> str:
    """``NAME@SHA1[:12]`` of a model file (the official stem for a published file).

    Parameters
    ----------
    path : pathlib.Path
    bundled : bool
        A bundled model: named by its stem, never matched to an official file.

    Returns
    -------
    str
    """
    stat = path.stat()
    return _file_identity_cached(str(path), stat.st_size, stat.st_mtime_ns, bundled)


def keras_digest(model) -> str:
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
