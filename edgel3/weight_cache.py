"""The per-user weight cache: its directory, its lock, and the integrity records kept in it.

* :func:`cache_dir` -- where downloaded (and unpacked) weight files live;
* hashes -- :func:`blob_sha1` / :func:`file_blob_sha1`, the git blob SHA-1 that the weight
  repository publishes for each gzipped file, and :func:`file_sha256`, the hash edgel3 uses
  for unpacked ``.h5`` files;
* :func:`file_digest` -- a file's hash, computed once and remembered in ``verified.json``
  in the cache, keyed by the file's absolute path, size, modification time, change time
  and inode; a later load of the unchanged file costs one ``stat``;
* :func:`recorded_unpacked_sha256` / :func:`unpack_weights` -- the SHA-256 of an official
  file's unpacked bytes, recorded in ``unpacked.json`` when edgel3 unpacks a verified
  ``.h5.gz`` into ``<cache>/<stem>.h5``;
* :func:`cache_lock` -- held by every writer into the cache, so that the leftovers of a
  killed writer (``.partial-*`` download folders, ``.NAME.<random>.partial`` files) are swept
  by the next one (:func:`sweep_cache`), never those of a live one.

Both record files are written atomically (:func:`edgel3.files.atomic_write`) under the
lock; a record file that cannot be read is ignored (and rewritten), and one that cannot be
written (a read-only cache, a lock held by a long download) is simply not updated: the
records only save time, the hashes are what is checked (docs/models.rst §1.3).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from .exceptions import OutputError, WeightsError
from .files import atomic_write
from .locks import FileLock, sweep_partials
from .specs import REGISTRY, ModelSpec

__all__ = [
    "CACHE_ENV",
    "VERIFIED_RECORDS",
    "UNPACKED_RECORDS",
    "cache_dir",
    "blob_sha1",
    "file_blob_sha1",
    "file_sha256",
    "file_digest",
    "remember_digest",
    "recorded_unpacked_sha256",
    "unpack_weights",
    "cache_lock",
    "sweep_cache",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "EDGEL3_CACHE_DIR"
#: Record file of hashes by file identity (in the cache directory).
VERIFIED_RECORDS = "verified.json"
#: Record file of the unpacked official files' SHA-256 (in the cache directory).
UNPACKED_RECORDS = "unpacked.json"
_LOCK_NAME = ".edgel3-cache.lock"
_FORMAT = 1
#: Files remembered in ``verified.json`` (the oldest are forgotten first).
_MAX_RECORDS = 256
_CHUNK = 1 << 20

# The cache lock is an flock, re-entrant per process (edgel3.locks): threads of one process
# are kept apart by this lock as well. _DEPTH counts the current thread's nested holds.
_THREAD_LOCK = threading.RLock()
_DEPTH = [0]
# (absolute path, kind) -> (file signature, digest) of the files hashed in this process.
_MEMO: dict[tuple[str, str], tuple[list[int], str]] = {}


# --------------------------------------------------------------------------- location


def cache_dir() -> Path:
    """Directory where downloaded weight files (and edgel3's records of them) are kept.

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


def _hash_file(path, digest) -> str:
    with open(path, "rb") as fh:
        if digest is None:  # git blob: the header holds the size
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha1(b"blob " + str(size).encode() + b"\0")
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_blob_sha1(path: str | os.PathLike) -> str:
    """Git blob SHA-1 of a file's bytes, read in chunks (no record is used or kept).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
    """
    return _hash_file(path, None)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks (no record is used or kept).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    return _hash_file(path, hashlib.sha256())


def _signature(path: Path) -> list[int]:
    st = path.stat()
    # ctime and inode change on every rewrite, rename or copy, even one that restores mtime.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _compute(path: Path, kind: str) -> str:
    if kind == "sha256":
        return file_sha256(path)
    if kind == "blob_sha1":
        return file_blob_sha1(path)
    raise ValueError(f"Unknown hash kind {kind!r}; expected 'sha256' or 'blob_sha1'.")


def file_digest(path: str | os.PathLike, kind: str) -> str:
    """A file's hash, computed once per file and remembered (``verified.json`` in the cache).

    Parameters
    ----------
    path : str or path-like
    kind : {'sha256', 'blob_sha1'}
        :func:`file_sha256` or :func:`file_blob_sha1`.

    Returns
    -------
    str
        The hash of the file's current bytes: remembered while the file's absolute
        path, size, modification time (ns), change time (ns) and inode are unchanged,
        else computed again.

    Raises
    ------
    WeightsError
        If the file cannot be read.
    """
    path = Path(path).resolve()
    key = str(path)
    try:
        signature = _signature(path)
        memo = _MEMO.get((key, kind))
        if memo is not None and memo[0] == signature:
            return memo[1]
        entry = _read_records(VERIFIED_RECORDS).get("files", {}).get(key)
        if isinstance(entry, dict) and entry.get("stat") == signature and entry.get(kind):
            digest = str(entry[kind])
        else:
            digest = _compute(path, kind)
            if _signature(path) != signature:
                return digest  # changed while it was read: remember nothing
            _store_digest(key, signature, kind, digest)
    except OSError as exc:
        raise WeightsError(f"Cannot read weight file {key!r}: {exc}.") from exc
    _MEMO[(key, kind)] = (signature, digest)
    return digest


def remember_digest(path: str | os.PathLike, kind: str, digest: str) -> None:
    """Record a hash just computed from a file's bytes (a download, an unpacked file).

    Parameters
    ----------
    path : str or path-like
    kind : {'sha256', 'blob_sha1'}
    digest : str
    """
    path = Path(path).resolve()
    signature = _signature(path)
    _store_digest(str(path), signature, kind, digest)
    _MEMO[(str(path), kind)] = (signature, digest)


def _store_digest(key: str, signature: list[int], kind: str, digest: str) -> None:
    def update(records: dict) -> None:
        files = records.get("files")
        files = files if isinstance(files, dict) else {}
        entry = files.pop(key, None)
        entry = entry if isinstance(entry, dict) and entry.get("stat") == signature else {}
        entry.update({"stat": signature, kind: digest})
        files[key] = entry  # re-inserted last: the oldest records come first
        for stale in [k for k in files if not os.path.exists(k)]:
            del files[stale]
        while len(files) > _MAX_RECORDS:
            del files[next(iter(files))]
        records["files"] = files

    _update_records(VERIFIED_RECORDS, update)


# --------------------------------------------------------------------------- record files


def _read_records(name: str) -> dict:
    """One record file's contents; ``{}`` when missing, unreadable or not edgel3's format."""
    try:
        with open(cache_dir() / name, encoding="utf-8") as fh:
            records = json.load(fh)
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            logger.debug("ignoring unreadable %s: %s", name, exc)
        return {}
    return records if isinstance(records, dict) and records.get("format") == _FORMAT else {}


def _update_records(name: str, update: Callable[[dict], None]) -> bool:
    """Read, update and atomically rewrite a record file; False when it was not written."""
    if not _THREAD_LOCK.acquire(blocking=False):
        return False  # another thread is writing into the cache: the record can wait
    try:
        lock = FileLock(cache_dir() / _LOCK_NAME)
        try:
            if not lock.acquire(blocking=False):
                return False  # another process (a download) holds the cache
        except OutputError as exc:  # no writable cache: records only save time
            logger.debug("%s not updated: %s", name, exc)
            return False
        try:
            records = _read_records(name)
            update(records)
            records["format"] = _FORMAT
            text = json.dumps(records, indent=1, sort_keys=True) + "\n"
            with atomic_write(cache_dir() / name) as fh:
                fh.write(text.encode("utf-8"))
        except OutputError as exc:
            logger.debug("%s not updated: %s", name, exc)
            return False
        finally:
            lock.release()
    finally:
        _THREAD_LOCK.release()
    return True


def recorded_unpacked_sha256(spec: ModelSpec) -> str | None:
    """The SHA-256 of an official file's unpacked bytes, if edgel3 recorded it here.

    Parameters
    ----------
    spec : ModelSpec

    Returns
    -------
    str or None
        The hash recorded by :func:`unpack_weights` for this model's published
        ``.h5.gz`` (a record made from another ``.h5.gz`` is ignored).
    """
    entry = _read_records(UNPACKED_RECORDS).get("models", {}).get(spec.name)
    if not isinstance(entry, dict) or spec.blob_sha1 is None:
        return None
    if entry.get("packed_blob_sha1") != spec.blob_sha1 or not entry.get("sha256"):
        return None
    return str(entry["sha256"])


# --------------------------------------------------------------------------- lock, sweep


@contextlib.contextmanager
def cache_lock(on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the cache's lock (waiting for another process that holds it); sweep leftovers.

    Every writer into the cache holds it, so whatever temporary a writer leaves
    there belongs to a dead process once the lock is taken: the outermost hold
    sweeps it (:func:`sweep_cache`). The lock is an ``flock``, which the kernel
    releases when its holder dies, however it dies.

    Parameters
    ----------
    on_wait : callable, optional
        Called with the holder's description (``'pid N'``) while waiting.

    Yields
    ------
    pathlib.Path
        The cache directory (created if needed).

    Raises
    ------
    WeightsError
        If the cache directory or its lock file cannot be created.
    """
    directory = cache_dir()
    with _THREAD_LOCK:
        lock = FileLock(directory / _LOCK_NAME)
        try:
            lock.acquire(on_wait=on_wait)
        except OutputError as exc:
            raise WeightsError(
                f"Cannot write to the weight cache {str(directory)!r}: "
                f"{exc.__cause__ or exc}. Set {CACHE_ENV} to a writable directory."
            ) from exc
        _DEPTH[0] += 1
        try:
            if _DEPTH[0] == 1:
                sweep_cache(directory)
            yield directory
        finally:
            _DEPTH[0] -= 1
            lock.release()


def sweep_cache(directory: Path) -> list[Path]:
    """Remove what killed writers left in the cache; call it holding :func:`cache_lock`.

    Parameters
    ----------
    directory : pathlib.Path
        The cache directory.

    Returns
    -------
    list of pathlib.Path
        What was removed: ``.partial-*`` download folders and the ``.NAME.<random>.partial``
        temporaries of the files edgel3 writes there.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            if entry.name.startswith(".partial-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
                logger.info("removed %s, left by an interrupted download", entry)
    for name in (VERIFIED_RECORDS, UNPACKED_RECORDS, *(f"{stem}.h5" for stem in REGISTRY)):
        removed += sweep_partials(directory / name)
    return removed


# --------------------------------------------------------------------------- unpacking


def unpack_weights(spec: ModelSpec, packed: str | os.PathLike, *, force: bool = False) -> Path:
    """Unpack an official ``.h5.gz`` into ``<cache>/<stem>.h5`` and record its SHA-256.

    The gzipped bytes are checked against the published blob SHA-1 after they are
    read (so what is unpacked is what was checked), gunzipped in memory, written
    atomically next to the cached ``.h5.gz`` and their SHA-256 recorded in
    ``unpacked.json``: from then on any file named ``<stem>.h5`` is verified against
    it, wherever it is found.

    Parameters
    ----------
    spec : ModelSpec
        An official model.
    packed : str or path-like
        Its ``.h5.gz`` file.
    force : bool
        Unpack again even if ``<cache>/<stem>.h5`` already has the known hash.

    Returns
    -------
    pathlib.Path
        The unpacked file.

    Raises
    ------
    WeightsError
        If ``packed`` is not the published file, is not gzip data, or the cache
        cannot be written.
    """
    target = cache_dir() / f"{spec.name}.h5"
    expected = spec.unpacked_sha256 or recorded_unpacked_sha256(spec)
    if not force and expected and target.is_file() and file_digest(target, "sha256") == expected:
        return target
    try:
        raw = Path(packed).read_bytes()
    except OSError as exc:
        raise WeightsError(f"Cannot read weight file {str(packed)!r}: {exc}.") from exc
    actual = blob_sha1(raw)
    if actual != spec.blob_sha1:
        raise WeightsError(
            f"Weight file {str(packed)!r} is not {spec.filename!r}: its git blob SHA-1 is "
            f"{actual}, expected {spec.blob_sha1}; nothing was unpacked. Delete it and "
            "download it again (edgel3 download --force)."
        )
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise WeightsError(f"Cannot unpack {str(packed)!r}: {exc}.") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    if spec.unpacked_sha256 and sha256 != spec.unpacked_sha256:  # the published bytes changed?
        raise WeightsError(
            f"Unpacking {str(packed)!r} gave SHA-256 {sha256}, expected "
            f"{spec.unpacked_sha256}; nothing was written. Please report this."
        )
    with cache_lock():
        try:
            with atomic_write(target) as fh:
                fh.write(data)
        except OutputError as exc:
            raise WeightsError(
                f"Cannot write {str(target)!r}: {exc.__cause__ or exc}. Set {CACHE_ENV} "
                "to a writable directory."
            ) from exc
        remember_digest(target, "sha256", sha256)

        def update(records: dict) -> None:
            models = records.get("models")
            records["models"] = models = models if isinstance(models, dict) else {}
            models[spec.name] = {
                "sha256": sha256,
                "size": len(data),
                "packed_blob_sha1": spec.blob_sha1,
            }

        _update_records(UNPACKED_RECORDS, update)
    logger.info("Unpacked %s to %s (SHA-256 %s).", packed, target, sha256)
    return target
