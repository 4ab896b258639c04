"""Outputs of batch extraction: results manifest, errors file, npz files, Parquet parts.

Crash safety rests on two rules:

* every output becomes visible under its final name by one :func:`os.replace`
  (or directory rename) of a complete temporary file, whose name starts with a
  dot, so dataset readers (pyarrow, pandas, Spark, Ray) never list it;
* a Parquet part (or a Ray run's directory of parts) is recorded in the results
  manifest *before* it is renamed into place, and a file counts as done only
  if its manifest record matches *and* that output exists. An interrupted run
  therefore leaves either nothing visible or a complete, recorded output: no
  partial part is mistaken for a finished one, and no file's rows are written
  twice when the run is resumed.

The results manifest is JSON Lines (one object per finished file), appended
with a single ``write`` per batch on an ``O_APPEND`` descriptor; a line torn
by a crash is ignored when read back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..exceptions import OutputError

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
    "MANIFEST_PREFIX",
    "RECORD_DEFAULTS",
]

logger = logging.getLogger(__name__)

MANIFEST_PREFIX = "_manifest"
#: Config values of records written before the field existed (older runs were exact).
RECORD_DEFAULTS = {"fast_resample": False}
_RUN_ID = r"\d{8}T\d{6}-[0-9a-f]{6}"  # what new_run_id() makes
_PYARROW_HINT = "Parquet output needs pyarrow: pip install pyarrow (or pip install edgel3[ray])."


def _import_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OutputError(_PYARROW_HINT) from exc
    return pa, pq


def new_run_id() -> str:
    """A short unique id for one run: UTC time plus random hex (sortable, collision-free)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def shard_tag(shard: tuple[int, int] | None) -> str:
    """File-name tag of a shard: ``''`` for a whole run, ``'shard-1-of-4'`` otherwise."""
    return "" if shard is None else f"shard-{shard[0]}-of-{shard[1]}"


@dataclass(frozen=True)
class FileTask:
    """One input file of a batch run, with the signature used to recognise it later.

    Attributes
    ----------
    path : str
        The path as listed (written to outputs; hashed for sharding).
    abspath : str
        Absolute path (the identity used by the manifest).
    size, mtime_ns : int
        Size and modification time when the run was planned (-1 if missing).
    output : str or None
        The ``.npz`` output path (None for Parquet output).
    """

    path: str
    abspath: str
    size: int
    mtime_ns: int
    output: str | None = None

    @classmethod
    def from_path(cls, path, output: str | None = None) -> FileTask:
        """Stat ``path`` (a missing file gets size -1 and fails later, when read)."""
        text = Path(path).as_posix()
        absolute = os.path.abspath(os.fspath(path))
        try:
            stat = os.stat(absolute)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        return cls(text, absolute, size, mtime, output)


# --------------------------------------------------------------------------- manifest


class ResultsManifest:
    """JSON Lines record of finished files in an output directory.

    Each shard appends to its own file (``_manifest.jsonl`` or
    ``_manifest.shard-1-of-4.jsonl``), so job-array tasks never share a file;
    all of them are read, so a rerun with another sharding still skips files
    done by any shard.

    Parameters
    ----------
    directory : path-like
        The output directory.
    config : dict
        What makes outputs comparable (model id, hop size, centring,
        resampler, format); a record counts only if its config equals this
        one.
    tag : str
        Shard tag (see :func:`shard_tag`).
    """

    def __init__(self, directory, config: dict, tag: str = ""):
        self.directory = Path(directory)
        self.config = dict(config)
        self.path = self.directory / (MANIFEST_PREFIX + (f".{tag}" if tag else "") + ".jsonl")
        self._by_path: dict[str, dict] = {}
        self._by_output: dict[str, dict] = {}
        for record in _read_manifests(self.directory):
            if self.matches(record):
                self._by_path[record.get("abspath")] = record
            if record.get("output"):
                self._by_output[record["output"]] = record

    def matches(self, record: dict) -> bool:
        """Whether ``record`` was made with this config (absent fields: :data:`RECORD_DEFAULTS`).

        Parameters
        ----------
        record : dict

        Returns
        -------
        bool
        """
        return all(record.get(k, RECORD_DEFAULTS.get(k)) == v for k, v in self.config.items())

    def _output_exists(self, output: str) -> bool:
        return (self.directory / output).exists()

    def is_done(self, task: FileTask) -> bool:
        """Whether ``task`` has a matching record whose output exists."""
        record = self._by_path.get(task.abspath)
        return (
            record is not None
            and record.get("size") == task.size
            and record.get("mtime_ns") == task.mtime_ns
            and (task.output is None or record.get("output") == task.output)
            and self._output_exists(record["output"])
        )

    def is_outdated(self, task: FileTask) -> bool:
        """Whether the newest record of ``task.output`` was made from another input or config."""
        record = self._by_output.get(task.output)
        if record is None:
            return False
        same_input = all(record.get(k) == getattr(task, k) for k in ("abspath", "size", "mtime_ns"))
        return not same_input or not self.matches(record)

    def append(self, records: Sequence[dict]) -> None:
        """Append records (config fields are added) with one write; raises OutputError."""
        if not records:
            return
        stamp = time.time()
        full = [{**record, **self.config, "time": stamp} for record in records]
        _append_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in full))
        for record in full:
            self._by_path[record["abspath"]] = record
            self._by_output[record["output"]] = record


