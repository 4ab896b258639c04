"""Fold protocol (no leakage), hand-checked metrics, the MLP classifier and the report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from edgel3.evaluate.classifiers import PAPER_GRID, FrameMLPClassifier, make_classifier
from edgel3.evaluate.datasets import Dataset
from edgel3.evaluate.metrics import (
    aggregate_frames,
    classification_metrics,
    mean_std,
    multilabel_metrics,
)
from edgel3.evaluate.protocol import cross_validate, expand_grid
from edgel3.evaluate.report import build_report, format_summary
from edgel3.exceptions import ParameterError

# --------------------------------------------------------------------------- leakage

CALLS: list[tuple[str, set]] = []


class _Spy(TransformerMixin, BaseEstimator):
    """Records which clips (column 0 holds the clip id) each fit/transform sees."""

    def fit(self, X, y=None):
        CALLS.append(("spy.fit", set(np.asarray(X)[:, 0].astype(int).tolist())))
        return self

    def transform(self, X):
        CALLS.append(("spy.transform", set(np.asarray(X)[:, 0].astype(int).tolist())))
        return X


class _RecordingScaler(StandardScaler):
    def fit(self, X, y=None, sample_weight=None):
        CALLS.append(("scaler.fit", set(np.asarray(X)[:, 0].astype(int).tolist())))
        return super().fit(X, y, sample_weight)


def _toy_clips(rng, n_folds=4, per_fold=12, n_classes=3, frames=3):
    """Clip embeddings: column 0 = clip id, then class-dependent noisy features."""
    n = n_folds * per_fold
    labels = np.arange(n) % n_classes
    folds = np.repeat(np.arange(1, n_folds + 1), per_fold)
    embeddings = []
    for i in range(n):
        feats = rng.normal(size=(frames, 4)) + 2.0 * np.eye(4)[labels[i]]
        embeddings.append(np.column_stack([np.full(frames, i), feats]).astype(np.float32))
    return embeddings, labels, folds


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4])
def test_scaler_and_grid_never_see_the_test_fold(rng, test_fold):
    embeddings, labels, folds = _toy_clips(rng)
    clips_of = {f: set(np.flatnonzero(folds == f).tolist()) for f in range(1, 5)}
    estimator = Pipeline(
        [("spy", _Spy()), ("scaler", _RecordingScaler()), ("clf", LogisticRegression())]
    )
    CALLS.clear()
    result = cross_validate(
        embeddings,
        labels,
        folds,
        estimator=estimator,
        param_grid={"C": [0.01, 1.0]},
        test_folds=[test_fold],
    )
    fits = [seen for name, seen in CALLS if name.endswith(".fit")]
    assert len(fits) == 2 * 3  # (spy + scaler) x (2 grid candidates + 1 refit)
    for seen in fits:
        assert not seen & clips_of[test_fold], "a fit saw test-fold clips"
    # Grid fits leave out the validation fold (the next fold, cyclically) too ...
    val_fold = test_fold % 4 + 1
    assert result.folds[0].validation == f"fold {val_fold}"
    train = set().union(*(clips_of[f] for f in clips_of if f != test_fold))
    assert fits[:4] == [train - clips_of[val_fold]] * 4
    # ... and the chosen setting is refitted on every training fold.
    assert fits[4:] == [train, train]
    predicted = [seen for name, seen in CALLS if name == "spy.transform"]
    assert predicted[-1] == clips_of[test_fold]
    assert {result.folds[0].params["C"]} <= {0.01, 1.0}


def test_single_training_fold_uses_grouped_split(rng):
    embeddings, labels, folds = _toy_clips(rng, n_folds=2)
    groups = np.arange(len(labels)) // 2  # pairs of clips from one "recording"
    estimator = Pipeline([("spy", _Spy()), ("clf", LogisticRegression())])
    CALLS.clear()
    result = cross_validate(
        embeddings,
        labels,
        folds,
        estimator=estimator,
        param_grid={"C": [0.1, 1.0]},
        groups=groups,
        test_folds=[2],
    )
    assert result.folds[0].validation == "25% of groups"
    grid_fit = CALLS[0][1]
    assert not grid_fit & set(np.flatnonzero(folds == 2).tolist())
    # A recording is never split between the inner training and validation clips.
    assert all(({2 * g, 2 * g + 1} <= grid_fit) or not ({2 * g} & grid_fit) for g in range(12))


def test_protocol_rejects_bad_input(rng):
    embeddings, labels, folds = _toy_clips(rng)
    estimator, _ = make_classifier("logreg", quick=True)
    with pytest.raises(ParameterError, match="at least two folds"):
        cross_validate(embeddings, labels, np.ones(len(labels)), estimator=estimator)
    with pytest.raises(ParameterError, match="test_folds must be folds"):
        cross_validate(embeddings, labels, folds, estimator=estimator, test_folds=[9])
    with pytest.raises(ParameterError, match="Unknown hyper-parameter 'lr'"):
        cross_validate(embeddings, labels, folds, estimator=estimator, param_grid={"lr": [1]})


# --------------------------------------------------------------------------- metrics


def test_classification_metrics_hand_checked():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, 3)
    # By hand: class 0 P=2/2 R=2/3; class 1 P=1/2 R=1/2; class 2 P=1/2 R=1/1.
    # Tolerance 1e-12: exact fractions computed in float64.
    np.testing.assert_allclose(m["precision"], [1.0, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(m["recall"], [2 / 3, 0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(m["f1"], [0.8, 0.5, 2 / 3], atol=1e-12)
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-12)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-12)
    assert m["support"] == [3, 2, 1]
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_auprc_hand_checked():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    s = np.array([[0.9, 0.2], [0.8, 0.6], [0.7, 0.4], [0.1, 0.3]])
    m = multilabel_metrics(y, s)
    # Class 0 ranks +,-,+,-: AP = (1/1 + 2/3) / 2. Class 1 ranks +,+,-,-: AP = 1.
    # Micro pools the 8 pairs: 0.9+ 0.8- 0.7+ 0.6+ 0.4+ 0.3- 0.2- 0.1-:
    # AP = (1/1 + 2/3 + 3/4 + 4/5) / 4. Tolerance 1e-12: exact fractions in float64.
    ap0 = (1 + 2 / 3) / 2
    np.testing.assert_allclose(m["average_precision"], [ap0, 1.0], atol=1e-12)
    assert m["macro_auprc"] == pytest.approx((ap0 + 1.0) / 2, abs=1e-12)
    assert m["micro_auprc"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 5) / 4, abs=1e-12)
    # Threshold 0.5: class 0 predicted {0,1,2} (2 right), class 1 predicted {1} (right).
    np.testing.assert_allclose(m["precision"], [2 / 3, 1.0], atol=1e-12)
    np.testing.assert_allclose(m["recall"], [1.0, 0.5], atol=1e-12)


def test_aggregation_and_fold_statistics():
    frames = np.array([[0.6, 0.4], [0.0, 1.0], [0.9, 0.1], [0.7, 0.3], [0.2, 0.8]])
    # Clip 1 = mean of frames 0-1 = (0.3, 0.7); clip 2 = mean of frames 2-4 = (0.6, 0.4).
    np.testing.assert_allclose(
        aggregate_frames(frames, [2, 3]), [[0.3, 0.7], [0.6, 0.4]], atol=1e-12
    )
    stats = mean_std([0.5, 0.7])
    assert stats["mean"] == pytest.approx(0.6, abs=1e-12)
    assert stats["std"] == pytest.approx(0.1, abs=1e-12)  # population std (ddof=0)


class _PlantedClassifier(ClassifierMixin, BaseEstimator):
    """Frame probabilities planted in columns 1..C of the features (for hand checks)."""

    def fit(self, X, y):
        self.classes_ = np.arange(np.asarray(X).shape[1] - 1)
        return self

    def predict_proba(self, X):
        return np.asarray(X)[:, 1:]


def test_report_scores_hand_checked(tmp_path):
    # Two folds, two clips each, both classes in each fold (a fold whose training
    # folds lack a class cannot be held out); clip scores are means of planted
    # frame probabilities.
    embeddings = [
        np.array([[0, 0.9, 0.1], [0, 0.3, 0.7]]),  # mean (0.6, 0.4) -> 0, true 0: right
        np.array([[1, 0.2, 0.8]]),  # -> 1, true 1: right
        np.array([[2, 0.4, 0.6], [2, 0.8, 0.2]]),  # mean (0.6, 0.4) -> 0, true 1: wrong
        np.array([[3, 0.9, 0.1]]),  # -> 0, true 0: right
    ]
    labels = np.array([0, 1, 1, 0])
    folds = [1, 1, 2, 2]
    cv = cross_validate(embeddings, labels, folds, estimator=_PlantedClassifier())
    # Tolerance 1e-6: frame features are stored as float32.
    np.testing.assert_allclose(cv.folds[0].scores[0], [0.6, 0.4], atol=1e-6)
    dataset = Dataset(
        paths=[tmp_path / f"{i}.wav" for i in range(4)],
        labels=labels,
        folds=folds,
        classes=["a", "b"],
        groups=["0", "1", "2", "3"],
        name="toy",
    )
    info = {
        "model": {"id": "m", "name": "m", "source": "keras"},
        "digests": ["0" * 64] * 4,
        "cache_dir": str(tmp_path),
        "cached": 0,
        "computed": 4,
        "warnings": {},
    }
    settings = {
        "hop_size": 0.1,
        "center": True,
        "emb_dim": 3,
        "n_frames": 6,
        "classifier": "planted",
        "param_grid": {},
        "quick": False,
        "seed": 0,
    }
    timings = {"embedding_s": 1.0, "classification_s": 2.0, "total_s": 3.0}
    report = build_report(dataset, cv, info, settings=settings, timings=timings)
    assert report["accuracy"]["per_fold"] == [1.0, 0.5]
    assert report["accuracy"]["mean"] == pytest.approx(0.75, abs=1e-12)
    assert report["accuracy"]["std"] == pytest.approx(0.25, abs=1e-12)
    # Pooled: class a predicted for clips 0, 2 and 3 (2 right); class b for clip 1
    # (right) of its clips 1 and 2.
    assert report["per_class"]["a"]["precision"] == pytest.approx(2 / 3, abs=1e-12)
    assert report["per_class"]["b"]["recall"] == pytest.approx(1 / 2, abs=1e-12)
    assert report["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert "accuracy 0.7500 +- 0.2500" in format_summary(report)


# --------------------------------------------------------------------------- classifiers


def test_expand_grid_and_paper_grid():
    assert len(expand_grid(PAPER_GRID)) == 9
    assert expand_grid({}) == [{}]
    with pytest.raises(ParameterError, match="non-empty lists"):
        expand_grid({"C": 1.0})


def _blobs(rng, n=240, n_classes=3):
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, 6)) + 3.0 * np.eye(6)[y]
    return X.astype(np.float32), y


def test_mlp_is_deterministic_and_learns(rng):
    X, y = _blobs(rng)
    groups = np.arange(len(y)) // 4  # "clips" of four frames
    params = dict(hidden_layer_sizes=(16,), max_epochs=40, patience=5, random_state=3)
    a = FrameMLPClassifier(**params).fit(X, y, groups=groups)
    b = FrameMLPClassifier(**params).fit(X, y, groups=groups)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # Well-separated blobs (3 sigma apart): nearly all training frames right.
    assert np.mean(a.predict(X) == y) > 0.9
    assert 1 <= a.best_epoch_ <= a.n_epochs_ <= 40
    assert len(a.validation_loss_curve_) == a.n_epochs_
    # Keras-style weight decay: wd * sum(W^2) on the mean batch loss.
    assert a.mlp_.alpha == pytest.approx(2 * 1e-4 * 32)


def test_mlp_early_stopping_and_multilabel(rng):
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 2, size=200)  # pure noise: validation loss stops improving
    mlp = FrameMLPClassifier(hidden_layer_sizes=(32,), max_epochs=200, patience=3).fit(X, y)
    assert mlp.n_epochs_ < 200 and mlp.n_epochs_ - mlp.best_epoch_ == 3
    Y = (rng.random(size=(200, 4)) < 0.3).astype(int)
    multi = FrameMLPClassifier(hidden_layer_sizes=(8,), max_epochs=3).fit(X, Y)
    proba = multi.predict_proba(X)
    assert proba.shape == (200, 4) and multi.predict(X).shape == (200, 4)
    with pytest.raises(ParameterError, match="max_epochs must be a positive integer"):
        FrameMLPClassifier(max_epochs=0).fit(X, y)


@pytest.mark.parametrize("name", ["mlp", "logreg", "svm"])
def test_make_classifier_grids(name):
    estimator, grid = make_classifier(name)
    assert [step for step, _ in estimator.steps] == ["scaler", "clf"]
    assert len(expand_grid(grid)) == (9 if name == "mlp" else 4)
    _, quick_grid = make_classifier(name, quick=True)
    assert quick_grid == {}
    with pytest.raises(ParameterError, match="classifier must be one of"):
        make_classifier("forest")
