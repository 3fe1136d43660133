"""Conditional computation: blocks of a network that binary gates switch on or off per input.

:class:`GatedBlocks` is seed 002's use case made concrete. A small gate network reads the
input and gives one logit per block; a binary gate ``b_k ~ Bernoulli(sigmoid(a_k))`` decides
whether block ``k`` runs for that example. Each block is ``tanh(x W_k + c_k)``, ``width``
hidden units; the classifier reads the concatenation of the blocks' outputs, each multiplied
by its gate, so a block that is off contributes nothing and, at inference, need not be
computed at all. The blocks hold almost all of the multiply-adds (``784 x width`` each, the
gate network ``784 x blocks``), so the fraction of gates that are off is the fraction of the
computation saved.

The gates are the discrete choices: the model takes them as an input (:meth:`forward`) and
leaves how they are sampled, and how their gradient is estimated, to the training step
(:mod:`minigrad.experiments.gating`).
"""
from __future__ import annotations

import numpy as np

from minigrad.functions import reshape, tanh
from minigrad.init import as_generator
from minigrad.nn import Linear, Module
from minigrad.tensor import Tensor

__all__ = ["GatedBlocks"]


class GatedBlocks(Module):
    """``blocks`` gated blocks of ``width`` tanh units between the input and a softmax layer.

    Args:
        n_in: input size (784 for MNIST).
        blocks: number of blocks, and of gates per example.
        width: hidden units per block.
        n_classes: outputs of the classifier.
        rng: Generator (or seed) for the initial weights.
        gate_bias: initial bias of the gate logits (0: every gate starts at probability 1/2).
    """

    def __init__(self, n_in: int, blocks: int, width: int, n_classes: int, rng,
                 gate_bias: float = 0.0, dtype=np.float32):
        super().__init__()
        for name, value in (("n_in", n_in), ("blocks", blocks), ("width", width),
                            ("n_classes", n_classes)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GatedBlocks: {name} must be a positive integer, got "
                                 f"{value!r}")
        rng = as_generator(rng)
        self.blocks, self.width = int(blocks), int(width)
        self.gate = Linear(n_in, blocks, rng, dtype=dtype)
        self.gate.bias.data[...] = gate_bias
        # All blocks in one matrix: columns k*width ... (k+1)*width - 1 are block k.
        self.hidden = Linear(n_in, blocks * width, rng, dtype=dtype)
        self.out = Linear(blocks * width, n_classes, rng, dtype=dtype)

    def gate_logits(self, x) -> Tensor:
        """The logits ``a`` of the gates, shape (batch, blocks)."""
        return self.gate(x)

    def forward(self, x, gates) -> Tensor:
        """Class logits, block ``k`` of example ``n`` multiplied by ``gates[n, k]``.

        ``gates`` (batch, blocks): 0/1 samples, a Tensor whose backward pass is a
        straight-through estimator, or all ones for the ungated network.
        """
        gates = gates if isinstance(gates, Tensor) else Tensor(np.asarray(gates))
        n, k, width = gates.shape[0], self.blocks, self.width
        if gates.shape != (n, k):
            raise ValueError(f"GatedBlocks: gates must have shape (batch, {k}), "
                             f"got {gates.shape}")
        h = tanh(self.hidden(x))
        if h.shape[0] != n:
            raise ValueError(f"GatedBlocks: {h.shape[0]} inputs but gates for {n}")
        h = reshape(h, (n, k, width)) * reshape(gates, (n, k, 1))
        return self.out(reshape(h, (n, k * width)))

    def __repr__(self) -> str:
        return f"GatedBlocks(blocks={self.blocks}, width={self.width})"
