"""``evaluate``: dataset + model -> cross-validated downstream scores, report and figures."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ..checks import check_flag, check_non_negative_int
from ..exceptions import ParameterError
from .datasets import Dataset, load_dataset
from .embeddings import embed_files

__all__ = ["evaluate", "QUICK_HOP_SIZE", "DEFAULT_HOP_SIZE"]

logger = logging.getLogger(__name__)

#: The papers' hop (``docs/evaluate.rst``, Protocol).
DEFAULT_HOP_SIZE = 0.1
#: Quick mode's hop: 5x fewer windows to embed and classify.
QUICK_HOP_SIZE = 0.5


def evaluate(
    dataset,
    metadata=None,
    *,
    layout: str = "auto",
    model=None,
    classifier: str | None = None,
    quick: bool = False,
    hop_size: float | None = None,
    center: bool = True,
    folds=None,
    test_folds=None,
    param_grid: dict | None = None,
    seed: int = 0,
    out_dir=None,
    cache_dir=None,
    plots: bool = True,
    batch_size: int = 64,
    verbose: bool = False,
) -> dict:
    """Cross-validate a classifier on the embeddings of a labelled dataset.

    Clips are embedded once (cached on disk by file content, model, hop and
    centring), then each fold is held out in turn: classifiers train on the
    other folds' frame embeddings (scaler and hyper-parameters fitted there
    only) and a clip's prediction is the mean of its frame scores.

    Parameters
    ----------
    dataset : Dataset or path-like
        A :class:`~edgel3.evaluate.datasets.Dataset`, or an audio folder read
        with ``metadata`` and ``layout`` by
        :func:`~edgel3.evaluate.datasets.load_dataset`.
    metadata : path-like, optional
        Metadata csv when ``dataset`` is a folder (ESC-50/ESC-10,
        UrbanSound8K or ``path,label,fold``).
    layout : {'auto', 'esc50', 'us8k', 'generic'}
    model : None, str, path-like, keras.Model or runner
        Any model :func:`edgel3.reference.resolve_model` accepts: an official
        or short name (``'sea-64'``), the bundled ``'tiny'``, a model file
        (``.h5``, ``.h5.gz``, ``.keras``, ``.tflite``), a loaded Keras model
        (audio ``(b, 1, sr)`` -> ``(b, d)``) or a runner such as a loaded
        :class:`edgel3.litert.LiteRTModel`. None is get_embedding's default
        official model.
    classifier : {'mlp', 'logreg', 'svm'} or sklearn estimator, optional
        Default ``'mlp'`` (the papers' protocol), or ``'logreg'`` when
        ``quick``. An estimator is used as is (wrap it with a scaler yourself).
    quick : bool
        Fast settings: hop 0.5 s, logistic regression, no grid search (the
        MLP, if asked for, trains one setting for at most 50 epochs).
    hop_size : float, optional
        Hop between windows in seconds (default 0.1, or 0.5 when ``quick``).
    center : bool
        Centre windows on their timestamps.
    folds : sequence, optional
        Use only the clips of these folds (default: all).
    test_folds : sequence, optional
        Hold out only these folds (default: every fold used).
    param_grid : dict, optional
        ``{name: [values]}`` replacing the classifier's default grid, e.g.
        ``{'learning_rate': [1e-4], 'max_epochs': [30]}``.
    seed : int
        Seeds classifiers and inner splits; results are reproducible.
    out_dir : path-like, optional
        Folder for ``report.json``, ``predictions.csv``,
        ``confusion_matrix.png`` and ``embedding_map.png``; nothing is
        written there when None.
    cache_dir : path-like, optional
        Embedding cache; default ``$EDGEL3_CACHE_DIR/embeddings``, else
        ``<out_dir>/embeddings``, else the per-user edgel3 cache.
    plots : bool
        Draw the figures (needs ``out_dir``).
    batch_size : int
        Windows per forward pass.
    verbose : bool
        Progress bars (embedding, fits).

    Returns
    -------
    dict
        The report (what ``report.json`` holds): ``dataset``, ``model``,
        ``embedding``, ``protocol``, ``folds`` (per fold: score, chosen
        ``params``, ``candidates``), ``accuracy`` (``mean``, ``std``,
        ``per_fold``, ``pooled``), ``macro_f1``, ``per_class`` (precision,
        recall, f1, support), ``confusion_matrix``; for multi-label data
        ``auprc`` (``micro`` and ``macro``, each mean/std/per_fold) instead
        of accuracy; ``timings`` and ``files`` (paths written).

    Raises
    ------
    ParameterError
        For bad options, layouts or models, invalid metadata rows, or folds
        that cannot be held out (``docs/evaluate.rst``, Metadata checks);
        all raised before anything is embedded or written.
    AudioError
        For unreadable audio files.
    WeightsError
        If the model cannot be loaded.

    Examples
    --------
    >>> from edgel3.evaluate import evaluate
    >>> report = evaluate('esc10', 'esc10/meta/esc10.csv', model='sea-64',
    ...                   quick=True, out_dir='esc10_report')       # doctest: +SKIP
    >>> report['accuracy']['mean'], report['accuracy']['std']    # doctest: +SKIP
    """
    from .classifiers import make_classifier
    from .protocol import check_splits, cross_validate, expand_grid

    start = time.perf_counter()
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, metadata, layout=layout)
    elif metadata is not None:
        raise ParameterError("metadata is only used when dataset is a folder, not a Dataset.")
    if folds is not None:
        dataset = dataset.subset(folds)
    seed = check_non_negative_int(seed, "seed")
    quick = check_flag(quick, "quick")
    plots = check_flag(plots, "plots")
    if hop_size is None:
        hop_size = QUICK_HOP_SIZE if quick else DEFAULT_HOP_SIZE
    if classifier is None:
        classifier = "logreg" if quick else "mlp"
    if isinstance(classifier, str):
        estimator, grid = make_classifier(
            classifier, multilabel=dataset.multilabel, quick=quick, seed=seed
        )
        classifier_name = classifier
    elif hasattr(classifier, "fit") and hasattr(classifier, "get_params"):
        estimator, grid, classifier_name = classifier, {}, type(classifier).__name__
    else:
        raise ParameterError(
            "classifier must be 'mlp', 'logreg', 'svm' or a scikit-learn estimator; "
            f"got {classifier!r}."
        )
    if param_grid is not None:
        grid = dict(param_grid)
    # Every held-out fold must be trainable and scorable before anything is embedded.
    check_splits(
        dataset.labels,
        dataset.folds,
        test_folds=test_folds,
        groups=dataset.groups,
        n_candidates=len(expand_grid(grid)),
        seed=seed,
        classes=dataset.classes,
        names=dataset.describe,
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
    if cache_dir is None and out_dir is not None:
        from .cache import default_cache_dir

        cache_dir = default_cache_dir(out_dir)

    embeddings, info = embed_files(
        dataset.paths,
        model,
        hop_size=hop_size,
        center=center,
        cache_dir=cache_dir,
        batch_size=batch_size,
        verbose=verbose,
    )
    embedded = time.perf_counter()
    cv = cross_validate(
        embeddings,
        dataset.labels,
        dataset.folds,
        estimator=estimator,
        param_grid=grid,
        groups=dataset.groups,
        test_folds=test_folds,
        n_classes=len(dataset.classes),
        seed=seed,
        verbose=verbose,
    )
    classified = time.perf_counter()

    from .report import build_report, write_predictions, write_report

    settings = {
        "hop_size": float(hop_size),
        "center": bool(center),
        "emb_dim": int(embeddings[0].shape[1]),
        "n_frames": int(sum(len(e) for e in embeddings)),
        "classifier": classifier_name,
        "param_grid": grid,
        "quick": bool(quick),
        "seed": seed,
    }
    timings = {
        "embedding_s": embedded - start,
        "classification_s": classified - embedded,
    }
    report = build_report(dataset, cv, info, settings=settings, timings=timings)
    report["dataset"]["skipped"] = list(dataset.skipped)
    if out_dir is not None:
        files = report["files"]
        files["predictions"] = write_predictions(dataset, cv, out_dir / "predictions.csv")
        if plots:
            files.update(_plots(dataset, cv, embeddings, report, out_dir, seed))
        files["report"] = os.fspath(out_dir / "report.json")
    report["timings"]["total_s"] = time.perf_counter() - start
    if out_dir is not None:
        write_report(report, out_dir / "report.json")
    return report


def _plots(dataset, cv, embeddings, report, out_dir, seed) -> dict:
    from .plots import embedding_map, plot_confusion_matrix, plot_embedding_map

    files = {}
    model = report["model"]["name"]
    if not cv.multilabel:
        acc = report["accuracy"]
        files["confusion_matrix"] = plot_confusion_matrix(
            report["confusion_matrix"]["matrix"],
            dataset.classes,
            out_dir / "confusion_matrix.png",
            title=f"{model} on {dataset.name}: accuracy {acc['mean']:.3f} "
            f"+- {acc['std']:.3f} ({len(cv.folds)} folds)",
        )
    if len(dataset) >= 5:
        features = np.stack([e.mean(axis=0) for e in embeddings])
        coordinates, index = embedding_map(features, seed=seed)
        if dataset.multilabel:
            first = np.where(dataset.labels.any(axis=1), np.argmax(dataset.labels, axis=1), -1)
        else:
            first = dataset.labels
        files["embedding_map"] = plot_embedding_map(
            coordinates,
            first[index],
            dataset.classes,
            out_dir / "embedding_map.png",
            title=f"t-SNE of mean clip embeddings: {model} on {dataset.name}",
        )
    return files
