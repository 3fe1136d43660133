"""Relaxations and relaxed control variates: Concrete (Maddison et al. 2017), REBAR
(Tucker et al. 2017) and RELAX (Grathwohl et al. 2018).

REBAR and RELAX estimate ``d E[f(b)] / d a`` for ``b ~ Bernoulli(theta)``,
``theta = sigmoid(a)`` (``a``: the logits), by writing the unit as the sign of a logistic
variable and using a smooth function ``c`` of that variable as a control variate::

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
rebar, dynamic the same, ``eta`` and ``log lambda`` Parameters            on ``mean(g^2)``
relax          ``f(sigma_lambda(z)) + r_rho(z)``, ``r_rho`` a small MLP    on ``mean(g^2)``
=============  =========================================================  ==================

The control variate's values (eta, ``log lambda``, ``r_rho``, the relaxation) are a
:class:`~minigrad.estimators.controls.RelaxedControl`, passed as ``control``. Two
relaxations ``sigma_lambda``: :func:`concrete_relaxation`, ``sigmoid(z / lambda)``, and
:func:`muprop_relaxation`, the REBAR code's default (its ``muprop_relaxation=True``, the
REBAR paper's appendix), ``sigmoid(z / lambda + a lambda / (lambda + 1))``, which adds a
shift by the logit so that the relaxed unit moves with ``a`` like the mean field does.
:func:`concrete` is the relaxation used as an estimator on its own (biased).

In relax-autograd's shape, the training step of dynamic REBAR and RELAX is a few plain
functions: :func:`relaxed_parts` (the REINFORCE part and the zero-mean correction, Tensors
differentiable in the control's parameters), :func:`parameter_estimates` (their
vector-Jacobian products into each parameter tensor, weighed by eta per tensor) and
:func:`variance_gradient` (``d mean(g^2) / d control``, which the caller's optimizer
descends). :func:`rebar` and :func:`relax` are the estimators of the catalogue's contract:
a detached array of the logits' shape.
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from minigrad import functions as F
from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.base import (Objective, estimate_array, gradient_through_sample,
                                      logistic_noise, relaxed_objective, value_at)
from minigrad.estimators.controls import RelaxedControl, RelaxSurrogate
from minigrad.estimators.score_function import reinforce_from_sample
from minigrad.tensor import Tensor, enable_grad, grad

__all__ = [
    "LOG_HALF", "concrete_relaxation", "muprop_relaxation", "concrete", "hard_sample",
    "logistic_sample", "conditional_logistic_sample", "coupled_noise", "relaxed_correction",
    "relaxed_parts", "relaxed_estimate", "rebar", "relax", "parameter_estimates",
    "variance_gradient", "grad_keeping_graph", "RelaxSurrogate",
]

#: ``log 0.5``: the papers' temperature ``lambda = 0.5``.
LOG_HALF = float(np.log(0.5))

Relaxation = Callable[[Tensor, Tensor, Tensor], Tensor]   # (z, logits, temperature) -> soft b
ControlVariate = Callable[[Tensor, Tensor], Tensor]       # (z, logits) -> one value per row


def concrete_relaxation(z: Tensor, logits: Tensor, temperature) -> Tensor:
    """The binary Concrete relaxation ``sigma_lambda(z) = sigmoid(z / lambda)``, one
    Function (:class:`~minigrad.functions.RelaxedSigmoid`) with its derivative in lambda."""
    return F.relaxed_sigmoid(z, temperature)


def muprop_relaxation(z: Tensor, logits: Tensor, temperature) -> Tensor:
    """The REBAR code's relaxation: ``sigmoid(z / lambda + a lambda / (lambda + 1))``."""
    return F.sigmoid(z / temperature + logits * (temperature / (temperature + 1.0)))


