"""The toy problem of REBAR and RELAX: minimise ``E[(b - t)^2]`` over the logit of one Bernoulli.

``b ~ Bernoulli(sigmoid(theta))``; the loss is ``p (1 - t)^2 + (1 - p) t^2`` with
``p = sigmoid(theta)``, smallest (``t^2``) at ``p = 0`` when ``t < 1/2``. Its gradient,
``p (1 - p) (1 - 2t)``, is tiny next to the noise of a one-sample estimate when ``t`` is
close to 1/2 (Tucker et al. 2017 use ``t = 0.45``; Grathwohl et al. 2018 ``t = 0.499``).

Every seed is one row: a run trains ``seeds`` independent problems at once (Adam acts
elementwise, and each seed's tuned parameters are its own rows), so several seeds cost about
as much as one. Estimators are entries of :data:`TOY_ESTIMATORS`, each a small class with
``params`` (what its own Adam tunes on ``sum(g^2)``, i.e. each seed's ``g^2``) and
``estimate(theta, u, v, rows)``; ``rows`` says which seed each row of ``theta`` belongs to.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from minigrad import functions as F
from minigrad.estimators import relaxed as RX
from minigrad.estimators.score_function import reinforce
from minigrad.nn import Parameter
from minigrad.optim import Adam
from minigrad.tensor import Tensor, grad

__all__ = ["ToyHistory", "TOY_ESTIMATORS", "toy_objective", "expected_loss", "train_toy",
           "relaxed_slope"]


def toy_objective(t: float):
    """``f(b) = (b - t)^2``, one value per row (rows of one unit)."""
    def f(b: Tensor) -> Tensor:
        return ((b - t) ** 2).sum(axis=1)
    return f


def expected_loss(theta: np.ndarray, t: float) -> np.ndarray:
    """``E[(b - t)^2] = p (1 - t)^2 + (1 - p) t^2``."""
    p = 1 / (1 + np.exp(-np.asarray(theta, dtype=np.float64)))
    return p * (1 - t) ** 2 + (1 - p) * t ** 2


def relaxed_slope(z: np.ndarray, t: float, lam: float = 0.5) -> np.ndarray:
    """``d f(sigma(z / lambda)) / d z``: the direction REBAR's relaxation pushes theta in.

    It is ``2 (s - t) s (1 - s) / lambda`` with ``s = sigmoid(z / lambda)``, positive (the
    right sign: the loss grows with theta) only where ``s > t``, i.e.
    ``z > lambda log(t / (1 - t))``.
    """
    s = 1 / (1 + np.exp(-np.asarray(z) / lam))
    return 2 * (s - t) * s * (1 - s) / lam


class _Exact:
    params: list = []

    def __init__(self, seeds, t, rng):
        self.t = t

    def estimate(self, theta, u, v, rows):
        p = 1 / (1 + np.exp(-theta.data))
        return Tensor(p * (1 - p) * ((1 - self.t) ** 2 - self.t ** 2))


class _Reinforce:
    params: list = []

    def __init__(self, seeds, t, rng):
        self.f = toy_objective(t)

    def estimate(self, theta, u, v, rows):
        return reinforce(theta, self.f, u)


class _Rebar:
    """REBAR with the Concrete relaxation; ``dynamic``: eta and log lambda per seed, tuned."""

    def __init__(self, seeds, t, rng, dynamic=False):
        self.f = toy_objective(t)
        self.eta = Parameter(np.ones((seeds, 1)))
        self.log_lam = Parameter(np.full((seeds, 1), np.log(0.5)))
        self.params = [self.eta, self.log_lam] if dynamic else []

    def estimate(self, theta, u, v, rows):
        eta, log_lam = self.eta[rows], self.log_lam[rows]
        if not self.params:
            eta, log_lam = eta.detach(), log_lam.detach()
        return RX.rebar(theta, self.f, u, v, eta, log_lam,
                        relaxation=RX.concrete_relaxation)


class _SeedwiseSurrogate:
    """``r_rho(z)``: one ReLU layer of ``hidden`` units per seed (rows pick their seed)."""

    def __init__(self, seeds, hidden, rng):
        self.w1 = Parameter(rng.normal(0, 1, (seeds, hidden)))
        self.b1 = Parameter(rng.normal(0, 1, (seeds, hidden)))
        self.w2 = Parameter(np.zeros((seeds, hidden)))
        self.b2 = Parameter(np.zeros(seeds))
        self.params = [self.w1, self.b1, self.w2, self.b2]
        self.rows = None

    def __call__(self, z: Tensor) -> Tensor:
        rows = self.rows
        h = F.relu(z * self.w1[rows] + self.b1[rows])
        return (h * self.w2[rows]).sum(axis=1) + self.b2[rows]


class _Relax:
    """RELAX: ``c(z) = f(sigma_lambda(z)) + r_rho(z)``, lambda and rho per seed, tuned."""

    def __init__(self, seeds, t, rng, hidden=10):
        self.f = toy_objective(t)
        self.log_lam = Parameter(np.full((seeds, 1), np.log(0.5)))
        self.net = _SeedwiseSurrogate(seeds, hidden, rng)
        self.params = [self.log_lam, *self.net.params]

    def estimate(self, theta, u, v, rows):
        self.net.rows = rows
        return RX.relax(theta, self.f, u, v, self.log_lam[rows], self.net,
                        relaxation=RX.concrete_relaxation)


TOY_ESTIMATORS = {
    "exact": _Exact,
    "REINFORCE": _Reinforce,
    "REBAR": _Rebar,
    "dynamic REBAR": lambda seeds, t, rng: _Rebar(seeds, t, rng, dynamic=True),
    "RELAX": _Relax,
}


@dataclass
class ToyHistory:
    """Per record: the exact loss and the log-variance of the estimate, one row per seed."""

    estimator: str
    t: float
    steps: list[int] = field(default_factory=list)
    loss: list[np.ndarray] = field(default_factory=list)
    log_variance: list[np.ndarray] = field(default_factory=list)
    theta: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0


def _log_variance(estimator, theta: np.ndarray, rows: np.ndarray, samples: int, rng
                  ) -> np.ndarray:
    """``log Var[g]`` at the current parameters, per seed, from ``samples`` draws each."""
    seeds = len(theta)
    tiled = Tensor(np.repeat(theta, samples, axis=0))
    many = np.repeat(rows, samples)
    g = estimator.estimate(tiled, rng.random(tiled.shape), rng.random(tiled.shape), many)
    var = g.data.reshape(seeds, samples).var(axis=1, ddof=1)
    with np.errstate(divide="ignore"):
        return np.log(var)


def train_toy(estimator: str, t: float, steps: int, seeds: int = 5, lr: float = 0.01,
              record_every: int = 100, variance_samples: int = 500, seed: int = 0
              ) -> ToyHistory:
    """Train ``seeds`` independent copies of the toy problem from ``theta = 0`` with Adam."""
    rng = np.random.default_rng(seed)
    theta = Parameter(np.zeros((seeds, 1)))
    chosen = TOY_ESTIMATORS[estimator](seeds, t, rng)
    optimizer = Adam([theta], lr=lr)
    tuner = Adam(chosen.params, lr=lr) if chosen.params else None
    rows = np.arange(seeds)
    history = ToyHistory(estimator, t)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        u, v = rng.random((seeds, 1)), rng.random((seeds, 1))
        g = chosen.estimate(theta, u, v, rows)
        if tuner is not None:   # each seed's own g^2: the sum keeps the seeds apart
            found = grad((g * g).sum(), chosen.params, allow_unused=True)
            for p, d in zip(chosen.params, found):
                p.grad = Tensor(np.zeros_like(p.data)) if d is None else d.detach()
            tuner.step()
        theta.grad = Tensor(g.data)   # descend the estimate of d E[f] / d theta
        optimizer.step()
        if step % record_every == 0 or step == steps:
            history.steps.append(step)
            history.loss.append(expected_loss(theta.data[:, 0], t))
            history.theta.append(theta.data[:, 0].copy())
            history.log_variance.append(
                _log_variance(chosen, theta.data, rows, variance_samples, rng))
    history.seconds = time.perf_counter() - start
    return history
