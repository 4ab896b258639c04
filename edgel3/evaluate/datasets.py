"""Labelled audio datasets with predefined folds: ESC-50/ESC-10, UrbanSound8K, generic csv.

Every loader returns a :class:`Dataset`: one row per clip with its audio path,
its fold, its label(s) and its *group* (the source recording the clip was cut
from, used to keep fragments of one recording together whenever data are split
inside the training folds).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..checks import check_choice, check_flag
from ..exceptions import ParameterError
from .metadata import (
    AUDIO_SUFFIXES,
    Problems,
    check_classes,
    check_folds,
    class_names,
    describe_row,
    detect_layout,
    find_audio,
    fold_column,
    fold_dirs,
    found_rows,
    integer_column,
    read_csv,
    require_columns,
    sorted_unique,
    text_column,
)

__all__ = [
    "Dataset",
    "LAYOUTS",
    "US8K_CLASSES",
    "load_dataset",
    "load_esc50",
    "load_us8k",
    "load_generic",
    "detect_layout",
]

#: Accepted values of ``layout``.
LAYOUTS = ("auto", "esc50", "us8k", "generic")

#: UrbanSound8K class names, indexed by ``classID``.
US8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)

_US8K_NAME = re.compile(r"^(?P<fsid>\d+)-(?P<classid>\d+)-(?P<occ>\d+)-(?P<slice>\d+)$")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Clips, labels and folds of a classification dataset.

    Parameters
    ----------
    paths : tuple of pathlib.Path [length n]
        Audio file of each clip.
    labels : np.ndarray [shape=(n,) int or (n, n_classes) bool]
        Class index of each clip, or a multi-hot matrix when ``multilabel``.
    folds : tuple [length n]
        Fold of each clip (int, or str such as ``'train'``/``'test'``).
    classes : tuple of str [length n_classes]
        Class names; ``labels`` index into them.
    groups : tuple of str [length n]
        Source recording of each clip (the clip's own path when unknown).
    name : str
        A short dataset name used in reports.
    layout : {'esc50', 'us8k', 'generic'}
    multilabel : bool
    metadata : str or None
        The metadata file the dataset was read from.
    lines : tuple of int [length n], optional
        The metadata line of each clip (empty when the clips came from folders).
    skipped : tuple of str
        The metadata rows left out because their audio was missing
        (``missing='skip'``), as messages name them.
    """

    paths: tuple
    labels: np.ndarray
    folds: tuple
    classes: tuple
    groups: tuple
    name: str = "dataset"
    layout: str = "generic"
    multilabel: bool = False
    metadata: str | None = None
    lines: tuple = ()
    skipped: tuple = ()
    fold_names: tuple = field(init=False)

    def __post_init__(self):
        n = len(self.paths)
        labels = np.asarray(self.labels)
        if self.multilabel:
            labels = labels.astype(bool)
            expected = (n, len(self.classes))
        else:
            labels = labels.astype(np.int64)
            expected = (n,)
        if labels.shape != expected:
            raise ParameterError(
                f"labels must have shape {expected} for {n} clips and {len(self.classes)} "
                f"classes; got shape {labels.shape}."
            )
        if not self.multilabel and n and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ParameterError(
                f"labels must index into the {len(self.classes)} classes; "
                f"got values from {labels.min()} to {labels.max()}."
            )
        if len(self.folds) != n or len(self.groups) != n or len(self.lines) not in (0, n):
            raise ParameterError(
                f"Got {n} paths but {len(self.folds)} folds, {len(self.groups)} groups and "
                f"{len(self.lines)} metadata lines."
            )
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "folds", tuple(self.folds))
        object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "skipped", tuple(self.skipped))
        object.__setattr__(self, "fold_names", sorted_unique(self.folds))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, clips={len(self)}, classes={len(self.classes)}, "
            f"folds={list(self.fold_names)}, multilabel={self.multilabel})"
        )

    def describe(self, index: int) -> str:
        """How messages name a clip: ``"a.wav" (metadata line 6)``, or ``"fold1/a.wav"``."""
        path = self.paths[index]
        if self.lines:
            return describe_row(path.name, self.lines[index])
        return describe_row(f"{path.parent.name}/{path.name}")

    def subset(self, folds) -> Dataset:
        """Return the clips of the given folds only.

        Parameters
        ----------
        folds : iterable
            Fold names, as in :attr:`fold_names`.

        Returns
        -------
        Dataset

        Raises
        ------
        ParameterError
            If a fold is not in the dataset.
        """
        wanted = check_folds(folds, self.fold_names, "folds")
        keep = [i for i, f in enumerate(self.folds) if f in wanted]
        return replace(
            self,
            paths=tuple(self.paths[i] for i in keep),
            labels=self.labels[keep],
            folds=tuple(self.folds[i] for i in keep),
            groups=tuple(self.groups[i] for i in keep),
            lines=tuple(self.lines[i] for i in keep) if self.lines else (),
        )


