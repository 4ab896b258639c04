"""Structured compression of L3-style networks: filter (width) and depth reduction.

Filter pruning (Li et al.; docs/compress.rst) ranks each conv's output filters
by the L1 norm of their kernels, keeps the largest, and drops the same
channels from the BatchNormalization after the conv and from the input-channel
axis of the next conv's kernel.  The result is a genuinely smaller network,
built with :func:`edgel3.networks.build_audio_network` and carrying the
surviving weights, that saves and loads like any other (``model.save`` or
:func:`edgel3.legacy_h5.save_legacy_h5` for 8-conv bodies).

Depth reduction takes the embedding from an earlier conv and drops the layers
after it; the global max pool then covers that layer's map.

Both work on networks with the L3 body (mel spectrogram -> BN -> N x [conv 3x3
(+ BN + ReLU)] with pooling after every second conv), i.e. anything built by
:mod:`edgel3.networks` or loaded from an official or user weight file.
Masked (pruned) models are accepted; masks are baked in first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import check_positive_int
from ..exceptions import ParameterError

__all__ = ["L3Body", "parse_body", "filter_l1_norms", "prune_filters", "reduce_depth"]


@dataclass
class L3Body:
    """The weighted layers of an L3-style network, in order.

    Attributes
    ----------
    frontend : edgel3.specs.FrontendConfig
    mel : keras.layers.Layer
        The :class:`~edgel3.layers.MelSpectrogram` layer.
    input_bn : keras.layers.BatchNormalization
    convs : list of keras.layers.Conv2D
    bns : list of BatchNormalization or None
        The BN following each conv (``None`` for the last conv of a ``'none'`` head).
    head : {'bn_relu', 'none'}
    """

    frontend: object
    mel: object
    input_bn: object
    convs: list
    bns: list
    head: str

    @property
    def filters(self) -> list[int]:
        """Output channels of each conv."""
        return [int(conv.filters) for conv in self.convs]


def parse_body(model) -> L3Body:
    """Find the mel layer, input BN, convs and their BNs of an L3-style model.

    Parameters
    ----------
    model : keras.Model
        Built by :mod:`edgel3.networks` (or loaded from a weight file).

    Returns
    -------
    L3Body

    Raises
    ------
    ParameterError
        If the model is not a chain mel -> BN -> [conv 3x3 (+ BN + ReLU)]...
    """
    import keras

    from ..layers import MelSpectrogram

    kinds = []
    for layer in model.layers:
        if isinstance(layer, MelSpectrogram):
            kinds.append("mel")
        elif isinstance(layer, keras.layers.Conv2D):
            kinds.append("conv")
        elif isinstance(layer, keras.layers.BatchNormalization):
            kinds.append("bn")
        elif layer.weights:
            kinds.append("other")
    weighted = [layer for layer in model.layers if layer.weights]
    problem = None
    if kinds[:2] != ["mel", "bn"] or "other" in kinds or "conv" not in kinds:
        problem = "expected a MelSpectrogram, a BatchNormalization, then conv layers"
    convs, bns = [], []
    if problem is None:
        for index in range(2, len(weighted)):
            layer, kind = weighted[index], kinds[index]
            if kind == "conv":
                convs.append(layer)
                following = kinds[index + 1] if index + 1 < len(kinds) else None
                bns.append(weighted[index + 1] if following == "bn" else None)
            elif kinds[index - 1] != "conv":
                problem = f"BatchNormalization {layer.name!r} does not follow a conv"
        if problem is None and any(bn is None for bn in bns[:-1]):
            problem = "every conv but the last must be followed by BatchNormalization"
        if problem is None and any(tuple(c.kernel_size) != (3, 3) for c in convs):
            problem = "conv kernels must be 3x3"
    if problem is not None:
        summary = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in weighted)
        raise ParameterError(
            f"Model {model.name!r} does not have the L3 body ({problem}); its layers with "
            f"weights are: {summary}."
        )
    return L3Body(
        frontend=weighted[0].config,
        mel=weighted[0],
        input_bn=weighted[1],
        convs=convs,
        bns=bns,
        head="none" if bns[-1] is None else "bn_relu",
    )


def _bias(conv, n_out: int) -> np.ndarray:
    return np.asarray(conv.bias) if conv.use_bias else np.zeros(n_out, dtype="float32")


def filter_l1_norms(model) -> list[np.ndarray]:
    """L1 norm ``sum |W[:, :, :, c]|`` of every output filter of every conv.

    Returns
    -------
    list of np.ndarray [shape=(filters,)]
        One array per conv, in order.
    """
    from .pruning import effective_kernel

    return [np.abs(effective_kernel(conv)).sum(axis=(0, 1, 2)) for conv in parse_body(model).convs]


def _copy_body(source: L3Body, target: L3Body, keeps: Sequence[np.ndarray]) -> None:
    """Copy weights from ``source`` to ``target``, keeping output channels ``keeps[l]``."""
    from .pruning import effective_kernel

    target.mel.set_weights(source.mel.get_weights())
    target.input_bn.set_weights(source.input_bn.get_weights())
    previous = np.arange(1)  # the single mel channel
    for index, (conv, new_conv) in enumerate(zip(source.convs, target.convs)):
        keep = keeps[index]
        kernel = effective_kernel(conv)[:, :, previous, :][:, :, :, keep]
        bias = _bias(conv, kernel.shape[-1])[keep]
        new_conv.set_weights([kernel, bias] if new_conv.use_bias else [kernel])
        new_bn = target.bns[index]
        if new_bn is not None:
            new_bn.set_weights([w[keep] for w in source.bns[index].get_weights()])
        previous = keep


def prune_filters(model, conv_filters: Sequence[int], *, name: str | None = None):
    """Keep the ``conv_filters[l]`` filters of largest L1 norm in each conv.

    Parameters
    ----------
    model : keras.Model
        An L3-style model (see :func:`parse_body`); it is not modified.
    conv_filters : sequence of int
        Filters to keep per conv, each at most the current count
        (e.g. ``[64, 48, 64, 64, 128, 128, 256, 256]`` on the sparse L3).
    name : str, optional
        Name of the new model (default: the old name + ``'_filters'``).

    Returns
    -------
    model : keras.Model
        The narrower network, weights copied; its embedding size is
        ``conv_filters[-1]``.
    kept : list of np.ndarray
        Indices of the kept filters of each conv (ascending).

    Raises
    ------
    ParameterError
        If the list length differs from the number of convs or asks for more
        filters than a conv has.
    """
    from ..networks import build_audio_network
    from .pruning import effective_kernel

    body = parse_body(model)
    counts = [check_positive_int(c, f"conv_filters[{i}]") for i, c in enumerate(conv_filters)]
    if len(counts) != len(body.convs):
        raise ParameterError(
            f"conv_filters has {len(counts)} entries; model {model.name!r} has "
            f"{len(body.convs)} convs with filters {body.filters}."
        )
    too_many = [(i + 1, c, f) for i, (c, f) in enumerate(zip(counts, body.filters)) if c > f]
    if too_many:
        raise ParameterError(
            f"conv_filters={counts} asks for more filters than the model has "
            f"(conv, asked, available): {too_many}."
        )
    keeps = []
    for conv, count in zip(body.convs, counts):
        norms = np.abs(effective_kernel(conv)).sum(axis=(0, 1, 2))
        order = np.argsort(-norms, kind="stable")
        keeps.append(np.sort(order[:count]))
    small = build_audio_network(
        body.frontend, counts, head=body.head, name=name or f"{model.name}_filters"
    )
    _copy_body(body, parse_body(small), keeps)
    return small, keeps


def reduce_depth(model, n_convs: int, *, head: str | None = None, name: str | None = None):
    """Take the embedding from conv ``n_convs`` and drop the layers after it.

    Parameters
    ----------
    model : keras.Model
        An L3-style model; it is not modified.
    n_convs : int
        Convs to keep (7, 6 or 5 on the 8-conv bodies, as in the EdgeL3 paper).
    head : {'bn_relu', 'none'}, optional
        What follows the new last conv (default: the model's head). ``'bn_relu'``
        reuses the BN that followed that conv in the original.
    name : str, optional
        Name of the new model (default: the old name + ``'_depth{n}'``).

    Returns
    -------
    keras.Model
        Embedding size = filters of conv ``n_convs``.

    Raises
    ------
    ParameterError
        If ``n_convs`` is not in ``[1, number of convs]``, or ``'bn_relu'`` is
        asked for where the original has no BN after that conv.
    """
    from ..networks import build_audio_network

    body = parse_body(model)
    total = len(body.convs)
    n_convs = check_positive_int(n_convs, "n_convs")
    if n_convs > total:
        raise ParameterError(f"n_convs must lie in [1, {total}]; got n_convs={n_convs!r}.")
    head = body.head if head is None else head
    if head == "bn_relu" and body.bns[n_convs - 1] is None:
        raise ParameterError(
            f"head='bn_relu' needs a BatchNormalization after conv {n_convs}; the model has none."
        )
    filters = body.filters[:n_convs]
    small = build_audio_network(
        body.frontend, filters, head=head, name=name or f"{model.name}_depth{n_convs}"
    )
    keeps = [np.arange(f) for f in filters]
    _copy_body(body, parse_body(small), keeps)
    return small
