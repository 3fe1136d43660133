"""The students' self-checks pass on right answers and explain wrong ones."""
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
