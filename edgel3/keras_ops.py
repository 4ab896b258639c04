"""The NumPy ops of a planned ``.keras`` chain (:mod:`edgel3.keras_file`), channels-last float32.

:func:`compile_layers` reads each layer's variables from ``model.weights.h5``
(checking their shapes against the plan) and turns the chain into ops, each
``op(x)`` on a chunk of windows ``(n, *in_shape) -> (n, *out_shape)``:

* :class:`ConvOp` -- Conv2D / MaskedConv2D (kernel times mask): im2col in blocks
  of at most :data:`IM2COL_BYTES` and one BLAS matmul per block
  (:func:`edgel3.blas.matmul_f32`; a 1x1 conv is a single matmul);
* :class:`DepthwiseOp` -- ``kh * kw`` shifted multiply-adds per channel;
* :class:`DenseOp` -- one matmul; :class:`AffineOp` -- a BatchNormalization
  that cannot be folded; :class:`ReluOp`, :class:`MaxPoolOp`, :class:`ReduceOp`
  (global max / average pooling, Flatten).

A BatchNormalization right after a conv, depthwise conv or dense layer is folded
into its kernel and bias, a ReLU (or ReLU6) into the layer before it. TF's
'same' padding is reproduced (for stride 2 the extra row or column goes after;
max pooling pads with -inf). Results equal Keras's within float32 rounding.
"""

from __future__ import annotations

import numpy as np

from .blas import matmul_f32
from .keras_file import (
    ACTIVATIONS,
    IDENTITY_LAYERS,
    PlannedLayer,
    file_error,
    pair,
    same_padding,
    unsupported_layer,
)

__all__ = [
    "compile_layers",
    "layer_pads",
    "Op",
    "LinearOp",
    "AffineOp",
    "ConvOp",
    "DepthwiseOp",
    "DenseOp",
    "ReluOp",
    "MaxPoolOp",
    "ReduceOp",
    "IM2COL_BYTES",
    "FLAT_BELOW_CHANNELS",
]

#: Largest im2col block of a conv.
IM2COL_BYTES = 8 * 2**20
#: Depthwise convs (stride 1) with fewer channels run on the flat padded layout: measured
#: 1.45x faster at 16 channels, 1.15x at 32, slower from 64 (32x25 to 8x7 maps, 16 windows).
FLAT_BELOW_CHANNELS = 64


# --------------------------------------------------------------------------- operations


def _activate(y: np.ndarray, clip: float | None) -> np.ndarray:
    """ReLU (``clip=0``), ReLU6 (``clip=6``) or a ReLU capped at ``clip``, in place."""
    np.maximum(y, np.float32(0), out=y)
    if clip:
        np.minimum(y, np.float32(clip), out=y)
    return y


def layer_pads(padding: str, in_shape, kernel_hw, strides) -> tuple:
    """``((top, bottom), (left, right))`` of a conv/pool on ``in_shape`` (h, w, ...):
    TF's 'same' (:func:`edgel3.keras_file.same_padding`) or none ('valid')."""
    if padding != "same":
        return ((0, 0), (0, 0))
    return tuple(same_padding(n, k, s) for n, k, s in zip(in_shape[:2], kernel_hw, strides))


class Op:
    """A compiled layer: ``__call__(x)`` on a chunk ``(n, *in_shape)``."""

    name = ""
    relu: bool = False
    clip: float | None = None  # upper bound of the ReLU (None: none)

    def set_activation(self, relu: bool, clip: float | None) -> None:
        self.relu, self.clip = relu, clip

    def finish(self, y: np.ndarray) -> np.ndarray:
        return _activate(y, self.clip) if self.relu else y


class AffineOp(Op):
    """A BatchNormalization not folded into the layer before it: ``scale * x + shift``."""

    foldable = False

    def __init__(self, name, scale, shift):
        self.name = name
        self.scale = scale.astype(np.float32)
        self.shift = shift.astype(np.float32)

    def __call__(self, x):
        y = x * self.scale
        y += self.shift
        return self.finish(y)


