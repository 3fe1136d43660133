"""Gradient checks of every primitive in :mod:`minigrad.functions`.

Each primitive (and each shape case of it) is its own test id. First-order gradients are
compared with central differences by :func:`minigrad.gradcheck.gradcheck` (float64, element
by element and along random directions); second-order gradients by ``gradgradcheck``, which
differentiates the gradient built with ``grad(..., create_graph=True)``. Inputs are kept
small (at most a few dozen elements) because the elementwise check costs two forward passes
per element.

gradcheck's default step (eps=1e-6) and derived tolerance are used throughout.
Inputs are drawn away from kinks (relu, abs, clip at its bounds) and from the edges of a
domain (log and sqrt of positive numbers, division by numbers away from zero), and max is
checked on well-separated values, so a finite-difference step never crosses a kink.
"""
from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import minigrad as mg
from minigrad import functions as F
from minigrad.gradcheck import gradcheck, gradgradcheck
from minigrad.tensor import Tensor, grad


# ---------------------------------------------------------------------- input factories
def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    """|x| in [0.3, 1.5]: central differences with eps=1e-6 never cross 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 1.5, shape)


def distinct(rng, shape):
    """Values at least 0.1 apart, so eps-sized steps never change which entry is the max."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.1 + rng.uniform(0, 0.01, shape)


def within_clip_interior(rng, shape):
    """Values in [-2, 2] at least 0.1 away from the clip bounds -1 and 1."""
    side = rng.integers(0, 3, size=shape)
    low = np.select([side == 0, side == 1], [-2.0, -0.9], 1.1)
    return low + rng.uniform(0, 0.8, shape)


def one_hot(rng, shape):
    n, k = shape
    out = np.zeros(shape)
    out[np.arange(n), rng.integers(0, k, size=n)] = 1.0
    return out


def soft_targets(rng, shape):
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(axis=-1, keepdims=True)


@dataclass
class In:
    """One input of a case: its shape, how to draw it, and whether it is differentiated."""

    shape: tuple
    draw: Callable = normal
    requires_grad: bool = True


@dataclass
class Case:
    fn: Callable
    inputs: list

    def make(self, seed: int):
        rng = np.random.default_rng(seed)
        return [
            Tensor(spec.draw(rng, spec.shape).astype(np.float64),
                   requires_grad=spec.requires_grad)
            for spec in self.inputs
        ]


CASES: dict[str, Case] = {}


def case(name: str, fn: Callable, *inputs: In) -> None:
    assert name not in CASES, name
    CASES[name] = Case(fn, list(inputs))


