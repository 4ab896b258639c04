"""The public embedding API: ``get_embedding``, ``process_file(s)``, ``embed_file``.

The functions keep edgel3 0.2.1's positional order (``get_embedding``,
``process_file``, ``get_output_path``); every parameter 0.2.1 did not have
there is keyword-only (``retrain_type`` of ``process_file`` included), and the
new ``embed_file``/``process_files`` follow ``process_file``'s order.
Each one resolves its model arguments with :func:`edgel3.reference.resolve_model`,
checks its arguments with :mod:`edgel3.checks`, and embeds through
:mod:`edgel3.engine` (one window pipeline, one runner). The sample rate and
front end are always read from the model itself, never from ``model_type``
(0.2.1's CLI broke ``sea`` that way).
"""

from __future__ import annotations

import logging

import numpy as np

from . import frontend
from .checks import (
    check_audio,
    check_flag,
    check_hop_size,
    check_positive_int,
    check_sample_rate,
    check_verbose,
    split_signals,
)
from .engine import EmbeddingStream, embed_path, embed_signals
from .exceptions import ParameterError
from .files import get_output_path, save_embedding
from .loading import load_embedding_model, load_model_file
from .provenance import input_facts, make_provenance
from .reference import resolve_model
from .runners import model_sample_rate

__all__ = [
    "get_embedding",
    "load_embedding_model",
    "load_model_file",
    "model_sample_rate",
    "process_file",
    "embed_file",
    "get_output_path",
    "EmbeddingStream",
    "DEFAULT_BATCH_SIZE",
    "check_embedding_options",
]

logger = logging.getLogger(__name__)

#: Windows per forward pass unless ``batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 64


def check_embedding_options(
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose=0, runtime="auto"
):
    """Check 0.2.1's arguments in its order and resolve the model.

    Parameters
    ----------
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose, runtime
        As in :func:`get_embedding`.

    Returns
    -------
    reference : ModelReference
    center : bool
    hop_size : float
    verbose : int

    Raises
    ------
    ParameterError, WeightsError
    """
    reference = resolve_model(model, model_type, emb_dim, retrain_type, sparsity)
    reference = reference.with_runtime(runtime)
    hop_size = check_hop_size(hop_size)
    verbose = check_verbose(verbose)
    center = check_flag(center, "center")
    return reference, center, hop_size, verbose


