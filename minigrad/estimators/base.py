"""What every estimator and every hidden "neuron" of the book's classifiers looks like.

**Estimators** are functions of explicit inputs. For units with logits and an objective
``f`` that maps a batch of samples to one value per example, an estimator returns its
estimate of ``d E[f(b)] / d logits``, a Tensor of the logits' shape, from noise it is given::

    g = reinforce(logits, f, u, baseline=c)
    loss = surrogate(logits, g)       # backward() sends g on to the parameters

They change nothing: calling one twice on the same inputs gives the same estimate.

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
and ``baseline.update(...)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from minigrad.estimators.checks import optional_positive_number, positive_number
from minigrad.nn import Buffer, Module
from minigrad.tensor import Tensor, grad

Objective = Callable[[Tensor], Tensor]


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
    with ``divide=True``, divides it (a temperature: R2RT multiplies ``1 / tau`` by the
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


class SlopeAnnealedNeuron(AnnealedNeuron):
    """An :class:`AnnealedNeuron` whose schedule is a slope, readable and settable."""

    @property
    def slope(self) -> float:
        return self.schedule.value

    @slope.setter
    def slope(self, value: float) -> None:
        self.schedule.value = value


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
