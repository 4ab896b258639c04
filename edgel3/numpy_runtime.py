"""The NumPy runtime: edgel3 model files run without TensorFlow or Keras.

Files it reads (:func:`file_kind`): legacy weight files (``.h5``/``.h5.gz``,
every official model) and Keras 3 ``.keras`` files of the edgel3 families
(the bundled ``tiny``, SEA / sparse L3 bodies saved by Keras, pruned or not).

A legacy weight file (``.h5`` / ``.h5.gz``: the 20 official models, and user files of
the same family) is read with h5py (:mod:`edgel3.legacy_h5`) and executed by
:class:`edgel3.sparse.SparseExecutor` built from its arrays: the NumPy kapre
front end (:func:`edgel3.frontend.melspectrogram`), the input BatchNorm as an
affine map, each 3x3 conv with its BatchNorm and ReLU folded into one
per-channel scale and shift, run as a BLAS im2col matmul (dense layers) or the
numba sparse kernel (pruned layers, chosen per layer), 2x2 and global max
pools. Results equal the Keras model's within float32 rounding (only the
summation order differs; see ``docs/runtime.rst``).

A ``.keras`` file is read with :mod:`zipfile` and h5py
(:mod:`edgel3.keras_file`): a SEA / sparse L3 body runs on the same
:class:`edgel3.sparse.SparseExecutor` (:meth:`NumpyRunner.from_keras_file`),
any other supported chain (``tiny``: depthwise-separable convs, Dense) on
:class:`edgel3.keras_runner.KerasFileRunner`.

Both are runners (:mod:`edgel3.runners`): ``sample_rate``, ``embedding_size``,
``predict_on_batch``. :meth:`edgel3.reference.ModelReference.runner` picks the
runtime (``runtime='auto'``, see
:meth:`edgel3.reference.ModelReference.uses_numpy`); ``runtime='keras'``
keeps the TensorFlow path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .exceptions import WeightsError

__all__ = [
    "NumpyRunner",
    "load_numpy_runner",
    "RUNTIMES",
    "supports_file",
    "file_kind",
    "runs_on_executor",
    "keras_file_sizes",
    "parse_legacy",
]

#: Values of ``runtime=`` / ``--runtime``.
RUNTIMES = ("auto", "numpy", "keras")
#: BatchNormalization epsilon of every edgel3 network (Keras 2's default for these files).
BN_EPSILON = 1e-3


def file_kind(path) -> str | None:
    """What kind of model file ``path`` is for the NumPy runtime, by its name (nothing read).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    {'legacy', 'keras'} or None
        ``'legacy'`` for ``.h5``/``.h5.gz`` weight files, ``'keras'`` for Keras 3
        ``.keras`` files, None for anything else (``.tflite``...).
    """
    name = str(path)
    if name.endswith((".h5", ".h5.gz")):
        return "legacy"
    if name.endswith(".keras"):
        return "keras"
    return None


def keras_file_sizes(path) -> tuple[int, int]:
    """A ``.keras`` file's sample rate and embedding size, from its ``config.json`` (no Keras).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    (int, int)
        ``(sample_rate, embedding_size)``.

    Raises
    ------
    WeightsError
        If the NumPy runtime cannot run the file (the message names the layer).
    """
    from .keras_file import plan_keras_file

    frontend, planned, _ = plan_keras_file(path)
    return frontend.sample_rate, int(planned[-1].out_shape[0])


def supports_file(path) -> bool:
    """Whether the NumPy runtime runs ``path``.

    Legacy weight files are judged by name; a ``.keras`` file by its
    ``config.json`` (read, weights not: see
    :func:`edgel3.keras_file.supports_keras_file`).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    bool
    """
    kind = file_kind(path)
    if kind == "keras":
        from .keras_file import supports_keras_file

        return supports_keras_file(path)
    return kind == "legacy"


def _by_suffix(names: list[str], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    found = {}
    for name, array in zip(names, arrays):
        key = name.rsplit("/", 1)[-1].split(":")[0]
        found[key] = np.asarray(array, np.float64)
    return found


def _bn(names, arrays, epsilon: float = BN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as ``scale * x + shift`` (float64)."""
    values = _by_suffix(names, arrays)
    mean, variance = values["moving_mean"], values["moving_variance"]
    gamma = values.get("gamma", np.ones_like(mean))
    beta = values.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + epsilon)
    return scale, beta - mean * scale


def parse_legacy(legacy):
    """The executor's parts of a legacy weight file, checked against its spec.

    Parameters
    ----------
    legacy : edgel3.legacy_h5.LegacyWeightFile

    Returns
    -------
    spec : ModelSpec
    filterbank : np.ndarray [shape=(n_bins, n_mels)]
    input_affine : (float, float)
    convs : list of edgel3.sparse_kernels.FoldedConv

    Raises
    ------
    WeightsError
        If the file is not an edgel3 body (see :func:`edgel3.legacy_h5.infer_spec`).
    """
    from .frontend import check_stored_frontend
    from .legacy_h5 import infer_spec
    from .sparse_kernels import FoldedConv

    spec = infer_spec(legacy)  # raises for any other architecture
    layers = list(legacy.weighted_layers)
    source = str(legacy.path)
    filterbank = check_stored_frontend(layers[0][2], spec.frontend, source)
    in_scale, in_shift = _bn(layers[1][1], layers[1][2])
    convs: list[FoldedConv] = []
    for name, names, arrays in layers[2:]:
        if arrays[0].ndim == 4:
            kernel = np.asarray(arrays[0], np.float32)
            bias = np.asarray(arrays[1], np.float32) if len(arrays) > 1 else None
            if bias is None:
                bias = np.zeros(kernel.shape[-1], np.float32)
            if kernel.shape[:2] != (3, 3):
                raise WeightsError(f"{source}: layer {name!r} is not a 3x3 conv.")
            channels = kernel.shape[-1]
            convs.append(
                FoldedConv(name, kernel, bias, np.ones(channels), np.zeros(channels), relu=False)
            )
        else:  # the BatchNorm after a conv, always followed by a ReLU in these networks
            convs[-1].scale, convs[-1].offset = _bn(names, arrays)
            convs[-1].relu = True
    for index, conv in enumerate(convs):  # a pool after every second conv but the last
        if index == len(convs) - 1:
            conv.pool = "global"
        elif index % 2 == 1:
            conv.pool = "2x2"
    if in_scale.shape != (1,):
        raise WeightsError(f"{source}: the input BatchNormalization must have one channel.")
    return spec, filterbank, (float(in_scale[0]), float(in_shift[0])), convs


