"""Gradient estimators for categorical latent variables.

Every estimator here is a plain function in one contract::

    estimate = name(logits, f, <noise>, ..., control=None)

- ``logits``: shape (batch, n, K): ``n`` independent categorical variables of ``K``
  classes per example, ``b_i ~ Categorical(p_i)``, ``p_i = softmax(logits_i)``;
- ``f``: maps a one-hot (or, for the relaxations, relaxed) sample Tensor of shape
  (batch, n, K) to one value per example, shape (batch,); row ``m`` is example ``m``;
- the noise comes in from outside, as pre-drawn uniforms in (0, 1) (shapes below);
- ``control``: the estimator's state (a temperature, ``eta``, a surrogate network), a
  :class:`~minigrad.nn.Module` whose Parameters the caller's optimizer steps, or None;
- the result is a *detached* ``np.ndarray`` of the logits' shape and dtype, an
  estimate of ``d E[f(b)] / d logits`` (for VIMCO, of ``d E[L_k] / d logits`` with
  ``L_k`` the k-sample bound).

Noise shapes:

- :func:`rloo`, :func:`vimco`: ``u`` (k, batch, n), one uniform per sample and
  variable, sampled by the inverse CDF;
- :func:`indecater`: ``u`` (batch, n), inverse CDF;
- :func:`arsm`: ``u`` (batch, n, K), made a Dirichlet(1, ..., 1) per variable;
- :func:`gumbel_softmax_categorical`, :func:`st_gumbel_softmax_categorical`: ``u``
  (batch, n, K), one per logit, made Gumbel;
- :func:`rebar_categorical`, :func:`relax_categorical`: ``u`` and ``v``, both
  (batch, n, K): ``u`` for the Gumbel sample, ``v`` for its conditional redraw.

The score of a one-hot sample is ``d log p(b) / d logits = b - p`` (per variable),
so every score-function estimator below is ``sum signal * (b - p)``, with a signal
that may depend on the other samples but not on the one it multiplies.
"""
from __future__ import annotations

import numpy as np

from minigrad.estimators import checks
from minigrad.estimators.base import Objective
from minigrad.estimators.onehot import (gumbel_from_uniform, gumbel_softmax_estimate,
                                        sample_categorical, st_gumbel_softmax_estimate)
from minigrad.functions import log_softmax, softmax
from minigrad.nn import Linear, Module, Parameter, ReLU, Sequential
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

__all__ = [
    "categorical_sample", "gumbel_max_sample", "log_mean_exp", "conditional_gumbel",
    "coupled_v", "rloo", "vimco", "indecater", "arsm",
    "gumbel_softmax_categorical", "st_gumbel_softmax_categorical",
    "RebarControl", "RelaxControl", "rebar_categorical", "relax_categorical",
    "rebar_categorical_variance_gradient", "relax_categorical_variance_gradient",
]

_FIX_LOGITS = ("look upstream for a diverging learning rate or a NaN in the input; "
               "categorical logits must be finite")
_FIX_F = ("every estimate multiplies a score by f, so one NaN or inf would spread to "
          "every component: find where f became non-finite (a log of 0, an overflow)")


