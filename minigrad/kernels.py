"""Convolution and max-pooling kernels on plain NumPy arrays, each with a NumPy reference twin.

Layout is NCHW throughout: ``x`` is (N, C, H, W), filters ``w`` are (F, C, KH, KW). With
stride ``s`` and zero padding ``p`` the output size is ``OH = (H + 2p - KH) // s + 1`` (and
likewise ``OW``), and the convolution (a cross-correlation, as in every deep-learning library) is

    y[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xp[n, c, oh*s + i, ow*s + j]

where ``xp`` is ``x`` padded with ``p`` zeros on each side of H and W.

The fast path lowers the convolution to matrix products (im2col). Write ``K = C*KH*KW`` and
``L = OH*OW``:

- ``im2col(x)[n]`` is the (K, L) matrix whose column ``(oh, ow)`` holds the patch of ``xp``
  that output pixel sees, row ``(c, i, j)``; ``col2im`` is its adjoint (it adds each patch
  gradient back where the patch came from);
- forward: ``y[n] = W @ cols[n] + b`` with ``W = w.reshape(F, K)``, which is already the
  (F, OH, OW) output of sample n, so no transpose pass is needed. The bias rides along as an
  extra row of ones under ``cols[n]`` and an extra column ``b`` beside ``W``;
- backward, with ``G[n] = grad_out[n]`` as an (F, L) matrix:
  ``[dW | db] = sum_n G[n] @ [cols[n]; 1].T`` and ``dx[n] = col2im(W.T @ G[n])``.

The samples go through in blocks of a few hundred KiB of patches, so each block is still in
cache when ``np.matmul`` (one batched BLAS call per block) reads it; the patches are rebuilt in
the backward pass instead of being kept. The loops around the products are
``numba.njit(cache=True)`` kernels that loop over samples with ``numba.prange``; each is
compiled twice, serially and with ``parallel=True``, and :data:`PARALLEL_KERNELS` says which
parallel versions are used when Numba has more than one thread (see its comment).

Each ``*_reference`` function is an independent NumPy formulation of the same maths (sliding
windows and ``einsum``; the input gradient as a "full" correlation of the stride-dilated output
gradient with the flipped filters), used by the tests to check the kernels. Every kernel also
runs as plain Python under ``NUMBA_DISABLE_JIT=1``.

Float32 stays float32 and float64 stays float64; mixed inputs follow NumPy promotion.
"""
from __future__ import annotations

import os
import types
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "adam_update",
    "adam_update_reference",
    "col2im",
    "col2im_reference",
    "conv2d_backward",
    "conv2d_backward_reference",
    "conv2d_forward",
    "conv2d_forward_reference",
    "ema_moments_update",
    "ema_moments_update_reference",
    "im2col",
    "im2col_reference",
    "maxpool2d_backward",
    "maxpool2d_backward_reference",
    "maxpool2d_forward",
    "maxpool2d_forward_reference",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------- validation