# --------------------------------------------------------------------------- loaders


def load_esc50(audio_dir, metadata, *, missing: str = "error", name: str | None = None) -> Dataset:
    """Read an ESC-50 / ESC-10 style dataset (``filename,fold,target,category,...``).

    Parameters
    ----------
    audio_dir : path-like
        Folder holding the clips (or a dataset root with an ``audio/`` folder).
        A clip listed as ``x.wav`` may be stored as ``x.flac``.
    metadata : path-like
        ``esc50.csv`` or ``esc10.csv``.
    missing : {'error', 'skip'}
        What to do with rows whose audio is absent.
    name : str, optional
        Dataset name for reports (default: the csv's stem).

    Returns
    -------
    Dataset
        Classes in ``target`` order; groups are the Freesound ``src_file`` ids.

    Raises
    ------
    ParameterError
        For invalid rows (see ``docs/evaluate.rst``, Metadata checks), all named
        in one message, or fewer than two classes.
    """
    audio_dir, metadata = Path(audio_dir), Path(metadata)
    columns, rows = read_csv(metadata)
    require_columns(columns, ("filename", "fold", "target"), metadata, "esc50")
    problems = Problems(metadata, len(rows))
    folds = fold_column(rows, problems, "filename")
    targets = integer_column(rows, "target", problems, "filename", non_negative=True)
    names = [row["filename"] for row in rows]
    paths = find_audio(rows, names, audio_dir, missing, problems)
    category = class_names(rows, targets, "category", problems, "filename")
    problems.raise_if_any()
    keep, skipped = found_rows(rows, paths, names, metadata, audio_dir)
    ids = sorted({targets[i] for i in keep})
    index = {t: i for i, t in enumerate(ids)}
    classes = [category.get(t) or str(t) for t in ids]
    labels = [index[targets[i]] for i in keep]
    check_classes(classes, labels, metadata)
    return Dataset(
        paths=[paths[i] for i in keep],
        labels=labels,
        folds=[folds[i] for i in keep],
        classes=classes,
        groups=[rows[i].get("src_file") or names[i] for i in keep],
        name=name or metadata.stem,
        layout="esc50",
        metadata=str(metadata),
        lines=[rows[i].line for i in keep],
        skipped=skipped,
    )


