"""Embedding extraction: model resolution and loading, ``get_embedding``, file processing.

The public functions keep edgel3 0.2.1's signatures; new options are
keyword-only.  The sample rate and front end are always read from the model
itself, never from ``model_type`` (0.2.1's CLI broke ``sea`` that way).
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import frontend
from .exceptions import AudioError, EdgeL3Warning, OutputError, ParameterError
from .files import get_output_path, read_audio, save_embedding
from .specs import ModelSpec, get_spec, resolve_spec

__all__ = [
    "get_embedding",
    "load_embedding_model",
    "load_model_file",
    "process_file",
    "process_files",
    "embed_file",
    "get_output_path",
    "FileResult",
    "DEFAULT_BATCH_SIZE",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
_MODEL_CACHE: dict[tuple, object] = {}


# --------------------------------------------------------------------------- models


def _cached(key: tuple, build):
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = build()
    return _MODEL_CACHE[key]


def _load_legacy_file(path: Path, spec: ModelSpec | None = None):
    from .legacy_h5 import infer_spec, read_legacy_h5
    from .models import build_model, load_legacy_weights

    legacy = read_legacy_h5(path)
    if spec is None:
        spec = infer_spec(legacy)
    return load_legacy_weights(build_model(spec), legacy)


def load_model_file(path: str | os.PathLike):
    """Load an embedding model from a file: legacy ``.h5``/``.h5.gz``, ``.keras`` or ``.tflite``.

    The architecture of a legacy file is derived from the file itself, so
    user-made models of the same family load too. Models are cached per
    process (keyed by path and modification time).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    keras.Model or edgel3.export.runtime.LiteRTModel
        A ``.tflite`` export runs through the LiteRT interpreter.

    Raises
    ------
    WeightsError
        If the file is missing, corrupt or of an unsupported architecture.
    """
    from .exceptions import WeightsError

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f'Model file "{path}" could not be found.')
    key = ("file", str(path), path.stat().st_mtime_ns)
    if path.suffix == ".tflite":
        from .export.runtime import LiteRTModel  # runs without TensorFlow

        return _cached(key, lambda: LiteRTModel(path))
    if path.suffix == ".keras":
        import keras

        from . import layers  # noqa: F401  (registers MelSpectrogram for deserialisation)

        def build():
            try:
                return keras.saving.load_model(path)
            except Exception as exc:
                raise WeightsError(f'Could not load Keras model "{path}": {exc}') from exc

        return _cached(key, build)
    return _cached(key, lambda: _load_legacy_file(path))


def load_embedding_model(
    model_type: str = "sparse",
    emb_dim: int = 128,
    retrain_type: str = "ft",
    sparsity: float = 95.45,
    *,
    weights_path: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
):
    """Load an official embedding model, downloading its weights if needed.

    Weights are looked for in ``weights_path``, then ``$EDGEL3_WEIGHTS_DIR``,
    then the per-user cache; missing ones are downloaded from the pinned
    official URL and verified (see :mod:`edgel3.weights`).

    Parameters
    ----------
    model_type : {'sparse', 'sea'}
    emb_dim : {512, 256, 128, 64}
        Embedding size of ``'sea'`` models.
    retrain_type : {'ft', 'kd'}
        Retraining of ``'sparse'`` models.
    sparsity : float
        Sparsity (%) of ``'sparse'`` models, one of
        :data:`edgel3.specs.SPARSITIES`.
    weights_path : path-like, optional
        A weight file, or a directory holding it.
    download : bool
        Allow downloading missing weights.
    progress : bool
        Show a download progress bar.

    Returns
    -------
    keras.Model
        Audio window ``(batch, 1, sr)`` -> embedding ``(batch, emb_dim)``.

    Raises
    ------
    ParameterError
        For invalid model arguments.
    WeightsError
        If the weights cannot be found, downloaded or loaded.
    """
    spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    return _load_official(spec, weights_path=weights_path, download=download, progress=progress)


def _load_official(spec: ModelSpec, *, weights_path=None, download=True, progress=False):
    from .weights import get_weights_path

    path = get_weights_path(spec, weights_path=weights_path, download=download, progress=progress)
    key = ("official", spec.name, str(path))
    return _cached(key, lambda: _load_legacy_file(path, spec))


def _resolve_model(model, model_type, emb_dim, retrain_type, sparsity):
    """Turn get_embedding's ``model`` argument into a loaded model."""
    if model is None:
        return load_embedding_model(model_type, emb_dim, retrain_type, sparsity)
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text == "tiny":  # bundled with the package: never downloaded
            from .bundled import TINY_PATH

            return load_model_file(TINY_PATH)
        if os.path.exists(text):
            return load_model_file(text)
        try:
            spec = get_spec(text)
        except ParameterError:
            raise ParameterError(
                f"model={text!r} is neither an existing file nor an official model name "
                "(see `edgel3 models`)."
            ) from None
        return _load_official(spec)
    if hasattr(model, "predict_on_batch") and (
        hasattr(model, "layers") or hasattr(model, "sample_rate")
    ):
        return model
    raise ParameterError(
        "model must be None, a keras.Model, a model name or a file path; "
        f"got {type(model).__name__}."
    )


