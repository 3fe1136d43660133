"""Tests of minigrad.kernels: each Numba kernel against its NumPy twin, the gradients against
finite differences, the max-pool tie rule, the error messages, the pure-Python path
(NUMBA_DISABLE_JIT=1) and the on-disk compilation cache (NUMBA_CACHE_DIR)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import kernels as K
from minigrad.gradcheck import finite_difference_tolerance

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=25, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


def tolerance(dtype) -> dict[str, float]:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


@st.composite
def conv_cases(draw):
    """(x, w, b, stride, padding) with the kernel always fitting the padded input."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), kh + 5))
    w = draw(st.integers(max(1, kw - 2 * padding), kw + 5))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if draw(st.booleans()) else None
    return x, wt, b, stride, padding


@st.composite
def pool_cases(draw):
    size = draw(st.integers(1, 4))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    oh, ow = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, oh * size, ow * size)).astype(dtype)
    if draw(st.booleans()):
        x = np.maximum(x, 0)  # as after a ReLU: windows full of tied zeros
    return x, size


@contextlib.contextmanager
def block_bytes(value: int | None):
    """Run the conv kernels with im2col blocks of about ``value`` bytes (None: the default;
    1: one sample per block, so that the block loop runs several times)."""
    old = K._BLOCK_BYTES
    K._BLOCK_BYTES = old if value is None else value
    try:
        yield
    finally:
        K._BLOCK_BYTES = old


BLOCKS = st.sampled_from([None, 1])


# ---------------------------------------------------------------------- kernels vs twins
@FAST
@given(case=conv_cases())
def test_im2col_and_col2im_match_reference(case):
    x, w, _, stride, padding = case
    kh, kw = w.shape[2:]
    cols = K.im2col(x, kh, kw, stride, padding)
    np.testing.assert_array_equal(cols, K.im2col_reference(x, kh, kw, stride, padding))
    grad = np.random.default_rng(0).standard_normal(cols.shape).astype(x.dtype)
    dx = K.col2im(grad, x.shape, kh, kw, stride, padding)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(
        dx, K.col2im_reference(grad, x.shape, kh, kw, stride, padding), **tolerance(x.dtype)
    )


@FAST
@given(case=conv_cases())
def test_col2im_is_the_adjoint_of_im2col(case):
    x, w, _, stride, padding = case
    x = x.astype(np.float64)
    kh, kw = w.shape[2:]
    cols = K.im2col(x, kh, kw, stride, padding)
    c = np.random.default_rng(1).standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, K.col2im(c, x.shape, kh, kw, stride, padding))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@FAST
@given(case=conv_cases(), blocks=BLOCKS)
def test_conv2d_forward_matches_reference(case, blocks):
    x, w, b, stride, padding = case
    with block_bytes(blocks):
        out, _ = K.conv2d_forward(x, w, b, stride, padding)
    ref, _ = K.conv2d_forward_reference(x, w, b, stride, padding)
    assert out.dtype == ref.dtype == x.dtype
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, **tolerance(x.dtype))


@FAST
@given(case=conv_cases(), blocks=BLOCKS)
def test_conv2d_backward_matches_reference(case, blocks):
    x, w, b, stride, padding = case
    out, saved = K.conv2d_forward(x, w, b, stride, padding)
    _, saved_ref = K.conv2d_forward_reference(x, w, b, stride, padding)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(x.dtype)
    with block_bytes(blocks):
        got = K.conv2d_backward(g, x.shape, saved, w, stride, padding)
        no_dx = K.conv2d_backward(g, x.shape, saved, w, stride, padding, need_dx=False)
    want = K.conv2d_backward_reference(g, x.shape, saved_ref, w, stride, padding)
    for name, a, r, shape in zip(("dx", "dw", "db"), got, want, (x.shape, w.shape, w.shape[:1])):
        assert a.shape == r.shape == shape, name
        assert a.dtype == r.dtype == x.dtype, name
        np.testing.assert_allclose(a, r, **tolerance(x.dtype), err_msg=name)
    assert no_dx[0] is None
    np.testing.assert_array_equal(no_dx[1], got[1])
    np.testing.assert_array_equal(no_dx[2], got[2])


