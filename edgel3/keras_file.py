"""Keras 3 ``.keras`` files of the edgel3 families, run with NumPy (no TensorFlow, no Keras).

A ``.keras`` file is a zip archive holding

* ``config.json`` -- the model's configuration: ``config['config']['layers']``
  lists the layers in order, each with its ``class_name`` (``'Conv2D'``,
  ``'MelSpectrogram'``...), its ``config`` (filters, strides, padding,
  activation...) and, in a functional model, its ``inbound_nodes``;
* ``model.weights.h5`` -- the variables, stored not under the layers' own names
  but under names Keras derives again at load time: the layers, in the order of
  ``config.json``, each get the snake-case name of their class
  (``Conv2D`` -> ``conv2d``, ``ReLU`` -> ``re_lu``, ``MelSpectrogram`` ->
  ``mel_spectrogram``), made unique per class by a counter (the first Conv2D is
  ``conv2d``, the second ``conv2d_1``...); a layer's variables are
  ``layers/<that name>/vars/<i>`` in the order the layer creates them:

  ========================  =====================================================
  layer                     ``vars/0``, ``vars/1``, ...
  ========================  =====================================================
  Conv2D                    kernel ``(kh, kw, c_in, c_out)``, bias (if ``use_bias``)
  MaskedConv2D (edgel3)     kernel, bias (if ``use_bias``), 0/1 mask (kernel's shape)
  DepthwiseConv2D           kernel ``(kh, kw, c_in, depth_multiplier)``, bias
  Dense                     kernel ``(in, units)``, bias (if ``use_bias``)
  BatchNormalization        gamma (if ``scale``), beta (if ``center``),
                            moving_mean, moving_variance
  MelSpectrogram (edgel3)   the mel filterbank ``(n_dft // 2 + 1, n_mels)``
  ========================  =====================================================

This module reads the archive and plans the layer chain from ``config.json``
alone (nothing executed, no TensorFlow or Keras imported):
:func:`plan_keras_file` checks every layer against :data:`SUPPORTED_LAYERS`
and the settings the NumPy ops compute, and infers each layer's per-window
shapes; :func:`supports_keras_file` says whether a file runs with NumPy.
Only single-input, single-output chains from a MelSpectrogram front end to a
vector are planned (every edgel3 family: the SEA and sparse L3 bodies, pruned
or not, and the depthwise-separable ``tiny``). :mod:`edgel3.keras_ops`
compiles the plan into NumPy ops; :mod:`edgel3.keras_runner` runs them
(:class:`edgel3.keras_runner.KerasFileRunner`).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .exceptions import WeightsError
from .specs import FrontendConfig

__all__ = [
    "PlannedLayer",
    "plan_keras_file",
    "supports_keras_file",
    "read_keras_config",
    "storage_names",
    "same_padding",
    "pair",
    "file_error",
    "unsupported_layer",
    "SUPPORTED_LAYERS",
    "ACTIVATIONS",
    "IDENTITY_LAYERS",
]

#: Layer classes the runner executes (``class_name`` in ``config.json``).
SUPPORTED_LAYERS = (
    "InputLayer",
    "MelSpectrogram",
    "BatchNormalization",
    "Conv2D",
    "MaskedConv2D",
    "DepthwiseConv2D",
    "ReLU",
    "Activation",
    "MaxPooling2D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling2D",
    "Flatten",
    "Dense",
    "Dropout",
    "SpatialDropout2D",
)
#: Activations the runner applies (``activation`` of a layer's config).
ACTIVATIONS = {"linear": None, "relu": 0.0, "relu6": 6.0}
#: Layers that are the identity at inference.
IDENTITY_LAYERS = ("Dropout", "SpatialDropout2D")


def file_error(source, message: str) -> WeightsError:
    """A one-line :class:`WeightsError` about the file ``source``."""
    return WeightsError(f"{source}: {message}")


# --------------------------------------------------------------------------- file reading


def read_keras_config(path) -> dict:
    """The ``config.json`` of a ``.keras`` file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        The model's serialized configuration (``class_name``, ``config``...).

    Raises
    ------
    WeightsError
        If the file is missing, not a zip archive, or has no valid ``config.json``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise file_error(path, f"not a readable .keras file ({exc}).") from exc


