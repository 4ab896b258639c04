"""The tflite-micro interpreter: its own memory figures and outputs for a ``.tflite`` file.

The ``tflite-micro`` Python package (``pip install "edgel3[micro]"``) wraps
LiteRT-Micro's C++ interpreter (the reference kernels, x86 build).
:func:`micro_allocations` reads the arena report of its recording allocator,
the figures a microcontroller build allocates for the same model:

``head``
    the non-persistent part: every activation buffer (and kernel scratch
    buffer) laid out by the greedy memory planner. edgel3's planner figure
    (:func:`edgel3.export.schedule.arena_size`) is this number.
``tail``
    the persistent part, allocated once at start-up: per-tensor and per-node
    bookkeeping, the input/output tensor structs and their quantization
    parameters, and the kernels' persistent buffers (``persistent``).
``persistent``
    of the tail, the kernels' persistent buffers (``'Persistent buffer
    data'``: per-channel output multipliers and shifts, op data).
``total``
    ``head + tail``: the smallest ``arena_size`` the interpreter accepts, the
    figure to hold against a device's RAM.

:func:`run_micro` runs int8 (or float32) inputs through the same interpreter.
The package is imported only inside these functions.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..exceptions import EdgeL3Error, ParameterError

__all__ = [
    "INSTALL_HINT",
    "MicroUnavailableError",
    "MicroRuntimeError",
    "micro_available",
    "micro_allocations",
    "run_micro",
]

INSTALL_HINT = 'pip install "edgel3[micro]"'
#: Largest arena tried (bytes): the float32 L3 network needs 26 MB.
MAX_ARENA = 1 << 31
_MEMORY_SHORTAGE = ("Failed to resize buffer", "Failed to allocate", "missing:")
# One redirection of the process's stderr at a time (the interpreter prints from C).
_STDERR_LOCK = threading.Lock()


class MicroUnavailableError(EdgeL3Error, ImportError):
    """The ``tflite-micro`` package is not installed."""


class MicroRuntimeError(EdgeL3Error, RuntimeError):
    """The tflite-micro interpreter cannot run a model (an op it has no kernel for...)."""


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError as exc:
        raise MicroUnavailableError(
            "The tflite-micro interpreter is not installed; the figures it gives (arena head, "
            f"tail, persistent buffers) need it: {INSTALL_HINT}."
        ) from exc
    return runtime


def micro_available() -> bool:
    """Whether the ``tflite-micro`` package can be imported."""
    try:
        _runtime()
    except MicroUnavailableError:
        return False
    return True


def _content(model) -> bytes:
    """A flatbuffer from bytes or a ``.tflite`` path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            return path.read_bytes()
        except OSError as exc:
            from ..exceptions import WeightsError

            raise WeightsError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    raise ParameterError(
        f"Expected a .tflite path or flatbuffer bytes; got a {type(model).__name__}."
    )


class _CapturedStderr:
    """Redirect file descriptor 2 (where the C++ interpreter prints) into a temporary file."""

    def __enter__(self):
        _STDERR_LOCK.acquire()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def text(self) -> str:
        self._file.flush()
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def __exit__(self, *exc):
        try:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._file.close()
        finally:
            _STDERR_LOCK.release()
        return False


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if "failed to prepare" in line or "was not true" in line]
    return "; ".join(useful or lines[-2:]).rstrip(".") or "no message"


def _interpreter(content: bytes, arena_size: int | None):
    """An interpreter with a large enough arena: grow it until AllocateTensors succeeds."""
    runtime = _runtime()
    size = arena_size or max(64 * 1024, 2 * len(content))
    while True:
        with _CapturedStderr() as captured:
            try:
                return runtime.Interpreter.from_bytes(content, arena_size=size), size
            except (RuntimeError, ValueError) as exc:
                message = captured.text() or str(exc)
        short = any(marker in message for marker in _MEMORY_SHORTAGE)
        if short and arena_size is not None:
            raise MicroRuntimeError(
                f"arena_size={arena_size} is too small for this model: {_first_error(message)}."
            )
        if not short or size >= MAX_ARENA:
            raise MicroRuntimeError(
                f"The tflite-micro interpreter cannot run this model: {_first_error(message)}."
            )
        size *= 2


