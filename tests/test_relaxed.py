"""REBAR, dynamic REBAR and RELAX against the exact gradient, and their variance gradients.

- On the tiny SBN of ``test_sbn`` (1 and 2 stochastic layers, enumerable) each estimator's
  encoder gradient, as the training loop computes it (parameter level, coupled noise, every
  layer relaxed), passes the z-test against enumeration.
- On the toy problem ``E[(b - t)^2]`` each passes the z-test too.
- Broken variants fail: a sign-flipped control variate fails the bias test; a ``z~`` whose
  dependence on theta is cut stays close to unbiased on the toy problem but loses the
  variance reduction, which the variance check against REINFORCE catches.
- The variance gradient ``d mean(g^2) / d (eta, log lambda, phi)``
  (:func:`~minigrad.estimators.relaxed.variance_gradient`) matches central differences in
  float64.
"""
from __future__ import annotations

import numpy as np
import pytest

from types import SimpleNamespace

from minigrad.estimators import relaxed as RX
from minigrad.estimators.catalogue import ESTIMATORS, make_control
from minigrad.estimators.controls import ModelRelaxedControl, RelaxedControl
from minigrad.estimators.diagnostics import summarize_estimates
from minigrad.estimators.exact import exact_gradient
from minigrad.estimators.score_function import reinforce
from minigrad.experiments.sbn import SBNConfig, backward_pass, encoder_gradient
from minigrad.gradcheck import finite_difference_tolerance
from minigrad.optim import Adam
from minigrad.tensor import Tensor, grad
from conftest import X, exact, tiny_model

Z_LIMIT = 4.0
RELAXED = ["REBAR", "REBAR (Concrete relaxation)", "dynamic REBAR", "RELAX"]


# ---------------------------------------------------------------------- the tiny SBN
def small_relax(model, config):
    """The RELAX control of the table with a smaller r_rho (16 units) for speed."""
    return ModelRelaxedControl(
        model.input_mean, len(model.encoder_parameters()), model.n_hidden, model.n_layers,
        np.random.default_rng(config.seed + 11), learn_temperature=True, surrogate=(16,),
        relaxation=RX.concrete_relaxation, dtype=model.dtype)


def sbn_z_scores(model, name, seed=0, rows=200, chunks=30):
    """z-scores of the mean parameter-level encoder gradient against enumeration."""
    config = SBNConfig("test", name, steps=1, seed=seed)
    spec = ESTIMATORS[name]
    control = (small_relax(model, config) if name == "RELAX"
               else make_control(spec, model, config))
    rng = np.random.default_rng(seed)
    _, _, truth = exact(model, X)
    xs = np.repeat(X, rows, axis=0)
    draws = np.stack([encoder_gradient(spec, control, model, xs, model.noise(rng, rows),
                                       rng)[0]
                      for _ in range(chunks)])
    truth = np.concatenate([t.ravel() for t in truth])
    se = draws.std(axis=0, ddof=1) / np.sqrt(chunks)
    assert np.all(se > 0)
    return (draws.mean(axis=0) - truth) / se


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("name", RELAXED)
def test_relaxed_estimators_match_enumeration_on_the_tiny_sbn(name, n_layers):
    z = sbn_z_scores(tiny_model(n_layers), name)
    assert np.max(np.abs(z)) <= Z_LIMIT, f"{name}: max |z| = {np.max(np.abs(z)):.2f}"


def test_rebar_reduces_variance_on_the_tiny_sbn():
    """The point of the relaxed control variate: at the same baseline, REBAR's encoder
    gradient varies less than REINFORCE's (the same draws, one and two layers)."""
    for n_layers in (1, 2):
        model = tiny_model(n_layers)
        xs = np.repeat(X, 50, axis=0)
        spec = ESTIMATORS["REBAR"]
        rebar = make_control(spec, model, SBNConfig("test", "REBAR", steps=1))
        rng = np.random.default_rng(3)
        draws = {"REBAR": [], "REINFORCE": []}
        for _ in range(30):
            u = model.noise(rng, len(xs))
            draws["REBAR"].append(encoder_gradient(spec, rebar, model, xs, u, rng)[0])
            draws["REINFORCE"].append(
                encoder_gradient(CONSTANT_BASELINE, None, model, xs, u, rng)[0])
        var = {k: np.stack(v).var(axis=0, ddof=1).mean() for k, v in draws.items()}
        assert var["REBAR"] < 0.5 * var["REINFORCE"], var


#: REINFORCE with the constant baseline -5 (the reference for the variance test), as a spec
CONSTANT_BASELINE = SimpleNamespace(
    samples=1, estimate=lambda a, f, u, control, x: reinforce(a, f, u, baseline=-5.0))


