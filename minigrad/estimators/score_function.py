"""Score-function (REINFORCE) estimators and their baselines.

For units ``b ~ P(b | a)`` with logits ``a`` and any objective ``f``, differentiable or not::

    d E[f(b)] / d a = E[(f(b) - c) d log P(b | a) / d a]

for every baseline ``c`` that does not depend on ``b`` (Williams 1992): the *score*
``d log P(b | a) / d a`` has mean zero, so ``c`` changes the variance and not the mean.
For a Bernoulli(sigmoid(a)) unit the score is ``b - sigmoid(a)``; for a categorical unit with
one-hot ``b`` it is ``b - softmax(a)``. One sample gives the estimate::

    g = (b - p) (f(b) - c)                                 (one row per example)

The baseline ``c`` is a number or an array of one value per unit. The baselines that learn
from the losses they see are controls (:mod:`minigrad.estimators.controls`):
:class:`~minigrad.estimators.controls.MovingAverageBaseline` (one number),
:class:`~minigrad.estimators.controls.VarianceAdjustingBaseline` (Bengio, Léonard &
Courville 2013: one number per unit) and NVIL's
:class:`~minigrad.estimators.controls.NVILControl`.

The rest of the family chooses ``c`` more cleverly, for layers of Bernoulli units:

=============  ===================================================  =====================
estimator      learning signal times ``(b - p)`` (plus)             source
=============  ===================================================  =====================
reinforce      ``f(b) - c``, c a moving average                     Williams 1992
reinforce_loo  ``f(b_k) - mean_{j != k} f(b_j)``, K samples         Mnih & Rezende 2016
nvil           ``(f(b) - C(x) - c) / max(1, sqrt(v))``              Mnih & Gregor 2014
muprop         ``f(b) - f(p) - f'(p).(b - p)`` (+ ``f'(p) p(1-p)``)  Gu et al. 2016
muprop_with_   ``f(b) - eta0 f(p) - eta1 f'(p).(b - p) - C(x)``     the REBAR code
control        (+ ``eta1 f'(p) p(1-p)``)                            (Tucker et al. 2017)
simple_muprop  ``f(b) - f(p)``                                      Gu et al. 2016
=============  ===================================================  =====================

Every estimator here returns a detached array (the contract of
:mod:`minigrad.estimators.catalogue`); :func:`reinforce_from_sample` is the building block
that returns a Tensor (differentiable in a Tensor baseline).

:class:`ReinforceNeuron` is the layer of binary neurons the MNIST chapters train with this
estimator; the training step gives it the loss (see
:mod:`minigrad.experiments.classifier`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.base import (_FIX_LOGITS, Neuron, Objective, SampledUnits,
                                      bernoulli_sample, estimate_array, value_at)
from minigrad.estimators.binary import pass_through_sigmoid, straight_through_round
from minigrad.estimators.controls import (_FIX_LOSS, MovingAverageBaseline,
                                          VarianceAdjustingBaseline)
from minigrad.estimators.onehot import sample_categorical
from minigrad.functions import _sigmoid_array, cast, log_sigmoid, sigmoid, softmax
from minigrad.tensor import Tensor, enable_grad, grad, is_grad_enabled, no_grad

__all__ = [
    "reinforce_from_sample", "reinforce", "reinforce_categorical", "reinforce_surrogate",
    "reinforce_loo", "nvil", "muprop", "muprop_with_control", "MuPropSignal",
    "muprop_signal", "muprop_from_signal", "simple_muprop", "ReinforceNeuron",
    # the sampler and the baselines, from base and controls, for the neuron's readers
    "bernoulli_sample", "MovingAverageBaseline", "VarianceAdjustingBaseline",
]


_FIX_F = "f must give a finite value at every sample"


def _advantage(f_values, baseline, logits: Tensor) -> Tensor:
    """``f(b) - c`` in the logits' dtype, shaped to broadcast against them."""
    values = f_values.data if isinstance(f_values, Tensor) else np.asarray(f_values)
    if values.shape != logits.shape[:1]:
        raise ValueError(
            f"REINFORCE: the objective has shape {values.shape} but needs one value per "
            f"example, shape {logits.shape[:1]}"
        )
    checks.finite_values(values, "per-example loss", "REINFORCE", _FIX_LOSS)
    validate.finite(baseline if baseline is not None else 0.0, "the baseline", "REINFORCE")
    column = values.reshape((-1,) + (1,) * (logits.ndim - 1))
    if baseline is None:
        return Tensor(column.astype(logits.dtype))
    return cast(Tensor(column) - baseline, logits.dtype)


