"""Embed the files of a dataset once, through the on-disk cache, several files per call."""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from pathlib import Path

import numpy as np

from ..exceptions import AudioError, EdgeL3Warning, ParameterError
from .cache import EmbeddingCache, default_cache_dir, file_digest, model_identity

__all__ = ["embed_files", "DEFAULT_FILES_PER_CALL"]

logger = logging.getLogger(__name__)

#: Files whose windows share one :func:`edgel3.get_embedding` call.
DEFAULT_FILES_PER_CALL = 16


def _check_positive_int(value, name) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be a positive integer; got {name}={value!r}.")
    return int(value)


def embed_files(
    paths,
    model=None,
    *,
    hop_size: float = 0.1,
    center: bool = True,
    cache_dir=None,
    batch_size: int = 64,
    files_per_call: int = DEFAULT_FILES_PER_CALL,
    verbose: bool = False,
) -> tuple[list[np.ndarray], dict]:
    """Embeddings of audio files, computed once and then read from the cache.

    Files are hashed; those already in the cache for this (model, hop,
    center) are loaded, the others are read and embedded ``files_per_call``
    at a time (their windows batched together) with one loaded model, then
    stored. The model is only loaded when something must be computed.

    Parameters
    ----------
    paths : sequence of path-like [length n]
        Audio files.
    model : None, str, path-like or keras.Model
        As in :func:`edgel3.get_embedding`.
    hop_size : float
        Hop between windows in seconds.
    center : bool
        Centre windows on their timestamps (pad half a window in front).
    cache_dir : path-like, optional
        Cache root (default: :func:`~edgel3.evaluate.cache.default_cache_dir`).
    batch_size : int
        Windows per forward pass.
    files_per_call : int
        Files per :func:`edgel3.get_embedding` call.
    verbose : bool
        Show a progress bar over files.

    Returns
    -------
    embeddings : list of np.ndarray [shape=(frames_i, emb_dim)]
        float32, one per path, in order.
    info : dict
        ``model`` (see :func:`~edgel3.evaluate.cache.model_identity`),
        ``digests`` (SHA-256 per file), ``cache_dir``, ``cached`` and
        ``computed`` (file counts), ``warnings`` (per-file messages),
        ``seconds``.

    Raises
    ------
    AudioError
        If a file is missing or unreadable.
    ParameterError, WeightsError
        For bad options or models.
    """
    from ..core import _check_hop_size

    _check_hop_size(hop_size)
    if center not in (True, False):
        raise ParameterError(f"center must be True or False; got center={center!r}.")
    batch_size = _check_positive_int(batch_size, "batch_size")
    files_per_call = _check_positive_int(files_per_call, "files_per_call")
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    identity = model_identity(model)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = EmbeddingCache(cache_root, identity["id"], hop_size=hop_size, center=bool(center))

    from tqdm.auto import tqdm

    from ..files import read_audio

    digests = []
    for path in paths:
        if not path.is_file():
            raise AudioError(f'File "{path}" could not be found.')
        digests.append(file_digest(path))
    results: list[np.ndarray | None] = [cache.get(d) for d in digests]
    todo = [i for i, r in enumerate(results) if r is None]
    # Identical files (same content) are computed once.
    first = {}
    for i in todo:
        first.setdefault(digests[i], i)
    unique = list(first.values())
    messages: dict[str, list[str]] = {}
    with tqdm(
        total=len(paths),
        initial=len(paths) - len(todo),
        unit="file",
        desc="embedding",
        disable=not verbose,
    ) as bar:
        loaded = _load(model) if unique else None
        for offset in range(0, len(unique), files_per_call):
            chunk = unique[offset : offset + files_per_call]
            audio = [read_audio(paths[i]) for i in chunk]
            try:
                embeddings = _embed_chunk(loaded, audio, hop_size, center, batch_size, chunk, paths)
            except AudioError:
                _raise_for_file(loaded, audio, hop_size, center, chunk, paths)
                raise
            for i, (emb, caught) in zip(chunk, embeddings):
                cache.put(digests[i], emb)
                results[i] = emb
                if caught:
                    messages[str(paths[i])] = caught
            bar.update(sum(1 for i in todo if first[digests[i]] in chunk))
    for i in todo:
        if results[i] is None:
            results[i] = results[first[digests[i]]]
    info = {
        "model": identity,
        "digests": digests,
        "cache_dir": str(cache.root),
        "cached": len(paths) - len(todo),
        "computed": len(unique),
        "warnings": messages,
        "seconds": time.perf_counter() - start,
    }
    return results, info


def _load(model):
    """Load a weight file once; names and models go to get_embedding as they are."""
    import os

    from .. import core

    if isinstance(model, (str, os.PathLike)) and os.path.isfile(os.fspath(model)):
        return core.load_model_file(model)
    return model


def _raise_for_file(model, audio, hop_size, center, chunk, paths) -> None:
    """Re-embed a failed chunk file by file to name the file in the error."""
    for (signal, sr), i in zip(audio, chunk):
        try:
            _embed_chunk(model, [(signal, sr)], hop_size, center, 1, [i], paths)
        except AudioError as exc:
            raise AudioError(f'Cannot embed "{paths[i]}": {exc}') from exc


def _audio_notes(audio: np.ndarray, sr: int) -> list[str]:
    """The conditions get_embedding warns about, attributed to one file."""
    notes = []
    if not np.any(audio):
        notes.append("audio is all zeros")
    if len(audio) < sr:
        notes.append("audio is shorter than one window (1 s) and was padded")
    return notes


def _embed_chunk(model, audio, hop_size, center, batch_size, chunk, paths):
    """Embed several files in one call; per-file notes replace get_embedding's warnings."""
    from ..core import get_embedding

    with warnings.catch_warnings(record=True) as caught:
        # Local and restored on exit: the warnings get_embedding raises for a list
        # do not say which signal they concern, so they are re-derived per file.
        warnings.simplefilter("always", EdgeL3Warning)
        embeddings, _ = get_embedding(
            [a for a, _ in audio],
            [sr for _, sr in audio],
            model=model,
            center=center,
            hop_size=hop_size,
            verbose=0,
            batch_size=batch_size,
        )
    for warning in caught:
        if not issubclass(warning.category, EdgeL3Warning):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    notes = [_audio_notes(a, sr) for a, sr in audio]
    for i, messages in zip(chunk, notes):
        for message in messages:
            logger.warning("%s: %s", paths[i], message)
    return list(zip(embeddings, notes))
