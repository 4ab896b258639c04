"""Parquet output of batch extraction: the schema, atomic part files, the reader.

One row per window (``path``, ``timestamp``, ``embedding``, ``model``). The
embedding is a ``fixed_size_list<float32>[D]`` (D from the model), so pandas,
Hugging Face ``datasets`` and Spark see a fixed-length vector; datasets written
by older versions (``list<float32>``) still read. Each part carries, in its
schema metadata under the key ``edgel3`` (JSON), how it was made: the run's
config (:meth:`~edgel3.batch.plan.RunOptions.config`, the ``.npz`` provenance
record of :mod:`edgel3.provenance` without its per-file ``input`` facts, which
the results manifest keeps), the model's ``sample_rate`` and the
``embedding_size``. A part is recorded in the results manifest
(:mod:`edgel3.batch.outputs`) before it is renamed into place, so a killed run
leaves either nothing visible or a complete, recorded part. Rows made with
other options are never mixed: :func:`check_dataset_options` refuses a run that
would, :func:`read_parquet_embeddings` a dataset that does.
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
from .outputs import RECORD_DEFAULTS, RUN_ID_PATTERN, FileTask, manifest_record, read_manifests

__all__ = [
    "import_pyarrow",
    "parquet_schema",
    "dataset_metadata",
    "embeddings_table",
    "check_dataset_options",
    "ParquetPartWriter",
    "remove_partial_outputs",
    "read_parquet_embeddings",
    "compact_dataset",
    "PYARROW_HINT",
]

PYARROW_HINT = "Parquet output needs pyarrow: pip install pyarrow (or pip install edgel3[ray])."
#: Schema metadata key of the JSON record of how a part was made.
METADATA_KEY = "edgel3"
#: The options that change the numbers: rows made with other values must not be mixed.
NUMBER_OPTIONS = ("model", "hop_size", "center", "fast_resample")


def import_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an OutputError with the install hint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OutputError(PYARROW_HINT) from exc
    return pa, pq


def parquet_schema(embedding_size: int | None = None, metadata: dict | None = None):
    """Arrow schema of the Parquet dataset: one row per window.

    Parameters
    ----------
    embedding_size : int, optional
        D, the values per embedding: the ``embedding`` column is then a
        ``fixed_size_list<float32>[D]``. None gives ``list<float32>``, the
        type of datasets written by older versions.
    metadata : dict, optional
        How the part was made (:func:`dataset_metadata`), stored as JSON under
        the key ``edgel3``.

    Returns
    -------
    pyarrow.Schema
        ``path`` (string, the input as listed), ``timestamp`` (float64, seconds
        from the start of the file), ``embedding`` and ``model`` (string, the
        model id).
    """
    pa, _ = import_pyarrow()
    embedding = pa.list_(pa.float32(), -1 if embedding_size is None else int(embedding_size))
    schema = pa.schema(
        [
            ("path", pa.string()),
            ("timestamp", pa.float64()),
            ("embedding", embedding),
            ("model", pa.string()),
        ]
    )
    if metadata is not None:
        schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return schema


def dataset_metadata(config: dict, reference) -> dict:
    """How a run's parts are made: its config and the model's sample rate.

    Parameters
    ----------
    config : dict
        The run's :meth:`~edgel3.batch.plan.RunOptions.config` (``model``,
        ``hop_size``, ``center``, ``fast_resample``, ``format``, ``edgel3``:
        the fields of the ``.npz`` provenance record but the per-file input).
    reference : ModelReference
        The run's model.

    Returns
    -------
    dict
        ``config`` plus ``sample_rate`` (Hz: the model's input rate, which every
        file was resampled to). :func:`embeddings_table` adds ``embedding_size``.
    """
    return {**config, "sample_rate": int(reference.sample_rate)}


def _metadata_record(schema) -> dict | None:
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def embeddings_table(
    items: Sequence[tuple[str, np.ndarray, np.ndarray]],
    model_id: str,
    config: dict | None = None,
    *,
    embedding_size: int | None = None,
):
    """Arrow table of ``(path, embedding (T, D), timestamps (T,))`` items, one row per window.

    Parameters
    ----------
    items : sequence of (str, np.ndarray [shape=(T, D)], np.ndarray [shape=(T,)])
    model_id : str
    config : dict, optional
        How the rows were made (:func:`dataset_metadata`), stored in the schema
        metadata (key ``edgel3``) with ``embedding_size`` added.
    embedding_size : int, optional
        D, when known beforehand (it types a table without rows); by default
        the items' width.

    Returns
    -------
    pyarrow.Table
        The :func:`parquet_schema` of D; the ``embedding`` column is
        ``fixed_size_list<float32>[D]`` (``list<float32>`` only for a table
        without rows whose D is unknown).

    Raises
    ------
    OutputError
        Items of different widths, or not ``embedding_size`` wide.
    """
    pa, _ = import_pyarrow()
    counts = [len(ts) for _, _, ts in items]
    total = sum(counts)
    dims = {np.shape(emb)[1] for _, emb, _ in items if len(emb)}
    if embedding_size is not None:
        dims.add(int(embedding_size))
    if len(dims) > 1:
        raise OutputError(f"Embeddings of different sizes in one part: {sorted(dims)}.")
    dim = dims.pop() if dims else None
    flat = (
        np.concatenate([np.asarray(e, np.float32).reshape(-1) for _, e, _ in items])
        if total
        else np.zeros(0, np.float32)
    )
    values = pa.array(flat, pa.float32())
    if dim is None:  # no rows, no size: the untyped list of older versions
        embedding = pa.ListArray.from_arrays(pa.array([0], pa.int32()), values)
    else:
        embedding = pa.FixedSizeListArray.from_arrays(values, dim)
    metadata = None if config is None else {**config, "embedding_size": dim}
    return pa.Table.from_arrays(
        [
            pa.array(np.repeat([p for p, _, _ in items], counts).tolist(), pa.string()),
            pa.array(np.concatenate([t for _, _, t in items]) if total else [], pa.float64()),
            embedding,
            pa.array([model_id] * total, pa.string()),
        ],
        schema=parquet_schema(dim, metadata),
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
    metadata : dict, optional
        What each part's schema metadata records (:func:`dataset_metadata`);
        by default the manifest's config.
    """

    def __init__(
        self,
        directory,
        manifest,
        model_id,
        run_id,
        tag="",
        files_per_part=256,
        *,
        metadata: dict | None = None,
    ):
        self.directory = Path(directory)
        self.manifest = manifest
        self.metadata = dict(manifest.config if metadata is None else metadata)
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
        table = embeddings_table(self._items, self.model_id, self.metadata)
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
    record are kept (older rows of a file that changed are ignored). Datasets
    written by older versions (``list<float32>`` embeddings) read the same.

    Parameters
    ----------
    directory : path-like

    Returns
    -------
    dict of str to (np.ndarray [shape=(T, D), dtype=float32], np.ndarray [shape=(T,)])

    Raises
    ------
    OutputError
        If a file's rows are found in more than one part of its newest record,
        or the rows kept were made with different options (model, hop size,
        centring, resampler) or have different sizes.
    """
    import_pyarrow()  # the install hint, if missing
    import pyarrow.dataset as pads

    directory = Path(directory)
    newest: dict[str, str] = {}
    for record in read_manifests(directory):
        newest[record["path"]] = record["output"]
    grouped: dict[str, list] = {}
    kinds: dict[tuple, set[str]] = {}  # (options, D) -> the files whose rows were made so
    dataset = pads.dataset(directory, format="parquet")
    for fragment in dataset.get_fragments():
        part = Path(fragment.path).relative_to(directory).parts[0]
        table = fragment.to_table()
        paths = table.column("path").to_pylist()
        stamps = table.column("timestamp").to_numpy()
        matrix = _embedding_matrix(table.column("embedding"), fragment.path)
        kept = set()
        for index, path in enumerate(paths):
            if newest and newest.get(path) not in (None, part):
                continue
            grouped.setdefault(path, []).append((part, stamps[index], matrix[index]))
            kept.add(path)
        if kept:
            record = _metadata_record(fragment.physical_schema)
            kind = (None if record is None else _options(record), matrix.shape[1])
            kinds.setdefault(kind, set()).update(kept)
    _check_one_kind(directory, kinds)
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


def _embedding_matrix(column, where) -> np.ndarray:
    """``(rows, D)`` float32 of an ``embedding`` column, fixed-size or (older) variable lists."""
    pa, _ = import_pyarrow()
    import pyarrow.compute as pc

    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        dim = array.type.list_size
    else:  # list<float32> of older versions: every row must have one length
        lengths = set(pc.list_value_length(array).to_numpy(zero_copy_only=False).tolist())
        if len(lengths) > 1:
            raise OutputError(f'"{where}" holds embeddings of sizes {sorted(lengths)}.')
        dim = int(lengths.pop()) if lengths else 0
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(array), dim)


def _options(record: dict) -> tuple:
    """The values of :data:`NUMBER_OPTIONS` in a record (absent: :data:`RECORD_DEFAULTS`)."""
    return tuple(record.get(key, RECORD_DEFAULTS.get(key)) for key in NUMBER_OPTIONS)


def _describe(options: tuple | None, dim: int | None = None) -> str:
    """``"model 'm', hop_size 0.1, center True, fast_resample False[, 64 values]"``."""
    pairs = zip(NUMBER_OPTIONS, options or ())
    text = ", ".join(f"{key} {value!r}" for key, value in pairs) or "unrecorded options"
    return text if dim is None else f"{text}, {dim} values"


def _listing(kinds: dict[tuple, set[str]]) -> str:
    """``(options, D or None) -> paths`` as ``'<options> (2 files: a.wav, b.wav); ...'``."""
    texts = []
    for (options, dim), paths in sorted(kinds.items(), key=lambda item: repr(item[0])):
        names = sorted(paths)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        texts.append(f"{_describe(options, dim)} ({len(names)} files: {shown})")
    return "; ".join(texts)


def _check_one_kind(directory: Path, kinds: dict[tuple, set[str]]) -> None:
    """Refuse rows of different sizes, or made with different recorded options."""
    dims = {dim for _, dim in kinds}
    recorded = {options for options, _ in kinds if options is not None}
    if len(dims) <= 1 and len(recorded) <= 1:
        return
    raise OutputError(
        f'The Parquet dataset "{directory}" mixes rows made in different ways: {_listing(kinds)}.'
        " Run edgel3 again over all of its files with one set of options, or give each set of "
        "options its own directory."
    )


def check_dataset_options(directory, config: dict, paths) -> None:
    """Refuse a Parquet run that would leave rows made with other options beside its own.

    A run redoes every one of its files whose rows were made with other
    options (model, hop size, centring, resampler: :data:`NUMBER_OPTIONS`), and
    their old rows are then dropped (:func:`compact_dataset`). Files of the
    dataset that are not among the run's inputs would keep their old rows:
    mixed with the new ones, they would be read as one dataset. Such a run is
    refused before any work. Runs call it under the dataset lock.

    Parameters
    ----------
    directory : path-like
        The dataset.
    config : dict
        The run's :meth:`~edgel3.batch.plan.RunOptions.config`.
    paths : iterable of path-like
        Every input of the run (of all its shards).

    Raises
    ------
    OutputError
        Naming the dataset's options, the files concerned and what to do.
    """
    directory = Path(directory)
    newest: dict[str, dict] = {}
    for record in read_manifests(directory):
        newest[record.get("abspath", record.get("path"))] = record
    inputs = {os.path.abspath(os.fspath(path)) for path in paths}
    wanted = _options(config)
    others: dict[tuple, set[str]] = {}
    for abspath, record in newest.items():
        if abspath in inputs or _options(record) == wanted or record.get("format") == "npz":
            continue
        if not (directory / str(record.get("output", ""))).exists():
            continue  # its rows are gone
        others.setdefault((_options(record), None), set()).add(str(record.get("path", abspath)))
    if not others:
        return
    raise OutputError(
        f'The Parquet dataset "{directory}" holds files made with other options than this '
        f"run's ({_describe(wanted)}) that it does not redo: {_listing(others)}. Their rows would "
        "be mixed with the new ones. Write to another directory, or include those files in "
        "the run (they are then redone with its options)."
    )
