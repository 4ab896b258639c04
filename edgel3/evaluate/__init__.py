"""Downstream evaluation of embedding models: datasets, cached embeddings, classifiers, reports.

``import edgel3.evaluate`` is light; scikit-learn, matplotlib and TensorFlow
load when first used. Main entry points::

    >>> from edgel3.evaluate import evaluate                          # doctest: +SKIP
    >>> report = evaluate('esc10', 'esc10/meta/esc10.csv', model='sea-64',
    ...                   quick=True, out_dir='esc10_report')          # doctest: +SKIP

See ``docs/evaluate.rst`` for the protocol.
"""

from __future__ import annotations

import importlib

__all__ = [
    "evaluate",
    "Dataset",
    "load_dataset",
    "load_esc50",
    "load_us8k",
    "load_generic",
    "embed_files",
    "EmbeddingCache",
    "cross_validate",
    "make_classifier",
    "FrameMLPClassifier",
    "PAPER_GRID",
    "build_report",
    "write_report",
    "format_summary",
    "plot_confusion_matrix",
    "plot_embedding_map",
]

_LAZY = {
    "evaluate": "api",
    "Dataset": "datasets",
    "load_dataset": "datasets",
    "load_esc50": "datasets",
    "load_us8k": "datasets",
    "load_generic": "datasets",
    "embed_files": "embeddings",
    "EmbeddingCache": "cache",
    "cross_validate": "protocol",
    "make_classifier": "classifiers",
    "FrameMLPClassifier": "classifiers",
    "PAPER_GRID": "classifiers",
    "build_report": "report",
    "write_report": "report",
    "format_summary": "report",
    "plot_confusion_matrix": "plots",
    "plot_embedding_map": "plots",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'edgel3.evaluate' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
