"""Edge export: LiteRT (TFLite) conversion, memory reports and LiteRT inference.

Nothing heavy is imported here: :class:`edgel3.litert.LiteRTModel` (re-exported
by :mod:`edgel3.export.runtime`) runs exported files without TensorFlow when the
LiteRT runtime (``ai-edge-litert``) is installed, and
:mod:`edgel3.export.memory` reads ``.tflite`` files the same way. Only
:mod:`edgel3.export.convert` needs TensorFlow. Models are named as everywhere in
edgel3 (:func:`edgel3.reference.resolve_model`).
"""

from __future__ import annotations

import importlib

__all__ = [
    "export_model",
    "backbone_model",
    "load_keras_model",
    "ExportResult",
    "memory_report",
    "MemoryReport",
    "Budget",
    "BUDGETS",
    "parse_budget",
    "LiteRTModel",
    "compare_embeddings",
    "calibration_data",
    "BandedBackbone",
]

_LAZY = {
    "export_model": "convert",
    "backbone_model": "convert",
    "load_keras_model": "convert",
    "ExportResult": "convert",
    "memory_report": "memory",
    "MemoryReport": "memory",
    "Budget": "budgets",
    "BUDGETS": "budgets",
    "parse_budget": "budgets",
    "LiteRTModel": "runtime",
    "compare_embeddings": "fidelity",
    "calibration_data": "calibration",
    "BandedBackbone": "banded",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'edgel3.export' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
