"""Embed the files of a dataset once, through the on-disk cache and the engine.

Every file is embedded by :func:`edgel3.engine.embed_path`, the path
:func:`edgel3.embed_file` takes: the same window pipeline and runner choice,
so the rows equal :func:`edgel3.get_embedding` on the file's samples, and
files of a minute or more are streamed block by block. The model is resolved
by :func:`edgel3.reference.resolve_model` (any value ``get_embedding``
accepts) and loaded once.
"""

from __future__ import annotations

import collections
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from .. import frontend
from ..checks import check_flag, check_hop_size, check_positive_int
from ..engine import embed_path
from ..exceptions import AudioError, EdgeL3Warning
from ..reference import resolve_model
from .cache import EmbeddingCache, default_cache_dir, file_digest

__all__ = ["embed_files"]

logger = logging.getLogger(__name__)


def embed_files(
    paths,
    model=None,
    *,
    hop_size: float = 0.1,
    center: bool = True,
    cache_dir=None,
    batch_size: int = 64,
    verbose: bool = False,
) -> tuple[list[np.ndarray], dict]:
    """Embeddings of audio files, computed once and then read from the cache.

    Files are hashed; those already in the cache for this (model, hop,
    center) are loaded, the others are embedded one by one with one loaded
    model and stored. The model is only loaded when something must be
    computed. Files with the same content are embedded once.

    Parameters
    ----------
    paths : sequence of path-like [length n]
        Audio files.
    model : None, str, path-like, keras.Model or runner
        Anything :func:`edgel3.reference.resolve_model` accepts: an official
        or short name (``'sea-64'``), a bundled name (``'tiny'``), a model
        file (``.h5``, ``.h5.gz``, ``.keras``, ``.tflite``), a loaded Keras
        model or a runner such as :class:`edgel3.litert.LiteRTModel`. None is
        :func:`edgel3.get_embedding`'s default model.
    hop_size : float
        Hop between windows in seconds.
    center : bool
        Centre windows on their timestamps (pad half a window in front).
    cache_dir : path-like, optional
        Cache root (default: :func:`~edgel3.evaluate.cache.default_cache_dir`).
    batch_size : int
        Windows per forward pass.
    verbose : bool
        Show a progress bar over files.

    Returns
    -------
    embeddings : list of np.ndarray [shape=(frames_i, emb_dim), dtype=float32]
        One per path, in order; equal to ``get_embedding`` on each file.
    info : dict
        ``model`` (:meth:`edgel3.reference.ModelReference.describe`),
        ``digests`` (SHA-256 per file), ``cache_dir`` (None when the model
        has no stable identity, see below), ``cached`` and ``computed`` (file
        counts), ``warnings`` (``{path: [message, ...]}``: the
        :class:`~edgel3.exceptions.EdgeL3Warning` texts of
        :data:`edgel3.checks.ZEROS_WARNING` and
        :data:`edgel3.checks.SHORT_WARNING` each file raised, which are also
        logged as ``path: message``), ``seconds``.

    Raises
    ------
    AudioError
        If a file is missing, unreadable or holds unusable audio (the
        message names the file).
    ParameterError, WeightsError
        For bad options or models.

    Notes
    -----
    A runner object with neither a ``model_id`` attribute nor a model file
    is identified by its address only (see
    :attr:`~edgel3.reference.ModelReference.model_id`), which another
    model may reuse: its embeddings are computed every time, never cached.
    """
    hop_size = check_hop_size(hop_size)
    center = check_flag(center, "center")
    batch_size = check_positive_int(batch_size, "batch_size")
    verbose = check_flag(verbose, "verbose")
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    reference = resolve_model(model)
    cache = None
    if reference.stable_id:
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache = EmbeddingCache(cache_root, reference.model_id, hop_size=hop_size, center=center)

    from tqdm.auto import tqdm

    digests = []
    for path in paths:
        if not path.is_file():
            raise AudioError(f'File "{path}" could not be found.')
        digests.append(file_digest(path))
    results: list[np.ndarray | None] = [
        cache.get(d) if cache is not None else None for d in digests
    ]
    todo = [i for i, r in enumerate(results) if r is None]
    first = {}  # identical files (same content) are computed once
    for i in todo:
        first.setdefault(digests[i], i)
    unique = list(first.values())
    copies = collections.Counter(first[digests[i]] for i in todo)
    messages: dict[str, list[str]] = {}
    if unique:
        loaded = resolve_model(reference.load())  # loaded once, for every file
        frontend.hop_length(hop_size, loaded.sample_rate)  # a hop under one sample: error
    with tqdm(
        total=len(paths),
        initial=len(paths) - len(todo),
        unit="file",
        desc="embedding",
        disable=not verbose,
    ) as bar:
        for i in unique:
            embedding, notes = _embed_one(loaded, paths[i], hop_size, center, batch_size)
            if cache is not None:
                cache.put(digests[i], embedding)
            results[i] = embedding
            if notes:
                messages[str(paths[i])] = notes
            bar.update(copies[i])
    for i in todo:
        if results[i] is None:
            results[i] = results[first[digests[i]]]
    info = {
        "model": reference.describe(),
        "digests": digests,
        "cache_dir": str(cache.root) if cache is not None else None,
        "cached": len(paths) - len(todo),
        "computed": len(unique),
        "warnings": messages,
        "seconds": time.perf_counter() - start,
    }
    return results, info


def _embed_one(
    reference, path, hop_size: float, center: bool, batch_size: int
) -> tuple[np.ndarray, list[str]]:
    """Embed one file with :func:`edgel3.engine.embed_path`; its warnings are returned.

    Parameters
    ----------
    reference : ModelReference
    path : path-like
    hop_size : float
    center : bool
    batch_size : int
        Checked by the caller.

    Returns
    -------
    embedding : np.ndarray [shape=(T, D), dtype=float32]
    notes : list of str
        The messages of the :class:`~edgel3.exceptions.EdgeL3Warning`\\ s the
        file raised (:data:`edgel3.checks.ZEROS_WARNING`,
        :data:`edgel3.checks.SHORT_WARNING`), word for word; each is also
        logged as ``path: message``. Other warnings pass through.

    Raises
    ------
    AudioError
        ``Cannot embed "<path>": <reason>``.
    """
    with warnings.catch_warnings(record=True) as caught:
        # Local and restored on exit: the warnings are attributed to this file.
        warnings.simplefilter("always", EdgeL3Warning)
        try:
            embedding, _, _ = embed_path(
                reference, path, hop_size=hop_size, center=center, batch_size=batch_size
            )
        except AudioError as exc:
            raise AudioError(f'Cannot embed "{path}": {exc}') from exc
    notes = []
    for warning in caught:
        if issubclass(warning.category, EdgeL3Warning):
            notes.append(str(warning.message))
            logger.warning("%s: %s", path, warning.message)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return embedding, notes
