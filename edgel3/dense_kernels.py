"""The dense path of :mod:`edgel3.sparse`: 3x3 convs as BLAS GEMMs, pools, in numba.

Activations use the *rows* layout: ``x[guard + b * (h + 2) * wp + row * wp + col, c]``
(positions x channels) in the padded geometry of :class:`edgel3.sparse_kernels.PaddedLayout`.
The input rows a kernel tap needs for a run of output positions are then one
contiguous slice of ``x``, which BLAS reads in place as a Fortran matrix
``(c_in, n)``: a conv is nine GEMMs accumulating into one output block
(``beta=1``), then the folded offset, ReLU and padding mask -- no im2col.

Every kernel here is compiled with ``nogil=True`` and calls BLAS's ``sgemm``
through its C address (:func:`edgel3.blas.sgemm_address`), so that a whole conv
runs without the GIL: :class:`edgel3.sparse.SparseExecutor` runs one chunk of
windows per thread, each on a single-threaded BLAS, which keeps every core busy
in the front end, the GEMMs and the epilogues alike (and leaves no BLAS pool
spinning between calls).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dense_parts", "get_dense_kernels", "BLOCK_BYTES"]

_KERNELS: dict[str, object] = {}
# Set by _build(): module globals the kernels call (see there).
_call_sgemm = _gemm = _finish = None

#: Bytes of one block of the dense conv's output (or input) rows: sized for a core's L2.
BLOCK_BYTES = 256 * 2**10


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

    return {"conv": conv, "max_pool": max_pool, "global_max": global_max}
