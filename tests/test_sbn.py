"""Sigmoid belief networks and their encoder-gradient estimators, checked against enumeration.

A tiny SBN (3 latent units per layer, 5 visible units) has few enough latent configurations
that its ELBO, its encoder gradient and log p(x) are exact sums. Every unbiased estimator must
agree with the exact gradient in a z-test on every encoder parameter; a deliberately broken
one must fail the same test; the Concrete relaxation's bias is measured and shown nonzero.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from minigrad.estimators import controls, relaxed, score_function
from minigrad.estimators.exact import exact_expectation
from minigrad.gradcheck import gradcheck
from minigrad.models.sbn import SigmoidBeliefNet, bernoulli_log_likelihood, log_mean_exp
from minigrad.tensor import Tensor, grad, no_grad
from conftest import (N_UNITS, N_VISIBLE, TRAIN_MEAN, X, all_configurations,  # noqa: F401
                      encoder_params, exact, tiny_model, z_scores)

# the SBN's estimators and controls, as one namespace
E = SimpleNamespace(**{k: getattr(score_function, k) for k in score_function.__all__},
                    concrete=relaxed.concrete, NVILControl=controls.NVILControl)
Z_LIMIT = 4.0


def test_model_enumeration_agrees_with_the_library_oracle():
    """One layer: the ELBO and its encoder gradient from exact_expectation over the
    encoder's logits (f depends on them through log q) equal the model's enumeration."""
    model = tiny_model(1)
    _, elbo, truth = exact(model, X)
    logits = model.encoder_logits(0, X)

    def f(b):
        return model.objective(X, [b], known_logits=[logits])

    value = exact_expectation(logits, f).sum()
    grads = grad(value, encoder_params(model))
    assert np.isclose(float(value.data), elbo, rtol=1e-12)
    for g, t in zip(grads, truth):
        np.testing.assert_allclose(g.data, t, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- estimators
def _reinforce_constant(logits, f, u, x, rng):
    return E.reinforce(logits, f, u[0], baseline=-4.0)


def _reinforce_moving_average(logits, f, u, x, rng):
    baseline = E.MovingAverageBaseline()
    baseline.update(np.array([-6.0, -3.0]))
    return E.reinforce(logits, f, u[0], baseline=baseline.value())


def _reinforce_loo(logits, f, u, x, rng):
    return E.reinforce_loo(logits, f, u)


def _nvil(logits, f, u, x, rng):
    baseline = E.NVILControl(TRAIN_MEAN, rng=3, n_hidden=4, dtype=np.float64)
    _, predicted = baseline.fit_gradients(x, np.full(len(x), -5.0))
    baseline.update(np.full(len(x), -5.0), predicted)
    values, _ = baseline.values(x)
    return E.nvil(logits, f, u[0], values, scale=2.0) * 2.0  # undo the normalisation


def _muprop(logits, f, u, x, rng):
    return E.muprop(logits, f, u[0])


def _simple_muprop(logits, f, u, x, rng):
    return E.simple_muprop(logits, f, u[0])


def _broken_sample_dependent_baseline(logits, f, u, x, rng):
    """A baseline that looks at the sample itself: no longer zero in expectation."""
    b = E.bernoulli_sample(logits, u[0])
    return E.reinforce(logits, f, u[0], baseline=3.0 * b.sum(axis=1, keepdims=True))


def _concrete_half(logits, f, u, x, rng):
    return E.concrete(logits, f, u[0], temperature=0.5)


UNBIASED = {
    "reinforce": _reinforce_constant,
    "reinforce_moving_average": _reinforce_moving_average,
    "reinforce_loo": _reinforce_loo,
    "nvil": _nvil,
    "muprop": _muprop,
    "simple_muprop": _simple_muprop,
}


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_unbiased_estimators_match_enumeration(name, n_layers):
    z = z_scores(tiny_model(n_layers), UNBIASED[name])
    assert np.max(np.abs(z)) <= Z_LIMIT, f"{name}: max |z| = {np.max(np.abs(z)):.2f}"


@pytest.mark.parametrize("n_layers", [1, 2])
def test_broken_estimator_fails_the_z_test(n_layers):
    z = z_scores(tiny_model(n_layers), _broken_sample_dependent_baseline)
    assert np.max(np.abs(z)) > Z_LIMIT


def test_concrete_relaxation_is_biased():
    z = z_scores(tiny_model(1), _concrete_half)
    assert np.max(np.abs(z)) > 2 * Z_LIMIT


def test_estimators_are_repeatable_and_keep_the_logits_shape():
    model = tiny_model(2)
    xs = np.repeat(X, 7, axis=0)
    rng = np.random.default_rng(5)
    u = model.noise(rng, len(xs))
    logits, bs = model.sample_encoder(xs, u)
    f = model.learning_signal(xs, bs, 0, u)
    for est in (_muprop, _simple_muprop, _nvil, _reinforce_constant, _concrete_half):
        a = est(logits[0], f, u[0][None], xs, np.random.default_rng(0)).data
        b = est(logits[0], f, u[0][None], xs, np.random.default_rng(0)).data
        assert a.shape == logits[0].shape
        np.testing.assert_array_equal(a, b)


def test_muprop_taylor_term_is_exact_for_linear_f():
    """For f linear in b, the MuProp control variate is f itself: the estimate has no
    noise at all and equals the exact gradient w * p (1 - p)."""
    rng = np.random.default_rng(0)
    logits = Tensor(rng.normal(size=(4, 3)))
    w = Tensor(rng.normal(size=3))

    def f(b):
        return (b * w).sum(axis=1) + 2.0

    g = E.muprop(logits, f, rng.random((4, 3)))
    p = 1 / (1 + np.exp(-logits.data))
    np.testing.assert_allclose(g, w.data * p * (1 - p), rtol=1e-12, atol=1e-12)


def test_bad_inputs_give_clear_errors():
    logits = Tensor(np.zeros((2, 3)))

    def f(b):
        return b.sum(axis=1)

    with pytest.raises(ValueError, match="noise u has shape"):
        E.reinforce(logits, f, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="K >= 2"):
        E.reinforce_loo(logits, f, np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="temperature"):
        E.concrete(logits, f, np.full((2, 3), 0.5), temperature=0.0)
    with pytest.raises(ValueError, match="one value per example"):
        E.reinforce(logits, lambda b: b, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="task"):
        SigmoidBeliefNet(TRAIN_MEAN, task="classify")
    with pytest.raises(ValueError, match="init must be one of"):
        SigmoidBeliefNet(TRAIN_MEAN, init="he")
    model = tiny_model(2)
    with pytest.raises(ValueError, match="one noise array per stochastic layer"):
        model.sample_encoder(X, [np.zeros((1, 3))])
    with pytest.raises(ValueError, match="images of shape"):
        model.elbo(np.zeros((2, 7)), np.random.default_rng(0))


def test_nvil_baseline_changes_only_through_update():
    from minigrad.optim import Adam
    from minigrad.tensor import Tensor

    baseline = E.NVILControl(TRAIN_MEAN, rng=0, n_hidden=4, dtype=np.float64)
    optimizer = Adam(baseline.parameters(), lr=3e-3, betas=(0.9, 0.99999))
    xs = np.repeat(X, 3, axis=0)
    before = baseline.values(xs)
    np.testing.assert_array_equal(baseline.values(xs)[0], before[0])
    signal = np.array([-10.0, -12.0, -14.0])
    for _ in range(50):   # the caller's optimizer steps C(x); update() the moments
        grads, predicted = baseline.fit_gradients(xs, signal)
        baseline.update(signal, predicted)
        for p, d in zip(baseline.parameters(), grads):
            p.grad = Tensor(d)
        optimizer.step()
    values, scale = baseline.values(xs)
    assert abs(values.mean() - (-12.0)) < 1.0  # it learned the level of the signal
    assert scale > 1.0  # the spread (var 8/3) makes the normalisation bite
    off = E.NVILControl(TRAIN_MEAN, rng=0, n_hidden=4, normalise=False, dtype=np.float64)
    off.update(signal, off.fit_gradients(xs, signal)[1])
    assert off.values(xs)[1] == 1.0


# ---------------------------------------------------------------------- bounds
@pytest.mark.parametrize("n_layers", [1, 2])
def test_elbo_iwae_and_log_p_ordered_exactly(n_layers):
    """ELBO = E[IWAE_1] <= E[IWAE_2] <= E[IWAE_3] <= log p(x), all by enumeration."""
    model = tiny_model(n_layers)
    log_p, elbo, _ = exact(model, X)
    bs = all_configurations(model)
    xs = np.repeat(X, len(bs[0]), axis=0)
    log_q = model.log_q(xs, bs).data
    log_w = model.objective(xs, bs).data
    q = np.exp(log_q)
    expected = []
    for k in (1, 2, 3):
        # every k-tuple of configurations at once: index grids of shape (n,) * k
        idx = np.meshgrid(*[np.arange(len(q))] * k, indexing="ij")
        prob = np.prod([q[i] for i in idx], axis=0)
        bound = log_mean_exp(np.stack([log_w[i] for i in idx]), axis=0)
        expected.append(float(np.sum(prob * bound)))
    assert np.isclose(expected[0], elbo, rtol=1e-12)
    assert expected[0] < expected[1] < expected[2] < log_p
    # the library's Monte Carlo bound agrees with the exact k = 2 expectation
    rng = np.random.default_rng(0)
    draws = model.iwae_bound(np.repeat(X, 20000, axis=0), 2, rng)
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - expected[1]) <= Z_LIMIT * se
    # and converges to log p(x): by the delta method its standard error is
    # sqrt(Var_q[w] / E_q[w]^2 / k) with w = exp(log_w), known exactly here
    k = 100_000
    w = np.exp(log_w - log_p)
    se_log = np.sqrt((np.sum(q * w**2) - 1) / k)
    assert abs(model.iwae_bound(X, k, rng)[0] - log_p) <= Z_LIMIT * se_log


def test_structured_prediction_bound():
    """Structured: log p(bottom | top) = log sum_b q(b | top) p(bottom | b) >= E_q[log p]."""
    model = tiny_model(2, task="structured")
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]])
    log_p, objective, _ = exact(model, x)
    bs = all_configurations(model)
    xs = np.repeat(x, len(bs[0]), axis=0)
    direct = bernoulli_log_likelihood(Tensor(xs[:, 3:]), model.p1(2.0 * Tensor(bs[1]) - 1.0))
    q = np.exp(model.log_q(xs, bs).data)
    assert np.isclose(objective, np.sum(q * direct.data), rtol=1e-12)
    assert np.isclose(log_p, np.log(np.sum(q * np.exp(direct.data))), rtol=1e-12)
    assert objective < log_p


def test_log_mean_exp_is_stable():
    v = np.array([[-1000.0, -1001.0], [1000.0, 1000.0]])
    out = log_mean_exp(v, axis=1)
    np.testing.assert_allclose(out, [-1000 + np.log((1 + np.exp(-1)) / 2), 1000.0])


# ---------------------------------------------------------------------- gradients
MODELS = {
    "linear1": dict(n_layers=1),
    "linear2": dict(n_layers=2),
    "nonlinear": dict(n_layers=1, nonlinear=True),
    "structured2": dict(n_layers=2, task="structured"),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_objective_gradients_gradcheck(kind):
    """d objective / d every parameter, at fixed samples (float64 central differences)."""
    model = tiny_model(**MODELS[kind])
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]])[:, :model.n_pixels]
    xs = np.repeat(x, 2, axis=0)
    _, bs = model.sample_encoder(xs, model.noise(np.random.default_rng(2), 2))
    params = model.parameters()
    inputs = [Tensor(p.data.copy(), requires_grad=True) for p in params]
    # The objective is O(10); with eps 1e-6 the central-difference error is ~eps^2 f''' ~ 1e-11
    # and rounding ~1e-16 * 10 / 1e-6 = 1e-9, so atol 1e-6 is a wide margin, not a fudge.
    assert gradcheck(lambda *v: _functional_objective(model, params, v, xs, bs), inputs,
                     atol=1e-6, rtol=1e-5)


def _functional_objective(model, params, values, xs, bs):
    # Swap the Parameters for the gradcheck's Tensors, evaluate, swap back.
    owners = []
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            owners.append((module, name, p))
    lookup = {id(p): v for p, v in zip(params, values)}
    try:
        for module, name, p in owners:
            object.__setattr__(module, name, lookup[id(p)])
        return model.objective(xs, bs)
    finally:
        for module, name, p in owners:
            object.__setattr__(module, name, p)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_learning_signal_gradcheck_in_relaxed_sample(kind):
    """f(b) is smooth in a relaxed b: what MuProp's slope and Concrete need."""
    model = tiny_model(**MODELS[kind])
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]])[:, :model.n_pixels]
    xs = np.repeat(x, 2, axis=0)
    u = model.noise(np.random.default_rng(3), 2)
    _, bs = model.sample_encoder(xs, u)
    for layer in range(model.n_layers):
        f = model.learning_signal(xs, bs, layer, u)
        b = Tensor(np.random.default_rng(4).uniform(0.1, 0.9, (2, N_UNITS)),
                   requires_grad=True)
        assert gradcheck(f, [b], atol=1e-6, rtol=1e-5)