# ---------------------------------------------------------------------- binary ops
BINARY = {
    "add": (lambda a, b: a + b, normal),
    "sub": (lambda a, b: a - b, normal),
    "mul": (lambda a, b: a * b, normal),
    "div": (lambda a, b: a / b, away_from_zero),
    # tensor ** tensor: the base must be positive for the gradient w.r.t. the exponent.
    "pow": (lambda a, b: a ** b, normal),
}
BROADCAST_SHAPES = [
    ((2, 3), (2, 3)),
    ((3, 1, 4), (2, 4)),
    ((2, 4), (3, 1, 4)),
    ((4,), (3, 4)),
    ((3, 4), (4,)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((2, 1), (1, 3)),
]


def _shape_id(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


for _op, (_fn, _second) in BINARY.items():
    _first = positive if _op == "pow" else normal
    for _sa, _sb in BROADCAST_SHAPES:
        case(f"{_op}-{_shape_id(_sa)}-{_shape_id(_sb)}", _fn, In(_sa, _first), In(_sb, _second))
    # Only one side differentiated: covers the needs_input_grad=False branches.
    case(f"{_op}-const-right", _fn, In((2, 3), _first), In((3,), _second, False))
    case(f"{_op}-const-left", _fn, In((3,), _first, False), In((2, 3), _second))

case("add-number", lambda a: a + 1.5, In((2, 3)))
case("radd-number", lambda a: 1.5 + a, In((2, 3)))
case("rsub-number", lambda a: 1.5 - a, In((2, 3)))
case("rmul-number", lambda a: 2.5 * a, In((2, 3)))
case("rdiv-number", lambda a: 2.0 / a, In((2, 3), away_from_zero))
case("neg", lambda a: -a, In((2, 3)))
case("pow-tensor-number-2", lambda a: a ** 2, In((2, 3)))
case("pow-tensor-number-3", lambda a: a ** 3, In((2, 3)))
case("pow-tensor-number-int-neg", lambda a: a ** -2, In((2, 3), positive))
case("pow-tensor-number-half", lambda a: a ** 0.5, In((2, 3), positive))
case("pow-tensor-number-frac", lambda a: a ** -1.5, In((2, 3), positive))
case("pow-number-tensor", lambda a: 2.0 ** a, In((2, 3)))
case("pow-number-tensor-int-base", lambda a: 3 ** a, In((2, 3)))

# ---------------------------------------------------------------------- unary ops
case("exp", F.exp, In((2, 3)))
case("log", F.log, In((2, 3), positive))
case("sigmoid", F.sigmoid, In((2, 3)))
case("tanh", F.tanh, In((2, 3)))
case("relu", F.relu, In((2, 3), away_from_zero))
case("softplus", F.softplus, In((2, 3)))
case("log_sigmoid", F.log_sigmoid, In((2, 3)))
case("log_sigmoid-large", F.log_sigmoid, In((4,), lambda rng, s: np.array([-30., -20., 20., 30.])))
case("softplus-large", F.softplus, In((4,), lambda rng, s: np.array([-30., -20., 20., 30.])))
case("sigmoid-large", F.sigmoid, In((4,), lambda rng, s: np.array([-30., -20., 20., 30.])))
case("abs", F.abs, In((2, 3), away_from_zero))
case("sqrt", F.sqrt, In((2, 3), positive))
case("sqrt-method", lambda a: a.sqrt(), In((2, 3), positive))
case("clip-both", lambda a: F.clip(a, -1.0, 1.0), In((3, 4), within_clip_interior))
case("clip-low", lambda a: F.clip(a, low=-1.0), In((3, 4), within_clip_interior))
case("clip-high", lambda a: F.clip(a, high=1.0), In((3, 4), within_clip_interior))

# ---------------------------------------------------------------------- matmul
case("matmul-2d", lambda a, b: a @ b, In((3, 4)), In((4, 2)))
case("matmul-3d-same-batch", lambda a, b: a @ b, In((2, 3, 4)), In((2, 4, 2)))
case("matmul-3d-broadcast-batch", lambda a, b: a @ b, In((1, 3, 4)), In((2, 4, 2)))
case("matmul-3d-2d", lambda a, b: a @ b, In((2, 3, 4)), In((4, 2)))
case("matmul-2d-3d", lambda a, b: a @ b, In((3, 4)), In((2, 4, 2)))
case("matmul-1d-2d", lambda a, b: a @ b, In((4,)), In((4, 3)))
case("matmul-2d-1d", lambda a, b: a @ b, In((3, 4)), In((4,)))
case("matmul-3d-1d", lambda a, b: a @ b, In((2, 3, 4)), In((4,)))
case("matmul-1d-1d", lambda a, b: a @ b, In((4,)), In((4,)))
case("matmul-const-right", lambda a, b: a @ b, In((3, 4)), In((4, 2), normal, False))
case("matmul-function", F.matmul, In((3, 4)), In((4, 2)))

# ---------------------------------------------------------------------- reductions
AXES = [None, 0, 1, -1, (0, 2), (-1, 0), ()]
for _name, _fn, _draw in [("sum", F.sum, normal), ("mean", F.mean, normal),
                          ("max", F.max, distinct)]:
    for _axis in AXES:
        for _keep in (False, True):
            case(f"{_name}-axis={_axis}-keepdims={_keep}".replace(" ", ""),
                 lambda a, f=_fn, ax=_axis, k=_keep: f(a, axis=ax, keepdims=k),
                 In((2, 3, 4), _draw))
case("sum-method", lambda a: a.sum(axis=1), In((2, 3)))
case("mean-method", lambda a: a.mean(axis=0, keepdims=True), In((2, 3)))
case("max-method", lambda a: a.max(axis=-1), In((2, 3), distinct))
case("sum-scalar-input", F.sum, In(()))
case("max-scalar-input", F.max, In(()))

# ---------------------------------------------------------------------- shape ops
case("reshape-2d", lambda a: F.reshape(a, (6, 4)), In((2, 3, 4)))
case("reshape-infer", lambda a: a.reshape(4, -1), In((2, 3, 4)))
case("reshape-flat", lambda a: a.reshape(-1), In((2, 3, 4)))
case("reshape-to-scalar", lambda a: a.reshape(()), In((1, 1)))
case("transpose-default", lambda a: F.transpose(a), In((2, 3, 4)))
case("transpose-T-2d", lambda a: a.T, In((2, 3)))
case("transpose-axes-102", lambda a: F.transpose(a, (1, 0, 2)), In((2, 3, 4)))
case("transpose-axes-201", lambda a: a.transpose(2, 0, 1), In((2, 3, 4)))
case("transpose-axes-120", lambda a: a.transpose((1, 2, 0)), In((2, 3, 4)))
case("transpose-negative-axes", lambda a: F.transpose(a, (-1, 0, 1)), In((2, 3, 4)))
case("broadcast_to-row", lambda a: F.broadcast_to(a, (3, 4)), In((1, 4)))
case("broadcast_to-leading", lambda a: F.broadcast_to(a, (2, 3, 4)), In((4,)))
case("broadcast_to-middle", lambda a: F.broadcast_to(a, (2, 3, 4)), In((2, 1, 4)))
case("broadcast_to-scalar", lambda a: F.broadcast_to(a, (2, 3)), In(()))
case("unbroadcast", lambda a: F.unbroadcast(a, (3, 1)), In((2, 3, 4)))

# ---------------------------------------------------------------------- indexing
_ROWS = np.array([1, 1, 0])
_COLS = np.array([2, 2, 3])
_MASK_2D = np.array([[True, False, True, True], [False, False, True, False],
                     [True, True, False, True]])
GETITEM = {
    "int": 1,
    "negative-int": -1,
    "slices": (slice(1, None), slice(None, None, 2)),
    "reversed": slice(None, None, -1),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (slice(None), None, slice(1, 3)),
    "int-and-slice": (0, slice(1, 3)),
    "int-array-repeated": np.array([0, 0, 2, 0]),
    "list-repeated": [2, 2, 1],
    "int-arrays-pairs-repeated": (_ROWS, _COLS),
    "slice-and-int-array-repeated": (slice(None), [0, 0, 3]),
    "bool-mask-2d": _MASK_2D,
    "bool-mask-rows": np.array([True, False, True]),
    "tensor-index": Tensor(np.array([2, 0, 2])),
}
for _name, _index in GETITEM.items():
    case(f"getitem-{_name}", lambda a, i=_index: a[i], In((3, 4)))

# ---------------------------------------------------------------------- joining and where
for _axis in (0, 1, -1):
    case(f"concatenate-axis={_axis}",
         lambda a, b, c, ax=_axis: F.concatenate([a, b, c], axis=ax),
         In((2, 2, 3)), In((2, 2, 3)), In((2, 2, 3)))
case("concatenate-unequal-lengths", lambda a, b: F.concatenate([a, b], axis=1),
     In((2, 1)), In((2, 3)))
case("concatenate-with-constant", lambda a, b: F.concatenate([a, b], axis=0),
     In((2, 3)), In((1, 3), normal, False))
for _axis in (0, 1, 2, -1):
    case(f"stack-axis={_axis}", lambda a, b, c, ax=_axis: F.stack([a, b, c], axis=ax),
         In((2, 3)), In((2, 3)), In((2, 3)))
_COND = np.array([[True, False, True, False], [False, True, True, False],
                  [True, True, False, False]])
case("where-same-shape", lambda a, b: F.where(_COND, a, b), In((3, 4)), In((3, 4)))
case("where-broadcast", lambda a, b: F.where(_COND, a, b), In((1, 4)), In((3, 1)))
case("where-broadcast-cond", lambda a, b: F.where(np.array([True, False, True]), a, b),
     In((2, 3)), In(()))
case("where-number", lambda a: F.where(_COND, a, 0.0), In((3, 4)))
case("where-tensor-cond", lambda a: F.where(a > 0, a, -a), In((3, 4), away_from_zero))

# ---------------------------------------------------------------------- softmax family
for _axis in (0, 1, -1):
    case(f"log_softmax-axis={_axis}", lambda a, ax=_axis: F.log_softmax(a, axis=ax),
         In((2, 3, 4)))
    case(f"softmax-axis={_axis}", lambda a, ax=_axis: F.softmax(a, axis=ax), In((2, 3, 4)))
case("log_softmax-method", lambda a: a.log_softmax(), In((3, 4)))
case("softmax-method", lambda a: a.softmax(axis=0), In((3, 4)))
case("log_softmax-large-logits", lambda a: F.log_softmax(a * 100.0), In((2, 3)))
case("softmax_cross_entropy-one-hot", F.softmax_cross_entropy,
     In((3, 4)), In((3, 4), one_hot, False))
case("softmax_cross_entropy-soft-targets", F.softmax_cross_entropy,
     In((3, 4)), In((3, 4), soft_targets))
case("softmax_cross_entropy-large-logits", lambda a, t: F.softmax_cross_entropy(a * 50.0, t),
     In((3, 4)), In((3, 4), one_hot, False))

# ---------------------------------------------------------------------- fused for the estimators
def unit_interval(rng, shape):
    """Relaxed samples in [0.05, 0.95]."""
    return rng.uniform(0.05, 0.95, shape)


def binary(rng, shape):
    return (rng.random(shape) < 0.5).astype(float)


case("bernoulli_log_likelihood-relaxed-sample", F.bernoulli_log_likelihood,
     In((3, 4), unit_interval), In((3, 4)))
case("bernoulli_log_likelihood-hard-sample", F.bernoulli_log_likelihood,
     In((3, 4), binary, False), In((3, 4)))
case("bernoulli_log_likelihood-shared-logits", F.bernoulli_log_likelihood,
     In((3, 4), unit_interval), In((4,)))
case("bernoulli_log_likelihood-large-logits",
     lambda b, a: F.bernoulli_log_likelihood(b, a * 40.0), In((2, 3), unit_interval),
     In((2, 3)))
case("bernoulli_log_likelihood-batched", F.bernoulli_log_likelihood,
     In((2, 2, 3), unit_interval), In((2, 1, 3)))
case("relaxed_sigmoid-one-temperature", F.relaxed_sigmoid, In((3, 4)), In((), positive))
case("relaxed_sigmoid-temperature-per-unit", F.relaxed_sigmoid, In((3, 4)), In((4,), positive))
case("relaxed_sigmoid-fixed-temperature", lambda z: F.relaxed_sigmoid(z, 0.5), In((3, 4)))
case("relaxed_sigmoid-exp-log-temperature",
     lambda z, w: F.relaxed_sigmoid(z, F.exp(w)), In((2, 3)), In(()))

# the conditional sample: b and v are constants; v kept inside (0.05, 0.95) and one entry
# of each kind of unit, so that a step in a never crosses the clipping of v' or 1 - v'
_CL = np.random.default_rng(11)
_CL_B = np.tile([1.0, 0.0], 6).reshape(3, 4)
_CL_V = _CL.uniform(0.05, 0.95, (3, 4))
case("conditional_logistic", lambda a: F.conditional_logistic(a, _CL_B, _CL_V), In((3, 4)))
case("conditional_logistic-large-logits",
     lambda a: F.conditional_logistic(a * 6.0, _CL_B, _CL_V), In((3, 4)))

# ---------------------------------------------------------------------- composites
case("composite-mlp-layer",
     lambda x, w, b: F.tanh(x @ w + b).sum(axis=1) * F.sigmoid(x).mean(),
     In((3, 4)), In((4, 2)), In((2,)))
case("composite-shared-input", lambda a: a * a + F.exp(-a) / (1.0 + a * a), In((2, 3)))


CASE_PARAMS = [pytest.param(name, id=name) for name in CASES]


# ---------------------------------------------------------------------- the checks
@pytest.mark.parametrize("name", CASE_PARAMS)
def test_gradcheck(name):
    c = CASES[name]
    inputs = c.make(seed=sum(map(ord, name)))
    assert gradcheck(c.fn, inputs)


@pytest.mark.parametrize("name", CASE_PARAMS)
def test_gradgradcheck(name):
    c = CASES[name]
    inputs = c.make(seed=sum(map(ord, name)) + 1)
    assert gradgradcheck(c.fn, inputs)


def test_every_exported_primitive_has_a_gradcheck_case():
    """Guards against a primitive being exported without a gradient check."""
    exported = {
        n for n in mg.__all__
        if inspect.isfunction(getattr(mg, n)) and getattr(mg, n).__module__ == F.__name__
    }
    # cast is checked directly below (float32 rounding defeats float64 central differences).
    missing = sorted(n for n in exported - {"cast"}
                     if not any(key.split("-")[0] == n for key in CASES))
    assert not missing, f"no gradcheck case for exported primitive(s) {missing}"


# ---------------------------------------------------------------------- the checker itself
def test_gradcheck_detects_a_wrong_gradient():
    """The checks above are only worth something if gradcheck fails on a wrong backward."""

    class WrongSquare(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return g * self.inputs[0]  # should be 2 * x * g

    x = Tensor(np.random.default_rng(0).uniform(0.5, 1.5, (3,)), requires_grad=True)
    with pytest.raises(AssertionError, match="gradient check failed"):
        gradcheck(lambda t: WrongSquare.apply(t), [x])


def test_gradgradcheck_detects_a_non_differentiable_backward():
    """A backward that leaves the graph (raw arrays) gives a zero second derivative."""

    class ArraySquare(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return Tensor(2 * self.inputs[0].data * g.data)

    x = Tensor(np.random.default_rng(1).uniform(0.5, 1.5, (3,)), requires_grad=True)
    assert gradcheck(lambda t: ArraySquare.apply(t), [x])
    with pytest.raises(AssertionError, match="gradient check failed"):
        gradgradcheck(lambda t: ArraySquare.apply(t), [x])


# ---------------------------------------------------------------------- max with ties
def test_max_ties_share_the_gradient_equally_over_all_axes():
    x = Tensor(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), requires_grad=True)
    F.max(x).backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 1 / 3, 1 / 3, 0.0, 1 / 3])


@pytest.mark.parametrize("keepdims", [False, True])
def test_max_ties_share_the_gradient_equally_along_an_axis(keepdims):
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 4.0, 0.0]]),
               requires_grad=True)
    out = F.max(x, axis=1, keepdims=keepdims)
    seed = np.array([1.0, 6.0, 2.0]).reshape(out.shape)
    out.backward(seed)
    expected = np.array([[0.0, 0.5, 0.5], [2.0, 2.0, 2.0], [2.0, 0.0, 0.0]])
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-15)