def reinforce_from_sample(logits: Tensor, b: np.ndarray, f_values,
                          baseline=None) -> Tensor:
    """The REINFORCE estimate for a Bernoulli sample already drawn and scored.

    ``g = (b - sigmoid(a)) (f(b) - c)``: ``b`` the sample (batch, units),
    ``f_values`` the objective at it (batch,), ``c`` the baseline (none, a number,
    one per unit, or a Tensor). A training step uses this form: there ``f(b)``, the
    loss, is already computed.
    """
    score = Tensor(b) - sigmoid(logits)
    return score * _advantage(f_values, baseline, logits)


def reinforce(logits: Tensor, f: Objective, u: np.ndarray, baseline=None
              ) -> np.ndarray:
    """REINFORCE for Bernoulli(sigmoid(a)) units; unbiased: E[g] = d E[f(b)] / d a.

    ``b = 1[u < sigmoid(a)]``, then ``g = (b - sigmoid(a)) (f(b) - c)``; ``f`` sees
    ``b`` as a constant and only its values are used (Williams 1992).
    """
    b = bernoulli_sample(logits, u, "reinforce")
    with no_grad():
        g = reinforce_from_sample(logits, b, f(Tensor(b)), baseline)
    return estimate_array(g, logits)


def reinforce_categorical(logits: Tensor, f: Objective, u: np.ndarray, baseline=None
                          ) -> np.ndarray:
    """REINFORCE for categorical units, logits of shape (batch, units, classes).

    ``b = one_hot(i)`` with ``i ~ softmax(a)`` drawn by the inverse CDF from ``u`` (one per
    unit, shape (batch, units)), then ``g = (b - softmax(a)) (f(b) - c)``.
    """
    checks.finite_values(logits.data, "logits", "reinforce_categorical", _FIX_LOGITS)
    with no_grad():
        probs = softmax(logits, axis=-1)
        b = sample_categorical(probs.data, u, "reinforce_categorical")
        g = (Tensor(b) - probs) * _advantage(f(Tensor(b)), baseline, logits)
    return estimate_array(g, logits)


def reinforce_surrogate(logits: Tensor, b, loss, baseline=None) -> Tensor:
    """The REINFORCE surrogate: a scalar whose gradient is the REINFORCE estimate.

    ``S = sum_{n,i} log P(b_ni | a_ni) (L_n - c_i)`` with ``b`` and ``L`` held constant,
    and ``log P(b | a) = b log sigmoid(a) + (1 - b) log sigmoid(-a)``, so
    ``d S / d a_ni = (b_ni - sigmoid(a_ni)) (L_n - c_i)``: :func:`reinforce_from_sample`.
    Only its gradient means anything, not its value.
    """
    a = logits
    b = Tensor(b.data if isinstance(b, Tensor) else np.asarray(b)).astype(a.dtype)
    log_prob = b * log_sigmoid(a) + (1 - b) * log_sigmoid(-a)
    return (log_prob * _advantage(loss, baseline, a)).sum()


# ---------------------------------------------------------------------- layers of units
def _probabilities(logits) -> np.ndarray:
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"logits must be floating point, got {data.dtype}")
    return _sigmoid_array(data)


def _per_example(c, batch: int, dtype) -> np.ndarray:
    c = c.data if isinstance(c, Tensor) else np.asarray(c, dtype=dtype)
    return np.broadcast_to(c, (batch,)).astype(dtype)


def reinforce_loo(logits: Tensor, f: Objective, u: np.ndarray) -> np.ndarray:
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
    values = np.stack([value_at(f, b, "reinforce_loo") for b in bs])   # (K, batch)
    k = len(bs)
    others = (values.sum(axis=0, keepdims=True) - values) / (k - 1)
    signal = values - others
    g = sum(s[:, None] * (b - p) for s, b in zip(signal, bs)) / k
    return estimate_array(g, logits)