@FAST
@given(case=pool_cases())
def test_maxpool2d_matches_reference(case):
    x, size = case
    out, argmax = K.maxpool2d_forward(x, size)
    ref, argmax_ref = K.maxpool2d_forward_reference(x, size)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    g = np.random.default_rng(3).standard_normal(out.shape).astype(x.dtype)
    dx = K.maxpool2d_backward(g, argmax, x.shape, size)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(dx, K.maxpool2d_backward_reference(g, argmax_ref, x.shape, size))


def test_kernels_accept_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 6, 3, 2)).transpose(3, 2, 1, 0)  # (2, 3, 6, 6), not contiguous
    w = rng.standard_normal((3, 3, 2, 4)).transpose(3, 0, 1, 2)[:, :, ::-1, :]  # (4, 3, 3, 2)
    out, saved = K.conv2d_forward(x, w, None, 1, 1)
    ref, saved_ref = K.conv2d_forward_reference(x, w, None, 1, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape[::-1]).T  # Fortran-ordered gradient
    for a, r in zip(
        K.conv2d_backward(g, x.shape, saved, w, 1, 1),
        K.conv2d_backward_reference(g, x.shape, saved_ref, w, 1, 1),
    ):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    pooled, argmax = K.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(pooled, K.maxpool2d_forward_reference(x, 2)[0])


