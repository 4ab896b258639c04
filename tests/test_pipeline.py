"""Streaming (blockwise) read, resample and framing == the whole-file path, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3 import core, frontend, streaming
from edgel3.exceptions import AudioError, EdgeL3Warning
from edgel3.resample import _time_register

from .conftest import SEA64_GZ


@pytest.fixture(scope="module")
def sea64():
    return core.load_model_file(SEA64_GZ)


@pytest.mark.parametrize(
    "sr_orig, sr_new",
    [(44100, 8000), (22050, 8000), (48000, 8000), (8000, 48000), (44100, 48000)],
)
def test_legacy_resample_stream_is_bit_identical(rng, sr_orig, sr_new):
    x = rng.standard_normal(int(2.3 * sr_orig))
    whole = frontend.resample_legacy(x, sr_orig, sr_new)
    # Block sizes below, near and above the filter's wing (357 taps for 44.1k -> 8k).
    for block in (300, 4097, 50000):
        stream = streaming.LegacyResampleStream(sr_orig, sr_new, x.size)
        parts = [stream.push(x[i : i + block]) for i in range(0, x.size, block)]
        y = np.concatenate([*parts, stream.flush()])
        np.testing.assert_array_equal(y, whole)


def test_continued_register_equals_whole_register():
    """cumsum restarted from the previous block's last value is the whole cumsum, term by term."""
    inc = 44100 / 8000
    whole = _time_register(100_000, inc)
    stream = streaming.LegacyResampleStream(44100, 8000, int(100_000 * inc) + 1)
    pieces = [stream._registers(37_000)]
    stream._done, stream._last = 37_000, float(pieces[0][-1])
    pieces.append(stream._registers(63_000))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # The register is not t * inc (which the accumulated sum drifts away from).
    assert not np.array_equal(whole, np.arange(whole.size) * inc)


def test_legacy_resample_stream_checks_its_input():
    stream = streaming.LegacyResampleStream(44100, 8000, 1000)
    with pytest.raises(AudioError, match="got 10 of its 1000"):
        stream.push(np.zeros(10))
        stream.flush()
    with pytest.raises(AudioError, match="opened for 1000"):
        stream.push(np.zeros(2000))
    with pytest.raises(AudioError, match="too short to resample"):
        streaming.LegacyResampleStream(48000, 8000, 5)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("hop_size", [0.1, 0.29])
@pytest.mark.parametrize("n_samples", [5, 7999, 8000, 8001, 40_123])
def test_window_stream_equals_frame_audio(rng, center, hop_size, n_samples):
    x = rng.standard_normal(n_samples)
    whole = frontend.frame_audio(x, 8000, hop_size=hop_size, center=center)
    for block in (1000, 30_000):
        windows = streaming.WindowStream(n_samples, 8000, hop_size=hop_size, center=center)
        parts = [windows.push(x[i : i + block]).copy() for i in range(0, n_samples, block)]
        assert windows.n_windows == whole.shape[0]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def _write(path, audio, sr):
    sf.write(str(path), audio, sr, subtype="PCM_16")
    return streaming.audio_info(path)


def _whole_file_batches(path, target_sr, *, hop_size, center, batch_size):
    audio, sr = edgel3.files.read_audio(path)
    mono = frontend.resample_legacy(frontend.downmix(audio), sr, target_sr)
    return [b.copy() for b in core._window_batches([mono], target_sr, hop_size, center, batch_size)]


def test_file_batches_equal_whole_file_batches(tmp_path, rng):
    """A 2-minute stereo 44.1 kHz file, read in small blocks, gives the very same batches."""
    sr = 44100
    t = np.arange(120 * sr) / sr
    left = 0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t) + 0.05 * rng.standard_normal(t.size)
    stereo = np.stack([left, 0.1 * rng.standard_normal(t.size)], axis=1)
    info = _write(tmp_path / "long.wav", stereo, sr)
    options = dict(hop_size=0.25, center=True, batch_size=64)
    expected = _whole_file_batches(info.path, 8000, **options)
    got = [
        b.copy() for b in streaming.iter_file_batches(info, 8000, block_frames=100_003, **options)
    ]
    assert [b.shape for b in got] == [b.shape for b in expected]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_process_file_streams_long_files_with_identical_results(tmp_path, rng, sea64):
    """A 61-s 22.05 kHz file is streamed by process_file; its npz equals get_embedding's."""
    sr = 22050
    audio = 0.1 * rng.standard_normal(61 * sr)
    info = _write(tmp_path / "minute.flac", audio, sr)
    assert streaming.should_stream(info)
    out = core.process_file(info.path, output_dir=tmp_path, model=sea64, verbose=False)
    saved = np.load(out)
    read, _ = edgel3.files.read_audio(info.path)
    emb, ts = edgel3.get_embedding(read, sr, model=sea64, verbose=0)
    # Same windows in the same batches through the same model: identical numbers.
    np.testing.assert_array_equal(saved["embedding"], emb)
    np.testing.assert_array_equal(saved["timestamps"], ts)


def test_stream_warnings_and_errors(tmp_path):
    zeros = _write(tmp_path / "zeros.wav", np.zeros((3 * 8000, 2)), 8000)
    with pytest.warns(EdgeL3Warning, match="all zeros"):
        batches = list(
            streaming.iter_file_batches(zeros, 8000, hop_size=1.0, center=False, batch_size=2)
        )
    assert sum(len(b) for b in batches) == 3
    short = _write(tmp_path / "short.wav", np.full(4000, 0.1), 8000)
    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        list(streaming.iter_file_batches(short, 8000, hop_size=0.1, center=True, batch_size=8))
    bad = tmp_path / "nan.wav"
    audio = np.full((20_000, 2), 0.1)
    audio[[5, 15_000], 0] = np.nan
    audio[15_000, 1] = np.inf
    sf.write(str(bad), audio, 8000, subtype="FLOAT")
    info = streaming.audio_info(bad)
    # Counted over the whole file and all channels, as the whole-file check does.
    with pytest.raises(AudioError, match="contains 3 NaN or infinite"):
        list(
            streaming.iter_file_batches(
                info, 8000, hop_size=0.5, center=True, batch_size=4, block_frames=1000
            )
        )
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 8000)
    with pytest.raises(AudioError, match="Got empty audio"):
        list(
            streaming.iter_file_batches(
                streaming.audio_info(empty), 8000, hop_size=0.1, center=True, batch_size=4
            )
        )
    with pytest.raises(AudioError, match="could not be found"):
        streaming.audio_info(tmp_path / "missing.wav")


def test_fast_resample_stream_close_to_whole_fast_path(tmp_path, rng):
    sr = 44100
    audio = 0.2 * rng.standard_normal(5 * sr)
    info = _write(tmp_path / "fast.wav", audio, sr)
    read, _ = edgel3.files.read_audio(info.path)
    whole = frontend.resample(read, sr, 8000, exact=False)
    got = np.concatenate(
        [
            b.ravel().copy()
            for b in streaming.iter_file_batches(
                info, 8000, hop_size=1.0, center=False, batch_size=1, fast_resample=True
            )
        ]
    )
    assert got.size == 5 * 8000 and whole.size == 5 * 8000
    # soxr's stream keeps its filter state across blocks: measured identical to the
    # whole-signal call; 2e-5 (1e-4 of the 0.2 rms) leaves room for other soxr versions.
    np.testing.assert_allclose(got, whole.astype(np.float32), rtol=0, atol=2e-5)
    exact = frontend.resample_legacy(read, sr, 8000)
    assert np.max(np.abs(whole - exact)) > 1e-4  # fast is a different resampler