def nvil(logits: Tensor, f: Objective, u: np.ndarray, baseline, scale=1.0
         ) -> np.ndarray:
    """NVIL (Mnih & Gregor 2014, section 3): ``g = (f(b) - C(x) - c) / s * (b - p)``.

    ``baseline`` holds ``C(x) + c`` per example (the input-dependent baseline and
    the running mean, as ``NVILControl.values`` gives them) and ``scale`` the
    variance normalisation ``s = max(1, sqrt(v))``. Unbiased for ``d E[f] / d
    logits`` up to the positive factor ``1 / s``, which only rescales the step.
    """
    b = bernoulli_sample(logits, u, "nvil")
    validate.finite(baseline, "the baseline", "nvil")
    p = _probabilities(logits)
    centred = value_at(f, b, "nvil") - _per_example(baseline, len(b), p.dtype)
    return estimate_array(centred[:, None] * (b - p) / float(scale), logits)


def _mean_field(f: Objective, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f(p)`` and ``f'(p)``: the objective and its gradient at the mean of the units.

    Where ``f`` reaches its input only through a hard resample (a lower layer's learning
    signal in structured prediction), ``f'(p)`` is zero: no path, no gradient.
    """
    mean = Tensor(p, requires_grad=True)
    with enable_grad():
        value = f(mean)
        (slope,) = grad(value.sum(), mean, allow_unused=True)
    return value.data, np.zeros_like(p) if slope is None else slope.data


def muprop(logits: Tensor, f: Objective, u: np.ndarray) -> np.ndarray:
    """MuProp (Gu et al. 2016, eq. 5): a first-order Taylor expansion of f around the mean
    field ``p`` as the control variate, its expectation's gradient added back exactly::

        h(b) = f(p) + f'(p) . (b - p)          (f'(p) and p held fixed)
        g = (f(b) - h(b)) (b - p) + f'(p) * p (1 - p)

    The second term is ``d E[h(b)] / d logits``; ``f`` must accept relaxed ``b``.
    """
    b = bernoulli_sample(logits, u, "muprop")
    p = _probabilities(logits)
    f_mean, slope = _mean_field(f, p)
    validate.finite(f_mean, "the objective's value f(p) at the mean field", "muprop", _FIX_F)
    taylor = f_mean + ((b - p) * slope).sum(axis=1)
    signal = value_at(f, b, "muprop") - taylor
    return estimate_array(signal[:, None] * (b - p) + slope * p * (1 - p), logits)


@dataclass(frozen=True)
class MuPropSignal:
    """What MuProp computes from one sample, as arrays: the sample ``b``, the mean field
    ``p``, ``f'(p)``, and per example ``f(b)``, ``f(p)`` and the Taylor term
    ``f'(p).(b - p)``. The estimate and the training of its control both read it."""

    b: np.ndarray
    p: np.ndarray
    slope: np.ndarray
    f_sample: np.ndarray
    f_mean: np.ndarray
    taylor: np.ndarray


def muprop_signal(logits: Tensor, f: Objective, u: np.ndarray,
                  who: str = "muprop_signal") -> MuPropSignal:
    """``b = 1[u < p]``, ``f(b)``, and ``f(p)``, ``f'(p)`` at the mean field ``p``."""
    b = bernoulli_sample(logits, u, who)
    p = _probabilities(logits)
    f_mean, slope = _mean_field(f, p)
    validate.finite(f_mean, "the objective's value f(p) at the mean field", who, _FIX_F)
    return MuPropSignal(b, p, slope, value_at(f, b, who), f_mean,
                        ((b - p) * slope).sum(axis=1))


def muprop_from_signal(logits: Tensor, s: MuPropSignal, baseline=0.0, eta0: float = 1.0,
                       eta1: float = 1.0) -> np.ndarray:
    """The estimate of :func:`muprop_with_control` from its :class:`MuPropSignal`."""
    validate.finite(baseline, "the baseline", "muprop_with_control")
    validate.finite([eta0, eta1], "eta0 and eta1", "muprop_with_control")
    c = _per_example(baseline, len(s.b), s.p.dtype)
    signal = s.f_sample - (eta0 * s.f_mean + eta1 * s.taylor + c)
    return estimate_array(signal[:, None] * (s.b - s.p) + eta1 * s.slope * s.p * (1 - s.p),
                          logits)


