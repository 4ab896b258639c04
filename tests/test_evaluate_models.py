"""edgel3.evaluate on the one model resolver and the engine: names, files, objects, warnings."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3 import loading
from edgel3.bundled import TINY_PATH
from edgel3.checks import SHORT_WARNING, ZEROS_WARNING
from edgel3.cli import main
from edgel3.evaluate import evaluate
from edgel3.evaluate.cache import folder_name
from edgel3.evaluate.datasets import load_dataset
from edgel3.evaluate.embeddings import embed_files
from edgel3.exceptions import EdgeL3Warning, ParameterError
from edgel3.reference import resolve_model
from edgel3.runners import KerasRunner

CLASSES = ("low", "high", "noise")
FOLDS = (1, 2, 3)


def _close(a, b):
    """Equal within 1e-5 of the embedding scale.

    Not bit for bit: the same windows may reach the model in batches of other
    sizes, and TensorFlow's float32 sums then differ in the last bits.
    """
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, float(np.max(np.abs(b))))


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """3 classes (300 Hz tone, 2 kHz tone, noise) x 3 folds x 2 clips of 1-2 s at 16 kHz."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(7)
    sr = 16000
    rows = ["path,label,fold"]
    for fold in FOLDS:
        for label in CLASSES:
            for k in range(2):
                t = np.arange(int(sr * rng.uniform(1.0, 2.0))) / sr
                noise = rng.normal(scale=0.02, size=t.size)
                if label == "noise":
                    signal = 10 * noise
                else:
                    freq = 300.0 if label == "low" else 2000.0
                    phase = rng.uniform(0, 2 * np.pi)
                    signal = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + phase) + noise
                name = f"{label}_{fold}_{k}.wav"
                sf.write(root / name, signal, sr)
                rows.append(f"{name},{label},{fold}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root, root / "meta.csv"


def test_cli_evaluate_with_the_bundled_tiny_model(tones, tmp_path, capsys):
    """`edgel3 evaluate DIR --model tiny` (rejected before the one resolver)."""
    root, meta = tones
    argv = ["evaluate", str(root), "--metadata", str(meta), "--model", "tiny", "--quick"]
    argv += ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--no-plots", "-q"]) == 0
    summary = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reference = resolve_model("tiny")
    assert report["model"] == reference.describe()
    assert report["model"]["source"] == "bundled" and report["model"]["id"].startswith("tiny@")
    assert report["dataset"]["n_clips"] == 18 and report["dataset"]["folds"] == [1, 2, 3]
    assert report["embedding"]["emb_dim"] == 64 and report["embedding"]["computed_files"] == 18
    assert report["embedding"]["file_warnings"] == {}
    # The cache folder is named by the reference's identity.
    assert (tmp_path / "cache" / folder_name(reference.model_id)).is_dir()
    # Two pure tones and noise: chance is 1/3; any working embedding separates them.
    assert report["accuracy"]["mean"] > 0.6
    assert "model tiny" in summary


def test_embeddings_equal_get_embedding_and_warnings_name_the_file(tmp_path, caplog):
    """Each file's rows equal get_embedding on its samples; warnings keep 0.2.1's texts."""
    rng = np.random.default_rng(3)
    files = {
        "plain.wav": (rng.normal(scale=0.1, size=24000), 16000),
        "stereo.flac": (rng.normal(scale=0.1, size=(14000, 2)), 11025),
        "short.wav": (rng.normal(scale=0.1, size=5000), 16000),
        "zeros.wav": (np.zeros(19000), 16000),
        "long.wav": (rng.normal(scale=0.1, size=61 * 11025), 11025),  # streamed (>= 60 s)
    }
    paths = []
    for name, (audio, sr) in files.items():
        sf.write(tmp_path / name, audio, sr)
        paths.append(tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeL3Warning)  # reported per file, not raised
        with caplog.at_level(logging.WARNING, logger="edgel3.evaluate"):
            embeddings, info = embed_files(
                paths, "tiny", hop_size=0.25, center=False, cache_dir=tmp_path / "cache"
            )
    assert info["warnings"] == {
        str(tmp_path / "short.wav"): [SHORT_WARNING],
        str(tmp_path / "zeros.wav"): [ZEROS_WARNING],
    }
    assert f"{tmp_path / 'short.wav'}: {SHORT_WARNING}" in caplog.text
    assert f"{tmp_path / 'zeros.wav'}: {ZEROS_WARNING}" in caplog.text
    for path, embedding in zip(paths, embeddings):
        audio, sr = sf.read(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EdgeL3Warning)
            expected, _ = edgel3.get_embedding(
                audio, sr, model="tiny", hop_size=0.25, center=False, verbose=0
            )
        assert embedding.dtype == np.float32
        _close(embedding, expected)
    assert len(embeddings[-1]) == 241  # 61 s, hop 0.25 s, not centred


class _UserRunner:
    """A user's object with the runner interface (the tiny model behind it)."""

    def __init__(self, model_id=None):
        self._runner = KerasRunner(loading.load_model_file(TINY_PATH))
        self.sample_rate = self._runner.sample_rate
        self.embedding_size = self._runner.embedding_size
        self.calls = 0
        if model_id is not None:
            self.model_id = model_id

    def predict_on_batch(self, windows):
        self.calls += 1
        return self._runner.predict_on_batch(windows)


def test_evaluate_with_a_runner_object(tones, tmp_path):
    root, meta = tones
    data = load_dataset(root, meta)
    named = _UserRunner(model_id="my-tiny")
    report = evaluate(data, model=named, quick=True, test_folds=[1], cache_dir=tmp_path)
    assert report["model"] == {"id": "my-tiny", "name": "_UserRunner", "source": "object"}
    assert named.calls > 0 and report["embedding"]["computed_files"] == 18
    assert report["accuracy"]["per_fold"][0] > 0.6  # chance 1/3, see above
    # Its identity keys the cache: a second evaluation does not run it.
    calls = named.calls
    again = evaluate(data, model=named, quick=True, test_folds=[1], cache_dir=tmp_path)
    assert named.calls == calls and again["embedding"]["cached_files"] == 18
    # Without a model_id (or a file) the object is known by its address only,
    # which another model may reuse: never cached.
    anonymous = _UserRunner()
    embeddings, info = embed_files(data.paths[:2], anonymous, cache_dir=tmp_path)
    assert info["cache_dir"] is None and info["computed"] == 2
    embed_files(data.paths[:2], anonymous, cache_dir=tmp_path)
    assert anonymous.calls == 2 * 2  # each file is one call; both runs computed
    # Same weights as the bundled file: the same embeddings.
    from_tiny, _ = embed_files(data.paths[:2], "tiny", cache_dir=tmp_path)
    for a, b in zip(embeddings, from_tiny):
        _close(a, b)


def test_evaluate_with_a_loaded_litert_model(tones, tmp_path):
    """A loaded LiteRTModel (rejected before) and its .tflite file share the cache."""
    from edgel3.export.convert import export_model
    from edgel3.litert import LiteRTModel

    root, meta = tones
    data = load_dataset(root, meta)
    path = tmp_path / "tiny.tflite"
    export_model(loading.load_model_file(TINY_PATH), path)
    litert = LiteRTModel(path)
    report = evaluate(data, model=litert, quick=True, test_folds=[2], cache_dir=tmp_path)
    reference = resolve_model(path)
    assert report["model"]["source"] == "object"
    assert report["model"]["id"] == reference.model_id  # the file's identity
    assert report["embedding"]["emb_dim"] == 64 and report["embedding"]["computed_files"] == 18
    again = evaluate(data, model=path, quick=True, test_folds=[2], cache_dir=tmp_path)
    assert again["model"]["source"] == "file" and again["embedding"]["cached_files"] == 18
    assert again["accuracy"] == report["accuracy"]  # the same (cached) embeddings
    embeddings, _ = embed_files(data.paths[:1], litert, cache_dir=tmp_path / "fresh")
    audio, sr = sf.read(data.paths[0])
    expected, _ = edgel3.get_embedding(audio, sr, model=litert, verbose=0)
    _close(embeddings[0], expected)


def test_options_are_checked_by_edgel3_checks(tmp_path):
    sf.write(tmp_path / "a.wav", np.ones(8000) * 0.1, 8000)
    files = [tmp_path / "a.wav"]
    with pytest.raises(ParameterError, match="Invalid hop size"):
        embed_files(files, "tiny", hop_size=0, cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="batch_size must be a positive integer"):
        embed_files(files, "tiny", batch_size=True, cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="Invalid center value"):
        embed_files(files, "tiny", center="yes", cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="neither an existing file nor a model name"):
        embed_files(files, "no-such-model", cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="hop"):
        embed_files(files, "tiny", hop_size=1e-6, cache_dir=tmp_path)  # under one sample


def test_folder_name_keeps_identities_readable():
    assert folder_name("edgel3_sea_ust_audio_emb_64") == "edgel3_sea_ust_audio_emb_64"
    assert folder_name("tiny@0123456789ab") == "tiny@0123456789ab"
    assert folder_name("../my model/v2@ab") == "my_model_v2@ab"
    assert folder_name("///") == "model"