# ---------------------------------------------------------------------- shared pieces
def _logits_array(logits, who: str) -> np.ndarray:
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if data.ndim != 3:
        raise ValueError(
            f"{who}: logits must have shape (batch, n, K), got {data.shape}; "
            "reshape a (batch, n K) layer with split_neurons(pre, K)")
    if data.shape[2] < 2:
        raise ValueError(f"{who}: a categorical variable needs K >= 2 classes, got "
                         f"logits of shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"{who}: logits must be floating point, got {data.dtype}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{who}: the logits contain NaN or inf; {_FIX_LOGITS}")
    return data


def _leaf(logits_array: np.ndarray) -> Tensor:
    """A fresh leaf with the logits' values: the estimate is a function of values."""
    return Tensor(logits_array, requires_grad=True)


def _probabilities(logits_array: np.ndarray) -> np.ndarray:
    with no_grad():
        return softmax(Tensor(logits_array), axis=-1).data


def _uniform(u, shape, who: str, what: str, per: str) -> np.ndarray:
    u = checks.noise_of_shape(u, shape, who, what, per)
    if u.size and not (np.all(u > 0) and np.all(u < 1)):
        raise ValueError(
            f"{who}: the {what} must lie in the open interval (0, 1); draw it with "
            "rng.random(shape) (a 0 is a 2^-53 event) or clip it")
    return u


def _values(f: Objective, b: np.ndarray, who: str) -> np.ndarray:
    """``f(b)`` as float64, one value per example; no graph is recorded."""
    with no_grad():
        out = f(Tensor(b))
    values = np.asarray(out.data if isinstance(out, Tensor) else out, dtype=np.float64)
    if values.shape != b.shape[:1]:
        raise ValueError(
            f"{who}: f returned shape {values.shape}; it must give one value per "
            f"example, shape {b.shape[:1]}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{who}: f returned NaN or inf; {_FIX_F}")
    return values


def categorical_sample(logits, u) -> np.ndarray:
    """One-hot ``b ~ Categorical(softmax(logits))`` by the inverse CDF.

    ``logits`` (batch, n, K), ``u`` (batch, n); returns (batch, n, K). The same ``u``
    gives the sample of :func:`~minigrad.estimators.score_function.
    reinforce_categorical`.
    """
    data = _logits_array(logits, "categorical_sample")
    u = _uniform(u, data.shape[:2], "categorical_sample", "uniform noise u",
                 "one value per variable, rng.random((batch, n))")
    return sample_categorical(_probabilities(data), u, "categorical_sample")


def gumbel_max_sample(logits, u) -> np.ndarray:
    """``b = one_hot(argmax_k (logits_k + G_k))``, ``G = -log(-log u)``: Gumbel-max.

    ``u`` (batch, n, K), one per logit; ties go to the lowest index.
    """
    data = _logits_array(logits, "gumbel_max_sample")
    u = _uniform(u, data.shape, "gumbel_max_sample", "uniform noise u",
                 "one value per logit, rng.random(logits.shape)")
    z = data + gumbel_from_uniform(u).astype(data.dtype)
    return np.eye(data.shape[-1], dtype=data.dtype)[np.argmax(z, axis=-1)]


def log_mean_exp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log(mean(exp(values)))`` along ``axis``, with the max trick."""
    top = np.max(values, axis=axis, keepdims=True)
    mean = np.mean(np.exp(values - top), axis=axis)
    return np.log(mean) + np.squeeze(top, axis=axis)


# ---------------------------------------------------------------------- multi-sample
def _k_samples(logits_array: np.ndarray, u, who: str) -> np.ndarray:
    """k one-hot samples (k, batch, n, K) from ``u`` of shape (k, batch, n)."""
    u = np.asarray(u.data if isinstance(u, Tensor) else u)
    batch, n = logits_array.shape[:2]
    if u.ndim != 3 or u.shape[1:] != (batch, n):
        raise ValueError(
            f"{who}: the uniform noise u has shape {u.shape} but needs shape "
            f"(k, batch, n) = (k, {batch}, {n}): k samples per example, e.g. "
            "rng.random((k, batch, n))")
    if u.shape[0] < 2:
        raise ValueError(
            f"{who}: leave-one-out needs k >= 2 samples per example, got "
            f"k = {u.shape[0]}; draw u of shape (k, batch, n) with k >= 2")
    u = _uniform(u, u.shape, who, "uniform noise u", "rng.random((k, batch, n))")
    p = _probabilities(logits_array)
    return np.stack([sample_categorical(p, u_i, who) for u_i in u])


def rloo(logits, f: Objective, u, control=None) -> np.ndarray:
    """REINFORCE with leave-one-out baselines over ``k`` samples (RLOO).

    ``u`` (k, batch, n) gives ``k`` independent samples ``b_1 .. b_k`` per example.
    Each is centred by the mean of the *other* ``k - 1`` values, which does not
    depend on it, so the baseline leaves the mean unchanged::

        g = 1/k sum_i (f(b_i) - 1/(k-1) sum_{j != i} f(b_j)) (b_i - p)
          = 1/(k-1) sum_i (f(b_i) - f_bar) (b_i - p),    f_bar = 1/k sum_j f(b_j)

    Kool, van Hoof & Welling (2019), "Buy 4 REINFORCE samples, get a baseline for
    free!". Unbiased for ``d E[f(b)] / d logits``; ``k`` evaluations of ``f``.
    """
    data = _logits_array(logits, "rloo")
    b = _k_samples(data, u, "rloo")                               # (k, batch, n, K)
    k = len(b)
    f_values = np.stack([_values(f, b_i, "rloo") for b_i in b])  # (k, batch)
    f_bar = f_values.mean(axis=0)
    score = b - _probabilities(data)
    signal = (f_values - f_bar)[:, :, None, None]
    return ((signal * score).sum(axis=0) / (k - 1)).astype(data.dtype)


def vimco(logits, f: Objective, u, control=None) -> np.ndarray:
    """VIMCO for the k-sample bound (Mnih & Rezende 2016, section 3).

    With ``f`` the log-weight of a sample (for a VAE, ``log p(x, b) - log q(b | x)``),
    the k-sample bound (Burda et al. 2016) is ``L = log 1/k sum_j exp(f(b_j))`` per
    example, and its score-function gradient is ``E[sum_i L (b_i - p)]``. VIMCO gives
    each sample its own baseline: ``L`` with ``f(b_i)`` replaced by the mean of the
    others' ``f`` (the log of their geometric mean weight)::

        f_hat_i = 1/(k-1) sum_{j != i} f(b_j)
        L_i     = log 1/k (sum_{j != i} exp(f(b_j)) + exp(f_hat_i))
        g       = sum_i (L - L_i) (b_i - p)

    ``L_i`` depends on the other samples only, so ``g`` is unbiased for the gradient
    of ``E[L]`` through the sampling distribution. ``f`` is held fixed: when it
    depends on the logits itself (``-log q`` does), the caller adds the pathwise
    term ``sum_i w_i d f(b_i) / d logits``, ``w = softmax_i f(b_i)``, by autograd
    (see :mod:`minigrad.experiments.vae`). ``u`` (k, batch, n), ``k >= 2``;
    ``k`` evaluations of ``f``.
    """
    data = _logits_array(logits, "vimco")
    b = _k_samples(data, u, "vimco")
    k = len(b)
    f_values = np.stack([_values(f, b_i, "vimco") for b_i in b])   # (k, batch)
    bound = log_mean_exp(f_values, axis=0)                          # (batch,)
    f_hat = (f_values.sum(axis=0) - f_values) / (k - 1)            # (k, batch)
    signals = np.empty_like(f_values)
    for i in range(k):
        replaced = f_values.copy()
        replaced[i] = f_hat[i]          # sample i's value -> the others' mean
        signals[i] = bound - log_mean_exp(replaced, axis=0)
    score = b - _probabilities(data)
    return (signals[:, :, None, None] * score).sum(axis=0).astype(data.dtype)


# ---------------------------------------------------------------------- IndeCateR
def indecater(logits, f: Objective, u, control=None) -> np.ndarray:
    """IndeCateR (De Smet, Sansone & Zuidberg Dos Martires 2023, section 3):
    per-variable Rao-Blackwellisation.

    For independent variables the gradient for variable ``i`` is
    ``E_{b_-i}[sum_k f(b_-i, k) d p_ik]``: the sum over its ``K`` classes is done
    exactly and only the other variables are sampled. With
    ``d p_ik / d logits_ij = p_ik (1[k = j] - p_ij)``::

        F_ik = f(b with variable i set to class k)          (n K evaluations)
        g_ij = p_ij (F_ij - sum_k p_ik F_ik)

    One sample ``b`` from ``u`` (batch, n) by the inverse CDF. Unbiased; ``n K``
    evaluations of ``f`` (the sample's own value is one of them).
    """
    data = _logits_array(logits, "indecater")
    batch, n, classes = data.shape
    u = _uniform(u, (batch, n), "indecater", "uniform noise u",
                 "one value per variable, rng.random((batch, n))")
    p = _probabilities(data)
    b = sample_categorical(p, u, "indecater")
    eye = np.eye(classes, dtype=data.dtype)
    values = np.empty((batch, n, classes))
    for i in range(n):
        for k in range(classes):
            changed = b.copy()
            changed[:, i] = eye[k]
            values[:, i, k] = _values(f, changed, "indecater")
    mean = (p * values).sum(axis=-1, keepdims=True)
    return (p * (values - mean)).astype(data.dtype)


# ---------------------------------------------------------------------- ARSM
def arsm(logits, f: Objective, u, control=None) -> np.ndarray:
    """ARSM, augment-REINFORCE-swap-merge (Yin, Yue & Zhou 2019): antithetic, unbiased.

    Augment: with ``pi ~ Dirichlet(1_K)`` per variable (``pi = e / sum e``,
    ``e = -log u``), ``b = one_hot(argmin_k (log pi_k - logits_k))`` is a sample of
    ``softmax(logits)``. Swap: ``pi^(m<->j)`` exchanges entries ``m`` and ``j`` of
    every variable's ``pi``, giving the pseudo-sample ``b^(m<->j)``. Merge: with
    ``F_mj = f(b^(m<->j))`` and ``F_bar_j = 1/K sum_m F_mj``::

        g_ic = sum_j (F_cj - F_bar_j) (1/K - pi_ij)

    The same swap is applied to all variables at once (the multivariate form), so
    ``F`` is symmetric with ``F_jj = f(b)``: ``K (K - 1) / 2 + 1`` evaluations of
    ``f`` whatever ``n``. ``u`` (batch, n, K).
    """
    data = _logits_array(logits, "arsm")
    batch, n, classes = data.shape
    u = _uniform(u, data.shape, "arsm", "uniform noise u",
                 "one value per logit, rng.random(logits.shape)")
    e = -np.log(u)
    pi = e / e.sum(axis=-1, keepdims=True)                     # Dirichlet(1_K)
    log_pi = np.log(pi)
    eye = np.eye(classes, dtype=data.dtype)
    values = np.empty((classes, classes, batch))               # F[m, j, example]
    values[:] = _values(f, eye[np.argmin(log_pi - data, axis=-1)], "arsm")
    for m in range(classes):
        for j in range(m + 1, classes):
            swapped = log_pi.copy()
            swapped[..., [m, j]] = log_pi[..., [j, m]]
            b = eye[np.argmin(swapped - data, axis=-1)]
            values[m, j] = values[j, m] = _values(f, b, "arsm")
    centred = values - values.mean(axis=0, keepdims=True)     # F_cj - F_bar_j
    g = np.einsum("cjb,bij->bic", centred, 1.0 / classes - pi)
    return g.astype(data.dtype)


# ---------------------------------------------------------------------- relaxations
def gumbel_softmax_categorical(logits, f: Objective, u, temperature: float = 1.0,
                               control=None) -> np.ndarray:
    """Gumbel-softmax (Concrete) in this module's contract: biased.

    The gradient of ``f`` at ``softmax((logits + G) / tau)``, ``G = -log(-log u)``,
    ``u`` (batch, n, K) (Jang, Gu & Poole 2016, eq. 2; Maddison, Mnih & Teh 2016).
    The code is :func:`~minigrad.estimators.onehot.gumbel_softmax_estimate`; this
    returns its value as an array. One evaluation of ``f``, with its gradient.
    """
    who = "gumbel_softmax_categorical"
    data = _logits_array(logits, who)
    u = _uniform(u, data.shape, who, "uniform noise u",
                 "one value per logit, rng.random(logits.shape)")
    g = gumbel_softmax_estimate(_leaf(data), f, u, temperature=temperature)
    return np.asarray(g, dtype=data.dtype)


def st_gumbel_softmax_categorical(logits, f: Objective, u, temperature: float = 1.0,
                                  control=None) -> np.ndarray:
    """Straight-through Gumbel-softmax in this module's contract: biased.

    ``f`` sees the hard sample ``one_hot(argmax(logits + G))``; the gradient goes
    back through the relaxed one (Jang, Gu & Poole 2016, section 2.2). The code is
    :func:`~minigrad.estimators.onehot.st_gumbel_softmax_estimate`.
    """
    who = "st_gumbel_softmax_categorical"
    data = _logits_array(logits, who)
    u = _uniform(u, data.shape, who, "uniform noise u",
                 "one value per logit, rng.random(logits.shape)")
    g = st_gumbel_softmax_estimate(_leaf(data), f, u, temperature=temperature)
    return np.asarray(g, dtype=data.dtype)


# ---------------------------------------------------------------------- REBAR, RELAX
def conditional_gumbel(log_p: Tensor, b: np.ndarray, v: np.ndarray) -> Tensor:
    """``z~ ~ p(z | b)``: Gumbel-max variables redrawn given their argmax ``b``.

    With ``z_k = log p_k + G_k`` (``sum_k p_k = 1``) the maximum is Gumbel(0)
    whatever the argmax, and the others are Gumbels truncated below it.
    Reparameterised with fresh uniforms ``v`` (Tucker et al. 2017, appendix C;
    Grathwohl et al. 2018, appendix B)::

        z~_b = -log(-log v_b)
        z~_k = -log(-log(v_k) / p_k - log v_b)          k != b
             = log p_k - log(-log(v_k) - p_k log v_b)   (no 1 / p_k to overflow)

    A Tensor function of ``log_p``, so ``d c(z~) / d logits`` goes through it. The
    exponentials ``-log v`` are taken in ``v``'s own precision, then cast to
    ``log_p``'s dtype: a float64 ``v`` within float32 rounding of 1 (the coupled ``v``
    of a confident variable) would round to 1 in float32, and ``-log v_b = 0`` would
    make ``z~_b`` infinite.
    """
    dtype = log_p.data.dtype
    tiny = np.finfo(dtype).tiny
    exponential = np.maximum(-np.log(np.asarray(v, dtype=np.float64)), tiny)   # > 0
    e = Tensor(exponential.astype(dtype))
    e_b = Tensor((exponential * b).sum(axis=-1, keepdims=True).astype(dtype))
    top = -e_b.log()
    others = log_p - (e + e_b * log_p.exp()).log()
    hard = Tensor(b)
    return hard * top + (1.0 - hard) * others


def coupled_v(logits, u) -> np.ndarray:
    """The ``v`` for which ``conditional_gumbel(log p, b, v)`` equals ``z`` in value.

    Inverting :func:`conditional_gumbel` at ``z = log p + G(u)``:
    ``v_b = exp(-exp(-z_b))``, ``v_k = exp(-p_k (exp(-z_k) - exp(-z_b)))``. Given
    ``b`` this ``v`` is uniform and independent of ``b``, so the estimators stay
    unbiased; REBAR's reference code couples its noise this way to lower the
    variance (Tucker et al. 2017, section 3).
    """
    data = _logits_array(logits, "coupled_v")
    u = _uniform(u, data.shape, "coupled_v", "uniform noise u",
                 "rng.random(logits.shape)")
    with no_grad():
        log_p = log_softmax(Tensor(data.astype(np.float64)), axis=-1).data
    z = log_p + gumbel_from_uniform(u.astype(np.float64))
    b = np.eye(data.shape[-1])[np.argmax(z, axis=-1)]
    top = (np.exp(-z) * b).sum(axis=-1, keepdims=True)
    others = np.exp(-np.exp(log_p) * (np.exp(-z) - top))
    v = np.where(b == 1, np.exp(-np.exp(-z)), others)
    return np.clip(v, np.finfo(np.float64).tiny, np.nextafter(1.0, 0.0))


class RebarControl(Module):
    """REBAR's control for categorical variables: ``eta`` and the log temperature.

    ``c(z) = eta f(softmax(z / tau))``, ``tau = exp(log_temperature)``. Both are
    Parameters: fixed (REBAR, ``eta = 1``) unless the caller's optimizer steps them
    on the variance gradient (dynamic REBAR,
    :func:`rebar_categorical_variance_gradient`).
    """

    def __init__(self, eta: float = 1.0, temperature: float = 0.5, dtype=np.float64):
        super().__init__()
        checks.real_number(eta, "eta", "RebarControl")
        checks.positive_number(temperature, "the temperature", "RebarControl")
        self.eta = Parameter(np.array(eta, dtype=dtype))
        self.log_temperature = Parameter(np.array(np.log(temperature), dtype=dtype))

    def forward(self, z: Tensor, f: Objective) -> Tensor:
        return self.eta * f(softmax(z / self.log_temperature.exp(), axis=-1))


class RelaxControl(Module):
    """RELAX's control: ``c(z) = f(softmax(z / tau)) + r(z)``, categorical variables.

    ``r`` is a small ReLU network from the flattened ``z`` (n K values) to one value
    per example (Grathwohl et al. 2018, section 3.3). Its last layer starts at zero
    unless ``zero_last=False``, so an untrained RELAX is REBAR with ``eta = 1``.
    """

    def __init__(self, n: int, classes: int, hidden=(32,), temperature: float = 0.5,
                 rng=0, dtype=np.float64, zero_last: bool = True):
        super().__init__()
        checks.integer_at_least(n, 1, "n (variables)", "RelaxControl")
        checks.integer_at_least(classes, 2, "classes", "RelaxControl")
        checks.positive_number(temperature, "the temperature", "RelaxControl")
        sizes = [n * classes, *hidden]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [Linear(n_in, n_out, rng, dtype=dtype), ReLU()]
        last = Linear(sizes[-1], 1, rng, dtype=dtype)
        if zero_last:
            last.weight.data = np.zeros_like(last.weight.data)
        self.net = Sequential(*layers, last)
        self.log_temperature = Parameter(np.array(np.log(temperature), dtype=dtype))

    def forward(self, z: Tensor, f: Objective) -> Tensor:
        relaxed = softmax(z / self.log_temperature.exp(), axis=-1)
        return f(relaxed) + self.net(z.reshape(z.shape[0], -1)).reshape(-1)


def _relaxed_control_variate(logits, f: Objective, u, v, control: Module,
                             who: str) -> Tensor:
    """Categorical REBAR/RELAX as a Tensor that keeps its graph in ``control``::

        z  = log p + G(u),   b = one_hot(argmax z),   z~ = conditional_gumbel(...)
        g  = (f(b) - c(z~)) (b - p) + d c(z) / d logits - d c(z~) / d logits

    (Tucker et al. 2017, eq. 4 with appendix C; Grathwohl et al. 2018, eq. 5), with
    ``c = control(z, f)``. Every term is differentiable in the control's Parameters.
    """
    data = _logits_array(logits, who)
    u = _uniform(u, data.shape, who, "uniform noise u", "rng.random(logits.shape)")
    v = _uniform(v, data.shape, who, "uniform noise v", "rng.random(logits.shape)")
    if not isinstance(control, Module):
        raise TypeError(f"{who}: control must be a Module (e.g. RebarControl() or "
                        f"RelaxControl(n, K)), got {type(control).__name__}")
    x = _leaf(data)
    b = gumbel_max_sample(data, u)
    f_b = _values(f, b, who)
    with enable_grad():
        log_p = log_softmax(x, axis=-1)
        z = log_p + Tensor(gumbel_from_uniform(u).astype(data.dtype))
        z_tilde = conditional_gumbel(log_p, b, v)   # v at its own precision
        c_z = control(z, f)
        c_tilde = control(z_tilde, f)
        (d_z,) = grad(c_z.sum(), x, create_graph=True, retain_graph=True)
        (d_tilde,) = grad(c_tilde.sum(), x, create_graph=True, retain_graph=True)
        score = Tensor(b - _probabilities(data))
        signal = (Tensor(f_b.astype(data.dtype)) - c_tilde).reshape(-1, 1, 1)
        return signal * score + d_z - d_tilde


def rebar_categorical(logits, f: Objective, u, v, control: RebarControl | None = None
                      ) -> np.ndarray:
    """Categorical REBAR (Tucker et al. 2017, eq. 4 and appendix C): unbiased.

    ``c(z) = eta f(softmax(z / tau))`` (:class:`RebarControl`; by default
    ``eta = 1``, ``tau = 0.5``)::

        g = (f(b) - eta f(s~)) (b - p) + eta d f(s) / d logits - eta d f(s~) / d logits

    with ``s = softmax(z / tau)``, ``s~ = softmax(z~ / tau)``. ``u``, ``v``
    (batch, n, K); ``v = coupled_v(logits, u)`` gives REBAR's coupled noise. Three
    evaluations of ``f`` (at ``b``, and at ``s`` and ``s~`` with their gradients).
    """
    control = RebarControl() if control is None else control
    g = _relaxed_control_variate(logits, f, u, v, control, "rebar_categorical")
    return g.data.copy()


def relax_categorical(logits, f: Objective, u, v, control: RelaxControl) -> np.ndarray:
    """Categorical RELAX (Grathwohl et al. 2018, eq. 5 and appendix B): unbiased.

    ``c(z) = f(softmax(z / tau)) + r(z)`` (:class:`RelaxControl`); otherwise the
    estimate of :func:`rebar_categorical`. The caller trains ``r`` and ``tau`` with
    :func:`relax_categorical_variance_gradient`.
    """
    g = _relaxed_control_variate(logits, f, u, v, control, "relax_categorical")
    return g.data.copy()


def _variance_gradient(logits, f, u, v, control, who):
    g = _relaxed_control_variate(logits, f, u, v, control, who)
    params = control.parameters()
    with enable_grad():
        second_moment = (g * g).sum() * (1.0 / g.shape[0])
        found = grad(second_moment, params, allow_unused=True)
    grads = [np.zeros_like(p.data) if d is None else d.data
             for p, d in zip(params, found)]
    return g.data.copy(), grads


def rebar_categorical_variance_gradient(logits, f: Objective, u, v,
                                        control: RebarControl
                                        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The estimate, and ``d/d phi`` of its squared norm per example (dynamic REBAR).

    Returns ``(g, [d V / d p for p in control.parameters()])`` with
    ``V = sum(g^2) / batch``. ``E[g]`` does not depend on
    ``phi = (eta, log_temperature)``, so descending ``V`` lowers the variance
    (Tucker et al. 2017, section 3.1; relax-autograd's ``rebar_all``). The caller
    puts the gradients into ``p.grad`` and steps its own optimizer.
    """
    who = "rebar_categorical_variance_gradient"
    return _variance_gradient(logits, f, u, v, control, who)


def relax_categorical_variance_gradient(logits, f: Objective, u, v,
                                        control: RelaxControl
                                        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The estimate, and ``d/d phi`` of ``sum(g^2) / batch`` for RELAX's control
    (the surrogate network and the log temperature): Grathwohl et al. (2018),
    section 3.3 and algorithm 1. Used as
    :func:`rebar_categorical_variance_gradient`."""
    who = "relax_categorical_variance_gradient"
    return _variance_gradient(logits, f, u, v, control, who)
