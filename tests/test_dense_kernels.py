"""The dense conv kernels (edgel3.dense_kernels) against a float64 reference convolution.

Properties over random geometries (odd and even map sizes, several windows, blocks
of tiles that split windows): Winograd F(2x2, 3x3) and the nine-GEMM form both equal
``relu?(scale * (conv(x, k) + bias) + offset)`` computed in float64, on every interior
position; the padding ring comes out zero where the next layer reads it, whatever
the output buffer held before.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from edgel3 import dense_kernels  # noqa: E402
from edgel3.dense_kernels import dense_conv  # noqa: E402
from edgel3.sparse_kernels import FoldedConv, PaddedLayout  # noqa: E402


def _maps(values: np.ndarray, level: PaddedLayout) -> np.ndarray:
    """The ``(n, h + 2, w + 2, c)`` padded maps inside a rows-layout array."""
    inner = values[level.guard : level.length - level.guard]
    return inner.reshape(level.n_windows, level.height + 2, level.wp, values.shape[1])


def _reference(x_maps: np.ndarray, conv: FoldedConv) -> np.ndarray:
    """float64 'same' cross-correlation of the padded maps, BN and ReLU applied."""
    n, hp, wp, _ = x_maps.shape
    h, w = hp - 2, wp - 2
    x = x_maps.astype(np.float64)
    k = conv.kernel.astype(np.float64)
    y = np.zeros((n, h, w, k.shape[-1]))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nhwc,co->nhwo", x[:, i : i + h, j : j + w], k[i, j])
    y = conv.scale * (y + conv.bias) + conv.offset
    return np.maximum(y, 0.0) if conv.relu else y


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    n_windows=st.integers(1, 3),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 6),
    relu=st.booleans(),
    pooled=st.booleans(),
    winograd=st.booleans(),
    tiles=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_dense_conv_equals_float64_reference(
    height, width, n_windows, c_in, c_out, relu, pooled, winograd, tiles, seed
):
    rng = np.random.default_rng(seed)
    level = PaddedLayout(height, width, n_windows)
    conv = FoldedConv(
        name="conv",
        kernel=rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32),
        bias=rng.standard_normal(c_out).astype(np.float32),
        scale=rng.uniform(0.5, 2.0, c_out),
        offset=rng.standard_normal(c_out),
        relu=relu,
        pool="2x2" if pooled else "none",
    )
    x = np.zeros((level.length, c_in), np.float32)
    _maps(x, level)[:, 1:-1, 1:-1] = rng.standard_normal((n_windows, height, width, c_in))
    # A reused buffer: whatever an earlier layer left there must not show through.
    out = rng.standard_normal((level.length, c_out)).astype(np.float32)
    mask = np.ones(level.length, np.float32)
    if not pooled:
        mask[:] = 0.0
        _maps(mask[:, None], level)[:, 1:-1, 1:-1] = 1.0
    start, stop = level.guard, level.length - level.guard
    old_tiles = dense_kernels.WINOGRAD_TILES
    dense_kernels.WINOGRAD_TILES = tiles  # blocks that split windows and rows of tiles
    try:
        dense_conv(conv, x, level, out, start, stop, mask, winograd=winograd)
    finally:
        dense_kernels.WINOGRAD_TILES = old_tiles
    expected = _reference(_maps(x, level), conv)
    got = _maps(out, level)
    # float32 sums of 9 * c_in products (Winograd: transforms of 16 terms, exact
    # coefficients +-1 and 1/2): within 1e-5 of the values' scale.
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], expected, rtol=0, atol=1e-5 * scale)
    if not pooled:  # the next conv reads the ring as its zero padding
        ring = np.ones(got.shape[:3], bool)
        ring[:, 1:-1, 1:-1] = False
        assert not got[ring].any()


def test_winograd_parts_transform_the_folded_kernel():
    """``G g G^T`` of the BN-scaled kernel, per input and output channel, cached."""
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, 4)
    conv = FoldedConv("c", kernel, np.zeros(4, np.float32), scale, np.zeros(4), relu=False)
    weights, offset = dense_kernels.winograd_parts(conv)
    assert weights.shape == (16, 2, 4) and weights.dtype == np.float32
    g = kernel.astype(np.float64) * scale
    transform = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    for ci in range(2):
        for co in range(4):
            u = transform @ g[:, :, ci, co] @ transform.T
            np.testing.assert_allclose(weights[:, ci, co], u.ravel(), rtol=1e-6, atol=1e-6)
    assert dense_kernels.winograd_parts(conv)[0] is weights  # cached on the layer