def get_embedding(
    audio,
    sr,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=1,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_resample: bool = False,
    runtime: str = "auto",
):
    """Compute embeddings of 1-s windows of audio.

    Parameters
    ----------
    audio : np.ndarray or tensor [shape=(n,) or (n, channels)], or a list of them
        Audio samples (soundfile's layout: samples x channels); multichannel
        audio is averaged. PyTorch, TensorFlow and JAX tensors on the CPU (any
        object exposing the array protocol or DLPack) are read without a copy
        (:func:`edgel3.tensors.as_array`); a tensor requiring grad is detached
        (embeddings are computed in NumPy: no gradient flows through them), and
        one on a GPU is an error: move it with ``tensor.cpu()``. A batch tensor
        ``(k, n)`` of ``k`` sounds is passed as ``list(batch)``. A channels-first
        array (at most 8 rows, 64 or more columns) is an error telling you to
        pass ``audio.T``. A list of arrays gives one result per signal, with
        windows of all signals batched together; a list of plain numbers is one
        signal. Integer PCM (``int16``...) needs no scaling: see Notes.
    sr : int or list of int
        Sample rate(s) of ``audio``; audio is resampled to the model's rate
        with the legacy resampler the official numbers depend on.
    model : keras.Model, str, path-like or None
        A loaded model, an official model name (``'sea-64'``, a file stem),
        or a weight file; ``None`` loads the official model given by the next
        four arguments. Models loaded by name or file are cached per process
        and shared (do not modify what :func:`load_model_file` returns;
        :func:`load_embedding_model` returns a copy of one's own).
    model_type : {'sparse', 'sea'}
    emb_dim : {512, 256, 128, 64}
    retrain_type : {'ft', 'kd'}
    sparsity : {53.5, 63.5, 72.3, 73.5, 81.0, 87.0, 90.5, 95.45}
        Model selection as in 0.2.1 (validated even when ``model`` is given).
    center : bool
        Prepend half a window of zeros, so timestamps are window centres.
    hop_size : float
        Hop between windows in seconds (truncated to whole samples).
    verbose : {0, 1}
        Show a progress bar.
    batch_size : int
        Windows per forward pass. Results do not depend on it.
    fast_resample : bool
        Resample with a fast standard resampler (soxr) instead of the exact
        legacy one: ~10x faster resampling, but **not** 0.2.1's numbers
        (SEA-64 on 20 ESC-10 clips: mean change 0.03, 99th percentile 0.6,
        max 4.6, for values up to 40; see ``docs/performance.rst``).
    runtime : {'auto', 'numpy', 'keras'}
        What runs the model: ``'numpy'`` the TensorFlow-free runtime
        (:mod:`edgel3.numpy_runtime`: ``.h5``/``.h5.gz`` weight files, i.e. every
        official model, and ``.keras`` files such as the bundled ``tiny``),
        ``'keras'`` TensorFlow; ``'auto'`` (default) the one that finishes sooner
        (NumPy for every official model; ``docs/runtime.rst``).

    Returns
    -------
    embedding : np.ndarray [shape=(T, D)] or list of them
        float32 embeddings, one row per window.
    timestamps : np.ndarray [shape=(T,)] or list of them
        Window times in seconds (``arange(T) * hop_size``).

    Raises
    ------
    AudioError
        For empty, non-numeric, non-finite, >2-D or too-short-to-resample audio;
        for tensors on a GPU and objects that are neither arrays nor tensors.
    ParameterError
        For invalid options, sample rates or model names.
    WeightsError
        If the model's weights cannot be found, downloaded or loaded.

    Warns
    -----
    EdgeL3Warning
        "Provided audio is all zeros"; "Duration of provided audio is shorter
        than window size (1 second). Audio will be padded."

    Notes
    -----
    Integer PCM is used unscaled (``int16`` ``q`` embeds exactly like
    ``q.astype(float)``). The front end normalises each window's spectrogram
    to its maximum, so the gain cancels: ``q`` gives the embedding of the
    float signal ``q / 32768`` up to float32 rounding, at most 3.1e-5 for
    values up to 70 (noise, a chirp, tones; SEA-64 and ``tiny``; 8 and 16
    kHz; ``tests/test_core.py`` allows 1e-3). Exception: very quiet float
    input (noise at -60 dB RMS) that is resampled drops under the front end's
    fixed amplitude floor (1e-10) at the band edge, where the integer input
    does not: up to 0.25 apart. Against the float signal *before*
    quantisation, the 16-bit quantisation noise changes the result by itself
    (3e-4 on noise; up to 20 on a synthetic chirp with an otherwise empty
    spectrum), as for any int16 recording.

    Examples
    --------
    >>> import numpy as np, edgel3
    >>> audio = np.random.default_rng(0).normal(size=16000)
    >>> emb, ts = edgel3.get_embedding(audio, 8000, model_type='sea', emb_dim=64,
    ...                                center=False, verbose=0)   # doctest: +SKIP
    >>> emb.shape, ts[:3]                                          # doctest: +SKIP
    ((11, 64), array([0. , 0.1, 0.2]))
    """
    signals, is_list = split_signals(audio)
    rates = list(sr) if isinstance(sr, (list, tuple)) else [sr] * len(signals)
    if len(rates) != len(signals):
        raise ParameterError(f"Got {len(signals)} signals but {len(rates)} sample rates.")
    labels = [f"audio[{i}]" if is_list else "audio" for i in range(len(signals))]

    arrays = [check_audio(signal, label) for signal, label in zip(signals, labels)]
    reference, center, hop_size, verbose = check_embedding_options(
        model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose, runtime
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    rates = [check_sample_rate(rate) for rate in rates]
    frontend.hop_length(hop_size, reference.sample_rate)  # a hop under one sample is an error
    embeddings = embed_signals(
        reference,
        arrays,
        rates,
        hop_size=hop_size,
        center=center,
        batch_size=batch_size,
        verbose=verbose,
        fast_resample=bool(fast_resample),
    )
    stamps = [frontend.timestamps(len(e), hop_size) for e in embeddings]
    if is_list:
        return embeddings, stamps
    return embeddings[0], stamps[0]


# --------------------------------------------------------------------------- files


def process_file(
    filepath,
    output_dir=None,
    suffix=None,
    model=None,
    model_type="sparse",
    emb_dim=128,
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=True,
    *,
    retrain_type="ft",
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_resample: bool = False,
    runtime: str = "auto",
    strict: bool = False,
) -> str:
    """Embed one audio file and save ``embedding`` and ``timestamps`` to an ``.npz``.

    The output is ``<output_dir>/<name>[_<suffix>].npz`` (next to the input
    when ``output_dir`` is None), written atomically. The positional order is
    0.2.1's, which had no ``retrain_type`` here: it is keyword-only, and
    honoured (0.2.1 always loaded the ``'ft'`` model). Files of a minute or
    more are streamed (read, resampled and framed block by block,
    :mod:`edgel3.engine`), so memory does not grow with their length; results
    are identical.

    Parameters
    ----------
    filepath : path-like
        Any file soundfile reads (wav, flac, ogg...).
    output_dir : str or None
    suffix : str or None
    model, model_type, emb_dim, sparsity, center, hop_size, retrain_type
        As in :func:`get_embedding`.
    verbose : bool
        Show a progress bar.
    batch_size : int
        Windows per forward pass.
    fast_resample : bool
        As in :func:`get_embedding` (not the official numbers).
    runtime : {'auto', 'numpy', 'keras'}
        As in :func:`get_embedding`.
    strict : bool
        Refuse a file holding less audio than its header declares (``AudioError``)
        instead of embedding what is present with a ``TruncatedAudioWarning``.

    Returns
    -------
    str
        The output path.

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds unusable audio; if it is
        truncated and ``strict``.
    OutputError
        If the output cannot be written.

    Warns
    -----
    EdgeL3Warning
        All-zero audio, audio shorter than one window; ``TruncatedAudioWarning``
        (naming the file, the length its header declares and the length present).
    """
    output_path = get_output_path(filepath, (suffix or "") + ".npz", output_dir=output_dir)
    facts = input_facts(filepath)  # before reading: a change meanwhile makes the output stale
    embedding, ts = embed_file(
        filepath,
        model=model,
        model_type=model_type,
        emb_dim=emb_dim,
        retrain_type=retrain_type,
        sparsity=sparsity,
        center=center,
        hop_size=hop_size,
        verbose=1 if verbose else 0,
        batch_size=batch_size,
        fast_resample=fast_resample,
        strict=strict,
        runtime=runtime,
    )
    model_id = resolve_model(model, model_type, emb_dim, retrain_type, sparsity).model_id
    record = make_provenance(model_id, hop_size, center, fast_resample, facts)
    save_embedding(output_path, embedding, ts, provenance=record)
    return output_path


def embed_file(
    filepath,
    model=None,
    model_type="sparse",
    emb_dim=128,
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=0,
    *,
    retrain_type="ft",
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_resample: bool = False,
    runtime: str = "auto",
    strict: bool = False,
):
    """Embed one audio file; files of a minute or more are streamed (flat memory).

    Long files are read, resampled and framed block by block
    (:mod:`edgel3.engine`) with results identical to reading them whole. The
    arguments are :func:`process_file`'s without ``output_dir`` and
    ``suffix`` (``retrain_type`` keyword-only there and here).

    Parameters
    ----------
    filepath : path-like
        Any file soundfile reads.
    model, model_type, emb_dim, sparsity, center, hop_size, verbose, retrain_type
        As in :func:`get_embedding`.
    batch_size : int
        Windows per forward pass.
    fast_resample : bool
        Use the fast, non-exact resampler (see :func:`get_embedding`).
    runtime : {'auto', 'numpy', 'keras'}
        As in :func:`get_embedding`.
    strict : bool
        Refuse a truncated file (see :func:`process_file`).

    Returns
    -------
    embedding : np.ndarray [shape=(T, D)]
    timestamps : np.ndarray [shape=(T,)]
        Rows of the audio present (fewer for a truncated file than its header says).

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds unusable audio; if it is
        truncated and ``strict``.

    Warns
    -----
    EdgeL3Warning
        As :func:`process_file`.
    """
    reference, center, hop_size, verbose = check_embedding_options(
        model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose, runtime
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    strict = check_flag(strict, "strict")
    frontend.hop_length(hop_size, reference.sample_rate)
    embedding, stamps, _ = embed_path(
        reference,
        filepath,
        hop_size=hop_size,
        center=center,
        batch_size=batch_size,
        verbose=verbose,
        fast_resample=bool(fast_resample),
        strict=strict,
    )
    return embedding, stamps


# --------------------------------------------------------------------------- 0.2.1 compatibility
# The only underscore names of the API: 0.2.1's own tests import them from edgel3.core.
# edgel3 frames audio with edgel3.frontend and never uses them (nor may other modules).


def _center_audio(audio, frame_len):
    """0.2.1's centring: ``int(frame_len / 2)`` zeros before a 1-D signal (compatibility)."""
    audio = np.asarray(audio)
    return np.concatenate([np.zeros(int(frame_len / 2), dtype=audio.dtype), audio])


def _pad_audio(audio, frame_len, hop_len):
    """0.2.1's end padding (compatibility): zeros up to one window or a whole number of hops.

    The padded length is ``frame_len + (n - 1) * hop_len`` for the ``n`` windows
    :func:`edgel3.frontend.n_windows` frames; an array needing none is returned as is.
    """
    audio = np.asarray(audio)
    n = frontend.n_windows(audio.size, frame_len, hop_len, center=False)
    missing = frame_len + (n - 1) * hop_len - audio.size
    if missing <= 0:
        return audio
    return np.concatenate([audio, np.zeros(missing, dtype=audio.dtype)])
