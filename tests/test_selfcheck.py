"""The students' self-checks pass on right answers and explain wrong ones."""
import re

import numpy as np
import pytest

from minigrad.selfcheck import SelfCheckFailed, check_gradient
from minigrad.tensor import Function


class Softsign(Function):
    # y = x / (1 + |x|);  dx = g / (1 + |x|)^2
    def forward(self, x):
        return x / (1.0 + np.abs(x))

    def backward(self, g):
        (x,) = self.inputs
        return g / (1.0 + x.abs()) ** 2


class FlippedSoftsign(Softsign):
    def backward(self, g):
        return -super().backward(g)


class DoubledSoftsign(Softsign):
    def backward(self, g):
        return 2.0 * super().backward(g)


class WrongPowerSoftsign(Softsign):
    def backward(self, g):
        (x,) = self.inputs
        return g / (1.0 + x.abs())


class ArrayBackwardSoftsign(Softsign):
    """Right values, but the backward pass leaves Tensor operations: no second order."""
    def backward(self, g):
        (x,) = self.inputs
        from minigrad.tensor import Tensor
        return Tensor(g.data / (1.0 + np.abs(x.data)) ** 2)


def softsign(x):
    return Softsign.apply(x)


def test_a_right_answer_passes(capsys):
    check_gradient(softsign, (4, 3))
    check_gradient(softsign, np.array([-3.0, -0.4, 0.25, 2.0]))
    assert "softsign passes (first and second order" in capsys.readouterr().out


@pytest.mark.parametrize("cls, hint", [
    (FlippedSoftsign, "the sign is flipped"),
    (DoubledSoftsign, "twice too large"),
    (WrongPowerSoftsign, "more than a constant factor"),
])
def test_typical_wrong_answers_fail_with_a_hint(cls, hint):
    with pytest.raises(SelfCheckFailed, match=hint) as info:
        check_gradient(lambda x: cls.apply(x), (6,))
    assert "first-order check failed for input 0 at index" in str(info.value)


def test_a_backward_outside_the_graph_fails_the_second_order_check():
    check_gradient(lambda x: ArrayBackwardSoftsign.apply(x), (6,), second_order=False)
    with pytest.raises(SelfCheckFailed, match="second-order check"):
        check_gradient(lambda x: ArrayBackwardSoftsign.apply(x), (6,))


# ---------------------------------------------------------------------- check_estimator
from minigrad.estimators.score_function import bernoulli_sample, reinforce  # noqa: E402
from minigrad.selfcheck import check_estimator  # noqa: E402
from minigrad.tensor import Tensor  # noqa: E402


def my_reinforce(logits, f, u):
    b = bernoulli_sample(logits, u)
    p = 1 / (1 + np.exp(-logits.data))
    return Tensor((b - p) * f(Tensor(b)).data[:, None])


def test_check_estimator_passes_right_answers(capsys):
    check_estimator(my_reinforce)
    check_estimator(lambda a, f, u: reinforce(a, f, u, baseline=3.0))
    assert "my_reinforce is unbiased" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, f, u: -my_reinforce(a, f, u), "the sign is flipped"),
    (lambda a, f, u: 0.5 * my_reinforce(a, f, u), "half the right size"),
    (lambda a, f, u: Tensor(bernoulli_sample(a, u) * f(Tensor(bernoulli_sample(a, u))).data[:, None]),
     "is the score centred"),
])
def test_check_estimator_explains_typical_wrong_answers(wrong, hint):
    with pytest.raises(SelfCheckFailed, match="is biased: for example") as info:
        check_estimator(wrong)
    assert hint in str(info.value)


def test_check_estimator_recognises_a_baseline_that_peeks_at_the_sample():
    def peeking(logits, f, u):
        return reinforce(logits, f, u, baseline=3.0 * bernoulli_sample(logits, u))

    with pytest.raises(SelfCheckFailed, match="is biased: for example") as info:
        check_estimator(peeking)
    message = str(info.value)
    assert "depends on the unit's own sample b" in message
    k = float(re.search(r"the bias is ([-+0-9.e]+) p \(1 - p\)", message).group(1))
    assert abs(k + 3) < 0.1   # c = 3 b adds -3 p (1 - p)


def test_check_estimator_says_when_the_shape_is_wrong():
    with pytest.raises(SelfCheckFailed, match="returned shape"):
        check_estimator(lambda a, f, u: Tensor(np.zeros(a.shape[0])))
