"""Run edgel3 bodies layer by layer outside TensorFlow: dense BLAS or sparse convs.

The NumPy runtime's engine (:mod:`edgel3.numpy_runtime`), and the way pruned Keras
models skip their zeros (a dense Conv2D multiplies every one):

* the mel front end: the model's own :class:`~edgel3.layers.MelSpectrogram` layer,
  or :func:`edgel3.frontend.melspectrogram` for weights read without Keras;
* each 3x3 'same' conv on a *flat padded* layout (each window's map zero-padded to
  ``(H + 2, W + 2)``, windows stacked: tap ``(dh, dw)`` reads the array shifted by
  ``dh * (W + 2) + dw``): **sparse** (channels first, only the non-zero taps,
  :mod:`edgel3.sparse_kernels`) or **dense** (positions x channels, Winograd
  F(2x2, 3x3) on BLAS GEMMs, :mod:`edgel3.dense_kernels`), by a fixed rule
  (:data:`DENSE_ABOVE_DENSITY`); BN and ReLU folded in, then the max pooling.

Results equal the Keras model's within float32 rounding (sums in another order).
A model whose convs all run dense runs one chunk of windows per thread, each on
one BLAS thread, without the GIL. :func:`sparse_executor` decides whether a Keras
model is worth running this way. numba is imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
import weakref

import numpy as np

from .blas import single_threaded
from .dense_kernels import dense_conv, get_dense_kernels
from .exceptions import ParameterError
from .sparse_kernels import (
    FoldedConv,
    PaddedLayout,
    folded_densities,
    get_kernels,
    kept_share,
    parse_model,
)
from .threads import NUMBA_LOCK

__all__ = [
    "SparseExecutor",
    "conv_densities",
    "kept_fraction",
    "kept_share",
    "folded_densities",
    "sparse_executor",
    "supports",
    "MODEL_DENSITY_THRESHOLD",
    "MIN_WINDOWS",
    "ENV_VAR",
]

logger = logging.getLogger(__name__)

#: Models whose convs keep more than this fraction of their multiply-adds run
#: dense in TensorFlow: measured on 2 cores, the sparse kernel reaches about a
#: third of the BLAS rate per multiply-add, so it wins below ~0.3-0.4 density.
MODEL_DENSITY_THRESHOLD = 0.35
#: Calls of fewer windows run dense Keras: the executor's set-up costs about that much.
MIN_WINDOWS = 16
#: Environment variable forcing the choice: ``auto`` (default), ``sparse``, ``dense``.
ENV_VAR = "EDGEL3_SPARSE_EXEC"
_STRATEGIES = ("auto", "sparse", "dense")
#: Positions per work item of the sparse kernel: the output tile (8 KiB) stays in L1.
_TILE = 2048
#: Largest activation tensors (a layer's input and output) of one chunk of windows:
#: bounds the executor's memory.
_ACTIVATION_BYTES = 8 * 2**20
#: ``strategy='auto'``: layers with more non-zero weights than this run dense (BLAS),
#: the others sparse. Measured on the L3/SEA layer shapes (``docs/runtime.rst``): the
#: sparse kernel's time per non-zero tap is about ... the BLAS GEMM's per tap.
DENSE_ABOVE_DENSITY = 0.3

# --------------------------------------------------------------------------- model parsing


def supports(model) -> bool:
    """Whether :class:`SparseExecutor` can run ``model`` (an edgel3-style Keras body).

    Parameters
    ----------
    model : keras.Model or any

    Returns
    -------
    bool
    """
    if not hasattr(model, "layers"):
        return False
    try:
        parse_model(model)
    except (ValueError, AttributeError, KeyError):
        return False
    return True


def conv_densities(model) -> list[tuple[str, float, int]]:
    """Non-zero fraction and dense multiply-adds per window of each conv layer.

    Parameters
    ----------
    model : keras.Model
        A model :func:`supports` accepts.

    Returns
    -------
    list of (name, density, dense_macs)
        ``density`` = non-zero kernel weights / kernel size; ``dense_macs`` =
        multiply-adds of the dense conv for one window.
    """
    mel, _, convs = parse_model(model)
    return folded_densities(convs, mel.config)


# --------------------------------------------------------------------------- executor


class SparseExecutor:
    """Callable running an edgel3 Keras model with sparse direct convolutions.

    Parameters
    ----------
    model : keras.Model
        An edgel3 body (mel spectrogram, input BN, 3x3 convs with BN/ReLU,
        2x2 max pools, global max pool), e.g. from
        :func:`edgel3.networks.build_model`, pruned or not.
    strategy : {'auto', 'sparse', 'dense'}
        Conv kernel per layer: ``'auto'`` runs layers with more than
        :data:`DENSE_ABOVE_DENSITY` non-zero weights dense (BLAS), the others
        sparse (a fixed rule: the same kernels, hence the same numbers, on
        every run); ``'sparse'``/``'dense'`` force one.

    Attributes
    ----------
    layer_strategies_ : dict
        Layer name -> ``'sparse'`` or ``'dense'``, filled by the first call.
    winograd : bool
        Dense convs of a model whose convs all run dense as Winograd F(2x2, 3x3)
        (default; :mod:`edgel3.dense_kernels`), else nine GEMMs, one per tap.

    Raises
    ------
    ParameterError
        If the model's layers are not an edgel3 body, or ``strategy`` is unknown.

    Examples
    --------
    >>> run = SparseExecutor(model)                      # doctest: +SKIP
    >>> run(windows).shape                               # doctest: +SKIP
    (n, 512)
    """

    def __init__(self, model, *, strategy: str = "auto"):
        if strategy not in _STRATEGIES:
            raise ParameterError(
                f"strategy must be one of {_STRATEGIES}; got strategy={strategy!r}."
            )
        try:
            mel, input_affine, convs = parse_model(model)
        except ValueError as exc:
            raise ParameterError(f"SparseExecutor cannot run model {model.name!r}: {exc}.") from exc
        self._setup(mel.config, input_affine, convs, strategy)
        self._mel = mel  # the model's own layer: the dense path's very op
        self._digest = _weights_digest(model)  # the reference for matches()

    @classmethod
    def from_parts(cls, mel_config, filterbank, input_affine, convs, *, strategy: str = "auto"):
        """An executor of weights read without Keras (see :mod:`edgel3.numpy_runtime`).

        The front end is :func:`edgel3.frontend.melspectrogram` (NumPy): no
        TensorFlow is imported.

        Parameters
        ----------
        mel_config : edgel3.specs.FrontendConfig
        filterbank : np.ndarray [shape=(n_bins, n_mels)]
        input_affine : (float, float)
        convs : list of FoldedConv
        strategy : {'auto', 'sparse', 'dense'}

        Returns
        -------
        SparseExecutor
        """
        if strategy not in _STRATEGIES:
            raise ParameterError(
                f"strategy must be one of {_STRATEGIES}; got strategy={strategy!r}."
            )
        self = cls.__new__(cls)
        self._setup(mel_config, input_affine, convs, strategy)
        self._filterbank = np.ascontiguousarray(filterbank, np.float32)
        return self

    def _setup(self, mel_config, input_affine, convs, strategy: str) -> None:
        self._mel_config = mel_config
        self._mel = None
        self._filterbank = None
        self._digest = None
        self._input_affine, self._convs = input_affine, convs
        self.strategy = strategy
        self.winograd = True
        # The runner interface (edgel3.runners).
        self.sample_rate = int(mel_config.sample_rate)
        self.embedding_size = int(self._convs[-1].kernel.shape[-1])
        self.layer_strategies_: dict[str, str] = {}
        for conv in self._convs:
            conv.strategy = strategy
            if strategy == "auto":  # a fixed rule: the same kernels, hence numbers, every run
                conv.strategy = "dense" if conv.density > DENSE_ABOVE_DENSITY else "sparse"
            conv.scale32 = conv.scale.astype(np.float32)
            conv.offset32 = conv.offset.astype(np.float32)
        if strategy == "auto" and len(convs) > 1 and convs[0].kernel.shape[2] == 1:
            # The one-channel first conv is cheap either way: run it like the next layer, so
            # that the layout and the thread pool do not change (numba's and BLAS's pools
            # busy-wait after each call and slow each other down on a small machine).
            convs[0].strategy = convs[1].strategy
        self._mel_fn = None
        self._buffers: dict[tuple, np.ndarray] = {}
        self._masks: dict[tuple, np.ndarray] = {}

    def layer_rows(self) -> list[tuple[str, float, int]]:
        """Name, density and dense MACs per window of each conv (as :func:`conv_densities`)."""
        return folded_densities(self._convs, self._mel_config)

    def kept_fraction(self) -> float:
        """Share of the dense conv MACs the non-zero weights keep (as :func:`kept_fraction`)."""
        return kept_share(self.layer_rows())

    def matches(self, model) -> bool:
        """Whether ``model`` still holds the weights this executor was built from.

        Parameters
        ----------
        model : keras.Model

        Returns
        -------
        bool
        """
        return self._digest is not None and _weights_digest(model) == self._digest

    # ---------------------------------------------------------------- pieces

    def _melspectrogram(self, batch: np.ndarray, fft_workers: int = -1) -> np.ndarray:
        if self._mel is None:  # weights read without Keras: the NumPy front end
            from .frontend import melspectrogram

            windows, fb = batch.reshape(batch.shape[0], -1), self._filterbank
            return melspectrogram(windows, self._mel_config, filterbank=fb, fft_workers=fft_workers)
        if self._mel_fn is None:
            import tensorflow as tf

            self._mel_fn = tf.function(self._mel.call, reduce_retracing=True)
        return np.asarray(self._mel_fn(batch))

    def _sparse_args(self, conv: FoldedConv, level: PaddedLayout):
        """CSR taps of ``conv`` for a layout of width ``level.wp``, cached per width."""
        if level.wp not in conv.sparse_args:
            kh, kw, c_in, c_out = conv.kernel.shape
            # Rows = output channels; columns ordered by (input channel, tap) for locality.
            k = conv.kernel.transpose(3, 2, 0, 1).reshape(c_out, c_in * kh * kw)
            rows, cols = np.nonzero(k)
            indptr = np.zeros(c_out + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=c_out), out=indptr[1:])
            chan = (cols // (kh * kw)).astype(np.int64)
            shift = level.shifts()[cols % (kh * kw)].astype(np.int64)
            vals = k[rows, cols].astype(np.float32)
            conv.sparse_args[level.wp] = (indptr, chan, shift, vals)
        return conv.sparse_args[level.wp]

    def _mask(self, conv: FoldedConv, level: PaddedLayout) -> np.ndarray:
        """1 inside each window's map, 0 on its padding ring (all ones before a pool)."""
        if conv.pool != "none":
            key = ("ones", level.length)
            if key not in self._masks:
                self._masks[key] = np.ones(level.length, np.float32)
            return self._masks[key]
        key = ("ring", level.height, level.wp, level.n_windows)
        if key not in self._masks:
            mask = np.zeros(level.length, np.float32)
            maps = mask[level.guard : level.length - level.guard].reshape(
                level.n_windows, level.height + 2, level.wp
            )
            maps[:, 1:-1, 1:-1] = 1.0
            self._masks[key] = mask
        return self._masks[key]

    def _conv_sparse(self, conv, x, level, out, start, stop):
        indptr, chan, shift, vals = self._sparse_args(conv, level)
        get_kernels()["sparse_conv"](
            x.reshape(-1),
            level.length,
            indptr,
            chan,
            shift,
            vals,
            conv.bias,
            conv.scale32,
            conv.offset32,
            bool(conv.relu),
            self._mask(conv, level),
            out.reshape(-1),
            start,
            stop,
            _TILE,
        )

    def _conv_dense(self, conv, x, level, out, start, stop):
        mask = self._mask(conv, level)
        # Winograd's small GEMMs (128 tiles) suit one BLAS thread per chunk (all-dense
        # models); between parallel sparse layers, BLAS's threads get large blocks.
        winograd = self.winograd and self._all_dense()
        dense_conv(conv, x, level, out, start, stop, mask, winograd=winograd)

    def _all_dense(self) -> bool:
        return all(conv.strategy == "dense" for conv in self._convs)

    def _in_layout(self, x, channels, is_rows, rows, level: PaddedLayout, slot: int = 0):
        """``x`` (``channels`` maps, rows layout if ``is_rows``) in the layout ``rows`` asks.

        Rows: ``(length, channels)``; channels-first: ``(channels, length)``.
        """
        if channels == 1:  # the same memory either way
            return x.reshape((level.length, 1) if rows else (1, level.length))
        if is_rows == rows:
            return x
        shape = (level.length, channels) if rows else (channels, level.length)
        buf = self._buffer((slot, "layout", rows, level.height, channels), shape)
        np.copyto(buf, x.T)
        return buf

    def _buffer(self, key, shape) -> np.ndarray:
        """A reused float32 work array (``key[0]``: the thread's slot; fresh pages are slow)."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = np.zeros(shape, np.float32)  # guards stay zero: nothing writes there
            self._buffers[key] = buf
        return buf

    def _windows_per_chunk(self, n_windows: int) -> int:
        """Windows per chunk: the largest layer within the bound; equal chunks, any threads."""
        mel = self._mel_config
        height, width = mel.n_mels, mel.n_frames
        channels_in, largest = 1, 0
        for conv in self._convs:
            level = PaddedLayout(height, width, 1)
            channels_out = conv.kernel.shape[-1]
            largest = max(largest, 4 * (channels_in + channels_out) * level.size)
            channels_in = channels_out
            if conv.pool == "2x2":
                height, width = height // 2, width // 2
        limit = max(1, min(n_windows, _ACTIVATION_BYTES // largest))
        chunks = -(-n_windows // limit)
        return -(-n_windows // chunks)  # 64 windows: 8 x 8, not 7 x 9 + 1

    # ---------------------------------------------------------------- call

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch of 1-s windows.

        Parameters
        ----------
        batch : np.ndarray [shape=(b, 1, sr) or (b, sr)]
            Audio windows at the model's rate.

        Returns
        -------
        np.ndarray [shape=(b, emb_dim), dtype=float32]
        """
        with NUMBA_LOCK:  # one call at a time: the work arrays, numba's pool
            return self._embed(np.asarray(batch, np.float32))

    def _embed(self, batch: np.ndarray) -> np.ndarray:
        n_windows = batch.shape[0]
        out = np.empty((n_windows, self._convs[-1].kernel.shape[-1]), np.float32)
        step = self._windows_per_chunk(n_windows)
        starts = list(range(0, n_windows, step))
        all_dense = self._all_dense()
        # numba's parallel sparse kernels use every core themselves: one thread then.
        workers = max(1, min(len(starts), _numba_threads())) if all_dense else 1
        fft_workers = 1 if workers > 1 else -1  # one chunk per core: no FFT pool on top

        def work(slot: int) -> None:
            for start in starts[slot::workers]:
                # The mel layer per chunk too: its STFT temporaries are ~4x the audio.
                mel = self._melspectrogram(batch[start : start + step], fft_workers)[..., 0]
                out[start : start + step] = self._forward(mel, slot)

        if not all_dense:
            work(0)
            return out
        # One chunk per thread, each on one BLAS thread (the dense kernels release the
        # GIL): every core busy in every step, and the same bits for any thread count.
        with single_threaded():
            if workers == 1:
                work(0)
            else:
                list(_thread_pool(workers).map(work, range(workers)))
        return out

    def _forward(self, mel: np.ndarray, slot: int = 0) -> np.ndarray:
        strategies = {conv.strategy for conv in self._convs}
        kernels = get_kernels() if "sparse" in strategies else {}
        dense = get_dense_kernels() if "dense" in strategies else {}
        n_win = mel.shape[0]
        level = PaddedLayout(mel.shape[1], mel.shape[2], n_win)
        x = self._buffer((slot, "input"), (level.length, 1))  # one channel: both layouts
        scale, shift = self._input_affine
        interior = x[level.guard : level.length - level.guard, 0].reshape(
            n_win, level.height + 2, level.wp
        )
        interior[:, 1:-1, 1:-1] = np.float32(scale) * mel + np.float32(shift)
        is_rows = True
        for index, conv in enumerate(self._convs):
            channels = conv.kernel.shape[-1]
            strategy = conv.strategy
            rows = strategy == "dense"
            x = self._in_layout(x, conv.kernel.shape[2], is_rows, rows, level, slot)
            is_rows = rows
            shape = (level.length, channels) if rows else (channels, level.length)
            out = self._buffer((slot, "conv", rows, index % 2, level.height), shape)
            start_stop = (level.guard, level.length - level.guard)
            if rows:
                self._conv_dense(conv, x, level, out, *start_stop)
            else:
                self._conv_sparse(conv, x, level, out, *start_stop)
            self.layer_strategies_[conv.name] = strategy
            geometry = (n_win, level.height, level.width)
            if conv.pool == "global":
                emb = np.empty((n_win, channels), np.float32)
                if rows:
                    dense["global_max"](out, level.guard, level.wp, *geometry, emb)
                else:
                    kernels["global_max"](out, level.guard, level.wp, *geometry, emb)
                return emb
            if conv.pool == "2x2":
                nxt = PaddedLayout(level.height // 2, level.width // 2, n_win)
                shape = (nxt.length, channels) if rows else (channels, nxt.length)
                x = self._buffer((slot, "pool", rows, nxt.height), shape)
                pool = dense["max_pool"] if rows else kernels["max_pool"]
                pool(out, level.guard, level.wp, x, nxt.guard, nxt.wp, *geometry)
                level = nxt
            else:
                x = out  # the padding ring was zeroed by the conv's mask
        raise AssertionError("unreachable: parse_model guarantees a final global pool")

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:  # Keras-like alias
        return self(batch)


def _numba_threads() -> int:
    import numba  # its thread count is the one edgel3.threads sets

    return numba.get_num_threads()


_POOLS: dict[tuple[int, int], object] = {}


def _thread_pool(workers: int):
    """A pool kept per process (a thread costs ~1 ms to start); a forked child's own."""
    key = (os.getpid(), workers)
    if key not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="edgel3-dense")
    return _POOLS[key]


