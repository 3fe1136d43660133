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

The score-function estimator REINFORCE, unbiased, is in
:mod:`minigrad.estimators.score_function`.

Each step is a :class:`~minigrad.tensor.Function` whose backward pass fits on a screen, with
its one-line "detach trick" form (:func:`straight_through_detach`). As an estimator of
``d E[f(b)] / d a`` for an objective ``f`` it is :func:`straight_through`; as a layer of a
classifier it is :class:`StraightThroughNeuron` (the protocol of
:mod:`minigrad.estimators.base`).

Randomness always comes in from outside: the functions take pre-drawn uniform noise ``u``; the
neurons draw it from the ``rng`` they are called with.
"""
from __future__ import annotations

import numpy as np

from minigrad.estimators import checks
from minigrad.estimators.base import (AnnealedNeuron, Annealing, Objective,
                                      gradient_through_sample, scheduled, estimate_array)
from minigrad.functions import sigmoid
from minigrad.tensor import Function, Tensor

__all__ = [
    "StraightThroughRound", "BernoulliStraightThrough", "PassThroughSigmoid", "HardSigmoid",
    "straight_through_round", "bernoulli_straight_through", "pass_through_sigmoid",
    "hard_sigmoid", "straight_through_detach", "straight_through", "StraightThroughNeuron",
    "ST_VARIANTS", "ST_PROBABILITY",
]

_NOT_LOGITS = "pass sigmoid(a) (or another probability), not the pre-activation a"


def _sigmoid_array(a: np.ndarray) -> np.ndarray:
    return sigmoid(Tensor(a)).data


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
        checks.probabilities(p, "StraightThroughRound", _NOT_LOGITS)
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
        checks.probabilities(p, "BernoulliStraightThrough", _NOT_LOGITS)
        u = checks.noise_of_shape(u, p.shape, "BernoulliStraightThrough")
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


def straight_through(logits: Tensor, f: Objective, u: np.ndarray, probability=sigmoid,
                     create_graph: bool = False) -> np.ndarray:
    """The straight-through estimate of ``d E[f(b)] / d logits``, ``b ~ Bernoulli(p)``.

    ``p = probability(logits)``, ``b = 1[u < p]`` by :class:`BernoulliStraightThrough`,
    and the estimate is backpropagation of ``f`` through ``d b / d p := 1``::

        g = f'(b) * d p / d logits

    ``probability`` chooses the variant: :func:`~minigrad.functions.sigmoid`
    (sigmoid-adjusted), :func:`pass_through_sigmoid` (``d p / d a := 1``),
    :func:`hard_sigmoid`, or a slope-scaled one such as ``lambda a: sigmoid(2 * a)``.
    Biased: ``E[f'(b)]`` is not the finite difference
    ``E[f | b_i = 1] - E[f | b_i = 0]`` unless ``f`` is linear in ``b`` (Bengio et al.
    2013).
    """
    def sample(x: Tensor) -> Tensor:
        return bernoulli_straight_through(probability(x), u)

    g = gradient_through_sample(logits, f, sample, create_graph)
    # the contract's detached array; with create_graph the Tensor, to differentiate again
    return g if create_graph else estimate_array(g, logits)


# ---------------------------------------------------------------------- neurons
ST_PROBABILITY = {   # variant name -> the firing probability, with its backward pass
    "pass_through": pass_through_sigmoid,
    "sigmoid_adjusted": sigmoid,
    "hard_sigmoid": hard_sigmoid,
}
ST_VARIANTS = tuple(ST_PROBABILITY)


class StraightThroughNeuron(AnnealedNeuron):
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

    slope = scheduled("the current slope")

    def __init__(self, variant: str = "pass_through", slope: float = 1.0,
                 anneal_rate: float | None = None):
        super().__init__()
        if variant not in ST_PROBABILITY:
            raise ValueError(
                f"StraightThroughNeuron: variant must be one of {ST_VARIANTS}, got {variant!r}"
            )
        self.variant = variant
        self.schedule = Annealing(slope, anneal_rate, name="slope", who="StraightThroughNeuron")


    def probability(self, pre: Tensor) -> Tensor:
        """The firing probability ``p = f(slope a)``, with this variant's backward."""
        slope = self.slope
        x = pre if slope == 1.0 else pre * slope
        return ST_PROBABILITY[self.variant](x)

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        p = self.probability(pre)
        if not stochastic:
            return straight_through_round(p)
        rng = checks.require_rng(rng, repr(self))
        return bernoulli_straight_through(p, rng.random(pre.shape))

    def __repr__(self) -> str:
        return (f"StraightThroughNeuron(variant={self.variant!r}, slope={self.slope:g}, "
                f"anneal_rate={self.anneal_rate})")
