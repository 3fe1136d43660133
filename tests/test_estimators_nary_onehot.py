"""Tests of the n-ary and one-hot neurons and their straight-through estimators."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.estimators.base import Neuron
from minigrad.estimators.nary import (
    DeterministicRound,
    NaryNeuron,
    StochasticRound,
    staircase_activation,
    staircase_levels,
    ternary_activation,
)
from minigrad.estimators.onehot import (
    GumbelSoftmaxNeuron,
    OneHotNeuron,
    STGumbelSoftmax,
    STHardmax,
    STSampledSoftmax,
    argmax_one_hot,
    gumbel_from_uniform,
    gumbel_softmax,
    st_gumbel_softmax,
    st_gumbel_softmax_detach,
    st_hardmax_softmax,
    st_sampled_softmax,
)
from minigrad.gradcheck import gradcheck, gradgradcheck
from minigrad.tensor import Tensor

# The 0.999 quantile of the chi-square distribution with 4 degrees of freedom (5 categories).
CHI2_4DOF_0999 = 18.467


def assert_exactly_one_hot(y: np.ndarray, d: int) -> None:
    rows = y.reshape(y.shape[0], -1, d)
    assert np.all((rows == 0) | (rows == 1))
    assert np.all(rows.sum(axis=-1) == 1)


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(np.sum((counts - expected) ** 2 / expected))


def numpy_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------- n-ary activations
def test_ternary_activation_levels_and_flat_spots():
    x = Tensor(np.array([-8.0, 0.0, 8.0]), requires_grad=True)
    y = ternary_activation(x)
    np.testing.assert_allclose(y.data, [-1.0, 0.0, 1.0], atol=1e-6)
    (dx,) = mg.grad(y.sum(), x)
    np.testing.assert_allclose(dx.data, [0.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda x: ternary_activation(x),
    lambda x: ternary_activation(x, slope=2.5),
    lambda x: staircase_activation(x, levels=3, slope=4.0),
], ids=["ternary", "ternary-slope", "staircase-3"])
def test_ternary_and_three_level_staircase_are_odd_and_fix_zero(fn):
    x = np.linspace(-3, 3, 61, dtype=np.float32)
    y = fn(Tensor(x)).data
    assert fn(Tensor(np.zeros(1, dtype=np.float32))).data[0] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(fn(Tensor(-x)).data, -y, atol=1e-6)
    assert y.min() > -1 and y.max() < 1


def test_staircase_has_plateaus_at_the_integers_for_a_large_slope():
    levels, slope = 5, 30.0
    ints = staircase_levels(levels).astype(np.float64)  # -2, ..., 2
    x = Tensor(np.concatenate([ints, ints[:-1] + 0.5]), requires_grad=True)
    y = staircase_activation(x, levels=levels, slope=slope)
    np.testing.assert_allclose(y.data[:levels], ints, atol=(levels - 1) * np.exp(-slope / 2))
    (dx,) = mg.grad(y.sum(), x)
    assert np.all(dx.data[:levels] < 0.01)  # flat at the integers
    assert np.all(dx.data[levels:] >= slope / 4)  # steep between them


def test_staircase_approaches_rounding_as_the_slope_grows():
    x = np.linspace(-2.4, 2.4, 97)
    x = x[np.abs(x - np.round(x)) < 0.4]  # away from the thresholds
    target = np.clip(np.floor(x + 0.5), -1, 1)
    errors = [np.abs(staircase_activation(Tensor(x), 3, s).data - target).max()
              for s in (1.0, 4.0, 16.0, 64.0)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-2


def test_staircase_levels_and_range():
    assert list(staircase_levels(2)) == [0, 1]
    assert list(staircase_levels(3)) == [-1, 0, 1]
    assert list(staircase_levels(4, low=0)) == [0, 1, 2, 3]
    y = staircase_activation(Tensor(np.linspace(-50, 50, 11)), levels=4, low=0).data
    assert y.min() >= 0 and y.max() <= 3


def test_three_level_staircase_is_comparable_to_the_ternary_activation():
    x = Tensor(np.linspace(-6, 6, 1201))
    diff = staircase_activation(x, 3, slope=1.4).data - ternary_activation(x).data
    assert np.abs(diff).max() < 0.12


def test_activations_keep_float32():
    x = Tensor(np.linspace(-2, 2, 5, dtype=np.float32))
    assert ternary_activation(x, slope=1.5).dtype == np.float32
    assert staircase_activation(x, 4, slope=2.0).dtype == np.float32


@pytest.mark.parametrize("fn", [
    lambda x: ternary_activation(x, slope=1.3),
    lambda x: staircase_activation(x, levels=4, slope=3.0),
], ids=["ternary", "staircase"])
def test_activation_gradients(fn):
    x = Tensor(np.linspace(-2.3, 2.1, 9), requires_grad=True)
    assert gradcheck(fn, [x])
    assert gradgradcheck(fn, [x])


# ---------------------------------------------------------------------- roundings
def test_stochastic_round_is_unbiased():
    rng = np.random.default_rng(0)
    n = 20_000
    x = np.linspace(-2, 2, 41).astype(np.float32)
    xs = np.repeat(x[:, None], n, axis=1)
    y = StochasticRound.apply(Tensor(xs), u=rng.random(xs.shape)).data
    assert y.dtype == np.float32
    assert np.all((y == np.floor(xs)) | (y == np.floor(xs) + 1))
    f = (x - np.floor(x)).astype(np.float64)
    standard_error = np.sqrt(f * (1 - f) / n)
    assert np.all(np.abs(y.mean(axis=1, dtype=np.float64) - x) <= 4 * standard_error + 1e-6)


def test_deterministic_round_rounds_half_up():
    x = np.array([-1.5, -0.5, -0.49999997, 0.49999997, 0.5, 1.2, 2.5], dtype=np.float32)
    y = DeterministicRound.apply(Tensor(x)).data
    np.testing.assert_array_equal(y, [-1, 0, 0, 0, 1, 1, 3])
    assert y.dtype == np.float32


@pytest.mark.parametrize("stochastic", [True, False])
def test_nary_neuron_straight_through_gradient_is_the_activation_derivative(stochastic):
    pre = Tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    g = np.random.default_rng(1).standard_normal(pre.shape).astype(np.float32)
    for neuron in (NaryNeuron("ternary", slope=1.5), NaryNeuron("staircase", levels=4)):
        y = neuron(pre, rng=np.random.default_rng(2), stochastic=stochastic)
        assert y.dtype == np.float32
        assert set(np.unique(y.data)) <= set(staircase_levels(neuron.levels).tolist())
        (dy,) = mg.grad(y, pre, grad_outputs=g)
        (dp,) = mg.grad(neuron.activate(pre), pre, grad_outputs=g)
        np.testing.assert_allclose(dy.data, dp.data, rtol=1e-6)


def test_nary_neuron_evaluation_rounds_and_annealing_multiplies_the_slope():
    neuron = NaryNeuron("ternary", anneal_rate=1.5)
    assert isinstance(neuron, Neuron)
    pre = Tensor(np.array([[-3.0, -0.2, 0.3, 3.0]], dtype=np.float32))
    np.testing.assert_array_equal(neuron(pre, stochastic=False).data, [[-1, 0, 0, 1]])
    neuron.end_epoch()
    neuron.end_epoch()
    assert neuron.slope == pytest.approx(2.25)


# ---------------------------------------------------------------------- one-hot outputs
@pytest.mark.parametrize("logits", [
    np.zeros((4, 6)),  # every category tied
    np.array([[1e4, 0, -1e4], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]] * 2).reshape(2, 9),
    np.random.default_rng(3).standard_normal((8, 15)) * 5,
], ids=["ties", "extreme", "random"])
def test_one_hot_neurons_output_exactly_one_hot(logits):
    pre = Tensor(logits.astype(np.float32))
    d = 3 if logits.shape[1] % 6 else 6
    rng = np.random.default_rng(4)
    neurons = [OneHotNeuron(d), OneHotNeuron(d, mode="hardmax", temperature=0.3),
               GumbelSoftmaxNeuron(d, hard=True)]
    for neuron in neurons:
        for stochastic in (True, False):
            y = neuron(pre, rng=rng, stochastic=stochastic).data
            assert y.shape == pre.shape and y.dtype == np.float32
            assert_exactly_one_hot(y, d)


def test_argmax_ties_go_to_the_lowest_index():
    probs = Tensor(np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.45, 0.45, 0.0]]))
    np.testing.assert_array_equal(STHardmax.apply(probs).data, [[1, 0, 0, 0], [0, 1, 0, 0]])
    tied = Tensor(np.zeros((1, 4)))
    np.testing.assert_array_equal(st_hardmax_softmax(tied, 0.5).data, [[1, 0, 0, 0]])
    hard = st_gumbel_softmax(tied, 1.0, np.zeros((1, 4)))
    np.testing.assert_array_equal(hard.data, [[1, 0, 0, 0]])
    np.testing.assert_array_equal(argmax_one_hot(np.array([[2.0, 5.0, 5.0]])), [[0, 1, 0]])


def test_inverse_cdf_sampling_at_boundaries_and_with_zero_probabilities():
    quarter = np.full((5, 4), 0.25)
    u = np.array([0.0, 0.25, 0.5, 0.75, np.nextafter(1.0, 0.0)])
    y = STSampledSoftmax.apply(Tensor(quarter), u=u).data
    np.testing.assert_array_equal(y.argmax(axis=1), [0, 1, 2, 3, 3])  # [C_{i-1}, C_i)
    # A CDF total that rounds below 1, and zero-probability categories at both ends.
    probs = np.array([[0.3, 0.3, 0.3999999, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    for u in (0.0, 0.5, 0.9999999, np.nextafter(1.0, 0.0)):
        y = STSampledSoftmax.apply(Tensor(probs), u=np.full(3, u)).data
        assert_exactly_one_hot(y, 4)
        assert np.all(probs[y == 1] > 0)
    # Logits so extreme that most probabilities underflow to exactly 0.
    logits = Tensor(np.array([[-1e4, 0.0, -1e4, -1e4, -1e4]], dtype=np.float32))
    for u in (0.0, 0.5, np.nextafter(1.0, 0.0)):
        y = st_sampled_softmax(logits, 1.0, np.array([u])).data
        np.testing.assert_array_equal(y, [[0, 1, 0, 0, 0]])


def test_sampling_frequencies_match_the_softmax_probabilities():
    n, tau = 20_000, 0.7
    logits = np.array([0.3, -0.4, 1.0, 0.0, 0.6], dtype=np.float32)
    probs = numpy_softmax(logits.astype(np.float64) / tau)
    pre = Tensor(np.tile(logits, (n, 1)))
    neuron = OneHotNeuron(5, temperature=tau)
    counts = neuron(pre, rng=np.random.default_rng(5)).data.sum(axis=0)
    assert chi_square(counts, probs) < CHI2_4DOF_0999
    # The same test rejects a sampler with the temperature mis-applied (z * tau, not z / tau).
    wrong = Tensor(numpy_softmax(np.tile(logits, (n, 1)) * tau))
    u = np.random.default_rng(5).random(n)
    wrong_counts = STSampledSoftmax.apply(wrong, u=u).data.sum(axis=0)
    assert chi_square(wrong_counts, probs) > CHI2_4DOF_0999


def test_hard_gumbel_samples_follow_softmax_of_the_logits():
    n = 20_000
    logits = np.array([0.3, -0.4, 1.0, 0.0, 0.6])
    noise = gumbel_from_uniform(np.random.default_rng(6).random((n, 5)))
    counts = st_gumbel_softmax(Tensor(np.tile(logits, (n, 1))), 0.5, noise).data.sum(axis=0)
    assert chi_square(counts, numpy_softmax(logits)) < CHI2_4DOF_0999


# ---------------------------------------------------------------------- ST gradients
@pytest.mark.parametrize("tau", [1.0, 0.4, 2.5])
def test_st_one_hot_gradient_is_the_softmax_vjp(tau):
    rng = np.random.default_rng(7)
    logits = Tensor(rng.standard_normal((3, 4, 5)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal(logits.shape).astype(np.float32)
    (expected,) = mg.grad(mg.softmax(logits / tau), logits, grad_outputs=g)
    sampled = st_sampled_softmax(logits, tau, rng.random((3, 4)))
    hardmax = st_hardmax_softmax(logits, tau)
    for y in (sampled, hardmax):
        (dz,) = mg.grad(y, logits, grad_outputs=g)
        assert dz.dtype == np.float32
        np.testing.assert_allclose(dz.data, expected.data, rtol=1e-5, atol=1e-7)
    # The same through the neurons, which work on flattened (batch, n * d) layers.
    pre = Tensor(logits.data.reshape(3, 20), requires_grad=True)
    (expected,) = mg.grad(mg.softmax(pre.reshape(3, 4, 5) / tau).reshape(3, 20), pre,
                          grad_outputs=g.reshape(3, 20))
    for mode in ("sample", "hardmax"):
        y = OneHotNeuron(5, mode=mode, temperature=tau)(pre, rng=rng)
        (dpre,) = mg.grad(y, pre, grad_outputs=g.reshape(3, 20))
        np.testing.assert_allclose(dpre.data, expected.data, rtol=1e-5, atol=1e-7)


def test_st_gumbel_softmax_function_and_detach_trick_agree():
    rng = np.random.default_rng(8)
    logits = Tensor(rng.standard_normal((6, 4)), requires_grad=True)
    noise = gumbel_from_uniform(rng.random((6, 4)))
    g = Tensor(rng.standard_normal((6, 4)))
    v = Tensor(rng.standard_normal((6, 4)))
    explicit = st_gumbel_softmax(logits, 0.5, noise)
    detached = st_gumbel_softmax_detach(logits, 0.5, noise)
    assert isinstance(explicit._ctx, STGumbelSoftmax)
    np.testing.assert_array_equal(explicit.data, detached.data)
    np.testing.assert_array_equal(explicit.data, argmax_one_hot(logits.data + noise))
    first, second = [], []
    for y in (explicit, detached):
        (dz,) = mg.grad(y, logits, grad_outputs=g, create_graph=True)
        (ddz,) = mg.grad((dz * v).sum(), logits)
        first.append(dz.data)
        second.append(ddz.data)
    np.testing.assert_allclose(first[0], first[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(second[0], second[1], rtol=1e-10, atol=1e-12)
    (relaxed,) = mg.grad(gumbel_softmax(logits, 0.5, noise), logits, grad_outputs=g)
    np.testing.assert_allclose(first[0], relaxed.data, rtol=1e-10, atol=1e-12)


def test_gumbel_softmax_gradients():
    rng = np.random.default_rng(9)
    logits = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    noise = gumbel_from_uniform(rng.random((3, 4)))
    assert gradcheck(lambda z: gumbel_softmax(z, 0.7, noise), [logits])


def test_gumbel_softmax_approaches_the_one_hot_sample_as_tau_falls():
    rng = np.random.default_rng(10)
    z = rng.standard_normal((50, 6))
    noise = gumbel_from_uniform(rng.random((50, 6)))
    # Near-ties converge arbitrarily slowly: keep rows whose top two z + G differ by > 0.1.
    perturbed = np.sort(z + noise, axis=-1)
    clear = perturbed[:, -1] - perturbed[:, -2] > 0.1
    assert clear.sum() >= 40
    logits, noise = Tensor(z[clear]), noise[clear]
    hard = argmax_one_hot(logits.data + noise)
    gaps = [np.abs(gumbel_softmax(logits, tau, noise).data - hard).max()
            for tau in (1.0, 0.5, 0.1, 0.01)]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-3


def test_gumbel_from_uniform_is_finite_at_the_ends():
    g = gumbel_from_uniform(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(g))
    assert g[1] == pytest.approx(-np.log(np.log(2.0)))
    assert gumbel_from_uniform(np.array([0.0, 1.0], dtype=np.float32)).dtype == np.float32


def test_gumbel_neuron_relaxed_output_and_evaluation():
    pre = Tensor(np.random.default_rng(11).standard_normal((4, 12)).astype(np.float32))
    neuron = GumbelSoftmaxNeuron(3, temperature=2.0, anneal_rate=2.0)
    soft = neuron(pre, rng=np.random.default_rng(12)).data
    assert soft.dtype == np.float32
    np.testing.assert_allclose(soft.reshape(4, 4, 3).sum(axis=-1), 1.0, rtol=1e-6)
    assert np.all((soft > 0) & (soft < 1))
    evaluation = neuron(pre, stochastic=False).data
    np.testing.assert_array_equal(evaluation, argmax_one_hot(pre.data.reshape(4, 4, 3))
                                  .reshape(4, 12))
    neuron.end_epoch()
    assert neuron.temperature == pytest.approx(1.0)


def test_temperature_annealing_divides_the_temperature():
    neuron = OneHotNeuron(5, temperature=1.0, anneal_rate=1.2)
    for _ in range(3):
        neuron.end_epoch()
    assert neuron.temperature == pytest.approx(1 / 1.2 ** 3)
    fixed = OneHotNeuron(5)
    fixed.end_epoch()
    assert fixed.temperature == 1.0


# ---------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    x = Tensor(np.zeros((2, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="levels must be at least 2"):
        staircase_activation(x, levels=1)
    with pytest.raises(ValueError, match="slope must be a finite number > 0"):
        staircase_activation(x, slope=0.0)
    with pytest.raises(ValueError, match="slope must be a finite number > 0"):
        ternary_activation(x, slope=-1.0)
    with pytest.raises(ValueError, match="exactly 3 levels"):
        NaryNeuron("ternary", levels=4)
    with pytest.raises(ValueError, match="activation must be one of"):
        NaryNeuron("tanh")
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got 0"):
        OneHotNeuron(3, temperature=0)
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got -1"):
        gumbel_softmax(x, -1.0, np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"mode must be one of"):
        OneHotNeuron(3, mode="argmax")
    with pytest.raises(ValueError, match=r"layer width 6 is not divisible by d=4"):
        OneHotNeuron(4)(x, stochastic=False)
    with pytest.raises(ValueError, match=r"layer width 6 is not divisible by d=4"):
        GumbelSoftmaxNeuron(4)(x, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="stochastic=True needs rng=np.random.Generator"):
        OneHotNeuron(3)(x)
    with pytest.raises(TypeError, match="stochastic=True needs rng=np.random.Generator"):
        GumbelSoftmaxNeuron(3)(x, rng=0)
    with pytest.raises(TypeError, match="stochastic=True needs rng=np.random.Generator"):
        NaryNeuron()(x)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        STSampledSoftmax.apply(Tensor(np.array([[1.2, -0.2]])), u=np.array([0.5]))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        STHardmax.apply(Tensor(np.array([[np.nan, 0.5]])))
    with pytest.raises(ValueError, match=r"must sum to 1, but the row at \(1,\) sums to 0.8"):
        STHardmax.apply(Tensor(np.array([[0.5, 0.5], [0.4, 0.4]])))
    with pytest.raises(ValueError, match=r"uniform noise u must lie in \[0, 1\)"):
        STSampledSoftmax.apply(Tensor(np.array([[0.5, 0.5]])), u=np.array([1.0]))
    with pytest.raises(ValueError, match="one value per row"):
        STSampledSoftmax.apply(Tensor(np.array([[0.5, 0.5]])), u=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="uniform noise u has shape"):
        StochasticRound.apply(x, u=np.zeros(3))
