"""Every gradient estimator of the library in one table, and one way to measure them all.

Each :class:`Entry` names the library function a reader opens, what the estimator needs and
costs, the chapter that derives it, and how to call it on the catalogue's common problem:

- **Bernoulli**: 3 examples of 3 units with logits :data:`BERNOULLI_LOGITS` and the loss
  ``f(b) = (b . w - t_n)^2 + 3``, which couples the units;
- **categorical**: 2 examples of 2 one-hot units of 3 classes, ``f(b) = (sum b * v - t_n)^2 + 3``.

:func:`measure` compares ``samples`` single-sample estimates per example with the exact gradient
by enumeration (:mod:`minigrad.estimators.exact`): the largest bias in standard errors, the
size of the bias, and the variance of one estimate. The oracle test (``tests/``) runs every
entry through it, and the book's catalogue page prints the table. A new estimator joins the
library's tests and the page by adding one entry to :data:`CATALOGUE`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minigrad.estimators import sbn_estimators as sbn
from minigrad.estimators.antithetic import arm, disarm
from minigrad.estimators.relaxed import (RelaxSurrogate, concrete_relaxation, coupled_noise,
                                         rebar, relax)
from minigrad.estimators.binary import hard_sigmoid, pass_through_sigmoid, straight_through
from minigrad.estimators.diagnostics import summarize_estimates
from minigrad.estimators.exact import exact_gradient, exact_gradient_categorical
from minigrad.estimators.onehot import (gumbel_softmax_estimate, st_gumbel_softmax_estimate,
                                        st_hardmax_estimate, straight_through_categorical)
from minigrad.estimators.score_function import reinforce, reinforce_categorical
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor

__all__ = ["Entry", "Problem", "Measurement", "CATALOGUE", "BERNOULLI", "CATEGORICAL",
           "measure", "draw_noise"]

# ---------------------------------------------------------------------- the common problems
BERNOULLI_LOGITS = np.array([[0.8, -0.6, 0.3],
                             [-0.9, 0.5, 0.7],
                             [0.2, -0.3, 0.9]])
WEIGHTS = np.array([1.0, -2.0, 1.5])
TARGETS = np.array([0.5, -1.0, 1.0])
CATEGORICAL_LOGITS = np.array([[[0.5, -0.4, 0.1], [-0.7, 0.2, 0.6]],
                               [[0.0, 0.9, -0.3], [0.4, -0.5, 0.3]]])
CATEGORICAL_VALUES = np.array([[1.0, -1.5, 0.5], [2.0, 0.0, -1.0]])
CATEGORICAL_TARGETS = np.array([0.3, -0.8])
OFFSET = 3.0


def bernoulli_loss(b: Tensor) -> Tensor:
    """``(b . w - t_n)^2 + 3`` for a batch made of copies of the 3 examples."""
    return (b @ Tensor(WEIGHTS) - Tensor(np.tile(TARGETS, b.shape[0] // 3))) ** 2 + OFFSET


def categorical_loss(b: Tensor) -> Tensor:
    """``(sum_ij b_ij v_ij - t_n)^2 + 3``; ``b`` one-hot (or relaxed), shape (batch, 2, 3)."""
    s = (b * Tensor(CATEGORICAL_VALUES)).sum(axis=(1, 2))
    return (s - Tensor(np.tile(CATEGORICAL_TARGETS, b.shape[0] // 2))) ** 2 + OFFSET


@dataclass(frozen=True)
class Problem:
    name: str
    logits: np.ndarray
    f: Callable[[Tensor], Tensor]
    exact: Callable  # (logits, f, probability) -> exact gradient Tensor


BERNOULLI = Problem("Bernoulli", BERNOULLI_LOGITS, bernoulli_loss,
                    lambda a, f, p: exact_gradient(a, f, p))
CATEGORICAL = Problem("categorical", CATEGORICAL_LOGITS, categorical_loss,
                      lambda z, f, p: exact_gradient_categorical(z, f))


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Entry:
    """One estimator: what it is, what it costs, and how to call it on the common problem.

    ``estimate(logits, f, u)`` returns the estimate for noise ``u`` drawn by
    :func:`draw_noise` (uniform, one per unit; one per logit for Gumbel noise; ``samples``
    independent draws stacked first for estimators that take several samples).
    """

    name: str
    function: Callable                 # the library function that holds the backward pass
    estimate: Callable                 # (logits Tensor, f, u) -> estimate Tensor
    family: str
    unbiased: bool
    evaluations: str                   # evaluations of f per estimate
    needs: str                         # what it asks of f beyond its value at b
    chapter: str                       # the chapter (docname) that derives it
    problem: Problem = BERNOULLI
    probability: Callable = sigmoid    # the Bernoulli probability the exact gradient uses
    noise: str = "per unit"            # or "per logit" (Gumbel noise)
    samples: int = 1                   # independent samples per estimate (leave-one-out)
    note: str = ""


def _slope_2(a):
    return sigmoid(a * 2.0)



_VALUE = "only f(b)"
_DIFF = "f differentiable in b (evaluated at relaxed b)"
_RELAXED = "f defined and differentiable at relaxed b"
# RELAX's learned part: a small network of the relaxed sample, untrained, fixed seed.
_RELAX_NETWORK = RelaxSurrogate(3, (8,), rng=5, dtype=np.float64)
CATALOGUE: list[Entry] = [
    Entry("REINFORCE", reinforce, lambda a, f, u: reinforce(a, f, u),
          "score function", True, "1", _VALUE, "03_hard_nonlinearities"),
    Entry("REINFORCE, constant baseline", reinforce,
          lambda a, f, u: reinforce(a, f, u, baseline=OFFSET),
          "score function", True, "1", _VALUE, "04_binary_neurons",
          note="baseline 3, the loss's offset"),
    Entry("REINFORCE, categorical", reinforce_categorical, reinforce_categorical,
          "score function", True, "1", _VALUE, "05_onehot_neurons", problem=CATEGORICAL),
    Entry("REINFORCE leave-one-out, 2 samples", sbn.reinforce_loo, sbn.reinforce_loo,
          "score function", True, "2", _VALUE, "06_sbn_score_function", samples=2),
    Entry("NVIL (constant baseline, no normalisation)", sbn.nvil,
          lambda a, f, u: sbn.nvil(a, f, u, np.full(a.shape[0], OFFSET)),
          "score function", True, "1", _VALUE, "06_sbn_score_function",
          note="in training the baseline is a network of x"),
    Entry("ARM", arm, arm, "antithetic", True, "2", _VALUE, "08_arm_disarm",
          note="two samples from one uniform: 1[u < p] and 1[u > 1 - p]"),
    Entry("DisARM", disarm, disarm, "antithetic", True, "2", _VALUE, "08_arm_disarm",
          note="ARM averaged over the pair's order"),
    Entry("REBAR", rebar, lambda a, f, u: rebar(a, f, u, coupled_noise(a, u)),
          "relaxed control variate", True, "3 + gradients", _RELAXED, "07_rebar_relax",
          note="eta 1, temperature 0.5, the MuProp-style relaxation"),
    Entry("REBAR, Concrete relaxation", rebar, lambda a, f, u: rebar(
        a, f, u, coupled_noise(a, u), relaxation=concrete_relaxation),
          "relaxed control variate", True, "3 + gradients", _RELAXED, "07_rebar_relax"),
    Entry("dynamic REBAR (eta 0.7, temperature 0.3)", rebar, lambda a, f, u: rebar(
        a, f, u, coupled_noise(a, u), Tensor(np.array(0.7), requires_grad=True),
        Tensor(np.array(np.log(0.3)), requires_grad=True)),
          "relaxed control variate", True, "3 + gradients", _RELAXED, "07_rebar_relax",
          note="eta and the temperature are tuned in training; here fixed values"),
    Entry("RELAX", relax, lambda a, f, u: relax(
        a, f, u, coupled_noise(a, u), np.log(0.5), _RELAX_NETWORK),
          "relaxed control variate", True, "3 + gradients", _RELAXED, "07_rebar_relax",
          note="a small untrained network as the learned part of the control variate"),
    Entry("SimpleMuProp", sbn.simple_muprop, sbn.simple_muprop,
          "score function", True, "2", "f defined at the mean field p",
          "06_sbn_score_function"),
    Entry("MuProp", sbn.muprop, sbn.muprop,
          "score function", True, "2 + a gradient", "f differentiable at the mean field p",
          "06_sbn_score_function"),
    Entry("ST sigmoid-adjusted", straight_through, straight_through,
          "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons"),
    Entry("ST pass-through", straight_through,
          lambda a, f, u: straight_through(a, f, u, pass_through_sigmoid),
          "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons"),
    Entry("ST slope 2", straight_through, lambda a, f, u: straight_through(a, f, u, _slope_2),
          "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons",
          probability=_slope_2, note="units Bernoulli(sigmoid(2a))"),
    Entry("ST hard sigmoid", straight_through,
          lambda a, f, u: straight_through(a, f, u, hard_sigmoid),
          "straight-through", False, "1 + a gradient", _DIFF, "03_hard_nonlinearities",
          probability=hard_sigmoid, note="units Bernoulli(hard sigmoid(a))"),
    Entry("ST sampled softmax", straight_through_categorical, straight_through_categorical,
          "straight-through", False, "1 + a gradient", _DIFF, "05_onehot_neurons",
          problem=CATEGORICAL),
    Entry("ST hardmax", st_hardmax_estimate, st_hardmax_estimate,
          "straight-through", False, "1 + a gradient", _DIFF, "05_onehot_neurons",
          problem=CATEGORICAL, note="deterministic: no noise"),
    Entry("Concrete, temperature 0.5", sbn.concrete,
          lambda a, f, u: sbn.concrete(a, f, u, temperature=0.5),
          "relaxation", False, "1 + a gradient", _DIFF, "06_sbn_score_function"),
    Entry("ST Gumbel-softmax", st_gumbel_softmax_estimate, st_gumbel_softmax_estimate,
          "relaxation", False, "1 + a gradient", _DIFF, "05_onehot_neurons",
          problem=CATEGORICAL, noise="per logit"),
    Entry("Gumbel-softmax, relaxed", gumbel_softmax_estimate, gumbel_softmax_estimate,
          "relaxation", False, "1 + a gradient", _DIFF, "05_onehot_neurons",
          problem=CATEGORICAL, noise="per logit"),
]


# ---------------------------------------------------------------------- measuring
def draw_noise(entry: Entry, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The noise ``entry.estimate`` takes for logits of ``shape``."""
    per_logit = entry.noise == "per logit" or entry.problem is BERNOULLI
    one = shape if per_logit else shape[:-1]
    return rng.random(one if entry.samples == 1 else (entry.samples, *one))


@dataclass
class Measurement:
    """How one estimator did on its problem against the exact gradient."""

    name: str
    largest_abs_z: float      # the largest |bias| in standard errors, over the components
    bias_norm: float          # the size of the bias vector
    mean_variance: float      # the variance of one estimate, averaged over components
    exact: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)


def measure(entry: Entry, samples: int = 20_000, seed: int = 0) -> Measurement:
    """``samples`` single-sample estimates per example of ``entry``'s problem, against the
    exact gradient."""
    base = entry.problem.logits
    logits = Tensor(np.tile(base, (samples,) + (1,) * (base.ndim - 1)))
    u = draw_noise(entry, logits.shape, np.random.default_rng(seed))
    g = entry.estimate(logits, entry.problem.f, u)
    if g.shape != logits.shape:
        raise ValueError(f"{entry.name}: the estimate has shape {g.shape}, the logits "
                         f"{logits.shape}")
    estimates = g.data.reshape((samples,) + base.shape)
    exact = entry.problem.exact(Tensor(base), entry.problem.f, entry.probability).data
    s = summarize_estimates(estimates, exact)
    return Measurement(entry.name, float(s.largest_abs_z), float(s.bias_norm),
                       float(np.mean(s.variance)), exact, s.mean)