def test_reference_init_is_the_truncated_variance_scaling_of_the_rebar_code():
    from minigrad.init import variance_scaling_normal

    w = variance_scaling_normal((400, 300), np.random.default_rng(0), np.float64)
    std = np.sqrt(1.3 * 2.0 / 400)
    assert np.abs(w).max() <= 2 * std
    # a unit normal truncated at +-2 has standard deviation 0.8796
    assert abs(w.std() / std - 0.8796) < 0.01
    glorot = SigmoidBeliefNet(np.full(784, 0.2), nonlinear=True, rng=3)
    reference = SigmoidBeliefNet(np.full(784, 0.2), nonlinear=True, rng=3, init="reference")
    for (name, a), (_, b) in zip(glorot.named_parameters(), reference.named_parameters()):
        if a.data.ndim == 2:
            fan_in = a.data.shape[0]
            assert abs(b.data.std() * np.sqrt(fan_in / 2.0) - 1.0) < 0.05, name
        else:  # biases, the output bias at the data's logit, the prior: unchanged
            np.testing.assert_array_equal(a.data, b.data)


# ---------------------------------------------------------------------- the REBAR code's
def test_muprop_with_control_at_eta_one_and_no_baseline_is_muprop():
    from minigrad.estimators.catalogue import bernoulli_loss
    from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A

    logits = Tensor(np.tile(A, (50, 1)))
    u = np.random.default_rng(4).random(logits.shape)
    np.testing.assert_array_equal(E.muprop_with_control(logits, bernoulli_loss, u),
                                  E.muprop(logits, bernoulli_loss, u))
    # other values change the estimate (the arguments are used)
    other = E.muprop_with_control(logits, bernoulli_loss, u, 0.5, 0.7, 1.3)
    assert np.abs(other - E.muprop(logits, bernoulli_loss, u)).max() > 1e-3


