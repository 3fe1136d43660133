"""The parallel versions of the sample loops (``numba.prange`` compiled with parallel=True)
against the serial kernels and the NumPy twins, run with two Numba threads; and the rule that
picks between them."""
from __future__ import annotations

import numpy as np

from minigrad import kernels as K
from test_kernels import run_python


def test_parallel_kernels_equal_the_serial_ones_and_the_twins_with_two_threads():
    code = """
        import numba
        import numpy as np
        from minigrad import kernels as K

        assert numba.get_num_threads() == 2
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((9, 3, 8, 8)).astype(dtype)
            for stride, padding in [(1, 0), (2, 1)]:
                oh = (8 + 2 * padding - 3) // stride + 1
                out = {}
                for name, table in (("serial", K._SERIAL), ("parallel", K._PARALLEL)):
                    cols = np.empty((9, 27, oh * oh), dtype)
                    table["im2col"](x, 3, 3, stride, padding, 0, cols)
                    dx = np.zeros_like(x)
                    table["col2im"](cols, 3, 3, stride, padding, 0, dx)
                    out[name] = (cols, dx)
                ref = K.im2col_reference(x, 3, 3, stride, padding)
                np.testing.assert_array_equal(out["parallel"][0], ref)
                np.testing.assert_array_equal(out["parallel"][0], out["serial"][0])
                np.testing.assert_array_equal(out["parallel"][1], out["serial"][1])
                np.testing.assert_allclose(
                    out["parallel"][1], K.col2im_reference(ref, x.shape, 3, 3, stride, padding),
                    rtol=1e-5)
            p = np.maximum(x, 0)  # tied zeros in many windows
            pooled, argmax = K._PARALLEL["maxpool_forward"](p, 2, *K._pool_outputs(p, 2))
            pooled_ref, argmax_ref = K.maxpool2d_forward_reference(p, 2)
            np.testing.assert_array_equal(pooled, pooled_ref)
            np.testing.assert_array_equal(argmax, argmax_ref)
            g = rng.standard_normal(pooled.shape).astype(dtype)
            np.testing.assert_array_equal(
                K._PARALLEL["maxpool_backward"](g, argmax, 2, np.empty_like(p)),
                K.maxpool2d_backward_reference(g, argmax_ref, p.shape, 2))
        # The public kernels with every parallel version switched on.
        K.PARALLEL_KERNELS = frozenset(K._PARALLEL)
        w = rng.standard_normal((4, 3, 3, 3))
        b = rng.standard_normal(4)
        xs = rng.standard_normal((9, 3, 8, 8))
        out, saved = K.conv2d_forward(xs, w, b, 1, 0)
        ref, saved_ref = K.conv2d_forward_reference(xs, w, b, 1, 0)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
        g = rng.standard_normal(out.shape)
        for a, r in zip(K.conv2d_backward(g, xs.shape, saved, w, 1, 0),
                        K.conv2d_backward_reference(g, xs.shape, saved_ref, w, 1, 0)):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)
        print("parallel ok")
    """
    result = run_python(code, NUMBA_NUM_THREADS="2", NUMBA_DISABLE_JIT="0")
    assert result.returncode == 0, result.stderr
    assert "parallel ok" in result.stdout


def test_a_kernel_runs_in_parallel_only_if_listed_and_given_threads(monkeypatch):
    monkeypatch.setattr(K.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(K, "PARALLEL_KERNELS", frozenset({"im2col"}))
    assert K._kernel("im2col") is K._PARALLEL["im2col"]
    assert K._kernel("col2im") is K._SERIAL["col2im"]
    monkeypatch.setattr(K.numba, "get_num_threads", lambda: 1)
    assert K._kernel("im2col") is K._SERIAL["im2col"]


def test_every_parallel_kernel_has_a_serial_twin_of_the_same_maths():
    assert set(K._PARALLEL) == set(K._SERIAL) == set(K._KERNEL_BODIES)
    assert K.PARALLEL_KERNELS <= set(K._PARALLEL)
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4))
    np.testing.assert_array_equal(K._SERIAL["maxpool_forward"](x, 2, *K._pool_outputs(x, 2))[0],
                                  K.maxpool2d_forward_reference(x, 2)[0])


