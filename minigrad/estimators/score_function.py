"""Score-function (REINFORCE) estimators and their baselines.

For units ``b ~ P(b | a)`` with logits ``a`` and any objective ``f``, differentiable or not::

    d E[f(b)] / d a = E[(f(b) - c) d log P(b | a) / d a]

for every baseline ``c`` that does not depend on ``b`` (Williams 1992): the *score*
``d log P(b | a) / d a`` has mean zero, so ``c`` changes the variance and not the mean.
For a Bernoulli(sigmoid(a)) unit the score is ``b - sigmoid(a)``; for a categorical unit with
one-hot ``b`` it is ``b - softmax(a)``. One sample gives the estimate::

    g = (b - p) (f(b) - c)                                 (one row per example)

The baseline ``c`` is a number, an array of one value per unit, or a Tensor (then ``g`` is
differentiable with respect to it). Two baselines that learn from the losses they see are
small Modules whose state changes only through an explicit ``update(loss, score)``:
:class:`MovingAverageBaseline` (one number) and :class:`VarianceAdjustingBaseline` (Bengio,
Léonard & Courville 2013: one number per unit).

:class:`ReinforceNeuron` is the layer of binary neurons the MNIST chapters train with this
estimator; the training step gives it the loss (see
:mod:`minigrad.experiments.classifier`).
"""
from __future__ import annotations

import numpy as np

from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.base import Neuron, Objective, SampledUnits
from minigrad.estimators.binary import pass_through_sigmoid, straight_through_round
from minigrad.estimators.onehot import sample_categorical
from minigrad.functions import cast, log_sigmoid, sigmoid, softmax
from minigrad.nn import Buffer, Module
from minigrad.tensor import Tensor, is_grad_enabled

__all__ = [
    "bernoulli_sample", "reinforce_from_sample", "reinforce", "reinforce_categorical",
    "reinforce_surrogate", "MovingAverageBaseline", "VarianceAdjustingBaseline",
    "ReinforceNeuron",
]

_FIX_LOGITS = ("a NaN logit has no distribution to sample from: look upstream for a "
               "diverging learning rate or a NaN in the input")
_FIX_LOSS = ("REINFORCE multiplies every score by the loss, so one NaN would make every "
             "gradient NaN: find where the loss became NaN (a log of 0, an overflow)")


def bernoulli_sample(logits: Tensor, u: np.ndarray, who: str = "bernoulli_sample"
                     ) -> np.ndarray:
    """``b = 1[u < sigmoid(a)]``, so ``b ~ Bernoulli(sigmoid(a))``, in the logits' dtype."""
    checks.finite_values(logits.data, "pre-activation (logits)", who, _FIX_LOGITS)
    validate.unit_interval_noise(u, "the uniform noise u", who)
    u = checks.noise_of_shape(u, logits.shape, who)
    return (u < sigmoid(Tensor(logits.data)).data).astype(logits.dtype)


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


def reinforce(logits: Tensor, f: Objective, u: np.ndarray, baseline=None) -> Tensor:
    """REINFORCE for Bernoulli(sigmoid(a)) units; unbiased: E[g] = d E[f(b)] / d a.

    ``b = 1[u < sigmoid(a)]``, then ``g = (b - sigmoid(a)) (f(b) - c)``; ``f`` sees
    ``b`` as a constant and only its values are used (Williams 1992).
    """
    b = bernoulli_sample(logits, u, "reinforce")
    return reinforce_from_sample(logits, b, f(Tensor(b)), baseline)


def reinforce_categorical(logits: Tensor, f: Objective, u: np.ndarray, baseline=None
                          ) -> Tensor:
    """REINFORCE for categorical units, logits of shape (batch, units, classes).

    ``b = one_hot(i)`` with ``i ~ softmax(a)`` drawn by the inverse CDF from ``u`` (one per
    unit, shape (batch, units)), then ``g = (b - softmax(a)) (f(b) - c)``.
    """
    checks.finite_values(logits.data, "logits", "reinforce_categorical", _FIX_LOGITS)
    probs = softmax(logits, axis=-1)
    b = sample_categorical(probs.data, u, "reinforce_categorical")
    return (Tensor(b) - probs) * _advantage(f(Tensor(b)), baseline, logits)


