"""The tiny problems several test files share, in one place.

- the catalogue's Bernoulli problem (:mod:`minigrad.estimators.catalogue`): 3 examples of
  3 units, logits ``A``, weights ``W``, targets ``T``, the loss
  ``(b . W - T_n)^2 + OFFSET`` (``bernoulli_loss``);
- a tiny sigmoid belief network (3 latent units per layer, 5 visible units) small enough
  that its ELBO, its encoder gradient and log p(x) are exact sums (:func:`exact`), and
  :func:`z_scores` of an estimator's encoder gradient against that exact gradient.

Test files import them (``from conftest import ...``).
"""
from __future__ import annotations

import itertools

import numpy as np

from minigrad.estimators.base import surrogate
from minigrad.estimators.catalogue import BERNOULLI_LOGITS as A
from minigrad.estimators.catalogue import OFFSET
from minigrad.estimators.catalogue import TARGETS as T
from minigrad.estimators.catalogue import WEIGHTS as W
from minigrad.estimators.catalogue import bernoulli_loss
from minigrad.models.sbn import SigmoidBeliefNet, log_mean_exp
from minigrad.tensor import grad

__all__ = ["A", "W", "T", "OFFSET", "bernoulli_loss", "N_VISIBLE", "N_UNITS", "X",
           "TRAIN_MEAN", "tiny_model", "encoder_params", "all_configurations", "exact",
           "sbn_encoder_gradient", "z_scores"]

# ---------------------------------------------------------------------- the tiny SBN
N_VISIBLE, N_UNITS = 5, 3
X = np.array([[1.0, 0.0, 1.0, 1.0, 0.0]])
TRAIN_MEAN = np.array([0.6, 0.3, 0.5, 0.7, 0.2])


def tiny_model(n_layers: int, nonlinear: bool = False, task: str = "generative",
               seed: int = 1) -> SigmoidBeliefNet:
    mean = TRAIN_MEAN if task == "generative" else np.r_[TRAIN_MEAN, 0.4]
    model = SigmoidBeliefNet(mean, n_hidden=N_UNITS, n_layers=n_layers, nonlinear=nonlinear,
                             task=task, rng=seed, dtype=np.float64)
    # Larger weights than the initialisation, so the posterior is far from uniform.
    rng = np.random.default_rng(seed + 100)
    for p in model.parameters():
        p.data = p.data + rng.normal(0, 0.7, p.shape)
    return model


def encoder_params(model):
    return [p for name, p in model.named_parameters() if name.startswith("q")]


def all_configurations(model):
    """Every latent configuration, as one list of per-layer arrays of shape (2^n, units)."""
    n = model.n_layers * model.n_hidden
    rows = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    return [rows[:, i * model.n_hidden:(i + 1) * model.n_hidden]
            for i in range(model.n_layers)]


def exact(model, x):
    """(log p(x), ELBO, d ELBO / d encoder parameters) by enumeration, for one image x."""
    bs = all_configurations(model)
    xs = np.repeat(x, len(bs[0]), axis=0)
    log_q = model.log_q(xs, bs)
    f = model.objective(xs, bs)
    elbo = (log_q.exp() * f).sum()
    grads = grad(elbo, encoder_params(model))
    log_p = log_mean_exp(log_q.data + f.data) + np.log(len(xs))
    return float(log_p), float(elbo.data), [g.data for g in grads]


def sbn_encoder_gradient(model, x, estimator, rng, k_samples: int = 2):
    """One estimate of d ELBO / d encoder parameters, averaged over the rows of x;
    ``estimator(logits, f, u, x, rng)``, ``u`` holding ``k_samples`` draws per unit."""
    u = [rng.random((k_samples, len(x), model.n_hidden)) for _ in range(model.n_layers)]
    first = [uk[0] for uk in u]
    logits, bs = model.sample_encoder(x, first)
    loss = 0.0
    for layer in range(model.n_layers):
        f = model.learning_signal(x, bs, layer, first)
        g = estimator(logits[layer], f, u[layer], x, rng)
        loss = loss + surrogate(logits[layer], g) * (1.0 / len(x))
    return [g.data for g in grad(loss, encoder_params(model))]


def z_scores(model, estimator, seed=0, rows=500, chunks=40):
    """Per-component z-scores of the estimator's mean against the exact gradient."""
    rng = np.random.default_rng(seed)
    _, _, truth = exact(model, X)
    xs = np.repeat(X, rows, axis=0)
    draws = [sbn_encoder_gradient(model, xs, estimator, rng) for _ in range(chunks)]
    zs = []
    for i, t in enumerate(truth):
        d = np.stack([draw[i] for draw in draws])
        se = d.std(axis=0, ddof=1) / np.sqrt(chunks)
        assert np.all(se > 0), "an encoder gradient component never varies"
        zs.append(((d.mean(axis=0) - t) / se).ravel())
    return np.concatenate(zs)
