"""ARM and DisARM against the exact gradient, and DisARM's variance against ARM's.

- On the toy problem ``E[(b - t)^2]`` (one unit, REBAR's t = 0.45 and RELAX's t = 0.499) and
  on the tiny sigmoid belief network of ``test_sbn.py`` (1 and 2 stochastic layers), ARM and
  DisARM pass the z-test against enumeration, and deliberately broken variants fail it.
  (The oracle problems of ``test_estimator_oracle.py`` carry ARM and DisARM in its table.)
- DisARM is ARM's conditional expectation given the pair ``(b, b~)``, so in every component
  its variance is at most ARM's. Both are evaluated on the *same* noise, and the gap
  ``Var[ARM] - Var[DisARM] = E[ARM^2] - E[DisARM^2]`` (equal means) is estimated from the
  paired draws with its standard error.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import X, tiny_model, z_scores

from minigrad.estimators.antithetic import antithetic_samples, arm, disarm
from minigrad.estimators.diagnostics import bias_z_scores
from minigrad.estimators.exact import exact_gradient
from minigrad.estimators.score_function import reinforce_loo
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor

Z_MAX = 4.0
# No logit of exactly 0: there one unit's pair always differs and DisARM is exact, with
# zero variance (a test of its own below), which a z-test cannot handle.
TOY_LOGITS = np.array([-2.0, -0.3, 0.1, 0.7, 2.5])


def toy_objective(t: float):
    """f(b) = (b - t)^2 for one unit per example: the toy problem of REBAR and RELAX."""
    return lambda b: ((b - t) ** 2).sum(axis=1)


def toy_estimates(estimator, t: float, repeats: int, seed: int = 0):
    """``repeats`` estimates at each toy logit, shape (repeats, logits), and the exact
    gradient ``sigmoid'(a) (1 - 2t)``."""
    logits = Tensor(np.tile(TOY_LOGITS, repeats)[:, None])
    u = np.random.default_rng(seed).random(logits.shape)
    g = estimator(logits, toy_objective(t), u).reshape(repeats, len(TOY_LOGITS))
    exact = exact_gradient(Tensor(TOY_LOGITS[:, None]), toy_objective(t)).data.ravel()
    return g, exact


# ---------------------------------------------------------------------- broken variants
def disarm_other_sign(logits, f, u):
    """(-1)^{b~_i} instead of (-1)^{b_i}: where the pair differs, that is minus DisARM."""
    b, b_tilde = antithetic_samples(logits, u)
    with_b = disarm(logits, f, u)
    return np.where(b != b_tilde, -with_b, with_b)


def disarm_without_weight(logits, f, u):
    """DisARM with the factor sigmoid(|a|) dropped: too large by 1 / sigmoid(|a|)."""
    weight = sigmoid(Tensor(np.abs(logits.data))).data
    return disarm(logits, f, u) / weight


def arm_mirror_logit_sign(logits, f, u):
    """ARM with b~ = 1[u > sigmoid(a)] (the logit's sign dropped in sigmoid(-a)): then
    b~ = 1 - b, which is not Bernoulli(sigmoid(a)). For a single unit every f is affine in
    b and this stays unbiased; with several interacting units it is biased."""
    b, _ = antithetic_samples(logits, u)
    with_b, with_flipped = (f(Tensor(s)).data for s in (b, 1.0 - b))
    return (with_flipped - with_b)[:, None] * (u - 0.5)


UNBIASED = {"ARM": arm, "DisARM": disarm}
BROKEN_TOY = {"DisARM, (-1)^b~": disarm_other_sign,
              "DisARM without sigmoid(|a|)": disarm_without_weight}
BROKEN_SBN = {**BROKEN_TOY, "ARM, sigmoid(a) for sigmoid(-a)": arm_mirror_logit_sign}


# ---------------------------------------------------------------------- the toy problem
@pytest.mark.parametrize("t", [0.45, 0.499])
@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_toy_problem_unbiased(name, t):
    g, exact = toy_estimates(UNBIASED[name], t, repeats=40_000)
    z = bias_z_scores(g, exact)
    assert np.max(np.abs(z)) <= Z_MAX, z


@pytest.mark.parametrize("t", [0.45, 0.499])
@pytest.mark.parametrize("name", sorted(BROKEN_TOY))
def test_toy_problem_rejects_broken_variants(name, t):
    g, exact = toy_estimates(BROKEN_TOY[name], t, repeats=40_000)
    assert np.max(np.abs(bias_z_scores(g, exact))) > Z_MAX


def test_toy_problem_disarm_is_exact_at_logit_zero():
    """At a = 0 the pair always differs and sigmoid(|a|) = 1/2: every DisARM estimate is
    (1/2)(1 - 2t)(1/2) = sigmoid'(0)(1 - 2t), the exact gradient; ARM's still varies."""
    logits = Tensor(np.zeros((1000, 1)))
    u = np.random.default_rng(2).random(logits.shape)
    g = disarm(logits, toy_objective(0.45), u)
    np.testing.assert_allclose(g, 0.25 * (1 - 2 * 0.45), rtol=1e-12)
    assert arm(logits, toy_objective(0.45), u).std() > 0.01


def test_toy_problem_reinforce_loo_two_samples():
    def loo2(logits, f, u):
        second = np.random.default_rng(11).random(u.shape)
        return reinforce_loo(logits, f, np.stack([u, second]))

    g, exact = toy_estimates(loo2, 0.45, repeats=40_000)
    assert np.max(np.abs(bias_z_scores(g, exact))) <= Z_MAX


