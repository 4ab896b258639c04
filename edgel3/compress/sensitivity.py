"""Pruning sensitivity sweep: prune one layer at a time and measure the damage.

The EdgeL3 plans were chosen this way (docs/compress.rst): each conv alone was
pruned at {70, 80, 85, 90, 95} % while the others stayed dense, and the effect
measured (AVC accuracy there).  Here the default measure needs no labels: the
distance of the pruned model's embeddings to the unpruned model's on the same
windows.  Any other measure can be plugged in: a function of the two embedding
arrays, or a function of the pruned model itself (e.g. a downstream accuracy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ParameterError
from .pruning import effective_kernel, magnitude_mask, prunable_layers

__all__ = ["METRICS", "SensitivityResult", "sensitivity_sweep"]

_EPS = 1e-12  # guards divisions by an all-zero reference embedding


def relative_l2(reference: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean ``||e - e_ref||`` over windows divided by the mean ``||e_ref||``."""
    distance = np.linalg.norm(embeddings - reference, axis=1).mean()
    return float(distance / (np.linalg.norm(reference, axis=1).mean() + _EPS))


def cosine_distance(reference: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean ``1 - cos(e, e_ref)`` over windows."""
    dot = np.sum(reference * embeddings, axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(embeddings, axis=1)
    return float(np.mean(1.0 - dot / (norms + _EPS)))


def mse(reference: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean squared difference over all embedding values."""
    return float(np.mean((embeddings - reference) ** 2))


#: Built-in embedding metrics, by name.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "relative_l2": relative_l2,
    "cosine": cosine_distance,
    "mse": mse,
}


@dataclass
class SensitivityResult:
    """Outcome of :func:`sensitivity_sweep`.

    Attributes
    ----------
    layers : list of str
        Swept layers.
    sparsities : list of float
        Swept sparsities (%).
    scores : np.ndarray [shape=(len(layers), len(sparsities))]
        Metric with only that layer pruned at that sparsity.
    baseline : float
        Metric of the unpruned model (0 for the distance metrics).
    metric : str
        Name of the metric.
    """

    layers: list[str]
    sparsities: list[float]
    scores: np.ndarray
    baseline: float
    metric: str = "relative_l2"
    extra: dict = field(default_factory=dict)

    def to_text(self) -> str:
        """The sweep as a text table: one row per layer, one column per sparsity."""
        head = f"{'layer':24}" + "".join(f"{s:>10g}%" for s in self.sparsities)
        rows = [f"{self.metric} (unpruned: {self.baseline:.4g})", head]
        for name, values in zip(self.layers, self.scores):
            rows.append(f"{name:24}" + "".join(f"{v:>11.4g}" for v in values))
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "sparsities": list(self.sparsities),
            "layers": {n: [float(v) for v in row] for n, row in zip(self.layers, self.scores)},
        }


def _predict(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    out = [
        np.asarray(model.predict_on_batch(inputs[i : i + batch_size]), dtype=np.float64)
        for i in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(out)


def sensitivity_sweep(
    model,
    inputs: np.ndarray | None = None,
    *,
    sparsities: Sequence[float] = (70, 80, 85, 90, 95),
    layers: Sequence[str] | None = None,
    metric: str | Callable = "relative_l2",
    evaluate: Callable | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> SensitivityResult:
    """Prune each conv alone at each sparsity and score the pruned model.

    Parameters
    ----------
    model : keras.Model
        The model to study; its weights are restored before returning.
    inputs : np.ndarray [shape=(n, 1, sr)], optional
        Audio windows the embeddings are compared on (needed unless ``evaluate``).
    sparsities : sequence of float
        Sparsities (%) to try on each layer.
    layers : sequence of str, optional
        Layers to sweep (default: every ``Conv2D``).
    metric : {'relative_l2', 'cosine', 'mse'} or callable
        ``metric(reference, embeddings) -> float`` on the ``(n, d)`` embeddings
        of the unpruned and the pruned model.
    evaluate : callable, optional
        ``evaluate(model) -> float`` scoring the pruned model directly (a
        downstream accuracy, ...); replaces ``metric``.
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SensitivityResult

    Raises
    ------
    ParameterError
        For an unknown metric or layer, missing ``inputs``, or bad sparsities.
    """
    from tqdm.auto import tqdm

    convs = {layer.name: layer for layer in prunable_layers(model)}
    names = list(convs) if layers is None else [str(n) for n in layers]
    unknown = [n for n in names if n not in convs]
    if unknown:
        raise ParameterError(f"Unknown conv layers {unknown}; the model has {list(convs)}.")
    values = [float(s) for s in sparsities]
    if not values or any(not 0 <= s <= 100 for s in values):
        raise ParameterError(f"sparsities must be percentages in [0, 100]; got {sparsities!r}.")
    if evaluate is None:
        if inputs is None:
            raise ParameterError("Give `inputs` (audio windows) or an `evaluate` function.")
        if callable(metric):
            score, label = metric, getattr(metric, "__name__", "custom")
        elif metric in METRICS:
            score, label = METRICS[metric], metric
        else:
            raise ParameterError(
                f"Unknown metric {metric!r}; expected one of {sorted(METRICS)} or a callable."
            )
        inputs = np.asarray(inputs, dtype=np.float32)
        reference = _predict(model, inputs, batch_size)

        def measure():
            return float(score(reference, _predict(model, inputs, batch_size)))
    else:
        label = getattr(evaluate, "__name__", "evaluate")

        def measure():
            return float(evaluate(model))

    baseline = measure()
    scores = np.zeros((len(names), len(values)))
    with tqdm(total=scores.size, disable=not progress, unit="trial") as bar:
        for i, name in enumerate(names):
            layer = convs[name]
            original = np.asarray(layer.kernel).copy()
            kernel = effective_kernel(layer)
            try:
                for j, sparsity in enumerate(values):
                    layer.kernel.assign(kernel * magnitude_mask(kernel, sparsity))
                    scores[i, j] = measure()
                    bar.update(1)
            finally:
                layer.kernel.assign(original)
    return SensitivityResult(names, values, scores, baseline, label)
