"""The toy problem of REBAR and RELAX: minimise ``E[(b - t)^2]`` over the logit of one Bernoulli.

``b ~ Bernoulli(sigmoid(theta))``; the loss is ``p (1 - t)^2 + (1 - p) t^2`` with
``p = sigmoid(theta)``, smallest (``t^2``) at ``p = 0`` when ``t < 1/2``. Its gradient,
``p (1 - p) (1 - 2t)``, is tiny next to the noise of a one-sample estimate when ``t`` is
close to 1/2 (Tucker et al. 2017 use ``t = 0.45``; Grathwohl et al. 2018 ``t = 0.499``).

Every seed is one row: a run trains ``seeds`` independent problems at once (Adam acts
elementwise, and each seed's tuned parameters are its own rows), so several seeds cost about
as much as one. The estimators are entries of the spec table
(:data:`minigrad.estimators.catalogue.ESTIMATORS`), each with its control made for the
seeds (one row of eta, log temperature and ``r_rho`` per seed); :func:`train_toy` is one
loop for all of them: a relaxed control variate's estimate by
:func:`~minigrad.estimators.relaxed.relaxed_estimate`, its control's Parameters tuned by
the loop's own Adam on :func:`~minigrad.estimators.relaxed.variance_gradient`; any other
estimate by the entry's call under the contract; :data:`EXACT` for the exact gradient.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from minigrad.estimators import relaxed as RX
from minigrad.estimators.catalogue import ESTIMATORS, make_control
from minigrad.estimators.controls import RelaxedControl
from minigrad.nn import Module, Parameter
from minigrad.optim import Adam
from minigrad.tensor import Tensor

__all__ = ["ToyHistory", "EXACT", "toy_objective", "expected_loss", "train_toy",
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


def relaxed_slope(z: np.ndarray, t: float, temperature: float = 0.5) -> np.ndarray:
    """``d f(sigma(z / lambda)) / d z``: the direction REBAR's relaxation pushes theta in.

    It is ``2 (s - t) s (1 - s) / lambda`` with ``s = sigmoid(z / lambda)``, positive (the
    right sign: the loss grows with theta) only where ``s > t``, i.e.
    ``z > lambda log(t / (1 - t))``.
    """
    s = 1 / (1 + np.exp(-np.asarray(z) / temperature))
    return 2 * (s - t) * s * (1 - s) / temperature


def _exact(theta: Tensor, t: float) -> np.ndarray:
    p = 1 / (1 + np.exp(-theta.data))
    return p * (1 - p) * ((1 - t) ** 2 - t ** 2)


#: The reference the toy's figures draw beside the estimators: the exact gradient.
EXACT = "exact"


def _estimate(spec, theta: Tensor, t: float, u, v, control, rows) -> Tensor | np.ndarray:
    """The estimate for a batch whose row ``n`` is seed ``rows[n]``; for a relaxed control
    variate a Tensor, differentiable in its control's Parameters (to tune them)."""
    if spec is None:
        return _exact(theta, t)
    if isinstance(control, RelaxedControl):
        return RX.relaxed_estimate(theta, toy_objective(t), u, v, control.select(rows))
    return spec.estimate(theta, toy_objective(t), u, control, None)


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


def _log_variance(spec, t, control, theta: np.ndarray, rows: np.ndarray, samples: int, rng
                  ) -> np.ndarray:
    """``log Var[g]`` at the current parameters, per seed, from ``samples`` draws each."""
    seeds = len(theta)
    tiled = Tensor(np.repeat(theta, samples, axis=0))
    many = np.repeat(rows, samples)
    g = _estimate(spec, tiled, t, rng.random(tiled.shape), rng.random(tiled.shape), control,
                  many)
    g = g.data if isinstance(g, Tensor) else g
    var = g.reshape(seeds, samples).var(axis=1, ddof=1)
    with np.errstate(divide="ignore"):
        return np.log(var)


def train_toy(estimator: str, t: float, steps: int, seeds: int = 5, lr: float = 0.01,
              record_every: int = 100, variance_samples: int = 500, seed: int = 0
              ) -> ToyHistory:
    """Train ``seeds`` independent copies of the toy problem from ``theta = 0`` with Adam.

    ``estimator``: a name in :data:`~minigrad.estimators.catalogue.ESTIMATORS`, or
    :data:`EXACT`. Its control is made for ``seeds`` rows; the control's Parameters, if
    any, take their own Adam step on the variance gradient (each seed's ``g^2``).
    """
    rng = np.random.default_rng(seed)
    theta = Parameter(np.zeros((seeds, 1)))
    spec = None if estimator == EXACT else ESTIMATORS[estimator]
    control = None if spec is None else make_control(spec, rows=seeds, rng=rng)
    params = control.parameters() if isinstance(control, Module) else []
    optimizer = Adam([theta], lr=lr)
    tuner = Adam(params, lr=lr) if params else None
    rows = np.arange(seeds)
    history = ToyHistory(estimator, t)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        u, v = rng.random((seeds, 1)), rng.random((seeds, 1))
        g = _estimate(spec, theta, t, u, v, control, rows)
        if tuner is not None:   # each seed's own g^2: the sum keeps the seeds apart
            _, found = RX.variance_gradient([g], params)
            for p, d in zip(params, found):
                p.grad = Tensor(d)
            tuner.step()
        g = g.data if isinstance(g, Tensor) else g
        theta.grad = Tensor(g)   # descend the estimate of d E[f] / d theta
        optimizer.step()
        if step % record_every == 0 or step == steps:
            history.steps.append(step)
            history.loss.append(expected_loss(theta.data[:, 0], t))
            history.theta.append(theta.data[:, 0].copy())
            history.log_variance.append(
                _log_variance(spec, t, control, theta.data, rows, variance_samples, rng))
    history.seconds = time.perf_counter() - start
    return history
