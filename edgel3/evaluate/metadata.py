"""Metadata csv, audio-path and fold helpers shared by the dataset loaders and the protocol."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

from ..checks import check_choice
from ..exceptions import EdgeL3Warning, ParameterError

__all__ = [
    "AUDIO_SUFFIXES",
    "MISSING_ACTIONS",
    "read_csv",
    "require_columns",
    "fold_value",
    "resolve_audio",
    "keep_existing",
    "fold_dirs",
    "sorted_unique",
    "check_folds",
]

#: Extensions tried when a listed file is stored in another format.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
#: Accepted values of ``missing`` (rows whose audio is absent).
MISSING_ACTIONS = ("error", "skip")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Column names and rows (dicts of stripped strings) of a csv with a header."""
    if not path.is_file():
        raise ParameterError(f'Metadata file "{path}" could not be found.')
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]
    if not rows:
        raise ParameterError(f'Metadata file "{path}" has no rows.')
    return columns, rows


def require_columns(columns, needed, path, layout) -> None:
    """Raise ParameterError naming the missing columns and the ones present."""
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ParameterError(
            f'Metadata "{path}" lacks column(s) {missing} needed by layout {layout!r}; '
            f"its columns are {columns}."
        )


def fold_value(text: str):
    """``'3'`` -> 3; other fold names stay strings."""
    try:
        return int(text)
    except ValueError:
        return text


def resolve_audio(audio_dir: Path, name: str) -> Path | None:
    """Find ``name`` under ``audio_dir`` (or ``audio_dir/audio``), allowing another extension.

    ESC-50's csv names ``.wav`` files; copies in FLAC keep the stem.
    """
    for base in (audio_dir, audio_dir / "audio"):
        candidate = base / name
        if candidate.is_file():
            return candidate
        stem = candidate.with_suffix("")
        for suffix in AUDIO_SUFFIXES:
            other = stem.with_suffix(suffix)
            if other.is_file():
                return other
    return None


def keep_existing(paths, audio_dir, missing, what) -> list[int]:
    """Indices of rows whose audio exists; raise or warn about the others."""
    check_choice(missing, MISSING_ACTIONS, "missing")
    absent = [i for i, p in enumerate(paths) if p is None]
    if absent and missing == "error":
        raise ParameterError(
            f"{len(absent)} of {len(paths)} {what} have no audio file under "
            f'"{audio_dir}" (first: {absent[0]}); pass missing="skip" (--skip-missing) '
            "to evaluate the clips that are there."
        )
    if absent:
        warnings.warn(
            f"{len(absent)} of {len(paths)} {what} have no audio under {audio_dir}; skipped.",
            EdgeL3Warning,
            stacklevel=3,
        )
    kept = [i for i, p in enumerate(paths) if p is not None]
    if not kept:
        raise ParameterError(f'No audio file of {what} was found under "{audio_dir}".')
    return kept


def fold_dirs(root: Path) -> list[tuple[int, Path]]:
    """``(N, path)`` of the ``foldN`` folders in ``root``, sorted by N."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = re.fullmatch(r"fold(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match[1]), path))
    return sorted(found)


def sorted_unique(values) -> tuple:
    """The distinct values, sorted (by ``str`` when ints and strings are mixed).

    Parameters
    ----------
    values : iterable
        Fold names, e.g. ``[2, 1, 2]``.

    Returns
    -------
    tuple

    Examples
    --------
    >>> sorted_unique([2, 1, 2])
    (1, 2)
    """
    unique = set(values)
    try:
        return tuple(sorted(unique))
    except TypeError:  # mixed int/str folds
        return tuple(sorted(unique, key=str))


def check_folds(folds, available, name: str) -> list:
    """The folds asked for, as they are named in ``available``.

    A fold may be given as its string (``'1'`` from the command line for
    fold 1).

    Parameters
    ----------
    folds : fold or iterable of folds
    available : sequence
        The dataset's folds.
    name : str
        The argument's name, for the message.

    Returns
    -------
    list
        Values taken from ``available``, in the order asked.

    Raises
    ------
    ParameterError
        For a fold not in ``available``, or none at all.
    """
    folds = list(folds) if not isinstance(folds, (str, int)) else [folds]
    lookup = {str(f): f for f in available}
    chosen = []
    for fold in folds:
        if fold in available:
            chosen.append(fold)
        elif str(fold) in lookup:
            chosen.append(lookup[str(fold)])
        else:
            raise ParameterError(
                f"{name} must be folds of the dataset {list(available)}; got {fold!r}."
            )
    if not chosen:
        raise ParameterError(f"{name} must name at least one fold; got {folds!r}.")
    return chosen
