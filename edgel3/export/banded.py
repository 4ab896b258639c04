"""Run a backbone's first stage in horizontal bands, to cut its peak activation memory.

The first convolutions of an L3/SEA backbone work at full resolution: for
SEA-64 at int8, conv2 reads one ``(64, 50, 32)`` tensor and writes another, so a
kernel-by-kernel runtime (LiteRT-Micro) needs 200 KiB for that one step. Here
the stage up to the first pooling is computed band by band along the mel axis:
each band of pooled rows reads the input rows it needs (a halo of ``k // 2``
rows per conv, zeros beyond the edges as 'same' padding has), runs the convs
'valid' on them, pools, and the pooled bands are concatenated. The result is
the same function (up to float rounding); only the schedule changes, so the
exported graph runs on any LiteRT runtime with a smaller arena. The halo rows
are computed twice (a few % more MACs in the first stage).
"""

from __future__ import annotations

from ..checks import check_positive_int
from ..exceptions import ParameterError

__all__ = ["BandedBackbone", "banded_backbone"]


def _chain(model) -> list:
    """The layers of a single-input, single-output, unbranched model, in order."""
    owner = getattr(model, "_functional", None) or model
    by_depth = getattr(owner, "_nodes_by_depth", None) or {}
    layers, previous = [], None
    for depth in sorted(by_depth, reverse=True):
        nodes = [n for n in by_depth[depth] if not n.is_input]
        if not nodes:
            continue
        if len(nodes) > 1 or len(nodes[0].input_tensors) != 1:
            raise ParameterError(f"Model {model.name!r} is not a simple chain of layers.")
        node = nodes[0]
        if previous is not None and node.input_tensors[0] is not previous:
            raise ParameterError(f"Model {model.name!r} is not a simple chain of layers.")
        layers.append(node.operation)
        previous = node.outputs[0]
    return layers


def _split_first_stage(layers):
    """(head elementwise layers, [(conv, [followers])...], pool, rest)."""
    from keras import layers as kl

    head, convs, index = [], [], 0
    while index < len(layers) and isinstance(layers[index], (kl.BatchNormalization, kl.Activation)):
        head.append(layers[index])
        index += 1
    while index < len(layers) and isinstance(layers[index], kl.Conv2D):
        conv = layers[index]
        kh, kw = conv.kernel_size
        if (
            conv.padding != "same"
            or tuple(conv.strides) != (1, 1)
            or tuple(conv.dilation_rate) != (1, 1)
            or kh % 2 == 0
            or kw % 2 == 0
            or conv.groups != 1
        ):
            raise ParameterError(
                f"Cannot band layer {conv.name!r}: only stride-1, undilated, odd-sized "
                "'same' convolutions are supported."
            )
        index += 1
        followers = []
        while index < len(layers) and isinstance(
            layers[index], (kl.BatchNormalization, kl.Activation, kl.ReLU)
        ):
            followers.append(layers[index])
            index += 1
        convs.append((conv, followers))
    pool = layers[index] if index < len(layers) else None
    if (
        not convs
        or not isinstance(pool, kl.MaxPooling2D)
        or tuple(pool.pool_size) != tuple(pool.strides)
        or pool.padding != "valid"
    ):
        raise ParameterError(
            "Banding needs a first stage of 'same' convolutions (with BN/activations) ending "
            "in a non-overlapping 'valid' max pooling."
        )
    return head, convs, pool, layers[index + 1 :]


class BandedBackbone:
    """A backbone whose first stage runs band after band (see the module notes).

    Calling it runs the bands in order, one at a time, so a graph traced from
    it (and the LiteRT file converted from that graph) keeps only one band's
    intermediate tensors alive. Weights are the backbone's own variables.

    Parameters
    ----------
    backbone : keras.Model
        A chain: optional BatchNormalization/activation, stride-1 'same' convs
        (each optionally followed by BN/activations), a non-overlapping max
        pooling, then anything (e.g. :func:`edgel3.export.convert.backbone_model`).
    bands : int
        Number of bands the pooled rows are split into (at most their count).

    Raises
    ------
    ParameterError
        If the model does not have that structure or ``bands`` is invalid.
    """

    def __init__(self, backbone, bands: int):
        self.backbone = backbone
        self.head, self.convs, self.pool, self.rest = _split_first_stage(_chain(backbone))
        self.height = int(backbone.input_shape[1])
        step = int(self.pool.pool_size[0])
        pooled = self.height // step
        if check_positive_int(bands, "bands") > pooled:
            raise ParameterError(f"bands must be an int in [1, {pooled}]; got bands={bands!r}.")
        self.bands = int(bands)
        edges = [round(i * pooled / bands) for i in range(bands + 1)]
        self.plan = []
        for p0, p1 in zip(edges[:-1], edges[1:]):
            # Rows each conv must produce, from the pooled band back to the input.
            wanted = [(p0 * step, p1 * step)]
            for conv, _ in reversed(self.convs):
                halo = conv.kernel_size[0] // 2
                wanted.append((wanted[-1][0] - halo, wanted[-1][1] + halo))
            self.plan.append(wanted[::-1])  # [input rows, rows of conv 1, ...]
        # Zero rows above and below the input: enough for the first and last bands' halos.
        self.margin = -self.plan[0][0][0]

    def _band(self, padded, wanted):
        """One band from the zero-padded input: slice, then 'valid' convs, then pool."""
        from keras import ops

        (a, b), margin = wanted[0], self.margin
        y = padded[:, a + margin : b + margin]
        for i, ((conv, followers), (start, stop)) in enumerate(zip(self.convs, wanted[1:])):
            y = ops.conv(y, conv.kernel, strides=1, padding="valid")
            if conv.use_bias:
                y = y + conv.bias
            y = conv.activation(y)
            for layer in followers:
                y = layer(y, training=False)
            if i + 1 < len(self.convs):
                # The next conv sees zeros beyond the edges and at the sides, as 'same'
                # padding gives: drop rows outside [0, height), pad them and the sides back.
                top, bottom = max(0, -start), max(0, stop - self.height)
                if top or bottom:
                    y = y[:, top : stop - start - bottom]
                half_w = self.convs[i + 1][0].kernel_size[1] // 2
                y = ops.pad(y, [(0, 0), (top, bottom), (half_w, half_w), (0, 0)])
        return self.pool(y)

    def __call__(self, x):
        """Log-mel patches ``(b, n_mels, n_frames, 1)`` -> embeddings ``(b, d)``."""
        from keras import ops

        for layer in self.head:
            x = layer(x, training=False)
        half_w = self.convs[0][0].kernel_size[1] // 2
        padded = ops.pad(x, [(0, 0), (self.margin, self.margin), (half_w, half_w), (0, 0)])
        x = ops.concatenate([self._band(padded, wanted) for wanted in self.plan], axis=1)
        for layer in self.rest:
            x = layer(x, training=False) if _has_training(layer) else layer(x)
        return x

    def predict_on_batch(self, x):
        """NumPy in, NumPy out (eager)."""
        from keras import ops

        return ops.convert_to_numpy(self(ops.convert_to_tensor(x, dtype="float32")))


def _has_training(layer) -> bool:
    from keras import layers as kl

    return isinstance(layer, (kl.BatchNormalization, kl.Dropout))


def banded_backbone(backbone, bands: int) -> BandedBackbone:
    """Wrap ``backbone`` so that its first stage runs in ``bands`` horizontal bands.

    See :class:`BandedBackbone`.
    """
    return BandedBackbone(backbone, bands)