# ---------------------------------------------------------------------- gradients, independently
def numerical_gradient(loss, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``loss()`` with respect to every entry of ``a``."""
    grad = np.empty_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = loss()
        step = a[i]
        a[i] = old - eps
        down = loss()
        step -= a[i]  # the step actually taken: old + eps is rounded when |old| is large
        a[i] = old
        grad[i] = (up - down) / step
    return grad


def assert_matches_finite_differences(analytic, numeric, magnitude: float, err_msg=""):
    """Absolute tolerance from the step and the size ``sum |terms|`` of the loss, not |loss|."""
    atol = finite_difference_tolerance(magnitude, eps=1e-6, dtype=np.float64)
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=atol, err_msg=err_msg)


@pytest.mark.parametrize("blocks", [None, 1], ids=["one-block", "block-per-sample"])
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (3, 2)])
def test_conv2d_gradients_match_finite_differences(stride, padding, blocks):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 6, 5))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    out, saved = K.conv2d_forward(x, w, b, stride, padding)
    g = rng.standard_normal(out.shape)

    def loss():  # L = <conv(x, w) + b, g>, so dL/dout = g
        return np.vdot(K.conv2d_forward(x, w, b, stride, padding)[0], g)

    # Each output is a sum of products x * w plus b; the loss sums those times g.
    magnitude = np.vdot(
        K.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), stride, padding)[0], np.abs(g))
    with block_bytes(blocks):
        dx, dw, db = K.conv2d_backward(g, x.shape, saved, w, stride, padding)
    assert_matches_finite_differences(dx, numerical_gradient(loss, x), magnitude, "dx")
    assert_matches_finite_differences(dw, numerical_gradient(loss, w), magnitude, "dw")
    assert_matches_finite_differences(db, numerical_gradient(loss, b), magnitude, "db")


@pytest.mark.parametrize("size", [1, 2, 3])
def test_maxpool2d_gradient_matches_finite_differences(size):
    rng = np.random.default_rng(6)
    # Distinct values 1/144 apart, so a 1e-6 step never changes which entry is the max, and of
    # order one, so the loss is too (unscaled, it is about 1,400 and its rounding error divided
    # by the step is about 1e-7).
    n = 2 * 2 * 6 * 6
    x = rng.permutation(n).reshape(2, 2, 6, 6).astype(np.float64) / n
    out, argmax = K.maxpool2d_forward(x, size)
    g = rng.standard_normal(out.shape)

    def loss():
        return np.vdot(K.maxpool2d_forward(x, size)[0], g)

    dx = K.maxpool2d_backward(g, argmax, x.shape, size)
    magnitude = np.vdot(np.abs(out), np.abs(g))
    assert_matches_finite_differences(dx, numerical_gradient(loss, x), magnitude)


# ---------------------------------------------------------------------- max-pool tie rule
@pytest.mark.parametrize(
    "forward,backward",
    [
        (K.maxpool2d_forward, K.maxpool2d_backward),
        (K.maxpool2d_forward_reference, K.maxpool2d_backward_reference),
    ],
    ids=["numba", "reference"],
)
def test_maxpool2d_ties_send_the_gradient_to_the_first_maximum(forward, backward):
    x = np.array(
        [
            [3.0, 3.0, 0.0, 5.0],
            [3.0, 3.0, 1.0, 5.0],
            [0.0, 0.0, 2.0, 7.0],
            [0.0, 0.0, 7.0, 7.0],
        ]
    ).reshape(1, 1, 4, 4)
    out, argmax = forward(x, 2)
    np.testing.assert_array_equal(out[0, 0], [[3.0, 5.0], [0.0, 7.0]])
    dx = backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), argmax, x.shape, 2)
    want = np.array(
        [
            [10.0, 0.0, 0.0, 20.0],  # all four 3s tie: the top-left one; 5s: the upper one
            [0.0, 0.0, 0.0, 0.0],
            [30.0, 0.0, 0.0, 40.0],  # all zeros tie: the top-left; 7s: the top-right
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(dx[0, 0], want)
    assert dx.sum() == 100.0  # each window's gradient goes to exactly one entry


def test_maxpool2d_first_nan_wins_like_argmax():
    x = np.array([[1.0, np.nan], [np.nan, 9.0]]).reshape(1, 1, 2, 2)
    out, argmax = K.maxpool2d_forward(x, 2)
    ref, argmax_ref = K.maxpool2d_forward_reference(x, 2)
    assert np.isnan(out).all() and np.isnan(ref).all()
    assert argmax.item() == argmax_ref.item() == 1


# ---------------------------------------------------------------------- errors
def conv_args(**kw):
    args = {
        "x": np.zeros((2, 3, 8, 8)),
        "w": np.zeros((4, 3, 3, 3)),
        "b": np.zeros(4),
        "stride": 1,
        "padding": 0,
    }
    args.update(kw)
    return args


@pytest.mark.parametrize("forward", [K.conv2d_forward, K.conv2d_forward_reference])
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"x": np.zeros((3, 8, 8))}, r"x must be 4-D \(N, C, H, W\); got shape \(3, 8, 8\)"),
        ({"w": np.zeros((4, 3, 3))}, r"w must be 4-D \(F, C, KH, KW\); got shape \(4, 3, 3\)"),
        (
            {"w": np.zeros((4, 2, 3, 3))},
            r"x has 3 channels \(x shape \(2, 3, 8, 8\)\) but w expects 2 "
            r"\(w shape \(4, 2, 3, 3\)\)",
        ),
        ({"b": np.zeros(3)}, r"b must have shape \(F,\) = \(4,\); got \(3,\)"),
        ({"stride": 0}, r"stride must be a positive integer; got 0"),
        ({"stride": 1.5}, r"stride must be a positive integer; got 1\.5"),
        ({"padding": -1}, r"padding must be a non-negative integer; got -1"),
        (
            {"w": np.zeros((4, 3, 9, 3))},
            r"kernel 9x3 does not fit the padded input 8x8 "
            r"\(x shape \(2, 3, 8, 8\), padding 0\)",
        ),
        ({"x": np.zeros((2, 3, 8, 8), dtype=complex)}, r"real float32 or float64.*complex128"),
    ],
)
def test_conv2d_forward_errors(forward, kwargs, message):
    with pytest.raises(ValueError, match=message):
        forward(**conv_args(**kwargs))


@pytest.mark.parametrize(
    "forward,backward",
    [
        (K.conv2d_forward, K.conv2d_backward),
        (K.conv2d_forward_reference, K.conv2d_backward_reference),
    ],
)
def test_conv2d_backward_errors(forward, backward):
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    out, saved = forward(x, w, None)
    with pytest.raises(
        ValueError,
        match=r"grad_out has shape \(2, 4, 5, 6\) but the forward output has shape \(2, 4, 6, 6\)",
    ):
        backward(np.zeros((2, 4, 5, 6)), x.shape, saved, w)
    with pytest.raises(ValueError, match=r"cols must be .* returned by conv2d_forward.*\(1,\)"):
        backward(out, x.shape, np.zeros(1), w)
    with pytest.raises(ValueError, match=r"x has 3 channels .* but w expects 2"):
        backward(out, x.shape, saved, np.zeros((4, 2, 3, 3)))


@pytest.mark.parametrize("forward", [K.maxpool2d_forward, K.maxpool2d_forward_reference])
def test_maxpool2d_forward_errors(forward):
    with pytest.raises(
        ValueError, match=r"H and W of x shape \(1, 2, 5, 4\) must be divisible by size 2"
    ):
        forward(np.zeros((1, 2, 5, 4)), 2)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\); got shape \(4, 4\)"):
        forward(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match=r"size must be a positive integer; got 0"):
        forward(np.zeros((1, 1, 4, 4)), 0)


@pytest.mark.parametrize("backward", [K.maxpool2d_backward, K.maxpool2d_backward_reference])
def test_maxpool2d_backward_errors(backward):
    g, argmax = np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2), dtype=np.int64)
    with pytest.raises(
        ValueError,
        match=r"grad_out \(1, 2, 2, 2\) and argmax \(1, 2, 2, 3\) must both have the pooled "
        r"shape \(1, 2, 2, 2\) of x shape \(1, 2, 4, 4\) with size 2",
    ):
        backward(g, np.zeros((1, 2, 2, 3), dtype=np.int64), (1, 2, 4, 4), 2)
    with pytest.raises(ValueError, match=r"must both have the pooled shape \(1, 2, 3, 3\)"):
        backward(g, argmax, (1, 2, 6, 6), 2)


# ---------------------------------------------------------------------- subprocesses
def run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pure_python_path_matches_reference():
    code = """
        import numpy as np
        from minigrad import kernels as K

        assert not hasattr(K.im2col, "py_func"), "Numba was not disabled"
        K._BLOCK_BYTES = 1  # exercise the block loop too
        rng = np.random.default_rng(0)
        for dtype, stride, padding in [(np.float64, 1, 0), (np.float32, 2, 1)]:
            x = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
            w = rng.standard_normal((4, 2, 3, 2)).astype(dtype)
            b = rng.standard_normal(4).astype(dtype)
            out, saved = K.conv2d_forward(x, w, b, stride, padding)
            ref, saved_ref = K.conv2d_forward_reference(x, w, b, stride, padding)
            assert out.dtype == dtype
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
            g = rng.standard_normal(out.shape).astype(dtype)
            for a, r in zip(K.conv2d_backward(g, x.shape, saved, w, stride, padding),
                            K.conv2d_backward_reference(g, x.shape, saved_ref, w, stride,
                                                        padding)):
                assert a.dtype == dtype
                np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)
            p = np.maximum(rng.standard_normal((2, 3, 4, 6)), 0).astype(dtype)
            pooled, argmax = K.maxpool2d_forward(p, 2)
            pooled_ref, argmax_ref = K.maxpool2d_forward_reference(p, 2)
            np.testing.assert_array_equal(pooled, pooled_ref)
            np.testing.assert_array_equal(argmax, argmax_ref)
            gp = rng.standard_normal(pooled.shape).astype(dtype)
            np.testing.assert_array_equal(
                K.maxpool2d_backward(gp, argmax, p.shape, 2),
                K.maxpool2d_backward_reference(gp, argmax_ref, p.shape, 2),
            )
        print("pure python ok")
    """
    result = run_python(code, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert "pure python ok" in result.stdout


def test_numba_cache_dir_is_honoured(tmp_path):
    code = """
        import numpy as np
        from minigrad import kernels as K

        assert hasattr(K.im2col, "py_func"), "Numba is disabled"
        out, argmax = K.maxpool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)
        assert out.ravel().tolist() == [5.0, 7.0, 13.0, 15.0]
        print("compiled")
    """
    result = run_python(code, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DISABLE_JIT="0")
    assert result.returncode == 0, result.stderr
    assert "compiled" in result.stdout
    assert list(tmp_path.rglob("*_maxpool_forward*.nbi")), sorted(tmp_path.rglob("*"))
    assert list(tmp_path.rglob("*_maxpool_forward*.nbc")), sorted(tmp_path.rglob("*"))
