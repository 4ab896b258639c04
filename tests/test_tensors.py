"""Tensors in: edgel3.tensors.as_array, and every entry taking signals through it.

Plain Python doubles stand for the protocols (an object exposing only ``__dlpack__``, one
exposing only ``__array_interface__``, one "on a GPU"); TensorFlow tensors are tested
always (TensorFlow is a dependency), PyTorch tensors where torch is importable.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgel3
from edgel3 import frontend, hear
from edgel3.exceptions import AudioError, EdgeL3Warning
from edgel3.resample import resample_legacy
from edgel3.tensors import as_array

from .conftest import assert_close


class DLPackOnly:
    """Exposes only ``__dlpack__`` (no ``__dlpack_device__``, no array protocol)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)


class InterfaceOnly:
    """Exposes only ``__array_interface__``."""

    def __init__(self, array):
        self._array = array  # keeps the memory alive
        self.__array_interface__ = array.__array_interface__


class OnGPU:
    """A tensor on a CUDA device: exporting it must not even be tried; ``cpu()`` moves it."""

    def __init__(self, array):
        self._array = array

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kwargs):
        raise AssertionError("a device tensor was exported")

    def cpu(self):
        return InterfaceOnly(self._array)


class NeedsGrad:
    """Like a PyTorch tensor that requires grad: its protocols refuse until detached."""

    requires_grad = True

    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad.")

    def detach(self):
        return InterfaceOnly(self._array)


class BrokenConverter:
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Got unsupported ScalarType BFloat16")


@pytest.fixture(scope="module")
def signal():
    return np.random.default_rng(5).uniform(-1, 1, 12000).astype(np.float32)


@pytest.fixture(scope="module")
def expected(signal):
    return edgel3.get_embedding(signal, 8000, model="tiny", hop_size=0.25, verbose=0)


def embed(audio, sr=8000):
    return edgel3.get_embedding(audio, sr, model="tiny", hop_size=0.25, verbose=0)


# --------------------------------------------------------------------------- as_array


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int16, np.int32, np.uint8]),
        shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
    )
)
def test_protocol_doubles_are_read_without_copy(array):
    for wrapped in (DLPackOnly(array), InterfaceOnly(array)):
        found = as_array(wrapped)
        assert found.dtype == array.dtype and found.shape == array.shape
        np.testing.assert_array_equal(found, array)
        assert np.shares_memory(found, array)


def test_numpy_and_lists_unchanged():
    array = np.zeros(4)
    assert as_array(array) is array
    np.testing.assert_array_equal(as_array([1, 2]), [1, 2])
    np.testing.assert_array_equal(as_array(bytearray(b"\x01\x02")), [1, 2])


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (
            OnGPU(np.zeros(3)),
            r"CUDA GPU device \(id 0\).*move it to the CPU first: tensor\.cpu",
        ),
        (BrokenConverter(), "Cannot convert audio .* BFloat16"),
        (object(), "must be a NumPy array, a list of numbers or a tensor"),
        ({"samples": [0.1]}, "got dict"),
        ([[0.1, 0.2], [0.3]], "cannot be read as an array"),
    ],
)
def test_refused(audio, message):
    with pytest.raises(AudioError, match=message):
        as_array(audio)


def test_device_tensor_copied_only_when_asked():
    array = np.arange(4.0)
    np.testing.assert_array_equal(as_array(OnGPU(array), from_device=True), array)


def test_requires_grad_is_detached():
    array = np.arange(3.0)
    assert np.shares_memory(as_array(NeedsGrad(array)), array)


# --------------------------------------------------------------------------- entries


@pytest.mark.parametrize("wrap", [DLPackOnly, InterfaceOnly], ids=["dlpack", "interface"])
def test_get_embedding_protocol_doubles(wrap, signal, expected):
    embedding, stamps = embed(wrap(signal))
    assert_close(embedding, expected[0])
    np.testing.assert_array_equal(stamps, expected[1])


@pytest.mark.parametrize(
    ("audio", "message"),
    [(OnGPU(np.zeros(9000)), r"tensor\.cpu\(\)"), (object(), "got object")],
)
def test_get_embedding_refuses(audio, message):
    with pytest.raises(AudioError, match=message):
        embed(audio)
    with pytest.raises(AudioError, match=message):
        embed([np.full(9000, 0.1), audio])  # in a list too


def test_hear_copies_device_tensors():
    model = hear.load_model("tiny")
    audio = np.random.default_rng(0).uniform(-1, 1, (2, 16000))
    on_gpu, _ = hear.get_timestamp_embeddings(OnGPU(audio), model)
    on_cpu, _ = hear.get_timestamp_embeddings(audio, model)
    assert_close(on_gpu, on_cpu)


def test_tensorflow(signal, expected):
    tf = pytest.importorskip("tensorflow")
    tensor = tf.constant(signal)
    assert np.shares_memory(as_array(tensor), np.from_dlpack(tensor))  # the tensor's buffer
    embedding, stamps = embed(tensor)
    assert_close(embedding, expected[0])
    np.testing.assert_array_equal(stamps, expected[1])
    embeddings, _ = embed([tensor, tf.constant(signal[:9000])])
    assert isinstance(embeddings, list) and len(embeddings) == 2
    assert_close(embeddings[0], expected[0])
    assert_close(embeddings[1], embed(signal[:9000])[0])
    stereo = tf.stack([tensor, tensor], axis=1)  # (n, 2): averaged to the same signal
    assert_close(embed(stereo)[0], expected[0])
    # The resamplers and the framer take tensors too (edgel3.checks.as_mono).
    np.testing.assert_array_equal(
        resample_legacy(tensor, 8000, 16000), resample_legacy(signal, 8000, 16000)
    )
    np.testing.assert_array_equal(
        frontend.frame_audio(tensor, 8000, hop_size=0.5, center=True),
        frontend.frame_audio(signal, 8000, hop_size=0.5, center=True),
    )


def test_tensorflow_strings_refused():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(AudioError, match="numeric"):
        embed(tf.constant(["a", "b"]))


def test_torch(signal, expected):
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(signal.copy())
    assert np.shares_memory(as_array(tensor), np.from_dlpack(tensor))  # the tensor's buffer
    assert_close(embed(tensor)[0], expected[0])
    embeddings, _ = embed([tensor, tensor[:9000]])
    assert_close(embeddings[0], expected[0])
    assert_close(embeddings[1], embed(signal[:9000])[0])
    assert_close(embed(torch.stack([tensor, tensor], dim=1))[0], expected[0])


def test_torch_requires_grad(signal, expected):
    torch = pytest.importorskip("torch")
    tensor = torch.tensor(signal, requires_grad=True)
    assert_close(embed(tensor)[0], expected[0])
    assert tensor.requires_grad and tensor.grad is None  # the caller's tensor is untouched


def test_torch_unsupported_dtype():
    torch = pytest.importorskip("torch")
    with pytest.raises(AudioError, match=r"Cannot convert audio \(torch.Tensor\)"):
        embed(torch.zeros(9000, dtype=torch.bfloat16))


def test_torch_gpu_tensor_refused():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with pytest.raises(AudioError, match=r"tensor\.cpu\(\)"), warnings.catch_warnings():
        warnings.simplefilter("ignore", EdgeL3Warning)
        embed(torch.zeros(9000, device="cuda"))
