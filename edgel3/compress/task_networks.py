"""Task-student networks and the knowledge-distillation loss they are trained with.

- :func:`build_task_student`: the bundled ``tiny`` architecture (the ``'ds'``
  family of :mod:`edgel3.compress.students`) scaled by a width multiplier
  (:func:`student_config`), ending in class logits: an end-to-end classifier
  on the teacher's log-mel input, int8-exportable like ``tiny``;
- :func:`soft_targets` and :func:`distillation_loss`: Hinton et al.'s
  temperature-softened teacher distribution and the loss mixing it with hard
  labels, as used by Cerutti et al. (Interspeech 2019) for sound-event students.

:mod:`edgel3.compress.task_students` runs the whole pipeline.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_fraction, check_positive_int, is_real
from ..exceptions import ParameterError
from .students import TINY_CONFIG, build_ds_network

__all__ = [
    "DEFAULT_SIZES",
    "size_name",
    "model_files",
    "student_config",
    "check_sizes",
    "build_task_student",
    "soft_targets",
    "distillation_loss",
    "check_kd_options",
]

#: Width multipliers of the bundled ``tiny`` architecture trained by default.
DEFAULT_SIZES = (0.25, 0.5, 1.0)


def size_name(width: float) -> str:
    """The name of a student size in tables and files: ``0.25`` -> ``'w0.25'``."""
    return f"w{float(width):g}"


def model_files(sizes, folds) -> list[str]:
    """File names of a run's int8 exports: ``'w0.5_fold1.tflite'`` then its ``.json``, per fold.

    Parameters
    ----------
    sizes : sequence of float
        Width multipliers.
    folds : sequence
        Held-out folds.

    Returns
    -------
    list of str
    """
    stems = [f"{size_name(w)}_fold{fold}" for fold in folds for w in sizes]
    return [f"{stem}{suffix}" for stem in stems for suffix in (".tflite", ".json")]


def check_sizes(sizes) -> list[float]:
    """Check a list of student width multipliers.

    Parameters
    ----------
    sizes : sequence of float

    Returns
    -------
    list of float

    Raises
    ------
    ParameterError
        For no sizes, a width that is not a positive number, or two widths with
        one name (:func:`size_name`).
    """
    sizes = list(sizes)
    for width in sizes:
        student_config(width)  # checks it
    if not sizes or len({size_name(w) for w in sizes}) != len(sizes):
        raise ParameterError(
            f"sizes must be distinct width multipliers, at least one; got {sizes}."
        )
    return [float(w) for w in sizes]


def _scaled(filters: int, width: float) -> int:
    # Multiples of 4 keep CMSIS-NN on its fast int8 paths; 4 is the floor.
    return max(4, 4 * int(round(filters * width / 4)))


def student_config(width: float) -> dict:
    """Stem and block sizes of the ``tiny`` architecture scaled by a width multiplier.

    Parameters
    ----------
    width : float
        Multiplier of every filter count (> 0); counts are rounded to
        multiples of 4, at least 4. ``1.0`` is :data:`TINY_CONFIG`.

    Returns
    -------
    dict
        ``stem_filters`` and ``blocks`` for :func:`build_ds_network`.

    Raises
    ------
    ParameterError
        For a width that is not a positive number.

    Examples
    --------
    >>> student_config(0.25)
    {'stem_filters': 4, 'blocks': ((8, 1), (16, 2), (16, 1), (32, 2), (32, 1))}
    """
    if not is_real(width) or not 0 < width < float("inf"):
        raise ParameterError(f"A student width must be a positive number; got {width!r}.")
    return {
        "stem_filters": _scaled(TINY_CONFIG["stem_filters"], width),
        "blocks": tuple((_scaled(f, width), s) for f, s in TINY_CONFIG["blocks"]),
    }


def build_task_student(frontend, n_classes: int, *, width: float = 1.0, name: str | None = None):
    """An untrained end-to-end classifier: audio -> log-mel -> separable CNN -> class logits.

    The ``'ds'`` student family (:func:`edgel3.compress.students.build_ds_network`)
    with the filters of :func:`student_config` and a linear dense head of
    ``n_classes`` units (named ``embedding`` by the family): its outputs are
    logits. BatchNormalization momentum 0.9, so the moving statistics follow
    the weights within the first epoch of a short run.

    Parameters
    ----------
    frontend : FrontendConfig
        The teacher's front end (the input an int8 export takes).
    n_classes : int
    width : float
    name : str, optional
        Default ``'task_student_w<width>'``.

    Returns
    -------
    keras.Model
        ``(batch, 1, frontend.sample_rate)`` -> ``(batch, n_classes)`` logits.
    """
    n_classes = check_positive_int(n_classes, "n_classes")
    return build_ds_network(
        frontend,
        **student_config(width),
        emb_dim=n_classes,
        head="linear",
        bn_momentum=0.9,
        name=name or f"task_student_{size_name(width)}",
    )


# --------------------------------------------------------------------------- the loss


def soft_targets(teacher_logits: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's softened class distribution ``softmax(logits / T)``, row by row.

    Parameters
    ----------
    teacher_logits : np.ndarray [shape=(n, n_classes)]
        Logits, or log-probabilities (the same distribution: a softmax ignores
        a constant added to a row).
    temperature : float
        ``T > 0``; ``T > 1`` spreads probability over the non-maximal classes.

    Returns
    -------
    np.ndarray [shape=(n, n_classes), dtype=float32]
        Rows sum to 1.

    Examples
    --------
    >>> soft_targets(np.log([[0.8, 0.2]]), 2.0).round(4)
    array([[0.6667, 0.3333]], dtype=float32)
    """
    scaled = np.asarray(teacher_logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def distillation_loss(temperature: float, hard_weight: float):
    """Hinton's knowledge-distillation loss, for labels packed as ``[soft targets, one-hot]``.

    Per window, with student logits ``z``, soft targets ``q`` (from
    :func:`soft_targets` at the same ``T``) and one-hot label ``y``::

        loss = (1 - w) * T**2 * CE(q, softmax(z / T)) + w * CE(y, softmax(z))

    where ``CE(p, r) = -sum_c p_c log r_c``. The soft term equals ``T**2``
    times the KL divergence from ``q`` plus ``q``'s entropy (a constant of the
    teacher), and ``T**2`` keeps its gradients on the scale of the hard term's
    (Hinton et al., 2015).

    Parameters
    ----------
    temperature : float
        ``T > 0``.
    hard_weight : float
        ``w`` in ``[0, 1]``: 0 learns from the teacher only, 1 from the labels only.

    Returns
    -------
    callable
        A Keras loss ``loss(y_true, y_pred)``: ``y_true`` of shape
        ``(batch, 2 * n_classes)`` (soft targets then one-hot labels),
        ``y_pred`` the student's logits ``(batch, n_classes)``; per-window
        losses of shape ``(batch,)``.

    Raises
    ------
    ParameterError
        For a temperature that is not positive or a weight outside [0, 1].
    """
    from keras import ops

    temperature, hard_weight, _ = check_kd_options(temperature, hard_weight)

    def loss(y_true, y_pred):
        n = ops.shape(y_pred)[-1]
        soft, hard = y_true[:, :n], y_true[:, n:]
        soft_term = -ops.sum(soft * ops.log_softmax(y_pred / temperature, axis=-1), axis=-1)
        hard_term = -ops.sum(hard * ops.log_softmax(y_pred, axis=-1), axis=-1)
        return (1.0 - hard_weight) * temperature**2 * soft_term + hard_weight * hard_term

    return loss


def _positive(value, name: str) -> float:
    number = float(value) if is_real(value) else float("nan")
    if not 0 < number < float("inf"):
        raise ParameterError(f"{name} must be a positive number; got {name}={value!r}.")
    return number


def check_kd_options(
    temperature, hard_weight, learning_rate: float = 1e-3
) -> tuple[float, float, float]:
    """Check the distillation settings.

    Parameters
    ----------
    temperature : float
        > 0.
    hard_weight : float
        In [0, 1].
    learning_rate : float
        > 0.

    Returns
    -------
    temperature, hard_weight, learning_rate : float

    Raises
    ------
    ParameterError
        Naming the first invalid value.
    """
    return (
        _positive(temperature, "temperature"),
        check_fraction(hard_weight, "hard_weight", inclusive=True),
        _positive(learning_rate, "learning_rate"),
    )