def load_us8k(
    audio_dir, metadata=None, *, missing: str = "error", name: str = "urbansound8k"
) -> Dataset:
    """Read UrbanSound8K: ``foldN/`` folders, with or without ``UrbanSound8K.csv``.

    Parameters
    ----------
    audio_dir : path-like
        Folder holding ``fold1/`` ... ``fold10/`` (or a root with ``audio/``).
    metadata : path-like, optional
        ``UrbanSound8K.csv`` (``slice_file_name,fsID,...,fold,classID,class``).
        Without it, folds come from the folder names and classes from the file
        names ``{fsID}-{classID}-{occurrenceID}-{sliceID}.wav``; an audio file
        named otherwise is an error (hidden files are ignored).
    missing : {'error', 'skip'}
    name : str

    Returns
    -------
    Dataset
        Groups are the Freesound ``fsID`` ids.

    Raises
    ------
    ParameterError
        For invalid rows or misnamed files (all named in one message) or one class.
    """
    audio_dir = Path(audio_dir)
    if metadata is None:
        return _load_us8k_folders(audio_dir, name)
    metadata = Path(metadata)
    columns, rows = read_csv(metadata)
    require_columns(columns, ("slice_file_name", "fold", "classID"), metadata, "us8k")
    problems = Problems(metadata, len(rows))
    folds = fold_column(rows, problems, "slice_file_name")
    ids = integer_column(rows, "classID", problems, "slice_file_name", non_negative=True)
    class_name = class_names(rows, ids, "class", problems, "slice_file_name")
    names = [row["slice_file_name"] for row in rows]
    # A row with an invalid fold is reported for its fold only (None: not looked up).
    listed = [
        None if f is None else os.path.join(f"fold{f}", n) if n else ""
        for f, n in zip(folds, names)
    ]
    paths = find_audio(rows, listed, audio_dir, missing, problems)
    problems.raise_if_any()
    keep, skipped = found_rows(rows, paths, names, metadata, audio_dir)
    return _us8k_dataset(
        [paths[i] for i in keep],
        [
            (ids[i], class_name.get(ids[i], ""), folds[i], rows[i].get("fsID") or names[i])
            for i in keep
        ],
        name,
        metadata,
        lines=[rows[i].line for i in keep],
        skipped=skipped,
    )


def _load_us8k_folders(audio_dir: Path, name: str) -> Dataset:
    root = audio_dir / "audio" if not fold_dirs(audio_dir) else audio_dir
    found = fold_dirs(root)
    if not found:
        raise ParameterError(
            f'No fold folders (fold1, fold2, ...) found in "{audio_dir}"; '
            "pass the UrbanSound8K metadata csv or another layout."
        )
    audio = [
        (fold, path)
        for fold, folder in found
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")
    ]
    problems = Problems(root, len(audio), unit="audio files")
    paths, records = [], []
    for fold, path in audio:
        match = _US8K_NAME.match(path.stem)
        if match:
            paths.append(path)
            records.append((int(match["classid"]), "", fold, match["fsid"]))
        else:
            what = 'name is not "fsID-classID-occurrenceID-sliceID"'
            problems.add(what, describe_row(f"{path.parent.name}/{path.name}"))
    problems.raise_if_any()
    if not paths:
        raise ParameterError(
            f'No "fsID-classID-occurrenceID-sliceID" audio files found in "{root}".'
        )
    return _us8k_dataset(paths, records, name, None)


def _us8k_dataset(paths, records, name, metadata, **rows) -> Dataset:
    """A Dataset from ``(classID, class name, fold, fsID)`` records."""
    ids = sorted({r[0] for r in records})
    names = {r[0]: r[1] for r in records if r[1]}
    classes = [names.get(i) or (US8K_CLASSES[i] if i < len(US8K_CLASSES) else str(i)) for i in ids]
    index = {c: i for i, c in enumerate(ids)}
    labels = [index[r[0]] for r in records]
    check_classes(classes, labels, metadata or paths[0].parent.parent)
    return Dataset(
        paths=paths,
        labels=labels,
        folds=[r[2] for r in records],
        classes=classes,
        groups=[r[3] for r in records],
        name=name,
        layout="us8k",
        metadata=str(metadata) if metadata is not None else None,
        **rows,
    )


