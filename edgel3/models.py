"""0.2.1's ``edgel3.models``: :func:`load_embedding_model`, :func:`load_embedding_model_path`.

Both keep 0.2.1's argument order ``(model_type, emb_dim, retrain_type,
sparsity)``; :func:`load_embedding_model` returns a model of the caller's own.
The builders live in :mod:`edgel3.networks` and loading in :mod:`edgel3.loading`;
this module keeps the import path 0.2.1 users have.
"""

from .loading import load_embedding_model, load_embedding_model_path
from .networks import build_audio_network, build_model, load_legacy_weights

__all__ = [
    "load_embedding_model",
    "load_embedding_model_path",
    "build_model",
    "build_audio_network",
    "load_legacy_weights",
]