def test_nvil_rebar_code_is_nvil_with_c_of_x_alone_and_scale_one():
    from minigrad.estimators.catalogue import ESTIMATORS, bernoulli_loss, make_control
    from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A

    spec = ESTIMATORS["NVIL (REBAR code)"]
    control = make_control(spec)
    logits = Tensor(np.tile(A, (20, 1)))
    x = logits.data
    signal = np.linspace(-3.0, 9.0, len(x))
    control.update(signal, control.fit_gradients(x, signal)[1])   # c and v now far from 0, 1
    assert abs(float(control.mean.data)) > 1.0 and float(control.var.data) > 4.0
    u = np.random.default_rng(6).random(logits.shape)
    with_c_of_x = E.nvil(logits, bernoulli_loss, u, control.baseline(x).data, 1.0)
    np.testing.assert_array_equal(spec.estimate(logits, bernoulli_loss, u, control, x),
                                  with_c_of_x)
    # and C(x) is fitted to f itself, not to f - c
    grads, predicted = control.fit_gradients(x, signal)
    plain = controls.NVILControl(np.zeros(3), rng=7, n_hidden=4, normalise=False,
                                 running_mean=False, dtype=np.float64)
    for g, h in zip(grads, plain.fit_gradients(x, signal)[0]):
        np.testing.assert_array_equal(g, h)


