"""Every embedding path gives the same rows, timestamps and values (property-based).

Paths: ``get_embedding`` on an array and inside a list (windows batched with
another signal), ``process_file`` reading the file whole and streaming it in
blocks, the push stream (:class:`edgel3.EmbeddingStream`) with random
chunkings, and, in other processes, ``embed_files(jobs=2)`` and Ray.

Rows and timestamps must be identical. Values are compared within
``1e-5 * max(1, max|embedding|)``: in one process the same windows in
batches of different sizes go through different TensorFlow/oneDNN kernels
(measured up to ~6e-6 for the tiny model), and processes with other thread
counts sum in another order (measured 2.4e-6 with 1 vs 2 threads). Bit-identity
is only asserted where a test shows it (same process, same batches).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgel3
from edgel3 import engine
from edgel3.engine import EmbeddingStream

from .conftest import assert_close

RATES = st.one_of(
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 87360]),
    st.integers(4000, 96000),
)
HOPS = st.one_of(st.sampled_from([0.1, 0.25, 2687 / 8000, 1.0]), st.floats(0.05, 1.2))
STREAM_THRESHOLD = 2.0  # seconds: lengths are drawn below, at and above it

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def signals(draw):
    sr = draw(RATES)
    seconds = draw(
        st.one_of(
            st.floats(0.05, 4.5),
            st.sampled_from([STREAM_THRESHOLD, STREAM_THRESHOLD - 1 / sr, 1.0, 1.0 - 1 / sr]),
        )
    )
    n = max(int(np.ceil(sr / 8000)), int(seconds * sr))
    channels = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**32 - 1))
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, channels) if channels > 1 else n)
    return audio, sr


@given(
    signal=signals(),
    hop_size=HOPS,
    center=st.booleans(),
    batch_size=st.integers(1, 70),
    data=st.data(),
)
@SETTINGS
def test_every_in_process_path_agrees(tmp_path_factory, signal, hop_size, center, batch_size, data):
    audio, sr = signal
    options = dict(model="tiny", hop_size=hop_size, center=center, verbose=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "STREAM_MIN_SECONDS", STREAM_THRESHOLD)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", edgel3.EdgeL3Warning)
            emb, ts = edgel3.get_embedding(audio, sr, **options)
            assert np.array_equal(ts, np.arange(len(emb)) * hop_size)

            other = np.random.default_rng(0).uniform(-0.5, 0.5, 12_345)
            (_, listed), (_, listed_ts) = edgel3.get_embedding(
                [other, audio], [11025, sr], batch_size=batch_size, **options
            )
            assert np.array_equal(listed_ts, ts)
            assert_close(listed, emb)

            path = tmp_path_factory.mktemp("paths") / "clip.wav"
            sf.write(path, audio, sr, subtype="DOUBLE")  # the file holds the array exactly
            reference = edgel3.reference.resolve_model("tiny")
            for stream in (False, True):  # the file read whole, and in blocks
                got, got_ts, _ = engine.embed_path(
                    reference,
                    path,
                    hop_size=hop_size,
                    center=center,
                    batch_size=batch_size,
                    stream=stream,
                )
                assert np.array_equal(got_ts, ts), f"stream={stream}"
                assert_close(got, emb)
            # The public function picks by length (threshold patched to 2 s above).
            got, got_ts = edgel3.embed_file(path, batch_size=batch_size, **options)
            assert np.array_equal(got_ts, ts)
            assert_close(got, emb)

            stream = edgel3.EmbeddingStream("tiny", sr, hop_size=hop_size, center=center)
            sizes = data.draw(st.lists(st.integers(1, 3 * sr), min_size=1, max_size=12))
            parts, stamps, start = [], [], 0
            for size in sizes:
                piece = audio[start : start + size]
                start += size
                e, t = stream.push(piece)
                parts.append(e)
                stamps.append(t)
            e, t = stream.push(audio[start:])
            parts.append(e)
            stamps.append(t)
            e, t = stream.close()
            parts.append(e)
            stamps.append(t)
            assert np.array_equal(np.concatenate(stamps), ts)
            assert_close(np.concatenate(parts), emb)


@given(chunk=st.sampled_from([1, 1000]))
@settings(max_examples=2, deadline=None)
def test_push_stream_with_fixed_chunkings(chunk):
    """The chunkings the issue names: 1 sample (on a short signal) and 1,000 samples."""
    sr = 11025
    audio = np.random.default_rng(chunk).uniform(-0.5, 0.5, int(1.3 * sr) if chunk == 1 else 3 * sr)
    emb, ts = edgel3.get_embedding(audio, sr, model="tiny", hop_size=0.25, verbose=0)
    stream = EmbeddingStream("tiny", sr, hop_size=0.25)
    parts = [stream.push(audio[i : i + chunk])[0] for i in range(0, len(audio), chunk)]
    parts.append(stream.close()[0])
    assert_close(np.concatenate(parts), emb)
    assert stream.rows == len(ts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Files at odd rates, mono and stereo, one long enough to be streamed."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    specs = [(87360, 3.1, 1), (11025, 0.4, 2), (44100, 2.0, 1), (22050, 5.5, 2), (8000, 61.0, 1)]
    paths = []
    for i, (sr, seconds, channels) in enumerate(specs):
        n = int(seconds * sr)
        audio = rng.uniform(-0.5, 0.5, (n, channels) if channels > 1 else n)
        path = folder / f"clip{i}_{sr}.wav"
        sf.write(path, audio, sr, subtype="DOUBLE")
        paths.append(path)
    return paths


def _reference(paths, hop_size, center):
    out = {}
    for path in paths:
        audio, sr = sf.read(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", edgel3.EdgeL3Warning)  # the 0.4-s clip is short
            out[str(path)] = edgel3.get_embedding(
                audio, sr, model="tiny", hop_size=hop_size, center=center, verbose=0
            )
    return out


def test_jobs_2_agrees_with_get_embedding(corpus, tmp_path):
    from edgel3.parallel import embed_files

    hop_size, center = 2687 / 8000, False
    summary = embed_files(
        corpus, tmp_path / "out", model="tiny", hop_size=hop_size, center=center, jobs=2
    )
    assert summary.count("written") == len(corpus)
    expected = _reference(corpus, hop_size, center)
    for result in summary.results:
        data = np.load(result.output)
        emb, ts = expected[str(result.path)]
        assert np.array_equal(data["timestamps"], ts)
        assert_close(data["embedding"], emb)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_agrees_with_get_embedding(corpus, tmp_path):
    import ray

    from edgel3.batch import embed_files_ray, read_parquet_embeddings

    hop_size, center = 0.37, True
    # address="local": a private instance, never another process's cluster.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = embed_files_ray(
            corpus, tmp_path / "out", model="tiny", hop_size=hop_size, center=center
        )
    finally:
        ray.shutdown()
    assert summary.count("written") == len(corpus)
    expected = _reference(corpus, hop_size, center)
    rows = read_parquet_embeddings(tmp_path / "out")
    assert sorted(rows) == sorted(expected)
    for path, (emb, ts) in rows.items():
        assert np.array_equal(ts, expected[path][1])
        assert_close(emb, expected[path][0])
