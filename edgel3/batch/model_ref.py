"""Model references that worker processes and Ray actors can load by themselves."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..exceptions import EdgeL3Error, ParameterError
from ..specs import REGISTRY, get_spec, resolve_spec

__all__ = ["ModelRef", "resolve_model_ref"]


@dataclass(frozen=True)
class ModelRef:
    """A model as worker processes and Ray actors can load it.

    Attributes
    ----------
    source : str or keras.Model
        An official model name or an absolute file path (portable), or a
        loaded model (usable in this process only).
    model_id : str
        Written to manifests and Parquet rows: the official name, or
        ``<file name>@<sha1 prefix>`` for other files.
    sample_rate : int or None
        The model's input rate, when known without loading it.
    weights : str or None
        For official models, the weight file found by this process (used by
        workers where it exists; elsewhere they find or download their own).
    """

    source: object
    model_id: str
    sample_rate: int | None
    weights: str | None = None

    @property
    def portable(self) -> bool:
        """Whether other processes can load the model from ``source``."""
        return isinstance(self.source, str)

    def load(self):
        """Load (or return) the model in this process; cached per process."""
        from ..loading import load_official
        from ..reference import resolve_model

        if self.weights is not None:
            # Environment settings (EDGEL3_WEIGHTS_DIR) may not reach Ray workers: pass the file.
            found = self.weights if os.path.exists(self.weights) else None
            return load_official(get_spec(self.source), weights_path=found)
        return resolve_model(self.source).load()


def resolve_model_ref(
    model=None, model_type="sparse", emb_dim=128, retrain_type="ft", sparsity=95.45
) -> ModelRef:
    """Resolve ``get_embedding``'s model arguments without loading TensorFlow.

    Official weights are located (downloaded and verified if needed) here, once,
    so that workers never download concurrently.

    Returns
    -------
    ModelRef

    Raises
    ------
    ParameterError, WeightsError
    """
    from ..weights import get_weights_path

    if isinstance(model, str) and not os.path.exists(model):
        from ..bundled import BUNDLED  # models shipped in the package ('tiny')

        if model in BUNDLED:
            model = str(BUNDLED[model])
    if model is None or (isinstance(model, str) and not os.path.exists(model)):
        if model is None:
            spec = resolve_spec(model_type, emb_dim, retrain_type, sparsity)
        else:
            try:
                spec = get_spec(model)
            except ParameterError:
                raise ParameterError(
                    f"model={model!r} is neither an existing file nor an official model name "
                    "(see `edgel3 models`)."
                ) from None
        weights = str(get_weights_path(spec))
        return ModelRef(spec.name, spec.name, spec.sample_rate, weights)
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        return ModelRef(path, _file_model_id(path), _file_sample_rate(path))
    if hasattr(model, "predict_on_batch") and (
        hasattr(model, "layers") or hasattr(model, "sample_rate")
    ):  # as edgel3.core accepts it
        return ModelRef(model, str(getattr(model, "name", type(model).__name__)), None)
    raise ParameterError(
        "model must be None, a keras.Model, a model name or a file path; "
        f"got {type(model).__name__}."
    )


def _file_model_id(path: str) -> str:
    from ..weights import file_blob_sha1

    digest = file_blob_sha1(path)
    for spec in REGISTRY.values():
        if spec.blob_sha1 == digest:
            return spec.name
    return f"{os.path.basename(path)}@{digest[:12]}"


def _file_sample_rate(path: str) -> int | None:
    if not path.endswith((".h5", ".h5.gz")):
        return None
    from ..legacy_h5 import infer_spec, read_legacy_h5

    try:
        return infer_spec(read_legacy_h5(path)).sample_rate
    except EdgeL3Error:
        return None  # the real error is raised where the model is loaded
