"""Leave-one-fold-out cross-validation of frame classifiers on clip embeddings.

For each test fold ``k`` (``docs/evaluate.rst``, Protocol):

1. the training folds are all other folds; the test fold is never touched
   until the final prediction;
2. if the grid has several candidates, each is fitted on the training folds
   minus one *validation fold* (the next fold after ``k``, cyclically, among
   the training folds; with a single training fold, a 25 % split of its
   groups) and scored on it at clip level; the best is kept;
3. the chosen setting is refitted (scaler included) on all training folds and
   predicts the test fold; clip scores are the mean of frame scores.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ParameterError
from .metadata import check_folds, listing, sorted_unique
from .metrics import aggregate_frames, average_precision

__all__ = [
    "cross_validate",
    "check_splits",
    "CrossValidationResult",
    "FoldResult",
    "expand_grid",
    "MIN_TEST_FOLD_CLIPS",
]

#: Fewest clips a held-out (test) fold may hold: one clip scores 0 or 1 and is
#: almost always a typo in the metadata (``docs/evaluate.rst``, Metadata checks).
MIN_TEST_FOLD_CLIPS = 2

logger = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """One held-out fold.

    Attributes
    ----------
    fold : int or str
    test_index : np.ndarray [shape=(n_test,)]
        Clip indices of the fold.
    scores : np.ndarray [shape=(n_test, n_classes)]
        Clip scores (mean frame probability or decision value).
    params : dict
        The chosen hyper-parameters.
    training : dict
        Epochs run and best epoch of the final fit (iterative classifiers).
    validation : str or None
        How they were chosen (``'fold 2'``, ``'25% of groups'``, or None).
    candidates : list of dict
        Each candidate's ``params``, validation ``score`` (clip accuracy, or
        micro-AUPRC for multi-label data) and epochs.
    train_folds : list
    seconds : float
    notes : list of str
        Convergence warnings and similar.
    """

    fold: object
    test_index: np.ndarray
    scores: np.ndarray
    params: dict
    training: dict
    validation: str | None
    candidates: list
    train_folds: list
    seconds: float
    notes: list = field(default_factory=list)


@dataclass
class CrossValidationResult:
    """Clip scores of every held-out fold.

    Attributes
    ----------
    folds : list of FoldResult
    n_classes : int
    multilabel : bool
    score_kind : {'proba', 'decision'}
        Probabilities (threshold 0.5) or decision values (threshold 0).
    """

    folds: list
    n_classes: int
    multilabel: bool
    score_kind: str


def expand_grid(param_grid) -> list[dict]:
    """All combinations of a ``{name: [values]}`` grid (``[{}]`` when empty).

    Examples
    --------
    >>> expand_grid({'a': [1, 2], 'b': [3]})
    [{'a': 1, 'b': 3}, {'a': 2, 'b': 3}]
    """
    if not param_grid:
        return [{}]
    names = list(param_grid)
    for name in names:
        values = param_grid[name]
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not len(values):
            raise ParameterError(
                f"param_grid values must be non-empty lists; got {name}={values!r}."
            )
    return [dict(zip(names, combo)) for combo in itertools.product(*param_grid.values())]


def _qualify(estimator, params: dict) -> dict:
    """Map short names (``'C'``) onto the estimator's nested names (``'clf__C'``)."""
    valid = estimator.get_params(deep=True)
    out = {}
    for name, value in params.items():
        for candidate in (name, f"clf__{name}", f"clf__estimator__{name}"):
            if candidate in valid:
                out[candidate] = value
                break
        else:
            raise ParameterError(
                f"Unknown hyper-parameter {name!r} for {type(estimator).__name__}; "
                f"valid names include {sorted(k for k in valid if '__' not in k)[:12]}."
            )
    return out


