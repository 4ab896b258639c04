"""Models shipped inside the package, usable offline.

``tiny``: a 45 K-parameter depthwise-separable student distilled from SEA-64
(8 kHz, 64-d embeddings); ``get_embedding(audio, sr, model='tiny')`` or
``edgel3 --model tiny`` load it with no download. Its card data (training
audio, sizes, speed, accuracy) is ``tiny.json``; see docs/model_card_tiny.md.
Regenerate both with ``scripts/make_tiny_model.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TINY_PATH", "TINY_CARD_PATH", "BUNDLED", "tiny_card"]

_HERE = Path(__file__).resolve().parent

#: The bundled tiny model (Keras 3 ``.keras`` file).
TINY_PATH = _HERE / "tiny.keras"
#: Its model-card data (JSON).
TINY_CARD_PATH = _HERE / "tiny.json"
#: Bundled model names -> files.
BUNDLED = {"tiny": TINY_PATH}


def tiny_card() -> dict:
    """The tiny model's card data: training audio, sizes, speed, ESC-10 accuracy."""
    return json.loads(TINY_CARD_PATH.read_text())