class LinearOp(Op):
    """A conv, depthwise conv or dense layer; a following BN folds into it."""

    foldable = True

    def fold(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Fold ``scale * y + shift`` (per output channel, float64) into kernel and bias."""
        self.kernel = (self.kernel.astype(np.float64) * scale).astype(np.float32)
        self.bias = (self.bias.astype(np.float64) * scale + shift).astype(np.float32)
        self.foldable = False  # one BN per layer
        self.prepare()

    def prepare(self) -> None:
        """Derived arrays (called after the kernel changes)."""


class ConvOp(LinearOp):
    """Conv2D: im2col (blocks of at most :data:`IM2COL_BYTES`) + one matmul per block."""

    def __init__(self, name, kernel, bias, strides, padding, in_shape, out_shape):
        self.name = name
        self.kernel, self.bias = kernel, bias
        self.strides = strides
        self.out_hw = out_shape[:2]
        kh, kw = kernel.shape[:2]
        self.pads = layer_pads(padding, in_shape, (kh, kw), strides)
        self.prepare()

    def prepare(self):
        kh, kw, c_in, c_out = self.kernel.shape
        self.matrix = np.ascontiguousarray(self.kernel.reshape(kh * kw * c_in, c_out))

    def __call__(self, x):
        n, _, _, c_in = x.shape
        kh, kw, _, c_out = self.kernel.shape
        (pt, pb), (pl, pr) = self.pads
        sh, sw = self.strides
        ho, wo = self.out_hw
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not (pt or pb or pl or pr):
            y = matmul_f32(x.reshape(-1, c_in), self.matrix)
        else:
            if pt or pb or pl or pr:
                padded = np.zeros((n, x.shape[1] + pt + pb, x.shape[2] + pl + pr, c_in), x.dtype)
                padded[:, pt : pt + x.shape[1], pl : pl + x.shape[2]] = x
                x = padded
            depth = kh * kw * c_in
            row_bytes = wo * depth * 4
            windows = max(1, min(n, IM2COL_BYTES // (ho * row_bytes)))
            rows = ho if windows > 1 else max(1, min(ho, IM2COL_BYTES // row_bytes))
            y = None
            for b0 in range(0, n, windows):
                b1 = min(n, b0 + windows)
                for r0 in range(0, ho, rows):
                    r1 = min(ho, r0 + rows)
                    cols = np.empty((b1 - b0, r1 - r0, wo, kh, kw, c_in), np.float32)
                    for i in range(kh):
                        top = r0 * sh + i
                        for j in range(kw):
                            cols[:, :, :, i, j, :] = x[
                                b0:b1,
                                top : top + (r1 - r0 - 1) * sh + 1 : sh,
                                j : j + (wo - 1) * sw + 1 : sw,
                            ]
                    block = matmul_f32(cols.reshape(-1, depth), self.matrix)
                    if b1 - b0 == n and r1 - r0 == ho:
                        y = block
                    else:
                        if y is None:
                            y = np.empty((n * ho * wo, c_out), np.float32)
                        y.reshape(n, ho, wo, c_out)[b0:b1, r0:r1] = block.reshape(
                            b1 - b0, r1 - r0, wo, c_out
                        )
        y += self.bias
        return self.finish(y.reshape(n, ho, wo, c_out))


class DepthwiseOp(LinearOp):
    """DepthwiseConv2D: ``kh * kw`` shifted multiply-adds per channel.

    Stride 1 works on the *flat padded* layout: the windows' zero-padded maps
    stacked as one ``(rows, channels)`` array, in which the input of tap
    ``(i, j)`` is the same array shifted by ``i * padded_width + j`` rows, so every
    multiply-add runs on contiguous memory (rows of ``tile`` positions with the
    kernel row tiled to match, a long inner loop); the positions outside the
    output are computed too and cropped. Wider layers and other strides use
    strided views (their inner loops are long already).
    """

    def __init__(self, name, kernel, bias, strides, padding, in_shape, out_shape):
        self.name = name
        kh, kw, c_in, multiplier = kernel.shape
        self.multiplier = multiplier
        # (kh, kw, c_in, m) -> (kh, kw, c_in * m): output channel c * m + k, as Keras orders it.
        self.kernel = np.ascontiguousarray(kernel.reshape(kh, kw, c_in * multiplier))
        self.bias = bias
        self.strides = strides
        self.out_hw = out_shape[:2]
        self.pads = layer_pads(padding, in_shape, (kh, kw), strides)
        self.prepare()

    def prepare(self):
        channels = self.kernel.shape[-1]
        self.tile = max(1, 256 // channels)  # positions per row of the flat layout
        self.taps = np.tile(self.kernel, (1, 1, self.tile))  # (kh, kw, tile * channels)
        self.bias_row = np.tile(self.bias, self.tile)

    def __call__(self, x):
        if self.multiplier > 1:
            x = np.repeat(x, self.multiplier, axis=3)
        if self.strides == (1, 1) and x.shape[-1] < FLAT_BELOW_CHANNELS:
            return self._flat(x)
        n, h, w, channels = x.shape
        (pt, pb), (pl, pr) = self.pads
        if pt or pb or pl or pr:
            padded = np.zeros((n, h + pt + pb, w + pl + pr, channels), x.dtype)
            padded[:, pt : pt + h, pl : pl + w] = x
            x = padded
        kh, kw, _ = self.kernel.shape
        sh, sw = self.strides
        ho, wo = self.out_hw
        y = np.empty((n, ho, wo, channels), np.float32)
        tap = np.empty_like(y)
        for i in range(kh):
            for j in range(kw):
                view = x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
                if i == 0 and j == 0:
                    np.multiply(view, self.kernel[i, j], out=y)
                else:
                    np.multiply(view, self.kernel[i, j], out=tap)
                    y += tap
        y += self.bias
        return self.finish(y)

    def _flat(self, x):
        n, h, w, channels = x.shape
        (pt, pb), (pl, pr) = self.pads
        kh, kw, _ = self.kernel.shape
        hp, wp = h + pt + pb, w + pl + pr
        ho, wo = self.out_hw
        rows = n * hp * wp
        span = (kh - 1) * wp + (kw - 1)  # the last tap's shift
        # Output position (b, i, j) sits at flat row b*hp*wp + i*wp + j, below rows - span.
        computed = -(-(rows - span) // self.tile) * self.tile
        source = np.zeros(max(rows, computed + span) * channels, np.float32)
        source[: rows * channels].reshape(n, hp, wp, channels)[:, pt : pt + h, pl : pl + w] = x
        width = self.tile * channels
        y = np.empty(max(rows, computed) * channels, np.float32)
        acc = y[: computed * channels].reshape(-1, width)
        tap = np.empty_like(acc)
        for i in range(kh):
            for j in range(kw):
                offset = (i * wp + j) * channels
                view = source[offset : offset + computed * channels].reshape(-1, width)
                if i == 0 and j == 0:
                    np.multiply(view, self.taps[i, j], out=acc)
                else:
                    np.multiply(view, self.taps[i, j], out=tap)
                    acc += tap
        acc += self.bias_row
        self.finish(acc)
        return np.ascontiguousarray(y[: rows * channels].reshape(n, hp, wp, channels)[:, :ho, :wo])


class DenseOp(LinearOp):
    """Dense on the last axis: one matmul."""

    def __init__(self, name, kernel, bias):
        self.name = name
        self.kernel, self.bias = kernel, bias

    def __call__(self, x):
        y = matmul_f32(x.reshape(-1, x.shape[-1]), self.kernel)
        y += self.bias
        return self.finish(y.reshape(*x.shape[:-1], self.kernel.shape[1]))


class ReluOp(Op):
    """A ReLU (or ReLU6 / capped ReLU) the layer before could not take."""

    foldable = False

    def __init__(self, name, clip):
        self.name = name
        self.set_activation(True, clip)

    def __call__(self, x):
        return self.finish(x.copy())


class MaxPoolOp(Op):
    """MaxPooling2D: the maximum over strided views (TF 'same' pads with -inf)."""

    foldable = False

    def __init__(self, name, pool, strides, padding, in_shape, out_shape):
        self.name = name
        self.pool, self.strides = pool, strides
        self.out_hw = out_shape[:2]
        self.pads = layer_pads(padding, in_shape, pool, strides)

    def __call__(self, x):
        n, h, w, c = x.shape
        (pt, pb), (pl, pr) = self.pads
        if pt or pb or pl or pr:
            padded = np.full((n, h + pt + pb, w + pl + pr, c), -np.inf, np.float32)
            padded[:, pt : pt + h, pl : pl + w] = x
            x = padded
        (ph, pw), (sh, sw) = self.pool, self.strides
        ho, wo = self.out_hw
        y = None
        for i in range(ph):
            for j in range(pw):
                view = x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
                if y is None:
                    y = view.copy()
                else:
                    np.maximum(y, view, out=y)
        return y


class ReduceOp(Op):
    """GlobalMaxPooling2D / GlobalAveragePooling2D / Flatten."""

    foldable = False

    def __init__(self, name, kind, keepdims=False):
        self.name, self.kind, self.keepdims = name, kind, keepdims

    def __call__(self, x):
        if self.kind == "flatten":
            return np.ascontiguousarray(x).reshape(x.shape[0], -1)
        if self.kind == "max":
            y = x.max(axis=(1, 2), keepdims=self.keepdims)
        else:
            y = x.mean(axis=(1, 2), keepdims=self.keepdims, dtype=np.float64).astype(np.float32)
        return np.ascontiguousarray(y)


# --------------------------------------------------------------------------- compiling


def _read_vars(weights, layer: PlannedLayer, source) -> list[np.ndarray]:
    group = weights.get(f"layers/{layer.storage}/vars")
    if group is None:
        raise file_error(
            source, f"model.weights.h5 has no variables for layer {layer.name!r} ({layer.storage})."
        )
    return [np.asarray(group[str(i)]) for i in range(len(group))]


def _expect(source, layer: PlannedLayer, arrays, shapes) -> None:
    found = [tuple(a.shape) for a in arrays]
    if found != [tuple(s) for s in shapes]:
        raise file_error(
            source,
            f"layer {layer.name!r} ({layer.class_name}) stores arrays of shapes {found}; its "
            f"config needs {[tuple(s) for s in shapes]}.",
        )


def _bn_affine(layer: PlannedLayer, arrays, source) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as ``scale * x + shift`` (float64)."""
    config = layer.config
    channels = layer.in_shape[-1]
    has_gamma, has_beta = config.get("scale", True), config.get("center", True)
    _expect(source, layer, arrays, [(channels,)] * (2 + has_gamma + has_beta))
    values = [a.astype(np.float64) for a in arrays]
    gamma = values.pop(0) if has_gamma else np.ones(channels)
    beta = values.pop(0) if has_beta else np.zeros(channels)
    mean, variance = values
    scale = gamma / np.sqrt(variance + float(config.get("epsilon", 1e-3)))
    return scale, beta - mean * scale


def _activation_of(config: dict) -> tuple[bool, float | None]:
    clip = ACTIVATIONS[config.get("activation", "linear")]
    return clip is not None, clip or None


def compile_layers(planned: list[PlannedLayer], weights, source) -> tuple[np.ndarray, list[Op]]:
    """The filterbank and the ops, BN and ReLU folded into the layer before where exact.

    Parameters
    ----------
    planned : list of edgel3.keras_file.PlannedLayer
        From :func:`edgel3.keras_file.plan_keras_file`.
    weights : h5py.File or h5py.Group
        The file's ``model.weights.h5``.
    source : str
        The file, for messages.

    Returns
    -------
    filterbank : np.ndarray [shape=(n_dft // 2 + 1, n_mels), dtype=float32]
    ops : list of Op

    Raises
    ------
    WeightsError
        A layer's variables are missing or do not have the shapes its config needs.
    """
    filterbank = None
    ops: list[Op] = []
    for layer in planned:
        kind, config = layer.class_name, layer.config
        last = ops[-1] if ops else None
        if kind == "MelSpectrogram":
            arrays = _read_vars(weights, layer, source)
            n_bins = int(config["n_dft"]) // 2 + 1
            _expect(source, layer, arrays, [(n_bins, int(config["n_mels"]))])
            filterbank = np.ascontiguousarray(arrays[0], np.float32)
        elif kind in ("Conv2D", "MaskedConv2D", "DepthwiseConv2D", "Dense"):
            arrays = [a.astype(np.float32) for a in _read_vars(weights, layer, source)]
            c_in, c_out = layer.in_shape[-1], layer.out_shape[-1]
            if kind == "Dense":
                kernel_shape = (c_in, c_out)
            elif kind == "DepthwiseConv2D":
                kernel_shape = (*pair(config["kernel_size"]), c_in, c_out // c_in)
            else:
                kernel_shape = (*pair(config["kernel_size"]), c_in, c_out)
            use_bias = config.get("use_bias", True)
            shapes = [kernel_shape] + [(c_out,)] * use_bias
            if kind == "MaskedConv2D":
                shapes.append(kernel_shape)
            _expect(source, layer, arrays, shapes)
            kernel = arrays[0] * arrays[-1] if kind == "MaskedConv2D" else arrays[0]
            bias = arrays[1] if use_bias else np.zeros(c_out, np.float32)
            if kind == "Dense":
                op = DenseOp(layer.name, kernel, bias)
            else:
                cls = DepthwiseOp if kind == "DepthwiseConv2D" else ConvOp
                strides = pair(config.get("strides", 1))
                op = cls(
                    layer.name,
                    kernel,
                    bias,
                    strides,
                    config["padding"],
                    layer.in_shape,
                    layer.out_shape,
                )
            op.set_activation(*_activation_of(config))
            ops.append(op)
        elif kind == "BatchNormalization":
            scale, shift = _bn_affine(layer, _read_vars(weights, layer, source), source)
            if last is not None and last.foldable and not last.relu:
                last.fold(scale, shift)
            else:
                ops.append(AffineOp(layer.name, scale, shift))
        elif kind in ("ReLU", "Activation"):
            if kind == "ReLU":
                clip = config.get("max_value")
                relu, clip = True, None if clip is None else float(clip)
            else:
                relu, clip = _activation_of(config)
            if not relu:
                continue
            if last is not None and not last.relu and isinstance(last, (LinearOp, AffineOp)):
                last.set_activation(True, clip)
                last.foldable = False
            else:
                ops.append(ReluOp(layer.name, clip))
        elif kind == "MaxPooling2D":
            pool = pair(config["pool_size"])
            strides = pair(config.get("strides") or pool)
            ops.append(
                MaxPoolOp(
                    layer.name, pool, strides, config["padding"], layer.in_shape, layer.out_shape
                )
            )
        elif kind in ("GlobalMaxPooling2D", "GlobalAveragePooling2D"):
            reduce = "max" if kind == "GlobalMaxPooling2D" else "mean"
            ops.append(ReduceOp(layer.name, reduce, bool(config.get("keepdims"))))
        elif kind == "Flatten":
            ops.append(ReduceOp(layer.name, "flatten"))
        elif kind in IDENTITY_LAYERS:
            continue
        else:  # _plan admits only SUPPORTED_LAYERS
            raise unsupported_layer(source, layer.name, kind)
    return filterbank, ops
