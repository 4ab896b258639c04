"""The sparse L3 path (48 kHz, 256 mels, 512-d), API and CLI, with a synthetic pruned file.

No official sparse weights are available offline, so the file is the sparse
architecture with random weights pruned to the official 95.45 % per-layer plan
(docs/compress.rst), written in 0.2.1's layout by :func:`save_legacy_h5`.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import edgel3
from edgel3.cli import main
from edgel3.compress.pruning import prune_model, strip_masks
from edgel3.legacy_h5 import read_legacy_h5, save_legacy_h5
from edgel3.models import build_model
from edgel3.specs import get_spec

# Random-weight files under official unpacked names: edgel3 rightly warns that they are unverified.
pytestmark = pytest.mark.filterwarnings("ignore::edgel3.weights.UnverifiedWeightsWarning")

PLAN_95_45 = (0, 85, 85, 85, 75, 95, 98, 98)  # % of conv kernel weights zeroed, conv1..conv8


@pytest.fixture(scope="module")
def sparse_dir(tmp_path_factory):
    """Weights dir with pruned ft-95.45 and kd-87.0 files (unpacked .h5, as 0.2.1 left them)."""
    import keras

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("sparse_weights")
    models = {}
    for name in ("edgel3_ft_audio_sparsity_95.45", "edgel3_kd_audio_sparsity_87.0"):
        model = strip_masks(prune_model(build_model(get_spec(name)), PLAN_95_45)[0])
        save_legacy_h5(model, folder / f"{name}.h5", compress=False)
        models[name] = model
    return folder, models


def test_pruned_file_keeps_zeros_and_loads_by_topology(sparse_dir):
    folder, _ = sparse_dir
    legacy = read_legacy_h5(folder / "edgel3_ft_audio_sparsity_95.45.h5")
    assert len(legacy.weighted_layers) == 17  # 0.2.1's layout: no batch_normalization_9
    nonzero = [int(np.count_nonzero(k)) for _, k in legacy.conv_kernels()]
    # Per-layer non-zeros at 95.45 (docs/compress.rst), exact because we zero round(s*n/100).
    assert nonzero == [576, 5530, 11059, 22118, 73728, 29491, 23593, 47186]


def test_get_embedding_sparse_by_official_arguments(sparse_dir, monkeypatch, rng):
    folder, models = sparse_dir
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(folder))
    audio = rng.normal(scale=0.1, size=48000)
    emb, ts = edgel3.get_embedding(audio, 48000, center=False, hop_size=0.5, verbose=0)
    assert emb.shape == (1, 512) and ts.tolist() == [0.0]
    assert (emb < 0).any()  # sparse L3 exposes signed, pre-BN embeddings
    direct = models["edgel3_ft_audio_sparsity_95.45"].predict_on_batch(
        audio[None, None, :].astype(np.float32)
    )
    # runtime='auto' runs a pruned legacy file with the NumPy runtime: the same network in
    # float32, summed in another order (docs/runtime.rst: within 1e-5 of the scale).
    scale = float(np.abs(direct).max())
    np.testing.assert_allclose(emb, direct, rtol=0, atol=1e-5 * scale)


def test_cli_sparse_kd(sparse_dir, monkeypatch, tmp_path, rng, capsys):
    folder, models = sparse_dir
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(folder))
    wav = tmp_path / "clip.wav"
    audio = rng.normal(scale=0.1, size=44100)
    sf.write(wav, audio, 44100, subtype="FLOAT")
    rc = main(
        [
            str(wav),
            "--model-type",
            "sparse",
            "--retrain-type",
            "kd",
            "--model-sparsity",
            "87",
            "--no-centering",
            "-q",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    data = np.load(tmp_path / "clip.npz")
    stored, sr = sf.read(wav)  # float32 on disk: compare with what the CLI read
    ref, _ = edgel3.get_embedding(
        stored, sr, model=models["edgel3_kd_audio_sparsity_87.0"], center=False, verbose=0
    )
    # The CLI ('auto': the NumPy runtime for a pruned legacy file) vs the Keras model:
    # the same float32 network summed in another order (docs/runtime.rst).
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(data["embedding"], ref, rtol=0, atol=1e-5 * scale)