def _snake_case(name: str) -> str:
    """Keras 3's ``naming.to_snake_case`` (the weight store's per-class names)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def storage_names(class_names) -> list[str]:
    """Where Keras 3 stores each layer's variables in ``model.weights.h5``.

    Parameters
    ----------
    class_names : sequence of str
        The layers' classes, in the order of ``config.json``.

    Returns
    -------
    list of str
        ``layers/<name>/vars`` group names: the class in snake case, made unique
        per class by a counter (``conv2d``, ``conv2d_1``...).

    Examples
    --------
    >>> storage_names(["InputLayer", "Conv2D", "ReLU", "Conv2D", "MelSpectrogram"])
    ['input_layer', 'conv2d', 're_lu', 'conv2d_1', 'mel_spectrogram']
    """
    used: dict[str, int] = {}
    names = []
    for class_name in class_names:
        name = _snake_case(class_name)
        if name in used:
            used[name] += 1
            names.append(f"{name}_{used[name]}")
        else:
            used[name] = 0
            names.append(name)
    return names


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: (before, after), the odd one after.

    Parameters
    ----------
    size, kernel, stride : int

    Returns
    -------
    (int, int)
        ``total = max((ceil(size / stride) - 1) * stride + kernel - size, 0)``,
        ``before = total // 2``.

    Examples
    --------
    >>> same_padding(64, 3, 2), same_padding(25, 3, 2), same_padding(50, 3, 1)
    ((0, 1), (1, 1), (1, 1))
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------- layer plan


@dataclass
class PlannedLayer:
    """One layer of ``config.json``: what to run and where its variables are.

    Attributes
    ----------
    name, class_name : str
    config : dict
        The layer's ``config`` in ``config.json``.
    storage : str
        Its group in ``model.weights.h5`` (``layers/<storage>/vars``).
    in_shape, out_shape : tuple of int
        Per window, without the batch axis (``()`` in: the front end's audio).
    """

    name: str
    class_name: str
    config: dict
    storage: str
    in_shape: tuple  # per window, without the batch axis
    out_shape: tuple


def _chain(model_config: dict, source) -> list[dict]:
    """The layers of a single-input, single-output chain, in order."""
    kind = model_config.get("class_name")
    config = model_config.get("config", {})
    layers = config.get("layers")
    if kind not in ("Functional", "Model", "Sequential") or not isinstance(layers, list):
        raise file_error(source, f"the model is a {kind!r}, not a Functional or Sequential model.")
    if not layers:
        raise file_error(source, "the model has no layers.")
    if kind == "Sequential":
        return layers
    previous = None
    for layer in layers:
        nodes = layer.get("inbound_nodes", [])
        sources = [
            arg["config"]["keras_history"][0]
            for node in nodes
            for arg in node.get("args", [])
            if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"
        ]
        expected = [] if previous is None else [previous]
        if len(nodes) > 1 or sources != expected:
            raise file_error(
                source,
                f"layer {layer.get('name')!r} takes {sources or 'no input'}, not the previous "
                "layer's output: only a chain of layers runs with NumPy (use runtime='keras').",
            )
        previous = layer.get("name")
    outputs = config.get("output_layers")
    if outputs and isinstance(outputs[0], str):  # one output: ['name', 0, 0]
        outputs = [outputs]
    if outputs is not None and (len(outputs) != 1 or outputs[0][0] != previous):
        raise file_error(
            source, f"the model's output is {outputs}, not its last layer {previous!r}."
        )
    return layers


def unsupported_layer(source, name, class_name, why: str = "") -> WeightsError:
    """The error for layer ``name`` (``class_name``) that the NumPy runtime does not run."""
    detail = f" ({why})" if why else ""
    return file_error(
        source,
        f"layer {name!r} ({class_name}{detail}) is not supported by the NumPy runtime for "
        f".keras files (supported: {', '.join(SUPPORTED_LAYERS)}); use runtime='keras'.",
    )


def pair(value) -> tuple[int, int]:
    """A Keras size argument (``3`` or ``[3, 3]``) as ``(int, int)``."""
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _check_config(source, name: str, class_name: str, config: dict) -> None:
    """Raise for settings outside what the runner computes (config only)."""

    def bad(why):
        return unsupported_layer(source, name, class_name, why)

    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype not in (None, "float32"):
        raise bad(f"dtype {dtype!r}")
    if config.get("data_format") not in (None, "channels_last"):
        raise bad(f"data_format {config['data_format']!r}")
    activation = config.get("activation", "linear")
    if class_name in ("Conv2D", "MaskedConv2D", "DepthwiseConv2D", "Dense", "Activation"):
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise bad(f"activation {activation!r}")
    if config.get("lora_rank"):
        raise bad("LoRA")
    if class_name in ("Conv2D", "MaskedConv2D", "DepthwiseConv2D"):
        if pair(config.get("dilation_rate", 1)) != (1, 1):
            raise bad(f"dilation_rate {config['dilation_rate']}")
        if config.get("groups", 1) != 1:
            raise bad(f"groups {config['groups']}")
        if config.get("padding") not in ("same", "valid"):
            raise bad(f"padding {config.get('padding')!r}")
    elif class_name == "MaxPooling2D":
        if config.get("padding") not in ("same", "valid"):
            raise bad(f"padding {config.get('padding')!r}")
    elif class_name == "ReLU":
        if float(config.get("negative_slope") or 0) != 0 or float(config.get("threshold") or 0):
            raise bad("negative_slope or threshold")
    elif class_name == "BatchNormalization":
        axis = config.get("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        if axis not in (-1, 3):
            raise bad(f"axis {axis}")


def _out_shape(source, layer: dict, shape: tuple) -> tuple:
    """Per-window output shape of ``layer`` on per-window input ``shape``."""
    class_name, config = layer["class_name"], layer["config"]
    name = config.get("name", layer.get("name"))
    four_d = class_name in (
        "Conv2D",
        "MaskedConv2D",
        "DepthwiseConv2D",
        "MaxPooling2D",
        "GlobalMaxPooling2D",
        "GlobalAveragePooling2D",
    )
    if four_d and len(shape) != 3:
        raise file_error(source, f"layer {name!r} ({class_name}) needs a 4-D input; got {shape}.")
    if class_name in ("Conv2D", "MaskedConv2D", "DepthwiseConv2D", "MaxPooling2D"):
        if class_name == "MaxPooling2D":
            kernel = pair(config["pool_size"])
            strides = pair(config.get("strides") or kernel)
        else:
            kernel = pair(config["kernel_size"])
            strides = pair(config.get("strides", 1))
        if config["padding"] == "same":
            hw = [-(-size // s) for size, s in zip(shape[:2], strides)]
        else:
            hw = [(size - k) // s + 1 for size, k, s in zip(shape[:2], kernel, strides)]
        if min(hw) < 1:
            raise file_error(
                source, f"layer {name!r} ({class_name}) has an empty output on {shape}."
            )
        if class_name in ("Conv2D", "MaskedConv2D"):
            channels = int(config["filters"])
        elif class_name == "DepthwiseConv2D":
            channels = shape[2] * int(config.get("depth_multiplier", 1))
        else:
            channels = shape[2]
        return (hw[0], hw[1], channels)
    if class_name in ("GlobalMaxPooling2D", "GlobalAveragePooling2D"):
        return (1, 1, shape[2]) if config.get("keepdims") else (shape[2],)
    if class_name == "Flatten":
        return (math.prod(shape),)
    if class_name == "Dense":
        return (*shape[:-1], int(config["units"]))
    return shape


def _plan(model_config: dict, source) -> tuple[FrontendConfig, list[PlannedLayer], str]:
    """Check every layer (config only) and infer the shapes; the front end first."""
    layers = _chain(model_config, source)
    storage = storage_names([layer["class_name"] for layer in layers])
    frontend = None
    shape: tuple = ()
    planned: list[PlannedLayer] = []
    for layer, stored in zip(layers, storage):
        class_name = layer["class_name"]
        config = layer.get("config", {})
        name = config.get("name", layer.get("name"))
        if class_name not in SUPPORTED_LAYERS:
            raise unsupported_layer(source, name, class_name)
        _check_config(source, name, class_name, config)
        if class_name == "InputLayer":
            if planned or frontend is not None:
                raise file_error(source, f"layer {name!r}: a second input.")
            continue
        if frontend is None:
            if class_name != "MelSpectrogram":
                raise file_error(
                    source,
                    f"layer {name!r} ({class_name}) comes before the MelSpectrogram front end: "
                    "only edgel3 audio networks (audio window -> MelSpectrogram -> ...) run here.",
                )
            frontend = FrontendConfig(
                sample_rate=int(config["sample_rate"]),
                n_dft=int(config["n_dft"]),
                n_hop=int(config["n_hop"]),
                n_mels=int(config["n_mels"]),
                fmin=float(config.get("fmin", 0.0)),
                fmax=None if config.get("fmax") is None else float(config["fmax"]),
            )
            shape = (frontend.n_mels, frontend.n_frames, 1)
            planned.append(PlannedLayer(name, class_name, config, stored, (), shape))
            continue
        if class_name == "MelSpectrogram":
            raise unsupported_layer(source, name, class_name, "a second front end")
        out = _out_shape(source, layer, shape)
        planned.append(PlannedLayer(name, class_name, config, stored, shape, out))
        shape = out
    if frontend is None:
        raise file_error(source, "the model has no MelSpectrogram front end.")
    if len(shape) != 1:
        raise file_error(source, f"the model's output per window has shape {shape}, not a vector.")
    for layer in layers:
        if layer["class_name"] == "InputLayer":
            batch_shape = layer["config"].get("batch_shape") or layer["config"].get(
                "batch_input_shape"
            )
            if batch_shape and math.prod(batch_shape[1:]) != frontend.sample_rate:
                raise file_error(
                    source,
                    f"the input {batch_shape} does not hold one {frontend.sample_rate}-sample "
                    "window.",
                )
    name = model_config.get("config", {}).get("name") or Path(str(source)).stem
    return frontend, planned, name


def supports_keras_file(path) -> bool:
    """Whether :class:`KerasFileRunner` runs ``path``, from its ``config.json`` alone.

    Parameters
    ----------
    path : path-like
        A ``.keras`` file.

    Returns
    -------
    bool
        True when every layer is in :data:`SUPPORTED_LAYERS` with settings the
        runner computes, in a chain from a MelSpectrogram front end to a vector.
        The weights are not read (a file whose variables do not match its
        config still fails in :class:`KerasFileRunner`).
    """
    try:
        plan_keras_file(path)
    except WeightsError:
        return False
    return True


def plan_keras_file(path) -> tuple[FrontendConfig, list[PlannedLayer], str]:
    """Plan a ``.keras`` file's layers from its ``config.json`` (weights not read).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    frontend : edgel3.specs.FrontendConfig
        The MelSpectrogram layer's constants.
    planned : list of PlannedLayer
        The front end first, then every layer that runs (InputLayer left out).
    name : str
        The model's name in its config (else the file's stem).

    Raises
    ------
    WeightsError
        One line naming the file (and the layer, for an unsupported one); a
        malformed config is a WeightsError too.
    """
    config = read_keras_config(path)
    try:
        return _plan(config, str(path))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise file_error(path, f"config.json is not a Keras model config ({exc!r}).") from exc