# ---------------------------------------------------------------------- the toy problem
T = 0.45
THETAS = np.array([[-2.0], [0.0], [1.0]])
R = 60_000


def toy_f(b: Tensor) -> Tensor:
    """(b - t)^2 per example, one unit per row."""
    return ((b - T) ** 2).sum(axis=1)


def toy_draws(estimate, seed=0, repeats=R):
    a = Tensor(np.tile(THETAS, (repeats, 1)))
    rng = np.random.default_rng(seed)
    u, v = rng.random(a.shape), rng.random(a.shape)
    g = np.asarray(estimate(a, u, v)).reshape(repeats, len(THETAS))
    return g, exact_gradient(Tensor(THETAS), toy_f).data.ravel()


def small_surrogate(seed=4):
    net = RX.RelaxSurrogate(1, hidden=(8,), rng=seed, dtype=np.float64)
    last = net.net[-1]
    last.weight.data = np.random.default_rng(seed).normal(0, 0.5, last.weight.shape)
    return net


TOY = {
    "REBAR": lambda a, u, v: RX.rebar(a, toy_f, u, v),
    "REBAR, Concrete relaxation": lambda a, u, v: RX.rebar(
        a, toy_f, u, v, RelaxedControl(relaxation=RX.concrete_relaxation)),
    "REBAR, coupled noise": lambda a, u, v: RX.rebar(a, toy_f, u, RX.coupled_noise(a, u)),
    "dynamic REBAR (eta 0.6, temperature 0.3)": lambda a, u, v: RX.rebar(
        a, toy_f, u, v, RelaxedControl(0.6, np.log(0.3), learn_eta=True,
                                       learn_temperature=True)),
    "RELAX": lambda a, u, v: RX.relax(a, toy_f, u, v, RelaxedControl(
        1.0, np.log(0.5), surrogate=small_surrogate(), relaxation=RX.concrete_relaxation)),
}


@pytest.mark.parametrize("name", list(TOY))
def test_relaxed_estimators_are_unbiased_on_the_toy_problem(name):
    draws, truth = toy_draws(TOY[name])
    summary = summarize_estimates(draws, truth)
    assert summary.largest_abs_z <= Z_LIMIT, summary.z


def _conditional_sample_composed(a, b, v):
    """The twin of ``ConditionalLogistic``: the conditional sample written with sigmoid,
    ``*``, ``+``, ``clip`` and ``log``, as it was before it became one Function."""
    from minigrad import functions as F

    theta, one_minus = F.sigmoid(a), F.sigmoid(-a)
    b, v = Tensor(b.astype(a.dtype)), Tensor(np.asarray(v, dtype=a.dtype))
    v_prime = b * (one_minus + theta * v) + (1.0 - b) * (one_minus * v)
    rest = b * (theta * (1.0 - v)) + (1.0 - b) * (theta + one_minus * (1.0 - v))
    tiny = float(np.finfo(a.dtype).tiny)
    return a + F.log(F.clip(v_prime, tiny)) - F.log(F.clip(rest, tiny))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conditional_sample_equals_its_composed_twin(dtype):
    """The one-Function conditional sample has the composed formulas' value bit for bit
    (the REBAR runs keep their numbers) and their gradient to rounding, on both array and
    Tensor backward passes, also at the edges: v at 0 and 1 and logits of +-100 (where the
    logs are clipped)."""
    rng = np.random.default_rng(4)
    a0 = (rng.standard_normal((40, 25)) * 4).astype(dtype)
    a0[0, :6] = [-100, 100, -40, 40, 0, 1e-3]
    b = (rng.random(a0.shape) < 0.5).astype(dtype)
    b[0, :6] = [1, 0, 1, 0, 1, 0]
    v = rng.random(a0.shape)
    v[1, :4] = [0.0, 1.0, 1e-300, 1 - 1e-16]
    g = rng.standard_normal(a0.shape).astype(dtype)
    x, y = Tensor(a0, requires_grad=True), Tensor(a0, requires_grad=True)
    fused, composed = RX.conditional_logistic_sample(x, b, v), _conditional_sample_composed(
        y, b, v)
    np.testing.assert_array_equal(fused.data, composed.data)
    assert fused.dtype == dtype
    (d_fused,) = grad([fused], [x], [Tensor(g)])
    (d_composed,) = grad([composed], [y], [Tensor(g)])
    # each way rounds about 30 operations per entry: 64 eps of the largest gradient bounds
    # the difference of two such chains
    eps = float(np.finfo(dtype).eps)
    scale = np.abs(d_composed.data).max()
    np.testing.assert_allclose(d_fused.data, d_composed.data, rtol=0, atol=64 * eps * scale)
    x = Tensor(a0, requires_grad=True)      # the Tensor backward (create_graph=True)
    (d_graph,) = grad([RX.conditional_logistic_sample(x, b, v)], [x],
                      [Tensor(g, requires_grad=True)], create_graph=True)
    assert d_graph.requires_grad
    np.testing.assert_allclose(d_graph.data, d_composed.data, rtol=0, atol=64 * eps * scale)