# ---------------------------------------------------------------------- numerical stability
def test_log_sigmoid_softplus_sigmoid_are_finite_and_exact_for_large_inputs():
    values = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would show up as a warning
        x = Tensor(values, requires_grad=True)
        ls = F.log_sigmoid(x)
        ls.sum().backward()
        sp = F.softplus(Tensor(values))
        sg = F.sigmoid(Tensor(values))
    for name, t in [("log_sigmoid", ls), ("softplus", sp), ("sigmoid", sg)]:
        assert np.all(np.isfinite(t.data)), f"{name} not finite: {t.data}"
    assert np.all(np.isfinite(x.grad.data)), f"log_sigmoid gradient not finite: {x.grad.data}"
    # log sigmoid(x) = -log(1 + exp(-x)): -800 exactly at -800, -exp(-30) (to first order)
    # at 30; its derivative is sigmoid(-x).
    np.testing.assert_allclose(ls.data[[0, 2]], [-800.0, -np.log(2.0)], rtol=1e-15)
    np.testing.assert_allclose(ls.data[1], -30.0 - np.log1p(np.exp(-30.0)), rtol=1e-15)
    np.testing.assert_allclose(ls.data[3], -np.log1p(np.exp(-30.0)), rtol=1e-12)
    assert ls.data[4] <= 0.0 and ls.data[4] > -1e-300
    expected_grad = np.array([1.0, 1 / (1 + np.exp(-30.0)), 0.5, 1 / (1 + np.exp(30.0)), 0.0])
    np.testing.assert_allclose(x.grad.data, expected_grad, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(sp.data, [0.0, np.log1p(np.exp(-30.0)), np.log(2.0),
                                         30.0 + np.log1p(np.exp(-30.0)), 800.0], rtol=1e-12)
    np.testing.assert_allclose(sg.data, [0.0, 1 / (1 + np.exp(30.0)), 0.5,
                                         1 / (1 + np.exp(-30.0)), 1.0], rtol=1e-12)


def test_log_softmax_is_finite_for_huge_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    y = F.log_softmax(x)
    y.sum().backward()
    np.testing.assert_allclose(y.data, [[0.0, -1000.0, -2000.0]], rtol=1e-15)
    # d/dx sum(log_softmax(x)) = 1 - K * softmax(x) = [1 - 3, 1, 1]
    np.testing.assert_allclose(x.grad.data, [[-2.0, 1.0, 1.0]], rtol=1e-15)


# ---------------------------------------------------------------------- cast
@pytest.mark.parametrize("src, dst", [(np.float64, np.float32), (np.float32, np.float64)])
def test_cast_gradient_has_the_input_dtype_and_values(src, dst):
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((2, 3)).astype(src), requires_grad=True)
    w = rng.standard_normal((2, 3)).astype(dst)
    y = F.cast(x, dst)
    assert y.dtype == dst
    np.testing.assert_array_equal(y.data, x.data.astype(dst))
    (y * Tensor(w)).sum().backward()
    assert x.grad.dtype == src, f"gradient dtype {x.grad.dtype}, expected {np.dtype(src)}"
    np.testing.assert_array_equal(x.grad.data, w.astype(src))


