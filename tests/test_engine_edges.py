"""Engine edge cases, checked against what NumPy and PyTorch (float64) do.

Axis errors, Adam's per-parameter state and optimizer checkpoints, Pow at base 0, the mean of
an empty axis, in-place changes of saved values, backward through a freed graph, ownership of
the gradients handed out, and NumPy interop.
"""
import gc
import warnings

import numpy as np
import pytest

from minigrad import functions as F
from minigrad import nn, optim
from minigrad.gradcheck import gradcheck, gradgradcheck
from minigrad.tensor import Tensor, grad, no_grad


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------------- axes
def test_stack_rejects_an_axis_past_the_new_one_instead_of_wrapping():
    a, b = Tensor(np.zeros((2, 3))), Tensor(np.ones((2, 3)))
    with pytest.raises(np.exceptions.AxisError, match="stack: axis 3 is out of range"):
        F.stack([a, b], axis=3)
    with pytest.raises(np.exceptions.AxisError):
        np.stack([a.data, b.data], axis=3)  # NumPy agrees


@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2])
def test_stack_matches_numpy_on_every_valid_axis(axis):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3)) for _ in range(3)]
    out = F.stack([Tensor(x) for x in xs], axis=axis)
    np.testing.assert_array_equal(out.data, np.stack(xs, axis=axis))


@pytest.mark.parametrize("call, name", [
    (lambda t: F.concatenate([t, t], axis=2), "concatenate"),
    (lambda t: t.sum(axis=2), "sum"),
    (lambda t: t.mean(axis=-3), "mean"),
    (lambda t: t.max(axis=5), "max"),
    (lambda t: t.softmax(axis=2), "softmax"),
    (lambda t: t.log_softmax(axis=-3), "log_softmax"),
    (lambda t: t.argmax(axis=2), "argmax"),
])
def test_out_of_range_axes_raise_a_clear_axis_error(call, name):
    t = Tensor(np.zeros((2, 3)))
    with pytest.raises(np.exceptions.AxisError, match=rf"{name}: axis -?\d is out of range "
                       r"for a tensor with 2 dimensions \(valid axes are -2 to 1\)"):
        call(t)


def test_transpose_rejects_out_of_range_axes():
    with pytest.raises(ValueError, match=r"transpose: axes \(0, 2\) are not a permutation"):
        Tensor(np.zeros((2, 3))).transpose(0, 2)


# ---------------------------------------------------------------------- Adam
def test_adam_counts_steps_per_parameter():
    """b has no gradient on step 1, so its first update must be bias-corrected as step 1.

    With one count for all parameters b moved to 0.92559 on its first update; PyTorch's
    per-parameter count gives 1 - lr * g / (|g| + eps) = 0.9.
    """
    a, b = leaf([1.0]), leaf([1.0])
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = Tensor(np.array([1.0]))
    opt.step()
    np.testing.assert_allclose(b.data, [1.0])
    a.grad, b.grad = Tensor(np.array([1.0])), Tensor(np.array([1.0]))
    opt.step()
    np.testing.assert_allclose(b.data, [1.0 - 0.1 * 1.0 / (1.0 + 1e-8)], rtol=0, atol=1e-15)
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1


def _regression_problem(seed):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 5, rng, dtype=np.float64), nn.Tanh(),
                          nn.Linear(5, 3, rng, dtype=np.float64))
    x = Tensor(rng.standard_normal((8, 4)))
    target = Tensor(rng.standard_normal((8, 3)))
    return model, x, target


def _train(model, opt, x, target, steps):
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - target) ** 2).mean().backward()
        opt.step()
    return [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7),
], ids=["SGD", "Adam"])
def test_optimizer_state_dict_round_trip_resumes_bit_identically(make):
    model, x, target = _regression_problem(1)
    opt = make(model.parameters())
    _train(model, opt, x, target, steps=5)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    expected = _train(model, opt, x, target, steps=3)

    resumed, _, _ = _regression_problem(2)  # different initial values, overwritten below
    resumed.load_state_dict(saved_model)
    opt2 = optim.SGD(resumed.parameters(), lr=1.0) if isinstance(opt, optim.SGD) else \
        optim.Adam(resumed.parameters(), lr=1.0)
    opt2.load_state_dict(saved_opt)
    got = _train(resumed, opt2, x, target, steps=3)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_optimizer_state_dict_is_a_copy():
    p = leaf([1.0, 2.0])
    opt = optim.Adam([p], lr=0.1)
    p.grad = Tensor(np.array([1.0, -1.0]))
    opt.step()
    saved = opt.state_dict()
    m = saved["state"][0]["m"].copy()
    opt.step()
    np.testing.assert_array_equal(saved["state"][0]["m"], m)