def reinforce_surrogate(a: Tensor, b, loss, baseline=None) -> Tensor:
    """The REINFORCE surrogate: a scalar whose gradient is the REINFORCE estimate.

    ``S = sum_{n,i} log P(b_ni | a_ni) (L_n - c_i)`` with ``b`` and ``L`` held constant,
    and ``log P(b | a) = b log sigmoid(a) + (1 - b) log sigmoid(-a)``, so
    ``d S / d a_ni = (b_ni - sigmoid(a_ni)) (L_n - c_i)``: :func:`reinforce_from_sample`.
    Only its gradient means anything, not its value.
    """
    b = Tensor(b.data if isinstance(b, Tensor) else np.asarray(b)).astype(a.dtype)
    log_prob = b * log_sigmoid(a) + (1 - b) * log_sigmoid(-a)
    return (log_prob * _advantage(loss, baseline, a)).sum()


# ---------------------------------------------------------------------- baselines
def _checked_loss(loss, who: str) -> np.ndarray:
    loss = np.asarray(loss.data if isinstance(loss, Tensor) else loss)
    if loss.ndim != 1:
        raise ValueError(f"{who}.update: expects one loss per example, got shape {loss.shape}")
    return checks.finite_values(loss, "per-example loss", f"{who}.update", _FIX_LOSS)


class MovingAverageBaseline(Module):
    """A constant baseline that follows the mean loss: ``c <- decay c + (1 - decay) mean(L)``.

    Starts at ``c = 0``. Its state (``c`` and the number of updates) is in Buffers; it
    changes only through :meth:`update`.
    """

    def __init__(self, decay: float = 0.9):
        super().__init__()
        self.decay = checks.decay_rate(decay, "MovingAverageBaseline")
        self.mean = Buffer(np.float64(0.0))

    def update(self, loss, score=None) -> None:
        """One step from a batch of per-example losses (``score`` is not used)."""
        batch_mean = _checked_loss(loss, "MovingAverageBaseline").mean()
        self.mean.data = self.decay * self.mean.data + (1 - self.decay) * batch_mean

    def value(self) -> np.ndarray:
        return self.mean.data.copy()

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={float(self.mean.data):.4g})"


class VarianceAdjustingBaseline(Module):
    """Bengio et al.'s per-unit variance-adjusting baseline, as moving averages.

    For unit ``i`` with score ``b_i - p_i`` and per-example loss ``L``::

        L_bar_i = EMA[(b_i - p_i)^2 L] / (EMA[(b_i - p_i)^2] + eps)

    which estimates the baseline that minimises the variance of ``(b_i - p_i)(L - L_bar_i)``
    (Bengio et al. 2013). Each EMA is updated from the batch means,
    ``m <- decay m + (1 - decay) batch_mean``, starting from numerator 0 and denominator 1 as
    in R2RT's code. The state is one number per unit, made by :meth:`build` (or by the
    first update), in Buffers; it changes only through :meth:`update`.
    """

    def __init__(self, decay: float = 0.95, eps: float = 1e-4, units: int | None = None):
        super().__init__()
        self.decay = checks.decay_rate(decay, "VarianceAdjustingBaseline")
        self.eps = checks.positive_number(eps, "eps", "VarianceAdjustingBaseline")
        self.numerator = Buffer(np.zeros(0))
        self.denominator = Buffer(np.ones(0))
        self.built = False
        if units is not None:
            self.build((units,))

    def build(self, units: tuple[int, ...]) -> None:
        self.numerator = Buffer(np.zeros(units))
        self.denominator = Buffer(np.ones(units))
        self.built = True

    def update(self, loss, score) -> None:
        """One EMA step from a batch: loss (batch,), score = b - p (batch, units)."""
        loss = _checked_loss(loss, "VarianceAdjustingBaseline")
        score = np.asarray(score)
        if not self.built:
            self.build(score.shape[1:])
        if self.numerator.shape != score.shape[1:]:
            raise ValueError(
                f"VarianceAdjustingBaseline holds {self.numerator.shape} units but got "
                f"a batch of shape {score.shape}; use one baseline per layer"
            )
        score_sq = np.square(score, dtype=np.float64)
        weighted = score_sq * loss.reshape((-1,) + (1,) * (score.ndim - 1))
        keep, numerator, denominator = self.decay, self.numerator, self.denominator
        numerator.data = keep * numerator.data + (1 - keep) * weighted.mean(axis=0)
        denominator.data = keep * denominator.data + (1 - keep) * score_sq.mean(axis=0)

    def value(self) -> np.ndarray:
        """``L_bar``, one number per unit."""
        if not self.built:
            raise RuntimeError(
                "VarianceAdjustingBaseline.value(): no state yet; it is made by "
                "build(units) or by the first update(loss, score)"
            )
        return self.numerator.data / (self.denominator.data + self.eps)

    def __repr__(self) -> str:
        units = self.numerator.shape if self.built else None
        return f"VarianceAdjustingBaseline(decay={self.decay}, eps={self.eps}, units={units})"


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