def _sign_flipped(a, u, v):
    """The control variate's score term added instead of subtracted."""
    def control(z, x):
        return toy_f(RX.muprop_relaxation(z, x, 0.5))
    b = RX.hard_sample(a, u)
    c_tilde = control(RX.conditional_logistic_sample(a, b, v), a).data
    score = b - 1 / (1 + np.exp(-a.data))
    return RX.rebar(a, toy_f, u, v) + 2 * c_tilde[:, None] * score


def _z_tilde_detached(a, u, v):
    """``z~`` computed from theta held constant: ``d c(z~) / d a`` is dropped."""
    original = RX.conditional_logistic_sample
    try:
        RX.conditional_logistic_sample = lambda a_, b, v_: original(
            Tensor(a_.data), b, v_).detach()
        return RX.rebar(a, toy_f, u, v)
    finally:
        RX.conditional_logistic_sample = original


def _v_prime_detached(a, u, v):
    """``z~ = a + logit(v')`` with ``v'`` computed from theta held constant (the bug of
    duvenaud/relax issue 6): ``z~`` moves with ``a`` one for one."""
    original = RX.conditional_logistic_sample
    try:
        RX.conditional_logistic_sample = lambda a_, b, v_: a_ + (
            original(Tensor(a_.data), b, v_) - Tensor(a_.data)).detach()
        return RX.rebar(a, toy_f, u, v)
    finally:
        RX.conditional_logistic_sample = original


@pytest.mark.parametrize("broken", [_sign_flipped, _z_tilde_detached, _v_prime_detached])
def test_broken_relaxed_estimators_fail_the_bias_test(broken):
    """All three are biased: the identity E[c(z~) score] + E[d c(z~)] = d E[c(z)] needs
    the sign and the whole derivative of z~ with respect to theta."""
    draws, truth = toy_draws(broken)
    assert np.max(np.abs(bias_z(draws, truth))) > Z_LIMIT


def bias_z(draws, truth):
    return summarize_estimates(draws, truth).z


# ---------------------------------------------------------------------- variance gradients
def _second_moment(estimate, a, u, v):
    return (estimate(a, u, v) ** 2).mean()


def _check_against_central_differences(make, values, a, u, v, h=1e-6):
    params = [Tensor(np.array(x, dtype=np.float64), requires_grad=True) for x in values]
    estimate = make(*params)
    g = estimate(a, u, v)
    # the library's variance gradient: scale 1 / n makes its sum the mean
    _, analytic = RX.variance_gradient([g], params, 1.0 / len(g.data))
    # size of the terms whose squares are averaged, before the control variate cancels them
    magnitude = float(np.mean((np.abs(g.data) + np.abs(estimate(a, u, v).data)) ** 2)) + 1.0
    for i, x in enumerate(values):
        shifted = []
        for sign in (1, -1):
            moved = [Tensor(np.array(y + sign * h * (j == i), dtype=np.float64))
                     for j, y in enumerate(values)]
            shifted.append(float(_second_moment(make(*moved), a, u, v).data))
        numeric = (shifted[0] - shifted[1]) / (2 * h)
        tolerance = finite_difference_tolerance(magnitude, eps=h)
        assert abs(analytic[i] - numeric) <= tolerance, (i, analytic[i], numeric)


def _toy_inputs(n=6, seed=11):
    rng = np.random.default_rng(seed)
    a = Tensor(rng.normal(0, 1.5, (n, 1)))
    return a, rng.random(a.shape), rng.random(a.shape)


@pytest.mark.parametrize("relaxation", [RX.muprop_relaxation, RX.concrete_relaxation])
def test_variance_gradient_of_rebar_matches_finite_differences(relaxation):
    a, u, v = _toy_inputs()

    def make(eta, log_temperature):
        control = RelaxedControl(eta, log_temperature, relaxation=relaxation)
        return lambda a_, u_, v_: RX.relaxed_estimate(a_, toy_f, u_, v_, control)

    _check_against_central_differences(make, [0.8, np.log(0.4)], a, u, v)