def _groups_param(estimator) -> str | None:
    """The fit keyword receiving frame groups (early stopping by clip), if any."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last is not None and last != "passthrough":
            if "groups" in inspect.signature(last.fit).parameters:
                return f"{name}__groups"
        return None
    return "groups" if "groups" in inspect.signature(estimator.fit).parameters else None


class _Frames:
    """Frame matrix of a set of clips, clips contiguous."""

    def __init__(self, embeddings, labels, groups, clips):
        self.clips = np.asarray(clips, dtype=np.int64)
        self.counts = np.array([len(embeddings[i]) for i in self.clips], dtype=np.int64)
        self.X = np.concatenate([embeddings[i] for i in self.clips]).astype(np.float32)
        self.y = np.repeat(labels[self.clips], self.counts, axis=0)
        self.groups = np.repeat(groups[self.clips], self.counts)


def _frame_scores(estimator, X, n_classes) -> tuple[np.ndarray, str]:
    """Scores of every class (columns follow ``classes_``; absent classes get the minimum)."""
    if hasattr(estimator, "predict_proba"):
        scores, kind = np.asarray(estimator.predict_proba(X), dtype=np.float64), "proba"
    else:
        scores, kind = np.asarray(estimator.decision_function(X), dtype=np.float64), "decision"
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
    classes = np.asarray(getattr(estimator, "classes_", np.arange(scores.shape[1])))
    if scores.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return scores, kind
    full = np.full((len(X), n_classes), scores.min() - 1.0 if kind == "decision" else 0.0)
    full[:, classes.astype(int)] = scores
    return full, kind


def _fit(template, params, frames, groups_param, notes):
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    estimator = clone(template).set_params(**params)
    kwargs = {groups_param: frames.groups} if groups_param else {}
    # Frame classifiers are small: one BLAS thread is as fast on an idle machine
    # and 10-30x faster on a busy one (multi-threaded BLAS spins on shared cores).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(frames.X, frames.y, **kwargs)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            notes.append(f"{params}: {warning.message}")
            logger.info("convergence warning for %s: %s", params, warning.message)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return estimator


def _training_info(estimator) -> dict:
    """Epoch counts of iterative classifiers (e.g. FrameMLPClassifier), for reports."""
    last = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return {
        key: int(getattr(last, attr))
        for key, attr in (("epochs", "n_epochs_"), ("best_epoch", "best_epoch_"))
        if hasattr(last, attr)
    }


def _clip_scores(estimator, frames, n_classes) -> tuple[np.ndarray, str]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        scores, kind = _frame_scores(estimator, frames.X, n_classes)
    return aggregate_frames(scores, frames.counts), kind


def _selection_score(y_true, scores, multilabel) -> float:
    if multilabel:
        return average_precision(np.asarray(y_true).ravel(), scores.ravel())
    return float(np.mean(np.argmax(scores, axis=1) == y_true))


def _validation_split(train_clips, fold_of, order, test_fold, groups, seed):
    """Inner (fit, validation) clips and a description; see the module docstring."""
    train_folds = [f for f in order if f != test_fold]
    if len(train_folds) >= 2:
        position = order.index(test_fold)
        cyclic = order[position + 1 :] + order[:position]
        val_fold = cyclic[0]
        fit = np.array([i for i in train_clips if fold_of[i] != val_fold])
        val = np.array([i for i in train_clips if fold_of[i] == val_fold])
        return fit, val, f"fold {val_fold}"
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=seed)
    fit, val = next(splitter.split(train_clips, groups=groups[train_clips]))
    return train_clips[fit], train_clips[val], "25% of groups"


def check_splits(
    labels,
    folds,
    *,
    test_folds=None,
    groups=None,
    n_candidates: int = 1,
    seed: int = 0,
    classes=None,
    names=None,
) -> list:
    """The folds to hold out, once every split they make can be trained and scored.

    Needs nothing but labels and folds, so :func:`~edgel3.evaluate.evaluate`
    runs it before embedding anything; :func:`cross_validate` runs it too.

    Parameters
    ----------
    labels : np.ndarray [shape=(n_clips,) or (n_clips, n_classes)]
    folds : sequence [length n_clips]
    test_folds : sequence, optional
        Folds to hold out (default: all).
    groups : sequence [length n_clips], optional
        Source recordings, for the inner validation split.
    n_candidates : int
        Hyper-parameter settings to choose from (> 1: validation splits are
        checked too).
    seed : int
        Seed of the inner split.
    classes : sequence of str, optional
        Class names, for messages.
    names : callable, optional
        ``names(i)`` names clip ``i`` in messages (default ``clip i``).

    Returns
    -------
    list
        The held-out folds.

    Raises
    ------
    ParameterError
        Naming every problem at once: fewer than two folds, a test fold with
        fewer than :data:`MIN_TEST_FOLD_CLIPS` clips, training folds with fewer
        than two classes, test clips of a class no training fold has, or a
        validation split that cannot be fitted.
    """
    labels = np.asarray(labels)
    fold_of = list(folds)
    order = list(sorted_unique(fold_of))
    if len(order) < 2:
        raise ParameterError(f"Leave-one-fold-out needs at least two folds; got folds {order}.")
    held_out = order if test_folds is None else check_folds(test_folds, order, "test_folds")
    name = names or (lambda i: f"clip {i}")
    label = (lambda c: f'"{classes[c]}"') if classes is not None else str
    groups = np.asarray([str(g) for g in (range(len(fold_of)) if groups is None else groups)])
    problems = []
    for fold in held_out:
        test = np.array([i for i, f in enumerate(fold_of) if f == fold])
        train = np.array([i for i, f in enumerate(fold_of) if f != fold])
        if len(test) < MIN_TEST_FOLD_CLIPS:
            problems.append(
                f"fold {fold} has {len(test)} clip ({listing(map(name, test))}); a test fold "
                f"needs at least {MIN_TEST_FOLD_CLIPS}"
            )
            continue
        if labels.ndim == 2:
            continue  # multi-label: every class is a one-vs-rest problem of its own
        seen = set(labels[train].tolist())
        if len(seen) < 2:
            problems.append(
                f"the training folds of fold {fold} hold {len(seen)} class "
                f"({', '.join(map(label, sorted(seen)))}); a classifier needs two"
            )
            continue
        unseen = [i for i in test if labels[i] not in seen]
        if unseen:
            missing = ", ".join(map(label, sorted({int(labels[i]) for i in unseen})))
            problems.append(
                f"fold {fold} holds clips of classes no other fold has ({missing}): "
                f"{listing(map(name, unseen))}"
            )
            continue
        if n_candidates > 1:
            try:
                fit, _, how = _validation_split(train, fold_of, order, fold, groups, seed)
            except ValueError as exc:  # one training fold with a single recording
                problems.append(f"no validation split for fold {fold}: {exc}")
                continue
            if len(set(labels[fit].tolist())) < 2:
                problems.append(
                    f"hyper-parameter search for fold {fold} (validation on {how}) leaves "
                    "training data of one class"
                )
    if problems:
        raise ParameterError(
            f"Cannot hold out every fold: {'; '.join(problems)}. Nothing was embedded or scored."
        )
    return held_out


def cross_validate(
    embeddings,
    labels,
    folds,
    *,
    estimator,
    param_grid=None,
    groups=None,
    test_folds=None,
    n_classes: int | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> CrossValidationResult:
    """Leave-one-fold-out evaluation of a frame classifier.

    Parameters
    ----------
    embeddings : sequence of np.ndarray [shape=(frames_i, emb_dim)] [length n_clips]
        Frame embeddings of each clip.
    labels : np.ndarray [shape=(n_clips,) or (n_clips, n_classes)]
        Class indices, or a multi-hot matrix (multi-label).
    folds : sequence [length n_clips]
        Fold of each clip; at least two distinct folds.
    estimator : sklearn estimator
        Cloned for every fit. Its ``fit`` receives ``groups`` (per frame) when
        it (or a Pipeline's last step) accepts them.
    param_grid : dict, optional
        ``{name: [values]}``; names may omit the pipeline prefix (``'C'``).
    groups : sequence [length n_clips], optional
        Source recording of each clip (default: each clip alone); kept on one
        side of every inner split.
    test_folds : sequence, optional
        Folds to hold out (default: all); the others always train.
    n_classes : int, optional
        Number of classes (default: from ``labels``).
    seed : int
        Seed of inner random splits.
    verbose : bool
        Progress bar over fits.

    Returns
    -------
    CrossValidationResult

    Raises
    ------
    ParameterError
        For unknown hyper-parameters or test folds, or folds that cannot be
        held out (see :func:`check_splits`).
    """
    labels = np.asarray(labels)
    multilabel = labels.ndim == 2
    n_clips = len(embeddings)
    fold_of = list(folds)
    if len(fold_of) != n_clips or len(labels) != n_clips:
        raise ParameterError(
            f"Got {n_clips} clips, {len(labels)} labels and {len(fold_of)} folds; "
            "expected one of each per clip."
        )
    order = list(sorted_unique(fold_of))
    short = expand_grid(param_grid)
    candidates = [_qualify(estimator, p) for p in short]
    held_out = check_splits(
        labels,
        fold_of,
        test_folds=test_folds,
        groups=groups,
        n_candidates=len(candidates),
        seed=seed,
    )
    groups = np.asarray([str(g) for g in (range(n_clips) if groups is None else groups)])
    if n_classes is None:
        n_classes = labels.shape[1] if multilabel else int(labels.max()) + 1
    groups_param = _groups_param(estimator)
    score_kind = "proba"

    from tqdm.auto import tqdm

    n_fits = len(held_out) * (len(candidates) + (len(candidates) > 1))
    results = []
    with tqdm(total=n_fits, unit="fit", desc="classifying", disable=not verbose) as bar:
        for test_fold in held_out:
            start = time.perf_counter()
            test = np.array([i for i in range(n_clips) if fold_of[i] == test_fold])
            train = np.array([i for i in range(n_clips) if fold_of[i] != test_fold])
            notes, tried, how = [], [], None
            chosen = 0
            if len(candidates) > 1:
                fit_clips, val_clips, how = _validation_split(
                    train, fold_of, order, test_fold, groups, seed
                )
                fit_frames = _Frames(embeddings, labels, groups, fit_clips)
                val_frames = _Frames(embeddings, labels, groups, val_clips)
                best = -np.inf
                for k, params in enumerate(candidates):
                    model = _fit(estimator, params, fit_frames, groups_param, notes)
                    scores, _ = _clip_scores(model, val_frames, n_classes)
                    score = _selection_score(labels[val_clips], scores, multilabel)
                    tried.append({"params": short[k], "score": score, **_training_info(model)})
                    if score > best:  # ties keep the earlier (smaller) setting
                        best, chosen = score, k
                    bar.update(1)
            train_frames = _Frames(embeddings, labels, groups, train)
            model = _fit(estimator, candidates[chosen], train_frames, groups_param, notes)
            bar.update(1)
            scores, score_kind = _clip_scores(
                model, _Frames(embeddings, labels, groups, test), n_classes
            )
            results.append(
                FoldResult(
                    fold=test_fold,
                    test_index=test,
                    scores=scores,
                    params=short[chosen],
                    validation=how,
                    training=_training_info(model),
                    candidates=tried,
                    train_folds=[f for f in order if f != test_fold],
                    seconds=time.perf_counter() - start,
                    notes=notes,
                )
            )
            logger.info(
                "fold %s done in %.1f s (params %s)", test_fold, results[-1].seconds, short[chosen]
            )
    return CrossValidationResult(results, n_classes, multilabel, score_kind)
