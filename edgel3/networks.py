"""Keras 3 builders of the edgel3 networks and the legacy-weight loader.

Both families (the sparse L3 audio network and the SEA students) share one
body: mel spectrogram -> input BatchNormalization -> blocks of
[Conv 3x3 -> BN -> ReLU], 2x2 max pooling after every second conv (but the
last), the last conv named ``audio_embedding_layer``, an optional BN + ReLU
head, and a max pool over the whole map (``docs/models.rst``).  Layer names follow
the 0.2.1 graph so a legacy file can be cross-checked by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
from keras import layers

from .exceptions import WeightsError
from .frontend import check_stored_frontend
from .layers import MelSpectrogram
from .specs import FrontendConfig, ModelSpec

__all__ = ["build_model", "build_audio_network", "load_legacy_weights"]

logger = logging.getLogger(__name__)

HEADS = ("none", "bn_relu")
_KERNEL_L2 = 1e-5  # L2 weight decay of the original convs (stored as 9.99e-06)


class _LayerNamer:
    """Hands out Keras-2 style names (``conv2d_1``, ``batch_normalization_2``...)."""

    def __init__(self):
        self._counts: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}_{self._counts[kind]}"


def _conv_block(x, filters: int, name: str, namer: _LayerNamer, *, bn_relu: bool = True):
    """Conv 3x3 'same' (+ BN + ReLU): the one repeated unit of the network."""
    x = layers.Conv2D(
        filters,
        (3, 3),
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(_KERNEL_L2),
        name=name,
    )(x)
    if bn_relu:
        x = layers.BatchNormalization(
            epsilon=1e-3, momentum=0.99, name=namer("batch_normalization")
        )(x)
        x = layers.Activation("relu", name=namer("activation"))(x)
    return x


def build_audio_network(
    frontend: FrontendConfig,
    conv_filters: Sequence[int],
    *,
    head: str = "bn_relu",
    name: str = "audio_model",
) -> keras.Model:
    """Build an L3-style audio network of any width and depth.

    Parameters
    ----------
    frontend : FrontendConfig
        Mel-spectrogram constants; the input is ``(1, frontend.sample_rate)``.
    conv_filters : sequence of int
        Filters of each 3x3 conv, in order (8 for the official models, fewer
        for depth-reduced ones). Pooling follows every second conv but the last.
    head : {'bn_relu', 'none'}
        What follows the last conv: BN + ReLU (SEA students) or nothing
        (sparse L3: signed, pre-BN embeddings).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Audio window ``(batch, 1, sample_rate)`` -> embedding
        ``(batch, conv_filters[-1])``.

    Raises
    ------
    ValueError
        If ``head`` is unknown or ``conv_filters`` is empty.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}; got head={head!r}.")
    if len(conv_filters) == 0:
        raise ValueError("conv_filters must name at least one conv layer; got an empty list.")
    namer = _LayerNamer()
    inputs = keras.Input(shape=(1, frontend.sample_rate), name="input_1")
    x = MelSpectrogram.from_frontend(frontend, name="melspectrogram_1")(inputs)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=namer("batch_normalization"))(x)
    last = len(conv_filters) - 1
    for index, filters in enumerate(conv_filters):
        is_last = index == last
        conv_name = "audio_embedding_layer" if is_last else namer("conv2d")
        x = _conv_block(x, int(filters), conv_name, namer, bn_relu=not is_last or head == "bn_relu")
        if index % 2 == 1 and not is_last:
            x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=namer("max_pooling2d"))(x)
    # A max pool over the whole map, sized from the layer shape as 0.2.1 did.
    x = layers.MaxPooling2D(tuple(x.shape[1:3]), name=namer("max_pooling2d"))(x)
    outputs = layers.Flatten(name="flatten_1")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(spec: ModelSpec) -> keras.Model:
    """Build the (untrained) network an official or derived :class:`ModelSpec` describes.

    Parameters
    ----------
    spec : ModelSpec

    Returns
    -------
    keras.Model

    Examples
    --------
    >>> from edgel3.specs import get_spec
    >>> build_model(get_spec('sea-64')).output_shape
    (None, 64)
    """
    conv_filters = [f for f in spec.filters for _ in range(2)]
    return build_audio_network(spec.frontend, conv_filters, head=spec.head, name=spec.name)


def load_legacy_weights(model: keras.Model, legacy) -> keras.Model:
    """Load a Keras-2/kapre full-model weight file into a Keras 3 model.

    Layers with weights are paired one to one, in order, as Keras 2's
    ``load_weights`` did by topology; every array shape is checked, names are
    only cross-checked (logged), and the stored kapre DFT kernels and mel
    filterbank are verified against the recomputed ones.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`build_model` / :func:`build_audio_network`.
    legacy : edgel3.weights.LegacyWeightFile
        The parsed weight file.

    Returns
    -------
    keras.Model
        ``model``, with its weights set.

    Raises
    ------
    WeightsError
        If layer counts, shapes or the front-end arrays do not match.
    """
    source = str(legacy.path)
    targets = [layer for layer in model.layers if layer.weights]
    stored = legacy.weighted_layers
    if len(targets) != len(stored):
        raise WeightsError(
            f"{source} holds {len(stored)} layers with weights "
            f"({', '.join(name for name, _, _ in stored)}); the model {model.name!r} has "
            f"{len(targets)} ({', '.join(layer.name for layer in targets)})."
        )
    for layer, (stored_name, _, arrays) in zip(targets, stored):
        if stored_name != layer.name:
            logger.debug("pairing stored layer %s with model layer %s", stored_name, layer.name)
        if isinstance(layer, MelSpectrogram):
            arrays = [check_stored_frontend(arrays, layer.config, source)]
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            raise WeightsError(
                f"{source}: layer {stored_name!r} stores arrays of shapes {found}; model layer "
                f"{layer.name!r} needs {expected}. The file does not belong to this architecture."
            )
        layer.set_weights(arrays)
    return model