def test_parallel_kernels_are_chosen_from_the_environment():
    code = """
        from minigrad import kernels as K
        assert K.PARALLEL_KERNELS == {"im2col", "maxpool_backward"}, K.PARALLEL_KERNELS
        print("chosen")
    """
    result = run_python(code, MINIGRAD_PARALLEL_KERNELS="im2col, maxpool_backward,unknown")
    assert result.returncode == 0, result.stderr
    assert "chosen" in result.stdout


def test_convolution_split_over_batch_threads_equals_one_thread_and_the_twins():
    """MINIGRAD_CONV_THREADS=2: the output and the input gradient equal the one-thread
    kernels' bit for bit (each sample is computed alone), the weight gradient to rounding
    (a sum of two partial sums), and all of them the NumPy twins; max pooling, split the
    same way, equals one thread and its twins bit for bit."""
    code = """
        import threading
        import numpy as np
        from minigrad import kernels as K

        assert K.CONV_THREADS == 2
        rng = np.random.default_rng(5)
        seen = set()
        im2col = K._SERIAL["im2col"]

        def spy(*args):  # which threads run the sample loops
            seen.add(threading.get_ident())
            return im2col(*args)

        K._SERIAL["im2col"] = spy
        for dtype, (n, c, h, f, stride, padding) in [
                (np.float32, (64, 6, 14, 16, 1, 0)), (np.float64, (37, 3, 9, 4, 2, 1)),
                (np.float32, (1, 2, 6, 3, 1, 1))]:
            x = rng.standard_normal((n, c, h, h)).astype(dtype)
            w = rng.standard_normal((f, c, 3, 3)).astype(dtype)
            b = rng.standard_normal(f).astype(dtype)
            K._SERIAL["im2col"] = spy
            K.CONV_THREADS = 2
            out, saved = K.conv2d_forward(x, w, b, stride, padding)
            g = rng.standard_normal(out.shape).astype(dtype)
            grads = K.conv2d_backward(g, x.shape, saved, w, stride, padding)
            K.CONV_THREADS = 1
            out1, saved1 = K.conv2d_forward(x, w, b, stride, padding)
            grads1 = K.conv2d_backward(g, x.shape, saved1, w, stride, padding)
            np.testing.assert_array_equal(out, out1)
            np.testing.assert_array_equal(grads[0], grads1[0])
            tol = 1e-5 if dtype == np.float32 else 1e-12
            for a, a1 in zip(grads[1:], grads1[1:]):
                np.testing.assert_allclose(a, a1, rtol=tol, atol=tol * np.abs(a1).max())
            ref, saved_ref = K.conv2d_forward_reference(x, w, b, stride, padding)
            np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())
            for a, r in zip(grads, K.conv2d_backward_reference(g, x.shape, saved_ref, w,
                                                               stride, padding)):
                np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())
        assert len(seen) == 2, seen  # the batch really went to two threads
        pooled = set()
        pool = K._SERIAL["maxpool_forward"]

        def pool_spy(*args):
            pooled.add(threading.get_ident())
            return pool(*args)

        K._SERIAL["maxpool_forward"] = pool_spy
        for dtype, n in [(np.float32, 9), (np.float64, 2), (np.float32, 1)]:
            x = rng.standard_normal((n, 3, 8, 6)).astype(dtype)
            x[0, 0, :2, :2] = 1.5                  # a tie: the first maximum wins
            K.CONV_THREADS = 2
            out, argmax = K.maxpool2d_forward(x, 2)
            g = rng.standard_normal(out.shape).astype(dtype)
            dx = K.maxpool2d_backward(g, argmax, x.shape, 2)
            K.CONV_THREADS = 1
            out1, argmax1 = K.maxpool2d_forward(x, 2)
            np.testing.assert_array_equal(out, out1)
            np.testing.assert_array_equal(argmax, argmax1)
            np.testing.assert_array_equal(dx, K.maxpool2d_backward(g, argmax1, x.shape, 2))
            ref, argmax_ref = K.maxpool2d_forward_reference(x, 2)
            np.testing.assert_array_equal(out, ref)
            np.testing.assert_array_equal(argmax, argmax_ref)
            np.testing.assert_array_equal(
                dx, K.maxpool2d_backward_reference(g, argmax_ref, x.shape, 2))
        assert len(pooled) == 2, pooled  # pooling split its batch too
        print("split ok")
    """
    result = run_python(code, MINIGRAD_CONV_THREADS="2", NUMBA_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr
    assert "split ok" in result.stdout


def test_batch_split_gives_each_thread_a_contiguous_part_of_whole_blocks(monkeypatch):
    calls = []
    monkeypatch.setattr(K, "CONV_THREADS", 2)
    monkeypatch.setattr(K.numba, "get_num_threads", lambda: 2)
    assert K._over_batch_threads(lambda a, b: calls.append((a, b)) or b - a, 10, 3) == [5, 5]
    assert sorted(calls) == [(0, 5), (5, 10)]
    calls.clear()
    assert K._over_batch_threads(lambda a, b: calls.append((a, b)) or b - a, 5, 3) == [5]
    assert calls == [(0, 5)]  # fewer than two blocks: one thread
    calls.clear()
    monkeypatch.setattr(K.numba, "get_num_threads", lambda: 1)
    assert K._over_batch_threads(lambda a, b: calls.append((a, b)) or b - a, 10, 3) == [10]
    assert calls == [(0, 10)]  # one thread in the budget: no split


def test_conv_threads_setting_is_checked():
    result = run_python("import minigrad.kernels", MINIGRAD_CONV_THREADS="two")
    assert result.returncode != 0
    assert "MINIGRAD_CONV_THREADS must be a whole number" in result.stderr


def test_fused_adam_update_equals_its_numpy_twin_bit_for_bit():
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        p = rng.standard_normal((7, 5)).astype(dtype)
        m = rng.standard_normal((7, 5)).astype(dtype) * 0.1
        v = rng.random((7, 5)).astype(dtype) * 0.01
        fused = [a.copy() for a in (p, m, v)]
        for t in range(1, 4):
            g = rng.standard_normal((7, 5)).astype(dtype)
            step, eps_hat = 1e-3 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t), 1e-8
            assert K.adam_update(fused[0], g, fused[1], fused[2], 0.9, 0.999, step, eps_hat)
            K.adam_update_reference(p, g, m, v, 0.9, 0.999, step, eps_hat)
            for a, b in zip(fused, (p, m, v)):
                np.testing.assert_array_equal(a, b)


