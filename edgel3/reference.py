"""The one model resolver: every accepted ``model`` value -> a :class:`ModelReference`.

Every entry point (``get_embedding``, ``process_file(s)``, the CLI, ``--jobs``,
Ray, ``evaluate``, ``export``, ``memory-report``, ``compress``) passes its
model arguments to :func:`resolve_model` and works with the reference it
returns. Accepted values:

=====================================  =========================================
``model``                              resolves to
=====================================  =========================================
``None`` + model_type/emb_dim/...      the official model 0.2.1 would load
a bundled name (``'tiny'``)            the model shipped in the package
an existing file path                  ``.h5``/``.h5.gz``/``.keras``/``.tflite``
an official name                       a file stem (``'edgel3_sea_ust_audio_emb_64'``)
                                       or short name (``'sea-64'``,
                                       ``'sparse-kd-87.0'``)
a loaded ``keras.Model``               itself
an object with the runner interface    itself (see :mod:`edgel3.runners`)
=====================================  =========================================

A reference knows its identity (:attr:`ModelReference.model_id`, for caches,
manifests and Parquet rows), its sample rate, its embedding size, and how to
load and run the model; references to names and files are picklable, so
worker processes and Ray actors load the model themselves.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from .exceptions import ParameterError, WeightsError
from .model_identity import file_identity, keras_digest
from .runners import is_keras_model, is_runner, model_sample_rate, select_runner
from .specs import ALIASES, REGISTRY, get_spec, resolve_spec

__all__ = [
    "ModelReference",
    "resolve_model",
    "model_names",
    "KINDS",
    "MODEL_FILE_SUFFIXES",
    "AUTO_NUMPY_MAX_WINDOWS",
    "tensorflow_available",
]

#: What a reference points at.
KINDS = ("official", "bundled", "file", "object")
#: ``runtime='auto'``: jobs of at most this many windows run a ``.keras`` chain off the
#: sparse executor (the bundled ``tiny``) with NumPy, in a process without TensorFlow.
#: Measured (tiny; cold get_embedding, warm 512-window batches; 2 busy cores): NumPy starts
#: 4.7 s sooner (cold get_embedding 0.83 vs 5.51 s) and spends 0.21 ms more per window
#: (1,819 vs 2,924 windows/s), so it finishes first up to ~22,500 windows; 20,000 (33 min of
#: audio at hop 0.1 s) keeps a margin. Models on the executor run with NumPy at any size.
AUTO_NUMPY_MAX_WINDOWS = 20000
#: File types a model may be loaded from.
MODEL_FILE_SUFFIXES = (".h5", ".h5.gz", ".keras", ".tflite")


@dataclass(frozen=True, eq=False)
class ModelReference:
    """A resolved model: what it is, and how to load and run it.

    Attributes
    ----------
    kind : {'official', 'bundled', 'file', 'object'}
    source : str or object
        The official file stem, the bundled name, the absolute file path, or
        the loaded object itself.
    weights : str or None
        For official models: the weight file located by :meth:`located`
        (passed to workers, whose environment may differ).
    runtime : {'auto', 'numpy', 'keras'}
        What runs a model file (see :meth:`uses_numpy`).
    """

    kind: str
    source: object
    weights: str | None = None
    runtime: str = "auto"

    # ------------------------------------------------------------------ identity

    @property
    def portable(self) -> bool:
        """Whether another process can load the model from this reference."""
        return self.kind != "object"

    @property
    def spec(self):
        """The :class:`~edgel3.specs.ModelSpec` of an official model (else None)."""
        return REGISTRY[self.source] if self.kind == "official" else None

    @property
    def path(self) -> Path | None:
        """The model file, for bundled and file references (else None)."""
        if self.kind == "bundled":
            from .bundled import BUNDLED

            return Path(BUNDLED[self.source])
        if self.kind == "file":
            return Path(self.source)
        return None

    @functools.cached_property
    def model_id(self) -> str:
        """Identity for caches, manifests and Parquet rows; changes when the weights do.

        The official file stem for official models (and for a file whose
        published hash is an official model's), ``NAME@SHA1[:12]`` for files
        and bundled models, ``NAME@DIGEST[:12]`` of the architecture and
        weights for a loaded Keras model, and a runner's own ``model_id``
        attribute (or its file's identity) for runner objects.
        """
        if self.kind == "official":
            return self.source
        if self.path is not None:
            return file_identity(self.path, bundled=self.kind == "bundled")
        model = self.source
        if getattr(model, "model_id", None):
            return str(model.model_id)
        if getattr(model, "path", None) is not None and Path(model.path).is_file():
            return file_identity(Path(model.path))
        if is_keras_model(model):
            return f"{getattr(model, 'name', 'model')}@{keras_digest(model)[:12]}"
        return f"{type(model).__name__}@{id(model):x}"

    @property
    def stable_id(self) -> bool:
        """Whether :attr:`model_id` names the same model in every process and run.

        False only for a runner object with neither a ``model_id`` attribute nor a
        model file: its identity is then its memory address, which must not key a
        cache on disk.
        """
        return not self.model_id.endswith(f"@{id(self.source):x}")

    @property
    def name(self) -> str:
        """A short human name (the official stem, bundled name, file name or model name)."""
        if self.kind in ("official", "bundled"):
            return str(self.source)
        if self.kind == "file":
            return Path(self.source).name
        return str(getattr(self.source, "name", type(self.source).__name__))

    def describe(self) -> dict:
        """``{'id', 'name', 'source', 'path'?}`` for reports.

        Returns
        -------
        dict
        """
        out = {"id": self.model_id, "name": self.name, "source": self.kind}
        if self.path is not None:
            out["path"] = str(self.path)
        return out

    # ------------------------------------------------------------------ properties

    @functools.cached_property
    def sample_rate(self) -> int:
        """The model's input rate (Hz), known without loading for official and legacy files."""
        if self.kind == "official":
            return self.spec.sample_rate
        path = self.path
        if self.is_legacy:
            from .legacy_h5 import infer_spec, read_legacy_h5

            return infer_spec(read_legacy_h5(path)).sample_rate
        if self.runs_on_numpy:  # a .keras file: its config.json (no Keras)
            from .numpy_runtime import keras_file_sizes

            return keras_file_sizes(path)[0]
        return model_sample_rate(self.load())

    @functools.cached_property
    def embedding_size(self) -> int:
        """Values per embedding."""
        if self.kind == "official":
            return self.spec.emb_dim
        if self.runs_on_numpy and not self.is_legacy:  # a .keras file: its config.json
            from .numpy_runtime import keras_file_sizes

            return keras_file_sizes(self.path)[1]
        model = self.load()
        if is_keras_model(model):
            return int(model.output_shape[-1])
        return int(model.embedding_size)

    # ------------------------------------------------------------------ loading

    def located(self) -> ModelReference:
        """This reference with its official weight file found (downloaded, verified) now.

        Called once before work is sent to other processes, so that they
        never download concurrently.

        Returns
        -------
        ModelReference
        """
        if self.kind != "official" or self.weights is not None:
            return self
        from .weights import get_weights_path

        return replace(self, weights=str(get_weights_path(self.spec)))

    def load(self):
        """The loaded model (cached per process; see :mod:`edgel3.loading`).

        Returns
        -------
        keras.Model or runner

        Raises
        ------
        WeightsError
        """
        from .loading import load_model_file, load_official

        if self.kind == "official":
            found = self.weights if self.weights and os.path.exists(self.weights) else None
            return load_official(self.spec, weights_path=found)
        if self.kind in ("bundled", "file"):
            return load_model_file(self.path)
        return self.source

    def with_runtime(self, runtime) -> ModelReference:
        """This reference run by ``runtime`` (``'auto'``, ``'numpy'`` or ``'keras'``).

        Raises
        ------
        ParameterError
            An unknown runtime, or ``'numpy'`` for a model that is not a file
            the NumPy runtime reads (a loaded ``keras.Model`` or runner, a
            ``.tflite`` file).
        WeightsError
            ``'numpy'`` for a ``.keras`` file with a layer the NumPy runtime
            does not run (the message names the layer; ``config.json`` is read).
        """
        from .checks import check_choice
        from .numpy_runtime import RUNTIMES, file_kind, keras_file_sizes

        runtime = check_choice(runtime, RUNTIMES, "runtime")
        reference = replace(self, runtime=runtime)
        readable = self.is_legacy or (self.path is not None and file_kind(self.path))
        if runtime == "numpy" and not readable:  # nothing read, nothing downloaded
            raise ParameterError(
                "runtime='numpy' runs .h5/.h5.gz weight files (every official model) and .keras "
                f"files (the bundled 'tiny'); model {self.name!r} is "
                f"{'a loaded object' if self.kind == 'object' else 'neither'} "
                "(use runtime='keras' or 'auto')."
            )
        if runtime == "numpy" and not self.is_legacy:
            keras_file_sizes(self.path)  # raises WeightsError naming an unsupported layer
        return reference

    @property
    def is_legacy(self) -> bool:
        """Whether the model is a legacy weight file (every official model); nothing is read."""
        from .numpy_runtime import file_kind

        if self.kind == "official":
            return True
        return self.path is not None and file_kind(self.path) == "legacy"

    @property
    def numpy_file(self) -> str | None:
        """The file the NumPy runtime would read (official: located; ``.h5``/``.h5.gz``/``.keras``).

        None for ``.tflite`` files and loaded objects; nothing is read but an
        official file's location (see :func:`edgel3.numpy_runtime.file_kind`).
        """
        from .numpy_runtime import file_kind

        if self.kind == "official":
            return self.located().weights
        return str(self.path) if self.path and file_kind(self.path) else None

    @functools.cached_property
    def runs_on_numpy(self) -> bool:
        """Whether the NumPy runtime runs the model (a ``.keras`` file's config.json is read)."""
        from .numpy_runtime import supports_file

        return self.is_legacy or (self.path is not None and supports_file(self.path))

    def uses_numpy(self, n_windows: int | None = None) -> bool:
        """Whether :meth:`runner` gives the NumPy runtime (:mod:`edgel3.numpy_runtime`).

        ``'numpy'``: always; ``'keras'``: never. ``'auto'`` takes the runtime that
        finishes the job sooner (``benchmarks/runtimes.py``, docs/runtime.rst), a
        fixed rule of the model and the job:

        * a model the sparse executor runs (every legacy ``.h5``/``.h5.gz`` file, so
          every official model, and ``.keras`` files of SEA / sparse L3 bodies):
          NumPy, whatever the job -- it starts seconds sooner and runs more
          windows per second than Keras (SEA-64 1.2x; a pruned model runs the
          same sparse kernels either way);
        * another ``.keras`` chain the NumPy runtime runs (the bundled ``tiny``):
          NumPy for jobs of at most :data:`AUTO_NUMPY_MAX_WINDOWS` windows in a
          process that has not imported TensorFlow (it starts seconds sooner),
          Keras otherwise (more windows per second) -- unless TensorFlow cannot be
          imported (a small board's install): NumPy then;
        * anything else (``.tflite`` files, ``.keras`` files with other layers,
          loaded models): not NumPy.

        Parameters
        ----------
        n_windows : int, optional
            Windows of the whole job (``None``: unknown, e.g. a live stream).

        Returns
        -------
        bool
        """
        if self.kind == "object" or self.runtime == "keras":
            return False
        if self.runtime == "numpy":
            return True
        if not self.runs_on_numpy:
            return False
        if self.on_executor:
            return True
        if sys.modules.get("tensorflow") is not None:
            return False
        if n_windows is not None and n_windows <= AUTO_NUMPY_MAX_WINDOWS:
            return True
        return not tensorflow_available()  # Keras would be quicker, if it could run

    @functools.cached_property
    def on_executor(self) -> bool:
        """Whether the NumPy runtime runs the model on the sparse executor (legacy files;
        ``.keras`` SEA / sparse L3 bodies: their config.json is read)."""
        if self.is_legacy:
            return True
        from .numpy_runtime import runs_on_executor

        return self.runs_on_numpy and runs_on_executor(self.numpy_file)

    def for_job(self, n_windows: int | None) -> ModelReference:
        """This reference with ``'auto'`` decided for a job of ``n_windows`` windows.

        Batch runs decide once, before their workers start, so that every file
        of a run goes through the same runtime (:meth:`uses_numpy`).

        Parameters
        ----------
        n_windows : int or None

        Returns
        -------
        ModelReference
            ``runtime`` is ``'numpy'`` or ``'keras'`` where the NumPy runtime runs
            the model (legacy and supported ``.keras`` files); other references
            are returned as they are.
        """
        if self.runtime != "auto" or self.kind == "object" or not self.runs_on_numpy:
            return self
        return replace(self, runtime="numpy" if self.uses_numpy(n_windows) else "keras")

    def runner(self, n_windows: int | None = None):
        """The runner for a call of ``n_windows`` windows.

        The NumPy runtime when :meth:`uses_numpy`, else
        :func:`edgel3.runners.select_runner` of the loaded model.

        Parameters
        ----------
        n_windows : int, optional

        Returns
        -------
        Runner
        """
        if self.uses_numpy(n_windows):
            from .numpy_runtime import load_numpy_runner

            return load_numpy_runner(self.numpy_file)
        return select_runner(self.load(), n_windows)

    def prepare(self):
        """Load what :meth:`runner` will run (once per process; workers call it at start)."""
        return self.runner(None)

    def __repr__(self) -> str:
        return f"ModelReference({self.kind}, {self.name!r})"

    def __reduce__(self):  # cached properties are recomputed where unpickled
        if not self.portable:
            raise ParameterError(
                f"A loaded {type(self.source).__name__} cannot be sent to another process; "
                "pass an official model name or a model file instead."
            )
        return (ModelReference, (self.kind, self.source, self.weights, self.runtime))


def resolve_model(
    model=None, model_type="sparse", emb_dim=128, retrain_type="ft", sparsity=95.45
) -> ModelReference:
    """Resolve ``get_embedding``'s model arguments (see the module docstring); nothing is loaded.

    As in 0.2.1, ``model_type``, ``emb_dim``, ``retrain_type`` and
    ``sparsity`` are validated even when ``model`` is given.

    Parameters
    ----------
    model : None, str, path-like, keras.Model or runner
    model_type, emb_dim, retrain_type, sparsity
        0.2.1's model selection (used when ``model`` is None).

    Returns
    -------
    ModelReference

    Raises
    ------
    ParameterError
        Unknown name, invalid arguments, or an unsupported object.
    WeightsError
        A path to a model file that does not exist.
    """
    spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
    if isinstance(model, ModelReference):
        return model
    if model is None:
        return ModelReference("official", spec.name)
    if isinstance(model, (str, os.PathLike)):
        from .bundled import BUNDLED

        text = os.fspath(model)
        if isinstance(model, str) and text in BUNDLED:
            return ModelReference("bundled", text)
        if os.path.isfile(text):
            path = Path(text).resolve()
            for name, bundled in BUNDLED.items():  # the same model by name or by path
                if path == Path(bundled).resolve():
                    return ModelReference("bundled", name)
            return ModelReference("file", str(path))
        try:
            return ModelReference("official", get_spec(text).name)
        except ParameterError:
            pass
        if not isinstance(model, str) or text.endswith(MODEL_FILE_SUFFIXES) or os.sep in text:
            raise WeightsError(f'Model file "{os.path.abspath(text)}" could not be found.')
        raise ParameterError(
            f"model={text!r} is neither an existing file nor a model name edgel3 knows "
            "(see `edgel3 models`)."
        )
    if is_keras_model(model) or is_runner(model):
        return ModelReference("object", model)
    raise ParameterError(
        "model must be None, a model name, a model file, a keras.Model or an object with "
        f"sample_rate, embedding_size and predict_on_batch; got {type(model).__name__}."
    )


def tensorflow_available() -> bool:
    """Whether ``import tensorflow`` could succeed (found, not blocked); nothing is imported.

    Returns
    -------
    bool
    """
    import importlib.util

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"] is not None
    return importlib.util.find_spec("tensorflow") is not None


def model_names() -> list[dict]:
    """Every model name :func:`resolve_model` accepts, for ``edgel3 models``.

    Returns
    -------
    list of dict
        ``name``, ``kind`` ('bundled', 'short', 'official') and ``model`` (the
        official stem, or the bundled file), in listing order.
    """
    from .bundled import BUNDLED

    rows = [{"name": n, "kind": "bundled", "model": str(p)} for n, p in BUNDLED.items()]
    rows += [{"name": a, "kind": "short", "model": s} for a, s in ALIASES.items()]
    rows += [{"name": s, "kind": "official", "model": s} for s in REGISTRY]
    return rows