def test_cast_method_and_same_dtype_is_identity():
    x = Tensor(np.ones(3), requires_grad=True)
    assert F.cast(x, np.float64) is x
    assert x.astype(np.float32).dtype == np.float32


def test_cast_second_derivative_through_float32():
    x = Tensor(np.array([0.5, -1.25, 2.0]), requires_grad=True)
    (g,) = grad(F.sum(F.cast(x, np.float32) ** 3), x, create_graph=True)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g.data, 3 * x.data ** 2, rtol=1e-6)
    (h,) = grad(F.sum(g), x)
    assert h.dtype == np.float64
    np.testing.assert_allclose(h.data, 6 * x.data, rtol=1e-6)


def test_cast_of_grad_requiring_tensor_to_int_is_a_type_error():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="cannot cast a tensor that requires gradients"):
        F.cast(x, np.int64)


# ---------------------------------------------------------------------- power edge cases
def test_pow_zero_exponent_has_zero_gradient_at_zero():
    """d/dx x**0 = 0 everywhere (PyTorch agrees); computing 0 * x**-1 gives nan at x = 0."""
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0],
                                  err_msg="gradient of x**0 must be 0, also at x = 0")


# ---------------------------------------------------------------------- comparisons
COMPARISONS = [
    ("lt", F.lt, np.less, lambda a, b: a < b),
    ("le", F.le, np.less_equal, lambda a, b: a <= b),
    ("gt", F.gt, np.greater, lambda a, b: a > b),
    ("ge", F.ge, np.greater_equal, lambda a, b: a >= b),
    ("eq", F.eq, np.equal, lambda a, b: a == b),
    ("ne", F.ne, np.not_equal, lambda a, b: a != b),
]


