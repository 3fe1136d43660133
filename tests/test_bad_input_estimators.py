"""Bad input to the estimators: a clear error that says what was wrong, and no damage done."""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.binary import StraightThroughNeuron
from minigrad.estimators.nary import NaryNeuron
from minigrad.estimators.onehot import GumbelSoftmaxNeuron, OneHotNeuron
from minigrad.estimators.score_function import (MovingAverageBaseline, ReinforceNeuron,
                                                VarianceAdjustingBaseline, reinforce)
from minigrad.experiments import step_loss
from minigrad.models.mlp import MLPClassifier
from minigrad.tensor import Tensor


def pre_with_nan() -> Tensor:
    a = np.random.default_rng(0).standard_normal((4, 3))
    a[1, 2] = np.nan
    return Tensor(a, requires_grad=True)


# ---------------------------------------------------------------------- NaN pre-activation
def test_nan_pre_activation_into_a_reinforce_neuron_is_an_error_not_a_zero():
    message = (r"ReinforceNeuron\(baseline=True, decay=0.95\): the pre-activation \(logits\) "
               r"contains NaN \(1 of 12 values, the first at index \(1, 2\)\); a NaN logit "
               r"has no distribution to sample from")
    with pytest.raises(ValueError, match=message):
        ReinforceNeuron()(pre_with_nan(), rng=np.random.default_rng(0), sampled=[])


def test_nan_logits_into_reinforce_is_an_error():
    with pytest.raises(ValueError, match=r"reinforce: the pre-activation \(logits\) contains"):
        reinforce(pre_with_nan(), lambda b: b.sum(axis=1), np.zeros((4, 3)))


# ---------------------------------------------------------------------- NaN loss
LOSS_MESSAGE = (r"the per-example loss contains NaN \(1 of 4 values, the first at index "
                r"\(2,\)\); REINFORCE multiplies every score by the loss")


def nan_loss() -> np.ndarray:
    return np.array([1.0, 2.0, np.nan, 0.5])


@pytest.mark.parametrize("make", [VarianceAdjustingBaseline, MovingAverageBaseline])
def test_nan_loss_leaves_a_baseline_untouched(make):
    baseline = make()
    score = np.full((4, 3), 0.5)
    baseline.update(np.array([1.0, 2.0, 3.0, 0.5]), score)
    before = {k: v.copy() for k, v in baseline.state_dict().items()}
    with pytest.raises(ValueError, match="update: " + LOSS_MESSAGE):
        baseline.update(nan_loss(), score)
    for name, value in baseline.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    assert np.all(np.isfinite(baseline.value()))


def test_nan_loss_in_a_reinforce_estimate_is_an_error():
    with pytest.raises(ValueError, match="REINFORCE: " + LOSS_MESSAGE):
        reinforce(Tensor(np.zeros((4, 3))), lambda b: Tensor(nan_loss()), np.zeros((4, 3)))


def test_a_training_step_with_a_nan_loss_stops_before_the_baseline_moves():
    model = MLPClassifier([5, 3, 2], lambda: ReinforceNeuron(baseline=True), rng=0)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    y = np.eye(2)[[0, 1, 0, 1]]
    step_loss(model, x, y, rng=np.random.default_rng(2))      # one good step
    model.linear1.bias.data[0] = np.nan                       # every loss is now NaN
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"the per-example loss contains NaN \(4 of 4 values"):
        step_loss(model, x, y, rng=np.random.default_rng(3))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    assert np.all(np.isfinite(model.neurons[0].baseline.value()))


# ---------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value", [2, 2.0, np.float32(2.0), np.float64(2.0), np.int64(2),
                                   np.array(2.0)])
def test_any_real_scalar_is_accepted_where_a_number_is_expected(value):
    assert StraightThroughNeuron("sigmoid_adjusted", slope=value, anneal_rate=value).slope == 2
    assert NaryNeuron("staircase", slope=value).slope == 2
    assert OneHotNeuron(3, temperature=value, anneal_rate=value).temperature == 2
    assert GumbelSoftmaxNeuron(3, temperature=value).temperature == 2


@pytest.mark.parametrize("value, error, message", [
    (True, TypeError, "slope must be a real number, got bool True"),
    (np.bool_(True), TypeError, "slope must be a real number, got bool"),
    ("2", TypeError, "slope must be a real number, got str '2'"),
    (np.nan, ValueError, "slope must be a finite number > 0, got nan"),
    (np.inf, ValueError, "slope must be a finite number > 0, got inf"),
    (-1, ValueError, "slope must be a finite number > 0, got -1"),
])
def test_bools_and_non_finite_numbers_are_refused(value, error, message):
    with pytest.raises(error, match=message):
        StraightThroughNeuron(slope=value)
    with pytest.raises(error, match=message.replace("slope", "the temperature")):
        OneHotNeuron(3, temperature=value)
