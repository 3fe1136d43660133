"""The categorical VAE and its training runs: exact bounds, exact gradients, equal starts.

A tiny model (6 pixels, hidden width 3, 2 variables of 3 classes) is small enough for every
expectation to be a sum over its 9 codes: the KL term, the ELBO, ``log p(x)`` and the
gradient of the ELBO (and of the k-sample bound) with respect to every parameter. One
training step's gradient (:func:`minigrad.experiments.vae.step_loss`) on a batch of copies
of one image is then checked against that exact gradient in standard errors, over
independent steps, for the unbiased estimators; Gumbel-softmax must show its bias.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.catalogue import E_F, ESTIMATORS, make_control
from minigrad.estimators.exact import exact_expectation_categorical
from minigrad.experiments import vae as V
from minigrad.functions import concatenate
from minigrad.models.vae import CategoricalVAE
from minigrad.nn import Module
from minigrad.tensor import Tensor, grad

PIXELS, HIDDEN, N, K = 6, 3, 2, 3
MEAN = np.array([0.2, 0.5, 0.7, 0.4, 0.9, 0.1])
IMAGE = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])


def tiny(n=N, classes=K, seed=0) -> CategoricalVAE:
    model = CategoricalVAE(MEAN, n, classes, HIDDEN, rng=seed, dtype=np.float64)
    # larger encoder weights than Glorot's, so that q is far from uniform
    for p in model.encoder.parameters():
        p.data = p.data * 3.0 + 0.3
    return model


def exact_elbo(model, x) -> Tensor:
    logits = model.encoder_logits(x)
    return exact_expectation_categorical(logits, model.reconstruction(x)) - model.kl(logits)


def exact_k_sample_bound(model, x, k: int) -> Tensor:
    logits = model.encoder_logits(x)
    tiled = concatenate([logits] * k, axis=1)

    def bound(b: Tensor) -> Tensor:
        total = None
        for j in range(k):
            b_j = b[:, j * model.n:(j + 1) * model.n]
            w = model.log_likelihood(x, b_j) + model.log_prior(b_j) - model.log_q(b_j, logits)
            total = w.exp() if total is None else total + w.exp()
        return (total * (1.0 / k)).log()

    return exact_expectation_categorical(tiled, bound)


def log_evidence(model, x) -> float:
    """``log p(x) = log sum_b p(b) p(x | b)`` over the 9 codes."""
    eye = np.eye(model.classes)
    codes = np.array([[eye[i], eye[j]] for i in range(K) for j in range(K)])
    terms = [model.log_likelihood(x, c[None]).data[0] + model.log_prior(c[None]).data[0]
             for c in codes]
    return float(np.log(np.sum(np.exp(terms))))


# ---------------------------------------------------------------------- the model
def test_the_kl_term_is_the_enumerated_kl():
    model = tiny()
    logits = model.encoder_logits(IMAGE)
    by_enumeration = exact_expectation_categorical(
        logits, lambda b: model.log_q(b, logits) - model.log_prior(b))
    np.testing.assert_allclose(model.kl(logits).data, by_enumeration.data, rtol=1e-12)


def test_the_bounds_are_ordered_and_the_iwae_bound_approaches_log_p():
    model = tiny()
    elbo = float(exact_elbo(model, IMAGE).data[0])
    log_p = log_evidence(model, IMAGE)
    assert elbo < log_p
    rng = np.random.default_rng(0)
    x = np.repeat(IMAGE, 400, axis=0)
    sampled_elbo = model.elbo(x, rng)
    # the one-sample ELBO is an unbiased estimate of the exact ELBO
    z = (sampled_elbo.mean() - elbo) / (sampled_elbo.std(ddof=1) / np.sqrt(len(x)))
    assert abs(z) <= 4
    bound_5 = model.iwae_bound(x, 5, rng).mean()
    bound_200 = model.iwae_bound(x[:50], 200, rng).mean()
    assert elbo < bound_5 < bound_200 <= log_p + 1e-9
    # the gap to log p(x) shrinks like 1/k (Burda et al. 2016): 40 times from k = 5 to 200
    print(f"\nELBO {elbo:.4f}, k = 5: {bound_5:.4f}, k = 200: {bound_200:.4f}, log p {log_p:.4f}")
    assert log_p - bound_200 < (log_p - bound_5) / 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n \\(latent variables\\) must be at least 1"),
    (dict(classes=1), "classes \\(K\\) must be at least 2"),
    (dict(hidden=0), "hidden"),
    (dict(n=100, classes=64), "more than 4096"),
    (dict(n=2.5), "must be an integer"),
])
def test_nonsense_sizes_are_refused(kwargs, message):
    sizes = dict(n=N, classes=K, hidden=HIDDEN) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        CategoricalVAE(MEAN, **sizes)


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="one mean per pixel"):
        CategoricalVAE(MEAN[None], N, K)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        CategoricalVAE(MEAN * 255, N, K)
    model = tiny()
    with pytest.raises(ValueError, match="images of shape \\(batch, 6\\)"):
        model.encoder_logits(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="\\(batch, 2, 3\\)"):
        model.log_likelihood(IMAGE, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="k \\(importance samples\\)"):
        model.iwae_bound(IMAGE, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown VAE estimator"):
        V.VAEConfig("x", "REBARR", steps=1)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        V.VAEConfig("x", "RLOO", steps=0)
    with pytest.raises(ValueError, match="whole number of variables"):
        V.shapes_with_bits(6, classes=(16,))


def test_shapes_with_bits():
    assert V.shapes_with_bits(12) == [(12, 2), (6, 4), (3, 16), (2, 64)]


# ---------------------------------------------------------------------- one step's gradient
ROWS, STEPS = 100, 150
Z_MAX = 4.5   # ~60 components, 150 steps: a |t| above 4.5 is a 1e-3 event for all together


def step_gradients(model, spec, seed=1):
    """``STEPS`` independent steps' gradients on ``ROWS`` copies of the image, flattened."""
    rng = np.random.default_rng(seed)
    x = np.repeat(IMAGE, ROWS, axis=0)
    config = V.VAEConfig("t", spec.name, steps=1, n=model.n, classes=model.classes,
                         relax_hidden=4, temperature=0.5)
    control = make_control(spec, model=model, config=config)
    if isinstance(control, Module):   # a control not at its start: a real test of it
        for p in control.parameters():
            p.data = p.data + 0.3 * rng.standard_normal(p.data.shape)
    params = model.parameters()
    out = []
    for _ in range(STEPS):
        u = V.draw_vae_noise(spec, rng, ROWS, model.n, model.classes)
        loss, _, _ = V.step_loss(model, spec, control, x, u, 0.5)
        out.append(np.concatenate([d.data.ravel() for d in grad(loss, params)]))
    return np.array(out)


