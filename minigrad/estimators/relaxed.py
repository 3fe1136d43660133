"""Relaxed control variates: REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018).

Both estimate ``d E[f(b)] / d a`` for ``b ~ Bernoulli(theta)``, ``theta = sigmoid(a)``, by
writing the unit as the sign of a logistic variable and using a smooth function ``c`` of
that variable as a control variate::

    z  = a + logit(1 - u)         u ~ U(0, 1), so b = H(z) = 1[u < theta]
    z~ ~ p(z | b)                 the same variable, redrawn given the sample b

    g = (f(b) - c(z~)) d log p(b) / d a  +  d c(z) / d a  -  d c(z~) / d a

(REBAR eq. 4, RELAX eq. 5). The last two terms have the same expectation given the first
ones' correction: ``E[c(z~) score] + E[d c(z~)] = d E[c(z)]`` because ``(b, z~)`` has the
same joint law as ``(H(z), z)``. So ``g`` is unbiased for every smooth ``c``, and ``c``
only changes the variance. Here ``logit(1 - u)`` (not ``logit(u)``) makes ``b`` the same draw
``1[u < theta]`` that every other estimator of the library makes from the same ``u``.

``z~`` is drawn by the conditional reparameterisation with fresh noise ``v``::

    v' = v (1 - theta)                 if b = 0   (v' below 1 - theta)
    v' = v theta + (1 - theta)         if b = 1   (v' above 1 - theta)
    z~ = a + logit(v')

and **keeps its dependence on theta**: ``d c(z~) / d a`` differentiates through ``v'``.
Holding ``z~`` fixed instead leaves ``g`` unbiased but throws away the variance reduction
(duvenaud/relax issue 6); the tests check exactly that.

=============  =========================================================  ==================
estimator      control variate ``c(z)``                                   tuned
=============  =========================================================  ==================
rebar          ``eta f(sigma_lambda(z))``                                 fixed eta, lambda
rebar, dynamic the same, ``eta`` and ``log lambda`` Tensors               on ``mean(g^2)``
relax          ``f(sigma_lambda(z)) + r_rho(z)``, ``r_rho`` a small MLP    on ``mean(g^2)``
=============  =========================================================  ==================

Two relaxations ``sigma_lambda``: :func:`concrete_relaxation`, ``sigmoid(z / lambda)``, and
:func:`muprop_relaxation`, the REBAR code's default (its ``muprop_relaxation=True``, the
REBAR paper's appendix), ``sigmoid(z / lambda + a lambda / (lambda + 1))``, which adds a
shift by the logit so that the relaxed unit moves with ``a`` like the mean field does.

Every function takes its noise from outside, changes nothing, and returns a Tensor that is
differentiable in ``eta``, ``log_lam``, a baseline and the control variate's parameters
when they are Tensors that require gradients: ``grad((g ** 2).mean(), [eta, log_lam])`` is
the variance gradient that dynamic REBAR and RELAX descend.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np

from minigrad import functions as F
from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.base import Objective
from minigrad.estimators.score_function import reinforce_from_sample
from minigrad.nn import Linear, Module, ReLU, Sequential
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

__all__ = [
    "LOG_HALF", "concrete_relaxation", "muprop_relaxation", "hard_sample", "logistic_sample",
    "conditional_logistic_sample", "coupled_noise", "relaxed_correction", "rebar",
    "rebar_parts", "relax", "relax_parts", "RelaxSurrogate", "grad_keeping_graph",
]

#: ``log 0.5``: the papers' temperature ``lambda = 0.5``.
LOG_HALF = math.log(0.5)

Relaxation = Callable[[Tensor, Tensor, Tensor], Tensor]     # (z, a, lambda) -> soft b
ControlVariate = Callable[[Tensor, Tensor], Tensor]         # (z, a) -> one value per row


def concrete_relaxation(z: Tensor, a: Tensor, lam) -> Tensor:
    """The binary Concrete relaxation ``sigma_lambda(z) = sigmoid(z / lambda)``."""
    return F.sigmoid(z / lam)


def muprop_relaxation(z: Tensor, a: Tensor, lam) -> Tensor:
    """The REBAR code's relaxation: ``sigmoid(z / lambda + a lambda / (lambda + 1))``."""
    return F.sigmoid(z / lam + a * (lam / (lam + 1.0)))


