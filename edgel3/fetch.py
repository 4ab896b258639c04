"""Fetching one file over HTTP into a folder, checked before it gets its final name.

Used by :func:`edgel3.weights.download_weights`, which holds the cache's lock
(:func:`edgel3.weight_cache.cache_lock`) around it: the file is streamed into a private
``.partial-*`` folder beside its destination, its git blob SHA-1 is checked, and only
then is it given the mode ``open`` would give (the umask honoured) and moved into place
atomically. Whatever fails (network, HTTP status, hash, interruption), the folder is
removed; one left by a killed process is swept by the next holder of the lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .exceptions import WeightsError
from .files import current_umask
from .weight_cache import CACHE_ENV, file_blob_sha1, remember_digest

__all__ = ["fetch_file"]

logger = logging.getLogger(__name__)

# Download chunk size: pooch's default (1 KiB) costs one write + flush per KiB.
_DOWNLOAD_CHUNK = 1 << 16


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


def fetch_file(url: str, final: Path, blob_sha1: str, *, progress: bool, help_text: str) -> Path:
    """Download ``url`` to ``final`` if its git blob SHA-1 is ``blob_sha1``.

    Parameters
    ----------
    url : str
    final : pathlib.Path
        Destination; its directory must exist.
    blob_sha1 : str
        The published git blob SHA-1 of the file.
    progress : bool
        Show a progress bar (tqdm, on stderr) and pooch's log messages.
    help_text : str
        What the user can do instead, ending the error messages (``"put X in Y"``).

    Returns
    -------
    pathlib.Path
        ``final``, whose hash is remembered (:func:`edgel3.weight_cache.remember_digest`).

    Raises
    ------
    WeightsError
        If the folder cannot be created, the download fails, or the bytes do not
        match ``blob_sha1`` (nothing is saved then).
    """
    try:
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
    except OSError as exc:
        raise WeightsError(
            f"Cannot create the weight cache {str(final.parent)!r}: {exc}. Set "
            f"{CACHE_ENV} to a writable directory, or {help_text}."
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
                fname=final.name,
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
                f"Could not download {final.name!r} from {url} "
                f"({_describe_download_error(exc)}). Download it by hand and {help_text}."
            ) from exc
        actual = file_blob_sha1(fetched)
        if actual != blob_sha1:
            raise WeightsError(
                f"Downloaded {final.name!r} from {url} does not match the published file: "
                f"git blob SHA-1 {actual}, expected {blob_sha1}. Nothing was saved; check "
                f"EDGEL3_WEIGHTS_URL or download it by hand and {help_text}."
            )
        # pooch's temporary file is owner-only (0o600): give it the mode open() would.
        os.chmod(fetched, 0o666 & ~current_umask())
        os.replace(fetched, final)
        remember_digest(final, "blob_sha1", actual)
    finally:
        pooch_logger.setLevel(old_level)
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("Downloaded %s to %s.", url, final)
    return final