@pytest.mark.parametrize("name, fn, ref, op", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_return_boolean_tensors_without_gradient(name, fn, ref, op):
    a_data = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b_data = np.array([2.0, 2.0, 2.0])
    a = Tensor(a_data, requires_grad=True)
    b = Tensor(b_data, requires_grad=True)
    for out, expected in [(fn(a, b), ref(a_data, b_data)),
                          (op(a, b), ref(a_data, b_data)),
                          (op(a, 2.0), ref(a_data, 2.0)),
                          (fn(2, a), ref(2, a_data))]:
        assert isinstance(out, Tensor)
        assert out.dtype == np.bool_, f"{name} gave dtype {out.dtype}"
        assert out.requires_grad is False
        assert out.is_leaf
        np.testing.assert_array_equal(out.data, expected)


def test_comparison_with_mismatched_shapes_names_both():
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(5,)")):
        Tensor(np.zeros((3, 4))) < Tensor(np.zeros(5))


def test_tensor_truth_value_follows_its_data():
    """`if x > 0:` must branch on the value (like NumPy), not on the tensor's length."""
    assert bool(Tensor(np.array([-1.0])) > 0) is False
    assert bool(Tensor(np.array(2.0)) > 0) is True
    assert bool(Tensor(np.array(-2.0)) > 0) is False
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor(np.array([1.0, -1.0])) > 0)