def test_optimizer_load_state_dict_checks_shapes_and_type():
    p = leaf([1.0, 2.0])
    state = optim.Adam([p]).state_dict()
    with pytest.raises(ValueError, match=r"saved by 'Adam', not by SGD"):
        optim.SGD([leaf([1.0, 2.0])], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(3,\) but its saved 'm'"):
        optim.Adam([leaf([1.0, 2.0, 3.0])]).load_state_dict(state)


# ---------------------------------------------------------------------- Pow at base 0
def test_pow_gradients_at_base_zero_are_zero_as_in_pytorch():
    a = leaf([0.0, 0.0, 2.0])
    b = leaf([0.0, 2.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings either
        (a ** b).sum().backward()
    # d(a**b)/da = b a^(b-1): 0 at (0, 0) by PyTorch's convention, 0 at (0, 2), 0 at (2, 0).
    np.testing.assert_array_equal(a.grad.data, [0.0, 0.0, 0.0])
    # d(a**b)/db = a^b log a: 0 at base 0 by convention, log 2 at (2, 0).
    np.testing.assert_array_equal(b.grad.data, [0.0, 0.0, np.log(2.0)])


def test_pow_second_derivatives_at_base_zero_are_finite():
    a = leaf([0.0])
    b = leaf([2.0])
    (da,) = grad((a ** b).sum(), a, create_graph=True)
    (dda, ddb) = grad(da.sum(), [a, b])
    # d/da (b a^(b-1)) = b (b-1) a^(b-2) = 2 at a = 0, b = 2; d/db = a^(b-1) (1 + b log a)
    # is 0 * (-inf) at a = 0 and is masked to 0, as the first derivative there.
    np.testing.assert_array_equal(dda.data, [2.0])
    assert np.isfinite(ddb.data).all()


def test_pow_with_tensor_exponent_passes_gradgradcheck_including_zero_exponents():
    rng = np.random.default_rng(3)
    a = Tensor(rng.uniform(0.5, 2.0, size=(3, 2)), requires_grad=True)
    b = Tensor(np.array([[0.0, 1.5], [2.0, 0.0], [-0.5, 3.0]]), requires_grad=True)
    assert gradcheck(lambda x, y: x ** y, [a, b])
    assert gradgradcheck(lambda x, y: x ** y, [a, b])


# ---------------------------------------------------------------------- mean of nothing
def test_mean_over_an_empty_axis_is_nan_with_a_warning_like_numpy():
    x = Tensor(np.zeros((0, 3)), requires_grad=True)
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"), np.errstate(invalid="ignore"):
        expected = np.mean(x.data, axis=0)
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"):
        got = x.mean(axis=0)
    np.testing.assert_array_equal(got.data, expected)  # NaN compares equal here
    assert got.shape == (3,)
    got.sum().backward()
    assert x.grad.shape == (0, 3)


# ---------------------------------------------------------------------- in-place changes
def test_a_numpy_write_into_a_saved_array_fails_instead_of_corrupting_gradients():
    x = leaf([1.0, 2.0])
    w = leaf([3.0, 4.0])
    y = (x * w).sum()
    with pytest.raises(ValueError, match="read-only"):
        w.data[...] = 100
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])
    w.data[...] = 100  # the backward pass freed the graph, so writing is allowed again
    np.testing.assert_array_equal(w.data, [100.0, 100.0])


def test_an_optimizer_step_between_forward_and_backward_is_detected_by_name():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 2, rng), nn.Sigmoid())
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss = model(Tensor(np.ones((4, 3), dtype=np.float32))).sum()
    opt.zero_grad()
    for p in model.parameters():
        p.grad = Tensor(np.ones_like(p.data))
    opt.step()
    with pytest.raises(RuntimeError, match=r"parameter '0\.(weight|bias)' of shape \((3, 2|2,)\)"
                       r".*modified in place after the forward pass.*optimizer step.*"
                       r"Call backward\(\) before changing it"):
        loss.backward()


