"""The evaluation report: a JSON-ready dict, its file, a predictions csv and a text summary."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from datetime import datetime, timezone

import numpy as np

from ..files import atomic_write
from .metrics import classification_metrics, mean_std, multilabel_metrics

__all__ = ["build_report", "write_report", "write_predictions", "format_summary"]


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fingerprint(dataset, digests) -> str:
    digest = hashlib.sha256()
    for d, fold, label in sorted(
        zip(digests, map(str, dataset.folds), map(str, dataset.labels.tolist()))
    ):
        digest.update(f"{d} {fold} {label}\n".encode())
    return digest.hexdigest()


def _per_class(classes, metrics, keys) -> dict:
    return {name: {key: metrics[key][k] for key in keys} for k, name in enumerate(classes)}


def build_report(dataset, cv, embed_info, *, settings: dict, timings: dict) -> dict:
    """Assemble the report of one evaluation.

    Parameters
    ----------
    dataset : Dataset
        The evaluated clips.
    cv : CrossValidationResult
    embed_info : dict
        From :func:`~edgel3.evaluate.embeddings.embed_files`.
    settings : dict
        Protocol settings (classifier, grid, hop, seed, ...).
    timings : dict
        Seconds per stage.

    Returns
    -------
    dict
        JSON-ready; see :func:`edgel3.evaluate.evaluate` for the keys.
    """
    from ..version import __version__

    test_index = np.concatenate([f.test_index for f in cv.folds])
    scores = np.concatenate([f.scores for f in cv.folds])
    folds = []
    per_fold_metric = []
    for fold in cv.folds:
        y = dataset.labels[fold.test_index]
        entry = {
            "fold": fold.fold,
            "n_test": len(fold.test_index),
            "train_folds": fold.train_folds,
            "params": fold.params,
            "training": fold.training,
            "validation": fold.validation,
            "candidates": fold.candidates,
            "seconds": fold.seconds,
            "notes": fold.notes,
        }
        if cv.multilabel:
            m = multilabel_metrics(y, fold.scores, threshold=_threshold(cv))
            entry.update(micro_auprc=m["micro_auprc"], macro_auprc=m["macro_auprc"])
            per_fold_metric.append((m["micro_auprc"], m["macro_auprc"]))
        else:
            entry["accuracy"] = float(np.mean(np.argmax(fold.scores, axis=1) == y))
            per_fold_metric.append(entry["accuracy"])
        folds.append(entry)
    y_all = dataset.labels[test_index]
    report = {
        "edgel3_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": "multilabel" if cv.multilabel else "multiclass",
        "dataset": {
            "name": dataset.name,
            "layout": dataset.layout,
            "metadata": dataset.metadata,
            "n_clips": len(dataset),
            "n_classes": len(dataset.classes),
            "classes": list(dataset.classes),
            "folds": list(dataset.fold_names),
            "fingerprint": _fingerprint(dataset, embed_info["digests"]),
        },
        "model": embed_info["model"],
        "embedding": {
            "hop_size": settings["hop_size"],
            "center": settings["center"],
            "emb_dim": settings["emb_dim"],
            "n_frames": settings["n_frames"],
            "cache_dir": embed_info["cache_dir"],
            "computed_files": embed_info["computed"],
            "cached_files": embed_info["cached"],
            "file_warnings": embed_info["warnings"],
        },
        "protocol": {
            "classifier": settings["classifier"],
            "param_grid": settings["param_grid"],
            "quick": settings["quick"],
            "seed": settings["seed"],
            "test_folds": [f.fold for f in cv.folds],
            "clip_score": "mean of frame "
            + ("probabilities" if cv.score_kind == "proba" else "decision values"),
            "selection": "leave-one-fold-out; grid chosen on a validation fold "
            "inside the training folds; scaler fitted on training frames only",
        },
        "folds": folds,
    }
    if cv.multilabel:
        m = multilabel_metrics(y_all, scores, threshold=_threshold(cv))
        report["auprc"] = {
            "micro": mean_std([p[0] for p in per_fold_metric]),
            "macro": mean_std([p[1] for p in per_fold_metric]),
            "pooled_micro": m["micro_auprc"],
            "pooled_macro": m["macro_auprc"],
        }
        report["micro_f1"] = m["micro_f1"]
        report["per_class"] = _per_class(
            dataset.classes, m, ("average_precision", "precision", "recall", "f1", "support")
        )
    else:
        m = classification_metrics(y_all, np.argmax(scores, axis=1), len(dataset.classes))
        report["accuracy"] = mean_std(per_fold_metric)
        report["accuracy"]["pooled"] = m["accuracy"]
        report["macro_f1"] = m["macro_f1"]
        report["per_class"] = _per_class(
            dataset.classes, m, ("precision", "recall", "f1", "support")
        )
        report["confusion_matrix"] = {
            "labels": list(dataset.classes),
            "matrix": m["confusion_matrix"],
        }
    report["timings"] = timings
    report["files"] = {}
    return _jsonable(report)


def _threshold(cv) -> float:
    return 0.5 if cv.score_kind == "proba" else 0.0


def write_report(report: dict, path) -> str:
    """Write the report as indented JSON, atomically; returns the path.

    Raises
    ------
    OutputError
        If it cannot be written.
    """
    text = json.dumps(report, indent=1, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))
    return os.fspath(path)


def write_predictions(dataset, cv, path) -> str:
    """Write one csv row per tested clip: path, fold, true and predicted label(s), scores.

    Raises
    ------
    OutputError
        If it cannot be written.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["path", "fold", "label", "predicted", *[f"score_{c}" for c in dataset.classes]]
    )
    threshold = _threshold(cv)
    for fold in cv.folds:
        for i, row in zip(fold.test_index, fold.scores):
            if cv.multilabel:
                true = ";".join(c for c, on in zip(dataset.classes, dataset.labels[i]) if on)
                predicted = ";".join(c for c, s in zip(dataset.classes, row) if s >= threshold)
            else:
                true = dataset.classes[dataset.labels[i]]
                predicted = dataset.classes[int(np.argmax(row))]
            writer.writerow(
                [str(dataset.paths[i]), fold.fold, true, predicted, *[f"{s:.6g}" for s in row]]
            )
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))
    return os.fspath(path)


