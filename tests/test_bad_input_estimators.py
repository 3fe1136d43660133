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
               r"must be finite, but 1 of 12 values are NaN or infinite \(the first: nan at "
               r"index \(1, 2\)\); a NaN logit "
               r"has no distribution to sample from")
    with pytest.raises(ValueError, match=message):
        ReinforceNeuron()(pre_with_nan(), rng=np.random.default_rng(0), sampled=[])


def test_nan_logits_into_reinforce_is_an_error():
    with pytest.raises(ValueError,
                       match=r"reinforce: the pre-activation \(logits\) must be finite"):
        reinforce(pre_with_nan(), lambda b: b.sum(axis=1), np.zeros((4, 3)))


# ---------------------------------------------------------------------- NaN loss
LOSS_MESSAGE = (r"the per-example loss must be finite, but 1 of 4 values are NaN or "
                r"infinite \(the first: nan at index \(2,\)\); REINFORCE multiplies every "
                r"score by the loss")


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
    with pytest.raises(ValueError, match=r"the per-example loss must be finite, but 4 of 4"):
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


# ---------------------------------------------------------------------- non-finite, out of range
# Every estimator that takes uniforms refuses noise outside [0, 1] (exactly 0 and 1 stay
# valid: float32 rounding gives them, and each sampler handles both); inf is refused
# wherever NaN is: logits, losses, baselines, objective values, temperatures, eta.
from minigrad.estimators import antithetic, controls, onehot, relaxed  # noqa: E402
from minigrad.estimators import score_function as sf  # noqa: E402
from minigrad.tensor import Tensor as _T  # noqa: E402

A = np.random.default_rng(0).standard_normal((4, 3))
U = np.random.default_rng(1).random((4, 3))
V = np.random.default_rng(2).random((4, 3))


def f_sum(b):
    return (b * b).sum(axis=1)