def load_generic(
    audio_dir,
    metadata,
    *,
    multilabel: bool = False,
    label_sep: str = ";",
    missing: str = "error",
    name: str | None = None,
) -> Dataset:
    """Read a csv with columns ``path,label,fold`` (and optionally ``group``).

    Parameters
    ----------
    audio_dir : path-like or None
        Base of relative paths (default: the csv's folder).
    metadata : path-like
        The csv file.
    multilabel : bool
        Labels hold several classes separated by ``label_sep`` (an empty
        label means no class).
    label_sep : str
    missing : {'error', 'skip'}
    name : str, optional
        Dataset name (default: the csv's stem).

    Returns
    -------
    Dataset
        Classes sorted by name. Folds are integers (``2`` or ``2.0``); only
        when no fold is a number are they names (``train``/``test``).

    Raises
    ------
    ParameterError
        For invalid rows (see ``docs/evaluate.rst``, Metadata checks), all named
        in one message, or fewer than two classes.
    """
    metadata = Path(metadata)
    base = Path(audio_dir) if audio_dir is not None else metadata.parent
    columns, rows = read_csv(metadata)
    require_columns(columns, ("path", "label", "fold"), metadata, "generic")
    problems = Problems(metadata, len(rows))
    folds = fold_column(rows, problems, "path", names_allowed=True)
    if not multilabel:
        text_column(rows, "label", problems, "path")
    names = [row["path"] for row in rows]
    paths = find_audio(rows, names, base, missing, problems)
    problems.raise_if_any()
    keep, skipped = found_rows(rows, paths, names, metadata, base)
    if multilabel:
        sets = [[t.strip() for t in rows[i]["label"].split(label_sep) if t.strip()] for i in keep]
        classes = sorted({c for s in sets for c in s})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.zeros((len(keep), len(classes)), dtype=bool)
        for i, labels_of_clip in enumerate(sets):
            labels[i, [index[c] for c in labels_of_clip]] = True
    else:
        classes = sorted({rows[i]["label"] for i in keep})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[rows[i]["label"]] for i in keep]
    check_classes(classes, labels, metadata, multilabel)
    return Dataset(
        paths=[paths[i] for i in keep],
        labels=labels,
        folds=[folds[i] for i in keep],
        classes=classes,
        groups=[rows[i].get("group") or str(paths[i]) for i in keep],
        name=name or metadata.stem,
        layout="generic",
        multilabel=multilabel,
        metadata=str(metadata),
        lines=[rows[i].line for i in keep],
        skipped=skipped,
    )


def load_dataset(
    audio_dir,
    metadata=None,
    *,
    layout: str = "auto",
    multilabel: bool = False,
    missing: str = "error",
    name: str | None = None,
) -> Dataset:
    """Load a dataset in any supported layout.

    Parameters
    ----------
    audio_dir : path-like
        Audio folder (may be None for a generic csv with paths relative to it).
    metadata : path-like, optional
        The metadata csv (optional for UrbanSound8K folders).
    layout : {'auto', 'esc50', 'us8k', 'generic'}
        ``'auto'`` looks at the csv's columns (see :func:`detect_layout`).
    multilabel : bool
        Generic layout only: ``;``-separated labels.
    missing : {'error', 'skip'}
        What to do with metadata rows whose audio is absent.
    name : str, optional
        Dataset name for reports.

    Returns
    -------
    Dataset

    Raises
    ------
    ParameterError
        For an unknown layout, missing columns, files or folds.

    Examples
    --------
    >>> ds = load_dataset('esc10', 'esc10/meta/esc10.csv')      # doctest: +SKIP
    >>> ds                                                      # doctest: +SKIP
    Dataset(name='esc10', clips=400, classes=10, folds=[1, 2, 3, 4, 5], multilabel=False)
    """
    check_choice(layout, LAYOUTS, "layout")
    multilabel = check_flag(multilabel, "multilabel")
    if audio_dir is None and metadata is None:
        raise ParameterError("Give an audio folder, a metadata csv, or both.")
    if layout == "auto":
        layout = detect_layout(audio_dir, metadata)
    if multilabel and layout != "generic":
        raise ParameterError(
            f"multilabel=True needs the generic layout (path,label,fold); got layout={layout!r}."
        )
    if layout != "generic" and audio_dir is None:
        raise ParameterError(f"layout {layout!r} needs the audio folder; got audio_dir=None.")
    if layout == "esc50":
        if metadata is None:
            raise ParameterError("layout 'esc50' needs the metadata csv (esc50.csv or esc10.csv).")
        return load_esc50(audio_dir, metadata, missing=missing, name=name)
    if layout == "us8k":
        return load_us8k(audio_dir, metadata, missing=missing, name=name or "urbansound8k")
    if metadata is None:
        raise ParameterError("layout 'generic' needs the metadata csv (path,label,fold).")
    return load_generic(audio_dir, metadata, multilabel=multilabel, missing=missing, name=name)
