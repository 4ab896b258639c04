"""Metadata csv, audio-path and fold helpers shared by the dataset loaders and the protocol.

Every loader validates its metadata before anything is embedded: the rows' file
names, folds and labels are checked together and every problem found goes into
one :class:`~edgel3.exceptions.ParameterError` that names the offending rows
(file and csv line) and counts them (see ``docs/evaluate.rst``, Metadata checks).
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_choice
from ..exceptions import EdgeL3Warning, ParameterError

__all__ = [
    "AUDIO_SUFFIXES",
    "MISSING_ACTIONS",
    "SHOWN_ROWS",
    "Row",
    "Problems",
    "read_csv",
    "require_columns",
    "parse_int",
    "describe_row",
    "listing",
    "integer_column",
    "text_column",
    "fold_column",
    "find_audio",
    "found_rows",
    "class_names",
    "check_classes",
    "resolve_audio",
    "fold_dirs",
    "detect_layout",
    "sorted_unique",
    "check_folds",
]

#: Extensions tried when a listed file is stored in another format.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
#: Accepted values of ``missing`` (rows whose audio is absent).
MISSING_ACTIONS = ("error", "skip")
#: Rows (or files) named in one message; the others are counted.
SHOWN_ROWS = 3


@dataclass(frozen=True)
class Row:
    """One record of a metadata csv (``row["fold"]``, ``row.get("group")`` read its values).

    Attributes
    ----------
    line : int
        1-based line of the record in the file (the header is line 1).
    values : dict
        Column name -> stripped string (``''`` where the record has no value).
    """

    line: int
    values: dict

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def get(self, column: str, default=None):
        """The value of ``column``, or ``default`` when the csv has no such column."""
        return self.values.get(column, default)


def read_csv(path: Path) -> tuple[list[str], list[Row]]:
    """Column names and rows of a csv with a header.

    Parameters
    ----------
    path : pathlib.Path

    Returns
    -------
    columns : list of str
        Stripped header names.
    rows : list of Row
        Blank lines are skipped; values are stripped strings.

    Raises
    ------
    ParameterError
        If the file is missing, not UTF-8 text or csv, or has no rows.
    """
    if not path.is_file():
        raise ParameterError(f'Metadata file "{path}" could not be found.')
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            for record in reader:
                values = {k.strip(): (v or "").strip() for k, v in record.items() if k}
                rows.append(Row(reader.line_num, values))
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ParameterError(f'Metadata file "{path}" is not a UTF-8 csv file: {exc}.') from None
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


def parse_int(text: str) -> int | None:
    """An integer written as ``'3'`` or ``'3.0'`` (as pandas writes a column with blanks).

    Examples
    --------
    >>> parse_int('3'), parse_int('3.0'), parse_int('1.5'), parse_int('x')
    (3, 3, None, None)
    """
    try:
        return int(text)
    except ValueError:
        value = _number(text)
    return int(value) if value is not None and value.is_integer() else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def describe_row(name: str, line: int | None = None, detail: str | None = None) -> str:
    """How a message names a clip: ``'"a.wav" (metadata line 6, fold "x")'``.

    Parameters
    ----------
    name : str
        The file as the metadata (or the folder) names it.
    line : int, optional
        Its csv line.
    detail : str, optional
        The offending value.

    Returns
    -------
    str
    """
    notes = [f"metadata line {line}"] if line is not None else []
    if detail:
        notes.append(detail)
    return f'"{name}"' + (f" ({', '.join(notes)})" if notes else "")


def listing(items, limit: int = SHOWN_ROWS) -> str:
    """The first ``limit`` items joined by commas, and how many more there are.

    Examples
    --------
    >>> listing(['a', 'b', 'c', 'd', 'e'])
    'a, b, c and 2 more'
    """
    items = list(items)
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += f" and {len(items) - limit} more"
    return text


class Problems:
    """Invalid rows of one metadata file (or files of one folder), raised as one error.

    Parameters
    ----------
    source : str
        What was read, e.g. the csv's path.
    total : int
        Rows (files) read, for the counts.
    unit : str
        ``'rows'`` or ``'files'``.
    """

    def __init__(self, source, total: int, unit: str = "rows"):
        self.source = str(source)
        self.total = total
        self.unit = unit
        self.kinds: dict[str, list[str]] = {}
        self.hint = ""

    def add(self, what: str, item: str) -> None:
        """Record ``item`` (a :func:`describe_row` text) under the problem ``what``."""
        self.kinds.setdefault(what, []).append(item)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def message(self) -> str:
        """One line: every kind of problem with its count and first rows."""
        parts = [
            f"{what} ({len(items)} of {self.total} {self.unit}): {listing(items)}"
            for what, items in self.kinds.items()
        ]
        hint = self.hint or "Nothing was embedded or scored."
        return f'Cannot evaluate "{self.source}": {"; ".join(parts)}. {hint}'

    def raise_if_any(self) -> None:
        """Raise the one :class:`ParameterError` describing every recorded problem.

        Raises
        ------
        ParameterError
            If any problem was recorded.
        """
        if self.kinds:
            raise ParameterError(self.message())


def text_column(rows, column: str, problems: Problems, name_column: str) -> list[str]:
    """The values of ``column``; a blank one is a problem."""
    for row in rows:
        if not row.get(column, ""):
            problems.add(f"{column} is blank", describe_row(row[name_column], row.line))
    return [row.get(column, "") for row in rows]


def integer_column(
    rows, column: str, problems: Problems, name_column: str, *, non_negative: bool = False
) -> list[int | None]:
    """The values of ``column`` as integers (None where invalid, recorded in ``problems``)."""
    kind = "a non-negative integer" if non_negative else "an integer"
    values = []
    for row in rows:
        text = row.get(column, "")
        value = parse_int(text) if text else None
        if not text:
            problems.add(f"{column} is blank", describe_row(row[name_column], row.line))
        elif value is None or (non_negative and value < 0):
            problems.add(
                f"{column} must be {kind}",
                describe_row(row[name_column], row.line, f'{column} "{text}"'),
            )
            value = None
        values.append(value)
    return values


def fold_column(rows, problems: Problems, name_column: str, *, names_allowed: bool = False):
    """The ``fold`` of every row: an integer (``'2'`` or ``'2.0'``).

    With ``names_allowed`` (the generic layout), folds that are all names
    (``train``/``test``) are kept as strings; as soon as one fold is a number,
    every fold must be an integer.
    """
    texts = [row.get("fold", "") for row in rows]
    if names_allowed and not any(_number(t) is not None for t in texts if t):
        return text_column(rows, "fold", problems, name_column)
    return integer_column(rows, "fold", problems, name_column)


def find_audio(rows, names, base: Path, missing: str, problems: Problems) -> list:
    """The audio file of every row (None where absent), checking names and duplicates.

    Parameters
    ----------
    rows : list of Row
    names : list of str or None
        The file each row names (relative to ``base``); None: not looked up
        (the row has another problem).
    base : pathlib.Path
        The audio folder.
    missing : {'error', 'skip'}
        A row without audio is a problem, or is skipped with an
        :class:`~edgel3.exceptions.EdgeL3Warning` naming it.
    problems : Problems

    Returns
    -------
    list of pathlib.Path or None
    """
    check_choice(missing, MISSING_ACTIONS, "missing")
    paths, absent, first_row = [], [], {}
    for row, name in zip(rows, names):
        path = resolve_audio(base, name) if name else None
        paths.append(path)
        if name is None:
            continue
        if not name:
            problems.add("file name is blank", describe_row("", row.line))
        elif path is None:
            absent.append(describe_row(name, row.line))
        elif path in first_row:
            problems.add(
                "file listed more than once",
                describe_row(name, row.line, f"first on line {first_row[path]}"),
            )
        else:
            first_row[path] = row.line
    if absent and missing == "error":
        for item in absent:
            problems.add(f'audio file not found in "{base}"', item)
        problems.hint = (
            'Nothing was embedded or scored; pass missing="skip" (--skip-missing) to '
            "evaluate the clips that are there."
        )
    elif absent:
        warnings.warn(
            f"skipped {len(absent)} of {len(rows)} metadata rows whose audio file is not in "
            f'"{base}": {listing(absent)}',
            EdgeL3Warning,
            stacklevel=4,
        )
    return paths


def class_names(rows, ids, name_column: str, problems: Problems, file_column: str) -> dict:
    """Class id -> name from a name column; one id named two ways is a problem."""
    first = {}
    for row, class_id in zip(rows, ids):
        name = row.get(name_column) or ""
        if class_id is None or not name:
            continue
        earlier, line = first.setdefault(class_id, (name, row.line))
        if earlier != name:
            problems.add(
                f"{name_column} differs from an earlier row of the same class id",
                describe_row(row[file_column], row.line, f'"{name}", line {line}: "{earlier}"'),
            )
    return {class_id: name for class_id, (name, _) in first.items()}


def found_rows(rows, paths, names, metadata, audio_dir) -> tuple[list, tuple]:
    """Indices of the rows whose audio exists, and descriptions of the others."""
    keep = [i for i, path in enumerate(paths) if path is not None]
    if not keep:
        raise ParameterError(f'No audio file listed in "{metadata}" was found in "{audio_dir}".')
    skipped = tuple(describe_row(names[i], rows[i].line) for i, p in enumerate(paths) if p is None)
    return keep, skipped


def check_classes(classes, labels, source, multilabel: bool = False) -> None:
    """At least two classes (each with a clip) are needed to classify anything."""
    if len(classes) >= 2:
        return
    counts = np.asarray(labels).sum(axis=0) if multilabel else [len(labels)] * len(classes)
    found = ", ".join(f'"{c}" ({int(n)} clips)' for c, n in zip(classes, counts)) or "none"
    raise ParameterError(
        f'Cannot evaluate "{source}": it has {len(classes)} class, {found}; classification '
        "needs at least two classes. Nothing was embedded or scored."
    )


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


def detect_layout(audio_dir, metadata=None) -> str:
    """Guess the layout from the csv's columns, or from ``foldN/`` folders.

    Parameters
    ----------
    audio_dir : path-like
    metadata : path-like, optional

    Returns
    -------
    {'esc50', 'us8k', 'generic'}

    Raises
    ------
    ParameterError
        If nothing matches.
    """
    if metadata is None:
        root = Path(audio_dir)
        if fold_dirs(root) or fold_dirs(root / "audio"):
            return "us8k"
        raise ParameterError(
            f'Cannot tell the layout of "{audio_dir}" without metadata: pass the metadata csv '
            "(ESC-50, UrbanSound8K or path,label,fold) or use foldN/ folders."
        )
    columns, _ = read_csv(Path(metadata))
    if "slice_file_name" in columns:
        return "us8k"
    if {"filename", "fold", "target"} <= set(columns):
        return "esc50"
    if {"path", "label", "fold"} <= set(columns):
        return "generic"
    raise ParameterError(
        f'Cannot tell the layout of "{metadata}" from its columns {columns}: expected '
        "ESC-50 (filename,fold,target), UrbanSound8K (slice_file_name,fold,classID) or "
        "generic (path,label,fold)."
    )


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
