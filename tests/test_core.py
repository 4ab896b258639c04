"""get_embedding's API: validation, warnings, model resolution, batching, files."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import edgel3
from edgel3 import core, loading
from edgel3.exceptions import (
    AudioError,
    EdgeL3Error,
    EdgeL3Warning,
    OutputError,
    ParameterError,
    WeightsError,
)

from .conftest import SEA64_GZ


@pytest.fixture(scope="module")
def sea64():
    return core.load_model_file(SEA64_GZ)


@pytest.fixture
def noise(rng):
    return rng.normal(scale=0.1, size=8000 * 2)


def test_signature_keeps_0_2_1_order_and_defaults():
    params = inspect.signature(edgel3.get_embedding).parameters
    legacy = [
        "audio",
        "sr",
        "model",
        "model_type",
        "emb_dim",
        "retrain_type",
        "sparsity",
        "center",
        "hop_size",
        "verbose",
    ]
    assert list(params)[: len(legacy)] == legacy
    defaults = {name: params[name].default for name in legacy[2:]}
    assert defaults == dict(
        model=None,
        model_type="sparse",
        emb_dim=128,
        retrain_type="ft",
        sparsity=95.45,
        center=True,
        hop_size=0.1,
        verbose=1,
    )
    assert params["batch_size"].kind is inspect.Parameter.KEYWORD_ONLY


def test_process_file_defaults_match_get_embedding():
    """python-soundfile's rule: twin functions' defaults must not drift."""
    ours = inspect.signature(edgel3.process_file).parameters
    theirs = inspect.signature(edgel3.get_embedding).parameters
    for name in (
        "model",
        "model_type",
        "emb_dim",
        "retrain_type",
        "sparsity",
        "center",
        "hop_size",
        "batch_size",
    ):
        assert ours[name].default == theirs[name].default, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(model_type="big"), "Invalid model type 'big'"),
        (dict(retrain_type="xx"), "Invalid retrain type 'xx'"),
        (dict(sparsity=50.0), "Invalid sparsity value 50.0"),
        (dict(emb_dim=100), "Invalid embedding dimension 100"),
        (dict(hop_size=-1), "Invalid hop size -1"),
        (dict(hop_size=0.00001), "hop_size"),
        (dict(verbose=2), "Invalid verbosity level 2"),
        (dict(center="yes"), "Invalid center value 'yes'"),
        (dict(batch_size=0), "batch_size must be a positive integer; got batch_size=0"),
        (dict(model="no-such-model"), "neither an existing file nor a model name"),
        (dict(model=3.5), "model must be None"),
    ],
)
@pytest.mark.shared
def test_invalid_options(kwargs, message, sea64, noise):
    kwargs.setdefault("model", sea64)
    with pytest.raises(ParameterError, match=message):
        edgel3.get_embedding(noise, 8000, verbose=kwargs.pop("verbose", 0), **kwargs)


@pytest.mark.shared
@pytest.mark.parametrize("sr", [0, -8000, 8000.5, "8000", True])
def test_invalid_sample_rate(sr, sea64, noise):
    with pytest.raises(ParameterError, match="Invalid sample rate"):
        edgel3.get_embedding(noise, sr, model=sea64, verbose=0)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0), "Got empty audio"),
        (np.zeros((10, 2, 2)), "only be 1D or 2D"),
        (np.array(["a", "b"]), "numeric array"),
        (np.array([0.1, np.nan, 0.2] * 100), "100 NaN or infinite"),
        (np.array([0.1, np.inf] * 7), "7 NaN or infinite"),
    ],
)
@pytest.mark.shared
def test_bad_audio(audio, message, sea64):
    with pytest.raises(AudioError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", EdgeL3Warning)
        edgel3.get_embedding(audio, 8000, model=sea64, verbose=0)


@pytest.mark.shared
def test_too_short_to_resample(sea64):
    # 5 samples at 48 kHz give int(5 / 6) = 0 samples at 8 kHz.
    with pytest.raises(AudioError, match="too short"), warnings.catch_warnings():
        warnings.simplefilter("ignore", EdgeL3Warning)
        edgel3.get_embedding(np.ones(5), 48000, model=sea64, verbose=0)


def test_errors_are_catchable_as_builtins():
    assert issubclass(ParameterError, ValueError) and issubclass(AudioError, ValueError)
    assert issubclass(WeightsError, OSError) and issubclass(OutputError, OSError)
    assert all(issubclass(e, EdgeL3Error) for e in (ParameterError, AudioError, WeightsError))


@pytest.mark.shared
def test_warnings(sea64):
    with pytest.warns(EdgeL3Warning, match="all zeros"):
        edgel3.get_embedding(np.zeros(8000), 8000, model=sea64, verbose=0)
    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        edgel3.get_embedding(np.ones(100), 8000, model=sea64, verbose=0)


@pytest.mark.shared
def test_input_is_not_mutated_and_dtypes_accepted(sea64, noise):
    stereo = np.stack([noise, noise * 0.5], axis=1)
    before = stereo.copy()
    emb64, _ = edgel3.get_embedding(stereo, 8000, model=sea64, verbose=0)
    emb32, _ = edgel3.get_embedding(stereo.astype(np.float32), 8000, model=sea64, verbose=0)
    np.testing.assert_array_equal(stereo, before)
    # float32 input differs from float64 only by input rounding (relative 6e-8 of the signal).
    np.testing.assert_allclose(emb32, emb64, rtol=0, atol=1e-3)
    ints = (noise * 10000).astype(np.int16)
    emb_int, _ = edgel3.get_embedding(ints, 8000, model=sea64, verbose=0)
    assert emb_int.shape == emb64.shape


@pytest.mark.shared
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_batch_size_does_not_change_results(batch_size, sea64, noise):
    ref, _ = edgel3.get_embedding(noise, 8000, model=sea64, verbose=0)
    emb, _ = edgel3.get_embedding(noise, 8000, model=sea64, verbose=0, batch_size=batch_size)
    # Per-window normalisation makes windows independent; only BLAS blocking may differ.
    np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-4)


@pytest.mark.shared
def test_list_input_with_one_rate_for_all(sea64, noise):
    embs, stamps = edgel3.get_embedding([noise, noise[:12000]], 8000, model=sea64, verbose=0)
    assert [e.shape for e in embs] == [(16, 64), (11, 64)]  # docs/frontend.rst §3
    assert [len(t) for t in stamps] == [16, 11]
    with pytest.raises(ParameterError, match="2 signals but 3 sample rates"):
        edgel3.get_embedding([noise, noise], [8000] * 3, model=sea64, verbose=0)


@pytest.mark.shared
def test_model_by_name_path_and_official_arguments_agree(sea64_weights_dir, noise, sea64):
    ref, _ = edgel3.get_embedding(noise, 8000, model=sea64, verbose=0)
    by_args, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    by_name, _ = edgel3.get_embedding(noise, 8000, model="sea-64", verbose=0)
    by_path, _ = edgel3.get_embedding(noise, 8000, model=str(SEA64_GZ), verbose=0)
    for emb in (by_args, by_name, by_path):
        np.testing.assert_array_equal(emb, ref)


@pytest.mark.shared
def test_models_are_cached_per_process(sea64_weights_dir):
    first = edgel3.load_embedding_model("sea", 64)
    assert edgel3.load_embedding_model("sea", 64) is first
    assert edgel3.models.load_embedding_model("sea", 64) is first


@pytest.mark.shared
def test_sample_rate_comes_from_the_model(sea64, noise):
    """0.2.1 framed at 48 kHz when model_type='sparse' (the default) but a SEA model was given."""
    emb, _ = edgel3.get_embedding(noise, 8000, model=sea64, model_type="sparse", verbose=0)
    assert emb.shape == (16, 64)


def test_missing_weights_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("EDGEL3_WEIGHTS_URL", "http://127.0.0.1:9/{filename}")
    with pytest.raises(WeightsError, match="edgel3_sea_ust_audio_emb_128"):
        edgel3.load_embedding_model("sea", 128)


def test_get_output_path_as_0_2_1():
    assert edgel3.get_output_path("/a/b/x.wav", ".npz") == "/a/b/x.npz"
    assert edgel3.get_output_path("/a/b/x.wav", "s.npz", output_dir="/o") == "/o/x_s.npz"


@pytest.mark.shared
def test_process_file_writes_npz_and_honours_retrain_type(tmp_path, sea64, noise, monkeypatch):
    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, noise, 8000)
    out = edgel3.process_file(
        path, output_dir=tmp_path / "out", suffix="sea", model=sea64, verbose=False
    )
    assert out.endswith("clip_sea.npz")
    data = np.load(out)
    ref, ts = edgel3.get_embedding(sf.read(path)[0], 8000, model=sea64, verbose=0)
    np.testing.assert_array_equal(data["embedding"], ref)
    np.testing.assert_array_equal(data["timestamps"], ts)
    assert not list((tmp_path / "out").glob("*.partial"))

    seen = {}

    class Resolved(Exception):
        pass

    def fake_load(spec, **kwargs):
        seen["model"] = spec.name
        raise Resolved

    monkeypatch.setattr(loading, "load_official", fake_load)
    with pytest.raises(Resolved):
        edgel3.process_file(path, retrain_type="kd", verbose=False, suffix="kd")
    assert seen["model"] == "edgel3_kd_audio_sparsity_95.45"


@pytest.mark.shared
def test_process_file_errors(tmp_path, sea64):
    with pytest.raises(AudioError, match="could not be found"):
        edgel3.process_file(tmp_path / "missing.wav", model=sea64)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match="Could not read audio file"):
        edgel3.process_file(bad, model=sea64)


@pytest.mark.shared
def test_unwritable_output_dir(tmp_path, sea64, noise):
    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, noise, 8000)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file-not-dir"):
        edgel3.process_file(path, output_dir=blocker / "sub", model=sea64, verbose=False)


@pytest.mark.shared
def test_process_files_reports_bad_files_and_skips_existing(tmp_path, sea64, noise):
    import soundfile as sf

    good = tmp_path / "good.flac"
    sf.write(good, noise, 8000)
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, noise, 8000)
    truncated.write_bytes(truncated.read_bytes()[:30])
    results = edgel3.process_files([good, truncated], model=sea64)
    assert [r.status for r in results] == ["written", "failed"]
    assert "truncated.wav" in results[1].error
    assert not (tmp_path / "truncated.npz").exists()
    again = edgel3.process_files([good], model=sea64)
    assert again[0].status == "skipped"
    assert edgel3.process_files([good], model=sea64, overwrite=True)[0].status == "written"