def model_sample_rate(model) -> int:
    """Sample rate (= window length in samples) a loaded model expects.

    Read from the model's :class:`~edgel3.layers.MelSpectrogram` layer, or
    from the last axis of its input shape for models without one.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    int
    """
    if getattr(model, "sample_rate", None) is not None:  # e.g. an exported LiteRT model
        return int(model.sample_rate)
    from .layers import MelSpectrogram

    for layer in model.layers:
        if isinstance(layer, MelSpectrogram):
            return layer.config.sample_rate
    return int(model.input_shape[-1])


# --------------------------------------------------------------------------- validation


def _check_hop_size(hop_size) -> None:
    if not isinstance(hop_size, numbers.Real) or isinstance(hop_size, bool) or not hop_size > 0:
        raise ParameterError(
            f"Invalid hop size {hop_size!r}: hop_size must be a positive number of seconds."
        )


def _check_sample_rate(sr) -> int:
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real) or not sr > 0 or sr != int(sr):
        raise ParameterError(f"Invalid sample rate sr={sr!r}: expected a positive integer (Hz).")
    return int(sr)


def _check_batch_size(batch_size) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ParameterError(f"Invalid batch size {batch_size!r}: expected a positive integer.")
    return int(batch_size)


def _check_options(model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose) -> None:
    """0.2.1 validates every argument, whatever the model type."""
    resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    _check_hop_size(hop_size)
    if verbose not in (0, 1):
        raise ParameterError(f"Invalid verbosity level {verbose!r}: expected 0 or 1.")
    if center not in (True, False):
        raise ParameterError(f"Invalid center value {center!r}: expected True or False.")


