"""Official weight files: where they live, how they are downloaded and checked.

Search order for a model's weights (:func:`find_weights`):

1. an explicit ``weights_path`` (a file, or a directory holding ``<name>.h5.gz`` or
   ``<name>.h5``);
2. the directory named by ``$EDGEL3_WEIGHTS_DIR`` (gzipped files, or the unpacked ``.h5``
   files edgel3 0.2.1 left next to its code);
3. the per-user cache (:func:`cache_dir`), into which :func:`download_weights` puts files.

Integrity (:func:`verify_weights`, docs/models.rst §1.2-1.3): a file named like an official
one claims to be it, and is checked wherever it is found and however it is named to edgel3
(``get_embedding(model='sea-64')``, ``$EDGEL3_WEIGHTS_DIR``, ``weights_path``,
``model='/path/<stem>.h5.gz'``). A ``.h5.gz`` is checked against the git blob SHA-1 the
weight repository publishes; an unpacked ``.h5`` against the SHA-256 of the official
unpacked bytes, where that is known (shipped in :mod:`edgel3.specs`, or recorded when
:func:`download_weights` unpacked a verified ``.h5.gz``); one whose hash is not known loads
with an :class:`UnverifiedWeightsWarning`. Each file is hashed once: the hash is remembered
by the file's identity (:func:`edgel3.weight_cache.file_digest`).

Reading the files is :mod:`edgel3.legacy_h5`'s job.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from .exceptions import EdgeL3Warning, WeightsError
from .fetch import fetch_file
from .specs import (
    ALIASES,
    REGISTRY,
    WEIGHTS_COMMIT,
    WEIGHTS_URL_TEMPLATE,
    ModelSpec,
    get_spec,
)
from .weight_cache import (
    CACHE_ENV,
    blob_sha1,
    cache_dir,
    cache_lock,
    file_blob_sha1,
    file_digest,
    file_sha256,
    recorded_unpacked_sha256,
    unpack_weights,
)

__all__ = [
    "CACHE_ENV",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_URL_ENV",
    "UnverifiedWeightsWarning",
    "blob_sha1",
    "file_blob_sha1",
    "file_sha256",
    "cache_dir",
    "weights_base_url",
    "weights_url",
    "find_weights",
    "official_spec_of",
    "known_unpacked_sha256",
    "verify_weights",
    "download_weights",
    "unpack_weights",
    "get_weights_path",
]

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "EDGEL3_WEIGHTS_DIR"
WEIGHTS_URL_ENV = "EDGEL3_WEIGHTS_URL"


class UnverifiedWeightsWarning(EdgeL3Warning):
    """A weight file named like an official one whose hash edgel3 cannot check.

    An unpacked ``<stem>.h5`` of a model whose unpacked hash is neither shipped
    with edgel3 nor recorded by ``edgel3 download --unpack``. It is loaded (its
    architecture is checked); the message names the file and how to verify it.
    Emitted once per file per process.
    """


# --------------------------------------------------------------------------- locations


def weights_base_url() -> str:
    """URL template of the weight files, with a ``{filename}`` field.

    ``$EDGEL3_WEIGHTS_URL`` if set: either a template holding ``{filename}`` (and
    optionally ``{ref}``, the pinned commit), or a base URL to which ``/<filename>``
    is appended (``http://127.0.0.1:8765/`` serves ``http://127.0.0.1:8765/<file>``).
    Otherwise the official URL pinned to commit :data:`edgel3.specs.WEIGHTS_COMMIT`.

    Returns
    -------
    str

    Raises
    ------
    WeightsError
        If ``$EDGEL3_WEIGHTS_URL`` is not a URL.
    """
    env = os.environ.get(WEIGHTS_URL_ENV, "").strip()
    if not env:
        return WEIGHTS_URL_TEMPLATE.replace("{ref}", WEIGHTS_COMMIT)
    if "://" not in env:
        raise WeightsError(
            f"{WEIGHTS_URL_ENV}={env!r} is not a URL; set it to a base URL such as "
            f"'https://example.org/weights/' or a template containing '{{filename}}'."
        )
    if "{filename}" not in env:
        env = env.rstrip("/") + "/{filename}"
    return env.replace("{ref}", WEIGHTS_COMMIT)


def weights_url(spec: ModelSpec) -> str:
    """Download URL of a model's gzipped weight file (honours ``$EDGEL3_WEIGHTS_URL``)."""
    return weights_base_url().replace("{filename}", spec.filename)


def _as_spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else get_spec(spec)


def _candidates(directory: Path, spec: ModelSpec) -> Path | None:
    # The gzipped file first: it is the one that can be hash-checked.
    for name in (spec.filename, spec.name + ".h5"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_weights(
    spec: ModelSpec | str, weights_path: str | os.PathLike | None = None
) -> Path | None:
    """Find a model's weight file locally, without downloading or checking it.

    Parameters
    ----------
    spec : ModelSpec or str
        The model (a spec or an official name such as ``'sea-64'``).
    weights_path : str or path-like, optional
        A weight file, or a directory holding ``<name>.h5.gz`` or ``<name>.h5``.
        When given, it is the only place searched.

    Returns
    -------
    pathlib.Path or None
        The first hit of: ``weights_path``, ``$EDGEL3_WEIGHTS_DIR``, :func:`cache_dir`;
        ``None`` when no file is found (and ``weights_path`` is not given).

    Raises
    ------
    WeightsError
        If ``weights_path`` does not exist or is a directory without the file, or if
        ``$EDGEL3_WEIGHTS_DIR`` names a missing directory.
    """
    spec = _as_spec(spec)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = _candidates(path, spec)
            if found is None:
                raise WeightsError(
                    f"Directory {str(path)!r} (weights_path) holds neither {spec.filename!r} "
                    f"nor {spec.name + '.h5'!r}; put the weight file there or pass its path."
                )
            return found
        raise WeightsError(
            f"Weight file {str(path)!r} (weights_path) does not exist; pass an existing "
            "file or a directory holding the model's .h5.gz or .h5 file."
        )
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir:
        directory = Path(env_dir).expanduser()
        if not directory.is_dir():
            raise WeightsError(
                f"{WEIGHTS_DIR_ENV}={env_dir!r} is not a directory; create it, point it at "
                "the folder holding the weight files, or unset it to use the cache "
                f"{str(cache_dir())!r}."
            )
        found = _candidates(directory, spec)
        if found is not None:
            return found
    cached = cache_dir() / spec.filename
    return cached if cached.is_file() else None


def _hand_install_hint(spec: ModelSpec) -> str:
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir:
        return f"put {spec.filename!r} in {str(Path(env_dir).expanduser())!r} ({WEIGHTS_DIR_ENV})"
    return (
        f"put {spec.filename!r} in {str(cache_dir())!r} (the cache), or in a directory "
        f"named by {WEIGHTS_DIR_ENV}"
    )


# --------------------------------------------------------------------------- integrity


def _short_name(spec: ModelSpec) -> str:
    return next((alias for alias, stem in ALIASES.items() if stem == spec.name), spec.name)


def official_spec_of(path: str | os.PathLike) -> ModelSpec | None:
    """The official model a file's name claims: ``<stem>.h5.gz`` or ``<stem>.h5``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ModelSpec or None
        ``None`` for any other name (a model of the user's own, not checked).

    Examples
    --------
    >>> official_spec_of('/any/where/edgel3_sea_ust_audio_emb_64.h5').name
    'edgel3_sea_ust_audio_emb_64'
    >>> official_spec_of('my_student.h5') is None
    True
    """
    name = Path(path).name
    for suffix in (".h5.gz", ".h5"):
        if name.endswith(suffix):
            return REGISTRY.get(name[: -len(suffix)])
    return None


def known_unpacked_sha256(spec: ModelSpec) -> str | None:
    """SHA-256 of a model's official unpacked bytes, if known.

    Shipped in :mod:`edgel3.specs` (:attr:`~edgel3.specs.ModelSpec.unpacked_sha256`),
    else recorded in the cache when ``edgel3 download --unpack`` unpacked the
    verified ``.h5.gz`` (:func:`edgel3.weight_cache.recorded_unpacked_sha256`).

    Parameters
    ----------
    spec : ModelSpec

    Returns
    -------
    str or None
    """
    return spec.unpacked_sha256 or recorded_unpacked_sha256(spec)


_WARNED: set[tuple] = set()


def _warn_unverified(path: Path, spec: ModelSpec) -> None:
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        UnverifiedWeightsWarning(
            f"Weight file {str(path)!r} is named like official model {spec.name!r} but is "
            "unverified: the SHA-256 of its unpacked bytes is not known (the published hash "
            f"is that of {spec.filename!r}). Use {spec.filename!r} instead, or run 'edgel3 "
            f"download {_short_name(spec)} --unpack' to unpack a verified copy and record "
            "its hash."
        ),
        stacklevel=3,
    )


def verify_weights(path: str | os.PathLike, spec: ModelSpec) -> bool:
    """Check a weight file against the official model ``spec`` (hashed once per file).

    A ``.h5.gz`` is checked against the published git blob SHA-1 of the gzipped
    file; any other file, an unpacked ``.h5``, against the SHA-256 of the official
    unpacked bytes (:func:`known_unpacked_sha256`). An unpacked file whose hash is
    not known is not refused: it loads with an :class:`UnverifiedWeightsWarning`
    (once per file per process), and its architecture is still checked when the
    model is built. Hashes are remembered by file identity
    (:func:`edgel3.weight_cache.file_digest`), so an unchanged file is not read again.

    Parameters
    ----------
    path : str or path-like
    spec : ModelSpec
        The model the file claims to be; a spec without a published hash (a
        model of the user's own) checks nothing.

    Returns
    -------
    bool
        Whether the file's hash was checked (and matched).

    Raises
    ------
    WeightsError
        If the hash differs (the message names the file, gives both hashes and the fix).
    """
    path = Path(path)
    if spec.blob_sha1 is None:
        return False
    if path.name.endswith(".gz"):
        actual = file_digest(path, "blob_sha1")
        if actual != spec.blob_sha1:
            raise WeightsError(
                f"Weight file {str(path)!r} is corrupt or not {spec.filename!r}: its git blob "
                f"SHA-1 is {actual}, expected {spec.blob_sha1}. Delete it and download it "
                f"again (edgel3 download --force {_short_name(spec)}), or rename it if it is "
                "a model of your own."
            )
        return True
    expected = known_unpacked_sha256(spec)
    if expected is None:
        _warn_unverified(path, spec)
        return False
    actual = file_digest(path, "sha256")
    if actual != expected:
        raise WeightsError(
            f"Weight file {str(path)!r} is not official model {spec.name!r}: the SHA-256 of "
            f"its bytes is {actual}, expected {expected} (the official unpacked file's). "
            f"Delete it and use {spec.filename!r} (edgel3 download {_short_name(spec)} "
            "[--unpack]), or rename it if it is a model of your own."
        )
    return True


# --------------------------------------------------------------------------- download


def _verified_or_none(path: Path, spec: ModelSpec) -> Path | None:
    """``path`` when it is the verified official file; None when missing or corrupt."""
    if not path.is_file():
        return None
    try:
        verify_weights(path, spec)
    except WeightsError:
        logger.info("Cached %s is corrupt; downloading it again.", path)
        return None
    return path


def download_weights(
    spec: ModelSpec | str, *, progress: bool = False, force: bool = False, unpack: bool = False
) -> Path:
    """Download an official weight file into the cache and verify it; optionally unpack it.

    The file is fetched into a private temporary directory inside :func:`cache_dir`,
    its blob SHA-1 is checked, and only then is it moved (atomically) to
    ``<cache>/<spec.filename>``, with the mode ``open`` would give (the umask
    honoured). On any failure (network error, HTTP error, hash mismatch,
    interruption) the temporary directory is removed and nothing is left under the
    final name. Downloads into one cache hold its lock
    (:func:`edgel3.weight_cache.cache_lock`): a second process waits, then finds the
    file there, and a temporary directory left by a killed download is removed by
    the next download.

    Parameters
    ----------
    spec : ModelSpec or str
        An official model (spec or name such as ``'sea-64'``).
    progress : bool
        Show a progress bar (tqdm, on stderr) and pooch's log messages.
    force : bool
        Download (and unpack) even if a valid file is already cached (a cached file
        that fails the hash check is replaced either way).
    unpack : bool
        Also write the unpacked ``<cache>/<stem>.h5`` (atomically) from the verified
        ``.h5.gz`` -- the cached one, else one in ``$EDGEL3_WEIGHTS_DIR``, else a
        download -- and record the SHA-256 of its bytes, against which every
        ``<stem>.h5`` is then verified (:func:`edgel3.weight_cache.unpack_weights`).

    Returns
    -------
    pathlib.Path
        The verified cached file: the ``.h5.gz``, or the ``.h5`` with ``unpack``.

    Raises
    ------
    WeightsError
        If the model is not an official one, the cache cannot be written, the
        download fails, or the downloaded bytes do not match the published hash.
    """
    spec = _as_spec(spec)
    if spec.blob_sha1 is None:
        raise WeightsError(
            f"Model {spec.name!r} is not an official model and cannot be downloaded; "
            "pass the path of its weight file instead."
        )
    directory = cache_dir()
    final = directory / spec.filename
    packed = None if force else _verified_or_none(final, spec)
    if packed is None and unpack and not force:
        found = find_weights(spec)  # a .h5.gz in $EDGEL3_WEIGHTS_DIR unpacks as well
        if found is not None and found.name == spec.filename and verify_weights(found, spec):
            packed = found
    if packed is None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightsError(
                f"Cannot create the weight cache {str(directory)!r}: {exc}. Set {CACHE_ENV} "
                f"to a writable directory, or {_hand_install_hint(spec)}."
            ) from exc

        def waiting(holder: str) -> None:
            message = f"waiting for another edgel3 download into {str(directory)!r} ({holder})"
            if progress:
                print(f"edgel3: {message}", file=sys.stderr)
            else:
                logger.info(message)

        with cache_lock(on_wait=waiting):
            # Another process may have fetched it while this one waited.
            packed = None if force else _verified_or_none(final, spec)
            if packed is None:
                packed = fetch_file(
                    weights_url(spec),
                    final,
                    spec.blob_sha1,
                    progress=progress,
                    help_text=_hand_install_hint(spec),
                )
    return unpack_weights(spec, packed, force=force) if unpack else packed


def get_weights_path(
    spec: ModelSpec | str,
    *,
    weights_path: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """Local path of a model's weight file: found, verified, or downloaded.

    A file named like an official model (``<stem>.h5.gz`` or ``<stem>.h5``) is
    checked wherever it was found (cache, ``$EDGEL3_WEIGHTS_DIR`` or
    ``weights_path``) by :func:`verify_weights`; a file of another name given as
    ``weights_path`` is the caller's own and is not.

    Parameters
    ----------
    spec : ModelSpec or str
    weights_path : str or path-like, optional
        A weight file or a directory holding it; see :func:`find_weights`.
    download : bool
        Download an official file into the cache when it is not found locally.
    progress : bool
        Show a download progress bar.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    WeightsError
        If the file is missing (and cannot or may not be downloaded) or is not the
        official file its name claims.

    Warns
    -----
    UnverifiedWeightsWarning
        For an unpacked official ``.h5`` whose hash is not known.
    """
    spec = _as_spec(spec)
    found = find_weights(spec, weights_path)
    if found is not None:
        official = official_spec_of(found)
        if official is not None:
            verify_weights(found, official)
        return found
    if download and spec.blob_sha1 is not None:
        return download_weights(spec, progress=progress)
    if spec.blob_sha1 is None:
        raise WeightsError(
            f"No weight file found for model {spec.name!r}; pass weights_path=<its .h5 file>."
        )
    raise WeightsError(
        f"Weight file {spec.filename!r} not found and download=False; download it from "
        f"{weights_url(spec)} and {_hand_install_hint(spec)}."
    )