def test_assigning_data_after_forward_is_detected():
    w = leaf([1.0, 2.0])
    y = (w * w).sum()
    w.data = np.array([5.0, 6.0])
    with pytest.raises(RuntimeError, match=r"a tensor of shape \(2,\) and dtype float64, an "
                       r"input of Mul, was modified in place after the forward pass used it"):
        y.backward()


def test_module_load_state_dict_after_forward_is_detected():
    rng = np.random.default_rng(0)
    layer = nn.Linear(2, 2, rng, dtype=np.float64)
    state = layer.state_dict()
    out = layer(Tensor(np.ones((1, 2)))).sum()
    layer.load_state_dict(state)
    with pytest.raises(RuntimeError, match=r"parameter '(weight|bias)'.*load_state_dict"):
        out.backward()


def test_a_conv_input_changed_in_place_is_detected():
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(1, 2, 3, rng, dtype=np.float64)
    x = Tensor(rng.standard_normal((1, 1, 5, 5)), requires_grad=True)
    y = conv(x).sum()
    with pytest.raises(ValueError, match="read-only"):
        x.data[0, 0, 0, 0] = 7.0
    y.backward()
    assert x.grad.shape == x.shape


def test_normal_use_raises_nothing():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, rng), nn.ReLU(), nn.Linear(4, 2, rng))
    opt = optim.Adam(model.parameters(), lr=0.01)
    x = Tensor(rng.standard_normal((5, 3)).astype(np.float32))
    target = rng.integers(0, 2, 5)
    for _ in range(3):  # forward, backward, step
        opt.zero_grad()
        F.softmax_cross_entropy(model(x), target).backward()
        opt.step()
    with no_grad():  # a forward under no_grad locks nothing
        model(x)
    model[0].weight.data[0, 0] = 0.5
    model(x).sum()  # a graph dropped without backward ...
    gc.collect()
    model[0].weight.data[0, 0] = 0.25  # ... unlocks its arrays
    opt.step()
    # REBAR/RELAX: differentiate a function of a gradient recorded with create_graph=True.
    t = leaf([0.3, -0.2])
    (g,) = grad((t ** 3).sum(), t, create_graph=True)
    (g * g).sum().backward()
    np.testing.assert_allclose(t.grad.data, 2 * (3 * t.data ** 2) * (6 * t.data))


# ---------------------------------------------------------------------- backward twice
def test_backward_twice_through_the_same_graph_is_an_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"backward through the graph a second time.*"
                       r"Pass retain_graph=True to the first"):
        y.backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])  # not added twice


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [4.0, 8.0])
    z = (x * x).sum()
    (g1,) = grad(z, x, retain_graph=True)
    (g2,) = grad(z, x)
    np.testing.assert_array_equal(g1.data, g2.data)
    with pytest.raises(RuntimeError, match="a second time"):
        grad(z, x)


def test_grad_with_respect_to_an_intermediate_leaves_the_rest_of_the_graph():
    w = leaf([2.0])
    h = w * 3.0
    loss = (h * h).sum()
    (gh,) = grad(loss, h)
    np.testing.assert_array_equal(gh.data, [12.0])
    (h * 1.0).sum().backward()  # the graph below h was not walked, so it is not freed
    np.testing.assert_array_equal(w.grad.data, [3.0])


# ---------------------------------------------------------------------- gradients handed out
def test_leaf_gradients_are_writable_contiguous_arrays_of_their_own():
    x = leaf(np.ones(4))
    x.sum().backward()  # Sum's backward is a zero-stride broadcast view
    assert x.grad.data.flags.writeable and x.grad.data.flags.c_contiguous
    assert x.grad.data.strides == (8,)
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    seed = np.array([1.0, -1.0])
    (a + b).backward(seed)  # Add hands the same gradient to both inputs
    assert not np.shares_memory(a.grad.data, b.grad.data)
    assert not np.shares_memory(a.grad.data, seed)
    a.grad.data[0] = 99.0
    np.testing.assert_array_equal(seed, [1.0, -1.0])
    np.testing.assert_array_equal(b.grad.data, [1.0, -1.0])


