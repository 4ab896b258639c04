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

from .conftest import SEA64_GZ, ModelResolved, assert_close


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
    theirs = inspect.signature(edgel3.get_embedding).parameters
    for func in (edgel3.process_file, edgel3.embed_file, edgel3.process_files):
        ours = inspect.signature(func).parameters
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
            assert ours[name].default == theirs[name].default, (func.__name__, name)


def _positional(func):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [n for n, p in inspect.signature(func).parameters.items() if p.kind in kinds]


def test_file_functions_share_process_files_positional_order():
    """0.2.1's process_file order; its new twins follow it (retrain_type keyword-only in all)."""
    order = _positional(edgel3.process_file)
    assert order == [
        "filepath",
        "output_dir",
        "suffix",
        "model",
        "model_type",
        "emb_dim",
        "sparsity",
        "center",
        "hop_size",
        "verbose",
    ]
    assert _positional(edgel3.process_files) == ["filepaths", *order[1:-1]]
    assert _positional(edgel3.embed_file) == [n for n in order if n not in ("output_dir", "suffix")]
    for func in (edgel3.process_file, edgel3.embed_file, edgel3.process_files):
        params = inspect.signature(func).parameters
        assert params["retrain_type"].kind is inspect.Parameter.KEYWORD_ONLY, func.__name__


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
    # By name, arguments or path the same file runs on the NumPy runtime: the same bits;
    # the loaded model runs on Keras: within the tolerance of two float32 executions.
    for emb in (by_name, by_path):
        np.testing.assert_array_equal(emb, by_args)
    assert_close(by_args, ref)


@pytest.mark.shared
def test_load_embedding_model_gives_the_caller_a_model_of_its_own(
    sea64_weights_dir, noise, monkeypatch
):
    """Issue 12: zeroing a layer of a returned model changed later get_embedding outputs."""
    import edgel3.legacy_h5

    reads = []
    read = edgel3.legacy_h5.read_legacy_h5
    monkeypatch.setattr(edgel3.legacy_h5, "read_legacy_h5", lambda p: reads.append(p) or read(p))
    loading.clear_cache()
    ref, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    reads.clear()  # that was the NumPy runtime's read; now the Keras loader's
    mine = edgel3.load_embedding_model("sea", 64)
    conv = next(layer for layer in mine.layers if layer.name == "audio_embedding_layer")
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    zeroed, _ = edgel3.get_embedding(noise, 8000, model=mine, verbose=0)
    assert np.abs(zeroed - ref).max() > 1  # the caller's model did change
    again, _ = edgel3.get_embedding(noise, 8000, model_type="sea", emb_dim=64, verbose=0)
    np.testing.assert_array_equal(again, ref)
    other = edgel3.models.load_embedding_model("sea", 64)
    assert other is not mine
    from_other, _ = edgel3.get_embedding(noise, 8000, model=other, verbose=0)
    assert_close(from_other, ref)  # a loaded model runs on Keras, the name on NumPy
    assert len(reads) == 1  # the loader reads the file once per process; later loads copy


def test_copy_model_is_independent_of_the_shared_model(rng):
    """The mechanism of load_embedding_model, on the bundled model (no shared data)."""
    from edgel3.bundled import TINY_PATH

    audio = rng.normal(scale=0.1, size=16000)
    ref, _ = edgel3.get_embedding(audio, 8000, model="tiny", verbose=0)
    copy = loading.copy_model(loading.load_model_file(TINY_PATH))
    np.testing.assert_array_equal(edgel3.get_embedding(audio, 8000, model=copy, verbose=0)[0], ref)
    for weight in copy.weights:
        weight.assign(np.zeros(weight.shape, dtype=weight.dtype))
    assert not np.array_equal(edgel3.get_embedding(audio, 8000, model=copy, verbose=0)[0], ref)
    np.testing.assert_array_equal(
        edgel3.get_embedding(audio, 8000, model="tiny", verbose=0)[0], ref
    )


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
def test_process_file_writes_npz_and_honours_retrain_type(tmp_path, sea64, noise, request):
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

    seen = request.getfixturevalue("resolved_models")  # from here on: spy, do not run
    with pytest.raises(ModelResolved):
        edgel3.process_file(path, retrain_type="kd", verbose=False, suffix="kd")
    assert seen == ["edgel3_kd_audio_sparsity_95.45"]


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


