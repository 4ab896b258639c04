"""The dense path of :mod:`edgel3.sparse`: 3x3 convs as BLAS GEMMs, pools, in numba.

Activations use the *rows* layout: ``x[guard + b * (h + 2) * wp + row * wp + col, c]``
(positions x channels) in the padded geometry of :class:`edgel3.sparse_kernels.PaddedLayout`.

A conv with more than one input channel runs as Winograd F(2x2, 3x3) (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2x2 block of
outputs is ``A^T [(G g G^T) * (B^T d B)] A`` of its 4x4 input tile ``d``, so a block
of tiles costs 16 GEMMs ``(c_out, c_in) x (c_in, tiles)`` -- 16 multiplications per
4 outputs and input channel instead of 36 (2.25x fewer). The input and output
transforms are additions only, channels innermost; the folded BN offset and ReLU
ride on the output transform. A one-channel conv (the first layer) multiplies nine
shifted copies of its input by the kernel (one GEMM, ``K = 9``). The older
direct form, nine in-place GEMMs per block (``beta=1``), stays as ``winograd=False``.

Every kernel here is compiled with ``nogil=True`` and calls BLAS's ``sgemm``
through its C address (:func:`edgel3.blas.sgemm_address`), so that a whole conv
runs without the GIL: :class:`edgel3.sparse.SparseExecutor` runs one chunk of
windows per thread, each on a single-threaded BLAS, which keeps every core busy
in the front end, the GEMMs and the epilogues alike (and leaves no BLAS pool
spinning between calls).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dense_conv",
    "dense_parts",
    "winograd_parts",
    "get_dense_kernels",
    "BLOCK_BYTES",
    "WINOGRAD_TILES",
]

_KERNELS: dict[str, object] = {}
# Set by _build(): module globals the kernels call (see there).
_call_sgemm = _gemm = _finish = None

#: Bytes of one block of the dense conv's output (or input) rows: sized for a core's L2.
BLOCK_BYTES = 256 * 2**10
#: Tiles per block of the Winograd conv: its 16 transformed inputs and outputs.
WINOGRAD_TILES = 128


def dense_parts(conv) -> tuple[np.ndarray, np.ndarray]:
    """The kernel per tap ``(9, c_in, c_out)`` with the BN scale folded in, and the offset.

    ``scale * (conv(x, k) + bias) + offset = conv(x, scale * k) + (scale * bias + offset)``:
    the epilogue after the GEMMs is then one add, the ReLU and the mask. Cached on ``conv``.

    Parameters
    ----------
    conv : edgel3.sparse_kernels.FoldedConv

    Returns
    -------
    taps : np.ndarray [shape=(9, c_in, c_out), dtype=float32]
        C-contiguous: ``taps[k]`` is, read in Fortran order, the ``(c_out, c_in)``
        matrix of tap ``k``.
    offset : np.ndarray [shape=(c_out,), dtype=float32]
    """
    if conv.dense_taps is None:
        kh, kw, c_in, c_out = conv.kernel.shape
        taps = conv.kernel.astype(np.float64) * conv.scale
        conv.dense_taps = np.ascontiguousarray(taps.reshape(kh * kw, c_in, c_out), np.float32)
        offset = conv.bias.astype(np.float64) * conv.scale + conv.offset
        conv.dense_offset = offset.astype(np.float32)
    return conv.dense_taps, conv.dense_offset


def winograd_parts(conv) -> tuple[np.ndarray, np.ndarray]:
    """The kernel in the Winograd F(2x2, 3x3) domain, ``G g G^T``, BN scale folded in.

    Parameters
    ----------
    conv : edgel3.sparse_kernels.FoldedConv

    Returns
    -------
    weights : np.ndarray [shape=(16, c_in, c_out), dtype=float32]
        C-contiguous: ``weights[k]`` read in Fortran order is the ``(c_out, c_in)``
        matrix of transformed element ``k`` (row-major in the 4x4 tile).
    offset : np.ndarray [shape=(c_out,), dtype=float32]
    """
    if conv.winograd is None:
        taps, offset = dense_parts(conv)
        c_in, c_out = taps.shape[1:]
        g = conv.kernel.astype(np.float64) * conv.scale  # (3, 3, c_in, c_out)
        transform = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
        u = np.einsum("ai,ijxy,bj->abxy", transform, g, transform)
        conv.winograd = np.ascontiguousarray(u.reshape(16, c_in, c_out), np.float32)
    return conv.winograd, conv.dense_offset


def dense_conv(conv, x, level, out, start, stop, mask, *, winograd: bool = True) -> None:
    """A dense 3x3 'same' conv with its folded BN offset and ReLU, on the rows layout.

    Winograd F(2x2, 3x3) (:func:`winograd_parts`; 2.25x fewer multiplications,
    the same sums in another order) for more than one input channel, else nine
    shifted copies and one GEMM with ``K = 9``; ``winograd=False`` runs nine
    in-place GEMMs, one per tap, instead.

    Parameters
    ----------
    conv : edgel3.sparse_kernels.FoldedConv
    x : np.ndarray [shape=(level.length, c_in), dtype=float32]
        Input maps, padding ring and guards zero.
    level : edgel3.sparse_kernels.PaddedLayout
    out : np.ndarray [shape=(level.length, c_out), dtype=float32]
        Output maps: every interior position written; the padding ring zeroed
        unless the conv is followed by a pool (which never reads it).
    start, stop : int
        Positions of the GEMM path (the guards excluded).
    mask : np.ndarray [shape=(level.length,), dtype=float32]
        0 on the padding ring, or all ones before a pool (GEMM path).
    winograd : bool
    """
    from .blas import sgemm_address

    kernels = get_dense_kernels()
    if x.shape[1] > 1 and winograd:
        weights, offset = winograd_parts(conv)
        geometry = (level.guard, level.wp, level.n_windows, level.height, level.width)
        ring = conv.pool == "none"
        kernels["winograd"](
            sgemm_address(), weights, offset, bool(conv.relu), x, out, *geometry, ring,
            WINOGRAD_TILES,
        )  # fmt: skip
        return
    taps, offset = dense_parts(conv)
    block = max(256, BLOCK_BYTES // (4 * max(taps.shape[1:])))
    kernels["conv"](
        sgemm_address(), taps, offset, bool(conv.relu), x, out, start, stop,
        level.shifts(), mask, block,
    )  # fmt: skip


def get_dense_kernels() -> dict[str, object]:
    """The rows-layout kernels, compiled on first use (cached on disk by numba).

    Returns
    -------
    dict
        ``'conv'``: ``conv(sgemm, taps, offset, relu, x, out, start, stop, shifts,
        mask, block)`` computes output positions ``start:stop`` of ``out`` (``(length,
        c_out)``) from ``x`` (``(length, c_in)``); ``'max_pool'`` and ``'global_max'``
        as in :mod:`edgel3.sparse_kernels`, on the rows layout.
    """
    if not _KERNELS:
        _KERNELS.update(_build())
    return _KERNELS


def _sgemm_intrinsic():
    """A numba intrinsic calling the Fortran ``sgemm`` at an address given at run time.

    Passing the C function itself to a jitted kernel would make numba's on-disk cache
    miss in every new process (a function type is keyed by its object); an integer
    address keeps the kernels cacheable.
    """
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def call_sgemm(typingctx, address, args):
        def codegen(context, builder, signature, llargs):
            address_value, packed = llargs
            pointer = ir.IntType(8).as_pointer()
            ptrs = [builder.inttoptr(builder.extract_value(packed, i), pointer) for i in range(13)]
            function = ir.FunctionType(ir.VoidType(), [pointer] * 13)
            builder.call(builder.inttoptr(address_value, function.as_pointer()), ptrs)
            return context.get_dummy_value()

        return types.void(address, args), codegen

    return call_sgemm


def _build() -> dict[str, object]:  # pragma: no cover - compiled code
    import numba

    # Kernels call each other through module globals, not closure cells: numba keys
    # its disk cache by the pickled closure, which differs in every process for
    # jitted functions (and the cache would never hit).
    module = globals()
    module["_call_sgemm"] = _sgemm_intrinsic()

    # Serial and without the GIL: parallelism comes from one chunk of windows per thread.
    kernel = numba.njit(cache=True, nogil=True, fastmath={"contract"})
    zero = np.float32(0.0)

    @kernel
    def finish(out, p0, p1, offset, relu, mask):
        # out[p, c] = relu?(out[p, c] + offset[c]) * mask[p]: the folded BN/ReLU epilogue.
        n_c = out.shape[1]
        for p in range(p0, p1):
            m = mask[p]
            row = out[p]
            if relu:
                for c in range(n_c):
                    row[c] = max(row[c] + offset[c], zero) * m
            else:
                for c in range(n_c):
                    row[c] = (row[c] + offset[c]) * m

    @kernel
    def gemm(sgemm, trans, ints, floats, beta, a, b, c):
        # Fortran sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        # ints = (m, n, k, lda, ldb, ldc), floats = (alpha, 0, 1); every argument a pointer.
        i = np.int64(ints.ctypes.data)
        f = np.int64(floats.ctypes.data)
        t = np.int64(trans.ctypes.data)
        pa, pb, pc = np.int64(a.ctypes.data), np.int64(b.ctypes.data), np.int64(c.ctypes.data)
        args = (t, t, i, i + 4, i + 8, f, pa, i + 12, pb, i + 16, f + 4 * beta, pc, i + 20)
        _call_sgemm(sgemm, args)

    module["_finish"], module["_gemm"] = finish, gemm

    @kernel
    def conv(sgemm, taps, offset, relu, x, out, start, stop, shifts, mask, block):
        n_taps, c_in, c_out = taps.shape
        ints = np.empty(6, np.int32)  # m, n, k, lda, ldb, ldc
        floats = np.array([1.0, 0.0, 1.0], np.float32)  # alpha, beta = 0, beta = 1
        trans = np.array([78], np.uint8)  # 'N'
        ints[0] = c_out
        ints[3] = c_out
        ints[5] = c_out
        if c_in == 1:  # one input channel: nine shifted copies, one GEMM with K = 9
            col = np.empty((block, n_taps), np.float32)
            ints[2] = n_taps
            ints[4] = n_taps
            weights = np.ascontiguousarray(taps[:, 0, :])  # Fortran (c_out, 9)
            for p0 in range(start, stop, block):
                p1 = min(p0 + block, stop)
                for p in range(p0, p1):
                    for k in range(n_taps):
                        col[p - p0, k] = x[p + shifts[k], 0]
                ints[1] = p1 - p0
                _gemm(sgemm, trans, ints, floats, 1, weights, col, out[p0:])
                _finish(out, p0, p1, offset, relu, mask)
            return
        ints[2] = c_in
        ints[4] = c_in
        for p0 in range(start, stop, block):
            p1 = min(p0 + block, stop)
            ints[1] = p1 - p0
            for k in range(n_taps):
                beta = 1 if k == 0 else 2  # floats[1] = 0, floats[2] = 1
                _gemm(sgemm, trans, ints, floats, beta, taps[k], x[p0 + shifts[k] :], out[p0:])
            _finish(out, p0, p1, offset, relu, mask)

    @kernel
    def winograd(sgemm, weights, offset, relu, x, out, guard, wp, n_win, h, w, ring, tiles):
        # F(2x2, 3x3): each 2x2 output tile from its 4x4 input tile d as
        # A^T [(G g G^T) * (B^T d B)] A, the products 16 GEMMs over a block of tiles.
        c_in, c_out = weights.shape[1], weights.shape[2]
        th, tw = (h + 1) // 2, (w + 1) // 2
        per_window = th * tw
        total = n_win * per_window
        # One spare row per plane: with planes a multiple of 4 KiB apart, the 16 streams
        # each transform reads or writes fell into one L1 set (measured 10-25 % slower).
        u = np.empty((16, tiles + 1, c_in), np.float32)
        m = np.empty((16, tiles + 1, c_out), np.float32)
        ints = np.array([c_out, 0, c_in, c_out, c_in, c_out], np.int32)
        floats = np.array([1.0, 0.0, 1.0], np.float32)
        trans = np.array([78], np.uint8)  # 'N'
        size = (h + 2) * wp
        for t0 in range(0, total, tiles):
            t1 = min(t0 + tiles, total)
            for q in range(t0, t1):  # input transform V = B^T d B, channels innermost
                b = q // per_window
                r = q - b * per_window
                ty = r // tw
                top = guard + b * size + 2 * ty * wp + 2 * (r - ty * tw)
                r0 = x[top : top + 4]
                r1 = x[top + wp : top + wp + 4]
                r2 = x[top + 2 * wp : top + 2 * wp + 4]
                r3 = x[top + 3 * wp : top + 3 * wp + 4]
                row = q - t0
                for c in range(c_in):
                    # V = B^T d B for channel c: rows (a, b, e, f = B^T d), then columns.
                    a0 = r0[0, c] - r2[0, c]
                    a1 = r0[1, c] - r2[1, c]
                    a2 = r0[2, c] - r2[2, c]
                    a3 = r0[3, c] - r2[3, c]
                    b0 = r1[0, c] + r2[0, c]
                    b1 = r1[1, c] + r2[1, c]
                    b2 = r1[2, c] + r2[2, c]
                    b3 = r1[3, c] + r2[3, c]
                    e0 = r2[0, c] - r1[0, c]
                    e1 = r2[1, c] - r1[1, c]
                    e2 = r2[2, c] - r1[2, c]
                    e3 = r2[3, c] - r1[3, c]
                    f0 = r1[0, c] - r3[0, c]
                    f1 = r1[1, c] - r3[1, c]
                    f2 = r1[2, c] - r3[2, c]
                    f3 = r1[3, c] - r3[3, c]
                    u[0, row, c] = a0 - a2
                    u[1, row, c] = a1 + a2
                    u[2, row, c] = a2 - a1
                    u[3, row, c] = a1 - a3
                    u[4, row, c] = b0 - b2
                    u[5, row, c] = b1 + b2
                    u[6, row, c] = b2 - b1
                    u[7, row, c] = b1 - b3
                    u[8, row, c] = e0 - e2
                    u[9, row, c] = e1 + e2
                    u[10, row, c] = e2 - e1
                    u[11, row, c] = e1 - e3
                    u[12, row, c] = f0 - f2
                    u[13, row, c] = f1 + f2
                    u[14, row, c] = f2 - f1
                    u[15, row, c] = f1 - f3
            ints[1] = t1 - t0
            for k in range(16):
                _gemm(sgemm, trans, ints, floats, 1, weights[k], u[k], m[k])
            for q in range(t0, t1):  # output transform Y = A^T M A, offset, ReLU
                b = q // per_window
                r = q - b * per_window
                ty = r // tw
                first = guard + b * size + (2 * ty + 1) * wp + 2 * (r - ty * tw) + 1
                row = q - t0
                y0 = out[first : first + 2]
                y1 = out[first + wp : first + wp + 2]
                for c in range(c_out):
                    o = offset[c]  # (s, v) = the rows of A^T M; then its columns
                    s0 = m[0, row, c] + m[4, row, c] + m[8, row, c]
                    s1 = m[1, row, c] + m[5, row, c] + m[9, row, c]
                    s2 = m[2, row, c] + m[6, row, c] + m[10, row, c]
                    s3 = m[3, row, c] + m[7, row, c] + m[11, row, c]
                    v0 = m[4, row, c] - m[8, row, c] - m[12, row, c]
                    v1 = m[5, row, c] - m[9, row, c] - m[13, row, c]
                    v2 = m[6, row, c] - m[10, row, c] - m[14, row, c]
                    v3 = m[7, row, c] - m[11, row, c] - m[15, row, c]
                    a = s0 + s1 + s2 + o
                    e = s1 - s2 - s3 + o
                    g = v0 + v1 + v2 + o
                    k = v1 - v2 - v3 + o
                    if relu:
                        a = max(a, zero)
                        e = max(e, zero)
                        g = max(g, zero)
                        k = max(k, zero)
                    y0[0, c] = a
                    y0[1, c] = e
                    y1[0, c] = g
                    y1[1, c] = k
        if ring:  # zero padding ring (tiles of an odd-sized map wrote into it)
            for b in range(n_win):
                base = guard + b * size
                out[base : base + wp, :] = zero
                out[base + (h + 1) * wp : base + size, :] = zero
                for r in range(1, h + 1):
                    out[base + r * wp, :] = zero
                    out[base + r * wp + wp - 1, :] = zero

    @kernel
    def max_pool(src, guard_s, wp_s, dst, guard_d, wp_d, n_win, h, w):
        # 2x2 max pooling (floor) of each window's interior, padding ring zeroed.
        ho, wo = h // 2, w // 2
        size_s = (h + 2) * wp_s
        size_d = (ho + 2) * wp_d
        n_c = src.shape[1]
        for job in range(n_win * (ho + 2)):
            b = job // (ho + 2)
            r = job - b * (ho + 2)
            base_d = guard_d + b * size_d + r * wp_d
            if r == 0 or r == ho + 1:
                dst[base_d : base_d + wp_d, :] = zero
                continue
            dst[base_d, :] = zero
            dst[base_d + wp_d - 1, :] = zero
            top = guard_s + b * size_s + (2 * r - 1) * wp_s + 1
            bot = top + wp_s
            for k in range(wo):
                d = dst[base_d + k + 1]
                a0 = src[top + 2 * k]
                a1 = src[top + 2 * k + 1]
                b0 = src[bot + 2 * k]
                b1 = src[bot + 2 * k + 1]
                for c in range(n_c):
                    d[c] = max(max(a0[c], a1[c]), max(b0[c], b1[c]))

    @kernel
    def global_max(src, guard, wp, n_win, h, w, out):
        # Embedding: the maximum of each window's whole (activated) map, per channel.
        size = (h + 2) * wp
        n_c = src.shape[1]
        for b in range(n_win):
            best = out[b]
            best[:] = -np.inf
            for row in range(1, h + 1):
                r = guard + b * size + row * wp + 1
                for q in range(w):
                    s = src[r + q]
                    for c in range(n_c):
                        best[c] = max(best[c], s[c])

    return {"conv": conv, "winograd": winograd, "max_pool": max_pool, "global_max": global_max}
