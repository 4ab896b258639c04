"""Audio file discovery and reading, output naming, and atomic output writing."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .exceptions import AudioError, OutputError, TruncatedAudioWarning

__all__ = [
    "audio_extensions",
    "collect_audio_files",
    "read_audio",
    "AudioInfo",
    "audio_info",
    "report_truncation",
    "read_blocks",
    "BLOCK_FRAMES",
    "get_output_path",
    "save_embedding",
    "PROVENANCE_KEY",
    "atomic_write",
    "current_umask",
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
        Samples per channel present in the file (what decoding gives).
    channels : int
    declared_frames : int or None
        Samples per channel the file's header declares, when the file holds
        fewer (a truncated file: an interrupted copy or download); ``None``
        when nothing is missing.
    """

    path: str
    sample_rate: int
    frames: int
    channels: int
    declared_frames: int | None = None

    @property
    def duration(self) -> float:
        """Length in seconds (of what is present)."""
        return self.frames / self.sample_rate

    @property
    def truncation(self) -> str | None:
        """Both lengths of a truncated file in words; ``None`` when nothing is missing.

        For example ``'its header declares 3.000 s (48000 frames) but only 1.499 s
        (23989 frames) are present'``.
        """
        if self.declared_frames is None:
            return None
        rate = self.sample_rate
        return (
            f"its header declares {self.declared_frames / rate:.3f} s ({self.declared_frames} "
            f"frames) but only {self.frames / rate:.3f} s ({self.frames} frames) are present"
        )

    def decoded(self, frames: int) -> AudioInfo:
        """This file once decoding gave ``frames``: fewer than the header counts is truncated.

        (An MP3's header counts the whole stream; a cut file decodes to less.)
        """
        if frames >= self.frames:
            return self
        declared = self.frames if self.declared_frames is None else self.declared_frames
        return replace(self, frames=frames, declared_frames=declared)


def report_truncation(info: AudioInfo, strict: bool = False, stacklevel: int = 1) -> None:
    """Warn about (or, ``strict``, refuse) a file holding less audio than its header declares.

    Parameters
    ----------
    info : AudioInfo
        Nothing happens unless ``declared_frames`` is set.
    strict : bool
        Raise instead of warning.
    stacklevel : int
        Of the warning, counted from the caller of this function.

    Raises
    ------
    AudioError
        ``strict`` and the file is truncated (the message names both lengths).

    Warns
    -----
    TruncatedAudioWarning
        The file is truncated (the message names the file and both lengths).
    """
    if info.truncation is None:
        return
    message = f'Audio file "{info.path}" is truncated: {info.truncation}'
    if strict:
        raise AudioError(f"{message}; refused (strict).")
    warnings.warn(
        f"{message}; embedding what is present.",
        TruncatedAudioWarning,
        stacklevel=stacklevel + 1,
    )


#: Bytes per sample of soundfile's uncompressed subtypes (declared bytes -> frames).
_SAMPLE_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}
#: libsndfile's ``extra_info`` line for a data chunk whose header declares more bytes
#: than the file holds: ``data : 96000 (should be 47978)`` (WAV, WAVEX), ``SSND : ...``
#: (AIFF). The difference is the bytes missing.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: RF64 declares its data size in the ``ds64`` chunk: ``Data size : 96000``.
_RF64_DATA_SIZE = re.compile(r"^\s*Data size\s*:\s*(\d+)", re.MULTILINE)
#: Sizes that writers of unseekable streams put in a header for "length unknown".
_UNKNOWN_SIZES = frozenset({0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFFFFFFFFFF})