class NumpyRunner:
    """A legacy weight file as a runner, without TensorFlow.

    Parameters
    ----------
    path : path-like
        A ``.h5`` or ``.h5.gz`` weight file (not verified here: see
        :func:`edgel3.loading.load_model_file`).
    strategy : {'auto', 'sparse', 'dense'}
        Conv kernel per layer (see :class:`edgel3.sparse.SparseExecutor`).

    Attributes
    ----------
    sample_rate : int
    embedding_size : int
    spec : ModelSpec or None
        None for a .keras body (:meth:`from_keras_file`).
    path : pathlib.Path
    executor : edgel3.sparse.SparseExecutor

    Examples
    --------
    >>> runner = NumpyRunner("edgel3_sea_ust_audio_emb_64.h5.gz")   # doctest: +SKIP
    >>> runner.predict_on_batch(windows).shape                       # doctest: +SKIP
    (n, 64)
    """

    def __init__(self, path, *, strategy: str = "auto"):
        from .legacy_h5 import read_legacy_h5
        from .sparse import SparseExecutor

        self.path = Path(path)
        self.spec, filterbank, affine, convs = parse_legacy(read_legacy_h5(self.path))
        self.executor = SparseExecutor.from_parts(
            self.spec.frontend, filterbank, affine, convs, strategy=strategy
        )
        self.sample_rate = self.executor.sample_rate
        self.embedding_size = self.executor.embedding_size
        self.name = self.spec.name

    @classmethod
    def from_keras_file(cls, runner, *, strategy: str = "auto") -> NumpyRunner | None:
        """The SEA / sparse L3 body of a ``.keras`` file on the sparse executor.

        Parameters
        ----------
        runner : edgel3.keras_runner.KerasFileRunner
            The file, planned and compiled.
        strategy : {'auto', 'sparse', 'dense'}

        Returns
        -------
        NumpyRunner or None
            None when the file is not such a body
            (:meth:`edgel3.keras_runner.KerasFileRunner.executor_parts`); ``spec``
            is None (a ``.keras`` file has no official spec).
        """
        from .sparse import SparseExecutor

        parts = runner.executor_parts()
        if parts is None:
            return None
        self = cls.__new__(cls)
        self.path, self.spec, self.name = runner.path, None, runner.name
        self.executor = SparseExecutor.from_parts(*parts, strategy=strategy)
        self.sample_rate = self.executor.sample_rate
        self.embedding_size = self.executor.embedding_size
        return self

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """Embed windows ``(n, 1, sr)`` or ``(n, sr)``: ``(n, embedding_size)`` float32."""
        return self.executor(windows)

    def __repr__(self) -> str:
        return f"NumpyRunner({self.name!r})"


def load_numpy_runner(path: str | os.PathLike):
    """The NumPy runner of a model file, by its kind, verified and cached per process.

    * a legacy weight file: :class:`NumpyRunner`; a file named like an official
      one must be that file (its hash is checked, once per file, as
      :func:`edgel3.loading.load_model_file` does);
    * a ``.keras`` file: its SEA / sparse L3 body on the sparse executor
      (:meth:`NumpyRunner.from_keras_file`), else the
      :class:`edgel3.keras_runner.KerasFileRunner` itself (``tiny``...).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    NumpyRunner or edgel3.keras_runner.KerasFileRunner

    Raises
    ------
    WeightsError
        A missing file, another kind of file, or a ``.keras`` file with a layer
        the runtime does not run (the message names the layer).
    """
    from .loading import cached
    from .weights import official_spec_of, verify_weights

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f'Model file "{path}" could not be found.')
    kind = file_kind(path)
    key = ("numpy", str(path), path.stat().st_mtime_ns)
    if kind == "keras":
        from .keras_runner import load_keras_file_runner

        def build():
            runner = load_keras_file_runner(path)
            return NumpyRunner.from_keras_file(runner) or runner

        return cached(key, build)
    if kind != "legacy":
        raise WeightsError(
            f"{path}: the NumPy runtime runs .h5/.h5.gz weight files and .keras files; "
            "use runtime='keras'."
        )
    official = official_spec_of(path)
    if official is not None:
        verify_weights(path, official)
    return cached(key, lambda: NumpyRunner(path))


def runs_on_executor(path) -> bool:
    """Whether the NumPy runner of ``path`` is the sparse executor (a SEA / sparse L3 body).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    bool
        True for every legacy weight file and for ``.keras`` SEA / sparse L3
        bodies; False for other ``.keras`` chains (``tiny``).
    """
    return isinstance(load_numpy_runner(path), NumpyRunner)
