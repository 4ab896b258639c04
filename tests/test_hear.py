"""edgel3.hear: the HEAR 2021 common API, checked as hear-validator checks it (without its deps).

The validator (hearvalidator 2021.0.2) loads the model, requires a ``tf.Module`` with
``sample_rate`` in {16000, 22050, 44100, 48000} and int embedding sizes, then embeds
TensorFlow batches of white noise in [-1, 1]: float32 embeddings ``(n_sounds, T, D)``,
timestamps ``(n_sounds, T)`` evenly spaced within 1e-3 ms (a warning above 50 ms), scene
embeddings ``(n_sounds, D_scene)``. These tests check the same contract, plus what the
validator cannot see: the timestamps are window centres, the embeddings are
``edgel3.get_embedding``'s for the same audio, the scene pooling is the documented mean.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgel3
from edgel3 import frontend, hear
from edgel3.bundled import TINY_PATH
from edgel3.checks import ZEROS_WARNING
from edgel3.exceptions import AudioError, EdgeL3Warning, ParameterError
from edgel3.reference import resolve_model
from edgel3.resample import resample_legacy, resampled_length

from .conftest import SEA64_GZ, WEIGHTS_DIR, ModelResolved, assert_close

#: The validator's evenness tolerance between adjacent timestamps (ms).
VALIDATOR_SPACING_TOLERANCE = 1e-3

MODELS = ["tiny", pytest.param("sea-64", marks=pytest.mark.shared)]


@pytest.fixture(params=MODELS)
def model(request, monkeypatch):
    """A HEAR model for each name (SEA-64 from ../shared/weights, read in place)."""
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(WEIGHTS_DIR))
    return hear.load_model(request.param)


@pytest.fixture(scope="module")
def tiny():
    return hear.load_model("tiny")


def noise(n_sounds, n_samples, seed=0, dtype=np.float32):
    """White noise in [-1, 1], as the validator makes it."""
    return np.random.default_rng(seed).uniform(-1, 1, (n_sounds, n_samples)).astype(dtype)


def direct(audio, model):
    """edgel3.get_embedding's embeddings and timestamps (ms) of each sound."""
    embeddings, stamps = edgel3.get_embedding(
        list(audio),
        model.sample_rate,
        model=model.reference,
        center=True,
        hop_size=model.hop_size,
        verbose=0,
    )
    return embeddings, [1000 * ts for ts in stamps]


# --------------------------------------------------------------------------- the model


def test_model_attributes(model):
    tf = pytest.importorskip("tensorflow")
    reference = resolve_model(model.reference.source)
    assert isinstance(model, tf.Module)  # the validator's first check
    assert model.sample_rate in hear.HEAR_SAMPLE_RATES
    assert model.sample_rate >= model.model_sample_rate == reference.sample_rate
    assert type(model.timestamp_embedding_size) is int
    assert type(model.scene_embedding_size) is int
    assert model.timestamp_embedding_size == reference.embedding_size
    assert model.scene_embedding_size == model.timestamp_embedding_size  # mean pooling
    assert model.hop_size == hear.DEFAULT_HOP_SIZE
    # 50 ms: the validator warns above it (HEAR's onset tolerance)
    assert model.timestamp_interval <= 50.0


@pytest.mark.parametrize(
    ("model_rate", "hear_rate"),
    [(8000, 16000), (48000, 48000), (16000, 16000), (16001, 22050), (22050, 22050), (96000, 48000)],
)
def test_hear_rate(model_rate, hear_rate):
    # The lowest HEAR rate at or above the model's (SEA, tiny: 8 kHz; sparse L3: 48 kHz).
    assert hear._hear_rate(model_rate) == hear_rate


def test_import_is_light():
    script = "import sys, edgel3.hear; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "False"]


def test_without_tensorflow_the_model_is_plain(monkeypatch):
    # A TensorFlow-free install (the NumPy runtime on a small board) still gets the API.
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    hear._model_class.cache_clear()
    try:
        model = hear.load_model("tiny")
        assert type(model) is hear.HearModel
        embeddings, stamps = hear.get_timestamp_embeddings(noise(1, 16000), model)
        # 1 s at 8 kHz, centred, 400-sample hop: 1 + ceil((8000 + 4000 - 8000) / 400) = 11
        assert embeddings.shape == (1, 11, 64) and stamps.shape == (1, 11)
    finally:
        hear._model_class.cache_clear()