# ---------------------------------------------------------------------- float32 stays float32
FLOAT32_OPS = {
    "mul-number": lambda x: x * 2.0,
    "rmul-number": lambda x: 2.0 * x,
    "add-int": lambda x: x + 1,
    "radd-int": lambda x: 1 + x,
    "rsub-number": lambda x: 1.0 - x,
    "div-number": lambda x: x / 3.0,
    "rdiv-number": lambda x: 3.0 / x,
    "pow-2": lambda x: x ** 2,
    "pow-half": lambda x: x ** 0.5,
    "rpow": lambda x: 2.0 ** x,
    "pow-float32-tensor": lambda x: x ** Tensor(np.full(x.shape, 1.5, np.float32)),
    "neg": lambda x: -x,
    "exp": F.exp,
    "log": F.log,
    "sqrt": F.sqrt,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "relu": F.relu,
    "softplus": F.softplus,
    "log_sigmoid": F.log_sigmoid,
    "abs": F.abs,
    "clip": lambda x: F.clip(x, 0.6, 1.2),
    "sum": lambda x: F.sum(x, axis=0),
    "mean": F.mean,
    "max": lambda x: F.max(x, axis=1),
    "matmul": lambda x: x @ Tensor(np.ones((3, 2), np.float32)),
    "reshape": lambda x: x.reshape(-1),
    "transpose": lambda x: x.T,
    "getitem": lambda x: x[[0, 0, 1]],
    "concatenate": lambda x: F.concatenate([x, x], axis=1),
    "stack": lambda x: F.stack([x, x]),
    "where": lambda x: F.where(x.data > 1.0, x, 0.0),
    "broadcast_to": lambda x: F.broadcast_to(x, (4, 2, 3)),
    "softmax": F.softmax,
    "log_softmax": F.log_softmax,
    "softmax_cross_entropy": lambda x: F.softmax_cross_entropy(
        x, Tensor(np.eye(2, 3, dtype=np.float32))),
}


