"""Batch extraction with Ray Data (moved to :mod:`edgel3.batch.ray_engine`; names stay here).

See ``docs/scale.rst``.
"""

from __future__ import annotations

from .batch.ray_engine import RAY_INSTALL_HINT, embed_files_ray

__all__ = ["embed_files_ray", "RAY_INSTALL_HINT"]
