"""Running a model over window pipelines: arrays, files (whole or streamed), live chunks.

Every embedding computed by edgel3 goes through this module: sources feed
:class:`~edgel3.pipeline.WindowPipeline` objects, :func:`~edgel3.pipeline.batches`
groups their windows, and one runner (:func:`edgel3.runners.select_runner`,
via :meth:`edgel3.reference.ModelReference.runner`) embeds the batches.

* :func:`embed_signals` -- checked arrays (one or many, windows batched
  across signals);
* :func:`embed_path` -- one file, read whole, or block by block when it is at
  least :data:`STREAM_MIN_SECONDS` long (flat memory, same numbers);
* :class:`EmbeddingStream` -- live audio pushed in chunks;
* :func:`file_windows` -- the windows of a file without a model (calibration,
  distillation corpora).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable

import numpy as np

from . import frontend
from .checks import (
    SHORT_WARNING,
    check_audio,
    check_flag,
    check_hop_size,
    check_positive_int,
    check_sample_rate,
)
from .exceptions import AudioError, EdgeL3Error
from .files import audio_info, read_audio, read_blocks, report_truncation
from .pipeline import WindowPipeline, batches
from .tensors import as_array

__all__ = [
    "run_batches",
    "file_windows",
    "embed_signals",
    "embed_path",
    "EmbeddingStream",
    "should_stream",
    "STREAM_MIN_SECONDS",
]

#: Files at least this long (seconds) are read and embedded block by block.
STREAM_MIN_SECONDS = 60.0


def should_stream(info) -> bool:
    """Whether a file (:class:`~edgel3.files.AudioInfo`) is long enough to stream.

    Parameters
    ----------
    info : AudioInfo

    Returns
    -------
    bool
    """
    return info.frames >= STREAM_MIN_SECONDS * info.sample_rate


def run_batches(runner, window_batches: Iterable[np.ndarray], total: int, verbose=0) -> np.ndarray:
    """Embed an iterator of window batches into one ``(total, D)`` float32 array.

    Parameters
    ----------
    runner : Runner
    window_batches : iterable of np.ndarray [shape=(b, 1, sr)]
    total : int
        Windows announced by the pipelines; a different count is an error
        (never an uninitialised or dropped row).
    verbose : bool or int
        Progress bar over windows.

    Returns
    -------
    np.ndarray [shape=(total, D), dtype=float32]

    Raises
    ------
    EdgeL3Error
        If the batches hold more or fewer windows than ``total``.
    """
    from tqdm.auto import tqdm

    outputs = np.empty((total, int(runner.embedding_size)), dtype=np.float32)
    position = 0
    with tqdm(total=total, unit="window", disable=not verbose, leave=False) as bar:
        for batch in window_batches:
            if position + len(batch) > total:
                raise EdgeL3Error(
                    f"The pipeline produced more than the {total} windows it announced; "
                    "this is a bug in edgel3, please report it."
                )
            outputs[position : position + len(batch)] = runner.predict_on_batch(batch)
            position += len(batch)
            bar.update(len(batch))
    if position != total:
        raise EdgeL3Error(
            f"The pipeline produced {position} of the {total} windows it announced; "
            "this is a bug in edgel3, please report it."
        )
    return outputs


def embed_signals(
    reference,
    signals,
    rates,
    *,
    hop_size: float,
    center: bool,
    batch_size: int,
    verbose=0,
    fast_resample: bool = False,
) -> list[np.ndarray]:
    """Embed checked signals with one runner, their windows batched together.

    Parameters
    ----------
    reference : ModelReference
    signals : list of np.ndarray [shape=(n,) or (n, channels)]
        Checked with :func:`edgel3.checks.check_audio`.
    rates : list of int
        Their sample rates.
    hop_size, center, batch_size, verbose, fast_resample
        As in :func:`edgel3.get_embedding`.

    Returns
    -------
    list of np.ndarray [shape=(T_i, D), dtype=float32]
    """
    target_sr = reference.sample_rate
    pipelines = [
        WindowPipeline(
            rate,
            target_sr,
            hop_size=hop_size,
            center=center,
            fast_resample=fast_resample,
            n_frames=len(signal),
        )
        for signal, rate in zip(signals, rates)
    ]
    counts = [p.n_windows for p in pipelines]
    # Resample every signal before the model runs (as 0.2.1 did): interleaving numba's
    # parallel resampler with TensorFlow's thread pool measured ~3% slower on many clips.
    heads = [p.push(s) for p, s in zip(pipelines, signals)]
    windows = (w for p, head in zip(pipelines, heads) for w in (head, p.close()))
    runner = reference.runner(sum(counts))
    outputs = run_batches(runner, batches(windows, batch_size), sum(counts), verbose)
    return np.split(outputs, np.cumsum(counts)[:-1])


class _ShortRead(Exception):
    """The decoder ended before the frames the header counts (caught in :func:`embed_path`)."""

    def __init__(self, frames: int):
        super().__init__(frames)
        self.frames = frames


def _file_windows(info, pipeline: WindowPipeline):
    """Read a file block by block into ``pipeline``; non-finite samples counted over the file.

    Raises :class:`_ShortRead` (before closing the pipeline) when the file
    decodes to fewer frames than ``info.frames``.
    """
    bad = 0
    read = 0
    for block in read_blocks(info, allow_short=True):
        read += len(block)
        block_bad = block.size - int(np.count_nonzero(np.isfinite(block)))
        bad += block_bad
        if not bad:
            yield pipeline.push(block)
    if read < info.frames:
        raise _ShortRead(read)
    if bad:
        raise AudioError(f"audio contains {bad} NaN or infinite sample(s); clean it first.")
    yield pipeline.close()


def embed_path(
    reference,
    path: str | os.PathLike,
    *,
    hop_size: float,
    center: bool,
    batch_size: int,
    verbose=0,
    fast_resample: bool = False,
    stream: bool | None = None,
    strict: bool = False,
):
    """Embed one audio file; long files are streamed block by block (flat memory).

    Both ways give the same rows (same windows, same batches) and warnings. A
    truncated file (less audio than its header declares, ``declared_frames`` of
    :func:`edgel3.files.audio_info`, or a decoder ending early) is embedded from
    what is present with a :class:`~edgel3.exceptions.TruncatedAudioWarning`.

    Parameters
    ----------
    reference : ModelReference
    path : path-like
    hop_size, center, batch_size, verbose, fast_resample
        As in :func:`edgel3.get_embedding`.
    stream : bool, optional
        Force (``True``) or forbid (``False``) streaming; default: files of
        at least :data:`STREAM_MIN_SECONDS`.
    strict : bool
        Refuse a truncated file (:class:`~edgel3.exceptions.AudioError`)
        instead of warning.

    Returns
    -------
    embedding : np.ndarray [shape=(T, D), dtype=float32]
    timestamps : np.ndarray [shape=(T,)]
    info : AudioInfo
        The file's header; ``frames`` is what was embedded.

    Raises
    ------
    AudioError
        Missing, unreadable, empty, non-finite or too short audio; a truncated
        file when ``strict``.

    Warns
    -----
    EdgeL3Warning
        All-zero audio (:data:`edgel3.checks.ZEROS_WARNING`), audio shorter than
        one window (:data:`edgel3.checks.SHORT_WARNING`), and
        :class:`~edgel3.exceptions.TruncatedAudioWarning`.
    """
    info = audio_info(path)
    if stream is None:
        stream = should_stream(info)
    if not stream:
        audio, sr = read_audio(path)
        info = info.decoded(len(audio))
        report_truncation(info, strict, stacklevel=3)
        signal = check_audio(audio, "audio", stacklevel=4)
        (embedding,) = embed_signals(
            reference,
            [signal],
            [sr],
            hop_size=hop_size,
            center=center,
            batch_size=batch_size,
            verbose=verbose,
            fast_resample=fast_resample,
        )
        return embedding, frontend.timestamps(len(embedding), hop_size), info
    report_truncation(info, strict, stacklevel=3)
    options = dict(hop_size=hop_size, center=center, fast_resample=fast_resample)
    try:
        embedding = _embed_streamed(reference, info, options, batch_size, verbose)
    except _ShortRead as short:
        # The header counted more than the decoder gives (a truncated MP3): the windows
        # were sized for the header, so embed again what is present.
        info = info.decoded(short.frames)
        report_truncation(info, strict, stacklevel=3)
        embedding = _embed_streamed(reference, info, options, batch_size, verbose)
    return embedding, frontend.timestamps(len(embedding), hop_size), info


def _embed_streamed(reference, info, options: dict, batch_size: int, verbose) -> np.ndarray:
    """Embed a file block by block (:func:`embed_path`'s streamed path).

    ``options`` are the :class:`~edgel3.pipeline.WindowPipeline` keywords
    ``hop_size``, ``center`` and ``fast_resample``.
    """
    if info.frames == 0:
        shape = (0,) if info.channels == 1 else (0, info.channels)
        raise AudioError(f"Got empty audio (input shape {shape})")
    pipeline = WindowPipeline(
        info.sample_rate,
        reference.sample_rate,
        n_frames=info.frames,
        warn_zeros=True,
        **options,
    )
    total = pipeline.n_windows
    runner = reference.runner(total)
    return run_batches(runner, batches(_file_windows(info, pipeline), batch_size), total, verbose)


class EmbeddingStream:
    """Embeddings of live audio, computed as the chunks arrive.

    ``emb, ts = stream.push(chunk)`` returns the windows completed so far;
    :meth:`close` flushes the rest (end padding). For any chunking, the
    concatenated rows and timestamps equal :func:`edgel3.get_embedding` on
    the whole signal (values within float32 rounding of the batch sizes).
    Memory is bounded: only the resampler's filter reach and one window of
    samples are kept between calls.

    A window is emitted as soon as its last input sample has arrived, plus,
    when the input is resampled exactly, the filter's reach
    (:attr:`latency` input samples: 357 = 8.1 ms at 44.1 kHz -> 8 kHz,
    65 = 1.5 ms at 44.1 -> 48 kHz; table in ``docs/pipeline.rst``).

    Parameters
    ----------
    model : as in :func:`edgel3.get_embedding`
    sr : int
        Rate of the pushed audio (Hz).
    hop_size : float
    center : bool
    batch_size : int
    fast_resample : bool
        Also streams (soxr), with soxr's own delay.
    model_type, emb_dim, retrain_type, sparsity
        0.2.1's model selection when ``model`` is None.

    Attributes
    ----------
    latency : int
        Input samples a window waits for after its last sample.
    rows : int
        Rows emitted so far.

    Examples
    --------
    >>> stream = edgel3.EmbeddingStream('tiny', 16000, hop_size=0.5)   # doctest: +SKIP
    >>> for chunk in microphone():                                       # doctest: +SKIP
    ...     emb, ts = stream.push(chunk)
    >>> emb, ts = stream.close()                                         # doctest: +SKIP
    """

    def __init__(
        self,
        model=None,
        sr: int = 48000,
        *,
        hop_size: float = 0.1,
        center: bool = True,
        batch_size: int = 64,
        fast_resample: bool = False,
        model_type="sparse",
        emb_dim=128,
        retrain_type="ft",
        sparsity=95.45,
    ):
        from .reference import resolve_model

        self.sr = check_sample_rate(sr)
        self.hop_size = check_hop_size(hop_size)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.reference = resolve_model(model, model_type, emb_dim, retrain_type, sparsity)
        self._runner = self.reference.runner(None)
        self._pipeline = WindowPipeline(
            self.sr,
            self.reference.sample_rate,
            hop_size=self.hop_size,
            center=check_flag(center, "center"),
            fast_resample=bool(fast_resample),
            warn_zeros=True,
        )
        self.latency = self._pipeline.latency
        self.rows = 0
        self._closed = False

    def _embed(self, windows: np.ndarray):
        count = windows.shape[0]
        embedding = np.empty((count, int(self._runner.embedding_size)), np.float32)
        position = 0
        for batch in batches([windows], self.batch_size):
            embedding[position : position + len(batch)] = self._runner.predict_on_batch(batch)
            position += len(batch)
        stamps = (self.rows + np.arange(count)) * self.hop_size
        self.rows += count
        return embedding, stamps

    def push(self, chunk) -> tuple[np.ndarray, np.ndarray]:
        """Add audio; return the embeddings of the windows it completes.

        Parameters
        ----------
        chunk : array-like [shape=(m,) or (m, channels)]
            Any length, zero included.

        Returns
        -------
        embedding : np.ndarray [shape=(k, D), dtype=float32]
        timestamps : np.ndarray [shape=(k,)]

        Raises
        ------
        AudioError
            Non-numeric, >2-D or non-finite samples; a push after :meth:`close`.
        """
        if self._closed:
            raise AudioError("This EmbeddingStream is closed; open a new one.")
        array = as_array(chunk, "chunk")
        if array.size == 0:
            return self._embed(np.zeros((0, self.reference.sample_rate)))
        if array.dtype.kind not in "biuf" or array.ndim > 2:
            raise AudioError(
                f"Chunks must be numeric arrays of shape (m,) or (m, channels); got dtype "
                f"{array.dtype}, shape {array.shape}."
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise AudioError("The chunk contains NaN or infinite samples; clean it first.")
        return self._embed(self._pipeline.push(array))

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        """End of audio: embed the windows still owed (end padding).

        Returns
        -------
        embedding : np.ndarray [shape=(k, D), dtype=float32]
        timestamps : np.ndarray [shape=(k,)]
        """
        if self._closed:
            raise AudioError("This EmbeddingStream is already closed.")
        self._closed = True
        return self._embed(self._pipeline.close())


def file_windows(
    path: str | os.PathLike,
    sr: int,
    *,
    hop_size: float,
    center: bool,
    max_windows: int | None = None,
    fast_resample: bool = False,
) -> tuple[np.ndarray, bool]:
    """The 1-s windows of one audio file, at most ``max_windows`` of them, evenly spread.

    Parameters
    ----------
    path : path-like
    sr : int
        Rate of the windows (Hz).
    hop_size : float
    center : bool
    max_windows : int, optional
    fast_resample : bool

    Returns
    -------
    windows : np.ndarray [shape=(k, sr), dtype=float32]
        ``k = min(n, max_windows)`` of the file's ``n`` windows, rows
        ``linspace(0, n - 1, k).round()``.
    short : bool
        Whether the file is shorter than one window (it was zero-padded).

    Raises
    ------
    AudioError
        Unreadable, empty or non-finite audio.

    Warns
    -----
    TruncatedAudioWarning
        The file holds less audio than its header declares (what is present is used).
    """
    hop_size = check_hop_size(hop_size)
    center = check_flag(center, "center")
    fast_resample = check_flag(fast_resample, "fast_resample")
    info = audio_info(path)
    audio, rate = read_audio(path)
    report_truncation(info.decoded(len(audio)), stacklevel=2)
    signal = check_audio(audio, f'"{path}"')
    pipeline = WindowPipeline(
        rate,
        sr,
        hop_size=hop_size,
        center=center,
        fast_resample=fast_resample,
        n_frames=len(signal),
    )
    total = pipeline.n_windows
    rows = np.arange(total)
    if max_windows is not None and total > max_windows:
        rows = np.linspace(0, total - 1, max_windows).round().astype(int)
    windows = np.empty((len(rows), sr), dtype=np.float32)
    start = 0
    with warnings.catch_warnings():
        # A corpus loader reports short files once (load_windows), not per file.
        warnings.filterwarnings("ignore", message=re.escape(SHORT_WARNING))
        for block in pipeline.run(signal):
            lo, hi = np.searchsorted(rows, [start, start + len(block)])
            windows[lo:hi] = block[rows[lo:hi] - start]
            start += len(block)
    short = len(signal) < rate
    return windows, short
