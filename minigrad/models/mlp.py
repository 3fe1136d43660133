"""A multilayer perceptron classifier with pluggable hidden neurons.

Each hidden layer is ``Linear`` followed by a :class:`~minigrad.estimators.base.Neuron`: an
ordinary activation, or a binary, n-ary or one-hot stochastic neuron with its gradient
estimator. The output layer gives logits for a softmax. Neurons are sub-modules, so their
state (an annealed slope, a baseline) saves and loads with the weights.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from minigrad import validate
from minigrad.estimators.base import Neuron
from minigrad.init import as_generator
from minigrad.nn import Linear, Module
from minigrad.tensor import Tensor


class MLPClassifier(Module):
    """``sizes = [784, 100, 10]``: one hidden layer of 100 units, 10 classes.

    Args:
        sizes: layer widths, input first, classes last.
        make_neuron: called once per hidden layer to make that layer's neuron (so state such
            as a REINFORCE baseline or an annealed slope belongs to one layer).
        rng: Generator (or seed) for the initial weights.
    """

    def __init__(self, sizes: list[int], make_neuron: Callable[[], Neuron], rng,
                 dtype=np.float32):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLPClassifier needs at least input and output sizes, got {sizes}")
        sizes = [validate.whole_number(n, f"sizes[{i}]", "MLPClassifier")
                 for i, n in enumerate(sizes)]
        rng = as_generator(rng)
        self.sizes = list(sizes)
        self.layers = [Linear(a, b, rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        for i, layer in enumerate(self.layers):
            setattr(self, f"linear{i}", layer)
        self.neurons = [make_neuron() for _ in sizes[1:-1]]
        for i, (neuron, width) in enumerate(zip(self.neurons, sizes[1:-1])):
            neuron.build(width)
            setattr(self, f"neuron{i}", neuron)

    def forward(self, x: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None,
                keep_hidden: list | None = None) -> Tensor:
        """Logits for ``x``.

        ``sampled``, a list, receives a record of each score-function layer's logits and
        sampled units (needed to train them; see ``step_loss`` in
        :mod:`minigrad.experiments.classifier`). ``keep_hidden``, if a list, receives each
        hidden layer's output.
        """
        validate.finite(x, "the input x", "MLPClassifier", "an inf or NaN pixel would turn "
                        "the weights NaN: fix or drop those examples")
        h = x
        for layer, neuron in zip(self.layers[:-1], self.neurons):
            h = neuron(layer(h), rng=rng, stochastic=stochastic, sampled=sampled)
            if keep_hidden is not None:
                keep_hidden.append(h)
        return self.layers[-1](h)

    def end_epoch(self) -> None:
        """Advance the neurons' schedules (slope or temperature annealing)."""
        for neuron in self.neurons:
            neuron.end_epoch()

    def __repr__(self) -> str:
        return f"MLPClassifier({self.sizes}, neurons={self.neurons})"