def test_load_by_path():
    by_path = hear.load_model(TINY_PATH)
    assert by_path.reference.model_id == hear.load_model("tiny").reference.model_id


@pytest.mark.shared
def test_load_official_file_path():
    model = hear.load_model(str(SEA64_GZ))
    assert (model.sample_rate, model.timestamp_embedding_size) == (16000, 64)


@pytest.mark.parametrize("argument", [(), (None,), ("",)])
def test_default_model_is_get_embeddings(argument, resolved_models, monkeypatch):
    # load_model() and load_model("") (what HEAR tools pass without --model) load the model
    # edgel3.get_embedding uses by default. Nothing is downloaded: located() is a no-op here.
    from edgel3.reference import ModelReference

    monkeypatch.setattr(ModelReference, "located", lambda self: self)
    with pytest.raises(ModelResolved):
        hear.load_model(*argument)
    assert resolved_models == [resolve_model().source]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(hop_size=0), "hop_size must be a positive number"),
        (dict(hop_size=1e-5), "shorter than one sample"),
        (dict(sample_rate=8000), "sample_rate must be one of"),
        (dict(sample_rate=16000.5), "sample_rate must be one of"),
    ],
)
def test_load_model_errors(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        hear.load_model("tiny", **kwargs)


def test_hop_and_rate_keywords():
    model = hear.load_model("tiny", hop_size=0.025, sample_rate=22050)
    audio = noise(2, 22050)
    embeddings, stamps = hear.get_timestamp_embeddings(audio, model)
    expected, expected_ms = direct(audio, model)
    assert_close(embeddings, np.stack(expected))
    np.testing.assert_allclose(np.diff(stamps, axis=1), 25.0, atol=1e-9)
    np.testing.assert_allclose(stamps, np.stack(expected_ms), atol=1e-9)


# --------------------------------------------------------------------------- embeddings


def test_timestamp_embeddings_tf_in_tf_out(model):
    tf = pytest.importorskip("tensorflow")
    audio = tf.random.uniform((3, int(1.5 * model.sample_rate)), seed=1) * 2 - 1
    embeddings, stamps = hear.get_timestamp_embeddings(audio, model)
    assert tf.is_tensor(embeddings) and tf.is_tensor(stamps)
    assert embeddings.dtype == tf.float32
    n_timestamps = embeddings.shape[1]
    assert embeddings.shape == (3, n_timestamps, model.timestamp_embedding_size)
    assert stamps.shape == (3, n_timestamps)
    spacing = np.diff(stamps.numpy(), axis=1)
    assert np.all(np.abs(spacing - spacing.mean()) < VALIDATOR_SPACING_TOLERANCE)
    # Window centres: get_embedding(center=True)'s timestamps, in ms, for the same audio;
    # and the same embeddings (two batchings of one runtime: the project's tolerance).
    expected, expected_ms = direct(audio.numpy(), model)
    assert_close(embeddings.numpy(), np.stack(expected))
    np.testing.assert_allclose(stamps.numpy(), np.stack(expected_ms), atol=1e-9)


def test_resampled_inside_with_the_exact_resampler(tiny):
    # HEAR-rate audio embeds like edgel3 on the legacy-resampled signal at the model's rate.
    audio = noise(2, 24000, seed=2)
    embeddings, _ = hear.get_timestamp_embeddings(audio, tiny)
    for row, found in zip(audio, embeddings):
        at_model_rate = resample_legacy(row, tiny.sample_rate, tiny.model_sample_rate)
        expected, _ = edgel3.get_embedding(
            at_model_rate, tiny.model_sample_rate, model="tiny", hop_size=0.05, verbose=0
        )
        assert_close(found, expected)


def test_scene_is_mean_of_timestamp_embeddings(model):
    audio = noise(4, int(3.74 * model.sample_rate), seed=3)  # the validator's length
    scene = hear.get_scene_embeddings(audio, model)
    embeddings, _ = hear.get_timestamp_embeddings(audio, model)
    assert isinstance(scene, np.ndarray) and scene.dtype == np.float32  # NumPy in, NumPy out
    assert scene.shape == (4, model.scene_embedding_size)
    assert_close(scene, embeddings.mean(axis=1))


@settings(max_examples=12, deadline=None)
@given(
    n_sounds=st.integers(1, 3),
    n_samples=st.integers(2, 40000),  # 2 samples at 16 kHz: one sample at 8 kHz
    seed=st.integers(0, 2**32 - 1),
)
def test_any_length_gives_evenly_spaced_window_centres(tiny, n_sounds, n_samples, seed):
    audio = noise(n_sounds, n_samples, seed=seed, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # short sounds are padded without a warning
        embeddings, stamps = hear.get_timestamp_embeddings(audio, tiny)
    n_timestamps = embeddings.shape[1]
    assert embeddings.shape == (n_sounds, n_timestamps, tiny.timestamp_embedding_size)
    assert embeddings.dtype == np.float32 and np.all(np.isfinite(embeddings))
    assert stamps.shape == (n_sounds, n_timestamps)
    np.testing.assert_allclose(stamps[:, 0], 0.0)
    np.testing.assert_allclose(np.diff(stamps, axis=1), tiny.timestamp_interval, atol=1e-9)
    # The windows reach the end: the last centre is at most one hop before the last half window.
    duration_ms = 1000 * resampled_length(n_samples, tiny.sample_rate, 8000) / 8000
    assert n_timestamps == 1 + math.ceil(max(duration_ms - 500, 0) / tiny.timestamp_interval - 1e-9)
    assert n_timestamps == frontend.n_windows(
        resampled_length(n_samples, tiny.sample_rate, 8000), 8000, tiny.hop_length, True
    )


def test_short_audio_is_one_window(tiny):
    audio = noise(2, 1600)  # 0.1 s
    embeddings, stamps = hear.get_timestamp_embeddings(audio, tiny)
    assert embeddings.shape == (2, 1, 64)
    np.testing.assert_array_equal(stamps, [[0.0], [0.0]])
    assert hear.get_scene_embeddings(audio, tiny).shape == (2, 64)


def test_silent_sound_warns(tiny):
    audio = noise(2, 16000)
    audio[1] = 0
    with pytest.warns(EdgeL3Warning, match=ZEROS_WARNING):
        embeddings, _ = hear.get_timestamp_embeddings(audio, tiny)
    assert embeddings.shape[0] == 2


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, 0), np.float32), r"no samples \(shape \(2, 0\)\)"),
        (np.zeros((0, 16000), np.float32), "no sounds"),
        (np.zeros(16000, np.float32), r"pass audio\[None\]"),
        (
            np.zeros((1, 2, 16000), np.float32),
            r"\(n_sounds, n_samples\); got shape \(1, 2, 16000\)",
        ),
        (np.full((1, 100), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((1, 1), np.float32), "too short"),  # one sample at 16 kHz: none at 8 kHz
        (object(), "must be a NumPy array, a list of numbers or a tensor"),
    ],
)
def test_bad_audio(tiny, audio, message):
    with pytest.raises(AudioError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", EdgeL3Warning)
        hear.get_timestamp_embeddings(audio, tiny)


def test_model_argument_checked(tiny):
    with pytest.raises(ParameterError, match="audio first, then the model"):
        hear.get_scene_embeddings(tiny, noise(1, 16000))


def test_torch_in_torch_out(tiny):
    torch = pytest.importorskip("torch")
    audio = torch.rand((2, 16000), generator=torch.Generator().manual_seed(0)) * 2 - 1
    embeddings, stamps = hear.get_timestamp_embeddings(audio, tiny)
    scene = hear.get_scene_embeddings(audio, tiny)
    assert all(isinstance(x, torch.Tensor) for x in (embeddings, stamps, scene))
    assert embeddings.dtype == torch.float32 and scene.dtype == torch.float32
    expected, _ = direct(audio.numpy(), tiny)
    assert_close(embeddings.numpy(), np.stack(expected))