# --------------------------------------------------------------------------- input layout


@pytest.mark.parametrize("shape", [(2, 32000), (4, 16000), (1, 64), (8, 64)])
def test_channels_first_audio_is_an_error_that_says_what_to_do(shape):
    audio = np.random.default_rng(0).normal(size=shape)
    with pytest.raises(
        AudioError, match=r"looks channels-first \(shape \(\d+, \d+\)\): pass audio\.T"
    ):
        edgel3.get_embedding(audio, 16000, model="tiny", verbose=0)


def test_channels_first_message_names_the_list_item():
    signals = [np.zeros(16000) + 0.1, np.ones((2, 16000))]
    with pytest.raises(AudioError, match=r"audio\[1\] looks channels-first.*pass audio\[1\]\.T"):
        edgel3.get_embedding(signals, 16000, model="tiny", verbose=0)


@pytest.mark.parametrize("shape", [(16000, 2), (16000, 8), (8, 63), (9, 64), (2, 2)])
def test_samples_by_channels_is_not_mistaken_for_channels_first(shape):
    from edgel3.checks import check_audio

    audio = np.ones(shape)
    assert check_audio(audio) is audio


def test_channels_first_is_refused_where_its_transpose_works(rng):
    stereo = rng.normal(scale=0.1, size=(16000, 2))
    emb, _ = edgel3.get_embedding(stereo, 16000, model="tiny", verbose=0)
    assert emb.shape == (6, 64)  # 1 s, centred, hop 0.1 s: docs/frontend.rst §3
    with pytest.raises(AudioError, match="pass audio.T"):
        edgel3.get_embedding(stereo.T, 16000, model="tiny", verbose=0)


@pytest.mark.parametrize("container", [list, tuple])
def test_a_list_of_numbers_is_one_signal(container, rng):
    audio = rng.normal(scale=0.1, size=12000)
    ref, ts_ref = edgel3.get_embedding(audio, 8000, model="tiny", verbose=0)
    emb, ts = edgel3.get_embedding(container(audio.tolist()), 8000, model="tiny", verbose=0)
    assert isinstance(emb, np.ndarray) and emb.shape == ref.shape
    np.testing.assert_array_equal(emb, ref)
    np.testing.assert_array_equal(ts, ts_ref)
    ints = [int(v) for v in (audio * 10000).astype(np.int16)]
    assert edgel3.get_embedding(ints, 8000, model="tiny", verbose=0)[0].shape == ref.shape


def test_a_list_mixing_numbers_and_arrays_is_still_a_list_of_signals(rng):
    with pytest.raises(AudioError, match=r"audio\[1\] of shape \(\) \(a single number"):
        edgel3.get_embedding([rng.normal(size=8000), 0.5], 8000, model="tiny", verbose=0)


@pytest.mark.parametrize("signal", ["noise", "tones"])
@pytest.mark.parametrize("sr", [8000, 16000])
def test_int16_input_matches_the_scaled_float_signal(signal, sr, rng):
    """Gain cancels in the per-window normalised front end (get_embedding's Notes).

    Measured at most 3.1e-5 (embedding values up to 70) on noise, tones and a chirp with
    SEA-64 and tiny; 1e-3 leaves room for BLAS/FFT differences across machines.
    """
    t = np.arange(2 * sr) / sr
    if signal == "noise":
        audio = rng.normal(scale=0.1, size=t.size)
    else:
        audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t)
    pcm = np.round(audio * 32767).astype(np.int16)
    emb_int, ts_int = edgel3.get_embedding(pcm, sr, model="tiny", verbose=0)
    emb_float, ts_float = edgel3.get_embedding(pcm / 32768.0, sr, model="tiny", verbose=0)
    np.testing.assert_allclose(emb_int, emb_float, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(ts_int, ts_float)
    unscaled, _ = edgel3.get_embedding(pcm.astype(np.float64), sr, model="tiny", verbose=0)
    np.testing.assert_array_equal(emb_int, unscaled)  # integers are used as they are
