"""The window pipeline: any chunking (blocks of a file, live pushes) == the whole signal."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3 import frontend
from edgel3.engine import EmbeddingStream, embed_path, should_stream
from edgel3.exceptions import AudioError, EdgeL3Error, EdgeL3Warning
from edgel3.files import audio_info, read_audio, read_blocks
from edgel3.pipeline import WindowPipeline, WindowStream, batches
from edgel3.reference import resolve_model
from edgel3.resample import LegacyResampleStream, resampled_length, time_register


@pytest.fixture(scope="module")
def tiny():
    """The bundled 8 kHz model: needs nothing from ../shared."""
    return resolve_model("tiny")


def _chunks(x, sizes):
    i = 0
    for size in sizes:
        yield x[i : i + size]
        i += size
    if i < len(x):
        yield x[i:]


@pytest.mark.parametrize(
    "sr_orig, sr_new",
    [(44100, 8000), (22050, 8000), (48000, 8000), (8000, 48000), (44100, 48000)],
)
@pytest.mark.parametrize("known_length", [True, False])
def test_legacy_resample_stream_is_bit_identical(rng, sr_orig, sr_new, known_length):
    x = rng.standard_normal(int(2.3 * sr_orig))
    whole = frontend.resample_legacy(x, sr_orig, sr_new)
    # Block sizes below, near and above the filter's wing (357 taps for 44.1k -> 8k).
    for block in (1, 300, 4097, 50000) if sr_orig == 44100 else (300, 50000):
        stream = LegacyResampleStream(sr_orig, sr_new, x.size if known_length else None)
        limit = x.size if block > 1 else 3000  # 1-sample pushes: a prefix is enough
        parts = [stream.push(x[i : i + block]) for i in range(0, limit, block)]
        if limit < x.size:
            parts.append(stream.push(x[limit:]))
        y = np.concatenate([*parts, stream.close()])
        np.testing.assert_array_equal(y, whole)


def test_resampled_length_is_one_formula():
    # The case: 110 s at 87,360 Hz. n * 8000 / 87360 is exactly 880,000, but the
    # resampler (resampy 0.2) computes int(n * (8000 / 87360)) = 879,999.
    n = 110 * 87360
    assert resampled_length(n, 87360, 8000) == int(n * (8000 / 87360)) == 879_999
    assert LegacyResampleStream(87360, 8000, n).n_out == 879_999


def test_continued_register_equals_whole_register():
    """cumsum restarted from the previous block's last value is the whole cumsum, term by term."""
    inc = 44100 / 8000
    whole = time_register(100_000, inc)
    stream = LegacyResampleStream(44100, 8000, int(100_000 * inc) + 1)
    pieces = [stream._registers(37_000)]
    stream._done, stream._last = 37_000, float(pieces[0][-1])
    pieces.append(stream._registers(63_000))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # The register is not t * inc (which the accumulated sum drifts away from).
    assert not np.array_equal(whole, np.arange(whole.size) * inc)


def test_legacy_resample_stream_checks_its_input():
    stream = LegacyResampleStream(44100, 8000, 1000)
    with pytest.raises(AudioError, match="got 10 of its 1000"):
        stream.push(np.zeros(10))
        stream.close()
    with pytest.raises(AudioError, match="opened for 1000"):
        stream.push(np.zeros(2000))
    with pytest.raises(AudioError, match="too short to resample"):
        LegacyResampleStream(48000, 8000, 5)
    live = LegacyResampleStream(48000, 8000)
    live.push(np.zeros(5))
    with pytest.raises(AudioError, match="too short to resample"):
        live.close()


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("hop_size", [0.1, 0.29, 1.125, 2.5])  # hops longer than a window too
@pytest.mark.parametrize("n_samples", [5, 7999, 8000, 8001, 40_123])
@pytest.mark.parametrize("known_length", [True, False])
def test_window_stream_equals_frame_audio(rng, center, hop_size, n_samples, known_length):
    x = rng.standard_normal(n_samples)
    whole = frontend.frame_audio(x, 8000, hop_size=hop_size, center=center)
    for block in (1000, 30_000):
        windows = WindowStream(
            n_samples if known_length else None, 8000, hop_size=hop_size, center=center
        )
        parts = [windows.push(x[i : i + block]).copy() for i in range(0, n_samples, block)]
        parts.append(windows.close())
        assert windows.n_windows == whole.shape[0]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("sr", [8000, 11025, 44100])
@pytest.mark.parametrize("known_length", [True, False])
def test_window_pipeline_equals_whole_signal_functions(rng, sr, known_length):
    """downmix -> resample -> frame, chunk by chunk, equals the whole-signal functions."""
    x = rng.standard_normal((int(3.7 * sr), 2))
    expected = frontend.frame_audio(
        frontend.resample(frontend.downmix(x), sr, 8000), 8000, hop_size=0.25, center=True
    )
    sizes = rng.integers(1, 9000, size=200)
    pipeline = WindowPipeline(
        sr, 8000, hop_size=0.25, center=True, n_frames=len(x) if known_length else None
    )
    parts = [pipeline.push(chunk).copy() for chunk in _chunks(x, sizes)]
    parts.append(pipeline.close())
    assert pipeline.n_windows == expected.shape[0]
    np.testing.assert_array_equal(np.concatenate(parts), expected)


