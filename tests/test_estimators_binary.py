"""Tests of the binary stochastic neurons and their estimators (``minigrad.estimators.binary``).

The toy model behind the statistical tests: 3 examples, each with 3 binary units
``b ~ Bernoulli(p(a))`` and the per-example loss

    L(b) = (b . w - t_n)^2 + 3,

with fixed ``w`` and targets ``t_n`` (the offset 3 gives the baseline something to remove).
The exact gradient ``d E[L_n] / d a_n`` is computed by enumerating the 2^3 configurations and
differentiating the enumeration sum with the engine. Monte Carlo estimates use one big batch
in which each example is repeated ``R`` times, so one backward pass gives ``R`` independent
estimates per example; their mean is compared with the exact gradient in standard errors.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.base import LossFeedback
from minigrad.estimators.binary import (
    BernoulliStraightThrough,
    ReinforceBernoulli,
    ReinforceNeuron,
    StraightThroughNeuron,
    VarianceAdjustingBaseline,
    bernoulli_straight_through,
    enumerate_binary_configurations,
    hard_sigmoid,
    pass_through_sigmoid,
    reinforce_bernoulli,
    reinforce_surrogate,
    straight_through_detach,
    straight_through_round,
)
from minigrad.functions import clip, reshape, sigmoid
from minigrad.tensor import Tensor, grad, no_grad

A = np.array([[0.8, -0.6, 0.3],
              [-0.9, 0.5, 0.7],
              [0.2, -0.3, 0.9]])
W = np.array([1.0, -2.0, 1.5])
T = np.array([0.5, -1.0, 1.0])
OFFSET = 3.0
R = 20_000


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def toy_loss(b: Tensor) -> Tensor:
    """Per-example loss (batch,) of a batch made of copies of the 3 toy examples."""
    targets = Tensor(np.tile(T, b.shape[0] // 3))
    return (b @ Tensor(W) - targets) ** 2 + OFFSET


def sigmoid_probability(slope: float = 1.0):
    return lambda a: sigmoid(a * slope)


def hard_sigmoid_probability(slope: float = 1.0):
    # clip's own derivative (1/2 inside) is the true derivative of the hard sigmoid
    return lambda a: clip((a * slope + 1) * 0.5, 0.0, 1.0)


def exact_gradient(probability) -> np.ndarray:
    """d E[L_n] / d a_n for the toy model, by enumerating the 8 configurations per example.

    ``E[L_n] = sum_c prod_i P(b_i = c_i) L_n(c)`` with ``P(b_i = c_i) = c_i p + (1 - c_i)(1 - p)``.
    """
    a = Tensor(A.copy(), requires_grad=True)
    p = reshape(probability(a), (3, 1, 3))
    configs = enumerate_binary_configurations(3)
    per_unit = p * Tensor(configs) + (1 - p) * Tensor(1 - configs)
    prob = per_unit[:, :, 0] * per_unit[:, :, 1] * per_unit[:, :, 2]
    losses = (configs @ W - T[:, None]) ** 2 + OFFSET
    (prob * Tensor(losses)).sum().backward()
    return a.grad.data


def sampled_gradients(neuron, seed: int, repeats: int = R) -> np.ndarray:
    """``repeats`` estimates of d L_n / d a_n for each example: shape (repeats, 3, 3)."""
    rng = np.random.default_rng(seed)
    a = Tensor(np.tile(A, (repeats, 1)), requires_grad=True)
    feedback = LossFeedback()
    b = neuron(a, rng=rng, stochastic=True, feedback=feedback)
    loss = toy_loss(b)
    feedback.send(loss)
    loss.sum().backward()
    return a.grad.data.reshape(repeats, 3, 3)


def z_scores(estimates: np.ndarray, exact: np.ndarray) -> np.ndarray:
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    return (estimates.mean(axis=0) - exact) / standard_error


def agrees_within_3_se(estimates: np.ndarray, exact: np.ndarray) -> bool:
    return bool(np.all(np.abs(z_scores(estimates, exact)) < 3))


# ---------------------------------------------------------------------- the exact gradient
def test_enumeration_matches_the_closed_form():
    # For L = (s - t)^2 + c with s = b . w:  dE/dp_k = w_k^2 + 2 w_k (sum_{j != k} w_j p_j - t)
    p = np_sigmoid(A)
    others = (p @ W)[:, None] - W * p
    closed_form = p * (1 - p) * (W ** 2 + 2 * W * (others - T[:, None]))
    np.testing.assert_allclose(exact_gradient(sigmoid_probability()), closed_form, rtol=1e-12)


def test_enumerate_binary_configurations():
    np.testing.assert_array_equal(enumerate_binary_configurations(2),
                                  [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert enumerate_binary_configurations(0).shape == (1, 0)
    assert len(np.unique(enumerate_binary_configurations(10), axis=0)) == 1024


# ---------------------------------------------------------------------- REINFORCE is unbiased
def test_reinforce_without_baseline_is_unbiased():
    estimates = sampled_gradients(ReinforceNeuron(baseline=False), seed=1)
    exact = exact_gradient(sigmoid_probability())
    assert agrees_within_3_se(estimates, exact), z_scores(estimates, exact)


def warmed_up_frozen_baseline_neuron() -> ReinforceNeuron:
    """A REINFORCE neuron whose baseline was trained on independent batches, then frozen.

    In training the EMAs are updated from the very batch they are used on, so ``L_bar``
    depends on each ``b_n`` with weight ``(1 - decay) / batch``: a small bias, of order
    ``1 / batch``. Freezing the state after a warm-up makes ``L_bar`` independent of the
    samples it multiplies, so the estimator is exactly unbiased and the z-test is honest.
    """
    neuron = ReinforceNeuron(baseline=True)
    for step in range(100):
        sampled_gradients(neuron, seed=1000 + step, repeats=100)
    neuron.baseline.frozen = True
    return neuron


def test_reinforce_with_the_variance_adjusting_baseline_is_unbiased_and_reduces_variance():
    neuron = warmed_up_frozen_baseline_neuron()
    baseline_before = neuron.baseline.value().copy()
    assert np.all(baseline_before > OFFSET)  # a real baseline, not ~0
    with_baseline = sampled_gradients(neuron, seed=2)
    np.testing.assert_array_equal(neuron.baseline.value(), baseline_before)  # frozen
    exact = exact_gradient(sigmoid_probability())
    assert agrees_within_3_se(with_baseline, exact), z_scores(with_baseline, exact)

    without = sampled_gradients(ReinforceNeuron(baseline=False), seed=2)
    ratio = with_baseline.var(axis=0).sum() / without.var(axis=0).sum()
    print(f"L_bar = {baseline_before}; total variance with / without baseline = {ratio:.3f}")
    assert ratio < 0.5


class WrongSignReinforce(ReinforceBernoulli):
    """Broken on purpose: -(b - p)(L - L_bar)."""

    def backward(self, g):
        return -super().backward(g)


class ScoreIsBReinforce(ReinforceBernoulli):
    """Broken on purpose: b L instead of (b - p) L."""

    def backward(self, g):
        loss = self.feedback.loss[:, None].astype(g.dtype)
        return Tensor(self.output.data) * Tensor(loss)


@pytest.mark.parametrize("broken", [WrongSignReinforce, ScoreIsBReinforce])
def test_the_unbiasedness_check_catches_a_broken_reinforce(broken):
    def neuron(pre, *, rng, stochastic, feedback):
        return broken.apply(pre, u=rng.random(pre.shape), feedback=feedback, baseline=None)

    estimates = sampled_gradients(neuron, seed=1)
    assert not agrees_within_3_se(estimates, exact_gradient(sigmoid_probability()))


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
    exact = exact_gradient(probability)
    bias = estimates.mean(axis=0) - exact
    z = z_scores(estimates, exact)
    print(f"\n{case} ST: measured bias (3 examples x 3 units)\n{np.round(bias, 4)}\n"
          f"max |z| = {np.abs(z).max():.0f}")
    assert not agrees_within_3_se(estimates, exact)
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


def test_reinforce_backward_by_hand_with_the_ema_updated_first():
    a_values, _, _ = fixed_inputs((4, 3))
    baseline = VarianceAdjustingBaseline(decay=0.95, eps=1e-4)
    numerator, denominator = np.zeros(3), np.ones(3)
    rng = np.random.default_rng(11)
    for step in range(3):
        u, g = rng.random((4, 3)), rng.standard_normal((4, 3))
        loss = rng.uniform(1, 3, size=4)
        a = Tensor(a_values, requires_grad=True)
        feedback = LossFeedback()
        b = reinforce_bernoulli(a, u, feedback, baseline)
        feedback.send(loss)
        (da,) = grad(b, a, grad_outputs=g)  # g is ignored

        p = np_sigmoid(a_values)
        score = (u < p) - p
        numerator = 0.95 * numerator + 0.05 * np.mean(score ** 2 * loss[:, None], axis=0)
        denominator = 0.95 * denominator + 0.05 * np.mean(score ** 2, axis=0)
        l_bar = numerator / (denominator + 1e-4)
        np.testing.assert_array_equal(b.data, u < p)
        np.testing.assert_allclose(da.data, score * (loss[:, None] - l_bar), rtol=1e-12)


def test_reinforce_backward_without_baseline_by_hand():
    a_values, u, g = fixed_inputs((4, 3))
    loss = np.array([0.5, 2.0, -1.0, 3.0])
    a = Tensor(a_values, requires_grad=True)
    feedback = LossFeedback()
    b = reinforce_bernoulli(a, u, feedback)
    feedback.send(loss)
    (da,) = grad(b, a, grad_outputs=g)
    p = np_sigmoid(a_values)
    np.testing.assert_allclose(da.data, ((u < p) - p) * loss[:, None], rtol=1e-12)


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


@pytest.mark.parametrize("with_baseline", [False, True])
def test_reinforce_surrogate_gives_the_reinforce_gradient(with_baseline):
    rng = np.random.default_rng(4)
    a_values, u = rng.standard_normal((6, 3)), rng.random((6, 3))
    baseline = VarianceAdjustingBaseline() if with_baseline else None

    a = Tensor(a_values, requires_grad=True)
    feedback = LossFeedback()
    b = reinforce_bernoulli(a, u, feedback, baseline)
    loss = toy_loss(b)
    feedback.send(loss)
    loss.sum().backward()

    a_surrogate = Tensor(a_values, requires_grad=True)
    l_bar = baseline.value() if with_baseline else None  # after the update, as in backward
    reinforce_surrogate(a_surrogate, b, loss, baseline=l_bar).backward()
    np.testing.assert_allclose(a.grad.data, a_surrogate.grad.data, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("kwargs, message", [
    ({"slope": 0.0}, "slope must be a positive finite number, got 0.0"),
    ({"slope": -1.0}, "slope must be a positive finite number, got -1.0"),
    ({"anneal_rate": 0.0}, "anneal_rate must be a positive finite number, got 0.0"),
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
    with pytest.raises(ValueError, match=r"u has shape \(3,\) but the probabilities have shape"):
        BernoulliStraightThrough.apply(Tensor(np.full((2, 3), 0.5)), u=np.zeros(3))


@pytest.mark.parametrize("neuron", [StraightThroughNeuron(), ReinforceNeuron()])
@pytest.mark.parametrize("rng", [None, 42])
def test_stochastic_without_a_generator(neuron, rng):
    with pytest.raises(TypeError, match="stochastic=True needs rng=np.random.Generator"):
        neuron(Tensor(np.zeros((2, 3))), rng=rng, stochastic=True, feedback=LossFeedback())


def test_reinforce_without_feedback_says_to_pass_one():
    neuron = ReinforceNeuron()
    a = Tensor(np.zeros((2, 3)), requires_grad=True)
    with pytest.raises(TypeError, match=r"pass feedback=LossFeedback\(\)"):
        neuron(a, rng=np.random.default_rng(0), stochastic=True, feedback=None)
    with no_grad():  # evaluation records no graph, so it needs no loss
        neuron(a, rng=np.random.default_rng(0), stochastic=True)


def test_reinforce_backward_before_the_loss_is_sent():
    a = Tensor(np.zeros((2, 3)), requires_grad=True)
    b = ReinforceNeuron()(a, rng=np.random.default_rng(0), feedback=LossFeedback())
    with pytest.raises(RuntimeError, match=r"call feedback.send\(per_example_loss\)"):
        b.sum().backward()


def test_reinforce_loss_of_the_wrong_batch_size():
    a = Tensor(np.zeros((2, 3)), requires_grad=True)
    feedback = LossFeedback()
    b = ReinforceNeuron()(a, rng=np.random.default_rng(0), feedback=feedback)
    feedback.send(np.ones(5))
    with pytest.raises(ValueError, match="batch has 2 examples; send one loss per example"):
        b.sum().backward()


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
    feedback = LossFeedback()
    b = neuron(pre, rng=np.random.default_rng(0), stochastic=True, feedback=feedback)
    assert b.dtype == np.float32
    assert set(np.unique(b.data)) <= {0.0, 1.0}
    slope = getattr(neuron, "slope", 1.0)
    if getattr(neuron, "variant", None) == "hard_sigmoid":
        p = np.clip((slope * a[0] + 1) / 2, 0, 1)
    else:
        p = np_sigmoid(slope * a[0])
    standard_error = np.sqrt(p * (1 - p) / len(a)) + 1e-12
    assert np.all(np.abs(b.data.mean(axis=0) - p) < 4 * standard_error)
    feedback.send(b.sum(axis=1))
    b.sum().backward()
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