def exact_descent_gradient(model, objective) -> np.ndarray:
    params = model.parameters()
    return -np.concatenate([d.data.ravel() for d in grad(objective.sum(), params)])


def z_scores(samples, exact):
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    return (samples.mean(axis=0) - exact) / np.where(se > 0, se, 1.0)


UNBIASED = [name for name in V.VAE_ESTIMATORS
            if ESTIMATORS[name].unbiased and ESTIMATORS[name].target == E_F]


@pytest.mark.parametrize("name", UNBIASED)
def test_a_step_is_unbiased_for_the_elbo_gradient(name):
    model = tiny()
    exact = exact_descent_gradient(model, exact_elbo(model, IMAGE))
    z = z_scores(step_gradients(model, V.vae_estimator(name)), exact)
    print(f"\n{name}: largest |z| {np.abs(z).max():.1f}")
    assert np.abs(z).max() <= Z_MAX


def test_a_vimco_step_is_unbiased_for_the_k_sample_bound_gradient():
    model = tiny(n=1)
    spec = V.vae_estimator("VIMCO")
    exact = exact_descent_gradient(model, exact_k_sample_bound(model, IMAGE, spec.samples))
    samples = step_gradients(model, spec)
    assert np.abs(z_scores(samples, exact)).max() <= Z_MAX
    # and it is not the ELBO's gradient: the test can tell the two objectives apart
    elbo = exact_descent_gradient(model, exact_elbo(model, IMAGE))
    assert np.abs(z_scores(samples, elbo)).max() > Z_MAX


def test_a_vimco_step_without_its_pathwise_term_is_rejected():
    model = tiny(n=1)
    spec = V.vae_estimator("VIMCO")
    exact = exact_descent_gradient(model, exact_k_sample_bound(model, IMAGE, spec.samples))
    # leave the score-function part only: the importance-weighted -log q term is dropped
    real = V.step_loss

    def without_pathwise(model, spec, control, x, noise, temperature=0.5):
        logits = model.encoder_logits(x)
        loss, elbo, d = real(model, spec, control, x, noise, temperature)
        hard = V.hard_samples(spec, logits.data, noise)
        w = np.stack([(model.log_likelihood(x, b) + model.log_prior(b)
                       - model.log_q(b, Tensor(logits.data))).data for b in hard])
        weights = np.exp(w - w.max(0)) / np.exp(w - w.max(0)).sum(0)
        pathwise = sum((model.log_q(b, logits) * Tensor(weights[i])).sum()
                       for i, b in enumerate(hard))
        return loss - pathwise * (1.0 / len(x)), elbo, d

    V.step_loss = without_pathwise
    try:
        z = z_scores(step_gradients(model, spec), exact)
    finally:
        V.step_loss = real
    assert np.abs(z).max() > Z_MAX