def _weights_digest(model) -> bytes:
    """BLAKE2 digest of every weight (shapes and bytes): detects any change, keeps no copy."""
    digest = hashlib.blake2b(digest_size=16)
    for weight in model.get_weights():
        digest.update(repr(weight.shape).encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.digest()


# --------------------------------------------------------------------------- selection

_EXECUTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _env_mode() -> str:
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in _STRATEGIES:
        raise ParameterError(f"{ENV_VAR} must be one of {_STRATEGIES}; got {ENV_VAR}={value!r}.")
    return value


def kept_fraction(model) -> float:
    """Share of the dense conv multiply-adds a sparse execution of ``model`` keeps.

    Parameters
    ----------
    model : keras.Model
        A model :func:`supports` accepts.

    Returns
    -------
    float
        ``sum(density * macs) / sum(macs)`` over the conv layers (1.0 for a
        dense model; about 0.115 for the 95.45 % plan).
    """
    return kept_share(conv_densities(model))


def sparse_executor(model, *, mode: str | None = None) -> SparseExecutor | None:
    """The sparse executor to run ``model`` with, or None when dense TensorFlow is better.

    ``mode='auto'`` (the default, or ``$EDGEL3_SPARSE_EXEC``) picks sparse
    execution for supported models whose convs keep at most
    :data:`MODEL_DENSITY_THRESHOLD` of their multiply-adds (pruned models);
    each layer then runs sparse or dense by :data:`DENSE_ABOVE_DENSITY`.
    ``'sparse'`` uses it for any supported model (every layer sparse),
    ``'dense'`` never. An executor is cached per model and rebuilt when the
    model's weights change (checked on every call of this function).

    Parameters
    ----------
    model : keras.Model or any
    mode : {'auto', 'sparse', 'dense'} or None

    Returns
    -------
    SparseExecutor or None

    Raises
    ------
    ParameterError
        If ``mode`` (or the environment variable) is not a known mode.
    """
    mode = _env_mode() if mode is None else mode
    if mode not in _STRATEGIES:
        raise ParameterError(f"mode must be one of {_STRATEGIES}; got mode={mode!r}.")
    if mode == "dense" or not supports(model):
        return None
    if mode == "auto":
        try:
            import numba  # noqa: F401
        except ImportError:
            return None
        if kept_fraction(model) > MODEL_DENSITY_THRESHOLD:
            return None
    strategy = "auto" if mode == "auto" else "sparse"
    try:
        cached = _EXECUTORS.get(model)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached.strategy == strategy and cached.matches(model):
        return cached
    executor = SparseExecutor(model, strategy=strategy)
    try:
        _EXECUTORS[model] = executor
    except TypeError:
        pass
    return executor
