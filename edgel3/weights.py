"""Official weight files: where they live, how they are downloaded and checked.

Search order for a model's weights (:func:`find_weights`):

1. an explicit ``weights_path`` (a file, or a directory holding ``<name>.h5.gz`` or
   ``<name>.h5``);
2. the directory named by ``$EDGEL3_WEIGHTS_DIR`` (gzipped files, or the unpacked ``.h5``
   files edgel3 0.2.1 left next to its code);
3. the per-user cache (:func:`cache_dir`), into which :func:`download_weights` puts files.

Integrity is the git blob SHA-1 of the *gzipped* file, as published in the weight
repository (see ``docs/models.rst`` §1). Unpacked ``.h5`` files therefore cannot be hash-checked;
they are checked structurally (layer count and every shape) when the model is built.

Reading the files is :mod:`edgel3.legacy_h5`'s job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .exceptions import WeightsError
from .specs import (
    REGISTRY,
    WEIGHTS_COMMIT,
    WEIGHTS_URL_TEMPLATE,
    ModelSpec,
    get_spec,
)

__all__ = [
    "CACHE_ENV",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_URL_ENV",
    "blob_sha1",
    "file_blob_sha1",
    "cache_dir",
    "weights_base_url",
    "weights_url",
    "find_weights",
    "verify_weights",
    "download_weights",
    "get_weights_path",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "EDGEL3_CACHE_DIR"
WEIGHTS_DIR_ENV = "EDGEL3_WEIGHTS_DIR"
WEIGHTS_URL_ENV = "EDGEL3_WEIGHTS_URL"

_CHUNK = 1 << 20
# Download chunk size: pooch's default (1 KiB) costs one write + flush per KiB.
_DOWNLOAD_CHUNK = 1 << 16


# --------------------------------------------------------------------------- hashes


def blob_sha1(data: bytes) -> str:
    """Git blob SHA-1 of ``data``, the hash git (and the weight repository) records.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    str
        40 lowercase hex digits of ``sha1(b"blob <len>\\0" + data)``.

    Examples
    --------
    >>> blob_sha1(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    digest = hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0")
    digest.update(data)
    return digest.hexdigest()


def file_blob_sha1(path: str | os.PathLike) -> str:
    """Git blob SHA-1 of a file's bytes, read in chunks.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
    """
    # No memo keyed on size/mtime: an in-place rewrite within one timestamp tick would
    # go unnoticed, and hashing costs ~10 ms per 10 MB.
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        digest = hashlib.sha1(b"blob " + str(size).encode() + b"\0")
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Directory where downloaded weight files are kept.

    ``$EDGEL3_CACHE_DIR`` if set, else the per-user cache of the platform
    (``~/.cache/edgel3`` on Linux), as given by :func:`pooch.os_cache`.
    The directory is not created here.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("edgel3"))


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


def verify_weights(path: str | os.PathLike, spec: ModelSpec) -> None:
    """Check a gzipped weight file against the model's published blob SHA-1.

    Only ``.h5.gz`` files of specs with a ``blob_sha1`` are hash-checked: the
    published hash is that of the gzipped bytes, so an unpacked ``.h5`` (as 0.2.1
    left them) cannot be checked here; it is checked structurally (every layer and
    shape) when the model is built from it.

    Parameters
    ----------
    path : str or path-like
    spec : ModelSpec

    Raises
    ------
    WeightsError
        If the hash differs (the message gives both hashes, the file, and the fix).
    """
    path = Path(path)
    if not path.name.endswith(".gz") or spec.blob_sha1 is None:
        return
    actual = file_blob_sha1(path)
    if actual != spec.blob_sha1:
        raise WeightsError(
            f"Weight file {str(path)!r} is corrupt or not {spec.filename!r}: its git blob "
            f"SHA-1 is {actual}, expected {spec.blob_sha1}. Delete it and download it again "
            f"(edgel3.weights.download_weights({spec.name!r}, force=True))."
        )


def _registry_spec_for(path: Path, spec: ModelSpec) -> ModelSpec | None:
    """The official spec whose file name ``path`` carries, if any."""
    if path.name == spec.filename and spec.blob_sha1 is not None:
        return spec
    if path.name.endswith(".h5.gz"):
        return REGISTRY.get(path.name[: -len(".h5.gz")])
    return None