def format_summary(report: dict) -> str:
    """A few lines for the terminal: data, model, per-fold and mean scores, worst classes.

    Parameters
    ----------
    report : dict

    Returns
    -------
    str
    """
    data, model, emb, proto = (
        report["dataset"],
        report["model"],
        report["embedding"],
        report["protocol"],
    )
    lines = [
        f"edgel3 evaluate: model {model['name']} on {data['name']} ({data['n_clips']} clips, "
        f"{data['n_classes']} classes, folds {data['folds']})",
        f"embeddings: {emb['emb_dim']}-d, hop {emb['hop_size']} s, "
        f"{emb['computed_files']} computed, {emb['cached_files']} from cache; "
        f"classifier {proto['classifier']}{' (quick)' if proto['quick'] else ''}",
    ]
    if report["task"] == "multilabel":
        micro, macro = report["auprc"]["micro"], report["auprc"]["macro"]
        per_fold = "  ".join(
            f"fold {f['fold']}: {f['micro_auprc']:.3f}/{f['macro_auprc']:.3f}"
            for f in report["folds"]
        )
        lines.append(f"micro/macro AUPRC per fold: {per_fold}")
        lines.append(
            f"micro-AUPRC {micro['mean']:.4f} +- {micro['std']:.4f}, macro-AUPRC "
            f"{macro['mean']:.4f} +- {macro['std']:.4f} (mean +- std over "
            f"{len(report['folds'])} folds)"
        )
    else:
        acc = report["accuracy"]
        per_fold = "  ".join(f"fold {f['fold']}: {f['accuracy']:.4f}" for f in report["folds"])
        lines.append(f"accuracy per fold: {per_fold}")
        lines.append(
            f"accuracy {acc['mean']:.4f} +- {acc['std']:.4f} (mean +- std over "
            f"{len(report['folds'])} folds); macro F1 {report['macro_f1']:.4f}"
        )
        f1 = sorted((v["f1"], k) for k, v in report["per_class"].items())
        lines.append("lowest F1: " + ", ".join(f"{k} {v:.2f}" for v, k in f1[:3]))
    t = report["timings"]
    lines.append(
        f"time: embedding {t['embedding_s']:.1f} s, classification {t['classification_s']:.1f} s, "
        f"total {t['total_s']:.1f} s"
    )
    for kind, path in report.get("files", {}).items():
        lines.append(f"{kind}: {path}")
    return "\n".join(lines)
