"""N-ary stochastic neurons: ordered outputs such as {-1, 0, 1}.

An n-ary neuron is a binary neuron with a wider activation. A pre-activation ``a`` goes through
an activation ``f`` whose values lie between the lowest and the highest output level, and the
real number ``p = f(a)`` is then made an integer::

    training:    y = floor(p) + 1[u < p - floor(p)],  u ~ Uniform[0, 1)   (E[y] = p)
    evaluation:  y = floor(p + 1/2)                                       (round half up)

Stochastic choices are only ever made between the two integers closest to ``p``, never across
all levels. Both roundings have derivative zero almost everywhere; the straight-through (ST)
estimator (Bengio, Léonard & Courville 2013, arXiv:1308.3432) replaces it by the identity,
``d y / d p := 1``, so the backward pass is ``d y / d a = f'(a)``.

The activation matters more than its range. ``tanh`` has range (-1, 1), but its slope is
largest at 0, so a neuron that outputs 0 is pushed away from 0 by every small gradient. A good
n-ary activation is a soft staircase whose slope vanishes at each integer level, so a neuron
can keep outputting an intermediate level. R2RT's post "Beyond binary: ternary and one-hot
neurons" (2017) gives :func:`ternary_activation` for three levels and asks for a general
formula with a slope that can be annealed; :func:`staircase_activation` is one.
"""
from __future__ import annotations

import numpy as np

from minigrad.estimators import checks
from minigrad.estimators.base import Annealing, SlopeAnnealedNeuron
from minigrad.functions import sigmoid, tanh
from minigrad.tensor import Function, Tensor

__all__ = [
    "ternary_activation", "staircase_activation", "staircase_levels",
    "StochasticRound", "DeterministicRound", "stochastic_round", "deterministic_round",
    "NaryNeuron", "NARY_ACTIVATIONS",
]

NARY_ACTIVATIONS = ("ternary", "staircase")


# ---------------------------------------------------------------------- input checks
def _check_slope(slope: float, who: str) -> float:
    return checks.positive_number(slope, "slope", who)


def _check_levels(levels: int, who: str) -> int:
    return checks.integer_at_least(levels, 2, "levels", who,
                                   " (2 levels is a binary neuron)")


# ---------------------------------------------------------------------- activations
def ternary_activation(x: Tensor, slope: float = 1.0) -> Tensor:
    """R2RT's ternary activation ``f(s x) = 1.5 tanh(s x) + 0.5 tanh(-3 s x)``, ``s = slope``.

    ``f`` is odd with ``f(0) = 0`` and ``f(+-inf) = +-(1.5 - 0.5) = +-1``, and
    ``f'(x) = 1.5 (sech^2(x) - sech^2(3x))`` vanishes at ``x = 0`` and as ``|x| -> inf``: the
    slope goes to zero near each of the output levels -1, 0 and 1.

    The slope multiplies the input, as in the slope-annealing trick (Chung, Ahn & Bengio 2016,
    arXiv:1609.01704). Note what annealing does here: ``f(s x)`` tends to ``sign(x)`` as
    ``s -> inf``, and the inputs that give ``|f| < 1/2`` shrink to ``|x| < 0.795 / s``, so the
    middle level is squeezed out. :func:`staircase_activation` keeps its plateaus fixed.
    """
    slope = _check_slope(slope, "ternary_activation")
    sx = x * slope if slope != 1.0 else x
    return 1.5 * tanh(sx) + 0.5 * tanh(-3.0 * sx)