def _logit_of_complement(u: np.ndarray, dtype) -> np.ndarray:
    """``logit(1 - u) = log(1 - u) - log(u)``; computed as in the SBN's sampler."""
    with np.errstate(divide="ignore"):
        return -(np.log(u) - np.log1p(-u)).astype(dtype)


def hard_sample(a: Tensor, u: np.ndarray, who: str = "hard_sample") -> np.ndarray:
    """``b = H(a + logit(1 - u)) = 1[u < sigmoid(a)]`` as an array in the logits' dtype."""
    # u = 1 can come from rounding uniforms to float32: then z = -inf and b = 0, as in the
    # SBN's sampler, so only the shape is checked
    u = checks.noise_of_shape(u, a.shape, who)
    return (a.data + _logit_of_complement(u, a.dtype) > 0).astype(a.dtype)


def logistic_sample(a: Tensor, u: np.ndarray) -> Tensor:
    """``z = a + logit(1 - u)``: a logistic variable whose sign is the Bernoulli sample.

    ``u`` is kept one machine epsilon inside (0, 1), so that ``z`` is finite: a uniform
    rounded to 0 or 1 would give an infinite ``z``, whose derivatives in the temperature
    are NaN. (:func:`hard_sample` still uses ``u`` itself, as the SBN's sampler does.)
    """
    eps = float(np.finfo(a.dtype).eps)
    inside = np.clip(np.asarray(u, dtype=np.float64), eps, 1 - eps)
    return a + Tensor(_logit_of_complement(inside, a.dtype))


def conditional_logistic_sample(a: Tensor, b: np.ndarray, v: np.ndarray) -> Tensor:
    """``z~ ~ p(z | b)`` from fresh uniforms ``v``, differentiable in ``a`` (see above).

    ``v'`` and ``1 - v'`` are formed separately so that neither loses digits when theta is
    close to 0 or 1: for ``b = 1``, ``v' = (1 - theta) + theta v`` and
    ``1 - v' = theta (1 - v)``; for ``b = 0``, ``v' = (1 - theta) v`` and
    ``1 - v' = theta + (1 - theta)(1 - v)``.
    """
    theta, one_minus = F.sigmoid(a), F.sigmoid(-a)
    b, v = Tensor(b.astype(a.dtype)), Tensor(np.asarray(v, dtype=a.dtype))
    upper = one_minus + theta * v
    upper_rest = theta * (1.0 - v)
    lower = one_minus * v
    lower_rest = theta + one_minus * (1.0 - v)
    v_prime = b * upper + (1.0 - b) * lower
    rest = b * upper_rest + (1.0 - b) * lower_rest
    # v = 1 (or u = 0, whose z is infinite) rounds 1 - v' to 0: keep the log finite there
    tiny = float(np.finfo(a.dtype).tiny)
    return a + F.log(F.clip(v_prime, tiny)) - F.log(F.clip(rest, tiny))


