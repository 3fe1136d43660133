"""What every estimator and every hidden "neuron" of the book's classifiers looks like.

**Estimators** are functions of explicit inputs (the contract is spelled out at the top of
:mod:`minigrad.estimators.catalogue`). For units with logits and an objective ``f`` that
maps a batch of samples to one value per example, an estimator returns its estimate of
``d E[f(b)] / d logits``, a *detached* NumPy array of the logits' shape, from noise it is
given, with any state it needs (a baseline, a control variate) passed in as ``control``::

    g = reinforce(logits, f, u, baseline=c)
    loss = surrogate(logits, g)       # backward() sends g on to the parameters

They change nothing: calling one twice on the same inputs gives the same estimate. The
helpers every estimator shares are here: :func:`bernoulli_sample`, :func:`logistic_noise`
and :func:`value_at` (``f`` at a hard sample).

**Neurons** are Modules that turn a layer's pre-activations into its outputs, possibly by a
discrete random choice. They are called as::

    h = neuron(pre, rng=rng, stochastic=True, sampled=sampled)

- ``rng`` is where any randomness comes from (never global state);
- ``stochastic`` chooses sampling (True) or the deterministic version (False);
- ``sampled``, a list, receives a :class:`SampledUnits` record from each score-function
  neuron: the estimate of such a neuron needs the loss, which only exists after the forward
  pass, so the training step computes it from the record (see
  :mod:`minigrad.experiments.classifier`).

State (an annealed slope or temperature, a baseline's moving averages) lives in Buffers, so
it saves and loads with the model, and changes only through explicit calls: ``end_epoch()``
and ``baseline.update(...)`` (the baselines and control variates are in
:mod:`minigrad.estimators.controls`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.checks import optional_positive_number, positive_number
from minigrad.functions import sigmoid
from minigrad.nn import Buffer, Module
from minigrad.tensor import Tensor, grad, no_grad

Objective = Callable[[Tensor], Tensor]

_FIX_LOGITS = ("a NaN logit has no distribution to sample from: look upstream for a "
               "diverging learning rate or a NaN in the input")


class Neuron(Module):
    """Base class for hidden-unit nonlinearities (deterministic or stochastic)."""

    # True for neurons whose estimate needs the loss (they fill ``sampled``).
    score_function = False

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        raise NotImplementedError

    def build(self, units: int) -> None:
        """Called by a model with the width of the layer: make per-unit state. Default: none."""

    def end_epoch(self) -> None:
        """Advance any per-epoch schedule (slope or temperature annealing). Default: none."""

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


class Deterministic(Neuron):
    """An ordinary activation function (sigmoid, tanh, ...) as a Neuron."""

    def __init__(self, fn, name: str | None = None):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "activation")

    def forward(self, pre, *, rng=None, stochastic=True, sampled=None):
        return self.fn(pre)

    def __repr__(self) -> str:
        return f"Deterministic({self.name})"


@dataclass
class SampledUnits:
    """One score-function layer's forward pass: what its estimate is computed from.

    ``logits`` is the layer's pre-activation (in the graph), ``sample`` the units drawn
    from it (an array). ``neuron.estimate(units, loss)`` gives the layer's gradient estimate
    once the per-example ``loss`` is known.
    """

    neuron: Neuron
    logits: Tensor
    sample: np.ndarray


class Annealing(Module):
    """A value changed by a constant factor after every epoch: slope and temperature annealing.

    ``end_epoch()`` multiplies the value by ``rate`` (a slope, Chung, Ahn & Bengio 2016) or,
    with ``divide=True``, divides it (a temperature: R2RT multiplies ``1 / temperature`` by the
    rate). After ``k`` epochs the value is ``value_0 * rate^k`` (or ``value_0 / rate^k``),
    computed one epoch at a time. ``rate=None`` keeps the value fixed. The value and the
    epoch count are Buffers: they save and load with the model.
    """

    def __init__(self, value, rate=None, *, divide: bool = False, name: str = "value",
                 who: str = "Annealing"):
        super().__init__()
        self.rate = optional_positive_number(rate, "anneal_rate", who)
        self.divide = divide
        self.current = Buffer(np.float64(positive_number(value, name, who)))
        self.epochs = Buffer(np.int64(0))

    @property
    def value(self) -> float:
        return float(self.current.data)

    @value.setter
    def value(self, new) -> None:
        self.current.data = np.float64(new)

    def end_epoch(self) -> None:
        self.epochs.data = self.epochs.data + 1
        if self.rate is None:
            return
        if self.divide:
            self.current.data = self.current.data / self.rate
        else:
            self.current.data = self.current.data * self.rate

    def __repr__(self) -> str:
        return f"Annealing({self.value:g}, rate={self.rate}, epochs={int(self.epochs.data)})"


class AnnealedNeuron(Neuron):
    """A neuron with an :class:`Annealing` schedule, ``self.schedule``, stepped per epoch."""

    schedule: Annealing

    @property
    def anneal_rate(self) -> float | None:
        return self.schedule.rate

    def end_epoch(self) -> None:
        self.schedule.end_epoch()


def scheduled(doc: str) -> property:
    """A property that reads and sets the value of ``self.schedule`` (a slope, a temperature)."""

    def get(self) -> float:
        return self.schedule.value

    def set_(self, value: float) -> None:
        self.schedule.value = value

    return property(get, set_, doc=doc)


def surrogate(logits: Tensor, g: Tensor) -> Tensor:
    """The loss whose gradient with respect to ``logits`` is the estimate ``g``.

    ``surrogate(logits, g) = sum(logits * stop_gradient(g))``: calling ``backward()`` on it
    sends the estimate ``g`` into ``logits`` and from there, by the chain rule, into every
    parameter that produced them. Every estimator of the book is used this way::

        g = reinforce(logits, f, u, baseline=c)   # an estimate of d E[f(b)] / d logits
        surrogate(logits, g).backward()
    """
    g = g.detach() if isinstance(g, Tensor) else Tensor(np.asarray(g, dtype=logits.dtype))
    if g.shape != logits.shape:
        raise ValueError(
            f"surrogate: the estimate has shape {g.shape} but the logits have shape "
            f"{logits.shape}; an estimator returns one value per logit"
        )
    return (logits * g).sum()


def differentiable_logits(logits: Tensor) -> Tensor:
    """``logits`` itself if gradients reach it, else a copy that is a leaf requiring them."""
    if not isinstance(logits, Tensor):
        logits = Tensor(np.asarray(logits, dtype=np.float64))
    return logits if logits.requires_grad else Tensor(logits.data, requires_grad=True)


def gradient_through_sample(logits: Tensor, f: Objective,
                            sample: Callable[[Tensor], Tensor],
                            create_graph: bool = False) -> Tensor:
    """``d sum_n f(sample(logits))_n / d logits``: the estimate of every pathwise estimator.

    ``sample`` builds the sample from the logits with the backward pass that defines the
    estimator (straight-through, Gumbel-softmax, ...); the estimate is plain backpropagation
    of ``f`` through it. Examples are independent rows, so summing over the batch gives each
    example its own gradient. With ``create_graph=True`` the estimate can be differentiated
    again (with respect to a temperature, say).
    """
    x = differentiable_logits(logits)
    values = f(sample(x))
    (g,) = grad(values.sum(), x, create_graph=create_graph, allow_unused=True)
    return Tensor(np.zeros_like(x.data)) if g is None else g


def estimate_array(g, logits) -> np.ndarray:
    """An estimate as the contract returns it: a detached array in the logits' dtype."""
    data = g.data if isinstance(g, Tensor) else np.asarray(g)
    dtype = logits.dtype if isinstance(logits, Tensor) else np.asarray(logits).dtype
    return np.asarray(data, dtype=dtype)


