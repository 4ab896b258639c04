"""Unstructured per-layer magnitude pruning with masks that survive training.

Han et al.'s recipe as used for the EdgeL3 models (docs/compress.rst): each conv
kernel ``l`` loses a fixed share ``s_l`` of its weights, the smallest in
absolute value; biases and BatchNormalization are never pruned.  Unlike the
original ``percentile`` threshold (within one weight of the plan), a plan is
hit *exactly*: the ``round(s * n / 100)`` smallest ``|w|`` of a kernel of ``n``
weights are zeroed, ties broken by a stable argsort.

Pruned layers become :class:`MaskedConv2D`: the boolean mask is a
non-trainable weight, multiplied into the kernel in the forward pass (so pruned
weights get zero gradient) *and* re-applied after every optimiser step through
the kernel's constraint (so momentum cannot resurrect them).  Masks are
therefore kept by ``model.fit`` and by any custom loop that calls
``optimizer.apply``.  :func:`strip_masks` turns a masked model back into plain
``Conv2D`` layers with the zeros baked in (for saving or export).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import keras
import numpy as np

from ..exceptions import ParameterError
from ..layers import MaskedConv2D

__all__ = [
    "PLANS",
    "CONV_KERNEL_SIZES",
    "LayerSparsity",
    "MaskedConv2D",
    "get_plan",
    "plan_key",
    "effective_kernel",
    "pruned_count",
    "magnitude_mask",
    "prunable_layers",
    "prune_model",
    "strip_masks",
    "MODEL_SUFFIXES",
    "save_model",
    "reapply_masks",
    "sparsity_report",
    "format_report",
]

#: Per-layer plans (% of conv kernel weights zeroed, conv1..conv8), EdgeL3 Table II
#: and the unreleased 97/98/99 % plans (docs/compress.rst). Keys are Python float text.
PLANS: dict[str, tuple[float, ...]] = {
    "53.5": (0, 30, 40, 50, 30, 50, 50, 60),
    "63.5": (0, 40, 50, 60, 40, 60, 60, 70),
    "72.3": (0, 40, 50, 60, 40, 70, 70, 80),
    "73.5": (0, 60, 60, 70, 50, 70, 70, 80),
    "81.0": (0, 70, 70, 75, 60, 80, 80, 85),
    "87.0": (0, 80, 80, 85, 40, 85, 85, 95),
    "90.5": (30, 85, 85, 90, 60, 90, 90, 95),
    "95.45": (0, 85, 85, 85, 75, 95, 98, 98),
    "97.0": (0, 93, 94, 96, 97, 95.97, 98, 97),
    "98.0": (0, 95, 96, 97, 97, 98, 98.65, 98),
    "99.0": (0, 94, 96, 99, 99, 99, 99, 99.2),
}

#: Kernel sizes (weights, no bias) of the eight convs of the sparse L3 audio network.
CONV_KERNEL_SIZES = (576, 36864, 73728, 147456, 294912, 589824, 1179648, 2359296)


def plan_key(name) -> str | None:
    """The :data:`PLANS` key a plan name stands for.

    Parameters
    ----------
    name : str or float
        ``'87'``, ``87``, ``'87.0'``...

    Returns
    -------
    str or None
        ``'87.0'`` (Python's float text); ``None`` when ``name`` is not a number.
    """
    try:
        return repr(float(name))
    except (TypeError, ValueError):
        return None


def get_plan(plan, n_layers: int | None = None, *, names: Sequence[str] | None = None):
    """Resolve a pruning plan to one sparsity (%) per prunable layer.

    Parameters
    ----------
    plan : str, float, sequence of float or mapping
        An official plan by name (``'95.45'``, ``87``, ``'97'``: see :data:`PLANS`),
        a sequence with one sparsity per layer, or a mapping
        ``{layer name: sparsity}`` (layers not named stay dense).
    n_layers : int, optional
        Number of prunable layers; checked against the plan's length.
    names : sequence of str, optional
        Layer names, needed to resolve a mapping.

    Returns
    -------
    tuple of float
        Sparsities in percent, each in ``[0, 100]``.

    Raises
    ------
    ParameterError
        For an unknown plan name, a wrong length, an unknown layer name, or a
        sparsity outside ``[0, 100]``.

    Examples
    --------
    >>> get_plan('95.45')
    (0.0, 85.0, 85.0, 85.0, 75.0, 95.0, 98.0, 98.0)
    """
    if isinstance(plan, Mapping):
        if names is None:
            raise ParameterError("A plan given as {layer name: sparsity} needs the layer names.")
        unknown = sorted(set(plan) - set(names))
        if unknown:
            raise ParameterError(
                f"Plan names layers {unknown} that are not prunable layers of the model; "
                f"expected some of {list(names)}."
            )
        values = [plan.get(name, 0.0) for name in names]
    elif isinstance(plan, (str, numbers.Real)) and not isinstance(plan, bool):
        key = plan_key(plan)
        if key not in PLANS:
            raise ParameterError(
                f"Unknown pruning plan {plan!r}; expected one of {sorted(PLANS, key=float)}, "
                "a list with one sparsity per conv layer, or a {layer name: sparsity} mapping."
            )
        values = PLANS[key]
    else:
        try:
            values = list(plan)
        except TypeError:
            raise ParameterError(
                f"plan must be a name, a sequence or a mapping; got {type(plan).__name__}."
            ) from None
    values = tuple(float(v) for v in values)
    bad = [v for v in values if not 0.0 <= v <= 100.0]
    if bad:
        raise ParameterError(f"Sparsities must lie in [0, 100] percent; got {bad} in {plan!r}.")
    if n_layers is not None and len(values) != n_layers:
        raise ParameterError(
            f"Plan {plan!r} gives {len(values)} sparsities but the model has {n_layers} "
            f"prunable layers{' (' + ', '.join(names) + ')' if names else ''}."
        )
    return values


def pruned_count(n_weights: int, sparsity: float) -> int:
    """Weights zeroed by the exact rule: ``round(sparsity * n / 100)``, halves up.

    The product is computed on the decimal text of ``sparsity`` (``95.97``
    means exactly 9597/100), so no float error can move the count.

    Examples
    --------
    >>> pruned_count(36864, 85)
    31334
    """
    exact = Fraction(repr(float(sparsity))) * int(n_weights) / 100
    return int(exact + Fraction(1, 2)) if exact >= 0 else 0


def magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean keep-mask zeroing the ``round(sparsity * n / 100)`` smallest ``|w|``.

    Parameters
    ----------
    kernel : np.ndarray [shape=any]
        Weights of one layer.
    sparsity : float
        Percent of weights to zero, in ``[0, 100]``.

    Returns
    -------
    np.ndarray [shape=kernel.shape, dtype=bool]
        ``True`` for kept weights. Ties in ``|w|`` are broken by position
        (stable argsort), so the count is exact whatever the values.
    """
    flat = np.abs(np.asarray(kernel)).ravel()
    order = np.argsort(flat, kind="stable")
    keep = np.ones(flat.size, dtype=bool)
    keep[order[: pruned_count(flat.size, sparsity)]] = False
    return keep.reshape(np.shape(kernel))


# --------------------------------------------------------------------------- Keras side


def prunable_layers(model) -> list:
    """The ``Conv2D`` layers of a model (masked ones included), in graph order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _is_masked(layer) -> bool:
    return isinstance(layer, MaskedConv2D)


@dataclass(frozen=True)
class LayerSparsity:
    """Sparsity of one layer's kernel.

    Attributes
    ----------
    name : str
        Layer name.
    n_weights : int
        Kernel size (biases excluded).
    nonzero : int
        Non-zero kernel weights (after the mask, for masked layers).
    target : float or None
        Planned sparsity (%), when known.
    """

    name: str
    n_weights: int
    nonzero: int
    target: float | None = None

    @property
    def sparsity(self) -> float:
        """Achieved sparsity in percent."""
        return 100.0 * (1.0 - self.nonzero / self.n_weights)


def effective_kernel(layer) -> np.ndarray:
    """A conv layer's kernel as it computes: times its mask for masked layers.

    Parameters
    ----------
    layer : keras.layers.Conv2D or MaskedConv2D

    Returns
    -------
    np.ndarray [shape=(kh, kw, c_in, c_out)]
    """
    kernel = np.asarray(layer.kernel)
    if _is_masked(layer):
        kernel = kernel * np.asarray(layer.mask)
    return kernel


def sparsity_report(model, plan=None) -> list[LayerSparsity]:
    """Per-layer achieved sparsity of every ``Conv2D`` kernel of a model.

    Parameters
    ----------
    model : keras.Model
    plan : optional
        A plan (see :func:`get_plan`) to record as each layer's target.

    Returns
    -------
    list of LayerSparsity
    """
    layers = prunable_layers(model)
    names = [layer.name for layer in layers]
    targets = get_plan(plan, len(layers), names=names) if plan is not None else [None] * len(names)
    report = []
    for layer, target in zip(layers, targets):
        kernel = effective_kernel(layer)
        report.append(
            LayerSparsity(layer.name, int(kernel.size), int(np.count_nonzero(kernel)), target)
        )
    return report


def format_report(report: Sequence[LayerSparsity]) -> str:
    """Render a sparsity report as a text table (one line per layer and a total)."""
    lines = [f"{'layer':24} {'weights':>10} {'non-zero':>10} {'target %':>9} {'achieved %':>10}"]
    for row in report:
        target = "-" if row.target is None else f"{row.target:g}"
        lines.append(
            f"{row.name:24} {row.n_weights:>10} {row.nonzero:>10} {target:>9} {row.sparsity:>10.3f}"
        )
    total = sum(r.n_weights for r in report)
    nonzero = sum(r.nonzero for r in report)
    overall = 100.0 * (1 - nonzero / total) if total else 0.0
    lines.append(f"{'total':24} {total:>10} {nonzero:>10} {'':>9} {overall:>10.3f}")
    return "\n".join(lines)


def _clone_with(model, replace):
    """Clone a functional model, rebuilding the layers ``replace`` maps to a new class."""

    def clone(layer):
        cls = replace(layer)
        if cls is None:
            return layer.__class__.from_config(layer.get_config())
        return cls.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def prune_model(model, plan, *, layers: Sequence[str] | None = None):
    """Magnitude-prune a model's conv kernels to a per-layer plan, with training-proof masks.

    Parameters
    ----------
    model : keras.Model
        A functional model (e.g. from :mod:`edgel3.networks`); it is not modified.
    plan : str, float, sequence of float or mapping
        See :func:`get_plan`. With the default ``layers`` an official plan needs
        8 ``Conv2D`` layers (the L3 / SEA bodies).
    layers : sequence of str, optional
        Names of the layers to prune, in the plan's order (default: every
        ``Conv2D``, in graph order).

    Returns
    -------
    pruned : keras.Model
        A copy whose pruned layers are :class:`MaskedConv2D` (masks applied).
    report : list of LayerSparsity
        Achieved per-layer sparsity (with the plan as target).

    Raises
    ------
    ParameterError
        If the plan does not fit the layers, or a named layer is not a ``Conv2D``.

    Examples
    --------
    >>> from edgel3.networks import build_model
    >>> from edgel3.specs import get_spec
    >>> pruned, report = prune_model(build_model(get_spec('sea-64')), '95.45')  # doctest: +SKIP
    >>> [r.nonzero for r in report][:2]                                         # doctest: +SKIP
    [288, 1383]
    """
    convs = prunable_layers(model)
    by_name = {layer.name: layer for layer in convs}
    if layers is None:
        names = [layer.name for layer in convs]
    else:
        names = [str(n) for n in layers]
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ParameterError(
                f"Layers {missing} are not Conv2D layers of model {model.name!r}; "
                f"prunable layers: {list(by_name)}."
            )
    if not names:
        raise ParameterError(f"Model {model.name!r} has no Conv2D layer to prune.")
    sparsities = get_plan(plan, len(names), names=names)
    masks = {
        name: magnitude_mask(effective_kernel(by_name[name]), s)
        for name, s in zip(names, sparsities)
    }
    pruned = _clone_with(model, lambda layer: MaskedConv2D if layer.name in masks else None)
    for old, new in zip(model.layers, pruned.layers):
        weights = old.get_weights()
        if new.name in masks:
            kernel = effective_kernel(old)
            mask = masks[new.name]
            rest = weights[1 : 2 if old.use_bias else 1]
            new.set_weights([kernel * mask, *rest, mask.astype(kernel.dtype)])
        elif weights:
            new.set_weights(weights)
    target = dict(zip(names, sparsities))
    report = [
        LayerSparsity(r.name, r.n_weights, r.nonzero, target.get(r.name))
        for r in sparsity_report(pruned)
    ]
    return pruned, report


def reapply_masks(model) -> None:
    """Multiply every masked kernel by its mask in place (after manual weight edits)."""
    for layer in model.layers:
        if _is_masked(layer):
            layer.kernel.assign(np.asarray(layer.kernel) * np.asarray(layer.mask))


def strip_masks(model):
    """Return a copy with plain ``Conv2D`` layers and the masked zeros baked into the kernels.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`prune_model` (models without masks are copied).

    Returns
    -------
    keras.Model
        Same architecture and names as before pruning; saves with
        :func:`edgel3.legacy_h5.save_legacy_h5` or ``model.save``.
    """
    plain = _clone_with(model, lambda layer: keras.layers.Conv2D if _is_masked(layer) else None)
    for old, new in zip(model.layers, plain.layers):
        weights = old.get_weights()
        if _is_masked(old):
            weights = [effective_kernel(old), *weights[1:-1]]
        if weights:
            new.set_weights(weights)
    return plain


#: Endings of the model files :func:`save_model` writes.
MODEL_SUFFIXES = (".keras", ".h5", ".h5.gz")


def save_model(model, path) -> Path:
    """Save a (pruned, distilled) model atomically: ``.keras``, or ``.h5``/``.h5.gz``.

    ``.keras`` keeps the masks (:class:`MaskedConv2D`, so training can go on);
    ``.h5``/``.h5.gz`` use edgel3 0.2.1's legacy layout with the masks baked in
    (:func:`strip_masks`, :func:`edgel3.legacy_h5.save_legacy_h5`). The file
    appears complete or not at all, with the umask's mode
    (:class:`edgel3.files.atomic_write`).

    Parameters
    ----------
    model : keras.Model
    path : path-like
        Ends in one of :data:`MODEL_SUFFIXES`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        For another suffix.
    OutputError
        If the file cannot be written.
    """
    import shutil
    import tempfile

    from ..checks import check_output_path
    from ..files import atomic_write
    from ..legacy_h5 import save_legacy_h5

    path = check_output_path(path, "output", suffixes=MODEL_SUFFIXES)
    if path.name.endswith((".h5", ".h5.gz")):
        return save_legacy_h5(strip_masks(model), path, compress=path.name.endswith(".gz"))
    # Keras writes a .keras file in place (a kill leaves half a file): save it in a private
    # temporary folder, then copy it through atomic_write.
    with tempfile.TemporaryDirectory(prefix="edgel3_save_") as tmp:
        staged = Path(tmp) / "model.keras"
        model.save(staged)
        with open(staged, "rb") as source, atomic_write(path) as target:
            shutil.copyfileobj(source, target)
    return path
