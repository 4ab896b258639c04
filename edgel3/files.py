"""Audio file discovery and reading, output naming, and atomic output writing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exceptions import AudioError, OutputError

__all__ = [
    "audio_extensions",
    "collect_audio_files",
    "read_audio",
    "AudioInfo",
    "audio_info",
    "read_blocks",
    "BLOCK_FRAMES",
    "get_output_path",
    "save_embedding",
    "atomic_write",
]


def audio_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the formats soundfile can read."""
    import soundfile as sf

    extensions = {f".{fmt.lower()}" for fmt in sf.available_formats()}
    # soundfile names formats, not every extension in use.
    return frozenset(extensions | {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3"})


def collect_audio_files(
    inputs: Iterable[str | os.PathLike], *, recursive: bool = True
) -> list[Path]:
    """Expand files and directories into a sorted, de-duplicated list of audio files.

    Parameters
    ----------
    inputs : iterable of path-like
        Files (taken as given, whatever their extension) and directories
        (searched for files with an audio extension, see :func:`audio_extensions`).
    recursive : bool
        Search directories recursively.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    AudioError
        If an input does not exist.
    """
    extensions = audio_extensions()
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for candidate in sorted(path.glob(pattern)):
                if candidate.is_file() and candidate.suffix.lower() in extensions:
                    found.setdefault(candidate, None)
        elif path.is_file():
            found.setdefault(path, None)
        else:
            raise AudioError(f'File or directory "{path}" could not be found.')
    return list(found)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as soundfile does: float64 ``(n,)`` or ``(n, channels)``.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    audio : np.ndarray [shape=(n,) or (n, channels)]
    sr : int

    Raises
    ------
    AudioError
        If the file is missing, unreadable, corrupt or truncated.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f'File "{path}" could not be found.')
    try:
        audio, sr = sf.read(str(path), dtype="float64", always_2d=False)
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f'Could not read audio file "{path}": {exc}') from exc
    return audio, int(sr)


#: Input frames read per block (about 6 s at 44.1 kHz: 1.5 MiB of float64 mono).
BLOCK_FRAMES = 2**18


@dataclass(frozen=True)
class AudioInfo:
    """What a reader needs to know about a file before decoding it.

    Attributes
    ----------
    path : str
    sample_rate : int
    frames : int
        Samples per channel.
    channels : int
    """

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header (rate, frames, channels) without decoding it.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioError
        If the file is missing or not readable by soundfile.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f'File "{path}" could not be found.')
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f'Could not read audio file "{path}": {exc}') from exc
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels))


def read_blocks(info: AudioInfo, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode a file block by block, as soundfile reads it.

    Parameters
    ----------
    info : AudioInfo
    block_frames : int
        Frames per block.

    Yields
    ------
    np.ndarray [shape=(m, channels), dtype=float64]

    Raises
    ------
    AudioError
        If the file cannot be decoded, or holds fewer frames than its header says.
    """
    import soundfile as sf

    read = 0
    try:
        with sf.SoundFile(info.path) as handle:
            while True:
                block = handle.read(block_frames, dtype="float64", always_2d=True)
                if block.shape[0] == 0:
                    break
                read += block.shape[0]
                yield block
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f'Could not read audio file "{info.path}": {exc}') from exc
    if read != info.frames:
        raise AudioError(
            f'Could not read audio file "{info.path}": got {read} of {info.frames} frames.'
        )


def get_output_path(filepath: str | os.PathLike, suffix: str, output_dir: str | None = None) -> str:
    """Path of the output file for an input file (0.2.1's ``get_output_path``).

    Parameters
    ----------
    filepath : path-like
        The input audio file.
    suffix : str
        Appended to the input's base name: joined with ``_`` unless it starts
        with a dot (``'.npz'`` gives ``name.npz``, ``'emb.npz'`` gives
        ``name_emb.npz``).
    output_dir : str or None
        Directory of the output; the input's directory when ``None``.

    Returns
    -------
    str

    Examples
    --------
    >>> get_output_path('/data/dog.wav', '.npz')
    '/data/dog.npz'
    >>> get_output_path('/data/dog.wav', 'sea.npz', output_dir='/out')
    '/out/dog_sea.npz'
    """
    base = os.path.splitext(os.path.basename(os.fspath(filepath)))[0]
    if not output_dir:
        output_dir = os.path.dirname(os.fspath(filepath))
    name = base + suffix if suffix.startswith(".") else f"{base}_{suffix}"
    return os.path.join(output_dir, name)


class atomic_write:
    """Context manager giving a temporary file object that replaces ``path`` on success.

    The temporary file lives in the target directory and is renamed with
    :func:`os.replace`, so readers see either the old file or the complete new
    one, never a half-written file; on error it is removed.

    Parameters
    ----------
    path : path-like
        Final file path.

    Raises
    ------
    OutputError
        If the directory cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
            )
        except OSError as exc:
            raise OutputError(f'Cannot write to directory "{self.path.parent}": {exc}') from exc
        self._tmp = Path(tmp)
        self._handle = os.fdopen(fd, "wb")
        return self._handle

    def __exit__(self, exc_type, exc, tb):
        self._handle.close()
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return False
        try:
            os.replace(self._tmp, self.path)
        except OSError as error:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f'Cannot write "{self.path}": {error}') from error
        return False


def save_embedding(path: str | os.PathLike, embedding: np.ndarray, timestamps: np.ndarray) -> Path:
    """Write ``embedding`` and ``timestamps`` to an ``.npz`` file atomically.

    Parameters
    ----------
    path : path-like
    embedding : np.ndarray [shape=(n, d)]
    timestamps : np.ndarray [shape=(n,)]

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    try:
        with atomic_write(path) as handle:
            np.savez(handle, embedding=embedding, timestamps=timestamps)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f'Cannot write "{path}": {exc}') from exc
    return Path(path)
