"""How an output was made, recorded in it, and whether it is still current.

Every ``.npz`` edgel3 writes holds, beside 0.2.1's ``embedding`` and
``timestamps``, an array ``provenance``: one JSON text with

* ``model`` — :attr:`edgel3.reference.ModelReference.model_id` (changes with the weights),
* ``hop_size``, ``center``, ``fast_resample`` — the options that change the numbers,
* ``input`` — the input's absolute path, ``size``, ``mtime_ns``, ``sample_rate``,
  ``frames`` and ``channels`` (from its header),
* ``edgel3`` — the version that wrote it.

A rerun keeps an output only if its record equals the one the run would write
(:func:`stale_reason`); anything else (other options, model or version, a
changed input, an output without a record) is recomputed. Parquet datasets
keep the same facts in their results manifest and schema metadata.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .files import PROVENANCE_KEY
from .version import __version__

__all__ = [
    "PROVENANCE_KEY",
    "input_facts",
    "header_windows",
    "make_provenance",
    "read_provenance",
    "stale_reason",
    "decide_output",
]


def input_facts(path) -> dict:
    """What identifies an input file's content: path, size, mtime and header.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        ``path``, ``size``, ``mtime_ns`` (-1 when missing) and, when the header
        is readable, ``sample_rate``, ``frames`` and ``channels``.
    """
    from .exceptions import AudioError
    from .files import audio_info

    path = os.path.abspath(os.fspath(path))
    try:
        stat = os.stat(path)
        facts = {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except OSError:
        return {"path": path, "size": -1, "mtime_ns": -1}
    try:
        info = audio_info(path)
    except AudioError:
        return facts
    facts.update(sample_rate=info.sample_rate, frames=info.frames, channels=info.channels)
    return facts


def header_windows(facts: dict, hop_size: float, center: bool) -> int:
    """Windows a file will give, from its header facts (0 when the header was unreadable).

    Parameters
    ----------
    facts : dict
        :func:`edgel3.provenance.input_facts` of the file.
    hop_size : float
    center : bool

    Returns
    -------
    int
    """
    from .frontend import n_windows

    if not facts.get("frames") or not facts.get("sample_rate"):
        return 0
    rate = int(facts["sample_rate"])  # the file's rate: an estimate within a window or so
    return n_windows(int(facts["frames"]), rate, max(1, int(hop_size * rate)), center)


def make_provenance(model_id: str, hop_size: float, center: bool, fast_resample: bool, facts):
    """The record of one output.

    Parameters
    ----------
    model_id : str
    hop_size : float
    center, fast_resample : bool
    facts : dict
        :func:`input_facts` of the input.

    Returns
    -------
    dict
    """
    return {
        "model": str(model_id),
        "hop_size": float(hop_size),
        "center": bool(center),
        "fast_resample": bool(fast_resample),
        "input": dict(facts),
        "edgel3": __version__,
    }


def read_provenance(path) -> dict | None:
    """The provenance record of an ``.npz`` (None if it has none or is unreadable).

    Only the small ``provenance`` member is read, not the embeddings.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict or None
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            if PROVENANCE_KEY not in data.files:
                return None
            record = json.loads(str(data[PROVENANCE_KEY]))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return None
    return record if isinstance(record, dict) else None


def _differences(old: dict, new: dict) -> list[str]:
    changes = []
    for key in ("model", "hop_size", "center", "fast_resample", "edgel3"):
        if old.get(key) != new.get(key):
            changes.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    old_input, new_input = old.get("input") or {}, new.get("input") or {}
    if old_input.get("path") != new_input.get("path"):
        changes.append(f"made from {old_input.get('path')!r}")
    elif old_input != new_input:
        changes.append("input file changed")
    return changes


def stale_reason(output, expected: dict) -> str | None:
    """Why ``output`` must be recomputed, or None when it is current.

    Parameters
    ----------
    output : path-like
        An ``.npz`` that may exist.
    expected : dict
        The record a run would write now (:func:`make_provenance`).

    Returns
    -------
    str or None
        ``None`` if ``output`` exists and its record equals ``expected``;
        else a short reason (``'missing'``, ``'no provenance record'``,
        ``'hop_size 0.1 -> 0.5'``...).
    """
    if not os.path.exists(output):
        return "missing"
    record = read_provenance(output)
    if record is None:
        return "no provenance record (made by an older edgel3 or another tool)"
    changes = _differences(record, expected)
    if changes:
        return ", ".join(changes)
    return None if record == expected else "provenance record differs"


def decide_output(output, expected: dict, *, overwrite: bool = False, keep_existing: bool = False):
    """Whether a run computes ``output``, and why.

    Parameters
    ----------
    output : path-like
    expected : dict
        The record the run would write (:func:`make_provenance`).
    overwrite : bool
        Recompute even a current output.
    keep_existing : bool
        Keep any existing output, current or not (edgel3 0.2.1's rule).

    Returns
    -------
    str or None
        None to keep the output; else ``'new'``, ``'overwrite'`` or
        ``'stale: <reason>'``.
    """
    if overwrite:
        return "overwrite"
    if keep_existing and os.path.exists(output):
        return None
    reason = stale_reason(output, expected)
    if reason is None:
        return None
    return "new" if reason == "missing" else f"stale: {reason}"
