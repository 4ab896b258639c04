"""Metadata csv and audio-path helpers shared by the dataset loaders."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

from ..exceptions import EdgeL3Warning, ParameterError

#: Extensions tried when a listed file is stored in another format.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


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
    if missing not in ("error", "skip"):
        raise ParameterError(f"missing must be 'error' or 'skip'; got missing={missing!r}.")
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