def concrete(logits: Tensor, f: Objective, u: np.ndarray, temperature: float
             ) -> np.ndarray:
    """The binary Concrete (Gumbel-softmax) relaxation (Maddison et al. 2017;
    Jang et al. 2017) as an estimator: replace ``b`` by ``sigmoid(z / t)`` with
    ``z = logits + logit(1 - u)`` (the library's noise: the same ``u`` relaxes the
    ``b`` every other estimator draws) and differentiate through it. Biased: it is
    the gradient of ``E[f(soft b)]``, not of ``E[f(b)]``; the bias shrinks as
    ``t -> 0`` while the variance grows. A unit that ``f`` reaches only through a
    hard resample gets a zero gradient.
    """
    validate.finite(temperature, "the temperature", "concrete")
    temperature = checks.positive_number(temperature, "temperature", "concrete")
    validate.finite(logits, "logits", "concrete")
    u = validate.unit_interval_noise(u, "the uniform noise u", "concrete")
    noise = Tensor(logistic_noise(checks.noise_of_shape(u, logits.shape, "concrete"),
                                  logits.dtype))
    leaf = Tensor(logits.data, requires_grad=True)
    g = gradient_through_sample(
        leaf, f, lambda x: concrete_relaxation(x + noise, x, temperature))
    g = validate.finite(estimate_array(g, logits), "the estimate", "concrete",
                        "f is not finite at the relaxed sample")
    return g


def hard_sample(logits: Tensor, u: np.ndarray, who: str = "hard_sample") -> np.ndarray:
    """``b = H(a + logit(1 - u)) = 1[u < sigmoid(a)]`` as an array in the logits' dtype."""
    # u = 1 can come from rounding uniforms to float32: then z = -inf and b = 0, as in the
    # SBN's sampler, so only the shape is checked
    u = checks.noise_of_shape(u, logits.shape, who)
    return (logits.data + logistic_noise(u, logits.dtype) > 0).astype(logits.dtype)


def logistic_sample(logits: Tensor, u: np.ndarray) -> Tensor:
    """``z = a + logit(1 - u)``: a logistic variable whose sign is the Bernoulli sample.

    ``u`` is kept one machine epsilon inside (0, 1), so that ``z`` is finite: a uniform
    rounded to 0 or 1 would give an infinite ``z``, whose derivatives in the temperature
    are NaN. (:func:`hard_sample` still uses ``u`` itself, as the SBN's sampler does.)
    """
    eps = float(np.finfo(logits.dtype).eps)
    inside = np.clip(np.asarray(u, dtype=np.float64), eps, 1 - eps)
    return logits + Tensor(logistic_noise(inside, logits.dtype))


def conditional_logistic_sample(logits: Tensor, b: np.ndarray, v: np.ndarray
                                ) -> Tensor:
    """``z~ ~ p(z | b)`` from fresh uniforms ``v``, differentiable in ``a`` (see above).

    With ``theta = sigmoid(a)``, ``z~ = a + log v' - log(1 - v')`` where ``v'`` is
    ``v`` moved into the part of (0, 1) that gives the sign ``b``: ``v' = (1 - theta)
    + theta v`` for ``b = 1`` and ``v' = (1 - theta) v`` for ``b = 0``. ``v'`` and
    ``1 - v'`` are formed separately so that neither loses digits when theta is close
    to 0 or 1. One Function, :class:`~minigrad.functions.ConditionalLogistic`, with
    its derivative in ``a``.
    """
    return F.conditional_logistic(logits, b, v)


