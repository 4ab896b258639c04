"""Figures of an evaluation: confusion matrix and a 2-D t-SNE map of clip embeddings.

Figures are drawn with :class:`matplotlib.figure.Figure` on the Agg canvas,
so no pyplot state or global backend is touched (safe in notebooks and
headless machines).
"""

from __future__ import annotations

import os

import numpy as np

from ..exceptions import ParameterError

__all__ = ["plot_confusion_matrix", "plot_embedding_map", "embedding_map"]


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("Plots need matplotlib: pip install 'edgel3[eval]'") from exc
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> str:
    from ..files import atomic_write

    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", bbox_inches="tight")
    return os.fspath(path)


def plot_confusion_matrix(matrix, classes, path, *, title: str = "") -> str:
    """Save a row-normalised confusion matrix (counts written in the cells) as PNG.

    Parameters
    ----------
    matrix : array-like [shape=(n_classes, n_classes)]
        Counts; rows are true classes, columns predictions.
    classes : sequence of str [length n_classes]
    path : path-like
        Output ``.png``.
    title : str

    Returns
    -------
    str
        ``path``.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    if matrix.shape != (n, n):
        raise ParameterError(
            f"matrix must be ({n}, {n}) for {n} classes; got shape {matrix.shape}."
        )
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.45 * n
    figure = _figure(size + 1.0, size)
    ax = figure.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), labels=classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color
                    )
    ax.set_title(title, fontsize=9)
    return _save(figure, path)


def embedding_map(features, *, seed: int = 0, max_points: int = 2000):
    """2-D t-SNE coordinates of standardised clip features.

    Parameters
    ----------
    features : np.ndarray [shape=(n, d)]
        One row per clip (e.g. the mean frame embedding), n >= 5.
    seed : int
    max_points : int
        Larger inputs are subsampled (seeded) to keep t-SNE fast.

    Returns
    -------
    coordinates : np.ndarray [shape=(m, 2)]
    index : np.ndarray [shape=(m,)]
        Rows of ``features`` that were mapped.
    """
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 5:
        raise ParameterError(
            f"t-SNE needs at least 5 rows of features; got shape {features.shape}."
        )
    index = np.arange(len(features))
    if len(index) > max_points:
        index = np.sort(np.random.default_rng(seed).choice(index, max_points, replace=False))
    scaled = StandardScaler().fit_transform(features[index])
    perplexity = float(min(30.0, (len(index) - 1) / 3.0))
    # Exact gradients are faster than Barnes-Hut up to ~1000 points (and Barnes-Hut's
    # OpenMP threads crawl on busy machines); 500 iterations suffice for a picture.
    method = "exact" if len(index) <= 1000 else "barnes_hut"
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        method=method,
        max_iter=500,
        random_state=seed,
    )
    return tsne.fit_transform(scaled), index


def plot_embedding_map(coordinates, labels, classes, path, *, title: str = "") -> str:
    """Save a scatter plot of 2-D coordinates coloured by class as PNG.

    Parameters
    ----------
    coordinates : np.ndarray [shape=(n, 2)]
    labels : np.ndarray [shape=(n,)]
        Class index per point (-1: no class, drawn grey).
    classes : sequence of str
    path : path-like
    title : str

    Returns
    -------
    str
        ``path``.
    """
    from matplotlib import colormaps

    coordinates = np.asarray(coordinates)
    labels = np.asarray(labels)
    figure = _figure(7.5, 6.0)
    ax = figure.add_subplot()
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    if (labels < 0).any():
        none = labels < 0
        ax.scatter(*coordinates[none].T, s=8, c="lightgrey", label="(none)")
    for k, name in enumerate(classes):
        mask = labels == k
        if mask.any():
            color = cmap(k % cmap.N)
            ax.scatter(*coordinates[mask].T, s=10, color=color, label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if len(classes) <= 30:
        ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)