def bernoulli_sample(logits: Tensor, u: np.ndarray, who: str = "bernoulli_sample"
                     ) -> np.ndarray:
    """``b = 1[u < sigmoid(a)]``, so ``b ~ Bernoulli(sigmoid(a))``, in the logits' dtype.

    The library's one noise convention: the same ``u`` gives the same ``b`` in every
    estimator, and ``b = 1[logits + logistic_noise(u) > 0]`` (:func:`logistic_noise`).
    """
    checks.finite_values(logits.data, "pre-activation (logits)", who, _FIX_LOGITS)
    u = checks.noise_of_shape(u, logits.shape, who)
    validate.unit_interval_noise(u, "the uniform noise u", who)
    return (u < sigmoid(Tensor(logits.data)).data).astype(logits.dtype)


def logistic_noise(u: np.ndarray, dtype) -> np.ndarray:
    """``logit(1 - u) = log(1 - u) - log(u)``: logistic noise whose sign test against the
    logits is :func:`bernoulli_sample`, ``b = 1[logits + logit(1 - u) > 0] = 1[u < p]``.

    Every relaxation of the library (Concrete, REBAR, RELAX) builds its relaxed unit from
    this ``z = logits + logit(1 - u)``, so that it relaxes the very ``b`` the other
    estimators draw from the same ``u``.
    """
    u = np.asarray(u)
    with np.errstate(divide="ignore"):
        return -(np.log(u) - np.log1p(-u)).astype(dtype)


def value_at(f: Objective, b: np.ndarray, who: str = "the estimator") -> np.ndarray:
    """``f(b)`` at a hard sample ``b``, one value per example, as an array; no graph recorded.

    Only the values of ``f`` at ``b`` are used by a score-function estimator, so nothing
    is recorded for a backward pass.
    """
    with no_grad():
        out = f(Tensor(b))
    out = out.data if isinstance(out, Tensor) else np.asarray(out)
    if out.shape != b.shape[:1]:
        raise ValueError(f"{who}: the objective must return one value per example (shape "
                         f"{b.shape[:1]}), got shape {out.shape}")
    return validate.finite(out, "the objective's values f(b)", who,
                           "f must give a finite value at every sample")


class RelaxableObjective:
    """An objective that knows its relaxed form: what a relaxed control variate needs.

    A multi-layer model's learning signal for one layer resamples the layers after it from
    hard samples, a step function of the layer's unit; evaluated at a relaxed unit ``s``
    it would make the reparameterised gradient of REBAR's and RELAX's control variate
    biased. Such an objective subclasses this and gives, in :meth:`relaxed`, the objective
    with those later layers relaxed too (see ``SigmoidBeliefNet.learning_signal``).
    """

    def __call__(self, b: Tensor) -> Tensor:
        raise NotImplementedError

    def relaxed(self, temperature, relaxation) -> Objective:
        raise NotImplementedError


def relaxed_objective(f: Objective, temperature, relaxation) -> Objective:
    """The objective a relaxed control variate evaluates at the relaxed unit ``s``:
    ``f.relaxed(temperature, relaxation)`` for a :class:`RelaxableObjective`, else ``f``
    itself (smooth in ``s`` already). REBAR and RELAX always go through here, so their
    control variate is never silently a step function of ``s``."""
    if isinstance(f, RelaxableObjective):
        return f.relaxed(temperature, relaxation)
    return f
