"""Outputs of batch extraction (moved to :mod:`edgel3.batch.outputs` and :mod:`.batch.parquet`).

These names stay importable from here.

Results manifest, errors file, Parquet parts and their reader; see ``docs/scale.rst``.
"""

from __future__ import annotations

from .batch.outputs import (
    MANIFEST_PREFIX,
    ErrorsFile,
    FileTask,
    ResultsManifest,
    manifest_record,
    new_run_id,
    shard_tag,
)
from .batch.parquet import (
    ParquetPartWriter,
    embeddings_table,
    parquet_schema,
    read_parquet_embeddings,
    remove_partial_outputs,
)

#: Former name of :func:`manifest_record` (a ``.npz`` file's record).
npz_record = manifest_record

__all__ = [
    "FileTask",
    "ResultsManifest",
    "ErrorsFile",
    "ParquetPartWriter",
    "parquet_schema",
    "read_parquet_embeddings",
    "remove_partial_outputs",
    "new_run_id",
    "shard_tag",
    "embeddings_table",
    "manifest_record",
    "npz_record",
    "MANIFEST_PREFIX",
]
