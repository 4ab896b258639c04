"""Old home of the LiteRT runner; it lives in :mod:`edgel3.litert` (no TensorFlow import)."""

from ..litert import (
    LiteRTModel,
    frontend_from_dict,
    frontend_to_dict,
    make_interpreter,
    read_sidecar,
    sidecar_path,
)

__all__ = [
    "LiteRTModel",
    "make_interpreter",
    "read_sidecar",
    "sidecar_path",
    "frontend_to_dict",
    "frontend_from_dict",
]
