"""Binary stochastic neurons and their gradient estimators.

A binary stochastic neuron turns a pre-activation ``a`` into a firing probability ``p`` and
then into a bit::

    p = f(a)                    (a sigmoid, a slope-annealed sigmoid or a hard sigmoid)
    b = 1[u < p],  u ~ Uniform[0, 1)      so b ~ Bernoulli(p)

The bit has derivative zero almost everywhere, so training needs an *estimator* of the
gradient of the expected loss ``d E[L] / d a``. This module has the two families compared by
Bengio, Léonard & Courville (2013, arXiv:1308.3432) and by R2RT's post "Binary stochastic
neurons in TensorFlow" (2016):

- **straight-through** (biased): the backward pass pretends the sampling step (or the
  rounding step) was the identity, ``d b / d p := 1``, and optionally keeps the derivative of
  ``f``:

  ========================  ==========================  =================================
  book's name               forward                     ``d b / d a`` used by backward
  ========================  ==========================  =================================
  pass-through ST           Bernoulli(sigmoid(a))       1
  sigmoid-adjusted ST       Bernoulli(sigmoid(a))       sigmoid'(a)
  slope-annealed ST         Bernoulli(sigmoid(m a))     m sigmoid'(m a)  (m grows per epoch)
  hard-sigmoid ST           Bernoulli(hsig(a))          1/2 inside (-1, 1), 0 outside
  deterministic (round) ST  round(f(a))                 the same as its stochastic twin
  ========================  ==========================  =================================

- **REINFORCE** (unbiased; Williams 1992): the score-function estimator
  ``(b - p)(L - L_bar)``, with no baseline or with Bengio et al.'s per-unit
  variance-adjusting baseline.

Each estimator is a :class:`~minigrad.tensor.Function` whose backward pass fits on a screen;
the straight-through ones also have their one-line "detach trick" form
(:func:`straight_through_detach`, :func:`reinforce_surrogate`). The neurons
(:class:`StraightThroughNeuron`, :class:`ReinforceNeuron`) follow the protocol of
:mod:`minigrad.estimators.base`.

Randomness always comes in from outside: the functions take pre-drawn uniform noise ``u``; the
neurons draw it from the ``rng`` they are called with.
"""
from __future__ import annotations

import math

import numpy as np

from minigrad.estimators.base import LossFeedback, Neuron, require_rng
from minigrad.functions import log_sigmoid, sigmoid
from minigrad.tensor import Function, Tensor, is_grad_enabled

__all__ = [
    "StraightThroughRound", "BernoulliStraightThrough", "PassThroughSigmoid", "HardSigmoid",
    "ReinforceBernoulli", "VarianceAdjustingBaseline",
    "straight_through_round", "bernoulli_straight_through", "pass_through_sigmoid",
    "hard_sigmoid", "reinforce_bernoulli", "straight_through_detach", "reinforce_surrogate",
    "enumerate_binary_configurations", "StraightThroughNeuron", "ReinforceNeuron",
    "ST_VARIANTS",
]

ST_VARIANTS = ("pass_through", "sigmoid_adjusted", "hard_sigmoid")


# ---------------------------------------------------------------------- input checks
def _check_probabilities(p: np.ndarray, who: str) -> None:
    if p.size and not np.all((p >= 0) & (p <= 1)):
        nan = " (and contains NaN)" if np.isnan(p).any() else ""
        raise ValueError(
            f"{who}: expects probabilities in [0, 1], got values from {np.nanmin(p):.6g} to "
            f"{np.nanmax(p):.6g}{nan}; pass sigmoid(a) (or another probability), not the "
            "pre-activation a"
        )


def _check_noise(u, like: np.ndarray, who: str) -> np.ndarray:
    u = np.asarray(u)
    if u.shape != like.shape:
        raise ValueError(
            f"{who}: the uniform noise u has shape {u.shape} but the probabilities have shape "
            f"{like.shape}; draw one u per unit, e.g. rng.random(p.shape)"
        )
    return u


def _sigmoid_array(a: np.ndarray) -> np.ndarray:
    return sigmoid(Tensor(a)).data