def variance_gap(first: np.ndarray, second: np.ndarray, exact: np.ndarray):
    """``Var[first] - Var[second]`` per component from paired draws of two estimators with
    the same mean ``exact``, and its standard error."""
    d = (first - exact) ** 2 - (second - exact) ** 2
    return d.mean(axis=0), d.std(axis=0, ddof=1) / np.sqrt(len(d))


@pytest.mark.parametrize("t", [0.45, 0.499])
def test_toy_problem_disarm_variance_below_arm(t):
    """In one dimension ARM's excess variance given a differing pair is that of u over the
    tail it fell in, (1 - p)^2 / 12 for p = sigmoid(|a|) (up to (1 - 2t)^2): large near
    a = 0, a fraction of a percent at |a| = 2.5, so those logits need many draws."""
    a, d = (toy_estimates(fn, t, repeats=400_000, seed=3) for fn in (arm, disarm))
    assert np.all(d[0].var(axis=0) <= a[0].var(axis=0))
    gap, se = variance_gap(a[0], d[0], a[1])
    assert np.all(gap > Z_MAX * se), gap / se
    p = sigmoid(Tensor(np.abs(TOY_LOGITS))).data
    predicted = (1 - 2 * t) ** 2 * 2 * (1 - p) * (1 - p) ** 2 / 12
    np.testing.assert_array_less(np.abs(gap - predicted), Z_MAX * se)


# ---------------------------------------------------------------------- the tiny SBN
def _per_layer(estimator):
    return lambda logits, f, u, x, rng: estimator(logits, f, u[0])


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_tiny_sbn_unbiased(name, n_layers):
    z = z_scores(tiny_model(n_layers), _per_layer(UNBIASED[name]))
    assert np.max(np.abs(z)) <= Z_MAX, f"{name}: max |z| = {np.max(np.abs(z)):.2f}"


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("name", sorted(BROKEN_SBN))
def test_tiny_sbn_rejects_broken_variants(name, n_layers):
    z = z_scores(tiny_model(n_layers), _per_layer(BROKEN_SBN[name]))
    assert np.max(np.abs(z)) > Z_MAX, f"{name}: max |z| = {np.max(np.abs(z)):.2f}"


def sbn_logit_estimates(model, estimator, layer: int, rows: int, seed: int):
    """One estimate per row of d E[f] / d (layer's logits), the layers below sampled."""
    xs = np.repeat(X, rows, axis=0)
    u = model.noise(np.random.default_rng(seed), rows)
    logits, samples = model.sample_encoder(xs, u)
    f = model.learning_signal(xs, samples, layer, u, logits)
    return estimator(logits[layer].detach(), f, u[layer])


@pytest.mark.parametrize("n_layers", [1, 2])
def test_tiny_sbn_disarm_variance_below_arm(n_layers):
    """Per logit component of every layer (the parameters' gradients are linear maps of
    these, so the ordering carries over); the gap is clear by many standard errors."""
    model = tiny_model(n_layers)
    for layer in range(n_layers):
        a, d = (sbn_logit_estimates(model, fn, layer, 100_000, seed=4)
                for fn in (arm, disarm))
        assert np.all(d.var(axis=0) <= a.var(axis=0))
        # both are unbiased: centre them on their pooled mean
        gap, se = variance_gap(a, d, (a.mean(axis=0) + d.mean(axis=0)) / 2)
        assert np.all(gap > Z_MAX * se), (layer, gap / se)


def test_estimators_are_repeatable_and_check_their_noise():
    logits = Tensor(np.array([[0.3, -1.0], [2.0, 0.0]]))

    def f(b):
        return (b * Tensor(np.array([1.0, -2.0]))).sum(axis=1) ** 2

    u = np.random.default_rng(0).random((2, 2))
    for fn in (arm, disarm):
        np.testing.assert_array_equal(fn(logits, f, u), fn(logits, f, u))
        assert fn(logits, f, u).shape == logits.shape
        with pytest.raises(ValueError, match="shape"):
            fn(logits, f, u[:, :1])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            fn(logits, f, u + 1.0)
        with pytest.raises(ValueError, match="one value per example"):
            fn(logits, lambda b: b, u)


def test_noise_at_the_ends_of_the_interval():
    """float32 noise can round to exactly 1.0 (and 1 - u is 1 for u = 0): both ends give
    valid samples, the same as noise just inside the interval."""
    logits = Tensor(np.array([[0.5, -0.5]], dtype=np.float32))
    b, b_tilde = antithetic_samples(logits, np.array([[0.0, 1.0]], dtype=np.float32))
    np.testing.assert_array_equal(b, [[1.0, 0.0]])
    np.testing.assert_array_equal(b_tilde, [[0.0, 1.0]])
    inside = np.array([[1e-7, 1 - 1e-7]])
    np.testing.assert_array_equal(antithetic_samples(logits, inside)[0], b)


def test_disarm_is_zero_where_the_pair_agrees_and_exact_for_one_unit():
    """For one unit and a differing pair, DisARM is (1/2) (f(1) - f(0)) sigmoid(|a|); over
    the probability 2 min(p, 1 - p) of differing, its mean is p (1 - p) (f(1) - f(0))."""
    logits = Tensor(np.array([[0.8], [0.8], [-1.2]]))
    u = np.array([[0.1], [0.5], [0.9]])          # differs, agrees (both 1), differs

    def f(b):
        return 3.0 * b.sum(axis=1) - 1.0

    b, b_tilde = antithetic_samples(logits, u)
    np.testing.assert_array_equal((b != b_tilde).ravel(), [True, False, True])
    g = disarm(logits, f, u).ravel()
    expected = 0.5 * 3.0 / (1 + np.exp(-np.abs(logits.data.ravel())))
    np.testing.assert_allclose(g, np.where([True, False, True], expected, 0.0))
