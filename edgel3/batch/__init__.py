"""Batch extraction: many files, on one machine or on a Ray cluster.

Every engine embeds each file with :func:`edgel3.engine.embed_path` (long files
are streamed block by block), after resolving the model once with
:func:`edgel3.reference.resolve_model` and locating official weights before any
worker starts. Runs are resumable (a results manifest records finished files),
shardable (``shard='i/n'`` for job arrays) and crash-safe (outputs appear by
atomic renames). See ``docs/scale.rst``.

=====================  ==============================================================
module                 what it holds
=====================  ==============================================================
:mod:`.workers`        :func:`embed_files`: ``jobs`` local worker processes (or this
                       one), ``.npz`` or Parquet output
:mod:`.ray_engine`     :func:`embed_files_ray`: a Ray Data pipeline of model actors
                       writing a Parquet dataset
:mod:`.embedding`      :func:`embed_one_file`: one file, as every engine embeds it
:mod:`.plan`           option checks (:func:`check_run_options`), :class:`RunSummary`,
                       what a run has to do (:func:`plan_run`)
:mod:`.inputs`         input lists (``--manifest``), directories, hash shards
:mod:`.outputs`        results manifest, errors file, Parquet parts and reader
=====================  ==============================================================

Ray, pyarrow and TensorFlow are imported only when a run needs them.

Examples
--------
>>> from edgel3.batch import embed_files, gather_inputs      # doctest: +SKIP
>>> summary = embed_files(gather_inputs(['clips/']), 'emb/', model='tiny', jobs=2)  # doctest: +SKIP
"""

from __future__ import annotations

from .inputs import (
    check_shard,
    gather_inputs,
    parse_shard,
    read_path_list,
    search_roots,
    select_shard,
)
from .outputs import ErrorsFile, FileTask, ResultsManifest
from .parquet import (
    ParquetPartWriter,
    embeddings_table,
    parquet_schema,
    read_parquet_embeddings,
    remove_partial_outputs,
)
from .plan import OUTPUT_FORMATS, ModelRef, RunOptions, RunSummary, resolve_model_ref
from .ray_engine import RAY_INSTALL_HINT, embed_files_ray
from .workers import embed_files

__all__ = [
    "embed_files",
    "embed_files_ray",
    "gather_inputs",
    "search_roots",
    "read_path_list",
    "parse_shard",
    "select_shard",
    "check_shard",
    "RunSummary",
    "RunOptions",
    "OUTPUT_FORMATS",
    "RAY_INSTALL_HINT",
    "read_parquet_embeddings",
    "parquet_schema",
    "embeddings_table",
    "remove_partial_outputs",
    "ResultsManifest",
    "ErrorsFile",
    "FileTask",
    "ParquetPartWriter",
    "ModelRef",
    "resolve_model_ref",
]
