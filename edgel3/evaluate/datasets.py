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
    check_folds,
    fold_dirs,
    fold_value,
    keep_existing,
    read_csv,
    require_columns,
    resolve_audio,
    sorted_unique,
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
        if len(self.folds) != n or len(self.groups) != n:
            raise ParameterError(
                f"Got {n} paths but {len(self.folds)} folds and {len(self.groups)} groups."
            )
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "folds", tuple(self.folds))
        object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "fold_names", sorted_unique(self.folds))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, clips={len(self)}, classes={len(self.classes)}, "
            f"folds={list(self.fold_names)}, multilabel={self.multilabel})"
        )

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
    """
    audio_dir, metadata = Path(audio_dir), Path(metadata)
    columns, rows = read_csv(metadata)
    require_columns(columns, ("filename", "fold", "target"), metadata, "esc50")
    paths = [resolve_audio(audio_dir, row["filename"]) for row in rows]
    rows = [rows[i] for i in keep_existing(paths, audio_dir, missing, "rows")]
    paths = [p for p in paths if p is not None]
    names = {}
    for row in rows:
        names[int(row["target"])] = row.get("category") or row["target"]
    targets = sorted(names)
    index = {t: i for i, t in enumerate(targets)}
    return Dataset(
        paths=paths,
        labels=[index[int(row["target"])] for row in rows],
        folds=[fold_value(row["fold"]) for row in rows],
        classes=[names[t] for t in targets],
        groups=[row.get("src_file") or row["filename"] for row in rows],
        name=name or metadata.stem,
        layout="esc50",
        metadata=str(metadata),
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
        names ``{fsID}-{classID}-{occurrenceID}-{sliceID}.wav``.
    missing : {'error', 'skip'}
    name : str

    Returns
    -------
    Dataset
        Groups are the Freesound ``fsID`` ids.
    """
    audio_dir = Path(audio_dir)
    if metadata is not None:
        metadata = Path(metadata)
        columns, rows = read_csv(metadata)
        require_columns(columns, ("slice_file_name", "fold", "classID"), metadata, "us8k")
        paths = [
            resolve_audio(audio_dir, os.path.join(f"fold{row['fold']}", row["slice_file_name"]))
            for row in rows
        ]
        rows = [rows[i] for i in keep_existing(paths, audio_dir, missing, "rows")]
        paths = [p for p in paths if p is not None]
        records = [
            (
                int(row["classID"]),
                row.get("class", ""),
                int(row["fold"]),
                row.get("fsID") or row["slice_file_name"],
            )
            for row in rows
        ]
    else:
        root = audio_dir / "audio" if not fold_dirs(audio_dir) else audio_dir
        found = fold_dirs(root)
        if not found:
            raise ParameterError(
                f'No fold folders (fold1, fold2, ...) found in "{audio_dir}"; '
                "pass the UrbanSound8K metadata csv or another layout."
            )
        paths, records = [], []
        for fold, folder in found:
            for path in sorted(folder.iterdir()):
                match = _US8K_NAME.match(path.stem)
                if not (match and path.suffix.lower() in AUDIO_SUFFIXES):
                    continue
                class_id = int(match["classid"])
                paths.append(path)
                records.append((class_id, "", fold, match["fsid"]))
        if not paths:
            raise ParameterError(
                f'No "fsID-classID-occurrenceID-sliceID" audio files found in "{root}".'
            )
    ids = sorted({r[0] for r in records})
    names = {r[0]: r[1] for r in records if r[1]}
    classes = [names.get(i) or (US8K_CLASSES[i] if i < len(US8K_CLASSES) else str(i)) for i in ids]
    index = {c: i for i, c in enumerate(ids)}
    return Dataset(
        paths=paths,
        labels=[index[r[0]] for r in records],
        folds=[r[2] for r in records],
        classes=classes,
        groups=[r[3] for r in records],
        name=name,
        layout="us8k",
        metadata=str(metadata) if metadata is not None else None,
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
        Classes sorted by name; folds are ints when every fold is an int.
    """
    metadata = Path(metadata)
    base = Path(audio_dir) if audio_dir is not None else metadata.parent
    columns, rows = read_csv(metadata)
    require_columns(columns, ("path", "label", "fold"), metadata, "generic")
    paths = [resolve_audio(base, row["path"]) for row in rows]
    rows = [rows[i] for i in keep_existing(paths, base, missing, "rows")]
    paths = [p for p in paths if p is not None]
    if multilabel:
        sets = [[t.strip() for t in row["label"].split(label_sep) if t.strip()] for row in rows]
        classes = sorted({c for s in sets for c in s})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.zeros((len(rows), len(classes)), dtype=bool)
        for i, labels_of_clip in enumerate(sets):
            labels[i, [index[c] for c in labels_of_clip]] = True
    else:
        classes = sorted({row["label"] for row in rows})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[row["label"]] for row in rows]
    folds = [row["fold"] for row in rows]
    if all(re.fullmatch(r"-?\d+", f) for f in folds):
        folds = [int(f) for f in folds]
    return Dataset(
        paths=paths,
        labels=labels,
        folds=folds,
        classes=classes,
        groups=[row.get("group") or str(p) for row, p in zip(rows, paths)],
        name=name or metadata.stem,
        layout="generic",
        multilabel=multilabel,
        metadata=str(metadata),
    )


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