def test_the_muprop_control_learns_to_lower_the_mean_square_of_its_signal():
    """Adam on fit_gradients lowers mean(L^2) on a fixed problem; eta0, eta1 and C(x)
    all move. The REBAR code's MuProp trains them this way (its baseline loss)."""
    from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A
    from minigrad.estimators.catalogue import bernoulli_loss
    from minigrad.optim import Adam

    control = controls.MuPropControl(np.zeros(3), rng=1, n_hidden=8, dtype=np.float64)
    logits = Tensor(np.tile(A, (100, 1)))
    rng = np.random.default_rng(7)
    optimizer = Adam(control.parameters(), lr=1e-2)
    start = {k: v.copy() for k, v in control.state_dict().items()}

    def mean_square(seed: int) -> float:   # on fresh samples, the same for every control
        s = E.muprop_signal(logits, bernoulli_loss, np.random.default_rng(seed)
                            .random(logits.shape))
        with no_grad():
            signal = control.signal(logits.data, s.f_sample, s.f_mean, s.taylor).data
        return float(np.mean(signal ** 2))

    before = np.mean([mean_square(100 + k) for k in range(5)])
    for _ in range(300):
        s = E.muprop_signal(logits, bernoulli_loss, rng.random(logits.shape))
        grads, _ = control.fit_gradients(logits.data, s.f_sample, s.f_mean, s.taylor)
        for p, d in zip(control.parameters(), grads):
            p.grad = Tensor(d)
        optimizer.step()
    after = np.mean([mean_square(100 + k) for k in range(5)])
    print(f"\nmean(L^2): {before:.3f} -> {after:.3f}; etas {control.values(logits.data)[1:]}")
    assert after < 0.5 * before
    for k, v in control.state_dict().items():
        assert np.abs(v - start[k]).max() > 1e-3, k
    with pytest.raises(ValueError, match="between 0 and 2"):
        controls.MuPropControl(np.zeros(3), rng=1, eta=(1.0, 2.0))


