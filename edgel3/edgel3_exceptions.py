"""0.2.1's import path of :class:`~edgel3.exceptions.EdgeL3Error` (kept for compatibility).

``from edgel3.edgel3_exceptions import EdgeL3Error`` works as it did in
edgel3 0.2.1, which defined only this class here. New code imports from
:mod:`edgel3.exceptions`, which also holds the subclasses (``ParameterError``,
``AudioError``, ``WeightsError``, ``OutputError``); the class is the same object.
"""

from .exceptions import EdgeL3Error

__all__ = ["EdgeL3Error"]