def test_variance_gradient_of_relax_matches_finite_differences():
    a, u, v = _toy_inputs()
    net = small_surrogate()
    chosen = [net.net[0].weight, net.net[-1].weight]   # a hidden and the output layer

    def make(log_temperature, w_in, w_out):
        def estimate(a_, u_, v_):
            originals = [net.net[0].__dict__.get("weight"), net.net[-1].__dict__.get("weight")]
            object.__setattr__(net.net[0], "weight", w_in)
            object.__setattr__(net.net[-1], "weight", w_out)
            try:
                control = RelaxedControl(1.0, log_temperature, surrogate=net,
                                         relaxation=RX.concrete_relaxation)
                return RX.relaxed_estimate(a_, toy_f, u_, v_, control)
            finally:
                object.__setattr__(net.net[0], "weight", originals[0])
                object.__setattr__(net.net[-1], "weight", originals[1])
        return estimate

    base = [np.log(0.5), chosen[0].data.copy(), chosen[1].data.copy()]
    params = [Tensor(np.array(x, dtype=np.float64), requires_grad=True) for x in base]
    estimate = make(*params)
    g = estimate(a, u, v)
    analytic = grad((g ** 2).mean(), params)
    magnitude = float(np.mean(g.data ** 2)) + 1.0
    h = 1e-6
    tolerance = finite_difference_tolerance(magnitude, eps=h)
    for i, x in enumerate(base):
        x = np.asarray(x, dtype=np.float64)
        for k in range(x.size):
            step = np.zeros_like(x)
            step.flat[k] = h
            values = []
            for sign in (1, -1):
                moved = [Tensor(np.array(y, dtype=np.float64)) for y in base]
                moved[i] = Tensor(x + sign * step)
                values.append(float(_second_moment(make(*moved), a, u, v).data))
            numeric = (values[0] - values[1]) / (2 * h)
            assert abs(analytic[i].data.flat[k] - numeric) <= tolerance, (i, k)


def test_estimates_are_repeatable_and_change_nothing():
    a, u, v = _toy_inputs()
    for name, estimate in TOY.items():
        first = estimate(a, u, v).copy()
        assert isinstance(first, np.ndarray), name   # the contract: a detached array
        np.testing.assert_array_equal(estimate(a, u, v), first, err_msg=name)


def test_tuned_parameters_never_receive_the_model_loss():
    """One training step: the model's loss reaches the SBN's parameters only; the tuned
    parameters get their gradient (of the variance) as a return value, for their own
    optimizer, and no control owns an optimizer."""
    model = tiny_model(2)
    config = SBNConfig("t", "dynamic REBAR", steps=1)
    spec = ESTIMATORS["dynamic REBAR"]
    control = make_control(spec, model, config)
    xs = np.repeat(X, 4, axis=0)
    u = model.noise(np.random.default_rng(0), len(xs))
    optimizer = Adam(model.parameters(), lr=1e-3)
    _, _, control_grads = backward_pass(model, spec, control, optimizer,
                                        model.encoder_parameters(), xs, u, None)
    assert all(p.grad is None for p in control.parameters())
    assert len(control_grads) == len(control.parameters())
    assert sum(float(np.abs(d).sum()) for d in control_grads) > 0
    assert all(p.grad is not None for p in model.encoder_parameters())
    assert not any(isinstance(v, Adam) for v in vars(control).values())


def _layer_zero_rebar(wrap, rows=20_000, seed=2):
    """REBAR's estimate for the first layer's logits of the 2-layer tiny SBN (the second
    layer's noise fixed and shared by every row), against the exact gradient."""
    model = tiny_model(2)
    rng = np.random.default_rng(seed)
    u1 = np.tile(rng.random((1, model.n_hidden)), (rows, 1))
    xs = np.repeat(X, rows, axis=0)
    u = [rng.random((rows, model.n_hidden)), u1]
    logits, samples = model.sample_encoder(xs, u)
    lg = Tensor(logits[0].data)
    f = model.learning_signal(xs, samples, 0, u, logits)
    g = RX.rebar(lg, wrap(f), u[0], rng.random(lg.shape))
    one = model.learning_signal(X, [s[:1] for s in samples], 0, [u[0][:1], u1[:1]],
                                [lg[:1] for lg in logits])
    truth = exact_gradient(Tensor(lg.data[:1]), one).data[0]
    return summarize_estimates(g, truth).largest_abs_z


def test_rebar_relaxes_the_layers_after_the_unit_by_default():
    """Given a model's learning signal, REBAR's control variate is the signal with the
    later layers relaxed (no argument needed): unbiased on two layers. The same signal
    hidden in a plain function (a step function of the relaxed unit below the first
    layer) makes the control variate's reparameterised gradient biased."""
    assert _layer_zero_rebar(lambda f: f) <= Z_LIMIT
    assert _layer_zero_rebar(lambda f: (lambda b: f(b))) > Z_LIMIT
