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
import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .exceptions import ParameterError, WeightsError
from .runners import is_keras_model, is_runner, model_sample_rate, select_runner
from .specs import ALIASES, REGISTRY, get_spec, resolve_spec

__all__ = [
    "ModelReference",
    "resolve_model",
    "model_names",
    "KINDS",
    "MODEL_FILE_SUFFIXES",
    "AUTO_NUMPY_MAX_WINDOWS",
]

#: What a reference points at.
KINDS = ("official", "bundled", "file", "object")
#: ``runtime='auto'``: jobs of at most this many windows run a dense legacy model with NumPy
#: in a process without TensorFlow. Measured (``benchmarks/runtimes.py``, SEA-64, 2 cores):
#: NumPy starts ~4 s sooner and spends ~0.8 ms more per window, so it finishes first up to
#: ~5,000 windows; 4,000 (6.7 min of audio at hop 0.1 s) keeps a margin.
AUTO_NUMPY_MAX_WINDOWS = 4000
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
        What runs a legacy weight file (see :meth:`uses_numpy`).
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
            return _file_identity(self.path, bundled=self.kind == "bundled")
        model = self.source
        if getattr(model, "model_id", None):
            return str(model.model_id)
        if getattr(model, "path", None) is not None and Path(model.path).is_file():
            return _file_identity(Path(model.path))
        if is_keras_model(model):
            return f"{getattr(model, 'name', 'model')}@{_keras_digest(model)[:12]}"
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
        if path is not None and path.name.endswith((".h5", ".h5.gz")):
            from .legacy_h5 import infer_spec, read_legacy_h5

            return infer_spec(read_legacy_h5(path)).sample_rate
        return model_sample_rate(self.load())

    @functools.cached_property
    def embedding_size(self) -> int:
        """Values per embedding."""
        if self.kind == "official":
            return self.spec.emb_dim
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
            An unknown runtime, or ``'numpy'`` for a model that is not a legacy
            weight file (``.h5``/``.h5.gz``, every official model).
        """
        from .checks import check_choice
        from .numpy_runtime import RUNTIMES

        runtime = check_choice(runtime, RUNTIMES, "runtime")
        reference = replace(self, runtime=runtime)
        if runtime == "numpy" and not reference.is_legacy:
            raise ParameterError(
                f"runtime='numpy' runs legacy weight files (.h5/.h5.gz: every official model); "
                f"model {self.name!r} is not one (use runtime='keras' or 'auto')."
            )
        return reference

    @property
    def is_legacy(self) -> bool:
        """Whether the model is a legacy weight file (every official model); nothing is read."""
        if self.kind == "official":
            return True
        return self.path is not None and str(self.path).endswith((".h5", ".h5.gz"))

    @property
    def legacy_file(self) -> str | None:
        """The legacy weight file the NumPy runtime would read (located), else None."""
        from .numpy_runtime import supports_file

        if self.kind == "official":
            return self.located().weights
        if self.path is not None and supports_file(self.path):
            return str(self.path)
        return None

    def uses_numpy(self, n_windows: int | None = None) -> bool:
        """Whether :meth:`runner` gives the NumPy runtime (:mod:`edgel3.numpy_runtime`).

        ``'numpy'``: always; ``'keras'``: never. ``'auto'`` takes the runtime that
        finishes the job sooner (``benchmarks/runtimes.py``, docs/runtime.rst), a
        fixed rule of the model and the job:

        * a pruned legacy file (its convs keep at most
          :data:`edgel3.sparse.MODEL_DENSITY_THRESHOLD` of their multiply-adds):
          NumPy -- Keras would run the same sparse kernels, after importing
          TensorFlow;
        * a dense legacy file (SEA): NumPy for jobs of at most
          :data:`AUTO_NUMPY_MAX_WINDOWS` windows in a process that has not
          imported TensorFlow (it starts seconds sooner), Keras otherwise (more
          windows per second);
        * anything else (``.keras``/``.tflite`` files, loaded models): not NumPy.

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
        if not self.is_legacy:
            return False
        if self.is_pruned:
            return True
        small = n_windows is not None and n_windows <= AUTO_NUMPY_MAX_WINDOWS
        return small and "tensorflow" not in sys.modules

    @functools.cached_property
    def is_pruned(self) -> bool:
        """Whether a legacy file's convs keep at most the sparse executor's share of MACs.

        Official SEA models are dense (nothing read); other legacy files are read
        (h5py, no TensorFlow) and their conv kernels counted.
        """
        if not self.is_legacy:
            return False
        if self.kind == "official" and not self.spec.sparsity:
            return False
        from .numpy_runtime import kept_fraction_of_file
        from .sparse import MODEL_DENSITY_THRESHOLD

        return kept_fraction_of_file(self.legacy_file) <= MODEL_DENSITY_THRESHOLD

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
            ``runtime`` is ``'numpy'`` or ``'keras'`` where the model is a legacy
            file; other references are returned as they are.
        """
        if self.runtime != "auto" or self.kind == "object" or not self.is_legacy:
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

            return load_numpy_runner(self.legacy_file)
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


# --------------------------------------------------------------------------- digests


@functools.lru_cache(maxsize=64)
def _file_identity_cached(path: str, size: int, mtime_ns: int, bundled: bool) -> str:
    from .weights import file_blob_sha1

    digest = file_blob_sha1(path)
    if not bundled:
        for spec in REGISTRY.values():
            if spec.blob_sha1 == digest:
                return spec.name
    return f"{Path(path).name.split('.')[0] if bundled else Path(path).name}@{digest[:12]}"


def _file_identity(path: Path, *, bundled: bool = False) -> str:
    stat = path.stat()
    return _file_identity_cached(str(path), stat.st_size, stat.st_mtime_ns, bundled)


def _keras_digest(model) -> str:
    """Digest of a Keras model's architecture (without layer names) and weights."""
    digest = hashlib.sha256()
    for layer in model.layers:
        try:
            config = dict(layer.get_config())
        except Exception:  # custom layers without get_config still hash by class and weights
            config = {}
        config.pop("name", None)
        digest.update(type(layer).__name__.encode())
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        array = np.ascontiguousarray(np.asarray(weight))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