def _check_int(name: str, where: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{where}: {name} must be {kind} integer; got {value!r}")
    return int(value)


def _check_4d(where: str, name: str, layout: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 4:
        raise ValueError(f"{where}: {name} must be 4-D {layout}; got shape {tuple(shape)}")


def _float_dtype(where: str, *arrays: np.ndarray) -> np.dtype:
    # np.float32 in the promotion keeps float32 as is and turns integer input into float64.
    dtype = np.result_type(*(a.dtype for a in arrays), np.float32)
    if dtype not in _FLOATS:
        got = ", ".join(str(a.dtype) for a in arrays)
        raise ValueError(f"{where}: inputs must be real float32 or float64 arrays; got {got}")
    return dtype


def _out_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _conv_geometry(
    where: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride,
    padding,
) -> tuple[int, int, int, int]:
    """Check shapes and hyper-parameters; return (stride, padding, OH, OW)."""
    _check_4d(where, "x", "(N, C, H, W)", x_shape)
    _check_4d(where, "w", "(F, C, KH, KW)", w_shape)
    stride = _check_int("stride", where, stride, 1)
    padding = _check_int("padding", where, padding, 0)
    _, c, h, wd = x_shape
    _, cw, kh, kw = w_shape
    if c != cw:
        raise ValueError(
            f"{where}: x has {c} channels (x shape {tuple(x_shape)}) but w expects {cw} "
            f"(w shape {tuple(w_shape)})"
        )
    if kh < 1 or kw < 1 or kh > h + 2 * padding or kw > wd + 2 * padding:
        raise ValueError(
            f"{where}: kernel {kh}x{kw} does not fit the padded input "
            f"{h + 2 * padding}x{wd + 2 * padding} (x shape {tuple(x_shape)}, "
            f"padding {padding})"
        )
    return stride, padding, _out_size(h, kh, stride, padding), _out_size(wd, kw, stride, padding)


def _conv_inputs(where: str, x, w, b, stride, padding):
    x, w = np.asarray(x), np.asarray(w)
    stride, padding, oh, ow = _conv_geometry(where, x.shape, w.shape, stride, padding)
    f = w.shape[0]
    if b is not None:
        b = np.asarray(b)
        if b.shape != (f,):
            raise ValueError(f"{where}: b must have shape (F,) = ({f},); got {b.shape}")
    dtype = _float_dtype(where, x, w) if b is None else _float_dtype(where, x, w, b)
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    b = np.zeros(f, dtype) if b is None else np.ascontiguousarray(b, dtype=dtype)
    return x, w, b, stride, padding, oh, ow


def _conv_backward_inputs(where: str, grad_out, x_shape, w, stride, padding):
    x_shape = tuple(int(d) for d in x_shape)
    w = np.asarray(w)
    stride, padding, oh, ow = _conv_geometry(where, x_shape, w.shape, stride, padding)
    expected = (x_shape[0], w.shape[0], oh, ow)
    grad_out = np.asarray(grad_out)
    if grad_out.shape != expected:
        raise ValueError(
            f"{where}: grad_out has shape {grad_out.shape} but the forward output has shape "
            f"{expected}"
        )
    return grad_out, x_shape, w, stride, padding, oh, ow


def _pool_geometry(where: str, x_shape: tuple[int, ...], size) -> tuple[int, int, int]:
    _check_4d(where, "x", "(N, C, H, W)", x_shape)
    size = _check_int("size", where, size, 1)
    h, w = x_shape[2], x_shape[3]
    if h % size or w % size:
        raise ValueError(
            f"{where}: H and W of x shape {tuple(x_shape)} must be divisible by size {size}"
        )
    return size, h // size, w // size


def _pool_backward_inputs(where: str, grad_out, argmax, x_shape, size):
    x_shape = tuple(int(d) for d in x_shape)
    size, oh, ow = _pool_geometry(where, x_shape, size)
    expected = (x_shape[0], x_shape[1], oh, ow)
    grad_out, argmax = np.asarray(grad_out), np.asarray(argmax)
    if grad_out.shape != expected or argmax.shape != expected:
        raise ValueError(
            f"{where}: grad_out {grad_out.shape} and argmax {argmax.shape} must both have the "
            f"pooled shape {expected} of x shape {x_shape} with size {size}"
        )
    return grad_out, argmax, x_shape, size


# ---------------------------------------------------------------------- Numba kernels
def _im2col_into(x, kh, kw, stride, padding, start, cols):
    """cols[n, (c*KH + i)*KW + j, oh*OW + ow] = xp[start + n, c, oh*s + i, ow*s + j] for the
    first C*KH*KW rows of each of the cols.shape[0] samples; further rows are left alone."""
    _, c_, h, w = x.shape
    oh_ = (h + 2 * padding - kh) // stride + 1
    ow_ = (w + 2 * padding - kw) // stride + 1
    # One input plane stays in cache while its KH*KW rows are written.
    for n in numba.prange(cols.shape[0]):
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    if stride == 1 and padding == 0:
                        # The common case, as plain row copies without bounds tests, which
                        # Numba vectorises. (Indices, not slices: a slice makes a view, and
                        # views inside a parallel loop cost ~50x in reference counting.)
                        for oh in range(oh_):
                            base = oh * ow_
                            for ow in range(ow_):
                                cols[n, row, base + ow] = x[start + n, c, oh + i, j + ow]
                        continue
                    for oh in range(oh_):
                        ih = oh * stride + i - padding
                        base = oh * ow_
                        if ih < 0 or ih >= h:
                            for ow in range(ow_):
                                cols[n, row, base + ow] = 0
                        else:
                            for ow in range(ow_):
                                iw = ow * stride + j - padding
                                if iw >= 0 and iw < w:
                                    cols[n, row, base + ow] = x[start + n, c, ih, iw]
                                else:
                                    cols[n, row, base + ow] = 0
    return cols


def _col2im_into(cols, kh, kw, stride, padding, start, dx):
    """Add the patch gradients cols[n] of samples start + n into the zero-initialised ``dx``
    (the adjoint of :func:`_im2col_into`); entries that fell in the padding are dropped."""
    _, c_, h, w = dx.shape
    oh_ = (h + 2 * padding - kh) // stride + 1
    ow_ = (w + 2 * padding - kw) // stride + 1
    for n in numba.prange(cols.shape[0]):  # samples write disjoint parts of dx
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    if stride == 1 and padding == 0:
                        for oh in range(oh_):
                            base = oh * ow_
                            for ow in range(ow_):
                                dx[start + n, c, oh + i, j + ow] += cols[n, row, base + ow]
                        continue
                    for oh in range(oh_):
                        ih = oh * stride + i - padding
                        if ih < 0 or ih >= h:
                            continue
                        base = oh * ow_
                        for ow in range(ow_):
                            iw = ow * stride + j - padding
                            if iw >= 0 and iw < w:
                                dx[start + n, c, ih, iw] += cols[n, row, base + ow]
    return dx


@numba.njit(cache=True)
def im2col(x, kh, kw, stride, padding):
    """Patch matrices of NCHW ``x``, shape (N, C*KH*KW, OH*OW):

    cols[n, (c*KH + i)*KW + j, oh*OW + ow] = xp[n, c, oh*s + i, ow*s + j]

    with ``xp`` the input zero-padded by ``padding``. Then conv2d(x, w)[n] is
    ``w.reshape(F, -1) @ cols[n]``, already in (F, OH*OW) order.
    """
    n_, c_, h, w = x.shape
    oh_ = (h + 2 * padding - kh) // stride + 1
    ow_ = (w + 2 * padding - kw) // stride + 1
    cols = np.empty((n_, c_ * kh * kw, oh_ * ow_), dtype=x.dtype)
    return _im2col_into(x, kh, kw, stride, padding, 0, cols)


@numba.njit(cache=True)
def col2im(cols, x_shape, kh, kw, stride, padding):
    """Adjoint of :func:`im2col`: dx[n, c, ih, iw] = sum of the ``cols`` entries that im2col
    copies from x[n, c, ih, iw]."""
    dx = np.zeros(x_shape, dtype=cols.dtype)
    return _col2im_into(cols, kh, kw, stride, padding, 0, dx)


def _maxpool_forward_into(x, size, out, argmax):
    """Max pooling of the samples of ``x`` into ``out`` and ``argmax``, of shape
    (N, C, H/size, W/size) (a batch thread passes the rows of its own samples)."""
    n_, c_, oh_, ow_ = out.shape
    for n in numba.prange(n_):
        for c in range(c_):
            for oh in range(oh_):
                for ow in range(ow_):
                    h0, w0 = oh * size, ow * size
                    best = x[n, c, h0, w0]
                    idx = 0
                    has_nan = False
                    for i in range(size):
                        for j in range(size):
                            v = x[n, c, h0 + i, w0 + j]
                            has_nan |= v != v
                            # Strict '>': a later equal value does not replace the first.
                            if v > best:
                                best = v
                                idx = i * size + j
                    if has_nan:
                        # Rare path, kept out of the hot loop: the first NaN wins, as in
                        # np.argmax.
                        for k in range(size * size - 1, -1, -1):
                            v = x[n, c, h0 + k // size, w0 + k % size]
                            if v != v:
                                best = v
                                idx = k
                    out[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = idx
    return out, argmax


def _maxpool_backward_into(g, argmax, size, dx):
    """``g`` routed to the argmax of each window of ``dx`` (N, C, OH*size, OW*size), zero
    elsewhere: every element of ``dx`` is written, so it needs no zero fill first."""
    n_, c_, oh_, ow_ = g.shape
    for n in numba.prange(n_):
        for c in range(c_):
            for oh in range(oh_):
                for ow in range(ow_):
                    for i in range(size):
                        for j in range(size):
                            dx[n, c, oh * size + i, ow * size + j] = 0
                    k = argmax[n, c, oh, ow]
                    dx[n, c, oh * size + k // size, ow * size + k % size] = g[n, c, oh, ow]
    return dx


def _compiled(fn, parallel: bool):
    """``fn`` jitted serially, or with its ``prange`` loop over samples run in parallel.

    The parallel version is a copy with its own name, so that Numba's on-disk cache keeps
    the two compilations apart. Without JIT (``NUMBA_DISABLE_JIT=1``) both are ``fn``.
    """
    if not parallel:  # nogil: conv2d's batch threads run it side by side
        return numba.njit(cache=True, nogil=True)(fn)
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    twin.__doc__ = fn.__doc__
    return numba.njit(cache=True, parallel=True)(twin)


# Each kernel body loops over samples with ``numba.prange``: a plain ``range`` when compiled
# serially, split between Numba's threads when compiled with parallel=True.
_KERNEL_BODIES = {
    "im2col": _im2col_into,
    "col2im": _col2im_into,
    "maxpool_forward": _maxpool_forward_into,
    "maxpool_backward": _maxpool_backward_into,
}
_SERIAL = {name: _compiled(fn, parallel=False) for name, fn in _KERNEL_BODIES.items()}
_PARALLEL = {name: _compiled(fn, parallel=True) for name, fn in _KERNEL_BODIES.items()}
_im2col_into = _SERIAL["im2col"]
_col2im_into = _SERIAL["col2im"]
_maxpool_forward_into = _SERIAL["maxpool_forward"]
_maxpool_backward_into = _SERIAL["maxpool_backward"]

# Which kernels run in parallel when Numba has more than one thread. The rule: only those
# measured faster than their serial version (benchmarks/parallel_kernels.py, LeNet-5 shapes,
# batch 128, 2 threads). Alone, on an idle 2-core machine, each parallel kernel is 1.7 to 2.6
# times faster than its serial version; inside a LeNet-5 step with the default 2-thread BLAS
# the step takes twice as long (16 ms against 8), because OpenBLAS's worker threads spin for
# about 0.1 s after every call and hold the second core that the kernel's threads wait for.
# With a 1-thread BLAS (OPENBLAS_NUM_THREADS=1) the parallel kernels make the step 7.1 ms.
# So none is on by default; on a machine of your own, run that script and list the kernels
# it finds faster, comma-separated, in the environment variable MINIGRAD_PARALLEL_KERNELS
# (read when minigrad is imported), with BLAS at one thread.
PARALLEL_KERNELS = frozenset(
    name for name in os.environ.get("MINIGRAD_PARALLEL_KERNELS", "").replace(" ", "").split(",")
    if name in _KERNEL_BODIES
)


def _kernel(name: str):
    """The serial or the parallel version of a kernel, by the rule above."""
    if name in PARALLEL_KERNELS and numba.get_num_threads() > 1:
        return _PARALLEL[name]
    return _SERIAL[name]


# How many threads conv2d_forward and conv2d_backward (and the max-pooling kernels, whose
# samples are as independent) split the batch between: each convolution thread runs the
# serial block loop below (im2col, a Numba kernel that releases the GIL, then
# np.matmul, which releases it too) on a contiguous part of the samples, so the whole
# convolution, matrix products included, uses that many cores. The products of one block are
# below OpenBLAS's threading threshold (M*N*K of LeNet-5's layers is at most 2.5e5), so BLAS
# runs each of them on the calling thread and the two thread pools never compete. The
# results are those of one thread: the output and the input gradient bit for bit; the
# weight gradient is the sum of the threads' partial sums (float rounding apart). Like the
# parallel kernels, on only where measured faster (benchmarks/parallel_kernels.py): set
# MINIGRAD_CONV_THREADS=2 (read when minigrad is imported; NUMBA_NUM_THREADS caps it).
# Default 1, one thread. Measured by `make bench` on an idle 2-core machine, a LeNet-5 step
# (batch 128) takes 8.8 ms on one thread and 6.0 ms with two batch threads (PyTorch on two
# threads: 6.1 ms), but only with BLAS at one thread (OPENBLAS_NUM_THREADS=1): with two batch
# threads and the default 2-thread BLAS it took 8.4 ms, and 8.6 ms with one, because
# OpenBLAS's idle worker threads spin after every call (about 0.1 s) on the core the second
# batch thread needs. To use two cores for a LeNet-5 run: OPENBLAS_NUM_THREADS=1
# MINIGRAD_CONV_THREADS=2 (benchmarks/parallel_kernels.py --steps 20 measures all four ways).
def _conv_threads_from_env() -> int:
    value = os.environ.get("MINIGRAD_CONV_THREADS", "1").strip() or "1"
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"MINIGRAD_CONV_THREADS must be a whole number of threads (1 = no "
                         f"splitting of the batch), got {value!r}") from None
    if threads < 1:
        raise ValueError(f"MINIGRAD_CONV_THREADS must be at least 1, got {threads}")
    return threads


CONV_THREADS = _conv_threads_from_env()
_batch_pool: ThreadPoolExecutor | None = None


def _over_batch_threads(work, n: int, block: int) -> list:
    """``work(first, stop)`` over the samples ``[0, n)``, split into :data:`CONV_THREADS`
    contiguous parts of at least one block each (never more parts than Numba has threads,
    the process's thread budget), the first part on the calling thread. Returns the parts'
    results in sample order."""
    global _batch_pool
    parts = min(CONV_THREADS, numba.get_num_threads(), n // block)
    if parts < 2:
        return [work(0, n)]
    if _batch_pool is None or _batch_pool._max_workers < parts - 1:
        _batch_pool = ThreadPoolExecutor(max_workers=parts - 1,
                                         thread_name_prefix="minigrad-conv")
    bounds = [n * i // parts for i in range(parts + 1)]
    others = [_batch_pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    return [work(bounds[0], bounds[1])] + [future.result() for future in others]


# ---------------------------------------------------------------------- public kernels
# Samples per block of the convolution loops: a block's patch matrices take about this many
# bytes, so they are still in cache when the matrix product reads them. Building the whole
# (N, C*KH*KW, OH*OW) array instead costs a trip through main memory and, because a large
# fresh array is mapped page by page, a page fault per 4 KiB on every call.
_BLOCK_BYTES = 512 * 1024


def _block_samples(rows: int, plane: int, itemsize: int, n: int) -> int:
    return max(1, min(n, _BLOCK_BYTES // max(1, rows * plane * itemsize)))


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: int = 1,
    padding: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """y = conv2d(x, w) + b, one sample at a time as ``y[n] = [W | b] @ [cols[n]; 1]``.

    ``W = w.reshape(F, C*KH*KW)`` and ``cols[n]`` is the :func:`im2col` matrix of sample n
    with a row of ones appended, so the bias rides along in the product. The products of a
    block of samples are one batched ``np.matmul`` writing straight into the (N, F, OH, OW)
    output. With :data:`CONV_THREADS` above 1 the samples are split between that many
    threads, each with its own patch buffer.

    Args:
        x: (N, C, H, W) input.
        w: (F, C, KH, KW) filters.
        b: (F,) bias, or None for no bias.
        stride, padding: the same for both spatial axes.

    Returns:
        ``(out, cols)``: out is (N, F, OH, OW); cols is what :func:`conv2d_backward` needs:
        here the contiguous input in the compute dtype (possibly ``x`` itself, so do not
        modify ``x`` in place before the backward pass), since rebuilding the patches block
        by block is cheaper than keeping a C*KH*KW times larger array alive.
    """
    x, w, b, stride, padding, oh, ow = _conv_inputs("conv2d_forward", x, w, b, stride, padding)
    n, c = x.shape[:2]
    f, _, kh, kw = w.shape
    k, plane = c * kh * kw, oh * ow
    w_aug = np.empty((f, k + 1), dtype=x.dtype)
    w_aug[:, :k] = w.reshape(f, k)
    w_aug[:, k] = b
    out = np.empty((n, f, plane), dtype=x.dtype)
    block = _block_samples(k + 1, plane, x.itemsize, n)
    im2col_into = _kernel("im2col")

    def samples(first: int, stop: int) -> None:
        cols = np.empty((block, k + 1, plane), dtype=x.dtype)
        cols[:, k] = 1  # the bias row; im2col fills rows :k only
        for start in range(first, stop, block):
            m = min(block, stop - start)
            patches = im2col_into(x, kh, kw, stride, padding, start, cols[:m])
            np.matmul(w_aug, patches, out=out[start : start + m])

    _over_batch_threads(samples, n, block)
    return out.reshape(n, f, oh, ow), x


def conv2d_backward(
    grad_out: np.ndarray,
    x_shape: tuple[int, ...],
    cols: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    *,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of conv2d, one sample at a time, with ``G[n] = grad_out[n]`` as (F, OH*OW):

    [dW | db] = sum_n G[n] @ [cols[n]; 1].T   and   dx[n] = col2im(W.T @ G[n]).

    Args:
        grad_out: (N, F, OH, OW) gradient of the output.
        x_shape: shape of the forward input x.
        cols: the second value returned by :func:`conv2d_forward`.
        w: the (F, C, KH, KW) filters of the forward pass.
        stride, padding: as in the forward pass.
        need_dx: when False, skip the input gradient (a network's first layer) and return
            None in its place.

    Returns:
        ``(dx, dw, db)`` with the shapes of x, w and (F,); db is returned even when the
        forward pass had no bias. Their dtype is that of ``cols``.
    """
    where = "conv2d_backward"
    grad_out, x_shape, w, stride, padding, oh, ow = _conv_backward_inputs(
        where, grad_out, x_shape, w, stride, padding
    )
    if not isinstance(cols, np.ndarray) or cols.shape != x_shape:
        got = cols.shape if isinstance(cols, np.ndarray) else type(cols).__name__
        raise ValueError(
            f"{where}: cols must be the array of shape x_shape = {x_shape} returned by "
            f"conv2d_forward; got {got}"
        )
    x = np.ascontiguousarray(cols)
    dtype = x.dtype
    n, c = x_shape[:2]
    f, _, kh, kw = w.shape
    k, plane = c * kh * kw, oh * ow
    g = np.ascontiguousarray(grad_out, dtype=dtype).reshape(n, f, plane)
    w2t = np.ascontiguousarray(w, dtype=dtype).reshape(f, k).T
    block = _block_samples(k + 1, plane, x.itemsize, n)
    im2col_into, col2im_into = _kernel("im2col"), _kernel("col2im")
    dx = np.empty(x_shape, dtype=dtype) if need_dx else None

    def samples(first: int, stop: int) -> np.ndarray:
        if need_dx:   # col2im adds into dx: each thread zeroes the rows of its own samples
            dx[first:stop] = 0
        cols_buf = np.empty((block, k + 1, plane), dtype=dtype)
        cols_buf[:, k] = 1  # so that the last column of the weight gradient is db
        dw_aug = np.zeros((f, k + 1), dtype=dtype)
        dw_parts = np.empty((block, f, k + 1), dtype=dtype)
        dcols = np.empty((block, k, plane), dtype=dtype) if need_dx else None
        for start in range(first, stop, block):
            m = min(block, stop - start)
            g_block = g[start : start + m]
            patches = im2col_into(x, kh, kw, stride, padding, start, cols_buf[:m])
            dw_aug += np.matmul(g_block, patches.transpose(0, 2, 1), out=dw_parts[:m]).sum(
                axis=0)
            if need_dx:  # each thread writes the rows of its own samples
                np.matmul(w2t, g_block, out=dcols[:m])
                col2im_into(dcols[:m], kh, kw, stride, padding, start, dx)
        return dw_aug

    parts = _over_batch_threads(samples, n, block)
    dw_aug = parts[0]
    for part in parts[1:]:
        dw_aug += part
    return dx, dw_aug[:, :k].reshape(w.shape), np.ascontiguousarray(dw_aug[:, k])


def _pool_outputs(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty ``out`` and ``argmax`` (int64) arrays for max pooling ``x``."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h // size, w // size), dtype=x.dtype)
    return out, np.empty(out.shape, dtype=np.int64)


def maxpool2d_forward(x: np.ndarray, size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """y[n, c, oh, ow] = max of the window x[n, c, oh*size : (oh+1)*size, ow*size : ...].

    Windows do not overlap (stride = size); H and W must be divisible by ``size``.

    Returns:
        ``(out, argmax)``: out is (N, C, H/size, W/size); argmax (int64, same shape) is the
        row-major index ``i*size + j`` of the maximum inside each window. Ties go to the
        first maximum in row-major order (a NaN counts as the maximum, as in np.argmax).
    """
    x = np.asarray(x)
    size, _, _ = _pool_geometry("maxpool2d_forward", x.shape, size)
    x = np.ascontiguousarray(x, dtype=_float_dtype("maxpool2d_forward", x))
    n = len(x)
    out, argmax = _pool_outputs(x, size)
    pool = _kernel("maxpool_forward")
    if CONV_THREADS == 1 or pool is not _SERIAL["maxpool_forward"]:
        return pool(x, size, out, argmax)
    # the samples split between the batch threads, like the convolutions, each writing the
    # rows of its own samples
    _over_batch_threads(lambda first, stop: pool(x[first:stop], size, out[first:stop],
                                                 argmax[first:stop]), n, 1)
    return out, argmax


def maxpool2d_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, ...],
    size: int = 2,
) -> np.ndarray:
    """dx = grad_out routed to the argmax of each window, zero elsewhere.

    Only the first maximum of a window (row-major) receives its gradient.
    """
    grad_out, argmax, x_shape, size = _pool_backward_inputs(
        "maxpool2d_backward", grad_out, argmax, x_shape, size
    )
    g = np.ascontiguousarray(grad_out, dtype=_float_dtype("maxpool2d_backward", grad_out))
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    n = len(g)
    dx = np.empty(x_shape, dtype=g.dtype)
    route = _kernel("maxpool_backward")
    if CONV_THREADS == 1 or route is not _SERIAL["maxpool_backward"]:
        return route(g, argmax, size, dx)
    _over_batch_threads(lambda first, stop: route(g[first:stop], argmax[first:stop], size,
                                                  dx[first:stop]), n, 1)
    return dx


# ---------------------------------------------------------------------- Adam, fused
@numba.njit(cache=True, error_model="numpy")  # IEEE division, no zero test: vectorisable
def _adam_update(p, g, m, v, b1, c1, b2, c2, step_size, eps_hat):
    for i in range(p.size):
        mi = m[i] * b1 + g[i] * c1
        vi = v[i] * b2 + (g[i] * g[i]) * c2
        m[i] = mi
        v[i] = vi
        p[i] -= (mi * step_size) / (np.sqrt(vi) + eps_hat)


def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, b1: float,
                b2: float, step_size: float, eps_hat: float) -> bool:
    """One Adam update of ``p``, ``m`` and ``v`` in place, in one pass over the arrays:

    m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2;   p -= step_size m / (sqrt(v) + eps_hat)

    with every constant rounded to the arrays' dtype first, so that the result is the same,
    bit for bit, as :func:`adam_update_reference` (NumPy, one array pass per operation).
    Applies only to C-contiguous writable float arrays of one dtype and shape, and returns
    False (changing nothing) otherwise, or when Numba is disabled (the loop would then run
    in Python): the caller then uses the reference.
    """
    dtype = p.dtype
    if (numba.config.DISABLE_JIT or dtype not in _FLOATS or not p.flags.writeable
            or any(a.dtype != dtype or a.shape != p.shape or not a.flags.c_contiguous
                   for a in (p, g, m, v))
            or not (m.flags.writeable and v.flags.writeable)):
        return False
    c = dtype.type
    _adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), c(b1), c(1 - b1),
                 c(b2), c(1 - b2), c(step_size), c(eps_hat))
    return True


def adam_update_reference(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray,
                          b1: float, b2: float, step_size: float, eps_hat: float) -> None:
    """NumPy twin of :func:`adam_update` (``m``, ``v`` and ``p`` updated in place)."""
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    p -= step_size * m / (np.sqrt(v) + eps_hat)


# ---------------------------------------------------------------------- moving moments, fused
@numba.njit(cache=True)
def _ema_moments_update(first, second, g, keep, fresh):
    for i in range(first.size):
        gi = np.float64(g[i])
        first[i] = keep * first[i] + fresh * gi
        second[i] = keep * second[i] + fresh * gi * gi


def ema_moments_update(first: np.ndarray, second: np.ndarray, g: np.ndarray,
                       keep: float) -> bool:
    """Moving averages of ``g`` and ``g^2`` updated in place, in one pass over the arrays:

    first = keep first + (1 - keep) g;   second = keep second + (1 - keep) g g

    in float64 whatever ``g``'s float dtype, and the same bit for bit as
    :func:`ema_moments_update_reference`. Applies only to flat C-contiguous writable float64
    moments and a flat float ``g`` of their size, and returns False (changing nothing)
    otherwise, or when Numba is disabled: the caller then uses the reference.
    """
    if (numba.config.DISABLE_JIT or g.dtype not in _FLOATS or g.ndim != 1
            or any(a.dtype != np.float64 or a.shape != g.shape or not a.flags.c_contiguous
                   or not a.flags.writeable for a in (first, second))
            or not g.flags.c_contiguous):
        return False
    _ema_moments_update(first, second, g, float(keep), float(1 - keep))
    return True


def ema_moments_update_reference(first: np.ndarray, second: np.ndarray, g: np.ndarray,
                                 keep: float) -> None:
    """NumPy twin of :func:`ema_moments_update` (``first`` and ``second`` in place)."""
    g = np.asarray(g, dtype=np.float64)
    first *= keep
    first += (1 - keep) * g
    second *= keep
    second += (1 - keep) * g * g


# ---------------------------------------------------------------------- NumPy reference twins
def _windows(xp: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """View (N, C, OH, OW, KH, KW) of the stride-spaced KHxKW windows of padded ``xp``."""
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


def _pad(x: np.ndarray, padding: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def im2col_reference(
    x: np.ndarray, kh: int, kw: int, stride: int, padding: int
) -> np.ndarray:
    """NumPy twin of :func:`im2col`: the windows view, axes moved to (N, C, KH, KW, OH, OW)."""
    win = _windows(_pad(x, padding), kh, kw, stride)
    n, c = x.shape[:2]
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, -1)


def col2im_reference(
    cols: np.ndarray,
    x_shape: tuple[int, ...],
    kh: int,
    kw: int,
    stride: int,
    padding: int,
) -> np.ndarray:
    """NumPy twin of :func:`col2im`: one strided slice-add into the padded input per tap."""
    n, c, h, w = x_shape
    oh, ow = _out_size(h, kh, stride, padding), _out_size(w, kw, stride, padding)
    patches = cols.reshape(n, c, kh, kw, oh, ow)
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += patches[
                :, :, i, j
            ]
    return xp[:, :, padding : padding + h, padding : padding + w]


def conv2d_forward_reference(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: int = 1,
    padding: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`conv2d_forward` by ``einsum`` over sliding windows.

    Returns ``(out, xp)`` with ``xp`` the zero-padded input, which
    :func:`conv2d_backward_reference` takes as its ``cols``.
    """
    x, w, b, stride, padding, _, _ = _conv_inputs(
        "conv2d_forward_reference", x, w, b, stride, padding
    )
    xp = _pad(x, padding)
    win = _windows(xp, w.shape[2], w.shape[3], stride)
    out = np.einsum("nchwij,fcij->nfhw", win, w, optimize=True) + b[:, None, None]
    return out.astype(x.dtype, copy=False), xp


def conv2d_backward_reference(
    grad_out: np.ndarray,
    x_shape: tuple[int, ...],
    cols: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    *,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """NumPy twin of :func:`conv2d_backward`; ``cols`` is the padded input ``xp``.

    dw[f, c, i, j] = sum_{n, oh, ow} g[n, f, oh, ow] xp[n, c, oh*s + i, ow*s + j] and
    db = sum of g over (n, oh, ow). dx is the "full" correlation of ``g`` dilated by the
    stride (s - 1 zeros between entries) with the spatially flipped filters, channels
    swapped, then cropped by the padding.
    """
    where = "conv2d_backward_reference"
    g, x_shape, w, stride, padding, oh, ow = _conv_backward_inputs(
        where, grad_out, x_shape, w, stride, padding
    )
    n, c, h, wd = x_shape
    f, _, kh, kw = w.shape
    hp, wp = h + 2 * padding, wd + 2 * padding
    if not isinstance(cols, np.ndarray) or cols.shape != (n, c, hp, wp):
        got = cols.shape if isinstance(cols, np.ndarray) else type(cols).__name__
        raise ValueError(
            f"{where}: cols must be the padded input {(n, c, hp, wp)} returned by "
            f"conv2d_forward_reference; got {got}"
        )
    dtype = cols.dtype
    g, w = g.astype(dtype, copy=False), w.astype(dtype, copy=False)
    dw = np.einsum("nfhw,nchwij->fcij", g, _windows(cols, kh, kw, stride), optimize=True)
    db = g.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dw, db
    dilated = np.zeros((n, f, (oh - 1) * stride + 1, (ow - 1) * stride + 1), dtype=dtype)
    dilated[:, :, ::stride, ::stride] = g
    # Rows/columns of xp past the last window get no gradient: the extra bottom/right pad.
    extra_h, extra_w = hp - ((oh - 1) * stride + kh), wp - ((ow - 1) * stride + kw)
    full = np.pad(
        dilated, ((0, 0), (0, 0), (kh - 1, kh - 1 + extra_h), (kw - 1, kw - 1 + extra_w))
    )
    flipped = w[:, :, ::-1, ::-1]
    dxp = np.einsum("nfhwij,fcij->nchw", _windows(full, kh, kw, 1), flipped, optimize=True)
    dx = dxp[:, :, padding : padding + h, padding : padding + wd]
    return np.ascontiguousarray(dx), dw, db


def maxpool2d_forward_reference(
    x: np.ndarray, size: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`maxpool2d_forward`: reshape into (..., size*size) blocks and take
    ``argmax`` (which returns the first maximum); same ``argmax`` format as the kernel."""
    x = np.asarray(x)
    size, oh, ow = _pool_geometry("maxpool2d_forward_reference", x.shape, size)
    x = x.astype(_float_dtype("maxpool2d_forward_reference", x), copy=False)
    n, c = x.shape[:2]
    blocks = x.reshape(n, c, oh, size, ow, size).transpose(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(n, c, oh, ow, size * size)
    argmax = blocks.argmax(axis=-1)
    out = np.take_along_axis(blocks, argmax[..., None], axis=-1)[..., 0]
    return out, argmax.astype(np.int64)


def maxpool2d_backward_reference(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, ...],
    size: int = 2,
) -> np.ndarray:
    """NumPy twin of :func:`maxpool2d_backward`: a one-hot mask per window times its
    gradient, blocks laid back out as (N, C, H, W)."""
    g, argmax, x_shape, size = _pool_backward_inputs(
        "maxpool2d_backward_reference", grad_out, argmax, x_shape, size
    )
    n, c, oh, ow = g.shape
    onehot = np.arange(size * size) == argmax[..., None]
    blocks = np.where(onehot, g[..., None], np.zeros((), dtype=g.dtype))
    blocks = blocks.reshape(n, c, oh, ow, size, size).transpose(0, 1, 2, 4, 3, 5)
    return blocks.reshape(x_shape)