def muprop_with_control(logits: Tensor, f: Objective, u: np.ndarray, baseline=0.0,
                        eta0: float = 1.0, eta1: float = 1.0) -> np.ndarray:
    """MuProp as the REBAR code has it (Tucker et al. 2017): the control variate
    ``eta0 f(p) + eta1 f'(p).(b - p)`` and a baseline ``c`` (its ``C(x)``)::

        L = f(b) - eta0 f(p) - eta1 f'(p).(b - p) - c
        g = L (b - p) + eta1 f'(p) * p (1 - p)

    Unbiased for every ``eta0``, ``eta1`` and every ``c`` that does not depend on ``b``:
    ``eta0 f(p) + c`` is a baseline and the second term is ``d E[eta1 f'(p).(b - p)] / d
    logits``. ``eta0 = eta1 = 1`` and ``c = 0`` is :func:`muprop`. The control
    (:class:`~minigrad.estimators.controls.MuPropControl`) is trained on ``mean(L^2)``.
    """
    s = muprop_signal(logits, f, u, "muprop_with_control")
    return muprop_from_signal(logits, s, baseline, eta0, eta1)


def simple_muprop(logits: Tensor, f: Objective, u: np.ndarray) -> np.ndarray:
    """SimpleMuProp (Gu et al. 2016): the mean-field value alone as the baseline,
    ``g = (f(b) - f(p)) (b - p)``; ``f(p)`` does not depend on ``b``, so it is unbiased."""
    b = bernoulli_sample(logits, u, "simple_muprop")
    p = _probabilities(logits)
    with no_grad():
        f_mean = f(Tensor(p)).data
    validate.finite(f_mean, "the objective's value f(p) at the mean field", "simple_muprop",
                    _FIX_F)
    signal = value_at(f, b, "simple_muprop") - f_mean
    return estimate_array(signal[:, None] * (b - p), logits)


# ---------------------------------------------------------------------- the neuron
class ReinforceNeuron(Neuron):
    """A layer of binary stochastic neurons ``b ~ Bernoulli(sigmoid(a))`` trained by REINFORCE.

    ``stochastic=True``: samples ``b`` (a constant: no gradient flows through it) and, when
    a graph is recorded, appends a :class:`~minigrad.estimators.base.SampledUnits` record
    to ``sampled``. Once the per-example loss ``L`` is known the training step calls
    :meth:`update` (the baseline's moving averages, explicitly) and :meth:`estimate`
    (``(b - p)(L - L_bar)``, :func:`reinforce_from_sample`), and backpropagates the
    surrogate of the estimate. With ``baseline=True`` this layer has its own
    :class:`VarianceAdjustingBaseline`.

    ``stochastic=False``: ``round(sigmoid(a))`` with the pass-through ST gradient (identity),
    as in R2RT's code, whose REINFORCE neuron is stochastic only and whose step function for
    evaluation is the pass-through ST one.
    """

    score_function = True

    def __init__(self, baseline: bool = True, decay: float = 0.95):
        super().__init__()
        self.decay = checks.decay_rate(decay, "ReinforceNeuron")
        self.baseline = VarianceAdjustingBaseline(decay) if baseline else None

    def build(self, units: int) -> None:
        if self.baseline is not None:
            self.baseline.build((units,))

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        if not stochastic:
            return straight_through_round(pass_through_sigmoid(pre))
        rng = checks.require_rng(rng, repr(self))
        recording = is_grad_enabled() and pre.requires_grad
        if recording and sampled is None:
            raise TypeError(
                f"{self!r}: a REINFORCE neuron's estimate needs the loss, known only after "
                "the forward pass: pass sampled=[] to the forward pass and give each record "
                "the per-example loss (see step_loss in minigrad.experiments.classifier); "
                "under no_grad() none is needed"
            )
        b = bernoulli_sample(pre, rng.random(pre.shape), repr(self))
        if self.baseline is not None and not self.baseline.built:
            self.baseline.build(pre.shape[1:])    # used without a model's build(units)
        if recording:
            sampled.append(SampledUnits(self, pre, b))
        return Tensor(b)

    def update(self, units: SampledUnits, loss) -> None:
        """Advance the baseline's moving averages with this batch (no baseline: nothing)."""
        if self.baseline is not None:
            score = units.sample - sigmoid(Tensor(units.logits.data)).data
            self.baseline.update(loss, score)

    def estimate(self, units: SampledUnits, loss) -> Tensor:
        """``(b - sigmoid(a)) (L - L_bar)`` for the recorded sample; changes nothing."""
        baseline = None if self.baseline is None else self.baseline.value()
        return reinforce_from_sample(units.logits, units.sample, loss, baseline)

    def __repr__(self) -> str:
        if self.baseline is None:
            return "ReinforceNeuron(baseline=False)"
        return f"ReinforceNeuron(baseline=True, decay={self.decay})"
