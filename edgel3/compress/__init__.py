"""Compression toolkit: pruning, filter/depth reduction, distillation and SEA.

Submodules (imported lazily, so ``import edgel3.compress`` does not load TensorFlow):

- :mod:`~edgel3.compress.pruning` -- per-layer magnitude pruning to a plan, masks that
  survive training (:func:`prune_model`, :data:`PLANS`);
- :mod:`~edgel3.compress.filters` -- L1 filter pruning and depth reduction;
- :mod:`~edgel3.compress.sensitivity` -- one-layer-at-a-time pruning sweeps;
- :mod:`~edgel3.compress.data` -- audio windows with their provenance;
- :mod:`~edgel3.compress.teachers` -- teachers (any model or callable) and cached targets;
- :mod:`~edgel3.compress.augment` -- gain, mixing, noise and time-shift augmentation;
- :mod:`~edgel3.compress.students` -- student architectures (SEA, sparse, depthwise-separable);
- :mod:`~edgel3.compress.distill` -- knowledge distillation (MSE to teacher embeddings);
- :mod:`~edgel3.compress.sea` -- Specialized Embedding Approximation (sampling, scaler + PCA);
- :mod:`~edgel3.compress.task_students` -- task students (Cerutti et al. 2019): a teacher
  embedding + classifier distilled into small int8 classifiers, fold by fold (with
  ``task_data``, ``task_networks``, ``task_report``).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "PLANS": "pruning",
    "get_plan": "pruning",
    "prune_model": "pruning",
    "strip_masks": "pruning",
    "sparsity_report": "pruning",
    "prune_filters": "filters",
    "reduce_depth": "filters",
    "sensitivity_sweep": "sensitivity",
    "load_windows": "data",
    "synth_windows": "data",
    "as_teacher": "teachers",
    "teacher_targets": "teachers",
    "Augmenter": "augment",
    "build_student": "students",
    "distill": "distill",
    "SEAProjection": "sea",
    "sea_distill": "sea",
    "distill_task": "task_students",
}
_SUBMODULES = {
    "pruning",
    "filters",
    "sensitivity",
    "data",
    "teachers",
    "augment",
    "students",
    "distill",
    "sea",
    "dpp",
    "task_students",
    "task_data",
    "task_networks",
    "task_report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | _SUBMODULES)
