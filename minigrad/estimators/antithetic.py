"""Antithetic estimators for Bernoulli units: ARM and DisARM.

Both draw *one* uniform ``u`` per unit and evaluate the objective at two samples made from
it, the ordinary one and its mirror image::

    b  = 1[u < sigmoid(a)]          (a Bernoulli(sigmoid(a)) sample)
    b~ = 1[u > sigmoid(-a)]         (also Bernoulli(sigmoid(a)): it is b made from 1 - u)

The two samples are strongly correlated (for ``a > 0`` they agree unless ``u`` falls in a
tail), and the estimators weigh the difference ``f(b~) - f(b)``:

========  ==================================================================  =================
estimator estimate of ``d E[f(b)] / d a_i``                                   source
========  ==================================================================  =================
arm       ``(f(b~) - f(b)) (u_i - 1/2)``                                       Yin & Zhou 2019
disarm    ``1/2 (f(b~) - f(b)) (-1)^{b_i} 1[b_i != b~_i] sigmoid(|a_i|)``      Dong et al. 2020
========  ==================================================================  =================

DisARM is ARM averaged over ``u`` given the pair ``(b, b~)``, a Rao-Blackwellisation: the same
two evaluations of ``f``, the same mean, never a larger variance in any component. A unit
whose two samples agree gets exactly zero from DisARM, and a nonzero (but zero-mean) share of
the noise from ARM. The equal-cost baseline is REINFORCE with leave-one-out centring over two
independent samples, :func:`~minigrad.estimators.score_function.reinforce_loo` with K = 2.

Both functions take the logits, the objective and the noise, and change nothing.
"""
from __future__ import annotations

import numpy as np

from minigrad.estimators import checks
from minigrad.estimators.base import Objective, bernoulli_sample
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor, no_grad

__all__ = ["antithetic_samples", "arm", "disarm"]

_FIX_F = ("the estimate multiplies every unit by f(b~) - f(b), so one NaN would make the "
          "whole row NaN: find where the objective became NaN")


def antithetic_samples(logits: Tensor, u, who: str = "antithetic_samples"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The pair ``(b, b~)`` from one uniform per unit.

    ``b = 1[u < sigmoid(a)]`` and ``b~ = 1[u > sigmoid(-a)] = 1[1 - u < sigmoid(a)]``: the
    same sampler applied to ``u`` and to ``1 - u``, so both are Bernoulli(sigmoid(a)).
    """
    u = _uniform(u, logits.shape, who)
    return bernoulli_sample(logits, u, who), bernoulli_sample(logits, 1.0 - u, who)


def _uniform(u, shape, who: str) -> np.ndarray:
    """Uniform noise in the closed interval [0, 1]: float32 noise rounds draws just below 1
    up to 1.0, and the mirror ``1 - u`` of ``u = 0`` is 1 anyway (both have probability 0
    and give valid samples)."""
    u = checks.noise_of_shape(u, shape, who)
    if u.size and not (u.min() >= 0 and u.max() <= 1):
        raise ValueError(f"{who}: the uniform noise u must lie in [0, 1]")
    return u


def _difference(f: Objective, b_tilde: np.ndarray, b: np.ndarray, who: str) -> np.ndarray:
    """``f(b~) - f(b)``, one value per example, as a column that broadcasts over units."""
    with no_grad():
        values = [f(Tensor(s)) for s in (b_tilde, b)]
    values = [v.data if isinstance(v, Tensor) else np.asarray(v) for v in values]
    for v in values:
        if v.shape != b.shape[:1]:
            raise ValueError(f"{who}: the objective must return one value per example "
                             f"(shape {b.shape[:1]}), got shape {v.shape}")
        checks.finite_values(v, "objective", who, _FIX_F)
    return (values[0] - values[1]).reshape(-1, 1)


def arm(logits: Tensor, f: Objective, u) -> np.ndarray:
    """ARM, augment-REINFORCE-merge (Yin & Zhou 2019, Theorem 1), for logits ``a``::

        g = (f(b~) - f(b)) (u - 1/2),   b = 1[u < sigmoid(a)],  b~ = 1[u > sigmoid(-a)]

    Unbiased for ``d E[f(b)] / d a``; two evaluations of ``f`` per example.
    """
    u = _uniform(u, logits.shape, "arm")
    b, b_tilde = antithetic_samples(logits, u, "arm")
    g = _difference(f, b_tilde, b, "arm") * (u - 0.5)
    return g.astype(logits.dtype)


def disarm(logits: Tensor, f: Objective, u) -> np.ndarray:
    """DisARM (Dong, Mnih & Tucker 2020, eq. 7), ARM with ``u`` integrated out given the pair::

        g_i = 1/2 (f(b~) - f(b)) (-1)^{b_i} 1[b_i != b~_i] sigmoid(|a_i|)

    with ``b`` and ``b~`` as in :func:`arm`. Unbiased, and per component its variance is
    never above ARM's. Where ``b_i != b~_i``, ``(-1)^{b_i} = 1 - 2 b_i``.
    """
    b, b_tilde = antithetic_samples(logits, u, "disarm")
    a = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    differs = b != b_tilde
    sign = 1.0 - 2.0 * b
    weight = sigmoid(Tensor(np.abs(a))).data
    g = 0.5 * _difference(f, b_tilde, b, "disarm") * sign * differs * weight
    return g.astype(a.dtype)
