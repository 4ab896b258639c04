"""Clip-level metrics: accuracy, per-class P/R/F1, confusion matrix, micro/macro AUPRC."""

from __future__ import annotations

import numpy as np

__all__ = [
    "aggregate_frames",
    "classification_metrics",
    "multilabel_metrics",
    "average_precision",
    "mean_std",
]


def aggregate_frames(frame_scores: np.ndarray, counts) -> np.ndarray:
    """Mean of consecutive frame scores per clip.

    Parameters
    ----------
    frame_scores : np.ndarray [shape=(sum(counts), n_classes)]
        Frame scores, clips one after another.
    counts : sequence of int [length n_clips]
        Frames per clip (each >= 1).

    Returns
    -------
    np.ndarray [shape=(n_clips, n_classes)]

    Examples
    --------
    >>> aggregate_frames(np.array([[1., 0.], [0., 1.], [0., 1.]]), [2, 1])
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(np.asarray(frame_scores, dtype=np.float64), starts, axis=0)
    return sums / counts[:, None]


def mean_std(values) -> dict:
    """``{'mean', 'std', 'per_fold'}`` of fold scores (population std, ``ddof=0``)."""
    values = [float(v) for v in values]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "per_fold": values,
    }


def classification_metrics(y_true, y_pred, n_classes: int) -> dict:
    """Single-label metrics of clip predictions.

    Parameters
    ----------
    y_true, y_pred : np.ndarray [shape=(n,)]
        Class indices.
    n_classes : int

    Returns
    -------
    dict
        ``accuracy``; ``precision``, ``recall``, ``f1``, ``support`` (lists of
        length ``n_classes``; 0 where undefined); ``macro_f1``;
        ``confusion_matrix`` (rows = true class, columns = predicted).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.arange(n_classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def average_precision(y_true, scores) -> float:
    """Area under the precision-recall curve as average precision (step rule).

    ``sum_k (R_k - R_{k-1}) P_k`` over decreasing score thresholds, as
    :func:`sklearn.metrics.average_precision_score`. NaN when ``y_true`` has
    no positive.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n,)] of bool
    scores : np.ndarray [shape=(n,)]

    Returns
    -------
    float
    """
    from sklearn.metrics import average_precision_score

    y_true = np.asarray(y_true).astype(bool)
    if not y_true.any():
        return float("nan")
    return float(average_precision_score(y_true, scores))


def multilabel_metrics(y_true, scores, *, threshold: float = 0.5) -> dict:
    """Multi-label metrics of clip scores.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_classes)] of bool
    scores : np.ndarray [shape=(n, n_classes)]
        Higher means more likely.
    threshold : float
        Decision threshold for precision/recall/F1.

    Returns
    -------
    dict
        ``micro_auprc`` (all clip-class pairs pooled), ``macro_auprc`` (mean
        over classes with at least one positive), ``average_precision`` per
        class (None without positives), and thresholded ``precision``,
        ``recall``, ``f1``, ``support`` per class and ``micro_f1``.
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    per_class = [average_precision(y_true[:, k], scores[:, k]) for k in range(y_true.shape[1])]
    defined = [ap for ap in per_class if not np.isnan(ap)]
    predicted = scores >= threshold
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, average=None, zero_division=0
    )
    return {
        "micro_auprc": average_precision(y_true.ravel(), scores.ravel()),
        "macro_auprc": float(np.mean(defined)) if defined else float("nan"),
        "average_precision": [None if np.isnan(ap) else ap for ap in per_class],
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
        "micro_f1": float(f1_score(y_true, predicted, average="micro", zero_division=0)),
    }
