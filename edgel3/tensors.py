"""Audio from tensors: the one conversion of every signal edgel3 accepts to a NumPy array.

:func:`as_array` is called wherever audio enters the library
(:func:`edgel3.checks.check_audio`, hence ``get_embedding`` and every path
that embeds arrays; :func:`edgel3.checks.as_mono`, hence the resamplers and
the framer; :mod:`edgel3.hear`). Besides NumPy arrays, lists and numbers it
accepts any object exposing DLPack (``__dlpack__``: PyTorch, TensorFlow, JAX,
CuPy...) or the NumPy array protocol (``__array__``,
``__array_interface__``, ``__array_struct__``):

* the array protocol first, where the object has it (PyTorch and TensorFlow
  tensors on the CPU give an array sharing their memory: no copy), DLPack
  (:func:`numpy.from_dlpack`, also without a copy) for objects exposing only
  ``__dlpack__`` or whose array protocol refuses them. (TensorFlow aborts the
  process when a string tensor is exported through DLPack, so DLPack is not
  tried first.)
* a PyTorch tensor that requires grad is detached (same memory, no copy):
  edgel3 computes embeddings in NumPy, so no gradient could flow back
  through them anyway;
* a tensor on an accelerator (its ``__dlpack_device__`` is not the CPU) is an
  :class:`~edgel3.exceptions.AudioError` telling you to move it to the CPU
  (``tensor.cpu()``): edgel3 does not copy device memory behind your back.
  :mod:`edgel3.hear`, whose harness hands over tensors on any device, passes
  ``from_device=True`` and copies them;
* any other object is an :class:`~edgel3.exceptions.AudioError` naming its type.

Nothing here imports more than NumPy; no tensor library is imported.
"""

from __future__ import annotations

import numbers

import numpy as np

from .exceptions import AudioError

__all__ = ["as_array", "DLPACK_CPU"]

#: DLPack's device type of host memory (``kDLCPU`` in dlpack.h).
DLPACK_CPU = 1
#: DLPack device types (dlpack.h ``DLDeviceType``), for messages.
_DEVICE_NAMES = {
    2: "CUDA GPU",
    3: "CUDA host (pinned)",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm GPU",
    11: "ROCm host",
    13: "CUDA managed",
    14: "oneAPI",
    15: "WebGPU",
    16: "Hexagon",
    17: "MAIA",
}
_PROTOCOLS = ("__array__", "__array_interface__", "__array_struct__")


def _device(tensor):
    """``(device_type, device_id)`` from ``__dlpack_device__``, or None when not told."""
    method = getattr(tensor, "__dlpack_device__", None)
    if not callable(method):
        return None
    try:
        kind, index = method()
        return int(kind), int(index)
    except Exception:  # a broken or exotic implementation: decided by the conversion itself
        return None


def _is_buffer(value) -> bool:
    """Whether ``value`` exposes the buffer protocol (``bytearray``, ``array.array``...)."""
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


def _kind(tensor) -> str:
    """``'torch.Tensor'``-like name of an object's type, for messages."""
    module = type(tensor).__module__.split(".")[0]
    return f"{module}.{type(tensor).__name__}" if module != "builtins" else type(tensor).__name__


def as_array(audio, label: str = "audio", *, from_device: bool = False) -> np.ndarray:
    """``audio`` as a NumPy array, sharing a tensor's memory where possible.

    Parameters
    ----------
    audio : np.ndarray, list, number or tensor
        A NumPy array (returned as is); a list, tuple or number
        (``np.asarray``); or any object exposing DLPack (``__dlpack__``) or
        the array protocol (``__array__``, ``__array_interface__``): PyTorch,
        TensorFlow and JAX tensors on the CPU. A PyTorch tensor that requires
        grad is detached (no copy).
    label : str
        How to name ``audio`` in messages (``'audio[3]'``).
    from_device : bool
        Copy a tensor on an accelerator to the host (``tensor.cpu()`` where the
        tensor has it, else its array protocol) instead of raising.

    Returns
    -------
    np.ndarray
        Any shape and dtype (checked by the caller, e.g.
        :func:`edgel3.checks.check_audio`); possibly read-only (TensorFlow) and
        sharing memory with ``audio``: edgel3 never writes to it.

    Raises
    ------
    AudioError
        A tensor on an accelerator ("move it to the CPU first: tensor.cpu()"),
        one neither DLPack nor the array protocol can convert (e.g. a dtype
        NumPy lacks, such as ``bfloat16``), or an unsupported object.

    Examples
    --------
    >>> as_array([0.5, -0.5])
    array([ 0.5, -0.5])
    >>> class Buffer:  # anything exposing the array interface is accepted
    ...     def __init__(self, array):
    ...         self.__array_interface__ = array.__array_interface__
    >>> as_array(Buffer(np.zeros(3, np.float32))).dtype
    dtype('float32')
    >>> as_array(object())
    Traceback (most recent call last):
    ...
    edgel3.exceptions.AudioError: audio must be a NumPy array, a list of numbers or a tensor ...
    """
    if isinstance(audio, np.ndarray):
        return audio
    if getattr(audio, "requires_grad", False) is True and callable(getattr(audio, "detach", None)):
        audio = audio.detach()  # PyTorch: same memory, outside the graph
    device = _device(audio)
    if device is not None and device[0] != DLPACK_CPU:
        name = _DEVICE_NAMES.get(device[0], f"device type {device[0]}")
        if not from_device:
            raise AudioError(
                f"{label} is a {_kind(audio)} on a {name} device (id {device[1]}); edgel3 runs "
                f"on the CPU: move it to the CPU first: tensor.cpu() (PyTorch), "
                "np.asarray(tensor) (TensorFlow, JAX)."
            )
        mover = getattr(audio, "cpu", None)  # PyTorch; TensorFlow and JAX copy in __array__
        audio = mover() if callable(mover) else audio
    failure = None
    # Tensor libraries raise their own error types (TensorFlow's OpError, ...): any
    # failure of their converters becomes one AudioError naming the object.
    if any(hasattr(audio, name) for name in _PROTOCOLS):
        try:
            return np.asarray(audio)
        except Exception as exc:  # noqa: BLE001 - re-raised below with the object named
            failure = exc
    if callable(getattr(audio, "__dlpack__", None)):
        try:
            return np.from_dlpack(audio)
        except Exception as exc:  # noqa: BLE001
            failure = exc
    if failure is not None:
        raise AudioError(
            f"Cannot convert {label} ({_kind(audio)}) to a NumPy array: {failure} Convert it "
            "to a float32 or float64 array on the CPU first (tensor.float() for PyTorch)."
        ) from failure
    if isinstance(audio, (list, tuple, numbers.Number, str, bytes)) or _is_buffer(audio):
        try:
            return np.asarray(audio)
        except ValueError as exc:  # ragged nested lists
            raise AudioError(f"{label} cannot be read as an array: {exc}") from exc
    raise AudioError(
        f"{label} must be a NumPy array, a list of numbers or a tensor exposing DLPack or the "
        f"array protocol (PyTorch, TensorFlow, JAX on the CPU); got {_kind(audio)}."
    )
