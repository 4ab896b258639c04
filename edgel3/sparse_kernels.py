"""The building blocks of :mod:`edgel3.sparse`: numba kernels, layout and model parser.

* :func:`get_kernels` -- the numba kernels (sparse conv, 2x2 max pool, global
  max), compiled on first use and cached on disk;
* :class:`PaddedLayout` -- the geometry of the flat padded layout they work on;
* :func:`parse_model` -- an edgel3 Keras body as a list of :class:`FoldedConv`
  (BatchNormalization and ReLU folded into each conv).

Arrays use the flat padded channels-first layout described in
:mod:`edgel3.sparse`: ``x[c, guard + b * (h + 2) * wp + row * wp + col]``
holds channel ``c`` of window ``b`` at map position ``(row - 1, col - 1)``;
rows/columns 0 and ``h + 1`` / ``wp - 1`` are the zero padding ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FoldedConv",
    "PaddedLayout",
    "folded_densities",
    "get_kernels",
    "kept_share",
    "parse_model",
]

_KERNELS: dict[str, object] = {}


def get_kernels() -> dict[str, object]:
    """The compiled kernels (from numba's disk cache when there), once per process.

    Returns
    -------
    dict
        ``'sparse_conv'``, ``'max_pool'`` and ``'global_max'`` -> numba functions
        on the flat padded layout (see the module docstring).

    Raises
    ------
    ImportError
        Without numba.
    """
    if not _KERNELS:
        _KERNELS.update(_build_kernels())
    return _KERNELS


class PaddedLayout:
    """Geometry of the flat padded layout of one feature-map size.

    Parameters
    ----------
    height, width : int
        The map's size (mel bands x frames at the first level).
    n_windows : int
        Windows stacked one after the other.

    Attributes
    ----------
    wp : int
        Padded row length ``width + 2``.
    size : int
        Elements of one padded map, ``(height + 2) * wp``.
    guard : int
        Zeros before the first and after the last map, so that every tap's
        shifted view stays inside the array.
    length : int
        Elements per channel: ``2 * guard + n_windows * size``.
    """

    def __init__(self, height: int, width: int, n_windows: int):
        self.height, self.width, self.n_windows = height, width, n_windows
        self.wp = width + 2
        self.size = (height + 2) * self.wp
        self.guard = self.wp + 1
        self.length = 2 * self.guard + n_windows * self.size

    def shifts(self) -> np.ndarray:
        """Flat offset of each kernel tap ``(kh, kw)``, row-major.

        Returns
        -------
        np.ndarray [shape=(9,), dtype=int]
        """
        return np.array([(kh - 1) * self.wp + (kw - 1) for kh in range(3) for kw in range(3)])


def _build_kernels() -> dict[str, object]:  # pragma: no cover - compiled code
    import numba
    from numba import prange

    jit = numba.njit(parallel=True, cache=True, fastmath={"contract"})
    zero = np.float32(0.0)

    @jit
    def sparse_conv(
        x,
        length,
        indptr,
        chan,
        shift,
        vals,
        bias,
        scale,
        offset,
        relu,
        mask,
        out,
        start,
        stop,
        tile,
    ):
        # out[co, p] = bias[co] + sum_j vals[j] * x[chan[j], p + shift[j]]  (flat arrays),
        # then out = relu?(scale[co] * out + offset[co]) * mask[p] while the tile is in L1.
        # Loop bounds are slice lengths so that LLVM vectorises the inner loops.
        n_out = bias.shape[0]
        n_tiles = (stop - start + tile - 1) // tile
        for job in prange(n_tiles * n_out):
            tile_index = job // n_out
            co = job - tile_index * n_out
            p0 = start + tile_index * tile
            p1 = min(p0 + tile, stop)
            n = p1 - p0
            o = out[co * length + p0 : co * length + p1]
            o[:] = bias[co]
            j = indptr[co]
            end = indptr[co + 1]
            while j + 8 <= end:
                b0 = chan[j] * length + p0 + shift[j]
                b1 = chan[j + 1] * length + p0 + shift[j + 1]
                b2 = chan[j + 2] * length + p0 + shift[j + 2]
                b3 = chan[j + 3] * length + p0 + shift[j + 3]
                b4 = chan[j + 4] * length + p0 + shift[j + 4]
                b5 = chan[j + 5] * length + p0 + shift[j + 5]
                b6 = chan[j + 6] * length + p0 + shift[j + 6]
                b7 = chan[j + 7] * length + p0 + shift[j + 7]
                x0 = x[b0 : b0 + n]
                x1 = x[b1 : b1 + n]
                x2 = x[b2 : b2 + n]
                x3 = x[b3 : b3 + n]
                x4 = x[b4 : b4 + n]
                x5 = x[b5 : b5 + n]
                x6 = x[b6 : b6 + n]
                x7 = x[b7 : b7 + n]
                w0, w1, w2, w3 = vals[j], vals[j + 1], vals[j + 2], vals[j + 3]
                w4, w5, w6, w7 = vals[j + 4], vals[j + 5], vals[j + 6], vals[j + 7]
                for q in range(o.shape[0]):
                    o[q] += (w0 * x0[q] + w1 * x1[q] + w2 * x2[q] + w3 * x3[q]) + (
                        w4 * x4[q] + w5 * x5[q] + w6 * x6[q] + w7 * x7[q]
                    )
                j += 8
            while j < end:
                b0 = chan[j] * length + p0 + shift[j]
                x0 = x[b0 : b0 + n]
                w0 = vals[j]
                for q in range(o.shape[0]):
                    o[q] += w0 * x0[q]
                j += 1
            s = scale[co]
            t = offset[co]
            m = mask[p0:p1]
            if relu:
                for q in range(o.shape[0]):
                    o[q] = max(s * o[q] + t, zero) * m[q]
            else:
                for q in range(o.shape[0]):
                    o[q] = (s * o[q] + t) * m[q]

    @jit
    def max_pool(src, guard_s, wp_s, dst, guard_d, wp_d, n_win, h, w):
        # 2x2 max pooling (floor) of each window's interior into dst, padding ring zeroed.
        ho, wo = h // 2, w // 2
        size_s = (h + 2) * wp_s
        size_d = (ho + 2) * wp_d
        for job in prange(src.shape[0] * n_win):
            c = job // n_win
            b = job - c * n_win
            base_s = guard_s + b * size_s
            base_d = guard_d + b * size_d
            dst[c, base_d : base_d + wp_d] = 0.0
            dst[c, base_d + (ho + 1) * wp_d : base_d + size_d] = 0.0
            for r in range(ho):
                top = src[c, base_s + (2 * r + 1) * wp_s + 1 : base_s + (2 * r + 1) * wp_s + 1 + w]
                bot = src[c, base_s + (2 * r + 2) * wp_s + 1 : base_s + (2 * r + 2) * wp_s + 1 + w]
                row = dst[c, base_d + (r + 1) * wp_d : base_d + (r + 2) * wp_d]
                row[0] = 0.0
                row[wp_d - 1] = 0.0
                for k in range(wo):
                    row[k + 1] = max(
                        max(top[2 * k], top[2 * k + 1]), max(bot[2 * k], bot[2 * k + 1])
                    )

    @jit
    def global_max(src, guard, wp, n_win, h, w, out):
        # Embedding: the maximum of each window's whole (activated) map, per channel.
        size = (h + 2) * wp
        for job in prange(src.shape[0] * n_win):
            c = job // n_win
            b = job - c * n_win
            best = -np.inf
            for row in range(1, h + 1):
                r = guard + b * size + row * wp + 1
                best = max(best, np.max(src[c, r : r + w]))
            out[b, c] = best

    return {
        "sparse_conv": sparse_conv,
        "max_pool": max_pool,
        "global_max": global_max,
    }


# --------------------------------------------------------------------------- model parsing


def folded_densities(convs, mel_config) -> list[tuple[str, float, int]]:
    """Name, non-zero fraction and dense multiply-adds per window of parsed convs.

    (:func:`edgel3.sparse.conv_densities` of a Keras model.)

    Parameters
    ----------
    convs : list of FoldedConv
    mel_config : edgel3.specs.FrontendConfig

    Returns
    -------
    list of (name, density, dense_macs)
    """
    height, width = mel_config.n_mels, mel_config.n_frames
    rows = []
    for conv in convs:
        macs = height * width * conv.kernel.size
        rows.append((conv.name, conv.density, int(macs)))
        if conv.pool == "2x2":
            height, width = height // 2, width // 2
    return rows


def kept_share(rows) -> float:
    """``sum(density * macs) / sum(macs)`` of :func:`folded_densities` rows."""
    return sum(d * macs for _, d, macs in rows) / sum(macs for _, _, macs in rows)


@dataclass
class FoldedConv:
    """One 3x3 'same' conv, with the BN + ReLU that follow it folded in.

    The layer computes ``relu?(scale * (conv(x, kernel) + bias) + offset)``,
    then ``pool``. The fields after ``pool`` are the executor's per-layer
    state (kernel choice, cached CSR taps and im2col matrix).
    """

    name: str
    kernel: np.ndarray  # (3, 3, c_in, c_out) float32
    bias: np.ndarray  # (c_out,) float32 conv bias
    scale: np.ndarray  # (c_out,) folded BN scale (1 without BN)
    offset: np.ndarray  # (c_out,) folded BN shift (0 without BN)
    relu: bool
    pool: str = "none"  # 'none', '2x2' or 'global'
    strategy: str = "auto"  # resolved to 'sparse' / 'dense' on the first call
    sparse_args: dict = field(default_factory=dict)  # per-width CSR taps
    dense_taps: np.ndarray | None = None  # (9, c_in, c_out), BN scale folded in
    dense_offset: np.ndarray | None = None  # (c_out,) bias and BN shift folded
    winograd: np.ndarray | None = None  # (16, c_in, c_out): G g G^T, BN scale folded
    scale32: np.ndarray | None = None
    offset32: np.ndarray | None = None

    @property
    def density(self) -> float:
        """Non-zero fraction of the kernel."""
        return float(np.count_nonzero(self.kernel)) / self.kernel.size


def _bn_affine(layer) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN as ``scale * x + shift`` (float64)."""
    mean = np.asarray(layer.moving_mean.numpy(), np.float64)
    variance = np.asarray(layer.moving_variance.numpy(), np.float64)
    gamma = (
        np.ones_like(mean) if layer.gamma is None else np.asarray(layer.gamma.numpy(), np.float64)
    )
    beta = np.zeros_like(mean) if layer.beta is None else np.asarray(layer.beta.numpy(), np.float64)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return scale, beta - mean * scale


def parse_model(model):
    """Read an edgel3 Keras body: mel layer, input BatchNormalization, folded convs.

    Parameters
    ----------
    model : keras.Model
        Mel spectrogram -> (BN) -> 3x3 'same' convs with BN/ReLU and 2x2 max
        pools -> a global max pool (every edgel3 body, pruned or not).

    Returns
    -------
    mel : edgel3.layers.MelSpectrogram
    input_affine : (float, float)
        The input BN as ``scale * x + shift`` (``(1.0, 0.0)`` without one).
    convs : list of FoldedConv

    Raises
    ------
    ValueError
        If the model is not such a body.
    """
    import keras

    from .layers import MelSpectrogram

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not isinstance(layers[0], MelSpectrogram):
        raise ValueError("the model does not start with a MelSpectrogram layer")
    mel = layers[0]
    index = 1
    in_scale, in_shift = np.ones(1), np.zeros(1)
    if index < len(layers) and isinstance(layers[index], keras.layers.BatchNormalization):
        in_scale, in_shift = _bn_affine(layers[index])
        index += 1
    convs: list[FoldedConv] = []
    height, width = mel.config.n_mels, mel.config.n_frames
    while index < len(layers):
        layer = layers[index]
        if isinstance(layer, keras.layers.Conv2D):
            if (
                layer.kernel_size != (3, 3)
                or layer.strides != (1, 1)
                or layer.padding != "same"
                or layer.dilation_rate != (1, 1)
                or layer.groups != 1
                or getattr(layer.activation, "__name__", "") != "linear"
            ):
                raise ValueError(f"unsupported conv layer {layer.name}")
            kernel = np.asarray(layer.kernel.numpy(), np.float32)
            mask = getattr(layer, "mask", None)  # a pruned layer's 0/1 mask (MaskedConv2D)
            if mask is not None:
                kernel = kernel * np.asarray(mask, np.float32)
            bias = (
                np.asarray(layer.bias.numpy(), np.float32)
                if layer.use_bias
                else np.zeros(kernel.shape[-1], np.float32)
            )
            conv = FoldedConv(
                layer.name,
                kernel,
                bias,
                np.ones(kernel.shape[-1]),
                np.zeros(kernel.shape[-1]),
                relu=False,
            )
            convs.append(conv)
        elif isinstance(layer, keras.layers.BatchNormalization) and convs:
            conv = convs[-1]
            if conv.relu or conv.pool != "none" or not np.all(conv.scale == 1):
                raise ValueError(f"unsupported layer order at {layer.name}")
            conv.scale, conv.offset = _bn_affine(layer)
        elif isinstance(layer, keras.layers.Activation) and convs:
            if getattr(layer.activation, "__name__", "") != "relu":
                raise ValueError(f"unsupported activation in {layer.name}")
            convs[-1].relu = True
        elif isinstance(layer, keras.layers.ReLU) and convs:
            convs[-1].relu = True
        elif isinstance(layer, keras.layers.MaxPooling2D) and convs:
            pool = tuple(layer.pool_size)
            if pool == (height, width) and layer.padding == "valid":
                convs[-1].pool = "global"
            elif pool == (2, 2) and tuple(layer.strides) == (2, 2) and layer.padding == "valid":
                convs[-1].pool = "2x2"
                height, width = height // 2, width // 2
            else:
                raise ValueError(f"unsupported pooling layer {layer.name}")
        elif isinstance(layer, keras.layers.Flatten) and convs and convs[-1].pool == "global":
            pass
        else:
            raise ValueError(f"unsupported layer {layer.name} ({type(layer).__name__})")
        index += 1
    if not convs or convs[-1].pool != "global" or any(c.pool == "global" for c in convs[:-1]):
        raise ValueError("the model does not end with a global max pool after its last conv")
    if in_scale.shape != (1,):
        raise ValueError("the input BatchNormalization must have a single channel")
    # The conv bias is added by the kernels; BN's scale/offset act on (conv + bias).
    return mel, (float(in_scale[0]), float(in_shift[0])), convs
