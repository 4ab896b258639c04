"""Reader of the Keras-2 / kapre full-model HDF5 weight files (edgel3 0.2.1's format).

The container is parsed with h5py alone: no TensorFlow or Keras is imported,
and the stored ``model_config`` is parsed as JSON, never deserialised into
Keras objects. :func:`infer_spec` derives the architecture from a file, so
user-made models of the same families load like official ones
(docs/models.rst §3).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exceptions import WeightsError
from .specs import REGISTRY, SEA_FRONTEND, SPARSE_FRONTEND, FrontendConfig, ModelSpec

__all__ = ["LegacyWeightFile", "read_legacy_h5", "infer_spec", "save_legacy_h5"]

_GZIP_MAGIC = b"\x1f\x8b"
_KAPRE_CLASSES = ("Melspectrogram", "Spectrogram")


# --------------------------------------------------------------------------- legacy reader


@dataclass(frozen=True, eq=False)
class LegacyWeightFile:
    """Contents of a Keras 2 full-model HDF5 weight file, read without Keras.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    keras_version : str or None
        Keras version that saved the file (``'2.0.9'`` for the official files).
    layer_names : list of str
        All layers in graph order (``model_weights.attrs['layer_names']``).
    weighted_layers : list of (str, list of str, list of np.ndarray)
        Layers with at least one weight, in graph order: layer name, weight names
        and float32 arrays, both in the file's ``weight_names`` (load) order.
    config : dict or None
        The JSON-parsed ``model_config`` attribute, if present.
    """

    path: Path
    keras_version: str | None
    layer_names: list[str]
    weighted_layers: list[tuple[str, list[str], list[np.ndarray]]]
    config: dict | None

    def layer_configs(self) -> list[dict]:
        """Layer entries (``name``, ``class_name``, ``config``) of :attr:`config`."""
        if not isinstance(self.config, dict):
            return []
        inner = self.config.get("config")
        layers = inner.get("layers", []) if isinstance(inner, dict) else inner
        return [layer for layer in layers or [] if isinstance(layer, dict)]

    def _class_of(self, name: str) -> str | None:
        for layer in self.layer_configs():
            if layer.get("name", layer.get("config", {}).get("name")) == name:
                return layer.get("class_name")
        return None

    def melspec_config(self) -> dict | None:
        """Config dict of the kapre ``Melspectrogram`` layer, or ``None``."""
        for layer in self.layer_configs():
            if layer.get("class_name") == "Melspectrogram":
                return dict(layer.get("config", {}))
        return None

    def is_kapre(self, index: int) -> bool:
        """Whether ``weighted_layers[index]`` is a kapre front-end layer."""
        name, var_names, arrays = self.weighted_layers[index]
        if self._class_of(name) in _KAPRE_CLASSES:
            return True
        if any("real_kernels" in v or "imag_kernels" in v for v in var_names):
            return True
        # DFT kernels are (n_dft, 1, 1, n_dft // 2 + 1); conv kernels are (3, 3, in, out).
        first = arrays[0]
        return (
            first.ndim == 4
            and first.shape[1:3] == (1, 1)
            and first.shape[3] == (first.shape[0] // 2 + 1)
        )

    def conv_kernels(self) -> list[tuple[str, np.ndarray]]:
        """``(layer name, kernel)`` of every 4-D non-kapre kernel, in graph order."""
        return [
            (name, arrays[0])
            for i, (name, _, arrays) in enumerate(self.weighted_layers)
            if arrays[0].ndim == 4 and not self.is_kapre(i)
        ]

    @property
    def n_values(self) -> int:
        """Total number of stored weight values."""
        return sum(a.size for _, _, arrays in self.weighted_layers for a in arrays)


def _text(value) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    return str(value)


def read_legacy_h5(path: str | os.PathLike) -> LegacyWeightFile:
    """Read a Keras 2 full-model weight file (``.h5`` or gzipped ``.h5.gz``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    LegacyWeightFile

    Raises
    ------
    WeightsError
        If the file is missing, a corrupt or truncated gzip, not HDF5, or lacks the
        ``model_weights`` group or one of its listed datasets.
    """
    import h5py

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"Cannot read weight file {str(path)!r}: {exc}.") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise WeightsError(
                f"Weight file {str(path)!r} is a corrupt or truncated gzip file ({exc}); "
                "delete it and download it again."
            ) from exc
    elif path.name.endswith(".gz"):
        raise WeightsError(
            f"Weight file {str(path)!r} is named .gz but is not gzip data; delete it and "
            "download it again."
        )
    try:
        h5 = h5py.File(io.BytesIO(raw), "r")
    except OSError as exc:
        raise WeightsError(
            f"Weight file {str(path)!r} is not a readable HDF5 file ({exc}); expected a "
            "Keras 2 model file as published with edgel3."
        ) from exc
    with h5:
        if "model_weights" not in h5:
            raise WeightsError(
                f"Weight file {str(path)!r} has no 'model_weights' group (found "
                f"{sorted(h5.keys())}); expected a Keras 2 full-model file saved by model.save."
            )
        group = h5["model_weights"]
        try:
            layer_names = [_text(n) for n in group.attrs["layer_names"]]
        except KeyError as exc:
            raise WeightsError(
                f"Weight file {str(path)!r} lacks the 'layer_names' attribute of "
                "'model_weights'; it is not a Keras 2 weight file."
            ) from exc
        version = h5.attrs.get("keras_version", group.attrs.get("keras_version"))
        weighted = []
        for lname in layer_names:
            if lname not in group:
                raise WeightsError(
                    f"Weight file {str(path)!r} lists layer {lname!r} but has no group for it."
                )
            layer = group[lname]
            var_names = [_text(n) for n in layer.attrs.get("weight_names", [])]
            if not var_names:
                continue
            arrays = []
            for var in var_names:  # weight_names order; h5py iterates alphabetically.
                if var not in layer:
                    raise WeightsError(
                        f"Weight file {str(path)!r}: layer {lname!r} lists weight {var!r} "
                        "but the dataset is missing."
                    )
                arrays.append(np.asarray(layer[var][()], dtype=np.float32))
            weighted.append((lname, var_names, arrays))
        config = None
        if "model_config" in h5.attrs:
            try:
                config = json.loads(_text(h5.attrs["model_config"]))
            except ValueError as exc:
                raise WeightsError(
                    f"Weight file {str(path)!r} has an unreadable model_config ({exc})."
                ) from exc
    return LegacyWeightFile(
        path=path,
        keras_version=None if version is None else _text(version),
        layer_names=layer_names,
        weighted_layers=weighted,
        config=config,
    )


# --------------------------------------------------------------------------- spec inference


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".h5.gz", ".h5", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _frontend_of(legacy: LegacyWeightFile, official: ModelSpec | None) -> FrontendConfig:
    kapre = [i for i in range(len(legacy.weighted_layers)) if legacy.is_kapre(i)]
    shapes = None
    if kapre:
        arrays = legacy.weighted_layers[kapre[0]][2]
        kernels = [a for a in arrays if a.ndim == 4]
        banks = [a for a in arrays if a.ndim == 2]
        if kernels and banks:
            # Match by position and rank: the filterbank's variable name varies.
            shapes = (kernels[0].shape[0], kernels[0].shape[3], banks[0].shape[1])
    cfg = legacy.melspec_config()
    if cfg is not None:
        try:
            sr = int(cfg["sr"])
            frontend = FrontendConfig(
                sample_rate=sr,
                n_dft=int(cfg["n_dft"]),
                n_hop=int(cfg["n_hop"]),
                n_mels=int(cfg["n_mels"]),
                fmin=float(cfg.get("fmin") or 0.0),
                fmax=float(cfg["fmax"]) if cfg.get("fmax") is not None else sr / 2,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(
                f"Weight file {str(legacy.path)!r}: Melspectrogram config {cfg} lacks a "
                f"valid {exc}."
            ) from exc
        if shapes is not None and shapes != (frontend.n_dft, frontend.n_bins, frontend.n_mels):
            raise WeightsError(
                f"Weight file {str(legacy.path)!r}: kapre arrays give (n_dft, bins, mels) = "
                f"{shapes} but its Melspectrogram config says n_dft={frontend.n_dft}, "
                f"n_mels={frontend.n_mels}."
            )
        return frontend
    if shapes is not None:
        # Without a config only n_dft and n_mels are known; sr and hop come from the family.
        for known in (SEA_FRONTEND, SPARSE_FRONTEND):
            if shapes == (known.n_dft, known.n_bins, known.n_mels):
                return known
        raise WeightsError(
            f"Weight file {str(legacy.path)!r} has no model_config and its kapre arrays give "
            f"(n_dft, bins, mels) = {shapes}, matching no known front end; the sample rate "
            "and hop cannot be inferred."
        )
    if official is not None:
        return official.frontend
    raise WeightsError(
        f"Weight file {str(legacy.path)!r} has neither a Melspectrogram config nor kapre "
        "arrays; its front end (sample rate, FFT size, hop, mels) cannot be inferred."
    )


def _layer_kind(legacy: LegacyWeightFile, index: int) -> str:
    arrays = legacy.weighted_layers[index][2]
    if legacy.is_kapre(index):
        return "kapre"
    if arrays[0].ndim == 4 and len(arrays) <= 2:
        return "conv"
    if 2 <= len(arrays) <= 4 and all(a.ndim == 1 and a.shape == arrays[0].shape for a in arrays):
        return "bn"
    return "other"


def infer_spec(legacy: LegacyWeightFile, name: str | None = None) -> ModelSpec:
    """Derive a model spec from a weight file's own contents.

    Parameters
    ----------
    legacy : LegacyWeightFile
        A file read by :func:`read_legacy_h5`.
    name : str, optional
        Name of the spec; defaults to the file stem.

    Returns
    -------
    ModelSpec
        Equal to the registry spec when the file is an official one.

    Raises
    ------
    WeightsError
        If the architecture is not the 8-conv L3 audio body (the message lists
        the layers found), the front end cannot be inferred, or the file is named
        like an official model but does not match it.
    """
    stem = _file_stem(legacy.path)
    name = stem if name is None else name
    official = REGISTRY.get(stem) or REGISTRY.get(name)
    frontend = _frontend_of(legacy, official)

    kinds = [_layer_kind(legacy, i) for i in range(len(legacy.weighted_layers))]
    body = kinds[1:] if kinds[:1] == ["kapre"] else kinds
    expected = ["bn"] + ["conv", "bn"] * 7 + ["conv"]
    summary = ", ".join(
        f"{lname} {[tuple(a.shape) for a in arrays]}" for lname, _, arrays in legacy.weighted_layers
    )

    def unsupported(why: str) -> WeightsError:
        return WeightsError(
            f"Weight file {str(legacy.path)!r} has an unsupported architecture ({why}); "
            f"expected the L3 audio body [kapre] BN, 8 x (conv 3x3 [+ BN]). Layers with "
            f"weights: {summary}."
        )

    if body[: len(expected)] != expected or body[len(expected) :] not in ([], ["bn"]):
        raise unsupported(f"layer kinds {kinds}")
    kernels = [k for _, k in legacy.conv_kernels()]
    shapes = [tuple(k.shape) for k in kernels]
    chans = [s[3] for s in shapes]
    if any(s[:2] != (3, 3) for s in shapes):
        raise unsupported(f"conv kernel shapes {shapes}")
    if any(chans[i] != chans[i + 1] for i in (0, 2, 4, 6)):
        raise unsupported(f"convs of a block differ in channels: {shapes}")
    if [s[2] for s in shapes] != [1] + chans[:-1]:
        raise unsupported(f"conv input channels do not chain: {shapes}")
    head = "bn_relu" if body[-1] == "bn" else "none"
    bn_sizes = [
        legacy.weighted_layers[i][2][0].shape[0] for i, kind in enumerate(kinds) if kind == "bn"
    ]
    # Input BN over the single mel channel, then one BN per conv (the last one only as head).
    if bn_sizes != [1] + chans[: len(bn_sizes) - 1]:
        raise unsupported(f"BatchNormalization sizes {bn_sizes} do not follow the convs {shapes}")
    emb_dim = int(chans[-1])
    spec = ModelSpec(
        name=name,
        model_type="sea" if frontend.sample_rate == 8000 else "sparse",
        emb_dim=emb_dim,
        filters=tuple(int(c) for c in chans[::2]),
        head=head,
        frontend=frontend,
        legacy_api=False,
    )
    if official is not None:
        got = (spec.frontend, spec.filters, spec.head, spec.emb_dim)
        want = (official.frontend, official.filters, official.head, official.emb_dim)
        if got != want:
            raise WeightsError(
                f"Weight file {str(legacy.path)!r} is named like official model "
                f"{official.name!r} but does not match it: (frontend, filters, head, emb_dim) "
                f"= {got}, expected {want}. Rename the file or use the right one."
            )
        spec = dataclasses.replace(
            spec,
            retrain_type=official.retrain_type,
            sparsity=official.sparsity,
            legacy_api=official.legacy_api,
            blob_sha1=official.blob_sha1 if name == official.name else None,
            unpacked_sha256=official.unpacked_sha256 if name == official.name else None,
        )
    return spec


# --------------------------------------------------------------------------- writer

_KAPRE_CONFIG = {
    "padding": "same",
    "power_spectrogram": 2.0,
    "return_decibel_spectrogram": False,
    "trainable_kernel": False,
    "image_data_format": "channels_last",
    "trainable_fb": False,
    "power_melgram": 1.0,
    "return_decibel_melgram": True,
    "htk": True,
    "norm": 1,
}


def _legacy_layer(layer) -> tuple[str, dict, list[tuple[str, np.ndarray]]]:
    """(Keras-2 class name, config, [(variable name, array)]) of one Keras 3 layer."""
    from .frontend import dft_kernels

    kind = type(layer).__name__
    arrays = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
    if kind == "MelSpectrogram":
        cfg = layer.config
        real, imag = dft_kernels(cfg)
        config = {
            **_KAPRE_CONFIG,
            "name": layer.name,
            "n_dft": cfg.n_dft,
            "n_hop": cfg.n_hop,
            "sr": cfg.sample_rate,
            "n_mels": cfg.n_mels,
            "fmin": cfg.fmin,
            "fmax": cfg.mel_fmax,
        }
        variables = [("real_kernels", real), ("imag_kernels", imag), ("Variable", arrays[0])]
        return "Melspectrogram", config, variables
    names = {
        "Conv2D": ["kernel", "bias"],
        "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
    }.get(kind, [f"weight_{i}" for i in range(len(arrays))])
    return kind, {"name": layer.name}, list(zip(names, arrays))


def save_legacy_h5(model, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write a model in edgel3 0.2.1's Keras-2 full-model HDF5 layout.

    The file loads with :func:`read_legacy_h5` / :func:`edgel3.core.load_model_file`
    (and by topology into 0.2.1's graphs): one group per layer with
    ``weight_names`` in load order, kapre's DFT kernels and filterbank for the
    mel layer, and a JSON ``model_config`` naming every layer.

    Parameters
    ----------
    model : keras.Model
        A model built by :mod:`edgel3.models`.
    path : path-like
        Output file; gzipped when ``compress`` (name it ``.h5.gz``).
    compress : bool
        Gzip the file, as the official files are distributed.

    Returns
    -------
    pathlib.Path
        The written file (written atomically).
    """
    import h5py

    from .files import atomic_write

    buffer = io.BytesIO()
    layer_entries = []
    with h5py.File(buffer, "w") as h5:
        h5.attrs["keras_version"] = "2.0.9"
        h5.attrs["backend"] = "tensorflow"
        group = h5.create_group("model_weights")
        group.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        previous = None
        for layer in model.layers:
            kind, config, variables = _legacy_layer(layer)
            entry = {"name": layer.name, "class_name": kind, "config": config}
            entry["inbound_nodes"] = [[[previous, 0, 0, {}]]] if previous else []
            layer_entries.append(entry)
            previous = layer.name
            sub = group.create_group(layer.name)
            names = [f"{layer.name}/{var}:0" for var, _ in variables]
            sub.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, (_, array) in zip(names, variables):
                sub.create_dataset(name, data=array)
        h5.attrs["model_config"] = json.dumps(
            {
                "class_name": "Model",
                "config": {
                    "name": model.name,
                    "layers": layer_entries,
                    "input_layers": [[model.layers[0].name, 0, 0]],
                    "output_layers": [[model.layers[-1].name, 0, 0]],
                },
            }
        )
    data = buffer.getvalue()
    if compress:
        data = gzip.compress(data, mtime=0)
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)
