"""Tests of minigrad.gradcheck itself: the tolerance is derived from the step, the dtype and
the size of the function; it covers the rounding error of a central difference whatever
order a sum is taken in; and it is still tight enough to reject wrong backward passes."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.gradcheck import (
    SAFETY,
    GradcheckError,
    finite_difference_tolerance,
    gradcheck,
    gradgradcheck,
)
from minigrad.tensor import Tensor


def test_tolerance_is_rounding_plus_truncation_times_the_safety_factor():
    u = np.finfo(np.float64).eps / 2
    expected = SAFETY * (u * 1400.0 / 1e-6 + 1e-12 * 1400.0 / 6)
    assert finite_difference_tolerance(1400.0, eps=1e-6) == pytest.approx(expected, rel=1e-12)
    # Linear in the size; float32's unit roundoff is 2**29 times float64's.
    assert finite_difference_tolerance(2.0) == pytest.approx(2 * finite_difference_tolerance(1.0))
    u32 = np.finfo(np.float32).eps / 2
    assert finite_difference_tolerance(1.0, 1e-3, np.float32) == pytest.approx(
        SAFETY * (u32 / 1e-3 + 1e-6 / 6))


@pytest.mark.parametrize("magnitude, eps, message", [
    (-1.0, 1e-6, "magnitude must be a finite number >= 0, got -1.0"),
    (math.nan, 1e-6, "magnitude must be a finite number >= 0, got nan"),
    (1.0, 0.0, "eps must be a finite number > 0, got 0.0"),
])
def test_tolerance_rejects_bad_arguments(magnitude, eps, message):
    with pytest.raises(ValueError, match=message):
        finite_difference_tolerance(magnitude, eps)


def test_tolerance_covers_any_summation_order():
    """The failure this tolerance replaces: a loss of about 1,400 summed from 144 products,
    differenced with eps = 1e-6. Summing in another order (as another BLAS kernel does) moves
    the loss by a rounding step or two, i.e. the central difference by about 1e-7. Every
    order tried must stay 10x inside the tolerance."""
    rng = np.random.default_rng(0)
    x = rng.permutation(144).astype(np.float64)
    g = rng.standard_normal(144)
    eps = 1e-6
    atol = finite_difference_tolerance(float(np.sum(np.abs(x * g))), eps)
    worst = 0.0
    for trial in range(200):
        i = trial % 144
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        order_up, order_down = rng.permutation(144), rng.permutation(144)
        f_up = sum((up * g)[order_up].tolist())            # left to right, in a random order
        f_down = float(np.sum((down * g)[order_down]))     # pairwise, in another
        numeric = (f_up - f_down) / (up[i] - down[i])
        worst = max(worst, abs(numeric - g[i]))
    assert worst > 1e-9, "degenerate: no rounding error was provoked"
    assert worst < atol / 10


# ---------------------------------------------------------------------- wrong backward passes
class Cube(mg.Function):
    # y = x^3 + x;  dx = g * (3 x^2 + 1)
    scale, sign, extra = 3.0, 1.0, 1.0

    def forward(self, x):
        return x ** 3 + x

    def backward(self, g):
        (x,) = self.inputs
        return self.sign * g * (self.scale * x * x + self.extra)


class WrongFactor(Cube):
    scale = 2.0


class WrongSign(Cube):
    sign = -1.0


class MissingTerm(Cube):
    extra = 0.0


class SlightlyWrong(Cube):
    # Off by 1e-6 relative: far inside gradcheck's former rtol of 1e-4, far outside its
    # derived tolerance of about 1e-8 here.
    scale = 3.0 * (1 + 1e-6)


POINTS = np.array([-1.3, -0.4, 0.6, 1.1])


def test_the_correct_backward_passes():
    x = Tensor(POINTS.copy(), requires_grad=True)
    assert gradcheck(lambda t: Cube.apply(t), [x])
    assert gradgradcheck(lambda t: Cube.apply(t), [x])


@pytest.mark.parametrize("wrong", [WrongFactor, WrongSign, MissingTerm, SlightlyWrong])
@pytest.mark.parametrize("elementwise", [True, False], ids=["elementwise", "directions"])
def test_gradcheck_rejects_a_wrong_backward(wrong, elementwise):
    x = Tensor(POINTS.copy(), requires_grad=True)
    with pytest.raises(GradcheckError, match="gradient check failed for"):
        gradcheck(lambda t: wrong.apply(t), [x], elementwise=elementwise)


class DetachedFactor(Cube):
    # First derivative right; one factor x is cut from the graph, so the second derivative
    # misses a term (3x instead of 6x).
    def backward(self, g):
        (x,) = self.inputs
        return g * (3.0 * x.detach() * x + 1.0)


def test_gradgradcheck_rejects_a_backward_with_a_missing_second_order_term():
    x = Tensor(POINTS.copy(), requires_grad=True)
    assert gradcheck(lambda t: DetachedFactor.apply(t), [x])
    with pytest.raises(GradcheckError, match="gradient check failed for"):
        gradgradcheck(lambda t: DetachedFactor.apply(t), [x])


def test_gradcheck_holds_for_inputs_far_from_zero():
    """x + eps is rounded when |x| is large; dividing by the step actually taken keeps the
    central difference exact for a linear function, so the derived tolerance still holds."""
    x = Tensor(np.array([1e4 + 0.1, -3e4 - 0.7]), requires_grad=True)
    assert gradcheck(lambda t: t * 0.5 + 1.0, [x])