def test_a_gumbel_softmax_step_is_biased():
    model = tiny()
    exact = exact_descent_gradient(model, exact_elbo(model, IMAGE))
    z = z_scores(step_gradients(model, V.vae_estimator("Gumbel-softmax, relaxed")), exact)
    print(f"\nGumbel-softmax: largest |z| {np.abs(z).max():.1f}")
    assert np.abs(z).max() > Z_MAX


# ---------------------------------------------------------------------- runs
PATTERNS = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 1, 1]])


def data(rows=120, seed=0):
    """Three patterns with 5% of their pixels flipped: a code of one variable explains them
    (independent pixels, the model at its start, do not)."""
    rng = np.random.default_rng(seed)
    x = PATTERNS[rng.integers(0, len(PATTERNS), rows)]
    return np.abs(x - (rng.random(x.shape) < 0.05)).astype(np.float32)


def config(name, steps=6, **kw):
    sizes = dict(n=N, classes=K, hidden=HIDDEN, batch_size=10, record_every=3, eval_k=5,
                 eval_examples=20, relax_hidden=4) | kw
    return V.VAEConfig(name, name, steps=steps, **sizes)


def test_every_estimator_of_a_comparison_starts_equal_and_sees_the_same_batches():
    train = data()
    runs = [V.VAERun(config(name), train, train[:20]) for name in V.VAE_ESTIMATORS]
    first = runs[0].model.state_dict()
    for run in runs[1:]:
        for key, value in run.model.state_dict().items():
            np.testing.assert_array_equal(value, first[key])
    batches = [[next(run.stream)[0] for _ in range(3)] for run in runs]
    for other in batches[1:]:
        for a, b in zip(batches[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(V.VAE_ESTIMATORS))
def test_every_estimator_trains_and_records_its_history(name):
    train = data()
    _, history = V.train_vae(config(name), train, train[:20])
    assert history.steps == [3, 6]
    spec = V.vae_estimator(name)
    per_step = spec.cost(N, K, spec.samples)
    assert history.evaluations == [3 * per_step, 6 * per_step]
    assert np.all(np.isfinite(history.train_elbo)) and np.isfinite(history.val_bound)
    assert history.seconds[0] <= history.seconds[1] <= history.elapsed


def test_training_raises_the_validation_bound():
    train = data(600)
    model_0 = V.VAERun(config("RLOO"), train, train[:100])
    before = model_0.finish().val_bound
    _, history = V.train_vae(config("RLOO", steps=300, lr=3e-2), train, train[:100])
    print(f"\nvalidation bound {before:.3f} -> {history.val_bound:.3f}")
    assert history.val_bound > before + 0.1


@pytest.mark.parametrize("name", ["RELAX, categorical", "VIMCO"])
def test_a_resumed_run_continues_bit_identically(name, tmp_path):
    train = data()
    spec = config(name, steps=8)
    run = V.VAERun(spec, train, train[:20])
    for _ in range(3):
        run.step()
    path = tmp_path / "run.npz"
    run.save(path, dict(spec.__dict__))
    resumed = V.VAERun(spec, train, train[:20])
    resumed.resume(path, dict(spec.__dict__))
    for _ in range(5):
        run.step()
        resumed.step()
    for key, value in run.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value)
    if run.control is not None:
        for key, value in run.control.state_dict().items():
            np.testing.assert_array_equal(resumed.control.state_dict()[key], value)
    assert resumed.history.train_elbo == run.history.train_elbo


def test_the_variance_race_ranks_rloo_below_reinforce():
    train = data(400)
    race = V.variance_race(config("RLOO", steps=4, record_every=2), train,
                           ["REINFORCE, categorical", "RLOO", "RELAX, categorical"],
                           draws=30)
    assert race.steps == [2, 4]
    for values in race.log_variance.values():
        assert len(values) == 2 and np.all(np.isfinite(values))
    assert all(r < f for r, f in zip(race.log_variance["RLOO"],
                                     race.log_variance["REINFORCE, categorical"]))
    assert set(race.seconds_per_estimate) == {"REINFORCE, categorical", "RLOO",
                                              "RELAX, categorical"}
