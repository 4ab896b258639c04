"""Knowledge distillation, SEA, augmentation and k-DPP sampling on small real runs."""

from __future__ import annotations

import csv
import itertools

import keras
import numpy as np
import pytest

from edgel3.compress import augment, dpp, sea
from edgel3.compress.data import (
    WindowSet,
    as_teacher,
    concat_windows,
    load_windows,
    synth_windows,
    teacher_targets,
)
from edgel3.compress.distill import distill, validation_split
from edgel3.compress.students import build_student
from edgel3.core import load_model_file
from edgel3.exceptions import ParameterError

from .conftest import DATA_DIR, SEA64_GZ

# A small, fast depthwise-separable student (~3 K parameters); BN momentum 0.9 so the
# moving statistics used for validation follow the weights within a few dozen steps.
SMALL = {"stem_filters": 8, "blocks": ((16, 2), (32, 2)), "bn_momentum": 0.9}


@pytest.fixture(scope="module")
def corpus():
    """A few hundred real windows: 200 FSDD recordings and 4 ESC-10 clips (fold 1), 8 kHz."""
    fsdd = sorted((DATA_DIR / "fsdd" / "audio").glob("*.flac"))[::15]
    with open(DATA_DIR / "esc10" / "meta" / "esc10.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["fold"] == "1"][:4]
    esc = [DATA_DIR / "esc10" / "audio" / r["filename"].replace(".wav", ".flac") for r in rows]
    speech = load_windows(fsdd, 8000, hop_size=0.5, max_windows_per_file=2)
    sounds = load_windows(esc, 8000, hop_size=0.5)
    return concat_windows([speech, sounds])


@pytest.fixture(scope="module")
def sea64_targets(corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("targets") / "sea64.npz"
    return teacher_targets(load_model_file(SEA64_GZ), corpus, cache=cache), cache


@pytest.mark.shared
def test_corpus_and_target_cache(corpus, sea64_targets):
    targets, cache = sea64_targets
    assert 200 <= len(corpus) <= 400 and corpus.windows.shape[1] == 8000
    assert targets.shape == (len(corpus), 64) and np.all(targets >= 0)  # SEA-64 ends in ReLU
    # The cache is reused for the same teacher and data...
    again = teacher_targets(load_model_file(SEA64_GZ), corpus, cache=cache)
    np.testing.assert_array_equal(again, targets)
    # ...and not for other data.
    calls = []
    other = teacher_targets(
        as_teacher(lambda w: calls.append(1) or np.ones((len(w), 3)), sr=8000),
        corpus.subset(np.arange(5)),
        cache=cache,
    )
    assert calls and other.shape == (5, 3)


@pytest.mark.shared
def test_validation_split_keeps_files_apart(corpus, rng):
    train, val = validation_split(corpus, 0.2, rng)
    assert set(corpus.file_index[train]).isdisjoint(corpus.file_index[val])
    assert len(train) + len(val) == len(corpus) and 0.15 < len(val) / len(corpus) < 0.4
    one_file = WindowSet(np.zeros((10, 80), np.float32), 80, np.zeros(10, np.int32), ["a"])
    train, val = validation_split(one_file, 0.2, rng)  # a single file: windows are split
    assert len(train) == 8 and len(val) == 2


@pytest.mark.shared
def test_kd_reduces_loss_with_checkpoints_and_resume(corpus, sea64_targets, tmp_path):
    targets, _ = sea64_targets
    keras.utils.set_random_seed(1)
    student = build_student("ds", emb_dim=64, **SMALL)
    result = distill(
        student,
        corpus,
        targets,
        epochs=4,
        batch_size=32,
        learning_rate=3e-3,
        checkpoint_dir=tmp_path,
        verbose=0,
    )
    # Four epochs take a fresh student well below its starting error (observed ~0.3x);
    # 0.75 leaves room for run-to-run variation of a 2-core CPU run.
    assert result.best_val_loss < 0.75 * result.initial_val_loss
    assert result.epochs == 4 and result.device in ("CPU", "GPU")
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "history.csv").is_file()
    best = load_model_file(tmp_path / "best.keras")
    windows = np.asarray(corpus.windows[:8])[:, None, :]
    # best.keras holds the best epoch, which EarlyStopping restored into the student.
    np.testing.assert_allclose(
        best.predict(windows, verbose=0), student.predict(windows, verbose=0), atol=1e-4
    )
    resumed = distill(
        student, corpus, targets, epochs=5, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert resumed.epochs == 1  # epochs 1-4 were restored from the backup


def _band_energies(windows):
    """A cheap 'teacher': log energy in 6 frequency bands of each window."""
    spectrum = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    bands = np.array_split(spectrum, 6, axis=1)
    return np.stack([np.log10(b.sum(axis=1) + 1e-6) for b in bands], axis=1)


@pytest.mark.shared
def test_kd_with_callable_teacher_and_on_the_fly_augmentation(corpus):
    keras.utils.set_random_seed(2)
    student = build_student("ds", emb_dim=6, **SMALL)
    teacher = as_teacher(_band_energies, sr=8000)
    result = distill(
        student,
        corpus.subset(np.arange(0, len(corpus), 2)),
        teacher=teacher,
        augment=augment.Augmenter(p_mix=0.5, p_noise=0.5),
        epochs=2,
        batch_size=32,
        learning_rate=1e-2,
        verbose=0,
    )
    # Band energies are easy to learn; even 2 augmented epochs cut the error (observed ~0.2x).
    assert result.best_val_loss < 0.75 * result.initial_val_loss


@pytest.mark.shared
def test_distill_rejects_mismatched_targets(corpus, sea64_targets):
    targets, _ = sea64_targets
    with pytest.raises(ParameterError, match="outputs 8 values"):
        distill(build_student("ds", emb_dim=8, **SMALL), corpus, targets, epochs=1, verbose=0)
    with pytest.raises(ParameterError, match="needs a teacher"):
        distill(build_student("ds", emb_dim=8, **SMALL), corpus, epochs=1, verbose=0)


@pytest.mark.shared
def test_sea_reduces_loss_on_projected_targets(corpus, sea64_targets, tmp_path):
    raw, cache = sea64_targets
    keras.utils.set_random_seed(3)
    student = build_student("ds", emb_dim=8, **SMALL)
    projection = sea.SEAProjection(8, sampling="diversity", n_samples=120, random_state=0)
    result, fitted = sea.sea_distill(
        student,
        corpus,
        teacher=SEA64_GZ,
        projection=projection,
        target_cache=cache,
        epochs=4,
        batch_size=32,
        learning_rate=3e-3,
        verbose=0,
    )
    assert fitted.sample_index_.shape == (120,)
    targets = fitted.transform(raw)
    # Standardised PCA scores are centred: about half are negative (a BN+ReLU head can't).
    assert 0.2 < np.mean(targets < 0) < 0.8
    # Same tolerance reasoning as the KD test (observed ~0.5x after 4 epochs).
    assert result.best_val_loss < 0.75 * result.initial_val_loss
    path = fitted.save(tmp_path / "phi.npz")
    np.testing.assert_allclose(sea.SEAProjection.load(path).transform(raw), targets, atol=1e-5)


@pytest.mark.shared
def test_sea_samplings(corpus, sea64_targets):
    raw, _ = sea64_targets
    for sampling in sea.SAMPLINGS:
        index = sea.sample_points(
            raw, 50, sampling, loudness=corpus.loudness, groups=corpus.file_index, rng=0
        )
        assert index.shape == (50,) and np.unique(index).size == 50
    relevance = sea.relevance_scores([3.0, 1.0, 2.0, 2.0, 5.0], [0, 0, 0, 1, 1])
    np.testing.assert_allclose(relevance, [1.0, 1 / 3, 2 / 3, 0.5, 1.0])
    with pytest.raises(ParameterError, match="needs the loudness"):
        sea.sample_points(raw, 5, "relevance")
    identity = sea.SEAProjection(None).fit(raw)
    np.testing.assert_allclose(identity.transform(raw), raw, atol=1e-6)


def test_kdpp_sampler_matches_exact_distribution():
    rng = np.random.default_rng(0)
    features = dpp.l1_normalise(rng.random((8, 3)) + np.eye(8, 3) * 3)
    subsets = list(itertools.combinations(range(8), 3))
    exact = np.exp([dpp.log_det_kernel(features, s, 0.1) for s in subsets])
    exact /= exact.sum()
    counts = dict.fromkeys(subsets, 0)
    n = 3000
    for seed in range(n):
        counts[tuple(dpp.sample_kdpp(features, 3, n_sweeps=10, rng=seed))] += 1
    empirical = np.array([counts[s] for s in subsets]) / n
    # Sampling noise alone gives a total-variation distance of ~0.05 with 3000 draws over
    # 56 subsets; uniform sampling would be at 0.21, so 0.1 separates right from wrong.
    assert 0.5 * np.abs(empirical - exact).sum() < 0.1
    assert 0.5 * np.abs(1 / len(subsets) - exact).sum() > 0.15


def test_augmentations(rng):
    batch = rng.normal(size=(6, 800)).astype(np.float32)
    original = batch.copy()
    louder = augment.random_gain(batch, rng, (6.0, 6.0))
    np.testing.assert_allclose(louder, batch * 10 ** (6 / 20), rtol=1e-5)
    others = rng.normal(size=(6, 800)).astype(np.float32)
    mixed = augment.mix(batch, others, rng, (10.0, 10.0))
    added = mixed - batch
    ratio = np.mean(batch**2, axis=1) / np.mean(added**2, axis=1)
    np.testing.assert_allclose(10 * np.log10(ratio), 10.0, atol=1e-3)  # float32 rounding
    noisy = augment.add_noise(batch, rng, (20.0, 20.0), color="pink")
    snr = np.mean(batch**2, axis=1) / np.mean((noisy - batch) ** 2, axis=1)
    np.testing.assert_allclose(10 * np.log10(snr), 20.0, atol=1e-3)
    shifted = augment.time_shift(batch, rng, 0.1)
    for row, out in zip(batch, shifted):
        lags = [s for s in range(-80, 81) if np.allclose(np.roll(row, s)[80:-80], out[80:-80])]
        assert len(lags) == 1
    out = augment.Augmenter(p_gain=1, p_mix=1, p_noise=1, p_shift=1)(batch, rng)
    assert out.shape == batch.shape and not np.allclose(out, batch)
    np.testing.assert_array_equal(batch, original)  # inputs are never modified
    with pytest.raises(ParameterError, match="probability"):
        augment.Augmenter(p_mix=2)


def test_synth_windows_are_varied_and_reproducible():
    first, second = synth_windows(40, seed=5), synth_windows(40, seed=5)
    np.testing.assert_array_equal(first.windows, second.windows)
    assert isinstance(first, WindowSet) and np.all(first.file_index == -1)
    assert np.abs(first.windows).max() <= 1.0 and first.loudness.std() > 3.0  # dB spread


@pytest.mark.shared
@pytest.mark.parametrize("command", ["distill", "sea"])
def test_training_cli(command, tmp_path, capsys):
    from edgel3.cli import main

    files = [str(p) for p in sorted((DATA_DIR / "fsdd" / "audio").glob("*.flac"))[:40:2]]
    out = tmp_path / "student.keras"
    extra = ["--dim", "8", "--sampling", "relevance"] if command == "sea" else []
    argv = [command, *files, "--teacher", str(SEA64_GZ), "--student", "ds", "--epochs", "1"]
    assert main([*argv, "-o", str(out), "--validation-split", "0.3", *extra]) == 0
    assert "validation MSE" in capsys.readouterr().out
    emb_dim = 8 if command == "sea" else 64  # distill defaults to the teacher's size
    assert load_model_file(out).output_shape == (None, emb_dim)
    if command == "sea":
        assert sea.SEAProjection.load(f"{out}.projection.npz").pca_.n_components_ == 8
