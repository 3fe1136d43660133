"""The Tensor and the backward pass: accumulation, graph shapes, grad modes, the functional
``grad`` (including higher-order gradients) and the error messages users see."""
from __future__ import annotations

import re

import numpy as np
import pytest

import minigrad.tensor as tensor_module
from minigrad import functions as F
from minigrad.gradcheck import finite_difference_tolerance
from minigrad.tensor import Tensor, enable_grad, grad, is_grad_enabled, no_grad


@pytest.fixture(autouse=True)
def restore_grad_mode():
    """Grad mode is global: a test that leaves it disabled must not break the next ones."""
    assert is_grad_enabled(), "grad mode was disabled before the test started"
    yield
    # Set the flag directly: the context managers are what some tests here are checking.
    tensor_module._grad_enabled = True


def leaf(values, dtype=np.float64):
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------------- accumulation
def test_backward_twice_on_the_same_graph_accumulates():
    x = leaf([1.0, 2.0, 3.0])
    y = F.sum(x * 3.0)
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0, 3.0])
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [6.0, 6.0, 6.0])


def test_backward_on_two_graphs_accumulates_into_the_same_leaf():
    x = leaf([1.0, -2.0])
    F.sum(x * x).backward()
    F.sum(x * 10.0).backward()
    np.testing.assert_array_equal(x.grad.data, 2 * x.data + 10.0)


def test_zero_grad_resets_accumulation():
    x = leaf([1.0, 2.0])
    F.sum(x).backward()
    x.zero_grad()
    assert x.grad is None
    F.sum(x * 2.0).backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 2.0])


def test_accumulated_gradients_of_two_leaves_stay_independent():
    """a + b hands the same incoming gradient to both; accumulating must not alias them."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    F.sum(a + b).backward()
    F.sum(a * 5.0).backward()
    np.testing.assert_array_equal(a.grad.data, [6.0, 6.0])
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])


def test_value_used_twice_gets_the_sum_of_both_paths():
    x = leaf([1.5, -2.0])
    F.sum(x * x).backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data, rtol=1e-15)


def test_diamond_graph_sums_both_branches():
    # x -> a = 2x and b = x^2 -> y = a * b = 2x^3, so dy/dx = 6x^2.
    x = leaf([0.5, -1.0, 2.0])
    a = x * 2.0
    b = x ** 2
    F.sum(a * b).backward()
    np.testing.assert_allclose(x.grad.data, 6 * x.data ** 2, rtol=1e-14)


def test_diamond_with_shared_intermediate_node():
    # h = exp(x) feeds two branches that meet again: y = h*h + 3h, dy/dx = (2h + 3) h.
    x = leaf([0.1, -0.4])
    h = F.exp(x)
    y = F.sum(h * h + h * 3.0)
    y.backward()
    hv = np.exp(x.data)
    np.testing.assert_allclose(x.grad.data, (2 * hv + 3) * hv, rtol=1e-14)


def test_deep_chain_backpropagates_without_recursion_error():
    """5,000 ops, far beyond Python's recursion limit: the topological sort is iterative."""
    depth = 5000
    x = leaf([1.0])
    y = x
    for _ in range(depth):
        y = y * 1.0001
    y = F.sum(y)
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.data, [1.0001 ** depth], rtol=1e-10)
    (g,) = grad(y, x)
    np.testing.assert_allclose(g.data, [1.0001 ** depth], rtol=1e-10)


def test_deep_chain_double_backward_without_recursion_error():
    depth = 2000
    x = leaf([0.3])
    y = x
    for _ in range(depth):
        y = y + x * 0.001
    (g,) = grad(F.sum(y * y), x, create_graph=True)
    (h,) = grad(g, x)
    # y = (1 + depth/1000) x = 3x, so sum(y^2) = 9x^2: first derivative 18x, second 18.
    np.testing.assert_allclose(g.data, [18 * 0.3], rtol=1e-10)
    np.testing.assert_allclose(h.data, [18.0], rtol=1e-10)


# ---------------------------------------------------------------------- grad modes
def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0 + 1.0
    assert is_grad_enabled()
    assert y.requires_grad is False
    assert y.is_leaf


def test_no_grad_as_decorator():
    x = leaf([1.0, 2.0])

    @no_grad()
    def double(t):
        assert not is_grad_enabled()
        return t * 2.0

    y = double(x)
    assert y.requires_grad is False
    assert is_grad_enabled()
    assert (x * 2.0).requires_grad is True