def test_the_muprop_control_gradients_match_finite_differences():
    from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A
    from minigrad.estimators.catalogue import bernoulli_loss

    control = controls.MuPropControl(np.zeros(3), rng=2, n_hidden=3, eta=(0.8, 1.2),
                                     dtype=np.float64)
    logits = Tensor(np.tile(A, (4, 1)))
    s = E.muprop_signal(logits, bernoulli_loss, np.random.default_rng(8).random((12, 3)))
    grads, _ = control.fit_gradients(logits.data, s.f_sample, s.f_mean, s.taylor)

    def loss() -> float:
        with no_grad():
            L = control.signal(logits.data, s.f_sample, s.f_mean, s.taylor).data
        return float(np.mean(L ** 2))

    h = 1e-6
    for p, g in zip(control.parameters(), grads):
        flat = p.data.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = loss()
            flat[i] = keep - h
            down = loss()
            flat[i] = keep
            # truncation h^2 |f'''| and round-off eps |f| / h, both tiny against |L^2| ~ 10
            tol = 1e-7 * max(1.0, loss())
            assert abs((up - down) / (2 * h) - g.reshape(-1)[i]) <= tol, p._name


def test_a_two_layer_sbn_trains_one_muprop_control_per_layer():
    from minigrad.experiments.sbn import SBNConfig, SBNRun

    rng = np.random.default_rng(5)
    train_x = (rng.random((30, 784)) < 0.3).astype(np.float32)
    run = SBNRun(SBNConfig("m", "MuProp (REBAR code)", 3, n_layers=2, record_every=1),
                 train_x, train_x[:2])
    control = run.control
    assert isinstance(control, controls.ModelMuPropControl)
    assert control.layer(0) is not control.layer(1)
    start = [p.data.copy() for p in control.parameters()]
    for _ in range(3):
        run.step()
    moved = [np.abs(p.data - q).max() > 0 for p, q in zip(control.parameters(), start)]
    assert all(moved)   # every layer's C(x), eta0 and eta1 took their steps


