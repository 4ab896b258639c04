"""Batch extraction on one machine (moved to :mod:`edgel3.batch`; these names stay here).

:func:`embed_files` runs worker processes; see :mod:`edgel3.batch.workers` and
``docs/scale.rst``.
"""

from __future__ import annotations

from .batch.inputs import gather_inputs, parse_shard, read_path_list, select_shard
from .batch.plan import OUTPUT_FORMATS, ModelRef, RunSummary, resolve_model_ref
from .batch.workers import embed_files

__all__ = [
    "embed_files",
    "gather_inputs",
    "read_path_list",
    "parse_shard",
    "select_shard",
    "resolve_model_ref",
    "ModelRef",
    "RunSummary",
    "OUTPUT_FORMATS",
]
