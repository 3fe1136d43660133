"""How estimators are judged: bias against the exact gradient, in standard errors, and variance.

``estimates`` is always an array of independent single-sample estimates stacked on axis 0,
shape (samples, ...); ``exact`` has the shape of one estimate (from
:mod:`minigrad.estimators.exact`).

- :func:`bias_z_scores`: ``(mean - exact) / standard error`` per component. An unbiased
  estimator gives z-scores of a standard normal; a real bias grows like ``sqrt(samples)``.
- :func:`summarize_estimates`: mean, bias, its z-scores, standard deviation and variance
  in one record, for tables and plots.
- :class:`EMALogVariance`: the log-variance of an estimator along training, from moving
  averages of its first and second moments (decay 0.999, as the REBAR paper's plots).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minigrad.estimators import checks
from minigrad.kernels import ema_moments_update, ema_moments_update_reference
from minigrad.tensor import Tensor

__all__ = [
    "sample_mean", "standard_error", "bias", "bias_z_scores", "variance",
    "EstimateSummary", "summarize_estimates", "EMALogVariance",
]


def _array(values) -> np.ndarray:
    return values.data if isinstance(values, Tensor) else np.asarray(values)


def _samples(estimates) -> np.ndarray:
    estimates = _array(estimates)
    if estimates.ndim < 1 or len(estimates) < 2:
        raise ValueError(
            f"diagnostics: need at least 2 estimates stacked on axis 0, got shape "
            f"{estimates.shape}"
        )
    return estimates


def sample_mean(estimates) -> np.ndarray:
    """The mean estimate, per component."""
    return _samples(estimates).mean(axis=0)


def variance(estimates) -> np.ndarray:
    """The variance of one estimate, per component (unbiased, ``ddof=1``)."""
    return _samples(estimates).var(axis=0, ddof=1)


def standard_error(estimates) -> np.ndarray:
    """The standard error of the mean estimate, per component."""
    estimates = _samples(estimates)
    return np.sqrt(variance(estimates) / len(estimates))


def bias(estimates, exact) -> np.ndarray:
    """The mean estimate minus the exact gradient, per component."""
    return sample_mean(estimates) - _array(exact)


def bias_z_scores(estimates, exact) -> np.ndarray:
    """The bias in standard errors of the mean, per component.

    A component with no spread at all (a unit that never fires at random) has z = 0 if its
    mean equals the exact value and infinity otherwise.
    """
    difference = bias(estimates, exact)
    se = standard_error(estimates)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = difference / se
    return np.where(se > 0, z, np.where(difference == 0, 0.0, np.inf * np.sign(difference)))


@dataclass
class EstimateSummary:
    """What :func:`summarize_estimates` measures; arrays have the shape of one estimate."""

    count: int
    exact: np.ndarray
    mean: np.ndarray
    bias: np.ndarray
    z: np.ndarray
    std: np.ndarray
    variance: np.ndarray

    @property
    def largest_abs_z(self) -> float:
        return float(np.max(np.abs(self.z)))

    @property
    def bias_norm(self) -> float:
        return float(np.linalg.norm(self.bias))

    @property
    def rms_std(self) -> float:
        """The root-mean-square standard deviation over components."""
        return float(np.sqrt(np.mean(self.variance)))


def summarize_estimates(estimates, exact) -> EstimateSummary:
    """Mean, bias, z-scores, standard deviation and variance of stacked estimates."""
    estimates = _samples(estimates)
    var = variance(estimates)
    return EstimateSummary(count=len(estimates), exact=np.asarray(_array(exact)),
                           mean=sample_mean(estimates), bias=bias(estimates, exact),
                           z=bias_z_scores(estimates, exact), std=np.sqrt(var), variance=var)


class EMALogVariance:
    """Track ``log Var[g]`` of an estimator along training with exponential moving averages.

    Each :meth:`update` takes one estimate ``g`` (any shape) and updates
    ``m1 <- decay m1 + (1 - decay) g`` and ``m2 <- decay m2 + (1 - decay) g^2``, both
    started at 0 and divided by ``1 - decay^t`` to remove the start-up bias. The variance is
    ``m2 - m1^2`` per component; :attr:`log_variance` is the log of its mean over components,
    the quantity the REBAR paper (Tucker et al. 2017, decay 0.999) plots.
    """

    def __init__(self, decay: float = 0.999):
        self.decay = checks.decay_rate(decay, "EMALogVariance")
        self.first: np.ndarray | None = None
        self.second: np.ndarray | None = None
        self.steps = 0

    def update(self, g) -> None:
        """Add one estimate (read :attr:`log_variance` when needed: it costs a pass)."""
        g = _array(g)
        if g.dtype not in (np.float32, np.float64):
            g = g.astype(np.float64)
        if self.first is None:
            self.first = np.zeros(g.shape, dtype=np.float64)
            self.second = np.zeros(g.shape, dtype=np.float64)
        if g.shape != self.first.shape:
            raise ValueError(
                f"EMALogVariance: estimates so far had shape {self.first.shape}, got {g.shape}"
            )
        # in place (moments set from outside that are not writable C-ordered float64 are
        # copied once), in one pass where it can: the SBN step adds 237,000 components
        self.first = np.require(self.first, np.float64, ["C", "W"])
        self.second = np.require(self.second, np.float64, ["C", "W"])
        if not ema_moments_update(self.first.reshape(-1), self.second.reshape(-1),
                                  np.ascontiguousarray(g).reshape(-1), self.decay):
            ema_moments_update_reference(self.first, self.second, g, self.decay)
        self.steps += 1

    @property
    def variance(self) -> np.ndarray:
        if self.steps == 0:
            raise RuntimeError("EMALogVariance: no estimate yet; call update(g) first")
        correction = 1 - self.decay ** self.steps
        mean = self.first / correction
        return np.maximum(self.second / correction - mean ** 2, 0.0)

    @property
    def log_variance(self) -> float:
        return float(np.log(np.mean(self.variance)))