def test_no_grad_decorator_is_reentrant():
    """A no_grad-decorated function that calls itself must restore grad mode on return."""

    @no_grad()
    def countdown(n):
        assert not is_grad_enabled()
        if n > 0:
            countdown(n - 1)

    countdown(2)
    assert is_grad_enabled(), "grad mode stayed disabled after a recursive no_grad call"


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = leaf([1.0, 2.0])
    with no_grad():
        with enable_grad():
            assert is_grad_enabled()
            y = x * 3.0
        assert not is_grad_enabled()
        z = x * 3.0
    assert y.requires_grad is True and z.requires_grad is False
    F.sum(y).backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])


def test_enable_grad_as_decorator_inside_no_grad():
    @enable_grad()
    def f(t):
        return t * 2.0

    x = leaf([1.0])
    with no_grad():
        y = f(x)
    assert y.requires_grad is True


def test_detach_blocks_the_gradient():
    x = leaf([2.0, -3.0])
    d = x.detach()
    assert d.requires_grad is False and d.is_leaf
    np.testing.assert_array_equal(d.data, x.data)
    # y = x * stop_gradient(x): dy/dx = x, not 2x.
    F.sum(x * d).backward()
    np.testing.assert_array_equal(x.grad.data, x.data)


def test_operations_on_constants_do_not_require_grad():
    a = Tensor(np.ones(3))
    assert (a * 2.0 + a).requires_grad is False


# ---------------------------------------------------------------------- backward(gradient=...)
def test_backward_with_gradient_equals_hand_vjp():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4))
    x = leaf(rng.standard_normal(4))
    v = rng.standard_normal(3)
    y = F.tanh(Tensor(w) @ x)  # (3,)
    y.backward(gradient=Tensor(v))
    # J = diag(1 - y^2) W, so v^T J = ((1 - y^2) * v) @ W.
    expected = ((1 - np.tanh(w @ x.data) ** 2) * v) @ w
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-13)


def test_backward_with_gradient_as_ndarray_on_a_matrix_output():
    rng = np.random.default_rng(1)
    a = leaf(rng.standard_normal((2, 3)))
    b = leaf(rng.standard_normal((3, 2)))
    v = rng.standard_normal((2, 2))
    (a @ b).backward(v)
    np.testing.assert_allclose(a.grad.data, v @ b.data.T, rtol=1e-13)
    np.testing.assert_allclose(b.grad.data, a.data.T @ v, rtol=1e-13)


# ---------------------------------------------------------------------- functional grad
def test_grad_returns_a_tuple_and_leaves_dot_grad_untouched():
    x, y = leaf([1.0, 2.0]), leaf([3.0])
    out = F.sum(x * x) * y
    result = grad(out, [x, y])
    assert isinstance(result, tuple) and len(result) == 2
    np.testing.assert_array_equal(result[0].data, 2 * x.data * 3.0)
    np.testing.assert_array_equal(result[1].data, [5.0])
    assert x.grad is None and y.grad is None
    # Also untouched when .grad already holds something.
    F.sum(x).backward()
    before = x.grad
    grad(F.sum(x * 7.0), x)
    assert x.grad is before
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])


def test_grad_single_tensor_input_returns_one_element_tuple():
    x = leaf([2.0])
    result = grad(F.sum(x ** 3), x)
    assert isinstance(result, tuple) and len(result) == 1
    np.testing.assert_allclose(result[0].data, [12.0], rtol=1e-15)


def test_grad_with_respect_to_an_intermediate_tensor():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    out = F.sum(h * h)
    (gh,) = grad(out, h)
    np.testing.assert_allclose(gh.data, 2 * h.data, rtol=1e-15)


def test_grad_allow_unused_returns_none():
    x, unused = leaf([1.0]), leaf([2.0])
    gx, gu = grad(F.sum(x * 2.0), [x, unused], allow_unused=True)
    np.testing.assert_array_equal(gx.data, [2.0])
    assert gu is None


def test_grad_of_several_outputs_with_grad_outputs():
    x = leaf([1.0, 2.0])
    y1, y2 = x * 2.0, x * x
    (g,) = grad([y1, y2], x, grad_outputs=[np.array([1.0, 1.0]), np.array([10.0, 100.0])])
    np.testing.assert_allclose(g.data, [2.0 + 10.0 * 2.0, 2.0 + 100.0 * 4.0], rtol=1e-15)


def test_second_derivative_of_cube_is_six_x():
    x = leaf([-1.5, 0.5, 2.0])
    (g,) = grad(F.sum(x ** 3), x, create_graph=True)
    assert g.requires_grad
    np.testing.assert_allclose(g.data, 3 * x.data ** 2, rtol=1e-14)
    (h,) = grad(F.sum(g), x)
    np.testing.assert_allclose(h.data, 6 * x.data, rtol=1e-14)