def test_fused_adam_update_declines_what_it_cannot_do_in_place():
    p = np.ones((4, 3), np.float32)
    g = np.ones((3, 4), np.float32).T  # not C-contiguous
    m, v = np.zeros_like(p), np.zeros_like(p)
    assert not K.adam_update(p, g, m, v, 0.9, 0.999, 1e-3, 1e-8)
    p.setflags(write=False)
    assert not K.adam_update(p, np.ones_like(p), m, v, 0.9, 0.999, 1e-3, 1e-8)
    assert np.all(m == 0) and np.all(v == 0)


def test_fused_moving_moments_equal_their_numpy_twin_and_the_formula_bit_for_bit():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        first, second = rng.standard_normal(1001), rng.random(1001)
        fused = [first.copy(), second.copy()]
        for _ in range(3):
            g = rng.standard_normal(1001).astype(dtype)
            wide = g.astype(np.float64)
            formula = (0.999 * first + (1 - 0.999) * wide,
                       0.999 * second + (1 - 0.999) * wide * wide)
            assert K.ema_moments_update(*fused, g, 0.999)
            K.ema_moments_update_reference(first, second, g, 0.999)
            for a, b, c in zip(fused, (first, second), formula):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(a, c)


def test_fused_moving_moments_decline_what_they_cannot_do_in_place():
    first, second = np.zeros(6), np.zeros(6)
    assert not K.ema_moments_update(first, second, np.ones(12)[::2], 0.9)   # strided g
    assert not K.ema_moments_update(first.astype(np.float32), second, np.ones(6), 0.9)
    second.setflags(write=False)
    assert not K.ema_moments_update(first, second, np.ones(6), 0.9)
    assert np.all(first == 0)