def staircase_levels(levels: int, low: int | None = None) -> np.ndarray:
    """The integer output levels ``low, low + 1, ..., low + levels - 1``.

    By default ``low = -((levels - 1) // 2)``: {0, 1} for 2 levels, {-1, 0, 1} for 3,
    {-1, 0, 1, 2} for 4, {-2, ..., 2} for 5.
    """
    levels = _check_levels(levels, "staircase_levels")
    if low is None:
        low = -((levels - 1) // 2)
    return np.arange(low, low + levels)


def staircase_activation(x: Tensor, levels: int = 3, slope: float = 1.0,
                         low: int | None = None) -> Tensor:
    """A soft staircase through the integers ``low, ..., high = low + levels - 1``.

    Definition. With ``s = slope`` and the thresholds ``c_k = low + k - 1/2`` halfway between
    consecutive levels (``k = 1, ..., levels - 1``)::

        staircase(x) = low + sum_k sigmoid(s (x - c_k)).

    Plateaus at the integers. Each term is a soft step of height 1 centred on ``c_k``. At an
    integer level ``j``, every threshold is at least 1/2 away: the ``j - low`` steps below ``j``
    are nearly 1 and the steps above are nearly 0, so ``staircase(j) ~= low + (j - low) = j``.
    Each step is off by at most ``sigmoid(-s/2) <= exp(-s/2)`` there, so
    ``|staircase(j) - j| <= (levels - 1) exp(-s/2)``. The values run between ``low`` and
    ``high`` (the limits as ``x -> -inf`` and ``x -> inf``).

    Derivative. With ``s_k = sigmoid(s (x - c_k))`` and ``sigmoid' = sigmoid (1 - sigmoid)``::

        staircase'(x) = sum_k s * s_k (1 - s_k).

    At a threshold ``x = c_k`` its own term alone gives ``s / 4`` (steep); at an integer every
    term is at most ``s sigmoid(s/2) sigmoid(-s/2) <= s exp(-s/2)``, so the sum is at most
    ``(levels - 1) s exp(-s/2)``, which tends to 0 as ``s`` grows (flat). So a neuron sitting
    on a level needs many gradient steps in one direction to move to the next level, and the
    plateaus stay centred on the integers for every slope.

    Limit. As ``s -> inf`` each term tends to the step ``1[x > c_k]``, so ``staircase(x)``
    tends to ``low + #{k : c_k < x}`` = ``clip(round(x), low, high)`` away from the thresholds
    (at a threshold it tends to ``c_k`` itself): annealing the slope turns it into the
    rounding staircase.

    Ternary case. ``levels=3`` gives the levels {-1, 0, 1} of :func:`ternary_activation`,
    with thresholds at -1/2 and 1/2. Both are odd (``sigmoid(-z) = 1 - sigmoid(z)`` swaps
    the two terms), map 0 to 0 and tend to -1 and 1. With ``slope = 1.4`` the two curves are
    within 0.115 of each other everywhere. They differ at 0: the ternary activation has slope
    exactly 0 there, the staircase ``2 s sigmoid(s/2) sigmoid(-s/2)`` (0.62 at ``s = 1.4``),
    which only becomes small as the slope is annealed up.

    This answers the question R2RT's "Beyond binary" post (2017) leaves to its readers.
    """
    levels = _check_levels(levels, "staircase_activation")
    slope = _check_slope(slope, "staircase_activation")
    values = staircase_levels(levels, low)
    out = None
    for c in values[:-1] + 0.5:
        step = sigmoid(slope * (x - float(c)))
        out = step if out is None else out + step
    return out + int(values[0])


# ---------------------------------------------------------------------- roundings
class StochasticRound(Function):
    """Sample one of the two integers closest to ``x``, with the straight-through gradient.

    Forward: with ``f = x - floor(x)`` (the fractional part) and ``u ~ Uniform[0, 1)``::

        y = floor(x) + 1[u < f],   so   P(y = floor(x) + 1) = f   and   E[y] = x  (unbiased).

    An integer ``x`` (``f = 0``) is returned unchanged. Backward: ``dx = g``.

    R2RT's ``sample_closest_ints`` (2017), which computes ``ceil(x - u)``, the same
    distribution; the ST idea is from Bengio et al. (2013).
    """

    def forward(self, x, u):
        u = checks.uniform_noise(u, x.shape, "StochasticRound",
                                 per="one u per unit, e.g. rng.random(x.shape)")
        below = np.floor(x)
        return (below + (u < x - below)).astype(x.dtype, copy=False)

    def backward(self, g):
        return g


class DeterministicRound(Function):
    """Round to the nearest integer, halves up, with the straight-through gradient.

    Forward: ``y = floor(x) + 1[x - floor(x) >= 1/2]`` (so 0.5 -> 1 and -0.5 -> 0; NumPy's
    ``round`` would round halves to even). Backward: ``dx = g``.

    Written with the fractional part rather than ``floor(x + 1/2)``: in float32,
    ``0.49999997 + 0.5`` rounds to 1.
    """

    def forward(self, x):
        below = np.floor(x)
        return (below + (x - below >= 0.5)).astype(x.dtype, copy=False)

    def backward(self, g):
        return g


def stochastic_round(x: Tensor, u: np.ndarray) -> Tensor:
    """``floor(x) + 1[u < x - floor(x)]`` with the identity backward; see
    :class:`StochasticRound`."""
    return StochasticRound.apply(x, u=u)


def deterministic_round(x: Tensor) -> Tensor:
    """Round half up with the identity backward; see :class:`DeterministicRound`."""
    return DeterministicRound.apply(x)


# ---------------------------------------------------------------------- the neuron
class NaryNeuron(SlopeAnnealedNeuron):
    """An n-ary stochastic neuron: activation, then rounding with the ST gradient.

    ``y = StochasticRound(f(a))`` when ``stochastic`` (training) and
    ``y = DeterministicRound(f(a))`` otherwise, so ``d y / d a = f'(a)`` either way.

    Args:
        activation: ``"ternary"`` (:func:`ternary_activation`; needs ``levels=3``) or
            ``"staircase"`` (:func:`staircase_activation` with the default levels).
        levels: number of output levels (3 gives {-1, 0, 1}).
        slope: the activation's initial slope.
        anneal_rate: if given, :meth:`end_epoch` multiplies the slope by it (the slope
            annealing of R2RT's ``train_classifier``, e.g. 1.2 or 1.5 per epoch).
    """

    def __init__(self, activation: str = "ternary", levels: int = 3, slope: float = 1.0,
                 anneal_rate: float | None = None):
        if activation not in NARY_ACTIVATIONS:
            raise ValueError(
                f"NaryNeuron: activation must be one of {NARY_ACTIVATIONS}, got {activation!r}"
            )
        super().__init__()
        levels = _check_levels(levels, "NaryNeuron")
        if activation == "ternary" and levels != 3:
            raise ValueError(
                f"NaryNeuron: the ternary activation has exactly 3 levels, got levels={levels}; "
                "use activation='staircase' for other numbers of levels"
            )
        self.activation = activation
        self.levels = levels
        self.schedule = Annealing(slope, anneal_rate, name="slope", who="NaryNeuron")


    def activate(self, pre: Tensor) -> Tensor:
        """The real-valued activation ``f(a)`` before rounding."""
        if self.activation == "ternary":
            return ternary_activation(pre, self.slope)
        return staircase_activation(pre, self.levels, self.slope)

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        p = self.activate(pre)
        if stochastic:
            rng = checks.require_rng(rng, "NaryNeuron")
            return StochasticRound.apply(p, u=rng.random(p.shape))
        return DeterministicRound.apply(p)

    def __repr__(self) -> str:
        return (f"NaryNeuron(activation={self.activation!r}, levels={self.levels}, "
                f"slope={self.slope:g}, anneal_rate={self.anneal_rate})")
