"""Evolution strategies for the 0-1 loss, and LeNet-5.

The oracle: under Gaussian smoothing the expected 0-1 loss of K logits has an exact
one-dimensional integral. With x_k = z_k + sigma eps_k and t = eps_y,

    P(argmax x = y) = int phi(t) prod_{k != y} Phi(t + (z_y - z_k) / sigma) dt,

and differentiating under the integral gives its gradient. For two classes it is the closed
form Phi((z_other - z_y) / (sigma sqrt 2)). Each ES variant is z-tested against the exact
expectation it should have, and deliberately broken versions must fail the same test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minigrad.data import Split
from minigrad.estimators.black_box import (centered_ranks, es_gradient,
                                           es_zero_one_gradient, zero_one_loss)
from minigrad.experiments.lenet import LeNetConfig, lenet_step, train_lenet
from minigrad.gradcheck import gradcheck
from minigrad.models.lenet import LeNet5
from minigrad.optim import Adam
from minigrad.tensor import Tensor

# ------------------------------------------------------------------------- the exact oracle
_T = np.linspace(-12.0, 12.0, 24_001)       # quadrature grid for t ~ N(0, 1)
_PHI_T = np.exp(-_T ** 2 / 2) / math.sqrt(2 * math.pi)
_ncdf = np.vectorize(lambda a: 0.5 * math.erfc(-a / math.sqrt(2.0)))


def _npdf(a):
    return np.exp(-a ** 2 / 2) / math.sqrt(2 * math.pi)


def smoothed_zero_one(z, y, sigma):
    """Exact E[1[argmax(z + sigma eps) != y]] and its gradient in z, by quadrature."""
    z = np.asarray(z, dtype=np.float64)
    others = [k for k in range(len(z)) if k != y]
    a = {k: _T + (z[y] - z[k]) / sigma for k in others}
    cdf = {k: _ncdf(a[k]) for k in others}
    p_correct = np.trapezoid(_PHI_T * np.prod([cdf[k] for k in others], axis=0), _T)
    grad = np.zeros_like(z)
    for k in others:
        rest = np.prod([cdf[j] for j in others if j != k], axis=0) if len(others) > 1 else 1.0
        grad[k] = np.trapezoid(_PHI_T * _npdf(a[k]) / sigma * rest, _T)
    grad[y] = -grad[others].sum()
    return 1.0 - p_correct, grad


def test_oracle_matches_two_class_closed_form_and_finite_differences():
    z, sigma = np.array([0.7, -0.4]), 1.5
    loss, grad = smoothed_zero_one(z, 0, sigma)
    s = sigma * math.sqrt(2)
    assert loss == pytest.approx(_ncdf((z[1] - z[0]) / s), abs=1e-10)
    assert grad[1] == pytest.approx(_npdf((z[1] - z[0]) / s) / s, abs=1e-10)
    assert grad[0] == pytest.approx(-grad[1], abs=1e-12)
    # Three classes: the gradient of the quadrature is the derivative of the quadrature.
    z3, h = np.array([0.5, 0.0, -1.0]), 1e-5
    _, g3 = smoothed_zero_one(z3, 1, 2.0)
    for k in range(3):
        e = np.eye(3)[k] * h
        fd = (smoothed_zero_one(z3 + e, 1, 2.0)[0] - smoothed_zero_one(z3 - e, 1, 2.0)[0]) / (2 * h)
        # central-difference error ~ h^2 |L'''| + 1e-16 / h, far below 1e-8 here
        assert g3[k] == pytest.approx(fd, abs=1e-8)


# --------------------------------------------------------------------------- the z-test
CASES = [  # logits, label, sigma, draws per estimate
    (np.array([0.3, -0.2]), 0, 1.0, 20),
    (np.array([0.5, 0.0, -1.0]), 1, 2.0, 50),
    (np.array([1.0, 2.0, 0.0]), 2, 4.0, 50),
]
ROWS = 4000          # independent estimates per z-test


def z_scores(estimator, z, y, sigma, n, expected, seed=0):
    """(mean of ROWS independent estimates - expected) / standard error, per component."""
    logits = np.tile(z, (ROWS, 1))
    labels = np.full(ROWS, y)
    g = estimator(logits, labels, np.random.default_rng(seed), sigma=sigma, n=n)
    se = g.std(axis=0, ddof=1) / math.sqrt(ROWS)
    return (g.mean(axis=0) - expected) / se


def _with(**options):
    def estimator(logits, labels, rng, sigma, n):
        return es_zero_one_gradient(logits, labels, rng, sigma=sigma, n=n, **options)
    return estimator


def _half(n):
    return 0.5


def _half_antithetic(n):
    return n / (2 * (n - 1))


VARIANTS = {  # name: (estimator, factor of the smoothed gradient that is its expectation)
    "plain": (_with(), None),
    "antithetic": (_with(antithetic=True), None),
    "mean baseline": (_with(baseline="mean"), None),
    "constant baseline": (_with(baseline=0.5), None),
    "centred ranks": (_with(shaping="centered_ranks"), _half),
    "centred ranks, antithetic": (_with(shaping="centered_ranks", antithetic=True),
                                  _half_antithetic),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_es_variant_has_its_exact_expectation(variant, case):
    z, y, sigma, n = CASES[case]
    estimator, factor = VARIANTS[variant]
    _, grad = smoothed_zero_one(z, y, sigma)
    expected = grad * (1.0 if factor is None else factor(n))
    z_values = z_scores(estimator, z, y, sigma, n, expected, seed=case)
    assert np.all(np.abs(z_values) <= 4), f"{variant}: z-scores {z_values}"


def _sign_flipped(logits, labels, rng, sigma, n):
    return -es_zero_one_gradient(logits, labels, rng, sigma=sigma, n=n)


def _over_sigma_squared(logits, labels, rng, sigma, n):
    return es_zero_one_gradient(logits, labels, rng, sigma=sigma, n=n) * (1.0 / sigma)


def _ranks_taken_as_unbiased(logits, labels, rng, sigma, n):
    return es_zero_one_gradient(logits, labels, rng, sigma=sigma, n=n,
                                shaping="centered_ranks")


@pytest.mark.parametrize("broken", [_sign_flipped, _over_sigma_squared,
                                    _ranks_taken_as_unbiased])
@pytest.mark.parametrize("case", [1, 2])     # sigma != 1, so a wrong 1/sigma shows
def test_broken_estimators_fail_the_z_test(broken, case):
    z, y, sigma, n = CASES[case]
    _, grad = smoothed_zero_one(z, y, sigma)
    assert np.max(np.abs(z_scores(broken, z, y, sigma, n, grad, seed=case))) > 4


def test_es_gradient_of_a_linear_fitness_is_its_slope():
    # E[c . (z + sigma eps)] has gradient c exactly, for every sigma.
    c = np.array([1.0, -2.0, 0.5])
    logits = np.zeros((ROWS, 3))
    g = es_gradient(logits, lambda x: x @ c, np.random.default_rng(3), sigma=0.7, n=10)
    z_values = (g.mean(0) - c) / (g.std(0, ddof=1) / math.sqrt(ROWS))
    assert np.all(np.abs(z_values) <= 4)


# ------------------------------------------------------------------ ranks and 0-1 fitness
def test_centered_ranks_share_ties_and_span_half_to_half():
    f = np.array([[0.0, 1.0, 1.0, 0.0, 0.0], [3.0, 1.0, 2.0, 2.0, 5.0]])
    expected = np.array([[-0.25, 0.375, 0.375, -0.25, -0.25],
                         [0.25, -0.5, -0.125, -0.125, 0.5]])
    np.testing.assert_allclose(centered_ranks(f), expected)
    distinct = np.random.default_rng(0).permutation(7).astype(float)[None]
    np.testing.assert_allclose(centered_ranks(distinct), distinct / 6 - 0.5)


def test_centered_ranks_of_binary_fitness_are_a_scaled_mean_baseline():
    f = (np.random.default_rng(1).random((50, 9)) < 0.3).astype(float)
    n = f.shape[1]
    shifted = (f - f.mean(1, keepdims=True)) * n / (2 * (n - 1))
    np.testing.assert_allclose(centered_ranks(f), shifted, atol=1e-12)


def test_zero_one_loss_counts_mistakes():
    z = np.array([[[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]])      # (batch 1, 2 draws, 3 classes)
    np.testing.assert_array_equal(zero_one_loss(z, np.array([1])), [[0.0, 1.0]])


# ------------------------------------------------------------------ the interface contract
def _logits_labels():
    rng = np.random.default_rng(7)
    return rng.standard_normal((6, 10)).astype(np.float32), rng.integers(0, 10, 6)


@pytest.mark.parametrize("options", [{}, {"antithetic": True},
                                     {"shaping": "centered_ranks"}, {"baseline": "mean"}])
def test_same_inputs_same_estimate_and_no_side_effects(options):
    z, y = _logits_labels()
    m = 4 if options.get("antithetic") else 8
    eps = np.random.default_rng(2).standard_normal((6, m, 10), dtype=np.float32)
    z0, y0, eps0 = z.copy(), y.copy(), eps.copy()
    g1 = es_zero_one_gradient(Tensor(z), y, eps, n=8, **options)
    g2 = es_zero_one_gradient(Tensor(z), y, eps, n=8, **options)
    g3 = es_zero_one_gradient(z, y, np.random.default_rng(2), n=8, **options)
    assert isinstance(g1, np.ndarray) and g1.shape == z.shape and g1.dtype == z.dtype
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(g1, g3)   # a Generator draws the same eps
    for before, after in ((z0, z), (y0, y), (eps0, eps)):
        np.testing.assert_array_equal(before, after)


def test_one_hot_labels_match_class_indices():
    z, y = _logits_labels()
    one_hot = np.eye(10, dtype=np.float32)[y]
    a = es_zero_one_gradient(z, y, np.random.default_rng(0), n=16)
    b = es_zero_one_gradient(z, one_hot, np.random.default_rng(0), n=16)
    np.testing.assert_array_equal(a, b)


def test_numpy_scalars_are_accepted():
    z, y = _logits_labels()
    a = es_zero_one_gradient(z, y, np.random.default_rng(0), sigma=4.0, n=16)
    b = es_zero_one_gradient(z, y, np.random.default_rng(0), sigma=np.float32(4), n=np.int64(16))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sigma": 0.0}, ValueError, "sigma"),
    ({"sigma": -1.0}, ValueError, "sigma"),
    ({"sigma": float("nan")}, ValueError, "sigma"),
    ({"sigma": True}, ValueError, "sigma"),
    ({"sigma": "4"}, ValueError, "sigma"),
    ({"sigma": np.array([4.0])}, ValueError, "sigma"),
    ({"n": 0}, ValueError, "n "),
    ({"n": 2.0}, ValueError, "n "),
    ({"n": True}, ValueError, "n "),
    ({"n": 3, "antithetic": True}, ValueError, "even"),
    ({"shaping": "ranks"}, ValueError, "shaping"),
    ({"baseline": "median"}, ValueError, "baseline"),
    ({"baseline": "mean", "antithetic": True}, ValueError, "baseline=None"),
    ({"labels": np.zeros(5, dtype=int)}, ValueError, r"shape \(6,\)"),
    ({"labels": np.zeros(6)}, TypeError, "integers"),
    ({"labels": np.full(6, 10)}, ValueError, r"\[0, 10\)"),
    ({"labels": np.ones((6, 10))}, ValueError, "one-hot"),
    ({"noise": np.zeros((6, 3, 10))}, ValueError, "pre-drawn noise"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, error, match):
    z, y = _logits_labels()
    labels = kwargs.pop("labels", y)
    noise = kwargs.pop("noise", np.random.default_rng(0))
    with pytest.raises(error, match=match):
        es_zero_one_gradient(z, labels, noise, **kwargs)


def test_integer_logits_are_rejected():
    with pytest.raises(ValueError, match="floating"):
        es_zero_one_gradient(np.zeros((2, 3), dtype=int), np.zeros(2, dtype=int),
                             np.random.default_rng(0))


# ----------------------------------------------------------------------------- LeNet-5
def test_lenet_output_shape_and_parameter_count():
    model = LeNet5(0)
    assert model(Tensor(np.zeros((3, 1, 32, 32), np.float32))).shape == (3, 10)
    assert sum(p.data.size for p in model.parameters()) == 61_706
    with pytest.raises(ValueError, match="pad_to_32"):
        model(Tensor(np.zeros((3, 784), np.float32)))


def test_lenet_glorot_weights_and_zero_biases():
    for name, p in LeNet5(1).named_parameters():
        if name.endswith("bias"):
            assert np.all(p.data == 0), name
            continue
        w = p.data
        if w.ndim == 4:
            fan_in, fan_out = w.shape[1] * w[0, 0].size, w.shape[0] * w[0, 0].size
        else:
            fan_in, fan_out = w.shape
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w).max() <= limit, name
        # uniform on (-limit, limit): the sample fills the interval and has variance limit^2/3
        assert np.abs(w).max() > 0.9 * limit, name
        assert w.var() == pytest.approx(limit ** 2 / 3, rel=5 / math.sqrt(w.size)), name


def test_lenet_gradcheck_tiny_float64():
    model = LeNet5(2, channels=(2, 3), hidden=(5, 4), classes=3, image_size=16,
                   dtype=np.float64)
    slots = [(m, a) for m in model.modules() for a in m._parameters]
    originals = [getattr(m, a) for m, a in slots]
    x = Tensor(np.random.default_rng(3).standard_normal((2, 1, 16, 16)), requires_grad=True)

    def forward(x, *params):
        for (m, a), p in zip(slots, params):
            object.__setattr__(m, a, p)
        try:
            return model(x)
        finally:
            for (m, a), p in zip(slots, originals):
                object.__setattr__(m, a, p)

    params = [Tensor(p.data.copy(), requires_grad=True) for p in originals]
    # eps 1e-6 in float64: truncation ~1e-12, rounding ~1e-16 |f| / eps ~1e-9
    assert gradcheck(forward, [x, *params], eps=1e-6, atol=1e-6, rtol=1e-5)


def _fixed_batch(size=64, seed=0):
    """Ten sparse binary prototype images (like digits: mostly 0) with a little noise."""
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((10, 1, 32, 32)) < 0.15).astype(np.float64)
    labels = np.arange(size) % 10
    x = np.clip(prototypes[labels] + 0.1 * rng.standard_normal((size, 1, 32, 32)), 0, 1)
    return x.astype(np.float32), np.eye(10, dtype=np.float32)[labels]


def _zero_one(model, x, y):
    return float(np.mean(model(Tensor(x)).data.argmax(1) != y.argmax(1)))


@pytest.mark.parametrize("loss", ["es", "cross_entropy"])
def test_training_lowers_the_zero_one_loss_on_a_fixed_batch(loss):
    x, y = _fixed_batch()
    model = LeNet5(0)
    optimizer = Adam(model.parameters(), lr=1e-3)
    config = LeNetConfig("test", loss=loss)          # the seed's sigma 4 and 200 draws
    rng = np.random.default_rng(0)
    before = _zero_one(model, x, y)
    for _ in range(40):
        lenet_step(model, optimizer, config, x, y, rng)
    after = _zero_one(model, x, y)
    assert before > 0.7                                      # about chance at the start
    assert after < before - 0.3, (before, after)


def test_train_lenet_records_a_history():
    x, y = _fixed_batch(256)
    split = Split(x, y)
    config = LeNetConfig("tiny", epochs=2, max_steps_per_epoch=2, max_eval=64, n=10)
    _, history = train_lenet(config, split, split, split, seed=0)
    assert history.epochs == [1, 2] and history.steps == 4
    assert len(history.val_accuracy) == len(history.train_zero_one) == 2
    assert 0 <= history.test_accuracy <= 1 and len(history.epoch_seconds) == 2
    _, again = train_lenet(config, split, split, split, seed=0)
    assert again.val_accuracy == history.val_accuracy          # seeded, so reproducible


def test_lenet_history_records_per_class_accuracy_and_predicted_share():
    from minigrad.experiments import lenet_class_accuracy, lenet_rows

    x, y = _fixed_batch(256)
    split = Split(x, y)
    config = LeNetConfig("tiny", epochs=2, max_steps_per_epoch=2, max_eval=64, n=10)
    model, history = train_lenet(config, split, split, split, seed=0)
    assert len(history.val_class_accuracy) == len(history.val_predicted_share) == 2
    overall, per_class, share = lenet_class_accuracy(model, x[:64], y[:64])
    labels = y[:64].argmax(1)
    counts = np.bincount(labels, minlength=10)
    present = counts > 0
    # the per-class accuracies, weighted by the classes' sizes, give the accuracy back
    assert np.isclose(np.sum(per_class[present] * counts[present]) / 64, overall)
    assert np.isclose(share.sum(), 1.0) and overall == history.val_accuracy[-1]
    assert history.val_class_accuracy[-1] == [float(a) for a in per_class]
    # rows: each reference is the curve's number at the row's own epoch, in steps
    rows = lenet_rows("es", {"tiny": [history]}, reference_curve=[0.5, 0.6],
                      reference_test=(50, 0.9), reference_steps_per_epoch=430)
    by_metric = {r["metric"]: r for r in rows}
    first = by_metric["validation accuracy after epoch 1"]
    last = by_metric["validation accuracy after epoch 2"]
    test = by_metric["test accuracy after epoch 2"]
    assert (first["steps"], first["reference"], first["reference_steps"]) == (2, 0.5, 430)
    assert (last["steps"], last["reference"], last["reference_steps"]) == (4, 0.6, 860)
    assert (test["reference"], test["reference_steps"]) == (0.9, 50 * 430)
