"""0.2.1's import path of :class:`~edgel3.exceptions.EdgeL3Warning` (kept for compatibility).

``from edgel3.edgel3_warnings import EdgeL3Warning`` works as it did in
edgel3 0.2.1; the class is the one in :mod:`edgel3.exceptions`. 0.2.1 derived
it from ``Warning``; it now derives from ``UserWarning``, itself a subclass of
``Warning``, so every 0.2.1 filter (``warnings.filterwarnings('error',
category=Warning)``, ``except Warning``, ``pytest.warns(Warning)``) still
matches it.
"""

from .exceptions import EdgeL3Warning

__all__ = ["EdgeL3Warning"]
