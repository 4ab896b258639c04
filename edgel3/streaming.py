"""Old home of the streaming reader; kept so that existing imports work.

Long files are embedded block by block by :func:`edgel3.engine.embed_path`
through the one window pipeline (:mod:`edgel3.pipeline`); the blockwise
resamplers live in :mod:`edgel3.resample`.
"""

from .engine import STREAM_MIN_SECONDS, should_stream
from .files import BLOCK_FRAMES, AudioInfo, audio_info
from .pipeline import WindowStream
from .resample import LegacyResampleStream

__all__ = [
    "AudioInfo",
    "LegacyResampleStream",
    "WindowStream",
    "audio_info",
    "should_stream",
    "BLOCK_FRAMES",
    "STREAM_MIN_SECONDS",
]
