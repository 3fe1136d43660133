"""The array form of backward (``backward_arrays``, used when no graph is recorded) against the
Tensor form (``backward``, used with ``create_graph=True``): the same numbers, bit for bit, for
every Function that has both; the fused Linear and softmax cross-entropy against the ops they
replace; and second derivatives of the fused ops, which only the Tensor form gives."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import minigrad as mg
from minigrad import functions as F
from minigrad import nn, optim
from minigrad.gradcheck import gradcheck, gradgradcheck
from minigrad.tensor import Function, Tensor, grad


def _leaf(rng, shape, positive=False):
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    return Tensor(x, requires_grad=True)


# name -> (function of the inputs, input shapes, inputs positive?)
CASES = {
    "Add": (lambda a, b: a + b, [(3, 4), (4,)], False),
    "Sub": (lambda a, b: a - b, [(3, 1), (3, 4)], False),
    "Mul": (lambda a, b: a * b, [(3, 4), (1, 4)], False),
    "Div": (lambda a, b: a / b, [(3, 4), (4,)], True),
    "PowConst": (lambda a: a ** 3.5 + a ** 2 + a ** 0, [(3, 4)], True),
    "Neg": (lambda a: -a, [(3, 4)], False),
    "Exp": (lambda a: F.exp(a), [(3, 4)], False),
    "Log": (lambda a: F.log(a), [(3, 4)], True),
    "Sigmoid": (lambda a: F.sigmoid(a), [(3, 4)], False),
    "Tanh": (lambda a: F.tanh(a), [(3, 4)], False),
    "ReLU": (lambda a: F.relu(a), [(3, 4)], False),
    "Softplus": (lambda a: F.softplus(a), [(3, 4)], False),
    "LogSigmoid": (lambda a: F.log_sigmoid(a), [(3, 4)], False),
    "Cast": (lambda a: F.cast(a, np.float32) * 1.5, [(3, 4)], False),
    "MatMul": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)], False),
    "Linear": (lambda x, w, b: F.linear(x, w, b), [(5, 3), (3, 4), (4,)], False),
    "Sum": (lambda a: a.sum(axis=1) * a.sum(axis=(0, 1), keepdims=True), [(3, 4, 2)], False),
    "BroadcastTo": (lambda a: F.broadcast_to(a, (3, 2, 4)), [(2, 1)], False),
    "Reshape": (lambda a: a.reshape(6, 2), [(3, 4)], False),
    "Transpose": (lambda a: a.transpose(2, 0, 1) * a.T.T.transpose(2, 0, 1), [(3, 4, 2)],
                  False),
    "GetItem": (lambda a: a[[0, 2, 0], 1:] * a[1, 1:], [(3, 4)], False),
    "IndexAdd": (lambda a: a[[0, 0, 1]][:, 1:], [(3, 4)], False),
    "Where": (lambda a, b: F.where(np.array([True, False, True, True]), a, b), [(3, 4), (4,)],
              False),
    "BernoulliLogLikelihood": (lambda b, a: F.bernoulli_log_likelihood(b, a), [(3, 4), (3, 4)],
                               False),
    "RelaxedSigmoid": (lambda z, t: F.relaxed_sigmoid(z, t), [(3, 4), (4,)], True),
    "ConditionalLogistic": (
        lambda a: F.conditional_logistic(a * 3.0, np.tile([1.0, 0.0], 6).reshape(3, 4),
                                         np.linspace(0.02, 0.98, 12).reshape(3, 4)),
        [(3, 4)], False),
    "LogSoftmax": (lambda a: F.log_softmax(a, axis=0), [(3, 4)], False),
    "Softmax": (lambda a: F.softmax(a, axis=1), [(3, 4)], False),
    "SoftmaxCrossEntropy": (
        lambda z, t: F.softmax_cross_entropy(z, F.softmax(t), reduction="none")
        + F.softmax_cross_entropy(z * 2.0, F.softmax(t), reduction="mean")
        + F.softmax_cross_entropy(z, F.softmax(t), reduction="sum"),
        [(5, 3), (5, 3)], False),
}


def _gradients_both_ways(name, seed=0):
    fn, shapes, positive = CASES[name]
    rng = np.random.default_rng(seed)
    xs = [_leaf(rng, s, positive) for s in shapes]
    out = fn(*xs)
    u = rng.standard_normal(out.shape)
    out.backward(u)  # no graph of the backward pass: backward_arrays
    on_arrays = [x.grad.data for x in xs]
    out = fn(*xs)
    # A seed that requires gradients: every result is then part of a recorded graph.
    on_tensors = grad(out, xs, grad_outputs=Tensor(u, requires_grad=True), create_graph=True)
    assert all(g.requires_grad for g in on_tensors)  # the Tensor form really ran
    return on_arrays, [g.data for g in on_tensors]


@pytest.mark.parametrize("name", sorted(CASES))
def test_array_and_tensor_backward_give_identical_gradients(name):
    on_arrays, on_tensors = _gradients_both_ways(name)
    for a, t in zip(on_arrays, on_tensors):
        assert a.dtype == t.dtype and a.shape == t.shape
        np.testing.assert_array_equal(a, t)


def test_every_function_with_an_array_backward_is_covered_above():
    with_arrays = {
        name for name, cls in inspect.getmembers(F, inspect.isclass)
        if issubclass(cls, Function) and cls.backward_arrays is not None
        and cls.differentiable_backward
    }
    assert with_arrays, "no Function defines backward_arrays"
    assert with_arrays <= set(CASES), sorted(with_arrays - set(CASES))


def test_a_broken_array_backward_is_caught(monkeypatch):
    # The comparison above can fail: an array form that forgets a factor is noticed.
    monkeypatch.setattr(F.Sigmoid, "backward_arrays",
                        lambda self, g: g * self.output.data)
    on_arrays, on_tensors = _gradients_both_ways("Sigmoid")
    assert not np.array_equal(on_arrays[0], on_tensors[0])


def test_array_backward_does_not_write_into_the_incoming_gradient():
    # Add hands one gradient array to both of its inputs; an in-place backward of one of
    # them would corrupt the other's.
    rng = np.random.default_rng(1)
    x = _leaf(rng, (4, 3))
    y = F.sigmoid(x)
    z = F.tanh(x)
    out = y + z
    u = rng.standard_normal(out.shape)
    out.backward(u)
    y_ = 1 / (1 + np.exp(-x.data))
    expected = u * y_ * (1 - y_) + u * (1 - np.tanh(x.data) ** 2)
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-12)


def test_a_function_without_an_array_backward_still_works_without_a_graph():
    class Square(Function):
        """y = x^2;  dx = 2 x g (Tensor form only)."""

        def forward(self, x):
            return x * x

        def backward(self, g):
            return g * (2.0 * self.inputs[0])

    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (Square.apply(x) * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, 6.0 * x.data)


def test_a_backward_pass_without_create_graph_builds_no_tensor_ops(monkeypatch):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(6, 5, rng), nn.Sigmoid(), nn.Linear(5, 3, rng))
    x = Tensor(rng.random((4, 6), dtype=np.float32))
    t = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    loss = F.softmax_cross_entropy(model(x), Tensor(t))
    calls = []
    original = Function.apply.__func__

    def counting(cls, *inputs, **params):
        calls.append(cls.__name__)
        return original(cls, *inputs, **params)

    monkeypatch.setattr(Function, "apply", classmethod(counting))
    loss.backward()
    assert calls == []
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------- fused ops
@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_equals_matmul_plus_bias(bias):
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((5, 3)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True) if bias else None
    y = F.linear(x, w, b)
    assert type(y._ctx).__name__ == "Linear"
    u = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(u)
    fused = [t.grad.data.copy() for t in (x, w, b) if t is not None]
    for t in (x, w, b):
        if t is not None:
            t.grad = None
    ref = x @ w
    if bias:
        ref = ref + b
    np.testing.assert_array_equal(y.data, ref.data)
    ref.backward(u)
    for got, t in zip(fused, [t for t in (x, w, b) if t is not None]):
        np.testing.assert_array_equal(got, t.grad.data)


def test_linear_layer_on_a_batch_of_sequences_uses_the_general_ops():
    rng = np.random.default_rng(3)
    layer = nn.Linear(3, 2, rng, dtype=np.float64)
    x = Tensor(rng.standard_normal((4, 5, 3)), requires_grad=True)
    y = layer(x)
    assert y.shape == (4, 5, 2) and type(y._ctx).__name__ != "Linear"
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), [x, layer.weight, layer.bias])


def test_fused_linear_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(4)
    xs = [_leaf(rng, (4, 3)), _leaf(rng, (3, 2)), _leaf(rng, (2,))]
    assert gradcheck(lambda x, w, b: F.sigmoid(F.linear(x, w, b)), xs)
    assert gradgradcheck(lambda x, w, b: F.sigmoid(F.linear(x, w, b)), xs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_cross_entropy_gradgradcheck(reduction):
    rng = np.random.default_rng(5)
    z = _leaf(rng, (4, 3))
    t = _leaf(rng, (4, 3))
    fn = lambda z, t: F.softmax_cross_entropy(z, F.softmax(t), reduction=reduction)  # noqa
    assert gradcheck(fn, [z, t])
    assert gradgradcheck(fn, [z, t])


def test_cross_entropy_probabilities_are_dropped_after_backward():
    rng = np.random.default_rng(6)
    z = _leaf(rng, (4, 3))
    loss = F.softmax_cross_entropy(z, np.array([0, 1, 2, 0]))
    ctx = loss._ctx
    assert ctx.probs is not None
    loss.backward()
    assert ctx.probs is None and ctx.log_probs is None


def test_mlp_training_step_is_the_same_on_both_paths():
    # Three SGD steps with .backward() (arrays) and with grad(create_graph=True) (Tensors).
    def run(tensor_form):
        rng = np.random.default_rng(7)
        model = nn.Sequential(nn.Linear(6, 5, rng), nn.Sigmoid(), nn.Linear(5, 3, rng))
        opt = optim.SGD(model.parameters(), lr=0.5)
        x = Tensor(rng.random((4, 6), dtype=np.float32))
        t = Tensor(np.eye(3, dtype=np.float32)[[0, 1, 2, 1]])
        for _ in range(3):
            loss = F.softmax_cross_entropy(model(x), t)
            opt.zero_grad()
            if tensor_form:
                gs = grad(loss, model.parameters(), create_graph=True)
                for p, g in zip(model.parameters(), gs):
                    p.grad = g.detach()
            else:
                loss.backward()
            opt.step()
        return [p.data for p in model.parameters()]

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_public_linear_is_exported():
    assert mg.functions.linear is F.linear


# ---------------------------------------------------------------------- optimizers in place
def test_optimizers_update_in_place_with_the_plain_expressions_arithmetic():
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    grads = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(4)]
    p_sgd, p_adam = Tensor(w0.copy(), requires_grad=True), Tensor(w0.copy(), requires_grad=True)
    sgd, adam = optim.SGD([p_sgd], lr=0.1), optim.Adam([p_adam], lr=0.01)
    data_sgd, data_adam = p_sgd.data, p_adam.data
    ref_sgd, ref_adam = w0.copy(), w0.copy()
    m, v = np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        p_sgd.grad, p_adam.grad = Tensor(g.copy()), Tensor(g.copy())
        sgd.step()
        adam.step()
        ref_sgd = ref_sgd - 0.1 * g
        m = 0.9 * m + (1 - 0.9) * g
        v = 0.999 * v + (1 - 0.999) * (g * g)
        step = float(0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t))
        eps_hat = float(1e-8 * np.sqrt(1 - 0.999 ** t))
        ref_adam = ref_adam - step * m / (np.sqrt(v) + eps_hat)
        np.testing.assert_array_equal(p_sgd.data, ref_sgd)
        np.testing.assert_allclose(p_adam.data, ref_adam, rtol=2e-6, atol=0)
        np.testing.assert_array_equal(p_sgd.grad.data, g)  # the gradient is left alone
    assert p_sgd.data is data_sgd and p_adam.data is data_adam  # updated in place


def test_linear_locks_what_its_backward_reads_and_only_that():
    rng = np.random.default_rng(9)
    layer = nn.Linear(3, 2, rng)
    x = Tensor(rng.random((4, 3), dtype=np.float32))
    loss = layer(x).sum()
    for array in (x.data, layer.weight.data):  # read by dW = x^T g and dx = g W^T
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
    layer.bias.data[0] = 5.0  # b is not read by the backward pass: no lock, no harm
    loss.backward()
    np.testing.assert_array_equal(layer.bias.grad.data, [4.0, 4.0])
    x.data[0] = 1.0  # unlocked again


# ---------------------------------------------------------------------- sigmoid's forward
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_within_two_eps_of_the_exact_value_and_quiet_at_the_extremes(dtype):
    x = np.linspace(-800, 800, 400001).astype(dtype)
    exact = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # no warning escapes
        y = F.sigmoid(Tensor(x)).data
    assert y.dtype == dtype
    normal = exact >= np.finfo(dtype).tiny
    rel = np.abs(y[normal] - exact[normal]) / exact[normal]
    assert rel.max() <= 2 * np.finfo(dtype).eps
    assert np.all(np.abs(y[~normal] - exact[~normal]) < np.finfo(dtype).tiny)
    assert y[0] == 0 and y[-1] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_and_log_sigmoid_are_within_two_eps_and_never_overflow(dtype):
    x = np.linspace(-800, 800, 400001).astype(dtype)
    exact = np.logaddexp(np.longdouble(0), x.astype(np.longdouble))
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        softplus = F.softplus(Tensor(x)).data
        log_sigmoid = F.log_sigmoid(Tensor(-x)).data
    assert softplus.dtype == log_sigmoid.dtype == dtype
    normal = exact >= np.finfo(dtype).tiny
    for y, sign in ((softplus, 1), (log_sigmoid, -1)):
        rel = np.abs(sign * y[normal] - exact[normal]) / exact[normal]
        assert rel.max() <= 2 * np.finfo(dtype).eps
        assert np.all(np.abs(sign * y[~normal] - exact[~normal]) < np.finfo(dtype).tiny)
    assert F.softplus(Tensor(np.array(0.0))).item() == pytest.approx(np.log(2.0))


@pytest.mark.parametrize("name", ["Add", "Sub", "Mul", "Div", "PowConst", "Neg", "Exp",
                                  "Log", "Sigmoid", "Tanh", "ReLU", "Softplus", "LogSigmoid",
                                  "Cast"])
def test_array_and_tensor_backward_agree_on_single_numbers(name):
    # 0-d arrays: NumPy returns scalars from their arithmetic, which in-place code must survive.
    fn, shapes, positive = CASES[name]
    rng = np.random.default_rng(3)
    xs = [_leaf(rng, (), positive) for _ in shapes]
    fn(*xs).backward()
    on_tensors = grad(fn(*xs), xs, create_graph=True)
    for x, t in zip(xs, on_tensors):
        assert x.grad.shape == () and x.grad.dtype == x.dtype
        np.testing.assert_array_equal(x.grad.data, t.data)


def test_a_subclass_that_overrides_backward_alone_keeps_its_own_maths():
    class DoubledSigmoid(F.Sigmoid):
        """y = sigmoid(x);  dx = 2 g y (1 - y) (a subclass with a different backward)."""

        def backward(self, g):
            return super().backward(g) * 2.0

    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    DoubledSigmoid.apply(x).sum().backward()
    y = 1 / (1 + np.exp(-x.data))
    np.testing.assert_allclose(x.grad.data, 2 * y * (1 - y), rtol=1e-14)
