"""Quiet TensorFlow's C++ start-up logging when edgel3 imports TensorFlow or Keras.

TensorFlow 2.21 writes lines such as ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, ``port.cc] oneDNN custom
operations are on``, ``cudart_stub.cc] Could not find cuda drivers`` and
``cpu_feature_guard.cc] This TensorFlow binary is optimized...`` straight to the
process's file descriptor 2 while it is imported; later (when the first device is
created) it may add ``cuInit ... UNKNOWN ERROR (303)``. ``TF_CPP_MIN_LOG_LEVEL``
silences the later lines but not the first ones, which absl prints before it reads
any setting (measured with TensorFlow 2.21: level 3 still shows the ``absl``,
``port.cc`` and ``cudart_stub.cc`` lines).

:func:`quiet_tensorflow_import` therefore does two things for the first import of
``tensorflow`` or ``keras`` made by an edgel3 module (an import made by the user's
own code is left alone):

* it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (fatal errors only) unless the variable is
  already set, in which case the user's level is kept;
* it redirects file descriptor 2 into a temporary file during that import only,
  then writes back every captured line except TensorFlow log records below the
  level in force (:func:`filter_tensorflow_log`). Anything else written meanwhile
  (Python warnings, other libraries) is shown as it was.

:func:`quiet_native_logs` does the same around any block that makes TensorFlow or
LiteRT log from C++ after the import (the export command wraps the converter with
it: LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``).

Set ``TF_CPP_MIN_LOG_LEVEL=0`` to see all of TensorFlow's lines, or run the
command line with ``--debug``, which turns this module off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = [
    "LEVEL_VARIABLE",
    "DEFAULT_LEVEL",
    "quiet_tensorflow_import",
    "quiet_native_logs",
    "is_quiet",
    "filter_tensorflow_log",
    "captured_stderr_fd",
]

#: The environment variable TensorFlow reads for its C++ log level (0 info ... 3 fatal).
LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: The level edgel3 sets when the variable is unset: fatal errors only.
DEFAULT_LEVEL = "3"

#: Top-level modules whose first import is quieted.
_WATCHED = frozenset({"tensorflow", "keras"})
#: A glog/absl record header: severity letter, date, time, thread, ``file:line]``.
#: (Before absl is initialised the seconds field holds the Unix time: ``00:00:1796430480.48``.)
_RECORD = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]\s]+:\d+\] ")
#: absl's banner before its logger is initialised (a warning).
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
#: LiteRT/TFLite's own records (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``).
_LITE_RECORD = re.compile(r"^(INFO|WARNING|ERROR): ")
_LITE_SEVERITY = {"INFO": 0, "WARNING": 1, "ERROR": 2}
#: Lines TensorFlow writes as the second line of a record (cpu_feature_guard).
_CONTINUATIONS = ("To enable the following instructions:",)
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}

_state = {"enabled": True}


def _level() -> int:
    """The C++ log level in force (``TF_CPP_MIN_LOG_LEVEL``, default :data:`DEFAULT_LEVEL`)."""
    try:
        return int(os.environ.get(LEVEL_VARIABLE, DEFAULT_LEVEL))
    except ValueError:
        return 0  # TensorFlow ignores a value it cannot read: everything is shown


def filter_tensorflow_log(text: str, level: int) -> str:
    """Remove TensorFlow/absl log records below ``level`` from captured stderr text.

    Parameters
    ----------
    text : str
        What was written to stderr: TensorFlow's glog/absl records
        (``I0000 00:00:... port.cc:153] ...``) and LiteRT's (``INFO: ...``).
    level : int
        Minimum severity kept: 0 info, 1 warning, 2 error, 3 fatal (as
        ``TF_CPP_MIN_LOG_LEVEL``).

    Returns
    -------
    str
        ``text`` without those records (and without absl's pre-initialisation
        banner when ``level >= 1``); every other line is kept, in order.

    Examples
    --------
    >>> text = "I0000 00:00:1.5 12 port.cc:153] oneDNN custom operations are on.\\nhello\\n"
    >>> filter_tensorflow_log(text, 3)
    'hello\\n'
    >>> filter_tensorflow_log(text, 0) == text
    True
    """
    kept = []
    dropped_record = False
    for line in text.splitlines(keepends=True):
        record = _RECORD.match(line)
        if record:
            dropped_record = _SEVERITY[record.group(1)] < level
            if not dropped_record:
                kept.append(line)
            continue
        if line.startswith(_BANNER):
            dropped_record = level >= 1
            if not dropped_record:
                kept.append(line)
            continue
        lite = _LITE_RECORD.match(line)
        if lite:
            dropped_record = _LITE_SEVERITY[lite.group(1)] < level
            if not dropped_record:
                kept.append(line)
            continue
        if dropped_record and line.startswith(_CONTINUATIONS):
            continue
        dropped_record = False
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
    """Redirect file descriptor 2 into a temporary file for the duration of the block.

    C libraries write there directly, bypassing ``sys.stderr``. The captured text
    is appended to the yielded list when the block ends (the descriptor is
    restored first, also on error). Where descriptor 2 cannot be duplicated
    (closed, or an unusual platform) nothing is captured.

    Yields
    ------
    list of str
        Empty inside the block; holds the captured text afterwards.
    """
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Hide TensorFlow/LiteRT C++ log records written to stderr during the block.

    Records below the level in force (``TF_CPP_MIN_LOG_LEVEL``, default
    :data:`DEFAULT_LEVEL`) are dropped; everything else written to stderr in the
    block is written again when it ends (also on error). Does nothing once
    quieting is turned off (``quiet_tensorflow_import(False)``, ``--debug``).
    """
    if not _state["enabled"]:
        yield
        return
    os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)
    captured: list[str] = []
    try:
        with captured_stderr_fd() as captured:
            yield
    finally:
        remainder = filter_tensorflow_log("".join(captured), _level())
        if remainder:
            sys.stderr.write(remainder)
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Wraps the real loader of ``tensorflow``/``keras``: executes it with stderr captured."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _uninstall()  # one import to quiet; later imports find the module in sys.modules
        with quiet_native_logs():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


def _imported_by_edgel3() -> bool:
    """Whether the import in progress comes from an edgel3 module (not from the user's code)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<frozen") and "importlib" not in filename:
            return str(frame.f_globals.get("__name__", "")).startswith("edgel3")
        frame = frame.f_back
    return False


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow``/``keras`` with the other finders and wraps their loader."""

    searching = False

    def find_spec(self, fullname, path, target=None):
        if fullname not in _WATCHED or self.searching or not _imported_by_edgel3():
            return None
        self.searching = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.searching = False
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietFinder()


def _uninstall() -> None:
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def quiet_tensorflow_import(enabled: bool | None = None) -> None:
    """Quiet the first TensorFlow/Keras import made by edgel3 (see the module's description).

    Cheap and idempotent: nothing is imported. Without effect once TensorFlow is
    imported. The command line calls it with ``enabled=False`` for ``--debug``.

    Parameters
    ----------
    enabled : bool, optional
        True to quiet, False to stop quieting (for the rest of the process, until
        called with True again); None (default) keeps the current choice (on,
        unless turned off) and installs the import hook if it is on.
    """
    if enabled is not None:
        _state["enabled"] = bool(enabled)
    _uninstall()
    if _state["enabled"] and not _WATCHED & set(sys.modules):
        sys.meta_path.insert(0, _FINDER)


def is_quiet() -> bool:
    """Whether the next TensorFlow/Keras import by edgel3 will be quieted."""
    return _FINDER in sys.meta_path
