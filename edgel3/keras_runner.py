"""Keras 3 ``.keras`` files of the edgel3 families run with NumPy: no TensorFlow, no Keras.

:class:`KerasFileRunner` is a runner (:mod:`edgel3.runners`): it plans the
file's layers from ``config.json`` (:mod:`edgel3.keras_file`), compiles them
with the variables of ``model.weights.h5`` into NumPy ops
(:mod:`edgel3.keras_ops`), and runs windows through the front end
(:func:`edgel3.frontend.melspectrogram` with the file's own filterbank) and
the ops in chunks (:data:`ACTIVATION_BYTES` of a layer's input and output; the
front end in larger calls, :data:`FRONTEND_BYTES`).
:meth:`KerasFileRunner.executor_parts` hands the SEA / sparse L3 bodies to
:meth:`edgel3.sparse.SparseExecutor.from_parts` (pruned layers' zeros skipped);
:func:`edgel3.numpy_runtime.load_numpy_runner` picks between the two.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .exceptions import WeightsError
from .keras_file import file_error, plan_keras_file
from .keras_ops import AffineOp, ConvOp, MaxPoolOp, ReduceOp, compile_layers
from .runners import as_windows
from .threads import NUMBA_LOCK

__all__ = ["KerasFileRunner", "load_keras_file_runner", "ACTIVATION_BYTES", "FRONTEND_BYTES"]

#: Activations (a layer's input and output) of one chunk of windows: cache-sized, which
#: bounds memory too. Measured on tiny (256 windows, 2 cores): chunks of 16-32 windows
#: (2.4-4.8 MiB) ran 1.4x faster than chunks of 163 (25 MiB).
ACTIVATION_BYTES = 4 * 2**20
#: Audio and spectrograms of one call of the front end: few, large calls, since its
#: matmul runs in NumPy's BLAS and the network's in SciPy's (edgel3.blas), two thread
#: pools that slow each other down at each switch (tiny, 256 windows, a busy 2-core
#: machine: 171 windows/s with one front-end call, 141 with one per 20-window chunk).
FRONTEND_BYTES = 32 * 2**20


class KerasFileRunner:
    """A Keras 3 ``.keras`` file of an edgel3 family, run with NumPy (a runner).

    Parameters
    ----------
    path : path-like
        A ``.keras`` file whose layers are all in :data:`edgel3.keras_file.SUPPORTED_LAYERS`
        (see :func:`edgel3.keras_file.supports_keras_file`).

    Attributes
    ----------
    path : pathlib.Path
    name : str
        The model's name in its config (e.g. ``'edgel3_tiny'``).
    sample_rate : int
        Window length in samples (= the model's rate, Hz).
    embedding_size : int
    frontend : edgel3.specs.FrontendConfig
    filterbank : np.ndarray [shape=(n_dft // 2 + 1, n_mels), dtype=float32]
        The file's mel filterbank (what the Keras layer multiplies by).
    layers : list of str
        ``'<name> (<class>)'`` of every layer run, for reports.
    ops : list of edgel3.keras_ops.Op
        The compiled network after the front end, in order.
    chunk : int
        Windows run through the network at a time (:data:`ACTIVATION_BYTES`).
    frontend_chunk : int
        Windows per call of the front end (:data:`FRONTEND_BYTES`).

    Raises
    ------
    WeightsError
        If the file cannot be read, a layer is not supported (one line naming
        the file and the layer), or a stored array does not fit its layer.

    Examples
    --------
    >>> from edgel3.bundled import TINY_PATH
    >>> runner = KerasFileRunner(TINY_PATH)
    >>> runner.predict_on_batch(np.zeros((2, 1, runner.sample_rate), np.float32)).shape
    (2, 64)
    """

    def __init__(self, path):
        import h5py

        self.path = Path(path)
        source = str(self.path)
        self.frontend, planned, self.name = plan_keras_file(self.path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                data = archive.read("model.weights.h5")
            with h5py.File(io.BytesIO(data), "r") as weights:
                self.filterbank, self.ops = compile_layers(planned, weights, source)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            if isinstance(exc, WeightsError):
                raise
            raise file_error(source, f"cannot read model.weights.h5 ({exc}).") from exc
        self.sample_rate = self.frontend.sample_rate
        self.embedding_size = int(planned[-1].out_shape[0])
        self.layers = [f"{layer.name} ({layer.class_name})" for layer in planned]
        largest = max(
            math.prod(layer.in_shape or (self.sample_rate,)) + math.prod(layer.out_shape)
            for layer in planned
        )
        self.chunk = max(1, ACTIVATION_BYTES // (4 * largest))
        per_window = 4 * (self.sample_rate + math.prod(planned[0].out_shape))
        self.frontend_chunk = max(self.chunk, FRONTEND_BYTES // per_window)

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed 1-s windows.

        Parameters
        ----------
        windows : np.ndarray [shape=(n, 1, sample_rate) or (n, sample_rate)]
            Audio windows at the model's rate (cast to float32).

        Returns
        -------
        np.ndarray [shape=(n, embedding_size), dtype=float32]

        Raises
        ------
        ParameterError
            If ``windows`` has another shape.
        """
        from .frontend import melspectrogram

        windows = as_windows(windows, self.sample_rate)
        # One call at a time (as the executor): BLAS then splits each product the same
        # way, so concurrent calls from a user's threads give the same bits as serial ones.
        with NUMBA_LOCK:
            return self._embed(windows, melspectrogram)

    def _embed(self, windows: np.ndarray, melspectrogram) -> np.ndarray:
        out = np.empty((windows.shape[0], self.embedding_size), np.float32)
        for start in range(0, windows.shape[0], self.frontend_chunk):
            mel = melspectrogram(
                windows[start : start + self.frontend_chunk],
                self.frontend,
                filterbank=self.filterbank,
            )
            for first in range(0, mel.shape[0], self.chunk):
                x = mel[first : first + self.chunk]
                for op in self.ops:
                    x = op(x)
                out[start + first : start + first + x.shape[0]] = x
        return out

    def executor_parts(self):
        """This model as :meth:`edgel3.sparse.SparseExecutor.from_parts` arguments, if it can be.

        The SEA and sparse L3 bodies (``edgel3.networks.build_audio_network``,
        pruned or not) are: front end, a one-channel input BatchNorm, 3x3 stride-1
        'same' convs each with its BN and ReLU (folded here), 2x2 max pools, and a
        max pool over the whole last map (or a global max pool). Such a file can
        run on the sparse executor (zeros skipped in pruned layers).

        Returns
        -------
        tuple or None
            ``(frontend, filterbank, (input_scale, input_shift), convs)`` with
            ``convs`` a list of :class:`edgel3.sparse_kernels.FoldedConv` (BN folded
            into kernel and bias: ``scale`` 1, ``offset`` 0); None for any other
            architecture.
        """
        from .sparse_kernels import FoldedConv

        ops = list(self.ops)
        affine = (1.0, 0.0)
        if ops and isinstance(ops[0], AffineOp):  # the input BatchNorm
            if ops[0].relu or ops[0].scale.shape != (1,):
                return None
            affine = (float(ops[0].scale[0]), float(ops[0].shift[0]))
            ops = ops[1:]
        if ops and isinstance(ops[-1], ReduceOp) and ops[-1].kind == "flatten":
            ops = ops[:-1]  # after a pool over the whole map
        height, width = self.frontend.n_mels, self.frontend.n_frames
        convs: list = []
        for op in ops:
            if isinstance(op, ConvOp):
                if (
                    op.kernel.shape[:2] != (3, 3)
                    or op.strides != (1, 1)
                    or op.pads != ((1, 1), (1, 1))
                    or op.clip
                    or (convs and convs[-1].pool == "global")
                ):
                    return None
                channels = op.kernel.shape[-1]
                convs.append(
                    FoldedConv(
                        op.name,
                        op.kernel.copy(),
                        op.bias.copy(),
                        np.ones(channels),
                        np.zeros(channels),
                        op.relu,
                    )
                )
            elif not convs or convs[-1].pool != "none":
                return None
            elif isinstance(op, MaxPoolOp) and op.pads == ((0, 0), (0, 0)):
                if op.pool == op.strides == (2, 2):
                    convs[-1].pool = "2x2"
                    height, width = height // 2, width // 2
                elif op.pool == (height, width):
                    convs[-1].pool = "global"
                else:
                    return None
            elif isinstance(op, ReduceOp) and op.kind == "max" and not op.keepdims:
                convs[-1].pool = "global"
            else:
                return None
        if not convs or convs[-1].pool != "global":
            return None
        return self.frontend, self.filterbank, affine, convs

    def __repr__(self) -> str:
        return f"KerasFileRunner({self.name!r}, {str(self.path)!r})"


def load_keras_file_runner(path: str | os.PathLike) -> KerasFileRunner:
    """The NumPy runner of a ``.keras`` file, cached per process (path and mtime).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    KerasFileRunner

    Raises
    ------
    WeightsError
        If the file is missing or cannot run here (see :class:`KerasFileRunner`).
    """
    from .loading import cached

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f'Model file "{path}" could not be found.')
    key = ("keras-numpy", str(path), path.stat().st_mtime_ns)
    return cached(key, lambda: KerasFileRunner(path))