@pytest.mark.parametrize("name", list(FLOAT32_OPS))
def test_float32_stays_float32(name):
    x = Tensor(np.random.default_rng(4).uniform(0.5, 1.5, (2, 3)).astype(np.float32),
               requires_grad=True)
    y = FLOAT32_OPS[name](x)
    assert y.dtype == np.float32, f"{name}: output dtype {y.dtype}"
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32, f"{name}: gradient dtype {x.grad.dtype}"


def test_float32_second_derivative_stays_float32():
    x = Tensor(np.array([0.5, 1.5], np.float32), requires_grad=True)
    (g,) = grad(F.sum(F.sigmoid(x * 2.0) + x ** 3), x, create_graph=True)
    (h,) = grad(F.sum(g), x)
    assert g.dtype == np.float32 and h.dtype == np.float32


@pytest.mark.parametrize("name", ["mul-float64-array", "softmax_cross_entropy-float64-targets"])
def test_gradient_of_float32_leaf_is_float32_even_next_to_float64_constants(name):
    """A leaf's gradient has the leaf's dtype (as in PyTorch), whatever the constants were.

    One-hot targets built by NumPy are float64 by default, so this is the common case of a
    float32 model trained with float64 labels.
    """
    x = Tensor(np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]], np.float32), requires_grad=True)
    if name == "mul-float64-array":
        loss = F.sum(x * np.full((2, 3), 0.5))
    else:
        loss = F.softmax_cross_entropy(x, np.eye(2, 3))
    loss.backward()
    assert x.grad.dtype == np.float32, f"{name}: float32 leaf got a {x.grad.dtype} gradient"


# ---------------------------------------------------------------------- kernels (first order)
def _conv_inputs(seed, x_shape=(1, 1, 4, 4), w_shape=(1, 1, 2, 2)):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = Tensor(rng.standard_normal(w_shape), requires_grad=True)
    b = Tensor(rng.standard_normal(w_shape[:1]), requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 0), (1, 1), (2, 1)])