def test_batches_regroup_any_window_arrays(rng):
    windows = rng.standard_normal((34, 100))
    pieces = [windows[:3], windows[3:3], windows[3:20], windows[20:]]
    got = [b.copy() for b in batches(pieces, 8)]
    assert [b.shape for b in got] == [(8, 1, 100)] * 4 + [(2, 1, 100)]
    np.testing.assert_array_equal(np.concatenate(got)[:, 0], windows.astype(np.float32))
    with pytest.raises(edgel3.ParameterError, match="batch_size"):
        list(batches(pieces, 0))


def _write(path, audio, sr):
    sf.write(str(path), audio, sr, subtype="PCM_16")
    return audio_info(path)


def test_file_blocks_equal_whole_file(tmp_path, rng):
    """A 2-min stereo 44.1 kHz file read in blocks gives the whole file's windows, bit for bit."""
    sr = 44100
    t = np.arange(120 * sr) / sr
    left = 0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t) + 0.05 * rng.standard_normal(t.size)
    info = _write(tmp_path / "long.wav", np.stack([left, 0.1 * rng.standard_normal(t.size)], 1), sr)
    audio, _ = read_audio(info.path)
    mono = frontend.resample_legacy(frontend.downmix(audio), sr, 8000)
    expected = frontend.frame_audio(mono, 8000, hop_size=0.25, center=True)
    pipeline = WindowPipeline(sr, 8000, hop_size=0.25, center=True, n_frames=info.frames)
    got = [pipeline.push(block).copy() for block in read_blocks(info, 100_003)]
    got.append(pipeline.close())
    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_read_blocks_of_a_file_decoding_to_less_than_its_header(tmp_path, rng):
    """A cut MP3's header counts the whole stream: read_blocks refuses the shortfall unless
    the caller counts the frames itself (allow_short, embed_path's streamed path)."""
    path = tmp_path / "cut.mp3"
    sf.write(str(path), 0.1 * rng.standard_normal(3 * 16000), 16000, format="MP3")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    info = audio_info(path)
    present, _ = read_audio(path)
    assert len(present) < info.frames
    with pytest.raises(AudioError, match=f"got {len(present)} of {info.frames} frames"):
        list(read_blocks(info, 4096))
    blocks = list(read_blocks(info, 4096, allow_short=True))
    # Same frames (libmpg123 rounds differently from one decoder instance to another).
    np.testing.assert_allclose(np.concatenate(blocks)[:, 0], present, rtol=0, atol=1e-6)
    assert info.decoded(len(present)).declared_frames == info.frames


def test_streamed_file_rows_match_get_embedding_at_odd_rates(tmp_path, tiny):
    """The issue's case: 110 s at 87,360 Hz, hop 2687/8000 s. The streamed path sized its
    output with another formula than the resampler's and returned 329 rows, the last one
    uninitialised; every path must give get_embedding's 328."""
    sr, hop = 87360, 2687 / 8000
    audio = 0.1 * np.sin(2 * np.pi * 440 * np.arange(110 * sr) / sr)
    info = _write(tmp_path / "odd.wav", audio, sr)
    assert should_stream(info)
    read, _ = read_audio(info.path)
    emb, ts = edgel3.get_embedding(read, sr, model="tiny", hop_size=hop, verbose=0)
    streamed, streamed_ts, _ = embed_path(
        tiny, info.path, hop_size=hop, center=True, batch_size=64, stream=True
    )
    assert len(emb) == len(streamed) == 328
    np.testing.assert_array_equal(streamed_ts, ts)
    np.testing.assert_allclose(streamed, emb, rtol=0, atol=1e-5 * max(1, np.abs(emb).max()))


def test_process_file_streams_long_files_with_identical_results(tmp_path, rng, tiny):
    """A 61-s 22.05 kHz file is streamed by process_file; its npz equals get_embedding's."""
    sr = 22050
    info = _write(tmp_path / "minute.flac", 0.1 * rng.standard_normal(61 * sr), sr)
    assert should_stream(info)
    out = edgel3.process_file(info.path, output_dir=tmp_path, model="tiny", verbose=False)
    saved = np.load(out)
    read, _ = read_audio(info.path)
    emb, ts = edgel3.get_embedding(read, sr, model="tiny", verbose=0)
    # Same windows in the same batches through the same runner, in one process: same numbers.
    np.testing.assert_array_equal(saved["embedding"], emb)
    np.testing.assert_array_equal(saved["timestamps"], ts)