def coupled_noise(a: Tensor, u: np.ndarray) -> np.ndarray:
    """The ``v`` for which ``z~`` equals ``z`` in value (the REBAR code's choice).

    Given ``b``, ``z`` itself is a draw from ``p(z | b)``: solving ``v' = 1 - u`` for ``v``
    gives ``v = (theta - u) / theta`` if ``b = 1`` and ``v = (1 - u) / (1 - theta)`` if
    ``b = 0``. Then ``c(z) = c(z~)`` and only the two gradients differ, because ``z``
    holds ``u`` fixed while ``z~`` holds ``v`` fixed. Computed in float64, clipped to [0, 1].
    """
    u = np.asarray(u, dtype=np.float64)
    theta = F._sigmoid_array(np.asarray(a.data, dtype=np.float64))
    b = hard_sample(a, u.astype(a.dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(b == 1, (theta - u) / theta, (1 - u) / (1 - theta))
    return np.clip(np.nan_to_num(v, nan=0.5), 0.0, 1.0)


def relaxed_correction(a: Tensor, control: ControlVariate, u: np.ndarray, v: np.ndarray,
                       create_graph: bool = True) -> Tensor:
    """The zero-mean part of REBAR and RELAX for a smooth control variate ``c``::

        h = -c(z~) (b - theta) + d c(z) / d a - d c(z~) / d a,     E[h] = 0

    so ``g = (f(b) - baseline) (b - theta) + h`` is the estimator. ``create_graph=True``
    keeps ``h`` differentiable in whatever ``c`` depends on (eta, lambda, phi).
    """
    x = Tensor(a.data, requires_grad=True)   # a leaf: the estimate is a function of values
    b = hard_sample(x, u, "relaxed_correction")
    score = Tensor(b - F._sigmoid_array(x.data))
    v = checks.noise_of_shape(v, x.shape, "relaxed_correction", what="uniform noise v")
    with enable_grad():
        c_z = control(logistic_sample(x, u), x)
        c_tilde = control(conditional_logistic_sample(x, b, v), x)
        (d_z,) = grad_keeping_graph(c_z.sum(), x, create_graph)
        (d_tilde,) = grad_keeping_graph(c_tilde.sum(), x, create_graph)
        signal = c_tilde.reshape((-1,) + (1,) * (x.ndim - 1))
        return d_z - d_tilde - signal * score


# Whether ``grad`` frees the graph unless told to keep it (looked up once, not per call).
_GRAD_TAKES_RETAIN_GRAPH = "retain_graph" in inspect.signature(grad).parameters


def grad_keeping_graph(outputs, inputs, create_graph: bool = False, allow_unused=False,
                       grad_outputs=None):
    """``grad`` that leaves the graph in place for a later backward pass through the same
    nodes (``retain_graph=True`` where the engine frees graphs after a backward pass)."""
    kwargs = {"retain_graph": True} if _GRAD_TAKES_RETAIN_GRAPH else {}
    return grad(outputs, inputs, grad_outputs, create_graph=create_graph,
                allow_unused=allow_unused, **kwargs)


def _needs_graph(*values) -> bool:
    return any(isinstance(t, Tensor) and t.requires_grad for t in values)


def _value_at(f: Objective, b: np.ndarray) -> Tensor:
    """``f(b)`` at the hard sample: only its values are used, so no graph is recorded."""
    with no_grad():
        return f(Tensor(b))


def rebar_parts(a: Tensor, f: Objective, u: np.ndarray, v: np.ndarray, log_lam=LOG_HALF,
                *, relaxation: Relaxation = muprop_relaxation, baseline=None,
                f_relaxed: Objective | None = None, create_graph: bool | None = None
                ) -> tuple[Tensor, Tensor]:
    """REBAR as two parts, ``g = reinforce_part + eta * correction``.

    ``reinforce_part = (f(b) - baseline) (b - theta)``; ``correction`` is
    :func:`relaxed_correction` with ``c(z) = f_relaxed(sigma_lambda(z))``. Dynamic REBAR
    weighs the correction by a different ``eta`` for each parameter tensor, after both
    parts have been sent to the parameters; :func:`rebar` adds them for one ``eta``.
    ``f_relaxed`` is ``f`` unless the relaxed objective differs (a multi-layer model
    relaxes the layers below too).
    """
    validate.finite(a, "logits", "rebar")
    validate.unit_interval_noise(u, "the uniform noise u", "rebar")
    validate.unit_interval_noise(v, "the uniform noise v", "rebar")
    validate.finite(log_lam, "the log temperature", "rebar")
    f_relaxed = f if f_relaxed is None else f_relaxed
    b = hard_sample(a, u, "rebar")
    reinforce_part = reinforce_from_sample(Tensor(a.data), b, _value_at(f, b), baseline)
    create_graph = _needs_graph(log_lam) if create_graph is None else create_graph

    def control(z: Tensor, x: Tensor) -> Tensor:
        return f_relaxed(relaxation(z, x, F.exp(log_lam) if isinstance(log_lam, Tensor)
                                    else math.exp(log_lam)))

    return reinforce_part, relaxed_correction(a, control, u, v, create_graph)


def rebar(a: Tensor, f: Objective, u: np.ndarray, v: np.ndarray, eta=1.0, log_lam=LOG_HALF,
          *, relaxation: Relaxation = muprop_relaxation, baseline=None,
          f_relaxed: Objective | None = None) -> Tensor:
    """REBAR (Tucker et al. 2017, eq. 4) for Bernoulli(sigmoid(a)) units::

        g = [f(b) - baseline - eta f(s(z~))] (b - theta) + eta d f(s(z)) - eta d f(s(z~))

    with ``s = sigma_lambda`` the relaxation, ``lambda = exp(log_lam)``. Fixed ``eta = 1``
    and ``lambda = 0.5`` is REBAR; ``eta`` and ``log_lam`` as Tensors that require
    gradients (trained on ``mean(g^2)``) is dynamic REBAR. Unbiased for every value.
    """
    validate.finite(eta, "eta", "rebar")
    create_graph = _needs_graph(eta, log_lam, baseline)
    reinforce_part, correction = rebar_parts(
        a, f, u, v, log_lam, relaxation=relaxation, baseline=baseline, f_relaxed=f_relaxed,
        create_graph=create_graph)
    return reinforce_part + eta * correction


def relax_parts(a: Tensor, f: Objective, u: np.ndarray, v: np.ndarray, log_lam,
                surrogate_net, *, relaxation: Relaxation = concrete_relaxation,
                baseline=None, f_relaxed: Objective | None = None) -> tuple[Tensor, Tensor]:
    """RELAX as two parts, ``g = reinforce_part + correction`` (see :func:`rebar_parts`),
    with ``c_phi(z) = f_relaxed(sigma_lambda(z)) + surrogate_net(z)``."""
    validate.finite(a, "logits", "relax")
    validate.unit_interval_noise(u, "the uniform noise u", "relax")
    validate.unit_interval_noise(v, "the uniform noise v", "relax")
    validate.finite(log_lam, "the log temperature", "relax")
    f_relaxed = f if f_relaxed is None else f_relaxed
    b = hard_sample(a, u, "relax")
    reinforce_part = reinforce_from_sample(Tensor(a.data), b, _value_at(f, b), baseline)

    def control(z: Tensor, x: Tensor) -> Tensor:
        lam = F.exp(log_lam) if isinstance(log_lam, Tensor) else math.exp(log_lam)
        return f_relaxed(relaxation(z, x, lam)) + surrogate_net(z)

    return reinforce_part, relaxed_correction(a, control, u, v, create_graph=True)


def relax(a: Tensor, f: Objective, u: np.ndarray, v: np.ndarray, log_lam, surrogate_net,
          *, relaxation: Relaxation = concrete_relaxation, baseline=None,
          f_relaxed: Objective | None = None) -> Tensor:
    """RELAX (Grathwohl et al. 2018, eq. 5) with ``c_phi(z) = f(s(z)) + r_rho(z)``::

        g = [f(b) - baseline - c_phi(z~)] (b - theta) + d c_phi(z) - d c_phi(z~)

    ``surrogate_net`` is ``r_rho`` (maps ``z`` to one value per row, e.g.
    :class:`RelaxSurrogate`); ``phi = (log_lam, rho)`` is trained on ``mean(g^2)``.
    """
    reinforce_part, correction = relax_parts(
        a, f, u, v, log_lam, surrogate_net, relaxation=relaxation, baseline=baseline,
        f_relaxed=f_relaxed)
    return reinforce_part + correction


class RelaxSurrogate(Module):
    """``r_rho(z)``: an MLP from the units' logistic variables to one value per row.

    ``hidden=(200, 200)`` (ReLU) as in the RELAX paper's SBN experiments; the last layer
    starts at zero, so training starts from ``c = f(sigma_lambda(z))``, plain REBAR with
    ``eta = 1``.
    """

    def __init__(self, n_units: int, hidden=(200, 200), rng=0, dtype=np.float32):
        super().__init__()
        sizes = [n_units, *hidden]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [Linear(n_in, n_out, rng, dtype=dtype), ReLU()]
        last = Linear(sizes[-1], 1, rng, dtype=dtype)
        last.weight.data = np.zeros_like(last.weight.data)
        self.net = Sequential(*layers, last)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(-1)