# ---------------------------------------------------------------------- training runs
def _images(rows=48, seed=7):
    rng = np.random.default_rng(seed)
    grey = rng.uniform(0.05, 0.95, (rows, 784)).astype(np.float32)
    return grey, (rng.random(grey.shape) < grey).astype(np.float32)


@pytest.mark.parametrize("task", ["generative", "structured"])
def test_a_training_step_records_the_models_objective(task, monkeypatch):
    """The f(b) a step records (and NVIL's baseline is fitted to) is the model's objective:
    the ELBO, or for structured prediction log p(bottom | b), a log-probability <= 0."""
    from minigrad.experiments import sbn as S

    _, bits = _images()
    run = S.SBNRun(S.SBNConfig("t", "NVIL", 1, task=task, record_every=1), bits, bits[:2])
    seen = {}
    original = S.backward_pass

    def spy(model, spec, control, optimizer, encoder, x, u, rng):
        with no_grad():
            _, samples = model.sample_encoder(x, u)
            seen["objective"] = model.objective(x, samples).data.copy()
        out = original(model, spec, control, optimizer, encoder, x, u, rng)
        seen["f"] = out[1]
        return out

    monkeypatch.setattr(S, "backward_pass", spy)
    run.step()
    np.testing.assert_allclose(seen["f"], seen["objective"], rtol=1e-5)
    assert np.isclose(run.history.train_elbo[-1], seen["objective"].mean(), rtol=1e-5)
    if task == "structured":
        assert seen["f"].max() <= 0


def test_dynamic_binarization_draws_fresh_bits_at_every_step(monkeypatch):
    """Every minibatch is Bernoulli(grey level), drawn afresh: the same images (a batch of
    all of them) give other bits at the next step, with the grey levels as their mean."""
    from minigrad.experiments import sbn as S

    grey, _ = _images(rows=24)
    grey[:] = 0.3
    config = S.SBNConfig("t", "NVIL", 2, binarization="dynamic", record_every=1)
    run = S.SBNRun(config, grey, (grey[:2] > 0.5).astype(np.float32))
    batches = []
    original = S.backward_pass

    def spy(model, spec, control, optimizer, encoder, x, u, rng):
        batches.append(np.array(x))
        return original(model, spec, control, optimizer, encoder, x, u, rng)

    monkeypatch.setattr(S, "backward_pass", spy)
    run.step()
    run.step()
    first, second = batches
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)
    mean = np.mean(batches)            # 2 x 24 x 784 draws of Bernoulli(0.3)
    assert abs(mean - 0.3) < 4 * np.sqrt(0.3 * 0.7 / (2 * 24 * 784))


def test_dynamic_binarization_refuses_bits_and_bad_names():
    from minigrad.experiments.sbn import SBNConfig, SBNRun

    grey, bits = _images()
    config = SBNConfig("t", "NVIL", 1, binarization="dynamic")
    with pytest.raises(ValueError, match="binary already; pass the grey levels"):
        SBNRun(config, bits, bits[:2])
    with pytest.raises(ValueError, match=r"grey levels in \[0, 1\]"):
        SBNRun(config, grey * 255, bits[:2])
    with pytest.raises(ValueError, match="binarization must be one of"):
        SBNConfig("t", "NVIL", 1, binarization="static")


def test_a_comparison_takes_the_images_of_each_configurations_binarization():
    from concurrent.futures import ThreadPoolExecutor

    from minigrad.experiments.sbn import SBNConfig, run_sbn_comparison

    grey, bits = _images()
    common = dict(steps=2, record_every=1, eval_k=1, eval_examples=2)
    configs = [SBNConfig("fixed", "NVIL", **common),
               SBNConfig("dynamic", "NVIL", binarization="dynamic", **common)]
    with ThreadPoolExecutor(1) as pool:
        out = run_sbn_comparison(configs, {"fixed": bits, "dynamic": grey}, bits,
                                 progress=False, executor=pool)
    assert list(out) == ["fixed", "dynamic"]
    assert all(np.isfinite(h.val_iwae) for h in out.values())
    with pytest.raises(ValueError, match="needs the 'dynamic' training images"):
        run_sbn_comparison(configs, {"fixed": bits}, bits, progress=False)
