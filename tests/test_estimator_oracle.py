"""Every estimator of the library against the exact gradient by enumeration.

One table, :data:`ESTIMATORS`, lists each estimator as ``name: Row(estimate, problem,
unbiased, ...)``; a new estimator joins with one line. Each row is run on a small problem
(3 examples x 3 Bernoulli units, or 2 examples x 2 categorical units of 3 classes) with
``R`` independent single-sample estimates per example from a fixed seed, and its mean is
compared with the exact gradient (:mod:`minigrad.estimators.exact`) in standard errors
(:func:`~minigrad.estimators.diagnostics.bias_z_scores`):

- an estimator the library calls unbiased must have ``|z| <= 4`` in every component;
- a biased one must show its bias: some ``|z| > 4``, printed with the bias;
- three broken estimators (sign flipped, uncentred score, half scale) must be rejected by
  the unbiased test, which shows it can fail. The smallest of their biases is a quarter of
  the exact gradient, which is ``R`` large enough to be tens of standard errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from minigrad.estimators.binary import hard_sigmoid, pass_through_sigmoid, straight_through
from minigrad.estimators.diagnostics import EMALogVariance, bias_z_scores, summarize_estimates
from minigrad.estimators.exact import (exact_expectation, exact_expectation_categorical,
                                       exact_gradient, exact_gradient_categorical)
from minigrad.estimators.onehot import (gumbel_softmax_estimate, st_gumbel_softmax_estimate,
                                        st_hardmax_estimate, straight_through_categorical)
from minigrad.estimators.relaxed import (RelaxSurrogate, concrete_relaxation, coupled_noise,
                                         rebar, relax)
from minigrad.estimators.score_function import (MovingAverageBaseline, ReinforceNeuron,
                                                VarianceAdjustingBaseline, bernoulli_sample,
                                                reinforce, reinforce_categorical)
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor, grad

R = 20_000
Z_MAX = 4.0

# ---------------------------------------------------------------------- the two problems
A = np.array([[0.8, -0.6, 0.3],
              [-0.9, 0.5, 0.7],
              [0.2, -0.3, 0.9]])
W = np.array([1.0, -2.0, 1.5])
T = np.array([0.5, -1.0, 1.0])
Z = np.array([[[0.5, -0.4, 0.1], [-0.7, 0.2, 0.6]],
              [[0.0, 0.9, -0.3], [0.4, -0.5, 0.3]]])
V = np.array([[1.0, -1.5, 0.5], [2.0, 0.0, -1.0]])
T_CAT = np.array([0.3, -0.8])
OFFSET = 3.0


def bernoulli_loss(b: Tensor) -> Tensor:
    """(b . w - t_n)^2 + 3 for a batch made of copies of the 3 examples."""
    return (b @ Tensor(W) - Tensor(np.tile(T, b.shape[0] // 3))) ** 2 + OFFSET


def categorical_loss(b: Tensor) -> Tensor:
    """(sum_ij b_ij v_ij - t_n)^2 + 3; ``b`` one-hot (or relaxed) of shape (batch, 2, 3)."""
    s = (b * Tensor(V)).sum(axis=(1, 2))
    return (s - Tensor(np.tile(T_CAT, b.shape[0] // 2))) ** 2 + OFFSET


@dataclass
class Problem:
    logits: np.ndarray
    f: Callable[[Tensor], Tensor]
    exact: Callable  # (logits, f, probability) -> gradient Tensor


BERNOULLI = Problem(A, bernoulli_loss, lambda a, f, p: exact_gradient(a, f, p))
CATEGORICAL = Problem(Z, categorical_loss, lambda z, f, p: exact_gradient_categorical(z, f))


def warmed(baseline, seed: int = 100):
    """A baseline trained on independent samples, then used as a constant (unbiased)."""
    rng = np.random.default_rng(seed)
    a = Tensor(np.tile(A, (200, 1)))
    for _ in range(50):
        b = bernoulli_sample(a, rng.random(a.shape))
        baseline.update(bernoulli_loss(Tensor(b)).data, b - sigmoid(a).data)
    return baseline.value()


C_MOVING, C_BENGIO = warmed(MovingAverageBaseline()), warmed(VarianceAdjustingBaseline())


@dataclass
class Row:
    estimate: Callable           # (logits Tensor, f, u) -> estimate Tensor
    problem: Problem
    unbiased: bool
    probability: Callable = sigmoid   # the Bernoulli probability the exact gradient uses
    noise: str = "per unit"           # or "per logit" (Gumbel noise)


def slope_2(a):
    return sigmoid(a * 2.0)


ESTIMATORS = {
    "REINFORCE": Row(lambda a, f, u: reinforce(a, f, u), BERNOULLI, True),
    "REINFORCE, constant baseline": Row(
        lambda a, f, u: reinforce(a, f, u, baseline=OFFSET), BERNOULLI, True),
    "REINFORCE, moving-average baseline": Row(
        lambda a, f, u: reinforce(a, f, u, baseline=C_MOVING), BERNOULLI, True),
    "REINFORCE, variance-adjusting baseline": Row(
        lambda a, f, u: reinforce(a, f, u, baseline=C_BENGIO), BERNOULLI, True),
    "REINFORCE, categorical": Row(reinforce_categorical, CATEGORICAL, True),
    "ST sigmoid-adjusted": Row(straight_through, BERNOULLI, False),
    "ST pass-through": Row(
        lambda a, f, u: straight_through(a, f, u, pass_through_sigmoid), BERNOULLI, False),
    "ST slope 2": Row(lambda a, f, u: straight_through(a, f, u, slope_2), BERNOULLI, False,
                      probability=slope_2),
    "ST hard sigmoid": Row(lambda a, f, u: straight_through(a, f, u, hard_sigmoid),
                           BERNOULLI, False, probability=hard_sigmoid),
    "ST sampled softmax": Row(straight_through_categorical, CATEGORICAL, False),
    "ST hardmax": Row(st_hardmax_estimate, CATEGORICAL, False),
    "ST Gumbel-softmax": Row(st_gumbel_softmax_estimate, CATEGORICAL, False,
                             noise="per logit"),
    "Gumbel-softmax, relaxed": Row(gumbel_softmax_estimate, CATEGORICAL, False,
                                   noise="per logit"),
    "REBAR": Row(lambda a, f, u: rebar(a, f, u, coupled_noise(a, u)), BERNOULLI, True),
    "REBAR, independent v": Row(lambda a, f, u: rebar(
        a, f, u, np.random.default_rng(17).random(a.shape)), BERNOULLI, True),
    "REBAR, Concrete relaxation": Row(lambda a, f, u: rebar(
        a, f, u, coupled_noise(a, u), relaxation=concrete_relaxation), BERNOULLI, True),
    "dynamic REBAR": Row(lambda a, f, u: rebar(
        a, f, u, coupled_noise(a, u), Tensor(np.array(0.7), requires_grad=True),
        Tensor(np.array(np.log(0.3)), requires_grad=True)), BERNOULLI, True),
    "RELAX": Row(lambda a, f, u: relax(
        a, f, u, coupled_noise(a, u), np.log(0.5),
        RelaxSurrogate(3, (8,), rng=5, dtype=np.float64)), BERNOULLI, True),
}


def uncentred_score(a, f, u):
    b = bernoulli_sample(a, u)
    return Tensor(b) * f(Tensor(b)).reshape(-1, 1)


BROKEN = {
    "sign flipped": Row(lambda a, f, u: -reinforce(a, f, u), BERNOULLI, True),
    "uncentred score": Row(uncentred_score, BERNOULLI, True),
    "half scale": Row(lambda a, f, u: reinforce(a, f, u) * 0.5, BERNOULLI, True),
}


def noise_for(row: Row, shape: tuple[int, ...], rng) -> np.ndarray:
    per_logit = row.noise == "per logit" or row.problem is BERNOULLI
    return rng.random(shape if per_logit else shape[:-1])


def run(row: Row, seed: int = 0, repeats: int = R):
    """``repeats`` estimates per example, stacked on axis 0, and the exact gradient."""
    base = row.problem.logits
    logits = Tensor(np.tile(base, (repeats,) + (1,) * (base.ndim - 1)))
    u = noise_for(row, logits.shape, np.random.default_rng(seed))
    g = row.estimate(logits, row.problem.f, u)
    assert g.shape == logits.shape
    exact = row.problem.exact(Tensor(base), row.problem.f, row.probability)
    return g.data.reshape((repeats,) + base.shape), exact.data


# ---------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_against_the_exact_gradient(name):
    row = ESTIMATORS[name]
    estimates, exact = run(row)
    summary = summarize_estimates(estimates, exact)
    print(f"\n{name}: largest |z| {summary.largest_abs_z:.1f}, bias norm "
          f"{summary.bias_norm:.4f}, rms std {summary.rms_std:.3f}")
    if row.unbiased:
        assert summary.largest_abs_z <= Z_MAX, summary.z
    else:
        assert summary.largest_abs_z > Z_MAX, summary.z


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_oracle_rejects_a_broken_estimator(name):
    estimates, exact = run(BROKEN[name])
    z = bias_z_scores(estimates, exact)
    print(f"\n{name}: largest |z| {np.abs(z).max():.1f}")
    assert np.abs(z).max() > Z_MAX


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_same_sample_gives_the_same_estimate_twice(name):
    row = ESTIMATORS[name]
    base = row.problem.logits
    logits = Tensor(base.copy(), requires_grad=True)
    u = noise_for(row, logits.shape, np.random.default_rng(1))
    first = row.estimate(logits, row.problem.f, u).data.copy()
    np.testing.assert_array_equal(row.estimate(logits, row.problem.f, u).data, first)


def test_a_neurons_estimate_twice_changes_nothing():
    neuron = ReinforceNeuron(baseline=True)
    pre = Tensor(np.tile(A, (4, 1)), requires_grad=True)
    sampled = []
    b = neuron(pre, rng=np.random.default_rng(2), sampled=sampled)
    loss = bernoulli_loss(b).data
    neuron.update(sampled[0], loss)
    state = {k: v.copy() for k, v in neuron.state_dict().items()}
    first = neuron.estimate(sampled[0], loss).data.copy()
    np.testing.assert_array_equal(neuron.estimate(sampled[0], loss).data, first)
    for k, v in neuron.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


# ---------------------------------------------------------------------- differentiability
def central_difference(fn, x: np.ndarray, h: float) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step.flat[i] = h
        out.flat[i] = (fn(x + step) - fn(x - step)) / (2 * h)
    return out


def fd_tolerance(value: float, h: float) -> float:
    # round-off of a central difference: a few ulps of the function value, divided by h
    return 10 * np.finfo(np.float64).eps * max(abs(value), 1.0) / h


def test_reinforce_is_differentiable_in_its_baseline():
    u = np.random.default_rng(3).random(A.shape)
    a = Tensor(A)
    c0 = np.array([2.0, 2.5, 3.5])

    def second_moment(c: np.ndarray) -> float:
        return float((reinforce(a, bernoulli_loss, u, baseline=Tensor(c)) ** 2).sum().item())

    c = Tensor(c0, requires_grad=True)
    g = reinforce(a, bernoulli_loss, u, baseline=c)
    (d_c,) = grad((g ** 2).sum(), [c])
    h = 1e-5   # sum(g^2) is quadratic in c: the central difference has no truncation error
    numeric = central_difference(second_moment, c0, h)
    np.testing.assert_allclose(d_c.data, numeric, rtol=0,
                               atol=fd_tolerance(second_moment(c0), h))


def test_the_exact_gradient_reaches_the_parameters_of_f():
    theta0 = np.array([0.7, -1.2, 0.4])
    a = Tensor(A)

    def f_of(theta):
        return lambda b: (b @ theta - Tensor(T)) ** 2 + OFFSET

    def total(values: np.ndarray) -> float:
        return float(exact_expectation(a, f_of(Tensor(values))).sum().item())

    theta = Tensor(theta0, requires_grad=True)
    (d_theta,) = grad(exact_expectation(a, f_of(theta)).sum(), [theta])
    # the expectation is quadratic in theta, so only round-off limits the comparison
    h = 1e-5
    numeric = central_difference(total, theta0, h)
    np.testing.assert_allclose(d_theta.data, numeric, rtol=0, atol=fd_tolerance(total(theta0), h))


def test_the_exact_expectation_is_the_weighted_sum_by_hand():
    p = 1 / (1 + np.exp(-A[0]))
    configs = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=float)
    weights = np.prod(np.where(configs == 1, p, 1 - p), axis=1)
    by_hand = weights @ ((configs @ W - T[0]) ** 2 + OFFSET)
    oracle = exact_expectation(Tensor(A), bernoulli_loss).data[0]
    np.testing.assert_allclose(oracle, by_hand, rtol=1e-13)
    z = Tensor(Z)
    probs = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)
    by_hand_cat = sum(probs[0, 0, i] * probs[0, 1, j] * ((V[0, i] + V[1, j] - T_CAT[0]) ** 2
                                                         + OFFSET)
                      for i in range(3) for j in range(3))
    oracle_cat = exact_expectation_categorical(z, categorical_loss).data[0]
    np.testing.assert_allclose(oracle_cat, by_hand_cat, rtol=1e-13)


# ---------------------------------------------------------------------- the variance tracker
def test_ema_log_variance_tracks_a_known_variance():
    rng = np.random.default_rng(5)
    tracker = EMALogVariance(decay=0.999)
    for _ in range(20_000):
        tracker.update(rng.normal(1.0, 2.0, size=4))
    # the EMA averages about 1 / (1 - decay) = 1000 draws: the variance is known to ~5%
    assert abs(tracker.log_variance - np.log(4.0)) < 0.15