def test_conv2d_gradcheck(stride, padding):
    x, w, b = _conv_inputs(10 + 3 * stride + padding)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])


def test_conv2d_gradcheck_several_channels_and_filters():
    x, w, b = _conv_inputs(11, x_shape=(2, 2, 3, 3), w_shape=(2, 2, 2, 2))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b), [x, w, b])


def test_max_pool2d_gradcheck():
    rng = np.random.default_rng(12)
    x = Tensor(distinct(rng, (1, 2, 4, 4)), requires_grad=True)
    assert gradcheck(lambda x: F.max_pool2d(x, 2), [x])


def test_conv2d_then_ordinary_ops_gradcheck():
    x, w, b = _conv_inputs(13)
    assert gradcheck(lambda x, w, b: F.tanh(F.conv2d(x, w, b)).sum() * 0.5, [x, w, b])


@pytest.mark.parametrize("kernel", ["conv2d", "max_pool2d"])
def test_double_backward_through_a_kernel_is_a_clear_error(kernel):
    x, w, b = _conv_inputs(14)
    out = F.conv2d(x, w, b) if kernel == "conv2d" else F.max_pool2d(x, 2)
    loss = F.sum(out * out)
    with pytest.raises(RuntimeError, match="double backward"):
        grad(loss, x, create_graph=True)
    # First order still works on the same graph.
    (gx,) = grad(loss, x)
    assert gx.shape == x.shape


# ---------------------------------------------------------------------- fused against unfused
@pytest.mark.parametrize("create_graph", [False, True], ids=["arrays", "tensors"])
@pytest.mark.parametrize("logits_shape", [(5, 7), (7,)], ids=["per-row", "shared"])
def test_fused_bernoulli_log_likelihood_is_its_composite_bit_for_bit(create_graph,
                                                                     logits_shape):
    """The fused Function gives the values and gradients of ``b l - softplus(l)`` summed,
    in float32, to the last bit (so training runs keep their numbers), with logits from
    -90 to 90 (where softplus and sigmoid saturate), on both backward paths."""
    rng = np.random.default_rng(3)
    b_values = rng.uniform(0, 1, (5, 7)).astype(np.float32)
    l_values = (rng.standard_normal(logits_shape) * 30).astype(np.float32)
    l_values[..., :3] = [-90.0, 90.0, 0.0]
    w = Tensor(np.linspace(-1, 1, 5).astype(np.float32))
    results = []
    for fused in (True, False):
        b, lg = Tensor(b_values, requires_grad=True), Tensor(l_values, requires_grad=True)
        y = (F.bernoulli_log_likelihood(b, lg) if fused
             else (b * lg - F.softplus(lg)).sum(axis=-1))
        db, dl = grad((y * w).sum(), [b, lg], create_graph=create_graph)
        results.append((y.data, db.data, dl.data))
    for fused, unfused in zip(*results):
        assert fused.dtype == np.float32
        np.testing.assert_array_equal(fused, unfused)


def test_fused_relaxed_sigmoid_equals_its_composite_in_float32():
    rng = np.random.default_rng(4)
    z_values = (rng.standard_normal((4, 6)) * 5).astype(np.float32)
    w = Tensor(rng.standard_normal((4, 6)).astype(np.float32))
    results = []
    for fused in (True, False):
        z = Tensor(z_values, requires_grad=True)
        t = Tensor(np.float32(0.7), requires_grad=True)
        y = F.relaxed_sigmoid(z, t) if fused else F.sigmoid(z / t)
        dz, dt = grad((y * w).sum(), [z, t])
        results.append((y.data, dz.data, dt.data))
    for fused, unfused in zip(*results):
        scale = np.maximum(np.abs(unfused), 1.0)
        assert np.all(np.abs(fused - unfused) <= 8 * np.finfo(np.float32).eps * scale)


def test_fused_functions_refuse_bad_input():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        F.relaxed_sigmoid(Tensor(np.zeros(3)), 0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        F.relaxed_sigmoid(Tensor(np.zeros(3)), Tensor(np.array([1.0, -1.0, 1.0])))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        F.bernoulli_log_likelihood(Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="last axis"):
        F.bernoulli_log_likelihood(Tensor(np.array(1.0)), Tensor(np.array(0.0)))
