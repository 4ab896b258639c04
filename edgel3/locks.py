"""Advisory file locks that a killed process never leaves held, and debris sweeping.

Two kinds of lock keep concurrent runs from duplicating or clobbering work:

* an **output lock** (:func:`output_lock`) is held while one output (an
  ``.npz``) is computed and written; a second run that reaches the same output
  waits for it, then finds it up to date and skips it;
* a **dataset lock** (:class:`DatasetLock`) is held by a run that appends to a
  Parquet dataset: a second run into the same dataset (same shard, or another
  sharding) is refused with a message naming the holder.

Both are ``flock`` locks on small hidden files: the kernel releases them when
the process dies, however it dies, so a killed run never leaves a lock stuck.
Output lock files are removed when released; one left by a killed run is
taken over (and removed) by the next run. Without ``fcntl`` (Windows) locking
is skipped with a debug message.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .exceptions import OutputError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "FileLock",
    "LockBusy",
    "output_lock",
    "report_wait",
    "sweep_partials",
    "DatasetLock",
]

logger = logging.getLogger(__name__)

#: Seconds between two "still waiting" messages of a blocking lock.
WAIT_REPORT_SECONDS = 30.0


class LockBusy(OutputError):
    """A lock is held by another live process (the message names it)."""


# Locks this process holds, by path: re-entering one is a no-op (flock locks are
# per open file, so a second open in the same process would wait for itself).
_HELD: dict[str, list] = {}


class FileLock:
    """An exclusive (or shared) ``flock`` on ``path``, re-entrant within a process.

    Parameters
    ----------
    path : path-like
        The lock file (created; an exclusive holder writes its pid in it).
    shared : bool
        Take a shared lock (many holders) instead of an exclusive one.
    remove : bool
        Delete the lock file on release (a shared lock: when no one else
        holds it). Safe: whoever locked a deleted file notices and retries
        on the new one.
    """

    def __init__(self, path, *, shared: bool = False, remove: bool = True):
        self.path = Path(path)
        self.shared = shared
        self.remove = remove
        self._key = os.path.abspath(self.path)

    def holder(self) -> str:
        """What the lock file says about its holder (``'pid N'``), or ``'unknown'``."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return "unknown"
        return f"pid {text}" if text.isdigit() else "unknown"

    def acquire(self, blocking: bool = True, on_wait: Callable[[str], None] | None = None) -> bool:
        """Take the lock.

        Parameters
        ----------
        blocking : bool
            Wait for another holder to release it; else return False at once.
        on_wait : callable, optional
            Called with the holder's description when the lock is busy (and
            every :data:`WAIT_REPORT_SECONDS` while waiting).

        Returns
        -------
        bool
            Whether the lock is now held.

        Raises
        ------
        OutputError
            If the lock file cannot be created.
        """
        held = _HELD.get(self._key)
        if held is not None:
            held[1] += 1
            return True
        if fcntl is None:  # pragma: no cover - Windows
            logger.debug("no fcntl: %s not locked", self.path)
            _HELD[self._key] = [None, 1]
            return True
        reported = None
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError(f'Cannot create the lock file "{self.path}": {exc}') from exc
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not blocking:
                    return False
                now = time.monotonic()
                if on_wait is not None and (
                    reported is None or now - reported >= WAIT_REPORT_SECONDS
                ):
                    on_wait(self.holder())
                    reported = now
                time.sleep(0.05)
                continue
            if self._same_file(fd):
                break
            os.close(fd)  # the holder removed the file we locked: lock the new one
        if not self.shared:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        _HELD[self._key] = [fd, 1]
        return True

    def _same_file(self, fd: int) -> bool:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)

    def release(self) -> None:
        """Release the lock (the outermost release of a re-entered lock)."""
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1]:
            return
        del _HELD[self._key]
        fd = held[0]
        if fd is None:  # pragma: no cover - Windows
            return
        if self.remove and self._alone(fd):
            try:
                self.path.unlink()  # while still locked: waiters then retry on a new file
            except OSError:
                pass
        os.close(fd)

    def _alone(self, fd: int) -> bool:
        """Whether this process is the only holder (a shared lock tries to become exclusive)."""
        if not self.shared:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def output_lock(output) -> FileLock:
    """The lock of one output file: ``.<name>.lock`` beside it (removed when released).

    Parameters
    ----------
    output : path-like

    Returns
    -------
    FileLock
    """
    output = Path(output)
    return FileLock(output.parent / f".{output.name}.lock")


