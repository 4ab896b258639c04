"""Input lists (``--manifest``), directory expansion and stable hash sharding (``--shard``)."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..checks import check_non_negative_int, check_positive_int
from ..exceptions import AudioError, ParameterError
from ..files import collect_audio_files

__all__ = [
    "read_path_list",
    "gather_inputs",
    "search_roots",
    "parse_shard",
    "select_shard",
    "check_shard",
]


def read_path_list(path) -> list[Path]:
    """Read a list of input paths from a text or CSV file.

    A ``.csv`` file needs a header row; paths are taken from its ``path``
    column (else ``filename``, else ``file``, else the first column). Any other
    file holds one path per line; blank lines and lines starting with ``#``
    are skipped. Relative paths are relative to the list's own folder.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    AudioError
        If the list cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AudioError(f'Could not read the list of files "{path}": {exc}') from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [cell.strip().lower() for cell in rows[0]]
        column = next((header.index(n) for n in ("path", "filename", "file") if n in header), 0)
        entries = [row[column].strip() for row in rows[1:] if len(row) > column]
    else:
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if not e.startswith("#")]
    return [path.parent / e for e in entries if e]


def gather_inputs(inputs: Iterable = (), *, manifest=None, recursive: bool = True) -> list[Path]:
    """Expand inputs and a list file into a de-duplicated list of audio files.

    Parameters
    ----------
    inputs : iterable of path-like
        Files and directories, as :func:`edgel3.files.collect_audio_files` takes them
        (a missing one is an error).
    manifest : path-like, optional
        A list of paths (see :func:`read_path_list`); a listed file that is
        missing is kept, to be reported as a failed file.
    recursive : bool
        Search directories recursively.

    Returns
    -------
    list of pathlib.Path
        Positional inputs first, then the listed ones, each file once.
    """
    found = collect_audio_files(inputs, recursive=recursive)
    if manifest is not None:
        for entry in read_path_list(manifest):
            if entry.is_dir():
                found.extend(collect_audio_files([entry], recursive=recursive))
            else:
                found.append(entry)
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def search_roots(inputs: Iterable = (), *, manifest=None) -> list[Path]:
    """The directories :func:`gather_inputs` searches (inputs and list entries that are folders).

    Their sub-folders are kept in output names (:func:`edgel3.naming.output_paths`).

    Parameters
    ----------
    inputs : iterable of path-like
    manifest : path-like, optional

    Returns
    -------
    list of pathlib.Path
    """
    entries = [Path(item) for item in inputs]
    if manifest is not None:
        entries.extend(read_path_list(manifest))
    return [entry for entry in entries if entry.is_dir()]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``'i/n'`` (0-based ``i``, ``0 <= i < n``) into ``(i, n)``.

    Raises
    ------
    ParameterError
        If ``text`` is not of that form.

    Examples
    --------
    >>> parse_shard('2/8')
    (2, 8)
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ParameterError(f"shard must be 'i/n' with integers; got {text!r}.") from None
    check_shard((index, count))
    return index, count


def check_shard(shard) -> tuple[int, int] | None:
    """Check a shard given as ``(i, n)``, ``'i/n'`` or None (0-based ``0 <= i < n``).

    Parameters
    ----------
    shard : (int, int), str or None

    Returns
    -------
    (int, int) or None

    Raises
    ------
    ParameterError
        If ``i`` or ``n`` is not an integer (``True`` included) or ``i`` is out of range.
    """
    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ParameterError(f"shard must be (i, n) or 'i/n'; got shard={shard!r}.") from None
    index = check_non_negative_int(index, "shard index")
    count = check_positive_int(count, "shard count")
    if index >= count:
        raise ParameterError(
            f"shard index is 0-based: expected i/n with 0 <= i < n; got {index}/{count}."
        )
    return index, count


def _shard_of(path, count: int) -> int:
    digest = hashlib.sha1(Path(path).as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Sequence, index: int, count: int) -> list:
    """The paths of shard ``index`` of ``count``, chosen by a hash of each path.

    A path's shard depends on the path alone (as listed, not on the other
    files or their order), so shards are stable across runs and over a growing
    corpus, and the ``count`` shards cover every path exactly once.

    Parameters
    ----------
    paths : sequence of path-like
    index, count : int
        ``0 <= index < count``.

    Returns
    -------
    list
        The selected paths, in their original order.
    """
    index, count = check_shard((index, count))
    return [p for p in paths if _shard_of(p, count) == index]
