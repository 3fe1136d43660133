"""Score-function estimators and the Concrete relaxation for layers of Bernoulli units.

Every estimator here answers one question: for units ``b ~ Bernoulli(sigmoid(logits))``
(independent given the logits, shape (batch, units)) and an objective ``f`` mapping a batch of
samples to one value per example, what is an estimate of ``d E[f(b)] / d logits``? Each is a
function of explicit inputs (the logits, ``f``, pre-drawn uniform noise ``u`` and any baseline
values) that returns a Tensor of the logits' shape and changes nothing: calling it twice gives
the same estimate. :func:`~minigrad.estimators.base.surrogate` sends the estimate on to the
parameters that made the logits.

The score of a Bernoulli unit is ``d log q(b) / d logits = b - p`` with ``p = sigmoid(logits)``,
so REINFORCE (Williams 1992) is ``(f(b) - c) (b - p)``, unbiased for any ``c`` that does not
depend on ``b``. The rest of the family chooses ``c``:

=============  ===================================================  =====================
estimator      learning signal times ``(b - p)`` (plus)             source
=============  ===================================================  =====================
reinforce      ``f(b) - c``, c a moving average                     Williams 1992
reinforce_loo  ``f(b_k) - mean_{j != k} f(b_j)``, K samples         Mnih & Rezende 2016
nvil           ``(f(b) - C(x) - c) / max(1, sqrt(v))``              Mnih & Gregor 2014
muprop         ``f(b) - f(p) - f'(p).(b - p)`` (+ ``f'(p) p(1-p)``)  Gu et al. 2016
simple_muprop  ``f(b) - f(p)``                                      Gu et al. 2016
concrete       pathwise: ``d f(sigmoid((logits + L) / t)) / d l``   Maddison et al. 2017
=============  ===================================================  =====================

``reinforce``, ``bernoulli_sample`` and ``MovingAverageBaseline`` live in
:mod:`minigrad.estimators.score_function` and are re-exported here.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from minigrad import functions as F
from minigrad import validate
from minigrad.estimators.score_function import (MovingAverageBaseline, bernoulli_sample,
                                                reinforce)
from minigrad.nn import Linear, Module, Sequential, Tanh
from minigrad.optim import Adam
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

__all__ = [
    "reinforce_loo", "nvil", "muprop", "simple_muprop", "concrete", "NVILBaseline",
    # the rest of the family, from score_function, so one namespace holds it all
    "bernoulli_sample", "reinforce", "MovingAverageBaseline",
]

Objective = Callable[[Tensor], Tensor]


_FIX_F = "f must give a finite value at every sample"


def _probabilities(logits) -> np.ndarray:
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"logits must be floating point, got {data.dtype}")
    return F._sigmoid_array(data)


def _values(f: Objective, b: np.ndarray) -> np.ndarray:
    """f at a hard sample, one value per example, with no graph recorded."""
    with no_grad():
        out = f(Tensor(b))
    out = out.data if isinstance(out, Tensor) else np.asarray(out)
    if out.shape != b.shape[:1]:
        raise ValueError(f"the objective must return one value per example (shape "
                         f"{b.shape[:1]}), got shape {out.shape}")
    return validate.finite(out, "the objective's values f(b)", "estimator", _FIX_F)


def _per_example(c, batch: int, dtype) -> np.ndarray:
    c = c.data if isinstance(c, Tensor) else np.asarray(c, dtype=dtype)
    return np.broadcast_to(c, (batch,)).astype(dtype)


def reinforce_loo(logits: Tensor, f: Objective, u: np.ndarray) -> Tensor:
    """REINFORCE with leave-one-out centring over K samples per example.

    ``u`` has shape (K, batch, units), K >= 2. Sample k's baseline is the mean of the other
    K - 1 values, independent of ``b_k``::

        g = (1/K) sum_k (f(b_k) - mean_{j != k} f(b_j)) (b_k - p)
    """
    u = validate.unit_interval_noise(u, "the uniform noise u", "reinforce_loo")
    if u.ndim != 3 or u.shape[0] < 2:
        raise ValueError(f"reinforce_loo needs noise of shape (K >= 2, batch, units), "
                         f"got {u.shape}")
    p = _probabilities(logits)
    bs = [bernoulli_sample(logits, uk) for uk in u]
    values = np.stack([_values(f, b) for b in bs])          # (K, batch)
    k = len(bs)
    others = (values.sum(axis=0, keepdims=True) - values) / (k - 1)
    signal = values - others
    g = sum(s[:, None] * (b - p) for s, b in zip(signal, bs)) / k
    return Tensor(g)


def nvil(logits: Tensor, f: Objective, u: np.ndarray, baseline, scale=1.0) -> Tensor:
    """NVIL (Mnih & Gregor 2014, section 3): ``g = (f(b) - C(x) - c) / s * (b - p)``.

    ``baseline`` holds ``C(x) + c`` per example (the input-dependent baseline and the running
    mean, see :class:`NVILBaseline`) and ``scale`` the variance normalisation
    ``s = max(1, sqrt(v))``. Unbiased for ``d E[f] / d logits`` up to the positive factor
    ``1 / s``, which only rescales the step.
    """
    validate.finite(baseline, "the baseline", "nvil")
    b = bernoulli_sample(logits, u)
    p = _probabilities(logits)
    centred = _values(f, b) - _per_example(baseline, len(b), p.dtype)
    return Tensor(centred[:, None] * (b - p) / float(scale))


def _mean_field(f: Objective, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f(p)`` and ``f'(p)``: the objective and its gradient at the mean of the units."""
    mean = Tensor(p, requires_grad=True)
    with enable_grad():
        value = f(mean)
        (slope,) = grad(value.sum(), mean)
    validate.finite(value, "the objective's value f(p) at the mean field", "muprop", _FIX_F)
    return value.data, slope.data