def _received_loss(feedback, batch: int) -> np.ndarray:
    if not isinstance(feedback, LossFeedback):
        raise TypeError(
            "a REINFORCE backward pass needs the per-example loss: pass "
            "feedback=LossFeedback() to the forward pass and call "
            f"feedback.send(per_example_loss) before backward() (got {feedback!r})"
        )
    loss = np.asarray(feedback.loss)
    if loss.shape != (batch,):
        raise ValueError(
            f"REINFORCE: feedback.loss has shape {loss.shape} but this layer's batch has "
            f"{batch} examples; send one loss per example"
        )
    return loss


# ---------------------------------------------------------------------- straight-through
class StraightThroughRound(Function):
    """Deterministic binarisation with the straight-through gradient.

    Forward: ``b = round(p) = 1[p >= 1/2]`` for ``p`` in [0, 1]. A tie ``p = 1/2`` rounds
    *up* to 1 (NumPy's ``round`` would round half to even, i.e. to 0).

    Backward: ``dp = g`` (the rounding is treated as the identity).

    This is R2RT's ``binaryRound`` (TensorFlow's ``Round`` with its gradient overridden by
    ``Identity``); Bengio et al. (2013) for the straight-through idea.
    """

    def forward(self, p):
        _check_probabilities(p, "StraightThroughRound")
        return (p >= 0.5).astype(p.dtype)

    def backward(self, g):
        return g


class BernoulliStraightThrough(Function):
    """Bernoulli sampling with the straight-through gradient.

    Forward: ``b = 1[u < p]`` with ``u ~ Uniform[0, 1)`` given, so ``P(b = 1) = p`` (``p = 0``
    never fires, ``p = 1`` always does).

    Backward: ``dp = g`` (``d b / d p := 1``; nothing flows to the noise).

    Its detach-trick form is ``straight_through_detach(1[u < p], p)``, i.e.
    ``b + (p - p.detach())``. R2RT's ``bernoulliSample``; the PyTorch ``BernoulliFunctionST``
    of the hard non-linearities review; Bengio et al. (2013).
    """

    def forward(self, p, u):
        _check_probabilities(p, "BernoulliStraightThrough")
        u = _check_noise(u, p, "BernoulliStraightThrough")
        return (u < p).astype(p.dtype)

    def backward(self, g):
        return g


class PassThroughSigmoid(Function):
    """The sigmoid whose backward pass is the identity.

    Forward: ``p = sigmoid(x)``. Backward: ``dx = g`` (not ``g p (1 - p)``).

    Followed by :class:`BernoulliStraightThrough`, it gives the *pass-through* ST estimator
    ``d b / d a = 1`` of R2RT's ``passThroughSigmoid``. Followed by the ordinary
    :func:`~minigrad.functions.sigmoid` instead, the same sampling step gives the
    *sigmoid-adjusted* ST estimator ``d b / d a = sigmoid'(a)``.
    """

    def forward(self, x):
        return _sigmoid_array(x)

    def backward(self, g):
        return g


class HardSigmoid(Function):
    """The hard sigmoid ``hsig(x) = (hardtanh(x) + 1) / 2 = clip((x + 1) / 2, 0, 1)``.

    Backward: ``dx = g / 2`` for ``-1 < x < 1`` and ``dx = 0`` otherwise (at ``x = +-1`` too,
    as for PyTorch's ``hardtanh``).

    Followed by :class:`BernoulliStraightThrough` this is the hard-sigmoid ST neuron of the
    hard non-linearities review (after Bengio et al. 2013, and the slope-annealed hard
    sigmoid of Chung, Ahn & Bengio 2016, arXiv:1609.01704).
    """

    def forward(self, x):
        return np.clip((x + 1) * 0.5, 0, 1).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.inputs[0].data
        half_inside = np.where((x > -1) & (x < 1), 0.5, 0.0).astype(g.dtype)
        return g * Tensor(half_inside)


def straight_through_round(p: Tensor) -> Tensor:
    """``round(p)`` (ties up) with the identity backward; see :class:`StraightThroughRound`."""
    return StraightThroughRound.apply(p)


def bernoulli_straight_through(p: Tensor, u: np.ndarray) -> Tensor:
    """``1[u < p]`` with the identity backward; see :class:`BernoulliStraightThrough`."""
    return BernoulliStraightThrough.apply(p, u=u)


def pass_through_sigmoid(x: Tensor) -> Tensor:
    """``sigmoid(x)`` with the identity backward; see :class:`PassThroughSigmoid`."""
    return PassThroughSigmoid.apply(x)


def hard_sigmoid(x: Tensor) -> Tensor:
    """``clip((x + 1) / 2, 0, 1)``; see :class:`HardSigmoid`."""
    return HardSigmoid.apply(x)


