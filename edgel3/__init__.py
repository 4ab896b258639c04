"""edgel3: compact audio embeddings from compressed Look-Listen-Learn (L3) networks.

``import edgel3`` is light: TensorFlow/Keras load only when a model is first
used. The public API of 0.2.1 is kept (its module paths ``edgel3.models``,
``edgel3.edgel3_exceptions``, ``edgel3.edgel3_warnings`` and
``edgel3.version`` included; see the README's "Migrating from 0.2.1")::

    >>> import edgel3
    >>> emb, ts = edgel3.get_embedding(audio, sr, model_type='sea', emb_dim=64)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from .exceptions import (
    AudioError,
    EdgeL3Error,
    EdgeL3Warning,
    OutputError,
    ParameterError,
    WeightsError,
)
from .version import __version__

__all__ = [
    "__version__",
    "get_embedding",
    "load_embedding_model",
    "process_file",
    "process_files",
    "embed_file",
    "get_output_path",
    "EmbeddingStream",
    "resolve_model",
    "EdgeL3Error",
    "ParameterError",
    "AudioError",
    "WeightsError",
    "OutputError",
    "EdgeL3Warning",
]

_LAZY = {
    "get_embedding": "core",
    "load_embedding_model": "core",
    "process_file": "core",
    "process_files": "runs",
    "embed_file": "core",
    "get_output_path": "files",
    "EmbeddingStream": "engine",
    "resolve_model": "reference",
}
_SUBMODULES = {
    "checks",
    "tensors",
    "hear",
    "sklearn",
    "reference",
    "runners",
    "pipeline",
    "engine",
    "loading",
    "litert",
    "networks",
    "core",
    "runs",
    "numpy_runtime",
    "naming",
    "provenance",
    "locks",
    "frontend",
    "resample",
    "resample_kernel",
    "sparse_kernels",
    "models",
    "layers",
    "specs",
    "weights",
    "legacy_h5",
    "files",
    "cli",
    "commands",
    "streaming",
    "sparse",
    "threads",
    "parallel",
    "outputs",
    "distributed",
    "batch",
    "evaluate",
    "export",
    "compress",
    "bundled",
    "version",
    "exceptions",
    "edgel3_exceptions",  # 0.2.1's module paths (aliases of edgel3.exceptions)
    "edgel3_warnings",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'edgel3' has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | _SUBMODULES)