def muprop(logits: Tensor, f: Objective, u: np.ndarray) -> Tensor:
    """MuProp (Gu et al. 2016, eq. 5): a first-order Taylor expansion of f around the mean
    field ``p`` as the control variate, its expectation's gradient added back exactly::

        h(b) = f(p) + f'(p) . (b - p)          (f'(p) and p held fixed)
        g = (f(b) - h(b)) (b - p) + f'(p) * p (1 - p)

    The second term is ``d E[h(b)] / d logits``; ``f`` must accept relaxed ``b``.
    """
    b = bernoulli_sample(logits, u)
    p = _probabilities(logits)
    f_mean, slope = _mean_field(f, p)
    taylor = f_mean + ((b - p) * slope).sum(axis=1)
    signal = _values(f, b) - taylor
    return Tensor(signal[:, None] * (b - p) + slope * p * (1 - p))


def simple_muprop(logits: Tensor, f: Objective, u: np.ndarray) -> Tensor:
    """SimpleMuProp (Gu et al. 2016): the mean-field value alone as the baseline,
    ``g = (f(b) - f(p)) (b - p)``; ``f(p)`` does not depend on ``b``, so it is unbiased."""
    b = bernoulli_sample(logits, u)
    p = _probabilities(logits)
    with no_grad():
        f_mean = f(Tensor(p)).data
    validate.finite(f_mean, "the objective's value f(p) at the mean field", "simple_muprop")
    return Tensor((_values(f, b) - f_mean)[:, None] * (b - p))


def concrete(logits: Tensor, f: Objective, u: np.ndarray, temperature: float) -> Tensor:
    """The binary Concrete (Gumbel-softmax) relaxation (Maddison et al. 2017; Jang et al.
    2017): replace ``b`` by ``sigmoid(z / t)`` with ``z = logits + log u - log(1 - u)``
    and differentiate through it. Biased: it is the gradient of ``E[f(soft b)]``, not of
    ``E[f(b)]``; the bias shrinks as ``t -> 0`` while the variance grows."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    validate.finite(temperature, "the temperature", "concrete")
    validate.finite(logits, "logits", "concrete")
    u = validate.unit_interval_noise(u, "the uniform noise u", "concrete")
    p = _probabilities(logits)
    if u.shape != p.shape:
        raise ValueError(f"uniform noise u has shape {u.shape} but the logits have shape "
                         f"{p.shape}")
    with np.errstate(divide="ignore"):
        logistic = np.log(u) - np.log1p(-u)
    at = Tensor(logits.data if isinstance(logits, Tensor) else logits, requires_grad=True)
    with enable_grad():
        soft = F.sigmoid((at + Tensor(logistic.astype(p.dtype))) * (1.0 / temperature))
        (g,) = grad(f(soft).sum(), at)
    validate.finite(g, "the estimate", "concrete", "f is not finite at the relaxed sample")
    return g.detach()


class NVILBaseline(Module):
    """NVIL's baselines (Mnih & Gregor 2014): an input-dependent ``C(x)`` (one tanh layer of
    100 on the centred input), a running mean ``c`` and variance ``v`` of ``f - C(x)``.

    ``C`` is trained by squared error on the centred signal, with its own Adam (10x the model's
    learning rate, as in the REBAR code). Nothing changes except through :meth:`update`.
    ``normalise=False`` keeps ``s = 1`` (the REBAR code's NVIL).
    """

    def __init__(self, input_mean, rng, n_hidden: int = 100, lr: float = 3e-3,
                 decay: float = 0.8, normalise: bool = True, dtype=np.float32):
        super().__init__()
        self.input_mean = np.asarray(input_mean, dtype=dtype)
        self.net = Sequential(Linear(self.input_mean.size, n_hidden, rng, dtype=dtype), Tanh(),
                              Linear(n_hidden, 1, rng, dtype=dtype))
        self.optimizer = Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.99999))
        self.decay, self.normalise = decay, normalise
        self.mean, self.var, self.steps = 0.0, 1.0, 0

    def input_dependent(self, x: np.ndarray) -> Tensor:
        """``C(x)``, one value per example."""
        centred = Tensor(np.asarray(x, dtype=self.input_mean.dtype) - self.input_mean)
        return self.net(centred).reshape(-1)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(C(x) + c, s)``: the baseline per example and the scale for :func:`nvil`."""
        with no_grad():
            values = self.input_dependent(x).data + self.mean
        scale = max(1.0, float(np.sqrt(self.var))) if self.normalise else 1.0
        return values, scale

    def update(self, x: np.ndarray, f_values: np.ndarray) -> None:
        """One step on ``mean((f - c - C(x))^2)`` for C, then the running moments of
        ``r = f - C(x)``: ``c <- a c + (1 - a) mean(r)`` and
        ``v <- a v + (1 - a) mean((r - c)^2)``."""
        validate.finite(f_values, "f_values", "NVILBaseline.update", _FIX_F)
        f_values = np.asarray(f_values, dtype=self.input_mean.dtype)
        with enable_grad():
            predicted = self.input_dependent(x)
            residual = Tensor(f_values - self.mean) - predicted
            self.optimizer.zero_grad()
            (residual * residual).mean().backward()
        r = f_values - predicted.data
        a = self.decay if self.steps else 0.0  # the first update sets the moments
        self.mean = a * self.mean + (1 - a) * float(np.mean(r))
        self.var = a * self.var + (1 - a) * float(np.mean((r - self.mean) ** 2))
        self.optimizer.step()
        self.steps += 1

