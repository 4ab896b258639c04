"""Output names of many inputs: one distinct output per input, decided before any work.

The rules (``docs/cli.rst`` shows them with examples):

1. An input ``DIR/sub/name.ext`` gives ``name[_SUFFIX].npz`` (edgel3 0.2.1's name,
   :func:`edgel3.files.get_output_path`), next to the input, or in the output
   directory when one is given.
2. With an output directory, an input found by searching a directory given on
   the command line (``roots``) keeps its sub-path below that directory:
   ``edgel3 data -o out`` writes ``data/d1/x.wav`` to ``out/d1/x.npz``. Files
   directly in ``data`` keep 0.2.1's flat names.
3. Inputs that would still share an output keep what tells them apart: first
   the folders below their common parent (``d1/x.npz``, ``d2/x.npz``), then
   the extension (``a.wav.npz``, ``a.flac.npz``). Names depend only on the
   inputs of the run, never on what is already on disk.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .exceptions import ParameterError
from .files import get_output_path

__all__ = ["check_suffix", "output_paths"]


def check_suffix(suffix) -> str | None:
    """Check an output-name suffix: text without a path separator.

    Parameters
    ----------
    suffix : str or None

    Returns
    -------
    str or None

    Raises
    ------
    ParameterError
        If ``suffix`` is not a string, or names a folder (``'a/b'``).
    """
    if suffix is None:
        return None
    if not isinstance(suffix, str):
        raise ParameterError(f"suffix must be a string; got {suffix!r}.")
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(sep in suffix for sep in separators) or "\0" in suffix:
        raise ParameterError(
            f"suffix {suffix!r} contains a path separator: it is appended to file names "
            "(NAME_SUFFIX.npz); choose the folder with the output directory instead."
        )
    return suffix


def _name(path: str, suffix: str, keep_ext: bool) -> str:
    base = os.path.basename(path)
    if not keep_ext:
        base = os.path.splitext(base)[0]
    return base + suffix if suffix.startswith(".") else f"{base}_{suffix}"


def _below(path: str, roots: Sequence[str]) -> str:
    """The folders of ``path`` below the deepest root holding it ('' if none)."""
    folder = os.path.dirname(path)
    best = None
    for root in roots:
        if folder == root or folder.startswith(root.rstrip(os.sep) + os.sep):
            if best is None or len(root) > len(best):
                best = root
    if best is None or folder == best:
        return ""
    return os.path.relpath(folder, best)


def output_paths(
    paths: Sequence, output_dir=None, suffix=None, *, roots: Iterable = ()
) -> list[str]:
    """One distinct ``.npz`` path per input, by the module's rules.

    Parameters
    ----------
    paths : sequence of path-like
        The inputs (distinct files).
    output_dir : path-like, optional
        Where outputs go; next to each input when None.
    suffix : str, optional
        Appended to names as in :func:`edgel3.files.get_output_path`.
    roots : iterable of path-like
        Directories that were searched for inputs (their sub-folders are kept
        under ``output_dir``).

    Returns
    -------
    list of str
        Absolute output paths, one per input, all different.

    Raises
    ------
    ParameterError
        A bad suffix.

    Examples
    --------
    >>> output_paths(['/d/a.wav', '/d/a.flac', '/d/b.wav'], '/out')
    ['/out/a.wav.npz', '/out/a.flac.npz', '/out/b.npz']
    """
    ext = (check_suffix(suffix) or "") + ".npz"
    inputs = [os.path.abspath(os.fspath(p)) for p in paths]
    out = os.path.abspath(os.fspath(output_dir)) if output_dir else None
    roots = [os.path.abspath(os.fspath(r)) for r in roots]

    def folder(i: int) -> str:
        if out is None:
            return os.path.dirname(inputs[i])
        return os.path.normpath(os.path.join(out, _below(inputs[i], roots)))

    targets = [get_output_path(p, ext, folder(i)) for i, p in enumerate(inputs)]
    for step in ("folders", "extension", "hash"):
        groups = defaultdict(list)
        for i, target in enumerate(targets):
            groups[target].append(i)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            return targets
        for group in clashes:
            for i in group:
                name = os.path.basename(targets[i])
                if step == "folders":
                    parent = os.path.commonpath([os.path.dirname(inputs[j]) for j in group])
                    sub = os.path.relpath(os.path.dirname(inputs[i]), parent)
                    targets[i] = os.path.normpath(
                        os.path.join(os.path.dirname(targets[i]), sub, name)
                    )
                elif step == "extension":
                    kept = _name(inputs[i], ext, keep_ext=True)
                    targets[i] = os.path.join(os.path.dirname(targets[i]), kept)
                else:  # same folder, name and extension: cannot happen for distinct files
                    digest = hashlib.sha1(inputs[i].encode()).hexdigest()[:8]
                    stem, dot, tail = name.partition(".")
                    targets[i] = os.path.join(
                        os.path.dirname(targets[i]), f"{stem}-{digest}{dot}{tail}"
                    )
    return targets