# --------------------------------------------------------------------------- download


def _describe_download_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return f"HTTP {status} {getattr(response, 'reason', '') or ''}".strip()
    name = type(exc).__name__
    if "ConnectionError" in name:
        return "could not connect to the server"
    if "Timeout" in name:
        return "the connection timed out"
    return f"{name}: {exc}"


def download_weights(spec: ModelSpec | str, *, progress: bool = False, force: bool = False) -> Path:
    """Download an official weight file into the cache and verify it.

    The file is fetched into a private temporary directory inside :func:`cache_dir`,
    its blob SHA-1 is checked, and only then is it moved (atomically) to
    ``<cache>/<spec.filename>``. On any failure (network error, HTTP error, hash
    mismatch, interruption) the temporary directory is removed and nothing is left
    under the final name.

    Parameters
    ----------
    spec : ModelSpec or str
        An official model (spec or name such as ``'sea-64'``).
    progress : bool
        Show a progress bar (tqdm, on stderr) and pooch's log messages.
    force : bool
        Download even if a valid file is already cached (a cached file that fails
        the hash check is replaced either way).

    Returns
    -------
    pathlib.Path
        The verified cached file.

    Raises
    ------
    WeightsError
        If the model is not an official one, the download fails, or the
        downloaded bytes do not match the published hash.
    """
    spec = _as_spec(spec)
    if spec.blob_sha1 is None:
        raise WeightsError(
            f"Model {spec.name!r} is not an official model and cannot be downloaded; "
            "pass the path of its weight file instead."
        )
    directory = cache_dir()
    final = directory / spec.filename
    if not force and final.is_file():
        try:
            verify_weights(final, spec)
            return final
        except WeightsError:
            logger.info("Cached %s is corrupt; downloading it again.", final)

    url = weights_url(spec)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
    except OSError as exc:
        raise WeightsError(
            f"Cannot create the weight cache {str(directory)!r}: {exc}. Set {CACHE_ENV} to a "
            f"writable directory, or {_hand_install_hint(spec)}."
        ) from exc

    import pooch

    pooch_logger = pooch.get_logger()
    old_level = pooch_logger.level
    if not progress:
        # pooch logs every download (and, with known_hash=None, a SHA-256 hint) at INFO.
        pooch_logger.setLevel(logging.WARNING)
    try:
        try:
            # known_hash=None: pooch knows sha256/md5/sha1 of the file, not git blob
            # SHA-1s, so the check is done below, before the file gets its final name.
            fetched = pooch.retrieve(
                url,
                known_hash=None,
                fname=spec.filename,
                path=partial,
                downloader=pooch.HTTPDownloader(progressbar=progress, chunk_size=_DOWNLOAD_CHUNK),
            )
        except Exception as exc:
            # pooch streams the body and raises on HTTP errors without closing the
            # response; close it so its socket is not left for the garbage collector.
            response = getattr(exc, "response", None)
            if response is not None:
                response.close()
            raise WeightsError(
                f"Could not download {spec.filename!r} from {url} "
                f"({_describe_download_error(exc)}). Download it by hand and "
                f"{_hand_install_hint(spec)}."
            ) from exc
        actual = file_blob_sha1(fetched)
        if actual != spec.blob_sha1:
            raise WeightsError(
                f"Downloaded {spec.filename!r} from {url} does not match the published file: "
                f"git blob SHA-1 {actual}, expected {spec.blob_sha1}. Nothing was saved; check "
                f"{WEIGHTS_URL_ENV} or download it by hand and {_hand_install_hint(spec)}."
            )
        os.replace(fetched, final)
    finally:
        pooch_logger.setLevel(old_level)
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("Downloaded %s to %s.", url, final)
    return final


def get_weights_path(
    spec: ModelSpec | str,
    *,
    weights_path: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """Local path of a model's weight file: found, verified, or downloaded.

    Gzipped files named like an official model are hash-checked wherever they were
    found (cache, ``$EDGEL3_WEIGHTS_DIR`` or ``weights_path``); see
    :func:`verify_weights` for unpacked ``.h5`` files.

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
        If the file is missing (and cannot or may not be downloaded) or corrupt.
    """
    spec = _as_spec(spec)
    found = find_weights(spec, weights_path)
    if found is not None:
        official = _registry_spec_for(found, spec)
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