def test_stream_warnings_and_errors(tmp_path, tiny):
    options = dict(center=False, batch_size=2, stream=True)
    zeros = _write(tmp_path / "zeros.wav", np.zeros((3 * 8000, 2)), 8000)
    with pytest.warns(EdgeL3Warning, match="all zeros"):
        emb, _, _ = embed_path(tiny, zeros.path, hop_size=1.0, **options)
    assert len(emb) == 3
    short = _write(tmp_path / "short.wav", np.full(4000, 0.1), 8000)
    with pytest.warns(EdgeL3Warning, match="shorter than window size"):
        embed_path(tiny, short.path, hop_size=0.1, **options)
    bad = tmp_path / "nan.wav"
    audio = np.full((300_000, 2), 0.1)
    audio[[5, 290_000], 0] = np.nan
    audio[290_000, 1] = np.inf
    sf.write(str(bad), audio, 8000, subtype="FLOAT")
    # Counted over the whole file and all channels, as the whole-file check does.
    with pytest.raises(AudioError, match="contains 3 NaN or infinite"):
        embed_path(tiny, bad, hop_size=0.5, **options)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 8000)
    with pytest.raises(AudioError, match="Got empty audio"):
        embed_path(tiny, empty, hop_size=0.1, **options)
    with pytest.raises(AudioError, match="could not be found"):
        audio_info(tmp_path / "missing.wav")


def test_fast_resample_stream_close_to_whole_fast_path(rng):
    sr = 44100
    x = 0.2 * rng.standard_normal(5 * sr)
    whole = frontend.resample(x, sr, 8000, exact=False)
    pipeline = WindowPipeline(sr, 8000, hop_size=1.0, center=False, fast_resample=True)
    got = [pipeline.push(chunk).copy() for chunk in _chunks(x, [10_000] * 30)]
    got = np.concatenate([*got, pipeline.close()]).ravel()
    assert got.size == 5 * 8000 and whole.size == 5 * 8000
    # soxr's stream keeps its filter state across blocks: measured identical to the
    # whole-signal call; 2e-5 (1e-4 of the 0.2 rms) leaves room for other soxr versions.
    np.testing.assert_allclose(got, whole, rtol=0, atol=2e-5)
    exact = frontend.resample_legacy(x, sr, 8000)
    assert np.max(np.abs(whole - exact)) > 1e-4  # fast is a different resampler


def test_pipeline_reports_a_count_mismatch_as_an_error(monkeypatch):
    pipeline = WindowPipeline(8000, 8000, hop_size=0.5, center=False, n_frames=16000)
    pipeline.push(np.ones(16000))
    monkeypatch.setattr(pipeline._framer, "n_windows", 99)
    with pytest.raises(EdgeL3Error, match="produced 3 windows"):
        pipeline.close()


def test_embedding_stream_latency_and_errors(rng):
    stream = EmbeddingStream("tiny", 44100, hop_size=0.5, center=False)
    assert stream.latency == LegacyResampleStream(44100, 8000).latency > 0
    emb, ts = stream.push(np.zeros(0))
    assert emb.shape == (0, 64) and ts.shape == (0,)
    with pytest.raises(AudioError, match="NaN"):
        stream.push(np.array([0.0, np.nan]))
    with pytest.raises(AudioError, match="numeric"):
        stream.push(np.array(["a"]))
    stream.push(rng.standard_normal(44100))
    stream.close()
    with pytest.raises(AudioError, match="closed"):
        stream.push(np.zeros(10))
    assert EmbeddingStream("tiny", 8000).latency == 0


def test_embedding_stream_emits_a_window_once_its_input_arrived(rng):
    """Window i ends at sample i*hop + sr (at 8 kHz); it is out once that sample arrived
    plus the resampler's reach, not later."""
    sr, hop = 44100, 0.5
    stream = EmbeddingStream("tiny", sr, hop_size=hop, center=False)
    x = rng.standard_normal(4 * sr)
    emitted = []
    for i in range(0, len(x), 441):
        emb, _ = stream.push(x[i : i + 441])
        emitted += [i + 441] * len(emb)
    for k, arrived in enumerate(emitted):
        last_needed = int(np.ceil((k * hop * 8000 + 8000) * sr / 8000)) + stream.latency
        assert arrived <= last_needed + 441  # one push of slack


@pytest.mark.parametrize("sr", [44100, 8000])
def test_push_stream_memory_is_bounded(rng, sr):
    """An endless stream keeps only the filter's reach and about one window of samples."""
    pipeline = WindowPipeline(sr, 8000, hop_size=0.1, center=True)
    chunk = 4410
    sizes = []
    for _ in range(300):  # 30 s at 44.1 kHz; the buffers must not grow with it
        pipeline.push(rng.standard_normal(chunk))
        held = pipeline._framer._buffer.size
        if pipeline._resampler is not None:
            held += pipeline._resampler._buffer.size
        sizes.append(held)
    # Framer: < 1 window + 1 hop + one resampled chunk; resampler: 2 wings + one chunk.
    bound = 8000 + 800 + chunk + 2 * 400 + chunk
    assert max(sizes) <= bound
    assert max(sizes[-100:]) <= max(sizes[:100]) + chunk  # flat, not growing