def report_wait(output) -> Callable[[str], None]:
    """An ``on_wait`` callback saying (log level WARNING, logger ``edgel3.locks``) who is awaited.

    The command line shows these messages (the rest of edgel3's log is hidden).

    Parameters
    ----------
    output : path-like
        What is being waited for.

    Returns
    -------
    callable
    """

    def report(holder: str) -> None:
        logger.warning("waiting for another edgel3 run (%s) writing %s", holder, output)

    return report


def sweep_partials(output) -> list[Path]:
    """Remove the temporary files (or staging folders) killed writers of ``output`` left.

    Call it while holding :func:`output_lock` of ``output``: every writer of
    ``output`` holds that lock while its temporary file exists, so any found
    then belongs to a dead process. Temporaries are ``.<name>.<random>.partial``
    files (:class:`edgel3.files.atomic_write`) or folders
    (:func:`edgel3.commands.common.staged_outputs`).

    Parameters
    ----------
    output : path-like

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    output = Path(output)
    pattern = re.compile(re.escape(f".{output.name}.") + r"[A-Za-z0-9_]+\.partial")
    removed = []
    try:
        candidates = list(output.parent.iterdir())
    except OSError:
        return removed
    for path in candidates:
        if pattern.fullmatch(path.name):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue
            removed.append(path)
            logger.info("removed %s, left by an interrupted run", path)
    return removed


class DatasetLock:
    """Exclusive right to append to a dataset directory (one shard of it).

    A run takes a shared lock on ``.edgel3-shards-<n>.lock`` (its shard
    count; 1 for an unsharded run) and an exclusive one on its own shard's
    ``.edgel3-shard-<i>-of-<n>.lock``, then checks that no run with another
    shard count is live. So the tasks of one job array run together, while a
    second run of the same shard, or one with another sharding (whose files
    would overlap), is refused. The lock files are removed by the last
    holder.

    Parameters
    ----------
    directory : path-like
    shard : (int, int) or None
    """

    def __init__(self, directory, shard: tuple[int, int] | None = None):
        self.directory = Path(directory)
        index, count = shard if shard is not None else (0, 1)
        self._group = FileLock(self.directory / f".edgel3-shards-{count}.lock", shared=True)
        self._own = FileLock(self.directory / f".edgel3-shard-{index}-of-{count}.lock")
        self._what = "this shard" if count > 1 else "this dataset"

    def _busy(self, what: str, lock: FileLock) -> LockBusy:
        holder = lock.holder()
        holder = f" ({holder})" if holder != "unknown" else ""
        return LockBusy(
            f'Another edgel3 run{holder} is writing {what} to "{self.directory}"; wait for '
            "it to finish (or stop it), then run again: finished files are not redone."
        )

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockBusy` naming the live holder.

        Raises
        ------
        LockBusy
        OutputError
            If the lock files cannot be created.
        """
        self._group.acquire()
        try:
            if not self._own.acquire(blocking=False):
                raise self._busy(self._what, self._own)
            for path in sorted(self.directory.glob(".edgel3-shards-*.lock")):
                if path == self._group.path:
                    continue
                other = FileLock(path)
                if not other.acquire(blocking=False):
                    raise self._busy("with another --shard count", other)
                other.release()  # a leftover nobody holds: removed
            for path in sorted(self.directory.glob(".edgel3-shard-*-of-*.lock")):
                leftover = FileLock(path)
                if path != self._own.path and leftover.acquire(blocking=False):
                    leftover.release()  # a killed task's lock file: removed
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release the locks (removing their files when no other run holds them)."""
        self._own.release()
        self._group.release()

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