def _read_manifests(directory: Path) -> list[dict]:
    """Records of every shard's manifest, oldest first (so later ones supersede)."""
    records = []
    for manifest in sorted(directory.glob(MANIFEST_PREFIX + "*.jsonl")):
        records.extend(_read_jsonl(manifest))
    return sorted(records, key=lambda record: record.get("time", 0.0))


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                logger.warning("%s:%d: ignoring a torn last line", path, number)
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s:%d: ignoring an unreadable line", path, number)
    return records


def _append_text(path: Path, text: str) -> None:
    """Append ``text`` with one ``write`` on an O_APPEND descriptor (mending a torn line)."""
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as reader:
                    reader.seek(size - 1)
                    if reader.read(1) != b"\n":
                        data = b"\n" + data
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f'Cannot append to "{path}": {exc}') from exc


class ErrorsFile:
    """JSON Lines file of failed inputs (``path``, ``error``, ``run``, ``time``), appended.

    Parameters
    ----------
    path : path-like or None
        The file; ``None`` records nothing.
    run_id : str
        Written on every line, to tell runs apart.
    """

    def __init__(self, path, run_id: str):
        self.path = None if path is None else Path(path)
        self.run_id = run_id

    def add(self, entries: Iterable[tuple[str, str]]) -> None:
        """Record ``(path, error message)`` pairs."""
        entries = list(entries)
        if self.path is None or not entries:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = "".join(
            json.dumps({"path": path, "error": error, "run": self.run_id, "time": stamp}) + "\n"
            for path, error in entries
        )
        _append_text(self.path, lines)


# --------------------------------------------------------------------------- parquet


def parquet_schema():
    """Arrow schema of the Parquet dataset: one row per window.

    Columns: ``path`` (string, the input as listed), ``timestamp`` (float64,
    seconds from the start of the file), ``embedding`` (list<float32>) and
    ``model`` (string, the model id).
    """
    pa, _ = _import_pyarrow()
    return pa.schema(
        [
            ("path", pa.string()),
            ("timestamp", pa.float64()),
            ("embedding", pa.list_(pa.float32())),
            ("model", pa.string()),
        ]
    )


def embeddings_table(items: Sequence[tuple[str, np.ndarray, np.ndarray]], model_id: str):
    """Arrow table of ``(path, embedding (T, D), timestamps (T,))`` items, one row per window."""
    pa, _ = _import_pyarrow()
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
    return pa.Table.from_arrays(
        [
            pa.array(np.repeat([p for p, _, _ in items], counts).tolist(), pa.string()),
            pa.array(np.concatenate([t for _, _, t in items]) if total else [], pa.float64()),
            embedding,
            pa.array([model_id] * total, pa.string()),
        ],
        schema=parquet_schema(),
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

    def add(self, task: FileTask, embedding, timestamps, duration: float) -> None:
        """Add one finished file; writes a part when ``files_per_part`` are buffered."""
        self._items.append((task.path, embedding, timestamps))
        self._records.append(manifest_record(task, len(timestamps), duration))
        if len(self._items) >= self.files_per_part:
            self.flush()

    def flush(self) -> None:
        """Write the buffered files as one part (nothing if the buffer is empty)."""
        if not self._items:
            return
        _, pq = _import_pyarrow()
        name = f"{self.prefix}-{self._count:05d}.parquet"
        final = self.directory / name
        tmp = self.directory / f".{name}.partial"
        table = embeddings_table(self._items, self.model_id)
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


def manifest_record(task: FileTask, rows: int, duration: float) -> dict:
    """The manifest record of one finished file (its ``output`` is ``task.output``).

    Parquet writers replace ``output`` by the part (or Ray run directory) holding its rows.

    Parameters
    ----------
    task : FileTask
    rows : int
        Windows embedded.
    duration : float
        Seconds of audio.

    Returns
    -------
    dict
        ``path``, ``abspath``, ``size``, ``mtime_ns``, ``output``, ``rows``, ``duration``.
    """
    record = asdict(task)
    record.update(rows=int(rows), duration=round(float(duration), 6))
    return record


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
    part = re.compile(rf"\.part-{infix}{_RUN_ID}-\d+\.parquet\.partial")
    staging = re.compile(rf"\.ray-{infix}{_RUN_ID}")
    removed = []
    for path in directory.iterdir():
        if part.fullmatch(path.name) or staging.fullmatch(path.name):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
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
    pa, pq = _import_pyarrow()
    import pyarrow.dataset as pads

    directory = Path(directory)
    newest: dict[str, str] = {}
    for record in _read_manifests(directory):
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
