"""What every hidden "neuron" of the book's classifiers looks like.

A neuron turns a layer's pre-activations into its outputs, possibly by a discrete random
choice. Neurons are called as::

    h = neuron(pre, rng=rng, stochastic=True, feedback=feedback)

- ``rng`` is where any randomness comes from (never global state);
- ``stochastic`` chooses sampling (True) or the deterministic version (False), so training
  and evaluation can be chosen separately;
- ``feedback`` is a :class:`LossFeedback`, the explicit channel through which the
  per-example loss reaches score-function (REINFORCE-style) backward passes.

``end_epoch()`` advances schedules such as slope or temperature annealing.
"""
from __future__ import annotations

import numpy as np

from minigrad.tensor import Tensor


class LossFeedback:
    """Carries the per-example loss from the end of the forward pass to the backward pass.

    Score-function estimators need the loss ``L`` of each example inside their backward
    pass. The training step makes one ``LossFeedback`` per step, passes it to the model's
    forward pass, then calls :meth:`send` with the per-example losses before ``backward()``.
    Nothing is hidden in global state: the whole route is visible in the training step.
    """

    def __init__(self):
        self._loss: np.ndarray | None = None

    def send(self, per_example_loss) -> None:
        loss = per_example_loss.data if isinstance(per_example_loss, Tensor) else per_example_loss
        loss = np.asarray(loss)
        if loss.ndim != 1:
            raise ValueError(
                f"LossFeedback.send expects one loss per example (shape (batch,)), got shape "
                f"{loss.shape}"
            )
        self._loss = loss

    @property
    def loss(self) -> np.ndarray:
        if self._loss is None:
            raise RuntimeError(
                "a score-function estimator's backward pass ran before the per-example loss "
                "was sent: call feedback.send(per_example_loss) before loss.backward()"
            )
        return self._loss


class Neuron:
    """Base class for hidden-unit nonlinearities (deterministic or stochastic)."""

    def __call__(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                 stochastic: bool = True, feedback: LossFeedback | None = None) -> Tensor:
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Advance any per-epoch schedule (slope or temperature annealing). Default: none."""

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


class Deterministic(Neuron):
    """An ordinary activation function (sigmoid, tanh, ...) as a Neuron."""

    def __init__(self, fn, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "activation")

    def __call__(self, pre, *, rng=None, stochastic=True, feedback=None):
        return self.fn(pre)

    def __repr__(self) -> str:
        return f"Deterministic({self.name})"


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


def require_rng(rng, who: str) -> np.random.Generator:
    """Stochastic neurons need a Generator; say so clearly when it is missing."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{who}: stochastic=True needs rng=np.random.Generator (got {type(rng).__name__})"
        )
    return rng