def test_third_derivative_of_cube_is_six():
    x = leaf([0.7, -2.0])
    (g,) = grad(F.sum(x ** 3), x, create_graph=True)
    (h,) = grad(F.sum(g), x, create_graph=True)
    (k,) = grad(F.sum(h), x)
    np.testing.assert_allclose(k.data, [6.0, 6.0], rtol=1e-14)


def test_grad_without_create_graph_gives_constant_gradients():
    x = leaf([1.0, 2.0])
    (g,) = grad(F.sum(x ** 3), x)
    assert g.requires_grad is False


def _mlp_loss(params, x, targets):
    w1, b1, w2, b2 = params
    h = F.tanh(x @ w1 + b1)
    return F.softmax_cross_entropy(h @ w2 + b2, targets)


def test_hessian_vector_product_of_mlp_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((4, 3)))
    targets = Tensor(np.eye(2)[rng.integers(0, 2, size=4)])
    arrays = [rng.standard_normal((3, 5)), rng.standard_normal(5) * 0.1,
              rng.standard_normal((5, 2)), rng.standard_normal(2) * 0.1]
    vs = [rng.standard_normal(a.shape) for a in arrays]
    # A unit direction: the truncation error along v grows like |v|^3.
    norm = np.sqrt(sum(np.sum(v * v) for v in vs))
    vs = [v / norm for v in vs]

    params = [leaf(a) for a in arrays]
    grads = grad(_mlp_loss(params, x, targets), params, create_graph=True)
    dot = F.sum(F.stack([F.sum(g * Tensor(v)) for g, v in zip(grads, vs)]))
    hvp = grad(dot, params)

    def gradient_at(step):
        ps = [leaf(a + step * v) for a, v in zip(arrays, vs)]
        return [g.data for g in grad(_mlp_loss(ps, x, targets), ps)]

    # Central differences of the gradient along v, whose entries are computed from numbers
    # of order one (a mean cross-entropy of unit-scale data): tolerance from h and that size.
    h = 1e-5
    plus, minus = gradient_at(h), gradient_at(-h)
    for i, (hv, gp, gm) in enumerate(zip(hvp, plus, minus)):
        magnitude = max(1.0, np.abs(gp).max(), np.abs(gm).max())
        atol = finite_difference_tolerance(magnitude, eps=h)
        np.testing.assert_allclose(hv.data, (gp - gm) / (2 * h), rtol=0, atol=atol,
                                   err_msg=f"Hessian-vector product, parameter {i}")


def test_gradient_of_gradient_variance_wrt_temperature_matches_finite_differences():
    """REBAR/RELAX: d/dt of mean(g(t)^2) where g(t) = d f(x, t) / dx itself is a gradient.

    f is a relaxed (Gumbel-softmax) sample scored by a fixed function: softmax((x + gumbel)
    / t) . c, summed over a small batch.
    """
    rng = np.random.default_rng(7)
    x_data = rng.standard_normal((3, 4))
    gumbel = Tensor(-np.log(-np.log(rng.uniform(size=(3, 4)))))
    c = Tensor(rng.standard_normal((3, 4)))

    def variance_proxy(t, create_graph):
        x = leaf(x_data)
        relaxed = F.softmax((x + gumbel) / t, axis=1)
        f = F.sum(relaxed * c) + F.sum(F.log_sigmoid(x * t))
        (g,) = grad(f, x, create_graph=create_graph)
        return F.mean(g ** 2)

    t = leaf(0.7)
    (dv_dt,) = grad(variance_proxy(t, create_graph=True), t)

    h = 1e-5
    plus = variance_proxy(Tensor(0.7 + h), create_graph=False).item()
    minus = variance_proxy(Tensor(0.7 - h), create_graph=False).item()
    atol = finite_difference_tolerance(max(1.0, abs(plus), abs(minus)), eps=h)
    np.testing.assert_allclose(dv_dt.item(), (plus - minus) / (2 * h), rtol=0, atol=atol)
    assert abs(dv_dt.item()) > 1e-3, "degenerate check: the derivative is ~0"


# ---------------------------------------------------------------------- clear errors
def test_add_of_mismatched_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(5,)")):
        Tensor(np.zeros((3, 4))) + Tensor(np.zeros(5))


@pytest.mark.parametrize("op", ["sub", "mul", "div", "pow", "where"])
def test_other_binary_ops_with_mismatched_shapes_name_both_shapes(op):
    a, b = Tensor(np.ones((3, 4))), Tensor(np.ones(5))
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(5,)")):
        if op == "where":
            F.where(np.ones((3, 4), dtype=bool), a, b)
        else:
            getattr(F, op)(a, b)


def test_matmul_of_unaligned_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(5, 6)")):
        Tensor(np.zeros((3, 4))) @ Tensor(np.zeros((5, 6)))