def straight_through_detach(hard, soft: Tensor) -> Tensor:
    """The detach trick: the value of ``hard``, the gradient of ``soft``.

    ``y = hard + (soft - soft.detach())``: forward ``y = hard`` exactly (the bracket is 0),
    backward ``d y / d soft = 1``. With ``hard = 1[u < p]`` and ``soft = p`` this is
    :class:`BernoulliStraightThrough`; with ``hard = sigmoid(a)`` and ``soft = a`` it is
    :class:`PassThroughSigmoid`.
    """
    hard = hard.data if isinstance(hard, Tensor) else np.asarray(hard)
    return Tensor(hard.astype(soft.dtype, copy=False)) + (soft - soft.detach())


# ---------------------------------------------------------------------- REINFORCE
class VarianceAdjustingBaseline:
    """Bengio et al.'s per-unit variance-adjusting baseline, as moving averages.

    For unit ``i`` with score ``b_i - p_i`` and per-example loss ``L``::

        L_bar_i = EMA[(b_i - p_i)^2 L] / (EMA[(b_i - p_i)^2] + eps)

    which estimates the baseline that minimises the variance of ``(b_i - p_i)(L - L_bar_i)``
    (Bengio et al. 2013). Each EMA is updated from the batch means,
    ``m <- decay m + (1 - decay) batch_mean``, starting from numerator 0 and denominator 1 as
    in R2RT's code. The state is one number per unit (shape ``(units,)``), made on the first
    update. Set ``frozen = True`` to stop updating (so ``L_bar`` no longer depends on the
    batch it is used on).
    """

    def __init__(self, decay: float = 0.95, eps: float = 1e-4):
        if not 0 <= decay < 1:
            raise ValueError(f"VarianceAdjustingBaseline: decay must be in [0, 1), got {decay}")
        if not eps > 0:
            raise ValueError(f"VarianceAdjustingBaseline: eps must be positive, got {eps}")
        self.decay = decay
        self.eps = eps
        self.numerator: np.ndarray | None = None
        self.denominator: np.ndarray | None = None
        self.frozen = False

    def update(self, score: np.ndarray, loss: np.ndarray) -> None:
        """One EMA step from a batch: ``score = b - p`` (batch, units), ``loss`` (batch,)."""
        score_sq = np.square(score, dtype=np.float64)
        weighted = score_sq * loss.reshape((-1,) + (1,) * (score.ndim - 1))
        if self.numerator is None:
            self.numerator = np.zeros(score.shape[1:])
            self.denominator = np.ones(score.shape[1:])
        if self.numerator.shape != score.shape[1:]:
            raise ValueError(
                f"VarianceAdjustingBaseline holds {self.numerator.shape} units but got a batch "
                f"of shape {score.shape}; use one baseline per layer"
            )
        if self.frozen:
            return
        keep = self.decay
        self.numerator = keep * self.numerator + (1 - keep) * weighted.mean(axis=0)
        self.denominator = keep * self.denominator + (1 - keep) * score_sq.mean(axis=0)

    def value(self) -> np.ndarray:
        """``L_bar``, one number per unit."""
        if self.numerator is None:
            raise RuntimeError(
                "VarianceAdjustingBaseline.value(): no state yet; it is made by the first "
                "update (the first REINFORCE backward pass)"
            )
        return self.numerator / (self.denominator + self.eps)

    def __repr__(self) -> str:
        units = None if self.numerator is None else self.numerator.shape
        return (f"VarianceAdjustingBaseline(decay={self.decay}, eps={self.eps}, "
                f"units={units}, frozen={self.frozen})")