def test_grad_results_are_their_own_arrays_too():
    a = leaf([1.0, 2.0])
    seed = np.array([1.0, 1.0])
    (ga,) = grad(a * 1.0, a, grad_outputs=seed)  # Mul by a constant still makes a new array
    (gb,) = grad(a + 0.0, a, grad_outputs=seed)  # Add passes the seed straight through
    assert not np.shares_memory(gb.data, seed)
    assert ga.data.flags.writeable and gb.data.flags.writeable


# ---------------------------------------------------------------------- NumPy interop
def test_numpy_ufuncs_on_a_tensor_raise_and_name_the_minigrad_function():
    t = leaf([0.0, 1.0])
    with pytest.raises(TypeError, match=r"np\.exp was called on a minigrad Tensor.*"
                       r"use minigrad\.functions\.exp instead"):
        np.exp(t)
    with pytest.raises(TypeError, match=r"np\.concatenate.*minigrad\.functions\.concatenate"):
        np.concatenate([t, t])
    with pytest.raises(TypeError, match=r"np\.absolute.*use t\.abs\(\) instead"):
        np.abs(t)


def test_asarray_gives_the_data_and_shape_questions_work():
    t = leaf([[1.0, 2.0]])
    assert np.asarray(t) is t.data
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert np.shape(t) == (1, 2) and np.ndim(t) == 2


def test_array_times_tensor_defers_to_the_tensor():
    t = leaf([1.0, 2.0])
    for y in (np.array([3.0, 4.0]) * t, np.array([3.0, 4.0]) + t, np.float64(2.0) * t):
        assert isinstance(y, Tensor) and y.requires_grad
    y = np.array([3.0, 4.0]) * t
    y.sum().backward()
    np.testing.assert_array_equal(t.grad.data, [3.0, 4.0])
    assert isinstance(np.array([1.0, 5.0]) < t, Tensor)


def test_float_int_tolist_and_argmax():
    assert float(Tensor(np.array([[2.5]]))) == 2.5
    assert int(Tensor(np.array(3.7))) == 3
    assert Tensor(np.array([1.5])).item() == 1.5
    with pytest.raises(TypeError, match=r"float\(\) of a tensor needs exactly one element, "
                       r"but this one has shape \(2,\)"):
        float(Tensor(np.array([1.0, 2.0])))
    t = leaf([[1.0, 5.0], [7.0, 2.0]])
    assert t.tolist() == [[1.0, 5.0], [7.0, 2.0]]
    assert int(t.argmax()) == 2
    am = t.argmax(axis=1)
    assert isinstance(am, Tensor) and not am.requires_grad
    np.testing.assert_array_equal(am.data, [1, 0])


def _random_graph(rng):
    """A random graph of additions, products and tanh over a few leaves (some constant)."""
    nodes = [Tensor(rng.normal(size=3), requires_grad=bool(rng.random() < 0.7))
             for _ in range(rng.integers(1, 5))]
    nodes.append(Tensor(rng.normal(size=3), requires_grad=True))
    for _ in range(rng.integers(1, 40)):
        a, b = (nodes[rng.integers(len(nodes))] for _ in range(2))
        nodes.append([a + b, a * b, a.tanh()][rng.integers(3)])
    return nodes


def _reference_order(roots):
    """The depth-first post-order the backward pass walks, written recursively: roots in
    turn, each Function's grad-requiring inputs last to first."""
    order, seen = [], set()

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        if t._ctx is not None:
            for p in reversed(t._ctx.inputs):
                if p.requires_grad:
                    visit(p)
        order.append(t)

    for r in roots:
        visit(r)
    return order


@pytest.mark.parametrize("seed", range(20))
def test_the_backward_walk_visits_each_tensor_once_inputs_first_in_a_fixed_order(seed):
    # The order decides the order in which gradients are summed, so it is part of what
    # makes a run reproducible bit for bit; it must also put every input before its uses.
    from minigrad.tensor import _toposort

    rng = np.random.default_rng(seed)
    nodes = _random_graph(rng)
    # the last three tensors that require gradients, the first of them twice
    roots = [t for t in nodes if t.requires_grad][-3:]
    roots.append(roots[0])
    order = _toposort(roots)
    assert [id(t) for t in order] == [id(t) for t in _reference_order(roots)]
    position = {id(t): i for i, t in enumerate(order)}
    assert len(position) == len(order)
    for t in order:
        if t._ctx is not None:
            for p in t._ctx.inputs:
                if p.requires_grad:
                    assert position[id(p)] < position[id(t)]
