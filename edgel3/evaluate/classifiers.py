"""Frame-level classifiers: the papers' MLP and fast scikit-learn baselines.

Every classifier is a scikit-learn :class:`~sklearn.pipeline.Pipeline`
``StandardScaler -> classifier`` trained on frame embeddings; clip scores are
the mean of frame scores (see :mod:`edgel3.evaluate.protocol`), so the scaler
is refitted on the training data of every fit and never sees a test fold.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..checks import check_choice, check_fraction, check_positive_int, is_real
from ..exceptions import ParameterError

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("edgel3.evaluate needs scikit-learn: pip install 'edgel3[eval]'") from exc

__all__ = [
    "FrameMLPClassifier",
    "CLASSIFIERS",
    "PAPER_GRID",
    "QUICK_MLP_PARAMS",
    "make_classifier",
]

#: Names accepted by :func:`make_classifier`.
CLASSIFIERS = ("mlp", "logreg", "svm")

#: The papers' grid (``docs/evaluate.rst``, Protocol): learning rate x L2 weight decay.
PAPER_GRID = {"learning_rate": [1e-5, 1e-4, 1e-3], "weight_decay": [1e-5, 1e-4, 1e-3]}

#: Quick mode's single MLP setting (no grid search, shorter training).
QUICK_MLP_PARAMS = {"learning_rate": 1e-3, "weight_decay": 1e-4, "max_epochs": 50, "patience": 10}

_BASELINE_GRID = {"C": [0.01, 0.1, 1.0, 10.0]}


class FrameMLPClassifier(ClassifierMixin, BaseEstimator):
    """The papers' per-frame MLP with early stopping on held-out clips.

    ``Dense(512, relu) -> Dense(128, relu) -> Dense(C, softmax)`` (sigmoid
    outputs for multi-label targets), L2 weight decay on every kernel, Adam,
    cross-entropy, mini-batches of 32, at most 150 epochs, early stopping with
    patience 20 on the validation loss, restoring the best epoch's weights.
    The validation frames are those of a ``validation_fraction`` of the
    *groups* (clips or source recordings), so frames of one clip never sit on
    both sides. Built on :class:`sklearn.neural_network.MLPClassifier`
    (``partial_fit`` per epoch); deterministic given ``random_state``.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int
    learning_rate : float
        Adam's learning rate.
    weight_decay : float
        Keras-style L2 factor: ``weight_decay * sum(W**2)`` is added to the
        mean batch loss (sklearn's ``alpha = 2 * weight_decay * batch_size``).
    batch_size : int
    max_epochs : int
    patience : int
        Epochs without a better validation loss before stopping.
    validation_fraction : float
        Share of groups held out for early stopping; 0 trains ``max_epochs``.
    random_state : int

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    mlp_ : sklearn.neural_network.MLPClassifier
        The network with the best epoch's weights.
    n_epochs_ : int
        Epochs run.
    best_epoch_ : int
        1-based epoch whose weights were kept.
    loss_curve_, validation_loss_curve_ : list of float
    """

    def __init__(
        self,
        hidden_layer_sizes=(512, 128),
        learning_rate=1e-3,
        weight_decay=1e-4,
        batch_size=32,
        max_epochs=150,
        patience=20,
        validation_fraction=0.15,
        random_state=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("batch_size", "max_epochs", "patience"):
            check_positive_int(getattr(self, name), name)
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if (
                not is_real(value)
                or not math.isfinite(value)
                or value < 0
                or (name == "learning_rate" and value == 0)
            ):
                raise ParameterError(f"{name} must be a positive number; got {name}={value!r}.")
        if self.validation_fraction != 0:  # 0: no early stopping
            check_fraction(self.validation_fraction, "validation_fraction")

    def _split(self, n, groups):
        if self.validation_fraction == 0:
            return np.arange(n), None
        from sklearn.model_selection import GroupShuffleSplit

        groups = np.arange(n) if groups is None else np.asarray(groups)
        if len(np.unique(groups)) < 2:
            return np.arange(n), None
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=self.validation_fraction, random_state=self.random_state
        )
        train, val = next(splitter.split(np.zeros(n), groups=groups))
        return train, val

    def fit(self, X, y, groups=None):
        """Train, holding out a share of ``groups`` for early stopping.

        Parameters
        ----------
        X : np.ndarray [shape=(n_frames, n_features)]
        y : np.ndarray [shape=(n_frames,) or (n_frames, n_classes)]
            Class labels, or a 0/1 indicator matrix for multi-label data.
        groups : np.ndarray [shape=(n_frames,)], optional
            Clip or recording of each frame (default: each frame alone).

        Returns
        -------
        self
        """
        from sklearn.neural_network import MLPClassifier
        from threadpoolctl import threadpool_limits

        self._check_params()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        multilabel = y.ndim == 2
        self.classes_ = np.arange(y.shape[1]) if multilabel else np.unique(y)
        train, val = self._split(len(X), groups)
        X_train, y_train = X[train], y[train]
        if val is not None:
            X_val, y_val = X[val], y[val]
        mlp = MLPClassifier(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            activation="relu",
            solver="adam",
            alpha=2.0 * self.weight_decay * self.batch_size,
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate,
            shuffle=True,
            random_state=self.random_state,
        )
        best, best_loss, waited = None, np.inf, 0
        self.loss_curve_, self.validation_loss_curve_ = [], []
        # Many tiny matrix products: one BLAS thread is fastest and avoids
        # oversubscribing shared machines (10-40x slower otherwise).
        with threadpool_limits(limits=1, user_api="blas"):
            for epoch in range(1, self.max_epochs + 1):
                mlp.partial_fit(X_train, y_train, classes=self.classes_)
                self.loss_curve_.append(float(mlp.loss_))
                if val is None:
                    best, self.best_epoch_ = mlp, epoch
                    continue
                loss = _cross_entropy(mlp.predict_proba(X_val), y_val, self.classes_)
                self.validation_loss_curve_.append(loss)
                if loss < best_loss - 1e-7:
                    best, best_loss, waited = copy.deepcopy(mlp), loss, 0
                    self.best_epoch_ = epoch
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        self.n_epochs_ = epoch
        self.mlp_ = best
        self.multilabel_ = multilabel
        return self

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_frames, n_features)]

        Returns
        -------
        np.ndarray [shape=(n_frames, n_classes)]
            Softmax rows (single-label) or independent sigmoids (multi-label).
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "mlp_")
        return self.mlp_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X):
        """Most probable class per frame (an indicator matrix for multi-label data)."""
        proba = self.predict_proba(X)
        if self.multilabel_:
            return (proba >= 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]


def _cross_entropy(proba, y, classes) -> float:
    """Mean categorical (or, for indicator ``y``, binary) cross-entropy."""
    eps = 1e-7
    proba = np.clip(proba, eps, 1 - eps)
    if y.ndim == 2:
        return float(-np.mean(y * np.log(proba) + (1 - y) * np.log(1 - proba)))
    index = np.searchsorted(classes, y)
    return float(-np.mean(np.log(proba[np.arange(len(y)), index])))


def make_classifier(
    name: str = "mlp", *, multilabel: bool = False, quick: bool = False, seed: int = 0
):
    """A frame classifier pipeline and its default hyper-parameter grid.

    Parameters
    ----------
    name : {'mlp', 'logreg', 'svm'}
        ``'mlp'``: :class:`FrameMLPClassifier` (grid :data:`PAPER_GRID`);
        ``'logreg'``: logistic regression; ``'svm'``: linear SVM (both with a
        grid over ``C`` in {0.01, 0.1, 1, 10}). Multi-label baselines are
        one-vs-rest.
    multilabel : bool
    quick : bool
        No grid: ``C=1`` for the baselines, :data:`QUICK_MLP_PARAMS` for the MLP.
    seed : int
        ``random_state`` of the classifier.

    Returns
    -------
    estimator : sklearn.pipeline.Pipeline
        ``StandardScaler`` then the classifier, step names ``'scaler'`` and ``'clf'``.
    param_grid : dict
        Lists of values, keyed by the classifier's own parameter names
        (``{}`` when there is nothing to choose).

    Raises
    ------
    ParameterError
        For an unknown name.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    check_choice(name, CLASSIFIERS, "classifier")
    if name == "mlp":
        clf = FrameMLPClassifier(random_state=seed)
        grid = dict(PAPER_GRID)
        if quick:
            clf.set_params(**QUICK_MLP_PARAMS)
            grid = {}
    else:
        if name == "logreg":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(C=1.0, max_iter=2000)
        else:
            from sklearn.svm import LinearSVC

            clf = LinearSVC(C=1.0, max_iter=5000, random_state=seed)
        grid = {} if quick else dict(_BASELINE_GRID)
        if multilabel:
            from sklearn.multiclass import OneVsRestClassifier

            clf = OneVsRestClassifier(clf)
    return Pipeline([("scaler", StandardScaler()), ("clf", clf)]), grid