class ReinforceBernoulli(Function):
    """A Bernoulli(sigmoid(a)) neuron trained by REINFORCE (the score-function estimator).

    Forward: ``p = sigmoid(a)``, ``b = 1[u < p]`` with ``u ~ Uniform[0, 1)`` given.

    Backward, for example ``n`` and unit ``i``, with ``L_n`` the per-example loss read from
    ``feedback.loss``::

        da_ni = (b_ni - p_ni) (L_n - L_bar_i)

    where ``b - p = d log P(b | a) / d a`` is the score of the Bernoulli. ``L_bar = 0`` without
    a baseline; with a :class:`VarianceAdjustingBaseline`, its EMAs are first updated from
    this batch and ``L_bar`` is then read (the order of R2RT's code).

    What it estimates: ``E_b[da_ni] = d E_b[L_n] / d a_ni`` for each example ``n``
    (Williams 1992; Bengio et al. 2013), whatever the baseline, as long as ``L_bar``
    does not depend on ``b_n`` (see :class:`VarianceAdjustingBaseline`; the in-batch update
    makes ``L_bar`` depend on ``b_n`` with weight ``(1 - decay) / batch``, a small bias). The
    per-example terms are *summed*, not averaged: the gradient is that of the sum of the
    per-example losses, which is what the training step minimises.

    The incoming gradient ``g`` is ignored, on purpose: the score-function estimator needs
    only the *value* of the loss, never its derivative with respect to ``b`` (which is why
    REINFORCE works even when ``L`` is not differentiable). ``L`` does not flow back down
    the graph either: it arrives through the :class:`LossFeedback` channel.
    """

    def forward(self, a, u, feedback, baseline):
        self.feedback = feedback
        self.baseline = baseline
        u = _check_noise(u, a, "ReinforceBernoulli")
        return (u < _sigmoid_array(a)).astype(a.dtype)

    def backward(self, g):
        (a,) = self.inputs
        loss = _received_loss(self.feedback, a.shape[0])
        score = Tensor(self.output.data) - sigmoid(a)
        L = loss.reshape((-1,) + (1,) * (a.ndim - 1))
        if self.baseline is not None:
            self.baseline.update(score.data, loss)
            L = L - self.baseline.value()
        return score * Tensor(L.astype(a.dtype))


def reinforce_bernoulli(a: Tensor, u: np.ndarray, feedback: LossFeedback,
                        baseline: VarianceAdjustingBaseline | None = None) -> Tensor:
    """``b ~ Bernoulli(sigmoid(a))``, REINFORCE backward; see :class:`ReinforceBernoulli`."""
    return ReinforceBernoulli.apply(a, u=u, feedback=feedback, baseline=baseline)


def reinforce_surrogate(a: Tensor, b, loss, baseline=None) -> Tensor:
    """The REINFORCE surrogate: a scalar whose gradient is the REINFORCE estimate.

    ``S = sum_{n,i} log P(b_ni | a_ni) (L_n - L_bar_i)`` with ``b`` and ``L`` held constant
    (detached), and ``log P(b | a) = b log sigmoid(a) + (1 - b) log sigmoid(-a)``, so
    ``d S / d a_ni = (b_ni - sigmoid(a_ni)) (L_n - L_bar_i)``: the backward pass of
    :class:`ReinforceBernoulli` (with ``baseline``, the values ``L_bar`` of shape
    ``(units,)``, or none). Only its gradient means anything, not its value.
    """
    b = Tensor(b.data if isinstance(b, Tensor) else np.asarray(b)).astype(a.dtype)
    loss = loss.data if isinstance(loss, Tensor) else np.asarray(loss)
    advantage = loss.reshape((-1,) + (1,) * (a.ndim - 1))
    if baseline is not None:
        advantage = advantage - np.asarray(baseline)
    log_prob = b * log_sigmoid(a) + (1 - b) * log_sigmoid(-a)
    return (log_prob * Tensor(advantage.astype(a.dtype))).sum()


def enumerate_binary_configurations(n: int, dtype=np.float64) -> np.ndarray:
    """All ``2^n`` binary vectors of length ``n``, one per row, in counting order.

    Row ``k`` is ``k`` written in binary with unit 0 as the most significant bit, so for
    ``n = 2`` the rows are 00, 01, 10, 11. Exact expectations over a few binary units are sums
    over these rows: ``E[L] = sum_b prod_i p_i^b_i (1 - p_i)^(1 - b_i) L(b)``.
    """
    if not 0 <= n <= 20:
        raise ValueError(f"enumerate_binary_configurations: n must be in 0..20, got {n}")
    counts = np.arange(2 ** n)[:, None]
    bits = np.arange(n - 1, -1, -1)[None, :]
    return ((counts >> bits) & 1).astype(dtype)