def test_matmul_with_mismatched_batch_dims_names_both_shapes():
    with pytest.raises(ValueError,
                       match=re.escape("(2, 3, 4)") + ".*" + re.escape("(3, 4, 5)")):
        Tensor(np.zeros((2, 3, 4))) @ Tensor(np.zeros((3, 4, 5)))


def test_concatenate_of_mismatched_shapes_names_all_shapes():
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(2, 4)")):
        F.concatenate([Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 4)))], axis=0)


def test_reshape_to_incompatible_shape_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(5,)")):
        Tensor(np.zeros((3, 4))).reshape(5)


def test_broadcast_to_incompatible_shape_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(2, 3)")):
        F.broadcast_to(Tensor(np.zeros((3, 4))), (2, 3))


def test_broadcast_to_a_shape_with_fewer_dimensions_names_both_shapes():
    """(3, 4) is broadcast-compatible with (4,) but cannot be broadcast *to* it."""
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(4,)")):
        F.broadcast_to(Tensor(np.zeros((3, 4))), (4,))


def test_transpose_with_bad_axes_is_a_clear_error():
    with pytest.raises(ValueError, match="not a permutation"):
        Tensor(np.zeros((2, 3))).transpose(0, 0)


def test_backward_on_non_scalar_without_gradient():
    y = leaf([1.0, 2.0, 3.0]) * 2.0
    with pytest.raises(RuntimeError, match=re.escape("non-scalar tensor of shape (3,)")):
        y.backward()


def test_backward_with_gradient_of_wrong_shape_names_both_shapes():
    y = leaf([1.0, 2.0, 3.0]) * 2.0
    with pytest.raises(ValueError,
                       match=re.escape("gradient has shape (2,)") + ".*" + re.escape("(3,)")):
        y.backward(np.ones(2))


def test_grad_with_grad_outputs_of_wrong_shape_names_both_shapes():
    x = leaf([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=re.escape("(3, 1)") + ".*" + re.escape("(3,)")):
        grad(x * 2.0, x, grad_outputs=np.ones((3, 1)))


def test_grad_of_non_scalar_output_without_grad_outputs():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="not a scalar"):
        grad(x * 2.0, x)


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="integer or boolean"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="integer or boolean"):
        Tensor(np.array([True, False]), requires_grad=True)
    with pytest.raises(TypeError, match="integer or boolean"):
        Tensor(np.arange(3)).requires_grad_()


def test_grad_with_respect_to_an_integer_tensor_is_a_type_error():
    x = leaf([1.0, 2.0, 3.0])
    ints = Tensor(np.arange(3))
    out = F.sum(x * 2.0)
    with pytest.raises(TypeError, match="integer or boolean"):
        grad(out, [ints])
    with pytest.raises(TypeError, match="integer or boolean"):
        grad(out, [x, ints])


def test_backward_on_tensor_that_does_not_require_grad():
    y = Tensor(np.array(3.0)) * 2.0
    with pytest.raises(RuntimeError, match="does not require gradients"):
        y.backward()


def test_backward_on_tensor_computed_under_no_grad():
    x = leaf([1.0])
    with no_grad():
        y = F.sum(x * 2.0)
    with pytest.raises(RuntimeError, match="does not require gradients"):
        y.backward()


def test_grad_of_unused_input_without_allow_unused():
    x, unused = leaf([1.0]), leaf([2.0, 3.0])
    with pytest.raises(RuntimeError,
                       match=r"do not depend on an input of shape \(2,\).*allow_unused"):
        grad(F.sum(x * 2.0), [x, unused])


def test_grad_with_an_input_that_does_not_require_grad():
    x = leaf([1.0])
    c = Tensor(np.array([2.0]))
    with pytest.raises(RuntimeError, match="does not require gradients"):
        grad(F.sum(x * c), [c])


def test_grad_with_mismatched_number_of_grad_outputs():
    x = leaf([1.0])
    with pytest.raises(ValueError, match="1 outputs but 2 grad_outputs"):
        grad([x * 2.0], x, grad_outputs=[np.ones(1), np.ones(1)])


# ---------------------------------------------------------------------- small Tensor API
def test_tensor_basic_properties():
    t = Tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.dtype == np.float64
    assert t.numpy() is t.data
    assert Tensor(np.array(2.5)).item() == 2.5
    assert "requires_grad=True" in repr(leaf([1.0]))
    assert Tensor(t).data is t.data
    assert Tensor([1.0, 2.0], dtype=np.float32).dtype == np.float32


def test_numpy_array_on_the_left_defers_to_tensor():
    x = leaf([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, Tensor)
    F.sum(y).backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])