def coupled_noise(logits: Tensor, u: np.ndarray) -> np.ndarray:
    """The ``v`` for which ``z~`` equals ``z`` in value (the REBAR code's choice).

    Given ``b``, ``z`` itself is a draw from ``p(z | b)``: solving ``v' = 1 - u`` for ``v``
    gives ``v = (theta - u) / theta`` if ``b = 1`` and ``v = (1 - u) / (1 - theta)`` if
    ``b = 0``. Then ``c(z) = c(z~)`` and only the two gradients differ, because ``z``
    holds ``u`` fixed while ``z~`` holds ``v`` fixed. Computed in float64, clipped to [0, 1].
    """
    u = np.asarray(u, dtype=np.float64)
    theta = F._sigmoid_array(np.asarray(logits.data, dtype=np.float64))
    b = hard_sample(logits, u.astype(logits.dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(b == 1, (theta - u) / theta, (1 - u) / (1 - theta))
    return np.clip(np.nan_to_num(v, nan=0.5), 0.0, 1.0)


def relaxed_correction(logits: Tensor, control: ControlVariate, u: np.ndarray,
                       v: np.ndarray, create_graph: bool = True) -> Tensor:
    """The zero-mean part of REBAR and RELAX for a smooth control variate ``c``::

        h = -c(z~) (b - theta) + d c(z) / d a - d c(z~) / d a,     E[h] = 0

    so ``g = (f(b) - baseline) (b - theta) + h`` is the estimator. ``create_graph=True``
    keeps ``h`` differentiable in whatever ``c`` depends on (eta, lambda, phi).
    """
    # leaves: the estimate is a function of the logits' values; z and z~ get one each,
    # so that one backward pass gives both gradients
    x, x_tilde = (Tensor(logits.data, requires_grad=True) for _ in range(2))
    b = hard_sample(x, u, "relaxed_correction")
    score = Tensor(b - F._sigmoid_array(x.data))
    v = checks.noise_of_shape(v, x.shape, "relaxed_correction", what="uniform noise v")
    with enable_grad():
        c_z = control(logistic_sample(x, u), x)
        c_tilde = control(conditional_logistic_sample(x_tilde, b, v), x_tilde)
        d_z, d_tilde = grad_keeping_graph([c_z.sum(), c_tilde.sum()], [x, x_tilde],
                                          create_graph)
        if not create_graph:   # h is only read: no graph for it
            c_tilde = c_tilde.detach()
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


def relaxed_parts(logits: Tensor, f: Objective, u: np.ndarray, v: np.ndarray,
                  control: RelaxedControl, *, baseline=None) -> tuple[Tensor, Tensor]:
    """REBAR and RELAX as two parts, ``g = reinforce_part + eta * correction``.

    ``reinforce_part = (f(b) - baseline) (b - theta)``; ``correction`` is
    :func:`relaxed_correction` with ``c(z) = f~(sigma_lambda(z)) (+ r_rho(z))``,
    where ``f~`` is ``f`` relaxed all the way down (``relaxed_objective``: a model's
    learning signal relaxes its later layers too). Both are Tensors, differentiable
    in the control's Parameters and in a Tensor ``baseline``.
    """
    who = "rebar" if control.surrogate is None else "relax"
    validate.finite(logits, "logits", who)
    validate.unit_interval_noise(u, "the uniform noise u", who)
    validate.unit_interval_noise(v, "the uniform noise v", who)
    validate.finite(control.log_temperature, "the log temperature", who)
    validate.finite(control.eta, "eta", who)
    temperature = control.temperature()
    f_relaxed = relaxed_objective(f, temperature, control.relaxation)
    b = hard_sample(logits, u, "rebar")
    f_b = value_at(f, b, "rebar")
    reinforce_part = reinforce_from_sample(Tensor(logits.data), b, f_b, baseline)
    surrogate = control.surrogate

    def c(z: Tensor, x: Tensor) -> Tensor:
        value = f_relaxed(control.relaxation(z, x, temperature))
        return value if surrogate is None else value + surrogate(z)

    create_graph = _needs_graph(control.log_temperature) or surrogate is not None
    return reinforce_part, relaxed_correction(logits, c, u, v, create_graph)


def relaxed_estimate(logits: Tensor, f: Objective, u: np.ndarray, v: np.ndarray,
                     control: RelaxedControl, *, baseline=None) -> Tensor:
    """``reinforce_part + eta * correction`` as a Tensor: the estimate whose second moment
    :func:`variance_gradient` differentiates (dynamic REBAR and RELAX on one set of
    logits, as in the toy problem)."""
    with enable_grad():
        reinforce_part, correction = relaxed_parts(logits, f, u, v, control,
                                                   baseline=baseline)
        return reinforce_part + control.eta * correction


def rebar(logits: Tensor, f: Objective, u: np.ndarray, v: np.ndarray,
          control: RelaxedControl | None = None, *, baseline=None) -> np.ndarray:
    """REBAR (Tucker et al. 2017, eq. 4) for Bernoulli(sigmoid(a)) units::

        g = [f(b) - baseline - eta f~(s(z~))] (b - theta) + eta d f~(s(z)) - eta d f~(s(z~))

    with ``s = sigma_lambda`` the control's relaxation, ``lambda = exp(log_temperature)``
    and ``f~`` the objective relaxed all the way down (``f`` itself unless ``f`` is a
    :class:`~minigrad.estimators.base.RelaxableObjective`, such as a model's learning
    signal). The default control is REBAR's: ``eta = 1``, ``lambda = 0.5``, the MuProp
    relaxation. Unbiased for every value. Returns a detached array.
    """
    control = RelaxedControl() if control is None else control
    return estimate_array(relaxed_estimate(logits, f, u, v, control, baseline=baseline),
                          logits)


def relax(logits: Tensor, f: Objective, u: np.ndarray, v: np.ndarray,
          control: RelaxedControl, *, baseline=None) -> np.ndarray:
    """RELAX (Grathwohl et al. 2018, eq. 5) with ``c_phi(z) = f~(s(z)) + r_rho(z)``::

        g = [f(b) - baseline - c_phi(z~)] (b - theta) + d c_phi(z) - d c_phi(z~)

    ``control.surrogate`` is ``r_rho`` (a :class:`~minigrad.estimators.controls.
    RelaxSurrogate`); ``phi = (log_temperature, rho)`` is trained on ``mean(g^2)``.
    """
    if control.surrogate is None:
        raise ValueError("relax: the control has no surrogate r_rho; give "
                         "RelaxedControl(surrogate=RelaxSurrogate(...)), or use rebar")
    return estimate_array(relaxed_estimate(logits, f, u, v, control, baseline=baseline),
                          logits)


def parameter_estimates(logits: list[Tensor], parts: list[tuple[Tensor, Tensor]], params,
                        etas, create_graph: bool) -> list[Tensor]:
    """Each layer's two parts sent into the parameters that made the logits, weighed there
    by one eta per parameter tensor: ``g_P = A_P + eta_P B_P`` with ``A_P``, ``B_P`` the
    vector-Jacobian products of the logits with the parts (dynamic REBAR, Tucker et al.
    2017, section 3.3).

    The parts reach the parameters only through the logits, never through their own
    dependence on the encoder (a relaxed layer below runs through its weights).
    ``create_graph`` keeps ``B_P`` differentiable (needed when the correction depends on
    tuned values, the temperature or ``r_rho``; eta only weighs it). The last pass frees
    the graph of the logits, so that an optimizer may change the weights in place.
    """
    a_p = grad_keeping_graph(logits, params, True, allow_unused=True,
                             grad_outputs=[a for a, _ in parts])
    b_p = grad(logits, params, [h for _, h in parts], create_graph=create_graph,
               allow_unused=True, retain_graph=False)
    return [a + eta * b for a, eta, b in zip(a_p, etas, b_p)]


def variance_gradient(estimates: list[Tensor], params, scale: float = 1.0
                      ) -> tuple[float, list[np.ndarray]]:
    """``V = scale * sum_P sum(g_P^2)`` and ``dV / d params`` (zeros where ``V``
    does not depend on one): the second moment that dynamic REBAR and RELAX tune
    their control on. Its mean ``E[g]`` does not depend on the control, so this is
    the gradient of the variance.
    """
    with enable_grad():
        variance = sum((g * g).sum() for g in estimates) * scale
        found = grad_keeping_graph(variance, params, allow_unused=True)
    return float(variance.data), [np.zeros_like(p.data) if d is None else d.data
                                  for p, d in zip(params, found)]
