"""Parquet output of batch extraction: the schema, atomic part files, the reader.

One row per window (``path``, ``timestamp``, ``embedding``, ``model``); each
part carries the run's config in its schema metadata (key ``edgel3``). A part
is recorded in the results manifest (:mod:`edgel3.batch.outputs`) before it is
renamed into place, so a killed run leaves either nothing visible or a
complete, recorded part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..exceptions import OutputError
from .outputs import RUN_ID_PATTERN, FileTask, manifest_record, read_manifests

__all__ = [
    "import_pyarrow",
    "parquet_schema",
    "embeddings_table",
    "ParquetPartWriter",
    "remove_partial_outputs",
    "read_parquet_embeddings",
    "compact_dataset",
    "PYARROW_HINT",
]

PYARROW_HINT = "Parquet output needs pyarrow: pip install pyarrow (or pip install edgel3[ray])."


def import_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an OutputError with the install hint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OutputError(PYARROW_HINT) from exc
    return pa, pq


def parquet_schema():
    """Arrow schema of the Parquet dataset: one row per window.

    Columns: ``path`` (string, the input as listed), ``timestamp`` (float64,
    seconds from the start of the file), ``embedding`` (list<float32>) and
    ``model`` (string, the model id).
    """
    pa, _ = import_pyarrow()
    return pa.schema(
        [
            ("path", pa.string()),
            ("timestamp", pa.float64()),
            ("embedding", pa.list_(pa.float32())),
            ("model", pa.string()),
        ]
    )


def embeddings_table(
    items: Sequence[tuple[str, np.ndarray, np.ndarray]], model_id: str, config: dict | None = None
):
    """Arrow table of ``(path, embedding (T, D), timestamps (T,))`` items, one row per window.

    ``config`` (the run's :meth:`~edgel3.batch.plan.RunOptions.config`: model,
    hop size, centring, resampler, edgel3 version) goes to the schema metadata
    under the key ``edgel3``, as JSON.
    """
    pa, _ = import_pyarrow()
    counts = [len(ts) for _, _, ts in items]
    total = sum(counts)
    dims = {emb.shape[1] for _, emb, _ in items if len(emb)}
    if len(dims) > 1:
        raise OutputError(f"Embeddings of different sizes in one part: {sorted(dims)}.")
    dim = dims.pop() if dims else 0
    flat = (
        np.concatenate([np.asarray(e, np.float32).reshape(-1) for _, e, _ in items])
        if total
        else np.zeros(0, np.float32)
    )
    offsets = np.arange(total + 1, dtype=np.int32) * dim
    embedding = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))
    schema = parquet_schema()
    if config is not None:
        schema = schema.with_metadata({"edgel3": json.dumps(config, sort_keys=True)})
    return pa.Table.from_arrays(
        [
            pa.array(np.repeat([p for p, _, _ in items], counts).tolist(), pa.string()),
            pa.array(np.concatenate([t for _, _, t in items]) if total else [], pa.float64()),
            embedding,
            pa.array([model_id] * total, pa.string()),
        ],
        schema=schema,
    )


class ParquetPartWriter:
    """Buffer per-file embeddings and write them as Parquet parts, atomically.

    A part is written to a hidden temporary file, recorded in the manifest,
    then renamed to ``part-[<tag>-]<run>-<k>.parquet``.

    Parameters
    ----------
    directory : path-like
        The dataset directory.
    manifest : ResultsManifest
    model_id : str
    run_id : str
    tag : str
        Shard tag.
    files_per_part : int
        Input files per part.
    """

    def __init__(self, directory, manifest, model_id, run_id, tag="", files_per_part=256):
        self.directory = Path(directory)
        self.manifest = manifest
        self.model_id = model_id
        self.prefix = "part-" + (f"{tag}-" if tag else "") + run_id
        self.files_per_part = files_per_part
        self._items: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._records: list[dict] = []
        self._count = 0

    def add(self, task: FileTask, embedding, timestamps, duration: float, **facts) -> None:
        """Add one finished file; writes a part when ``files_per_part`` are buffered."""
        self._items.append((task.path, embedding, timestamps))
        self._records.append(manifest_record(task, len(timestamps), duration, **facts))
        if len(self._items) >= self.files_per_part:
            self.flush()

    def flush(self) -> None:
        """Write the buffered files as one part (nothing if the buffer is empty)."""
        if not self._items:
            return
        _, pq = import_pyarrow()
        name = f"{self.prefix}-{self._count:05d}.parquet"
        final = self.directory / name
        tmp = self.directory / f".{name}.partial"
        table = embeddings_table(self._items, self.model_id, self.manifest.config)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp)
            for record in self._records:
                record["output"] = name
            self.manifest.append(self._records)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f'Cannot write Parquet part "{final}": {exc}') from exc
        self._count += 1
        self._items, self._records = [], []


def remove_partial_outputs(directory, tag: str = "") -> list[Path]:
    """Delete temporary files and staging directories left by killed runs of this shard.

    Only hidden ``.part-<tag>...partial`` files and ``.ray-<tag>...`` directories
    are touched; concurrent shards use other tags.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    infix = re.escape(f"{tag}-" if tag else "")
    part = re.compile(rf"\.part-{infix}{RUN_ID_PATTERN}-\d+\.parquet\.partial")
    staging = re.compile(rf"\.ray-{infix}{RUN_ID_PATTERN}")
    removed = []
    for path in directory.iterdir():
        if part.fullmatch(path.name) or staging.fullmatch(path.name):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def compact_dataset(directory) -> int:
    """Drop the rows that a newer record of their file superseded; returns how many.

    A file redone (changed input, other options, ``overwrite``) gets new rows
    in a new part; its old rows stay in an old part until this removes them,
    so that every reader (pyarrow, pandas, Spark) sees each file once. Parts
    are rewritten atomically (a hidden temporary, then a rename); a part left
    empty is deleted. Runs call it under the dataset lock, at start (repairing
    a run killed before it compacted) and at the end.

    Parameters
    ----------
    directory : path-like

    Returns
    -------
    int
        Rows removed.
    """
    pa, pq = import_pyarrow()
    directory = Path(directory)
    newest = {record["path"]: record["output"] for record in read_manifests(directory)}
    if not newest:
        return 0
    removed = 0
    files = sorted(directory.glob("part-*.parquet")) + sorted(directory.glob("ray-*/**/*.parquet"))
    for file in files:
        part = file.relative_to(directory).parts[0]
        paths = pq.read_table(file, columns=["path"]).column("path").to_pylist()
        keep = [newest.get(path, part) == part for path in paths]
        if all(keep):
            continue
        removed += keep.count(False)
        if not any(keep):
            file.unlink()
            continue
        tmp = file.with_name(f".{file.name}.{os.getpid()}.compact.partial")
        try:
            pq.write_table(pq.read_table(file).filter(pa.array(keep)), tmp)
            os.replace(tmp, file)
        except OSError as exc:
            raise OutputError(f'Cannot rewrite Parquet part "{file}": {exc}') from exc
        finally:
            tmp.unlink(missing_ok=True)
    return removed