def _declared_frames(info) -> int | None:
    """Frames a truncated file's header declares, from libsndfile's own report.

    libsndfile counts ``frames`` from the bytes actually present and notes in
    ``extra_info`` a data chunk whose header declares more; that note is what
    is read here (no header parsing of our own).

    Parameters
    ----------
    info : soundfile._SoundFileInfo
        :func:`soundfile.info` of the file.

    Returns
    -------
    int or None
        ``None`` when nothing is missing (or the header says "length unknown").
    """
    sample_bytes = _SAMPLE_BYTES.get(info.subtype)
    frame_bytes = sample_bytes * info.channels if sample_bytes else None
    frames = int(info.frames)
    match = _SHORT_CHUNK.search(info.extra_info)
    if match:
        declared, present = int(match[1]), int(match[2])
        if declared in _UNKNOWN_SIZES or declared <= present:
            return None
        missing = declared - present
        if frame_bytes:
            # present = frames * frame_bytes + a partial frame: ceil gives the declared count.
            return frames + math.ceil(missing / frame_bytes)
        if present > 0 and frames > 0:  # compressed (ADPCM, GSM...): in proportion
            return frames + math.ceil(missing * frames / present)
        return None
    match = _RF64_DATA_SIZE.search(info.extra_info)
    if match and info.format == "RF64" and frame_bytes and int(match[1]) not in _UNKNOWN_SIZES:
        declared = int(match[1]) // frame_bytes
        return declared if declared > frames else None
    return None


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header (rate, frames, channels) without decoding it.

    A file holding less data than its header declares (WAV, AIFF, RF64:
    libsndfile reports it) gets ``declared_frames``; ``frames`` is what is
    present. No warning is raised here: callers decide (see
    :func:`edgel3.engine.embed_path`).

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
    return AudioInfo(
        path,
        int(info.samplerate),
        int(info.frames),
        int(info.channels),
        _declared_frames(info),
    )


def read_blocks(
    info: AudioInfo, block_frames: int = BLOCK_FRAMES, *, allow_short: bool = False
) -> Iterator[np.ndarray]:
    """Decode a file block by block, as soundfile reads it.

    Parameters
    ----------
    info : AudioInfo
    block_frames : int
        Frames per block.
    allow_short : bool
        End quietly when the decoder gives fewer than ``info.frames`` frames
        (a truncated MP3 whose header counts the whole stream): the caller
        counts the frames it got.

    Yields
    ------
    np.ndarray [shape=(m, channels), dtype=float64]

    Raises
    ------
    AudioError
        If the file cannot be decoded, or gives more frames than ``info.frames``
        (or fewer, unless ``allow_short``).
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
    if read > info.frames or (read < info.frames and not allow_short):
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


def current_umask() -> int:
    """The process's umask (read without changing it for more than an instant)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class atomic_write:
    """Context manager giving a temporary file object that replaces ``path`` on success.

    The temporary file lives in the target directory and is renamed with
    :func:`os.replace`, so readers see either the old file or the complete new
    one, never a half-written file. On any error (an exception in the block, a
    full disk when the file is flushed or closed) the temporary file is removed.
    The final file gets the mode a plain ``open`` would give (``0o666`` less the
    umask), not :func:`tempfile.mkstemp`'s owner-only ``0o600``.

    Parameters
    ----------
    path : path-like
        Final file path.

    Raises
    ------
    OutputError
        If the directory cannot be created or the file cannot be written.
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
        try:
            self._handle.close()  # flushes: a full disk fails here
            if exc_type is None:
                os.chmod(self._tmp, 0o666 & ~current_umask())
                os.replace(self._tmp, self.path)
        except OSError as error:
            self._tmp.unlink(missing_ok=True)
            if exc_type is not None:
                return False  # the block's own exception wins
            raise OutputError(f'Cannot write "{self.path}": {error}') from error
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
        return False


#: Name of the ``.npz`` array holding how the output was made (see :mod:`edgel3.provenance`).
PROVENANCE_KEY = "provenance"


def save_embedding(
    path: str | os.PathLike,
    embedding: np.ndarray,
    timestamps: np.ndarray,
    provenance: dict | None = None,
) -> Path:
    """Write ``embedding`` and ``timestamps`` to an ``.npz`` file atomically.

    Parameters
    ----------
    path : path-like
    embedding : np.ndarray [shape=(n, d)]
    timestamps : np.ndarray [shape=(n,)]
    provenance : dict, optional
        How the output was made (:func:`edgel3.provenance.make_provenance`),
        stored as JSON text in the array ``provenance``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    arrays = {"embedding": embedding, "timestamps": timestamps}
    if provenance is not None:
        arrays[PROVENANCE_KEY] = np.array(json.dumps(provenance, sort_keys=True))
    try:
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f'Cannot write "{path}": {exc}') from exc
    return Path(path)
