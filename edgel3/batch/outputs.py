"""Records of batch extraction: file tasks, the results manifest, the errors file.

Parquet parts are :mod:`edgel3.batch.parquet`'s.

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
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..exceptions import OutputError

__all__ = [
    "FileTask",
    "ResultsManifest",
    "ErrorsFile",
    "new_run_id",
    "shard_tag",
    "manifest_record",
    "MANIFEST_PREFIX",
    "RECORD_DEFAULTS",
    "RUN_ID_PATTERN",
    "read_manifests",
]

logger = logging.getLogger(__name__)

MANIFEST_PREFIX = "_manifest"
#: Config values of records written before the field existed (older runs were exact).
RECORD_DEFAULTS = {"fast_resample": False}
#: What :func:`new_run_id` makes.
RUN_ID_PATTERN = r"\d{8}T\d{6}-[0-9a-f]{6}"


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
    provenance : dict or None
        The record its output will carry (:func:`edgel3.provenance.make_provenance`).
    reason : str or None
        Why it is computed (``'new'``, ``'overwrite'``, ``'stale: ...'``).
    """

    path: str
    abspath: str
    size: int
    mtime_ns: int
    output: str | None = None
    provenance: dict | None = None
    reason: str | None = None

    @classmethod
    def from_path(cls, path, output: str | None = None, provenance: dict | None = None):
        """Stat ``path`` (a missing file gets size -1 and fails later, when read).

        Parameters
        ----------
        path : path-like
        output : str, optional
        provenance : dict, optional
            Its ``input`` facts give the size and mtime when present.

        Returns
        -------
        FileTask
        """
        text = Path(path).as_posix()
        absolute = os.path.abspath(os.fspath(path))
        facts = (provenance or {}).get("input")
        if facts is not None:
            size, mtime = facts["size"], facts["mtime_ns"]
        else:
            try:
                stat = os.stat(absolute)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
        return cls(text, absolute, size, mtime, output, provenance)


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
        for record in read_manifests(self.directory):
            if self.matches(record):
                self._by_path[record.get("abspath")] = record

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

    def append(self, records: Sequence[dict]) -> None:
        """Append records (config fields are added) with one write; raises OutputError."""
        if not records:
            return
        stamp = time.time()
        full = [{**record, **self.config, "time": stamp} for record in records]
        _append_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in full))
        for record in full:
            self._by_path[record["abspath"]] = record


def read_manifests(directory: Path) -> list[dict]:
    """Records of every shard's manifest in ``directory``, oldest first (later ones supersede).

    Parameters
    ----------
    directory : pathlib.Path

    Returns
    -------
    list of dict
    """
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
    """JSON Lines file of failed inputs and per-file warnings, appended.

    Each line holds ``path``, ``level`` (``'error'`` or ``'warning'``),
    ``error`` (the message), ``run`` and ``time``.

    Parameters
    ----------
    path : path-like or None
        The file; ``None`` records nothing.
    run_id : str
        Written on every line, to tell runs apart.

    Raises
    ------
    OutputError
        If ``path`` is a directory or its folder cannot be written (checked
        here, before any work).
    """

    def __init__(self, path, run_id: str):
        self.path = None if path is None else Path(path)
        self.run_id = run_id
        if self.path is None:
            return
        if self.path.is_dir():
            raise OutputError(f'The errors file "{self.path}" is a directory; name a file.')
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f'Cannot write the errors file "{self.path}": no writable folder.')
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise OutputError(f'Cannot write the errors file "{self.path}": permission denied.')

    def add(self, entries: Iterable[tuple[str, str]], level: str = "error") -> None:
        """Record ``(path, message)`` pairs at ``level`` (``'error'`` or ``'warning'``)."""
        entries = list(entries)
        if self.path is None or not entries:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = "".join(
            json.dumps(
                {"path": path, "level": level, "error": message, "run": self.run_id, "time": stamp}
            )
            + "\n"
            for path, message in entries
        )
        _append_text(self.path, lines)


def manifest_record(task: FileTask, rows: int, duration: float, **facts) -> dict:
    """The manifest record of one finished file (its ``output`` is ``task.output``).

    Parquet writers replace ``output`` by the part (or Ray run directory) holding its rows.

    Parameters
    ----------
    task : FileTask
    rows : int
        Windows embedded.
    duration : float
        Seconds of audio.
    **facts
        More about the input (``sample_rate``, ``frames``).

    Returns
    -------
    dict
        ``path``, ``abspath``, ``size``, ``mtime_ns``, ``output``, ``rows``,
        ``duration`` and ``facts``.
    """
    record = {k: v for k, v in asdict(task).items() if k not in ("provenance", "reason")}
    record.update(rows=int(rows), duration=round(float(duration), 6), **facts)
    return record
