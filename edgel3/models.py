"""0.2.1's ``edgel3.models``: :func:`load_embedding_model`, plus the network builders.

The builders live in :mod:`edgel3.networks` and loading in :mod:`edgel3.loading`;
this module keeps the import path 0.2.1 users have.
"""

from .loading import load_embedding_model
from .networks import build_audio_network, build_model, load_legacy_weights

__all__ = ["load_embedding_model", "build_model", "build_audio_network", "load_legacy_weights"]