ESTIMATORS = {
    "reinforce": lambda a, f, u: reinforce(a, f, u),
    "reinforce_loo": lambda a, f, u: sf.reinforce_loo(a, f, np.stack([u, u])),
    "nvil": lambda a, f, u: sf.nvil(a, f, u, np.zeros(4)),
    "muprop": lambda a, f, u: sf.muprop(a, f, u),
    "simple_muprop": lambda a, f, u: sf.simple_muprop(a, f, u),
    "concrete": lambda a, f, u: relaxed.concrete(a, f, u, 0.5),
    "arm": lambda a, f, u: antithetic.arm(a, f, u),
    "disarm": lambda a, f, u: antithetic.disarm(a, f, u),
    "rebar": lambda a, f, u: relaxed.rebar(a, f, u, V),
    "relax": lambda a, f, u: relaxed.relax(a, f, u, V, controls.RelaxedControl(
        surrogate=controls.RelaxSurrogate(3, (8,), 0, np.float64))),
}
CATEGORICAL = {
    "gumbel_softmax_estimate": onehot.gumbel_softmax_estimate,
    "st_gumbel_softmax_estimate": onehot.st_gumbel_softmax_estimate,
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_gives_a_finite_estimate_on_good_input(name):
    g = ESTIMATORS[name](_T(A), f_sum, U)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("noise", ["u + 1", "-u", "nan", "inf"])
def test_noise_outside_the_unit_interval_is_refused(name, noise):
    bad = {"u + 1": U + 1, "-u": -U, "nan": np.where(U > 0.5, np.nan, U),
           "inf": np.where(U > 0.5, np.inf, U)}[noise]
    with pytest.raises(ValueError, match=r"noise u must|the uniform noise u must lie"):
        ESTIMATORS[name](_T(A), f_sum, bad)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_exact_zero_and_one_noise_are_accepted(name):
    edges = U.copy()
    edges[0, 0], edges[1, 1] = 0.0, 1.0           # what float32 rounding can give
    assert np.all(np.isfinite(np.asarray(ESTIMATORS[name](_T(A), f_sum, edges))))


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_are_refused(name, value):
    a = A.copy()
    a[2, 1] = value
    with pytest.raises(ValueError, match=r"logits\)? must be finite"):
        ESTIMATORS[name](_T(a), f_sum, U)


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_an_objective_that_is_not_finite_is_refused(name, value):
    weights = np.ones((4, 3))
    weights[1, 0] = value      # example 1's value is not finite (Concrete: its gradient)

    def f(b):
        with np.errstate(invalid="ignore"):   # 0 * inf: the NaN the estimator must refuse
            return (b * _T(weights)).sum(axis=1)

    with pytest.raises(ValueError, match="must be finite"):
        ESTIMATORS[name](_T(A), f, U)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_categorical_relaxations_refuse_nan_logits_and_bad_noise(name):
    logits, u = _T(A.reshape(2, 2, 3)), U.reshape(2, 2, 3)

    def f(s):
        return (s * s).sum(axis=(1, 2))

    assert np.all(np.isfinite(np.asarray(CATEGORICAL[name](logits, f, u))))
    with pytest.raises(ValueError, match=f"{name}: logits must be finite"):
        CATEGORICAL[name](_T(np.where(u > 0.5, np.nan, A.reshape(2, 2, 3))), f, u)
    with pytest.raises(ValueError, match=f"{name}: the uniform noise u must"):
        CATEGORICAL[name](logits, f, u + 1)


@pytest.mark.parametrize("log_temperature, eta, message", [
    (np.nan, 1.0, "rebar: the log temperature must be finite"),
    (np.log(0.5), np.inf, "rebar: eta must be finite"),
    (np.log(0.5), np.nan, "rebar: eta must be finite"),
    (_T(np.array(np.inf)), 1.0, "rebar: the log temperature must be finite"),
])
def test_rebar_refuses_a_non_finite_temperature_or_eta(log_temperature, eta, message):
    with pytest.raises(ValueError, match=message):
        relaxed.rebar(_T(A), f_sum, U, V, controls.RelaxedControl(
            eta=eta, log_temperature=log_temperature))


@pytest.mark.parametrize("temperature", [np.inf, np.nan])
def test_concrete_refuses_a_temperature_that_is_not_finite(temperature):
    with pytest.raises(ValueError, match="temperature must be"):
        relaxed.concrete(_T(A), f_sum, U, temperature)


@pytest.mark.parametrize("make", [VarianceAdjustingBaseline, MovingAverageBaseline])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_loss_leaves_a_baseline_untouched(make, value):
    baseline = make()
    score = np.full((4, 3), 0.5)
    baseline.update(np.array([1.0, 2.0, 3.0, 0.5]), score)
    before = {k: v.copy() for k, v in baseline.state_dict().items()}
    with pytest.raises(ValueError, match="per-example loss must be finite"):
        baseline.update(np.array([1.0, value, 3.0, 0.5]), score)
    for name, v in baseline.state_dict().items():
        np.testing.assert_array_equal(v, before[name])


def test_an_infinite_loss_into_a_reinforce_neuron_update_is_refused():
    model = MLPClassifier([5, 3, 2], lambda: ReinforceNeuron(baseline=True), rng=0)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    sampled = []
    model(_T(x), rng=np.random.default_rng(2), sampled=sampled)
    neuron = model.neurons[0]
    before = neuron.baseline.value().copy()
    with pytest.raises(ValueError, match="per-example loss must be finite"):
        neuron.update(sampled[0], np.array([1.0, np.inf, 0.0, 0.0]))
    np.testing.assert_array_equal(neuron.baseline.value(), before)


@pytest.mark.parametrize("baseline", [np.inf, np.array([0.0, np.nan, 0.0, 0.0])])
def test_a_non_finite_baseline_is_refused(baseline):
    with pytest.raises(ValueError, match="the baseline must be finite"):
        reinforce(_T(A), f_sum, U, baseline=baseline)
    with pytest.raises(ValueError, match="nvil: the baseline must be finite"):
        sf.nvil(_T(A), f_sum, U, np.broadcast_to(baseline, (4,)))


def test_nvil_control_refuses_infinite_objective_values():
    net = controls.NVILControl(np.full(6, 0.5, np.float32), rng=0)
    bad = np.array([1.0, np.inf, 0.0, 0.0])
    with pytest.raises(ValueError, match="NVILControl.fit_gradients: f_values must be finite"):
        net.fit_gradients(np.zeros((4, 6), np.float32), bad)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="NVILControl.update: f_values must be finite"):
        net.update(bad, np.zeros(4, np.float32))
    for name, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[name])