def _check_signal(audio, label: str) -> np.ndarray:
    """Validate one signal in 0.2.1's order (FRONTEND.md §1); warn if it is all zeros."""
    array = np.asarray(audio)
    if array.dtype.kind not in "biuf":
        raise AudioError(
            f"{label} must be a numeric array; got dtype {array.dtype} ({type(audio).__name__})."
        )
    if array.size == 0:
        raise AudioError(f"Got empty audio (input shape {array.shape})")
    if not np.any(array):
        warnings.warn("Provided audio is all zeros", EdgeL3Warning, stacklevel=3)
    if array.ndim > 2 or array.ndim == 0:
        raise AudioError(f"Audio array can only be 1D or 2D; got {label} of shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise AudioError(f"{label} contains {bad} NaN or infinite sample(s); clean it first.")
    return array


def _prepare_audio(array: np.ndarray, sr: int, target_sr: int, fast: bool = False) -> np.ndarray:
    """Downmix and resample a checked signal; warn if shorter than one window."""
    mono = frontend.downmix(array.astype(np.float64, copy=False))
    if sr != target_sr:
        mono = frontend.resample(mono, sr, target_sr, exact=not fast)
    if mono.size < target_sr:
        warnings.warn(
            "Duration of provided audio is shorter than window size (1 second). "
            "Audio will be padded.",
            EdgeL3Warning,
            stacklevel=3,
        )
    return mono


# --------------------------------------------------------------------------- inference


def _window_batches(
    signals: Sequence[np.ndarray], sr: int, hop_size: float, center: bool, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield float32 batches ``(b, 1, sr)`` of 1-s windows across all signals, in order."""
    buffer = np.empty((batch_size, 1, sr), dtype=np.float32)
    filled = 0
    for signal in signals:
        windows = frontend.frame_audio(signal, sr, hop_size=hop_size, center=center)
        start = 0
        while start < len(windows):
            take = min(batch_size - filled, len(windows) - start)
            buffer[filled : filled + take, 0] = windows[start : start + take]
            filled += take
            start += take
            if filled == batch_size:
                yield buffer
                filled = 0
    if filled:
        yield buffer[:filled]


def _runner(model, n_windows: int):
    """The fastest exact way to run ``model`` on ``n_windows`` windows.

    Pruned models go through :mod:`edgel3.sparse` (zeros skipped, same results
    within float32 rounding) when it wins -- for calls of at least
    ``sparse.MIN_WINDOWS`` windows, which pay for its one-time set-up;
    everything else (dense models, exported models) through ``predict_on_batch``.
    """
    from . import sparse

    if hasattr(model, "layers") and n_windows >= sparse.MIN_WINDOWS:
        executor = sparse.sparse_executor(model)
        if executor is not None:
            return executor
    return model.predict_on_batch


def _predict(model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(_runner(model, len(batch))(batch), dtype=np.float32)


def _run_batches(run, batches, total: int, verbose) -> np.ndarray:
    """Embed an iterator of window batches into one ``(total, D)`` float32 array."""
    from tqdm.auto import tqdm

    outputs = None
    position = 0
    with tqdm(total=total, unit="window", disable=not verbose, leave=False) as bar:
        for batch in batches:
            embedded = np.asarray(run(batch), dtype=np.float32)
            if outputs is None:
                outputs = np.empty((total, embedded.shape[-1]), dtype=np.float32)
            outputs[position : position + len(batch)] = embedded
            position += len(batch)
            bar.update(len(batch))
    return outputs


def _embed(model, signals, sr, hop_size, center, batch_size, verbose) -> list[np.ndarray]:
    counts = [
        frontend.n_windows(len(s), sr, frontend.hop_length(hop_size, sr), center) for s in signals
    ]
    batches = _window_batches(signals, sr, hop_size, center, batch_size)
    outputs = _run_batches(_runner(model, sum(counts)), batches, sum(counts), verbose)
    splits = np.cumsum(counts)[:-1]
    return np.split(outputs, splits)


def _embed_stream(info, model, options, center, hop_size, verbose, batch_size, fast_resample):
    """:func:`process_file` for long files: blockwise read/resample/framing, flat memory."""
    from . import streaming

    _check_options(*options, center, hop_size, verbose)
    batch_size = _check_batch_size(batch_size)
    loaded = _resolve_model(model, *options)
    target_sr = model_sample_rate(loaded)
    hop = frontend.hop_length(hop_size, target_sr)
    if info.sample_rate == target_sr:
        n_target = info.frames
    else:
        n_target = int(info.frames * float(target_sr) / info.sample_rate)
    total = frontend.n_windows(n_target, target_sr, hop, bool(center))
    batches = streaming.iter_file_batches(
        info,
        target_sr,
        hop_size=hop_size,
        center=bool(center),
        batch_size=batch_size,
        fast_resample=fast_resample,
    )
    embedding = _run_batches(_runner(loaded, total), batches, total, verbose)
    return embedding, frontend.timestamps(len(embedding), hop_size)


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
):
    """Compute embeddings of 1-s windows of audio.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)] or list of np.ndarray
        Audio samples (soundfile's layout: samples x channels); multichannel
        audio is averaged. A list gives one result per signal, with windows of
        all signals batched together.
    sr : int or list of int
        Sample rate(s) of ``audio``; audio is resampled to the model's rate
        with the legacy resampler the official numbers depend on.
    model : keras.Model, str, path-like or None
        A loaded model, an official model name (``'sea-64'``, a file stem),
        or a weight file; ``None`` loads the official model given by the next
        four arguments. Loaded models are cached per process.
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

    Returns
    -------
    embedding : np.ndarray [shape=(T, D)] or list of them
        float32 embeddings, one row per window.
    timestamps : np.ndarray [shape=(T,)] or list of them
        Window times in seconds (``arange(T) * hop_size``).

    Raises
    ------
    AudioError
        For empty, non-numeric, non-finite, >2-D or too-short-to-resample audio.
    ParameterError
        For invalid options, sample rates or model names.
    WeightsError
        If the model's weights cannot be found, downloaded or loaded.

    Warns
    -----
    EdgeL3Warning
        "Provided audio is all zeros"; "Duration of provided audio is shorter
        than window size (1 second). Audio will be padded."

    Examples
    --------
    >>> import numpy as np, edgel3
    >>> audio = np.random.default_rng(0).normal(size=16000)
    >>> emb, ts = edgel3.get_embedding(audio, 8000, model_type='sea', emb_dim=64,
    ...                                center=False, verbose=0)   # doctest: +SKIP
    >>> emb.shape, ts[:3]                                          # doctest: +SKIP
    ((11, 64), array([0. , 0.1, 0.2]))
    """
    is_list = isinstance(audio, (list, tuple))
    signals = list(audio) if is_list else [audio]
    if is_list and not signals:
        raise AudioError("Got an empty list of audio signals.")
    rates = list(sr) if isinstance(sr, (list, tuple)) else [sr] * len(signals)
    if len(rates) != len(signals):
        raise ParameterError(f"Got {len(signals)} signals but {len(rates)} sample rates.")
    labels = [f"audio[{i}]" if is_list else "audio" for i in range(len(signals))]

    arrays = [_check_signal(signal, label) for signal, label in zip(signals, labels)]
    _check_options(model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose)
    batch_size = _check_batch_size(batch_size)
    rates = [_check_sample_rate(rate) for rate in rates]

    loaded = _resolve_model(model, model_type, emb_dim, retrain_type, sparsity)
    target_sr = model_sample_rate(loaded)
    frontend.hop_length(hop_size, target_sr)  # a hop under one sample is an error
    prepared = [
        _prepare_audio(array, rate, target_sr, fast=bool(fast_resample))
        for array, rate in zip(arrays, rates)
    ]
    embeddings = _embed(loaded, prepared, target_sr, hop_size, bool(center), batch_size, verbose)
    stamps = [frontend.timestamps(len(e), hop_size) for e in embeddings]
    if is_list:
        return embeddings, stamps
    return embeddings[0], stamps[0]


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileResult:
    """Outcome of processing one file with :func:`process_files`.

    Attributes
    ----------
    path : pathlib.Path
        Input file.
    output : pathlib.Path or None
        Output file (``None`` if it failed before a path was known).
    status : {'written', 'skipped', 'failed'}
    error : str or None
        The error message of a failed file.
    warnings : tuple of str
        EdgeL3Warning messages raised while processing it.
    """

    path: Path
    output: Path | None
    status: str
    error: str | None = None
    warnings: tuple[str, ...] = ()


def _output_path(filepath, output_dir, suffix) -> str:
    return get_output_path(filepath, (suffix or "") + ".npz", output_dir=output_dir)


def process_file(
    filepath,
    output_dir=None,
    suffix=None,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=True,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_resample: bool = False,
) -> str:
    """Embed one audio file and save ``embedding`` and ``timestamps`` to an ``.npz``.

    The output is ``<output_dir>/<name>[_<suffix>].npz`` (next to the input
    when ``output_dir`` is None), written atomically. Unlike 0.2.1,
    ``retrain_type`` is honoured. Files of a minute or more are streamed
    (read, resampled and framed block by block, :mod:`edgel3.streaming`), so
    memory does not grow with their length; results are identical.

    Parameters
    ----------
    filepath : path-like
        Any file soundfile reads (wav, flac, ogg...).
    output_dir : str or None
    suffix : str or None
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`get_embedding`.
    verbose : bool
        Show a progress bar.
    batch_size : int
        Windows per forward pass.
    fast_resample : bool
        As in :func:`get_embedding` (not the official numbers).

    Returns
    -------
    str
        The output path.

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds unusable audio.
    OutputError
        If the output cannot be written.
    """
    output_path = _output_path(filepath, output_dir, suffix)
    embedding, ts = embed_file(
        filepath,
        model,
        model_type,
        emb_dim,
        retrain_type,
        sparsity,
        center,
        hop_size,
        1 if verbose else 0,
        batch_size=batch_size,
        fast_resample=fast_resample,
    )
    save_embedding(output_path, embedding, ts)
    return output_path


def embed_file(
    filepath,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    verbose=0,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_resample: bool = False,
):
    """Embed one audio file; files of a minute or more are streamed (flat memory).

    Long files are read, resampled and framed block by block
    (:mod:`edgel3.streaming`) with results identical to reading them whole.

    Parameters
    ----------
    filepath : path-like
        Any file soundfile reads.
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size, verbose
        As in :func:`get_embedding`.
    batch_size : int
        Windows per forward pass.
    fast_resample : bool
        Use the fast, non-exact resampler (see :func:`get_embedding`).

    Returns
    -------
    embedding : np.ndarray [shape=(T, D)]
    timestamps : np.ndarray [shape=(T,)]

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds unusable audio.
    """
    from . import streaming

    info = streaming.audio_info(filepath)
    if streaming.should_stream(info):
        return _embed_stream(
            info,
            model,
            (model_type, emb_dim, retrain_type, sparsity),
            center,
            hop_size,
            verbose,
            batch_size,
            bool(fast_resample),
        )
    audio, sr = read_audio(filepath)
    return get_embedding(
        audio,
        sr,
        model=model,
        model_type=model_type,
        emb_dim=emb_dim,
        retrain_type=retrain_type,
        sparsity=sparsity,
        center=center,
        hop_size=hop_size,
        verbose=verbose,
        batch_size=batch_size,
        fast_resample=fast_resample,
    )


def process_files(
    filepaths,
    output_dir=None,
    suffix=None,
    model=None,
    model_type="sparse",
    emb_dim=128,
    retrain_type="ft",
    sparsity=95.45,
    center=True,
    hop_size=0.1,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: bool = False,
    fast_resample: bool = False,
) -> list[FileResult]:
    """Embed many files with one loaded model; a bad file is reported, not fatal.

    Parameters
    ----------
    filepaths : iterable of path-like
        Audio files.
    output_dir, suffix
        As in :func:`process_file`.
    model, model_type, emb_dim, retrain_type, sparsity, center, hop_size
        As in :func:`get_embedding`.
    batch_size : int
        Windows per forward pass.
    overwrite : bool
        Recompute files whose output already exists (skipped otherwise).
    progress : bool
        Show a progress bar over files.
    fast_resample : bool
        Use the fast, non-exact resampler (see :func:`get_embedding`).

    Returns
    -------
    list of FileResult
        One per input, in order.

    Raises
    ------
    ParameterError, WeightsError
        Problems that concern every file (options, model) are raised at once.
    """
    from tqdm.auto import tqdm

    _check_options(model_type, emb_dim, retrain_type, sparsity, center, hop_size, 0)
    loaded = _resolve_model(model, model_type, emb_dim, retrain_type, sparsity)
    results = []
    for path in tqdm(list(filepaths), unit="file", disable=not progress):
        path = Path(path)
        output = Path(_output_path(path, output_dir, suffix))
        if output.exists() and not overwrite:
            results.append(FileResult(path, output, "skipped"))
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", EdgeL3Warning)
                process_file(
                    path,
                    output_dir,
                    suffix,
                    loaded,
                    model_type,
                    emb_dim,
                    retrain_type,
                    sparsity,
                    center,
                    hop_size,
                    False,
                    batch_size=batch_size,
                    fast_resample=fast_resample,
                )
        except (AudioError, OutputError) as exc:
            logger.warning("skipping %s: %s", path, exc)
            results.append(FileResult(path, output, "failed", str(exc)))
            continue
        for warning in caught:
            logger.warning("%s: %s", path, warning.message)
        results.append(
            FileResult(path, output, "written", warnings=tuple(str(w.message) for w in caught))
        )
    return results