def read_parquet_embeddings(directory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a Parquet embedding dataset back as ``{path: (embedding, timestamps)}``.

    Rows are grouped per input file and sorted by timestamp. When the
    directory holds a results manifest, only the rows of each file's newest
    record are kept (older rows of a file that changed are ignored).

    Parameters
    ----------
    directory : path-like

    Returns
    -------
    dict of str to (np.ndarray [shape=(T, D)], np.ndarray [shape=(T,)])

    Raises
    ------
    OutputError
        If a file's rows are found in more than one part of its newest record.
    """
    pa, pq = import_pyarrow()
    import pyarrow.dataset as pads

    directory = Path(directory)
    newest: dict[str, str] = {}
    for record in read_manifests(directory):
        newest[record["path"]] = record["output"]
    grouped: dict[str, list] = {}
    dataset = pads.dataset(directory, format="parquet")
    for fragment in dataset.get_fragments():
        part = Path(fragment.path).relative_to(directory).parts[0]
        table = fragment.to_table()
        paths = table.column("path").to_pylist()
        stamps = table.column("timestamp").to_numpy()
        embedding = table.column("embedding").combine_chunks()
        flat = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        dim = flat.size // max(len(paths), 1)
        matrix = flat.reshape(len(paths), dim) if paths else flat.reshape(0, 0)
        for index, path in enumerate(paths):
            if newest and newest.get(path) not in (None, part):
                continue
            grouped.setdefault(path, []).append((part, stamps[index], matrix[index]))
    result = {}
    for path, rows in grouped.items():
        if len({part for part, _, _ in rows}) > 1:
            raise OutputError(
                f"Rows of {path!r} are in several parts: {sorted({r[0] for r in rows})}."
            )
        rows.sort(key=lambda row: row[1])
        result[path] = (
            np.stack([row[2] for row in rows]),
            np.array([row[1] for row in rows], dtype=np.float64),
        )
    return result
