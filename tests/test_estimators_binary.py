"""Tests of the binary stochastic neurons and their estimators (``minigrad.estimators.binary``).

The toy model behind the statistical tests: 3 examples, each with 3 binary units
``b ~ Bernoulli(p(a))`` and the per-example loss

    L(b) = (b . w - t_n)^2 + 3,

with fixed ``w`` and targets ``t_n`` (the offset 3 gives the baseline something to remove).
The exact gradient comes from the oracle (:mod:`minigrad.estimators.exact`); every estimator
against it is in ``test_estimator_oracle.py``. Here: the neurons (the adapters the MNIST
chapters train), the backward formulas, and the closed form of the straight-through bias.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.binary import (
    BernoulliStraightThrough,
    StraightThroughNeuron,
    bernoulli_straight_through,
    hard_sigmoid,
    pass_through_sigmoid,
    straight_through,
    straight_through_detach,
    straight_through_round,
)
from minigrad.estimators.diagnostics import bias_z_scores
from minigrad.estimators.exact import enumerate_binary_configurations, exact_gradient
from minigrad.estimators.score_function import (
    ReinforceNeuron,
    VarianceAdjustingBaseline,
    reinforce_from_sample,
    reinforce_surrogate,
)
from minigrad.experiments import step_loss
from minigrad.functions import clip, sigmoid
from minigrad.models.mlp import MLPClassifier
from minigrad.tensor import Tensor, grad, no_grad
from conftest import OFFSET, A, T, W, bernoulli_loss

R = 20_000


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# the catalogue's problem: per-example loss (batch,) of copies of the 3 examples
toy_loss = bernoulli_loss


def sigmoid_probability(slope: float = 1.0):
    return lambda a: sigmoid(a * slope)


def hard_sigmoid_probability(slope: float = 1.0):
    # clip's own derivative (1/2 inside) is the true derivative of the hard sigmoid
    return lambda a: clip((a * slope + 1) * 0.5, 0.0, 1.0)


def exact(probability) -> np.ndarray:
    return exact_gradient(Tensor(A.copy()), toy_loss, probability).data


def sampled_gradients(neuron, seed: int, repeats: int = R) -> np.ndarray:
    """``repeats`` estimates of d L_n / d a_n for each example: shape (repeats, 3, 3).

    The neuron's forward pass, then the training step's route: the loss, the baselines'
    explicit update, the estimate of every score-function layer sent in by its surrogate.
    """
    rng = np.random.default_rng(seed)
    a = Tensor(np.tile(A, (repeats, 1)), requires_grad=True)
    sampled = []
    loss = toy_loss(neuron(a, rng=rng, stochastic=True, sampled=sampled))
    total = loss.sum()
    for units in sampled:
        units.neuron.update(units, loss.data)
        total = total + (units.logits * units.neuron.estimate(units, loss.data)).sum()
    (g,) = grad(total, a)
    return g.data.reshape(repeats, 3, 3)


def agrees_within_3_se(estimates: np.ndarray, exact_values: np.ndarray) -> bool:
    return bool(np.all(np.abs(bias_z_scores(estimates, exact_values)) < 3))


# ---------------------------------------------------------------------- the exact gradient
def test_enumeration_matches_the_closed_form():
    # For L = (s - t)^2 + c with s = b . w:  dE/dp_k = w_k^2 + 2 w_k (sum_{j != k} w_j p_j - t)
    p = np_sigmoid(A)
    others = (p @ W)[:, None] - W * p
    closed_form = p * (1 - p) * (W ** 2 + 2 * W * (others - T[:, None]))
    np.testing.assert_allclose(exact(sigmoid_probability()), closed_form, rtol=1e-12)


def test_enumerate_binary_configurations():
    np.testing.assert_array_equal(enumerate_binary_configurations(2),
                                  [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert enumerate_binary_configurations(0).shape == (1, 0)
    assert len(np.unique(enumerate_binary_configurations(10), axis=0)) == 1024


# ---------------------------------------------------------------------- the REINFORCE neuron
def warmed_up_baseline_neuron() -> ReinforceNeuron:
    """A REINFORCE neuron whose baseline was trained on independent batches.

    Its estimate does not update the baseline (only the training step's explicit update
    does), so the estimates below use a baseline independent of their samples: unbiased.
    """
    neuron = ReinforceNeuron(baseline=True)
    for step in range(100):
        sampled_gradients(neuron, seed=1000 + step, repeats=100)
    return neuron


def neuron_estimates(neuron, seed: int, repeats: int = R) -> np.ndarray:
    """Like :func:`sampled_gradients`, without updating any baseline."""
    rng = np.random.default_rng(seed)
    a = Tensor(np.tile(A, (repeats, 1)), requires_grad=True)
    sampled = []
    loss = toy_loss(neuron(a, rng=rng, stochastic=True, sampled=sampled)).data
    (units,) = sampled
    return neuron.estimate(units, loss).data.reshape(repeats, 3, 3)


def test_the_reinforce_neuron_is_unbiased_and_its_baseline_reduces_variance():
    neuron = warmed_up_baseline_neuron()
    baseline_before = neuron.baseline.value().copy()
    assert np.all(baseline_before > OFFSET)  # a real baseline, not ~0
    with_baseline = neuron_estimates(neuron, seed=2)
    np.testing.assert_array_equal(neuron.baseline.value(), baseline_before)  # estimate: no update
    exact_values = exact(sigmoid_probability())
    assert agrees_within_3_se(with_baseline, exact_values), bias_z_scores(with_baseline,
                                                                          exact_values)
    without = neuron_estimates(ReinforceNeuron(baseline=False), seed=2)
    assert agrees_within_3_se(without, exact_values), bias_z_scores(without, exact_values)
    ratio = with_baseline.var(axis=0).sum() / without.var(axis=0).sum()
    print(f"L_bar = {baseline_before}; total variance with / without baseline = {ratio:.3f}")
    assert ratio < 0.5


# ---------------------------------------------------------------------- straight-through bias
ST_CASES = {
    "pass-through": ("pass_through", 1.0, sigmoid_probability(1.0)),
    "sigmoid-adjusted": ("sigmoid_adjusted", 1.0, sigmoid_probability(1.0)),
    "slope-annealed (slope 2)": ("sigmoid_adjusted", 2.0, sigmoid_probability(2.0)),
    "hard sigmoid": ("hard_sigmoid", 1.0, hard_sigmoid_probability(1.0)),
}


def predicted_st_mean(variant: str, slope: float) -> np.ndarray:
    """The mean of an ST estimate: (d p / d a as its backward uses it) * E[dL/db].

    For the toy loss, dL/db_k = 2 w_k (s - t) is linear in b, so E[dL/db_k] = 2 w_k (p . w - t).
    """
    if variant == "hard_sigmoid":
        p = np.clip((slope * A + 1) / 2, 0, 1)
        used_dp_da = slope * 0.5 * (np.abs(slope * A) < 1)
    else:
        p = np_sigmoid(slope * A)
        used_dp_da = slope * p * (1 - p) if variant == "sigmoid_adjusted" else slope
    return used_dp_da * 2 * W * ((p @ W) - T)[:, None]


@pytest.mark.parametrize("case", list(ST_CASES))
def test_straight_through_is_biased_and_the_bias_is_measured(case):
    variant, slope, probability = ST_CASES[case]
    estimates = sampled_gradients(StraightThroughNeuron(variant, slope=slope), seed=3)
    exact_values = exact(probability)
    bias = estimates.mean(axis=0) - exact_values
    z = bias_z_scores(estimates, exact_values)
    print(f"\n{case} ST: measured bias (3 examples x 3 units)\n{np.round(bias, 4)}\n"
          f"max |z| = {np.abs(z).max():.0f}")
    assert not agrees_within_3_se(estimates, exact_values)
    # The bias is the one predicted in closed form: the estimate's mean is known exactly.
    assert agrees_within_3_se(estimates, predicted_st_mean(variant, slope))


# ---------------------------------------------------------------------- backward formulas
def fixed_inputs(shape=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.random(shape), rng.standard_normal(shape)


def st_neuron_gradient(neuron, a_values, seed, g):
    a = Tensor(a_values, requires_grad=True)
    b = neuron(a, rng=np.random.default_rng(seed), stochastic=True)
    (da,) = grad(b, a, grad_outputs=g)
    return b.data, da.data


def test_pass_through_st_backward_is_the_identity():
    a, u, g = fixed_inputs()
    b = bernoulli_straight_through(pass_through_sigmoid(Tensor(a, requires_grad=True)), u)
    np.testing.assert_array_equal(b.data, u < np_sigmoid(a))
    b_neuron, da = st_neuron_gradient(StraightThroughNeuron("pass_through"), a, 5, g)
    u_neuron = np.random.default_rng(5).random(a.shape)
    np.testing.assert_array_equal(b_neuron, u_neuron < np_sigmoid(a))
    np.testing.assert_array_equal(da, g)


@pytest.mark.parametrize("slope", [1.0, 2.5])
def test_sigmoid_adjusted_and_slope_annealed_st_backward(slope):
    a, _, g = fixed_inputs()
    b, da = st_neuron_gradient(StraightThroughNeuron("sigmoid_adjusted", slope=slope), a, 5, g)
    s = np_sigmoid(slope * a)
    np.testing.assert_array_equal(b, np.random.default_rng(5).random(a.shape) < s)
    np.testing.assert_allclose(da, g * slope * s * (1 - s), rtol=1e-12)


def test_hard_sigmoid_st_backward():
    a = np.array([[-2.0, -1.0, -0.999, 0.0, 0.4, 0.999, 1.0, 3.0]])
    g = np.arange(1.0, 9.0)[None, :]
    np.testing.assert_allclose(hard_sigmoid(Tensor(a)).data, np.clip((a + 1) / 2, 0, 1))
    _, da = st_neuron_gradient(StraightThroughNeuron("hard_sigmoid"), a, 5, g)
    np.testing.assert_array_equal(da, g * 0.5 * ((a > -1) & (a < 1)))


def test_reinforce_neuron_step_by_hand_with_the_ema_updated_first():
    a_values, _, _ = fixed_inputs((4, 3))
    neuron = ReinforceNeuron(baseline=True, decay=0.95)
    numerator, denominator = np.zeros(3), np.ones(3)
    rng = np.random.default_rng(11)
    for step in range(3):
        seed = int(rng.integers(1 << 30))
        loss = rng.uniform(1, 3, size=4)
        a = Tensor(a_values, requires_grad=True)
        sampled = []
        b = neuron(a, rng=np.random.default_rng(seed), sampled=sampled)
        neuron.update(sampled[0], loss)
        (da,) = grad(a, a, grad_outputs=neuron.estimate(sampled[0], loss).data)

        u = np.random.default_rng(seed).random((4, 3))
        p = np_sigmoid(a_values)
        score = (u < p) - p
        numerator = 0.95 * numerator + 0.05 * np.mean(score ** 2 * loss[:, None], axis=0)
        denominator = 0.95 * denominator + 0.05 * np.mean(score ** 2, axis=0)
        l_bar = numerator / (denominator + 1e-4)
        np.testing.assert_array_equal(b.data, u < p)
        assert not b.requires_grad    # the sample is a constant; its gradient is the estimate
        np.testing.assert_allclose(da.data, score * (loss[:, None] - l_bar), rtol=1e-12)


def test_reinforce_without_baseline_by_hand():
    a_values, u, _ = fixed_inputs((4, 3))
    loss = np.array([0.5, 2.0, -1.0, 3.0])
    b = (u < np_sigmoid(a_values)).astype(float)
    g = reinforce_from_sample(Tensor(a_values), b, loss)
    p = np_sigmoid(a_values)
    np.testing.assert_allclose(g.data, ((u < p) - p) * loss[:, None], rtol=1e-12)


def test_round_ties_go_up_and_the_backward_is_the_identity():
    p = Tensor(np.array([0.0, 0.49999, 0.5, 0.50001, 1.0]), requires_grad=True)
    b = straight_through_round(p)
    np.testing.assert_array_equal(b.data, [0, 0, 1, 1, 1])
    g = np.array([1.0, -2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(grad(b, p, grad_outputs=g)[0].data, g)


# ---------------------------------------------------------------------- detach-trick forms
def gradients_of(make_output, a_values, g):
    a = Tensor(a_values, requires_grad=True)
    out = make_output(a)
    return out.data, grad(out, a, grad_outputs=g)[0].data


@pytest.mark.parametrize("name, function_form, detach_form", [
    ("Bernoulli ST",
     lambda a, u: bernoulli_straight_through(sigmoid(a), u),
     lambda a, u: straight_through_detach(u < sigmoid(a).data, sigmoid(a))),
    ("round ST",
     lambda a, u: straight_through_round(sigmoid(a)),
     lambda a, u: straight_through_detach(sigmoid(a).data >= 0.5, sigmoid(a))),
    ("pass-through sigmoid",
     lambda a, u: pass_through_sigmoid(a),
     lambda a, u: straight_through_detach(sigmoid(a), a)),
])
def test_detach_trick_gives_the_same_values_and_gradients(name, function_form, detach_form):
    a, u, g = fixed_inputs((5, 4))
    value_f, grad_f = gradients_of(lambda x: function_form(x, u), a, g)
    value_d, grad_d = gradients_of(lambda x: detach_form(x, u), a, g)
    np.testing.assert_array_equal(value_f, value_d)
    np.testing.assert_allclose(grad_f, grad_d, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("baseline", [None, np.array([2.5, 3.0, 3.5])])
def test_reinforce_surrogate_gives_the_reinforce_estimate(baseline):
    rng = np.random.default_rng(4)
    a_values, u = rng.standard_normal((6, 3)), rng.random((6, 3))
    b = (u < np_sigmoid(a_values)).astype(float)
    loss = toy_loss(Tensor(b)).data
    g = reinforce_from_sample(Tensor(a_values), b, loss, baseline)
    a = Tensor(a_values, requires_grad=True)
    (g_surrogate,) = grad(reinforce_surrogate(a, b, loss, baseline=baseline), a)
    np.testing.assert_allclose(g.data, g_surrogate.data, rtol=1e-12, atol=1e-15)


def test_straight_through_estimator_equals_the_neurons_backward():
    a_values = np.tile(A, (5, 1))
    u = np.random.default_rng(6).random(a_values.shape)
    g = straight_through(Tensor(a_values), toy_loss, u)
    a = Tensor(a_values, requires_grad=True)
    (g_by_hand,) = grad(toy_loss(bernoulli_straight_through(sigmoid(a), u)).sum(), a)
    np.testing.assert_array_equal(g.data, g_by_hand.data)


# ---------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("kwargs, message", [
    ({"slope": 0.0}, "slope must be a finite number > 0, got 0.0"),
    ({"slope": -1.0}, "slope must be a finite number > 0, got -1.0"),
    ({"anneal_rate": 0.0}, "anneal_rate must be a finite number > 0, got 0.0"),
    ({"variant": "sigmoid"}, "variant must be one of"),
])
def test_bad_straight_through_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StraightThroughNeuron(**kwargs)


@pytest.mark.parametrize("function", [
    lambda p: bernoulli_straight_through(p, np.zeros(p.shape)),
    straight_through_round,
])
def test_probabilities_outside_the_unit_interval(function):
    message = r"probabilities in \[0, 1\], got values from -0.2 to 1.3"
    with pytest.raises(ValueError, match=message):
        function(Tensor(np.array([[-0.2, 0.5, 1.3]])))


def test_noise_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"u has shape \(3,\) but needs shape \(2, 3\)"):
        BernoulliStraightThrough.apply(Tensor(np.full((2, 3), 0.5)), u=np.zeros(3))


@pytest.mark.parametrize("neuron", [StraightThroughNeuron(), ReinforceNeuron()])
@pytest.mark.parametrize("rng", [None, 42])
def test_stochastic_without_a_generator(neuron, rng):
    with pytest.raises(TypeError, match="stochastic=True needs rng=np.random.Generator"):
        neuron(Tensor(np.zeros((2, 3))), rng=rng, stochastic=True, sampled=[])


def test_reinforce_without_a_list_for_its_sample_says_to_pass_one():
    neuron = ReinforceNeuron()
    a = Tensor(np.zeros((2, 3)), requires_grad=True)
    with pytest.raises(TypeError, match=r"pass sampled=\[\] to the forward pass"):
        neuron(a, rng=np.random.default_rng(0), stochastic=True)
    with no_grad():  # evaluation records no graph, so it needs no loss
        neuron(a, rng=np.random.default_rng(0), stochastic=True)


def test_reinforce_loss_of_the_wrong_batch_size():
    a = Tensor(np.zeros((2, 3)), requires_grad=True)
    neuron = ReinforceNeuron(baseline=False)
    sampled = []
    neuron(a, rng=np.random.default_rng(0), sampled=sampled)
    with pytest.raises(ValueError, match=r"needs one value per example, shape \(2,\)"):
        neuron.estimate(sampled[0], np.ones(5))


def test_bad_baseline_settings():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        ReinforceNeuron(decay=1.0)
    with pytest.raises(RuntimeError, match="no state yet"):
        VarianceAdjustingBaseline().value()
    with pytest.raises(ValueError, match="n must be in 0..20"):
        enumerate_binary_configurations(21)


# ---------------------------------------------------------------------- neuron behaviour
ALL_NEURONS = [
    StraightThroughNeuron("pass_through"),
    StraightThroughNeuron("sigmoid_adjusted", slope=1.7),
    StraightThroughNeuron("hard_sigmoid", slope=0.6),
    ReinforceNeuron(baseline=True),
    ReinforceNeuron(baseline=False),
]


def float32_pre(shape=(64, 10), seed=0) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.where(np.abs(a) < 1e-3, 0.5, a).astype(np.float32)  # no near-ties


@pytest.mark.parametrize("neuron", ALL_NEURONS, ids=repr)
def test_deterministic_mode_is_round_of_sigmoid(neuron):
    a = float32_pre()
    slope = getattr(neuron, "slope", 1.0)
    b = neuron(Tensor(a, requires_grad=True), stochastic=False)
    np.testing.assert_array_equal(b.data, np_sigmoid(slope * a) >= 0.5)
    assert b.dtype == np.float32


@pytest.mark.parametrize("neuron", ALL_NEURONS, ids=repr)
def test_stochastic_outputs_are_bits_with_the_right_frequency_and_dtype(neuron):
    a = np.tile(float32_pre((1, 8)), (4000, 1))
    pre = Tensor(a, requires_grad=True)
    sampled = []
    b = neuron(pre, rng=np.random.default_rng(0), stochastic=True, sampled=sampled)
    assert b.dtype == np.float32
    assert set(np.unique(b.data)) <= {0.0, 1.0}
    slope = getattr(neuron, "slope", 1.0)
    if getattr(neuron, "variant", None) == "hard_sigmoid":
        p = np.clip((slope * a[0] + 1) / 2, 0, 1)
    else:
        p = np_sigmoid(slope * a[0])
    standard_error = np.sqrt(p * (1 - p) / len(a)) + 1e-12
    assert np.all(np.abs(b.data.mean(axis=0) - p) < 4 * standard_error)
    total = b.sum() if b.requires_grad else b.sum() * 0.0
    for units in sampled:
        g = units.neuron.estimate(units, b.sum(axis=1).data)
        assert g.dtype == np.float32
        total = total + (units.logits * g).sum()
    total.backward()
    assert pre.grad.dtype == np.float32


def test_randomness_comes_only_from_the_generator():
    a = Tensor(float32_pre())
    np.random.seed(0)
    global_state = np.random.get_state()[1].copy()
    first = StraightThroughNeuron()(a, rng=np.random.default_rng(3))
    second = StraightThroughNeuron()(a, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)


def test_end_epoch_anneals_the_slope_and_the_backward_follows():
    neuron = StraightThroughNeuron("sigmoid_adjusted", anneal_rate=1.1)
    fixed = StraightThroughNeuron("sigmoid_adjusted")
    for _ in range(5):
        neuron.end_epoch()
        fixed.end_epoch()
    assert neuron.slope == pytest.approx(1.1 ** 5, rel=1e-12)
    assert fixed.slope == 1.0
    a, _, g = fixed_inputs()
    _, da = st_neuron_gradient(neuron, a, 5, g)
    s = np_sigmoid(1.1 ** 5 * a)
    np.testing.assert_allclose(da, g * 1.1 ** 5 * s * (1 - s), rtol=1e-12)


def test_reinforce_deterministic_mode_has_the_pass_through_gradient():
    a, _, g = fixed_inputs()
    pre = Tensor(a, requires_grad=True)
    b = ReinforceNeuron()(pre, stochastic=False)
    np.testing.assert_array_equal(grad(b, pre, grad_outputs=g)[0].data, g)


def test_reprs_say_what_the_neuron_is():
    assert repr(StraightThroughNeuron("sigmoid_adjusted", anneal_rate=1.1)) == (
        "StraightThroughNeuron(variant='sigmoid_adjusted', slope=1, anneal_rate=1.1)")
    assert repr(ReinforceNeuron()) == "ReinforceNeuron(baseline=True, decay=0.95)"
    assert repr(ReinforceNeuron(baseline=False)) == "ReinforceNeuron(baseline=False)"


# ---------------------------------------------------------------------- state saves and loads
def trained_for_two_epochs(make_neuron, tmp_path):
    model = MLPClassifier([6, 4, 3], make_neuron, rng=0)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    y = np.eye(3)[[0, 1, 2, 0, 1]]
    for _ in range(2):
        step_loss(model, x, y, rng=np.random.default_rng(2))[0].backward()
        model.end_epoch()
    path = tmp_path / "model.npz"
    model.save(path)
    fresh = MLPClassifier([6, 4, 3], make_neuron, rng=5)
    fresh.load(path)
    return model, fresh


def test_an_annealed_slope_survives_a_save_and_load(tmp_path):
    model, fresh = trained_for_two_epochs(
        lambda: StraightThroughNeuron("sigmoid_adjusted", slope=1.5 / 1.5 ** 0.5,
                                      anneal_rate=1.5 ** 0.5), tmp_path)
    assert model.neurons[0].slope == pytest.approx(1.5 ** 1.5, rel=1e-12)
    model.neurons[0].slope = 2.25
    model.save(tmp_path / "slope.npz")
    fresh.load(tmp_path / "slope.npz")
    assert fresh.neurons[0].slope == 2.25
    assert int(fresh.neurons[0].schedule.epochs.data) == 2


def test_a_reinforce_baseline_survives_a_save_and_load(tmp_path):
    model, fresh = trained_for_two_epochs(lambda: ReinforceNeuron(baseline=True), tmp_path)
    assert np.any(model.neurons[0].baseline.value() != 0)
    np.testing.assert_array_equal(fresh.neurons[0].baseline.value(),
                                  model.neurons[0].baseline.value())
    assert set(model.state_dict()) >= {"neuron0.baseline.numerator",
                                       "neuron0.baseline.denominator"}


def test_a_temperature_is_read_and_set_like_a_slope_and_survives_a_save_and_load(tmp_path):
    from minigrad.estimators.onehot import OneHotNeuron

    model, fresh = trained_for_two_epochs(lambda: OneHotNeuron(2, anneal_rate=1.25), tmp_path)
    assert model.neurons[0].temperature == pytest.approx(1 / 1.25 ** 2, rel=1e-12)
    model.neurons[0].temperature = 0.3
    model.save(tmp_path / "tau.npz")
    fresh.load(tmp_path / "tau.npz")
    assert fresh.neurons[0].temperature == 0.3