# ---------------------------------------------------------------------- neurons
def _positive_number(value, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{who}: {name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{who}: {name} must be a positive finite number, got {value}")
    return float(value)


class StraightThroughNeuron(Neuron):
    """A layer of binary stochastic neurons trained with a straight-through estimator.

    ``p = f(slope * a)`` with ``f`` chosen by ``variant``:

    - ``"pass_through"``: :class:`PassThroughSigmoid`, ``d p / d a = slope``;
    - ``"sigmoid_adjusted"``: the sigmoid, ``d p / d a = slope sigmoid'(slope a)``;
    - ``"hard_sigmoid"``: :class:`HardSigmoid`, ``d p / d a = slope / 2`` where
      ``|slope a| < 1``.

    then ``b = 1[u < p]`` with :class:`BernoulliStraightThrough` (``stochastic=True``) or
    ``b = round(p)`` with :class:`StraightThroughRound` (``stochastic=False``), both with
    ``d b / d p := 1``. The deterministic version is ``round(f(slope a)) = 1[a >= 0]`` in value.

    Slope annealing (Chung, Ahn & Bengio 2016): with ``anneal_rate`` set, :meth:`end_epoch`
    multiplies the slope by it, so after ``k`` epochs ``slope = slope_0 * anneal_rate^k``
    (R2RT uses 1.1 with the sigmoid-adjusted variant; rate 1.0 is plain sigmoid-adjusted ST).
    """

    def __init__(self, variant: str = "pass_through", slope: float = 1.0,
                 anneal_rate: float | None = None):
        if variant not in ST_VARIANTS:
            raise ValueError(
                f"StraightThroughNeuron: variant must be one of {ST_VARIANTS}, got {variant!r}"
            )
        self.variant = variant
        self.slope = _positive_number(slope, "slope", "StraightThroughNeuron")
        if anneal_rate is not None:
            anneal_rate = _positive_number(anneal_rate, "anneal_rate", "StraightThroughNeuron")
        self.anneal_rate = anneal_rate

    def probability(self, pre: Tensor) -> Tensor:
        """The firing probability ``p = f(slope * a)``, with this variant's backward."""
        x = pre if self.slope == 1.0 else pre * self.slope
        if self.variant == "pass_through":
            return pass_through_sigmoid(x)
        if self.variant == "sigmoid_adjusted":
            return sigmoid(x)
        return hard_sigmoid(x)

    def __call__(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                 stochastic: bool = True, feedback: LossFeedback | None = None) -> Tensor:
        p = self.probability(pre)
        if not stochastic:
            return straight_through_round(p)
        rng = require_rng(rng, repr(self))
        return bernoulli_straight_through(p, rng.random(pre.shape))

    def end_epoch(self) -> None:
        if self.anneal_rate is not None:
            self.slope *= self.anneal_rate

    def __repr__(self) -> str:
        return (f"StraightThroughNeuron(variant={self.variant!r}, slope={self.slope:g}, "
                f"anneal_rate={self.anneal_rate})")


class ReinforceNeuron(Neuron):
    """A layer of binary stochastic neurons ``b ~ Bernoulli(sigmoid(a))`` trained by REINFORCE.

    ``stochastic=True``: :class:`ReinforceBernoulli`, with this layer's own
    :class:`VarianceAdjustingBaseline` (``baseline=True``) or none. The training step must
    pass a :class:`LossFeedback` and send the per-example losses before ``backward()``.

    ``stochastic=False``: ``round(sigmoid(a))`` with the pass-through ST gradient (identity),
    as in R2RT's code, whose REINFORCE neuron is stochastic only and whose step function for
    evaluation is the pass-through ST one.
    """

    def __init__(self, baseline: bool = True, decay: float = 0.95):
        self.baseline = VarianceAdjustingBaseline(decay) if baseline else None
        self.decay = decay

    def __call__(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                 stochastic: bool = True, feedback: LossFeedback | None = None) -> Tensor:
        if not stochastic:
            return straight_through_round(pass_through_sigmoid(pre))
        rng = require_rng(rng, repr(self))
        recording = is_grad_enabled() and pre.requires_grad
        if recording and not isinstance(feedback, LossFeedback):
            raise TypeError(
                f"{self!r}: a REINFORCE neuron's backward pass needs the per-example loss: "
                "pass feedback=LossFeedback() to the forward pass and call "
                f"feedback.send(per_example_loss) before backward() (got {feedback!r}); "
                "under no_grad() no feedback is needed"
            )
        return reinforce_bernoulli(pre, rng.random(pre.shape), feedback, self.baseline)

    def __repr__(self) -> str:
        if self.baseline is None:
            return "ReinforceNeuron(baseline=False)"
        return f"ReinforceNeuron(baseline=True, decay={self.decay})"