_ARENA = re.compile(r"Arena allocation (head|tail|total) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes")


def micro_allocations(model, *, arena_size: int | None = None) -> dict:
    """The arena the tflite-micro interpreter allocates for a model, from its own report.

    Parameters
    ----------
    model : path-like or bytes
        A ``.tflite`` file or its flatbuffer.
    arena_size : int, optional
        The arena to give the interpreter (bytes). By default it starts from
        twice the file size and doubles until the interpreter can allocate
        every tensor; the figures do not depend on it.

    Returns
    -------
    dict
        ``head``, ``tail``, ``persistent``, ``total`` (bytes, see the module
        notes), ``categories`` (the tail's parts as the interpreter names
        them, bytes), ``source`` (``'tflite-micro'``) and ``version`` (of
        the package).

    Raises
    ------
    MicroUnavailableError
        If ``tflite-micro`` is not installed (an ``ImportError``).
    MicroRuntimeError
        If the interpreter refuses the model (float16 weights, an in-graph
        RFFT, ...), or ``arena_size`` is too small.
    ParameterError, WeightsError
        For something that is not a flatbuffer or a readable file.

    Examples
    --------
    >>> figures = micro_allocations('tiny_int8.tflite')     # doctest: +SKIP
    >>> figures['total'] == figures['head'] + figures['tail']  # doctest: +SKIP
    True
    """
    content = _content(model)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ParameterError("Not a LiteRT/TFLite flatbuffer (no 'TFL3' identifier).")
    interpreter, _ = _interpreter(content, arena_size)
    with _CapturedStderr() as captured:
        interpreter.print_allocations()
        text = captured.text()
    figures = {name: int(value) for name, value in _ARENA.findall(text)}
    if set(figures) != {"head", "tail", "total"}:
        raise MicroRuntimeError(f"Unexpected allocation report from tflite-micro: {text[:200]!r}")
    categories = {name: int(value) for name, value in _CATEGORY.findall(text)}
    from tflite_micro import __version__

    return {
        "head": figures["head"],
        "tail": figures["tail"],
        "persistent": categories.get("Persistent buffer data", 0),
        "total": figures["total"],
        "categories": categories,
        "source": "tflite-micro",
        "version": str(__version__),
    }


def run_micro(model, inputs: np.ndarray) -> np.ndarray:
    """Run inputs through the tflite-micro interpreter, one at a time.

    Parameters
    ----------
    model : path-like or bytes
        A ``.tflite`` file or its flatbuffer with one input and one output.
    inputs : np.ndarray [shape=(n, *input_shape[1:])]
        Values in the model's input dtype (int8 codes for an int8 export:
        quantize with the input's scale and zero point first, e.g.
        :func:`edgel3.export.micro_frontend.quantize_patches`).

    Returns
    -------
    np.ndarray [shape=(n, *output_shape[1:])]
        The raw outputs, in the model's output dtype.

    Raises
    ------
    MicroUnavailableError
        If ``tflite-micro`` is not installed.
    MicroRuntimeError
        If the interpreter refuses the model.
    ParameterError
        If the inputs have the wrong dtype or shape.
    """
    content = _content(model)
    interpreter, _ = _interpreter(content, None)
    detail = interpreter.get_input_details(0)
    shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
    inputs = np.asarray(inputs)
    if inputs.dtype != dtype or inputs.shape[1:] != shape[1:]:
        raise ParameterError(
            f"inputs must be {dtype} of shape (n, {', '.join(map(str, shape[1:]))}); got "
            f"{inputs.dtype} of shape {inputs.shape}."
        )
    outputs = []
    for item in inputs:
        interpreter.set_input(np.ascontiguousarray(item[None]), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    return np.stack(outputs) if outputs else np.zeros((0,), dtype)
