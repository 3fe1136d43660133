"""Every estimator of the library against the exact gradient by enumeration.

The table is the library's spec table (:data:`minigrad.estimators.catalogue.SPECS`): each
entry is run on a small problem (3 examples x 3 Bernoulli units, or 2 examples x 2
categorical units of 3 classes) with ``R`` independent single-sample estimates per example
from a fixed seed, and its mean is compared with the exact gradient
(:mod:`minigrad.estimators.exact`) in standard errors
(:func:`~minigrad.estimators.diagnostics.bias_z_scores`):

- an estimator the library calls unbiased must have ``|z| <= 4`` in every component;
- a biased one must show its bias: some ``|z| > 4``, printed with the bias;
- three broken estimators (sign flipped, uncentred score, half scale) must be rejected by
  the unbiased test, which shows it can fail. The smallest of their biases is a quarter of
  the exact gradient, which is ``R`` large enough to be tens of standard errors.

Every entry an SBN can train with is also run on a 2-layer structured-prediction SBN, as
the training step calls it (its control made for the model: dynamic REBAR's and RELAX's
too), against the encoder gradient by enumeration; there the first layer reaches the
objective only through a hard resample. A sign-flipped REINFORCE shows that check can fail.

A new estimator joins by adding one entry to the spec table.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.antithetic import disarm
from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A
from minigrad.estimators.catalogue import SPECS, OFFSET, draw_noise, make_control, measure
from minigrad.estimators.catalogue import EstimatorSpec
from minigrad.estimators.catalogue import CATEGORICAL_LOGITS as Z
from minigrad.estimators.catalogue import CATEGORICAL_TARGETS as T_CAT
from minigrad.estimators.catalogue import CATEGORICAL_VALUES as V
from minigrad.estimators.catalogue import TARGETS as T
from minigrad.estimators.catalogue import WEIGHTS as W
from minigrad.estimators.catalogue import bernoulli_loss, categorical_loss
from minigrad.estimators.diagnostics import EMALogVariance
from minigrad.estimators.exact import exact_expectation, exact_expectation_categorical
from minigrad.estimators.score_function import (MovingAverageBaseline, ReinforceNeuron,
                                                VarianceAdjustingBaseline, bernoulli_sample,
                                                reinforce)
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor, grad

R = 20_000
Z_MAX = 4.0
ESTIMATORS = {entry.name: entry for entry in SPECS}


def warmed(baseline, seed: int = 100):
    """A baseline trained on independent samples, then used as a constant (unbiased)."""
    rng = np.random.default_rng(seed)
    a = Tensor(np.tile(A, (200, 1)))
    for _ in range(50):
        b = bernoulli_sample(a, rng.random(a.shape))
        baseline.update(bernoulli_loss(Tensor(b)).data, b - sigmoid(a).data)
    return baseline.value()


C_MOVING, C_BENGIO = warmed(MovingAverageBaseline()), warmed(VarianceAdjustingBaseline())
# Baselines learned by the library's baseline objects, used as constants: unbiased too.
LEARNED_BASELINES = {
    "REINFORCE, moving-average baseline": C_MOVING,
    "REINFORCE, variance-adjusting baseline": C_BENGIO,
}


def Entry(name, function, estimate, *args, **kwargs):
    """A spec for a test-only estimator of the old three-argument form."""
    return EstimatorSpec(name, function, lambda a, f, u, control, x: estimate(a, f, u),
                         *args, **kwargs)


def _with_baseline(c):
    return Entry(f"REINFORCE, baseline {c}", reinforce,
                 lambda a, f, u: reinforce(a, f, u, baseline=c), "score function", True,
                 "1", "only f(b)", "04_binary_neurons")


def uncentred_score(a, f, u):
    b = bernoulli_sample(a, u)
    return b * f(Tensor(b)).data.reshape(-1, 1)


def _broken(name, estimate):
    return Entry(name, reinforce, estimate, "broken", True, "1", "only f(b)", "")


BROKEN = {
    "sign flipped": _broken("sign flipped", lambda a, f, u: -reinforce(a, f, u)),
    "uncentred score": _broken("uncentred score", uncentred_score),
    "half scale": _broken("half scale", lambda a, f, u: reinforce(a, f, u) * 0.5),
    "DisARM, sign flipped": _broken("DisARM, sign flipped", lambda a, f, u: -disarm(a, f, u)),
}


# ---------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_against_the_exact_gradient(name):
    entry = ESTIMATORS[name]
    m = measure(entry, samples=R)
    print(f"\n{name}: largest |z| {m.largest_abs_z:.1f}, bias norm {m.bias_norm:.4f}, "
          f"mean variance {m.mean_variance:.3f}")
    if entry.unbiased:
        assert m.largest_abs_z <= Z_MAX, (m.mean, m.exact)
    else:
        assert m.largest_abs_z > Z_MAX, (m.mean, m.exact)


@pytest.mark.parametrize("name", list(LEARNED_BASELINES))
def test_learned_baselines_keep_reinforce_unbiased(name):
    m = measure(_with_baseline(LEARNED_BASELINES[name]), samples=R)
    assert m.largest_abs_z <= Z_MAX


def test_every_catalogue_entry_names_a_chapter_and_a_source():
    from pathlib import Path
    book = Path(__file__).resolve().parents[1] / "book"
    for entry in SPECS:
        assert (book / f"{entry.chapter}.ipynb").exists(), entry.name
        assert entry.function.__module__.startswith("minigrad.estimators."), entry.name


def test_every_vae_row_is_categorical_with_a_cost():
    # the VAE runs read these fields of a row; a row they cannot run is not marked vae
    from minigrad.estimators.catalogue import VAE_ESTIMATORS

    assert len(VAE_ESTIMATORS) >= 10
    for name in VAE_ESTIMATORS:
        entry = ESTIMATORS[name]
        assert entry.problem.logits.ndim == 3 and not entry.sbn, name
        assert entry.cost is not None and entry.cost(3, 4, entry.samples) >= 1, name
        assert entry.noise in ("per unit", "per logit"), name
    assert ESTIMATORS["IndeCateR"].cost(3, 4, 1) == 12
    assert ESTIMATORS["RLOO"].cost(3, 4, ESTIMATORS["RLOO"].samples) == \
        ESTIMATORS["RLOO"].samples


def test_vimco_is_measured_against_the_k_sample_bound_not_e_f():
    # VIMCO's row says what it estimates, and its problem's exact gradient is that of the
    # k-sample bound: the same estimates are far from the gradient of E[f] of its log-weight
    from minigrad.estimators.catalogue import K_SAMPLE_BOUND, K_SAMPLES
    from minigrad.estimators.exact import exact_gradient_categorical

    entry = ESTIMATORS["VIMCO"]
    assert entry.target == K_SAMPLE_BOUND and entry.samples == K_SAMPLES >= 2
    assert all(e.target != K_SAMPLE_BOUND for e in SPECS if e.name != "VIMCO")
    m = measure(entry, samples=R)
    assert m.largest_abs_z <= Z_MAX
    e_f = exact_gradient_categorical(Tensor(Z), entry.problem.f).data
    assert np.abs(e_f - m.exact).max() > 0.1
    assert np.abs(m.mean - e_f).max() > 10 * np.abs(m.mean - m.exact).max()


def test_the_exact_k_sample_gradient_by_numpy_matches_autograd_of_the_enumeration():
    # k = 1: the gradient of E[f]; k = 2: autograd through the enumeration of two copies
    from minigrad.estimators.catalogue import categorical_log_weight as f
    from minigrad.estimators.exact import (exact_gradient_categorical,
                                           exact_k_sample_gradient_categorical)
    from minigrad.functions import concatenate

    np.testing.assert_allclose(exact_k_sample_gradient_categorical(Z, f, 1),
                               exact_gradient_categorical(Tensor(Z), f).data, rtol=1e-12)
    x = Tensor(Z, requires_grad=True)

    def bound(b):
        first, second = f(b[:, :2]).exp(), f(b[:, 2:]).exp()
        return ((first + second) * 0.5).log()

    (g,) = grad(exact_expectation_categorical(concatenate([x, x], axis=1), bound).sum(), x)
    np.testing.assert_allclose(exact_k_sample_gradient_categorical(Z, f, 2), g.data,
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="joint configurations"):
        exact_k_sample_gradient_categorical(Z, f, 6)


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_oracle_rejects_a_broken_estimator(name):
    m = measure(BROKEN[name], samples=R)
    print(f"\n{name}: largest |z| {m.largest_abs_z:.1f}")
    assert m.largest_abs_z > Z_MAX


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_same_sample_gives_the_same_estimate_twice(name):
    entry = ESTIMATORS[name]
    base = entry.problem.logits
    logits = Tensor(base.copy(), requires_grad=True)
    u = draw_noise(entry, logits.shape, np.random.default_rng(1))
    control = make_control(entry)
    first = entry.estimate(logits, entry.problem.f, u, control, logits.data).copy()
    np.testing.assert_array_equal(
        entry.estimate(logits, entry.problem.f, u, control, logits.data), first)


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
    # reinforce() returns a detached array (the contract); its building block
    # reinforce_from_sample is the Tensor form, differentiable in a Tensor baseline
    from minigrad.estimators.score_function import reinforce_from_sample

    u = np.random.default_rng(3).random(A.shape)
    a = Tensor(A)
    b = bernoulli_sample(a, u)
    values = bernoulli_loss(Tensor(b)).data
    c0 = np.array([2.0, 2.5, 3.5])

    def second_moment(c: np.ndarray) -> float:
        g_c = reinforce_from_sample(a, b, values, baseline=Tensor(c))
        return float((g_c ** 2).sum().item())

    c = Tensor(c0, requires_grad=True)
    g = reinforce_from_sample(a, b, values, baseline=c)
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


def test_ema_log_variance_is_its_formula_in_float64_from_read_only_and_float32_input():
    rng = np.random.default_rng(6)
    draws = rng.normal(1.0, 2.0, size=(50, 3, 4)).astype(np.float32)
    first = second = 0.0
    tracker = EMALogVariance(decay=0.9)
    for t, g in enumerate(draws, start=1):
        g.setflags(write=False)
        tracker.update(g if t % 2 else g.T.copy().T)    # C-ordered, then Fortran-ordered
        wide = g.astype(np.float64)
        first, second = 0.9 * first + (1 - 0.9) * wide, 0.9 * second + (1 - 0.9) * wide * wide
        if t == 25:                                     # as restored from a checkpoint
            tracker.first.setflags(write=False)
    np.testing.assert_array_equal(tracker.first, first)
    np.testing.assert_array_equal(tracker.second, second)
    correction = 1 - 0.9 ** 50
    expected = np.log(np.mean(np.maximum(second / correction - (first / correction) ** 2, 0)))
    assert tracker.log_variance == expected


# ---------------------------------------------------------------------- the structured SBN
STRUCTURED_X = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]])   # top half in, bottom half out
SBN_NAMES = [spec.name for spec in SPECS if spec.sbn]


def _structured_encoder_draws(spec, rows=100, chunks=24, seed=0):
    """Encoder gradients of a 2-layer structured-prediction SBN, as the training step
    computes them (the spec's call, its control made for the model), and the exact one."""
    from minigrad.experiments.sbn import SBNConfig, encoder_gradient
    from conftest import exact, tiny_model

    model = tiny_model(2, task="structured")
    # the run's settings the control factories read (seed, temperature, normalisation)
    config = SBNConfig("oracle", "REINFORCE", steps=1, seed=seed)
    control = make_control(spec, model, config)
    rng = np.random.default_rng(seed)
    xs = np.repeat(STRUCTURED_X, rows, axis=0)
    draws = np.stack([encoder_gradient(spec, control, model, xs, model.noise(rng, rows),
                                       rng)[0] for _ in range(chunks)])
    _, _, truth = exact(model, STRUCTURED_X)
    return draws, np.concatenate([t.ravel() for t in truth])


@pytest.mark.parametrize("name", SBN_NAMES)
def test_every_sbn_estimator_on_the_structured_two_layer_sbn(name):
    """The first layer reaches the objective only through the second layer's hard
    resample: no path is a zero gradient (it crashed MuProp and Concrete), and every
    unbiased estimator still matches enumeration."""
    draws, truth = _structured_encoder_draws(ESTIMATORS[name])
    assert np.all(np.isfinite(draws))
    if not ESTIMATORS[name].unbiased:
        return   # Concrete: biased, and here without a path to the first layer's units
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    z = (draws.mean(axis=0) - truth) / np.where(se > 0, se, np.inf)
    assert np.all((se > 0) | (np.abs(draws.mean(axis=0) - truth) < 1e-9))
    assert np.max(np.abs(z)) <= Z_MAX, f"{name}: max |z| = {np.max(np.abs(z)):.2f}"


def test_the_structured_sbn_oracle_rejects_a_broken_estimator():
    """The same check fails for REINFORCE with its sign flipped (so it can fail)."""
    import dataclasses

    flipped = dataclasses.replace(
        ESTIMATORS["REINFORCE"], name="REINFORCE, sign flipped",
        estimate=lambda a, f, u, control, x: -reinforce(a, f, u, baseline=control.value()))
    draws, truth = _structured_encoder_draws(flipped)
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.max(np.abs((draws.mean(axis=0) - truth) / se)) > Z_MAX


def test_every_sbn_estimator_trains_a_structured_two_layer_sbn():
    """One training step of each (the crash of MuProp and Concrete was in this step)."""
    from minigrad.experiments.sbn import SBNConfig, SBNRun

    rng = np.random.default_rng(5)
    train_x = (rng.random((30, 784)) < 0.3).astype(np.float32)
    for name in SBN_NAMES:
        config = SBNConfig("s", name, 1, n_layers=2, task="structured", record_every=1)
        run = SBNRun(config, train_x, train_x[:2])
        run.step()
        assert np.isfinite(run.history.train_elbo[-1]), name
