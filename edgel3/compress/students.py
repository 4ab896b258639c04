"""Student architectures for distillation and SEA, and their int8 footprint.

Families (:func:`build_student`):

- ``'sea'``: the SEA students, 8 convs ``[c1, c1, c2, c2, c3, c3, c4, c4]``
  (:data:`edgel3.specs.SEA_FILTERS`);
- ``'sparse'``: the L3 audio body (64, 128, 256, 512 filters), e.g. for masked KD;
- ``'ds'``: a small, int8-friendly depthwise-separable network (MobileNet-style):
  a strided 3x3 stem shrinks the mel map at once, then blocks of
  [depthwise 3x3 (stride 1 or 2) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU],
  a global max pool and a dense embedding head.  Only Conv2D, DepthwiseConv2D,
  BatchNormalization (foldable), ReLU, pooling and Dense: every op has an int8
  kernel in LiteRT-Micro / CMSIS-NN;
- ``'tiny'``: the ``'ds'`` configuration of the bundled ``model='tiny'``.

Every student takes ``(batch, 1, sample_rate)`` audio and starts with the
same :class:`~edgel3.layers.MelSpectrogram` layer as the official models.
The ``head`` option chooses what the embedding is: ``'linear'`` (default; can
reach negative targets such as standardised PCA scores) or ``'bn_relu'`` (the
original SEA students: BN + ReLU, embeddings >= 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..exceptions import ParameterError
from ..specs import L3_FILTERS, SEA_FILTERS, SEA_FRONTEND, FrontendConfig

__all__ = [
    "FAMILIES",
    "HEADS",
    "TINY_CONFIG",
    "build_student",
    "build_ds_network",
    "int8_footprint",
]

FAMILIES = ("sea", "sparse", "ds", "tiny")
HEADS = ("linear", "bn_relu")

#: The bundled tiny model: (64, 50) mel -> stem 3x3/2 (16) -> 5 separable blocks -> 64-d.
TINY_CONFIG = {
    "stem_filters": 16,
    "blocks": ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1)),
}


def _bn(name: str, momentum: float = 0.99):
    import keras

    return keras.layers.BatchNormalization(epsilon=1e-3, momentum=momentum, name=name)


def build_ds_network(
    frontend: FrontendConfig = SEA_FRONTEND,
    *,
    stem_filters: int = 16,
    stem_strides: int = 2,
    blocks: Sequence[tuple[int, int]] = TINY_CONFIG["blocks"],
    emb_dim: int = 64,
    head: str = "linear",
    bn_momentum: float = 0.99,
    name: str = "ds_student",
):
    """Build a depthwise-separable student.

    Parameters
    ----------
    frontend : FrontendConfig
        Mel front end; the input is ``(1, frontend.sample_rate)``.
    stem_filters : int
        Filters of the first (full) 3x3 conv.
    stem_strides : int
        Stride of the stem (2 halves both mel and time axes at once).
    blocks : sequence of (filters, stride)
        One separable block each: depthwise 3x3 with that stride, then a 1x1
        conv to ``filters``.
    emb_dim : int
        Embedding size (units of the dense head).
    head : {'linear', 'bn_relu'}
        ``'bn_relu'`` adds BatchNormalization + ReLU after the dense layer.
    bn_momentum : float
        Momentum of the BatchNormalization moving statistics (0.99 as in the
        L3 networks; 0.9 tracks the weights faster in short runs).
    name : str

    Returns
    -------
    keras.Model
        ``(batch, 1, sr)`` -> ``(batch, emb_dim)``.

    Raises
    ------
    ParameterError
        For an unknown head or non-positive sizes.
    """
    import keras
    from keras import layers

    from ..layers import MelSpectrogram

    if head not in HEADS:
        raise ParameterError(f"head must be one of {HEADS}; got head={head!r}.")
    sizes = [stem_filters, stem_strides, emb_dim, *[v for block in blocks for v in block]]
    if any(int(v) < 1 for v in sizes):
        raise ParameterError(f"Every filter count and stride must be >= 1; got {sizes}.")
    inputs = keras.Input(shape=(1, frontend.sample_rate), name="input_1")
    x = MelSpectrogram.from_frontend(frontend, name="melspectrogram_1")(inputs)
    x = _bn("input_bn", bn_momentum)(x)
    x = layers.Conv2D(
        int(stem_filters),
        3,
        strides=int(stem_strides),
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="stem_conv",
    )(x)
    x = _bn("stem_bn", bn_momentum)(x)
    x = layers.ReLU(name="stem_relu")(x)
    for index, (filters, stride) in enumerate(blocks, start=1):
        x = layers.DepthwiseConv2D(
            3, strides=int(stride), padding="same", use_bias=False, name=f"block{index}_dw"
        )(x)
        x = _bn(f"block{index}_dw_bn", bn_momentum)(x)
        x = layers.ReLU(name=f"block{index}_dw_relu")(x)
        x = layers.Conv2D(
            int(filters),
            1,
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"block{index}_pw",
        )(x)
        x = _bn(f"block{index}_pw_bn", bn_momentum)(x)
        x = layers.ReLU(name=f"block{index}_pw_relu")(x)
    x = layers.GlobalMaxPooling2D(name="global_max_pool")(x)
    x = layers.Dense(int(emb_dim), name="embedding")(x)
    if head == "bn_relu":
        x = _bn("embedding_bn", bn_momentum)(x)
        x = layers.ReLU(name="embedding_relu")(x)
    return keras.Model(inputs, x, name=name)


def build_student(
    family: str = "ds",
    *,
    emb_dim: int = 64,
    head: str = "linear",
    frontend: FrontendConfig | None = None,
    name: str | None = None,
    **options,
):
    """Build an untrained student network of a family.

    Parameters
    ----------
    family : {'sea', 'sparse', 'ds', 'tiny'}
        See the module docstring.
    emb_dim : int
        Embedding size. For ``'sea'`` the filters of the published student
        with that size are used (``SEA_FILTERS``; other sizes keep Student 3's
        first three blocks); for ``'sparse'`` the last block gets ``emb_dim``.
    head : {'linear', 'bn_relu'}
        Linear output (default) or the original BN + ReLU.
    frontend : FrontendConfig, optional
        Default: the SEA front end (8 kHz, 64 mels).
    name : str, optional
        Model name (default: ``f'{family}_student'``).
    **options
        Passed to :func:`build_ds_network` for ``'ds'`` (``stem_filters``,
        ``blocks``...).

    Returns
    -------
    keras.Model

    Raises
    ------
    ParameterError
        For an unknown family or head.

    Examples
    --------
    >>> build_student('tiny').output_shape          # doctest: +SKIP
    (None, 64)
    """
    from ..networks import build_audio_network

    frontend = SEA_FRONTEND if frontend is None else frontend
    name = name or f"{family}_student"
    if head not in HEADS:
        raise ParameterError(f"head must be one of {HEADS}; got head={head!r}.")
    if family in ("sea", "sparse"):
        if options:
            raise ParameterError(f"Family {family!r} takes no options; got {sorted(options)}.")
        if family == "sea":
            blocks = SEA_FILTERS.get(int(emb_dim), (*SEA_FILTERS[64][:3], int(emb_dim)))
        else:
            blocks = (*L3_FILTERS[:3], int(emb_dim))
        conv_filters = [f for f in blocks for _ in range(2)]
        body_head = "bn_relu" if head == "bn_relu" else "none"
        return build_audio_network(frontend, conv_filters, head=body_head, name=name)
    if family == "ds":
        return build_ds_network(frontend, emb_dim=emb_dim, head=head, name=name, **options)
    if family == "tiny":
        config = {**TINY_CONFIG, **options}
        return build_ds_network(frontend, emb_dim=emb_dim, head=head, name=name, **config)
    raise ParameterError(f"Unknown student family {family!r}; expected one of {FAMILIES}.")


def _shape_size(shape) -> int:
    return int(np.prod([int(d) for d in shape[1:]]))


def int8_footprint(model) -> dict:
    """Parameter count and int8 memory of a model's CNN (front end excluded).

    A stand-in for the export issue's memory report: BatchNormalization is
    assumed folded into the preceding conv (it adds a per-channel bias), every
    kernel value takes 1 byte and every bias 4 (int32); a standalone BN (the
    one on the mel input) costs a per-channel int8 scale and int32 offset.
    The peak activation is the largest ``input + output`` of one op, in int8
    bytes, over the ops after the mel spectrogram (whose output, the log-mel
    patch, is the exported network's input); folded BN and fused ReLU layers
    are not ops of their own.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    dict
        ``params`` (all weights, trainable or not, front-end filterbank
        excluded), ``int8_static_bytes``, ``int8_peak_activation_bytes``,
        ``peak_layer`` and ``largest_tensor_bytes``.
    """
    import keras

    from ..layers import MelSpectrogram

    params = 0
    static = 0
    peak, peak_layer, largest = 0, None, 0
    previous = None
    fusable = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, MelSpectrogram)):
            previous = layer
            continue
        params += int(sum(np.prod(w.shape) for w in layer.weights))
        # BN after a conv/dense folds into it; ReLU fuses into the op before it.
        fused = isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)) or (
            isinstance(layer, keras.layers.BatchNormalization) and isinstance(previous, fusable)
        )
        if isinstance(layer, keras.layers.BatchNormalization):
            static += 0 if fused else 5 * int(layer.gamma.shape[0])
        elif isinstance(layer, fusable):
            kernel = layer.kernel
            channels = int(kernel.shape[-1])
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                channels *= int(kernel.shape[-2])
            static += int(np.prod(kernel.shape)) + 4 * channels
        if not fused:
            in_size = sum(_shape_size(t.shape) for t in _as_list(layer.input))
            out_size = _shape_size(layer.output.shape)
            largest = max(largest, out_size)
            if in_size + out_size > peak:
                peak, peak_layer = in_size + out_size, layer.name
        if not isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            previous = layer
    return {
        "params": params,
        "int8_static_bytes": static,
        "int8_peak_activation_bytes": peak,
        "peak_layer": peak_layer,
        "largest_tensor_bytes": largest,
    }


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]
