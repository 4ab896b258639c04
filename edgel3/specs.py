"""Frozen specifications of the edgel3 model families and the official weight files.

This module is the single source of truth for every constant that ties a model
to its input pipeline (sample rate, FFT size, hop, mel bands) and to its weight
file (name, download hash).  It imports nothing heavy, so the CLI and
``import edgel3`` stay light.

See ``docs/models.rst`` §1-2 and ``docs/frontend.rst`` §6.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .checks import is_real
from .exceptions import ParameterError

__all__ = [
    "FrontendConfig",
    "ModelSpec",
    "SEA_FRONTEND",
    "SPARSE_FRONTEND",
    "MODEL_TYPES",
    "RETRAIN_TYPES",
    "EMB_DIMS",
    "SPARSITIES",
    "LEGACY_SPARSITIES",
    "REGISTRY",
    "WEIGHTS_COMMIT",
    "WEIGHTS_URL_TEMPLATE",
    "get_spec",
    "resolve_spec",
    "sparsity_text",
]


@dataclass(frozen=True)
class FrontendConfig:
    """Constants of the in-model kapre-0.1.4 mel spectrogram.

    Parameters
    ----------
    sample_rate : int
        Rate (Hz) the model expects; one analysis window is one second long,
        so it is also the window length in samples.
    n_dft : int
        FFT size (and Hann window length) of the STFT.
    n_hop : int
        Hop between STFT frames, in samples.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Frequency range (Hz) of the mel filterbank.
    """

    sample_rate: int
    n_dft: int
    n_hop: int
    n_mels: int
    fmin: float = 0.0
    fmax: float | None = None

    @property
    def frame_length(self) -> int:
        """Samples in one 1-second analysis window."""
        return self.sample_rate

    @property
    def mel_fmax(self) -> float:
        """Upper edge of the filterbank (``sample_rate / 2`` when unset)."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_bins(self) -> int:
        """Number of one-sided FFT bins, ``n_dft // 2 + 1``."""
        return self.n_dft // 2 + 1

    @property
    def n_frames(self) -> int:
        """STFT frames per window under TF 'SAME' padding, ``ceil(L / hop)``."""
        return -(-self.frame_length // self.n_hop)

    @property
    def same_padding(self) -> tuple[int, int]:
        """(left, right) zeros added to each window by TF 'SAME' padding."""
        total = max((self.n_frames - 1) * self.n_hop + self.n_dft - self.frame_length, 0)
        return total // 2, total - total // 2


SEA_FRONTEND = FrontendConfig(sample_rate=8000, n_dft=1024, n_hop=160, n_mels=64, fmax=4000.0)
SPARSE_FRONTEND = FrontendConfig(sample_rate=48000, n_dft=2048, n_hop=242, n_mels=256, fmax=24000.0)

MODEL_TYPES = ("sparse", "sea")
RETRAIN_TYPES = ("ft", "kd")
EMB_DIMS = (512, 256, 128, 64)
#: Sparsities 0.2.1's API accepted.
LEGACY_SPARSITIES = (53.5, 63.5, 72.3, 87.0, 95.45)
#: Every sparsity with a published file (73.5, 81.0, 90.5 were dropped from 0.2.1's API).
SPARSITIES = (53.5, 63.5, 72.3, 73.5, 81.0, 87.0, 90.5, 95.45)

#: Filters per conv block (conv1-2, conv3-4, conv5-6, conv7-8) of the SEA students.
SEA_FILTERS = {
    512: (64, 128, 256, 512),
    256: (32, 64, 128, 256),
    128: (32, 64, 128, 128),
    64: (32, 64, 128, 64),
}
L3_FILTERS = (64, 128, 256, 512)

WEIGHTS_COMMIT = "e65810196cd62ff3f8b5f6bbc7d81cc755abe586"
WEIGHTS_URL_TEMPLATE = "https://github.com/ksangeeta2429/edgel3/raw/{ref}/{filename}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model, find its weights and feed it audio.

    Parameters
    ----------
    name : str
        Registry name, equal to the official file stem
        (e.g. ``'edgel3_sea_ust_audio_emb_64'``) for official models.
    model_type : {'sparse', 'sea'}
        Model family.
    emb_dim : int
        Embedding size (the channels of the last conv).
    filters : tuple of int
        Filters of the four conv blocks (two convs each).
    head : {'none', 'bn_relu'}
        What follows the last conv before global max pooling: nothing
        (sparse L3) or BatchNormalization + ReLU (SEA students).
    frontend : FrontendConfig
        The input pipeline constants.
    retrain_type : {'ft', 'kd'} or None
        Retraining method of sparse models.
    sparsity : float or None
        Overall conv sparsity (%) of sparse models.
    blob_sha1 : str or None
        Git blob SHA-1 of the gzipped official file (published by the weight
        repository).
    unpacked_sha256 : str or None
        SHA-256 of the official file's unpacked (gunzipped) bytes, where edgel3
        ships it (docs/models.rst §1.3); ``None`` when it is not known here.
    legacy_api : bool
        Whether edgel3 0.2.1's ``get_embedding`` could select this model.
    """

    name: str
    model_type: str
    emb_dim: int
    filters: tuple[int, int, int, int]
    head: str
    frontend: FrontendConfig
    retrain_type: str | None = None
    sparsity: float | None = None
    blob_sha1: str | None = None
    unpacked_sha256: str | None = None
    legacy_api: bool = True

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) at which audio is fed to the model."""
        return self.frontend.sample_rate

    @property
    def filename(self) -> str:
        """Name of the gzipped official weight file."""
        return self.name + ".h5.gz"

    @property
    def url(self) -> str:
        """Pinned official download URL of the weight file."""
        return WEIGHTS_URL_TEMPLATE.format(ref=WEIGHTS_COMMIT, filename=self.filename)


def sparsity_text(sparsity: float) -> str:
    """Render a sparsity as Python's float text, the form used in file names.

    Examples
    --------
    >>> sparsity_text(87)
    '87.0'
    >>> sparsity_text(95.45)
    '95.45'
    """
    return repr(float(sparsity))


_SPARSE_SHA1 = {
    ("ft", 53.5): "145a4a61614c1b0b9f68339a844a3c92a431e118",
    ("ft", 63.5): "ce456a346803f8251505f137c8c3d04dcdcb8e67",
    ("ft", 72.3): "3bee3a0a90c82d7cd5ff77f3012eb51f6b818ef8",
    ("ft", 73.5): "6bf23ad68e5bf2e9e41c83659032234e18f5402e",
    ("ft", 81.0): "550d3c64ced38a3f61c8333f2775259bce216464",
    ("ft", 87.0): "a3537e20cd83b5d55708af7b1141a8e0c092488c",
    ("ft", 90.5): "fbf4d3742f46fe40960e9f7ff75ca2a2656877d0",
    ("ft", 95.45): "f04c05f436a6f95eea6f30573cb70c68841e16de",
    ("kd", 53.5): "28681887520bd12b87221c13beab11a766cb10dd",
    ("kd", 63.5): "c2bad561ef1f1cdd919f73f4c4f34f5672f58b4b",
    ("kd", 72.3): "2bc10ef8b9cec44354c5564173106ca5128cdc92",
    ("kd", 73.5): "81374e4a0a082eae689da873ef4079485576641d",
    ("kd", 81.0): "f522214d1f7e55cc2dd5c260051aa8b7b3fd0c65",
    ("kd", 87.0): "04fd3b2bf1d461bd6bc9a33925651797705e8b56",
    ("kd", 90.5): "24ec812c198b397c6c56da04ccde84b363e17a35",
    ("kd", 95.45): "ddefcd4c49a216f2ccec92db15105ed1499a6a35",
}
_SEA_SHA1 = {
    512: "116703e97997cc316d7163ede5d2f5e4d4018f87",
    256: "6be46fee2c278b79d9f77f064146a9493eff2f83",
    128: "162576876259e8267eb6cefe09470dbf153ed6fc",
    64: "f3535405c91fe8da71f6456adb8a061213324239",
}

#: SHA-256 of the unpacked bytes, for the files whose unpacked bytes could be hashed while
#: writing edgel3 (gunzipped in memory from the verified ``.h5.gz``; docs/models.rst §1.3).
_UNPACKED_SHA256 = {
    "edgel3_sea_ust_audio_emb_64": (
        "e8cd0eaac5d444c231d81940e30dc904ffed5cdafa632f7a5547142dc8283912"
    ),
}


def _build_registry() -> dict[str, ModelSpec]:
    specs = []
    for (retrain, sparsity), sha1 in _SPARSE_SHA1.items():
        specs.append(
            ModelSpec(
                name=f"edgel3_{retrain}_audio_sparsity_{sparsity_text(sparsity)}",
                model_type="sparse",
                emb_dim=512,
                filters=L3_FILTERS,
                head="none",
                frontend=SPARSE_FRONTEND,
                retrain_type=retrain,
                sparsity=sparsity,
                blob_sha1=sha1,
                legacy_api=sparsity in LEGACY_SPARSITIES,
            )
        )
    for emb_dim, sha1 in _SEA_SHA1.items():
        specs.append(
            ModelSpec(
                name=f"edgel3_sea_ust_audio_emb_{emb_dim}",
                model_type="sea",
                emb_dim=emb_dim,
                filters=SEA_FILTERS[emb_dim],
                head="bn_relu",
                frontend=SEA_FRONTEND,
                blob_sha1=sha1,
            )
        )
    return {
        spec.name: replace(spec, unpacked_sha256=_UNPACKED_SHA256.get(spec.name)) for spec in specs
    }


#: The 20 official models, keyed by file stem.
REGISTRY: dict[str, ModelSpec] = _build_registry()


def _short_names() -> dict[str, str]:
    aliases = {}
    for spec in REGISTRY.values():
        if spec.model_type == "sea":
            aliases[f"sea-{spec.emb_dim}"] = spec.name
        else:
            aliases[f"sparse-{spec.retrain_type}-{sparsity_text(spec.sparsity)}"] = spec.name
    return aliases


#: Short aliases such as ``'sea-64'`` or ``'sparse-kd-87.0'``.
ALIASES: dict[str, str] = _short_names()


def get_spec(name: str) -> ModelSpec:
    """Look up an official model by file stem, file name or short alias.

    Parameters
    ----------
    name : str
        ``'edgel3_sea_ust_audio_emb_64'``, ``'edgel3_sea_ust_audio_emb_64.h5.gz'``
        or ``'sea-64'``.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ParameterError
        If no official model has that name.

    Examples
    --------
    >>> get_spec('sea-64').sample_rate
    8000
    """
    stem = str(name)
    for suffix in (".h5.gz", ".h5"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = ALIASES.get(stem, stem)
    if stem not in REGISTRY:
        raise ParameterError(
            f"Unknown model name {name!r}; expected one of the official models "
            f"(see `edgel3 models`), e.g. 'sea-64' or 'edgel3_ft_audio_sparsity_95.45'."
        )
    return REGISTRY[stem]


def resolve_spec(
    model_type: str = "sparse",
    emb_dim: int = 128,
    retrain_type: str = "ft",
    sparsity: float = 95.45,
) -> ModelSpec:
    """Resolve 0.2.1's model arguments to an official model.

    As in 0.2.1 every argument is validated whatever the model type, so a bad
    ``sparsity`` is reported even when ``model_type='sea'``.

    Parameters
    ----------
    model_type : {'sparse', 'sea'}
    emb_dim : {512, 256, 128, 64}
        Used by ``'sea'`` only.
    retrain_type : {'ft', 'kd'}
        Used by ``'sparse'`` only.
    sparsity : float
        One of :data:`SPARSITIES`; ``87`` and ``87.0`` are the same. Used by
        ``'sparse'`` only.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ParameterError
        If any argument is outside its allowed values.

    Examples
    --------
    >>> resolve_spec('sparse', sparsity=87).name
    'edgel3_ft_audio_sparsity_87.0'
    """
    if model_type not in MODEL_TYPES:
        raise ParameterError(f"Invalid model type {model_type!r}; expected one of {MODEL_TYPES}.")
    if retrain_type not in RETRAIN_TYPES:
        raise ParameterError(
            f"Invalid retrain type {retrain_type!r}; expected one of {RETRAIN_TYPES}."
        )
    if not is_real(sparsity) or float(sparsity) not in SPARSITIES:
        raise ParameterError(f"Invalid sparsity value {sparsity!r}; expected one of {SPARSITIES}.")
    if not is_real(emb_dim) or emb_dim not in EMB_DIMS:
        raise ParameterError(
            f"Invalid embedding dimension {emb_dim!r}; expected one of {EMB_DIMS}."
        )
    if model_type == "sea":
        return REGISTRY[f"edgel3_sea_ust_audio_emb_{int(emb_dim)}"]
    return REGISTRY[f"edgel3_{retrain_type}_audio_sparsity_{sparsity_text(sparsity)}"]
