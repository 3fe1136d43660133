"""Training gated blocks (conditional computation) with a price on every block that runs.

Each example's loss is its cross-entropy plus ``cost`` times the fraction of its blocks that
ran: ``L_n = CE_n + cost * mean_k b_nk``. The gates ``b`` are binary, so the gradient of
``E[L]`` with respect to the gate logits ``a`` needs an estimator. :data:`GATE_ESTIMATORS`
maps a name to one training loss per estimator:

- ``"straight-through"``: ``b = 1[u < sigmoid(a)]`` with the identity backward from ``b`` to
  ``sigmoid(a)`` (sigmoid-adjusted straight-through), so the gates learn from the derivative
  of the loss with respect to ``b``; biased, low variance;
- ``"REINFORCE"``: the score function ``(b - sigmoid(a)) (L_n - c)`` with Bengio et al.'s
  per-gate variance-adjusting baseline ``c``; unbiased, uses only the value of ``L_n``;
- ``"all blocks"``: no gates (all ones), the ungated network, as the reference.

Sweeping ``cost`` trades accuracy against the fraction of the computation switched off.
At evaluation the gates are deterministic, ``b = 1[sigmoid(a) > 1/2]``, which is how a gated
network would be deployed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from minigrad.data.mnist import batches
from minigrad.estimators.base import surrogate
from minigrad.estimators.binary import bernoulli_straight_through
from minigrad.estimators.score_function import (VarianceAdjustingBaseline, bernoulli_sample,
                                                reinforce_from_sample)
from minigrad.functions import mean, sigmoid, softmax_cross_entropy
from minigrad.models.gated import GatedBlocks
from minigrad.optim import Adam
from minigrad.tensor import Tensor, no_grad

from .executor import map_runs

__all__ = ["GatingConfig", "GatingResult", "GATE_ESTIMATORS", "straight_through_loss",
           "reinforce_loss", "all_blocks_loss", "evaluate_gated", "train_gated",
           "run_gating_sweep"]


@dataclass(frozen=True)
class GatingConfig:
    """One run: an estimator for the gates, the price of a block, and the network's size."""

    estimator: str
    cost: float = 0.0
    blocks: int = 4
    width: int = 32
    epochs: int = 5
    batch_size: int = 100
    lr: float = 1e-3

    def __post_init__(self):
        if self.estimator not in GATE_ESTIMATORS:
            raise ValueError(f"GatingConfig: unknown estimator {self.estimator!r}; choose one "
                             f"of {', '.join(GATE_ESTIMATORS)}")
        if not np.isfinite(self.cost) or self.cost < 0:
            raise ValueError(f"GatingConfig: cost must be a finite number >= 0, got "
                             f"{self.cost!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("GatingConfig: epochs and batch_size must be at least 1")


@dataclass
class GatingResult:
    """How one run ended: accuracy and the fraction of blocks off, on the evaluation set."""

    config: GatingConfig
    seed: int
    accuracy: float
    off_fraction: float                    # blocks switched off, averaged over examples
    train_off: list[float] = field(default_factory=list)   # per epoch, sampled gates


def _per_example_loss(model, x, y, gates: Tensor, cost: float) -> Tensor:
    logits = model(x, gates)
    return softmax_cross_entropy(logits, Tensor(y), reduction="none") \
        + mean(gates, axis=1) * cost


def straight_through_loss(model: GatedBlocks, x, y, cost: float, u: np.ndarray,
                          baseline) -> tuple[Tensor, np.ndarray]:
    """The batch's mean loss, with gates whose backward pass is straight-through."""
    gates = bernoulli_straight_through(sigmoid(model.gate_logits(x)), u)
    return mean(_per_example_loss(model, x, y, gates, cost)), gates.data


def reinforce_loss(model: GatedBlocks, x, y, cost: float, u: np.ndarray,
                   baseline: VarianceAdjustingBaseline) -> tuple[Tensor, np.ndarray]:
    """The batch's mean loss plus the REINFORCE surrogate of the gate logits.

    The blocks and the classifier get the ordinary gradient of the loss at the
    sampled gates; the gate logits get ``(b - p) (L_n - c)`` averaged over the batch,
    ``c`` the variance-adjusting baseline, advanced with this batch before its use.
    """
    a = model.gate_logits(x)
    b = bernoulli_sample(a, u, "reinforce_loss")
    per_example = _per_example_loss(model, x, y, Tensor(b), cost)
    losses = per_example.data
    baseline.update(losses, b - sigmoid(Tensor(a.data)).data)
    g = reinforce_from_sample(a, b, losses, baseline=baseline.value())
    n = x.shape[0]
    return mean(per_example) + surrogate(a, g) * (1.0 / n), b


def all_blocks_loss(model: GatedBlocks, x, y, cost: float, u: np.ndarray,
                    baseline) -> tuple[Tensor, np.ndarray]:
    """The ungated network: every block runs for every example."""
    gates = np.ones((x.shape[0], model.blocks), dtype=x.dtype)
    return mean(_per_example_loss(model, x, y, Tensor(gates), cost)), gates


#: Estimator name -> the training loss of one batch, ``(model, x, y, cost, u, baseline)``.
GATE_ESTIMATORS: dict[str, Callable] = {
    "straight-through": straight_through_loss,
    "REINFORCE": reinforce_loss,
    "all blocks": all_blocks_loss,
}


def evaluate_gated(model: GatedBlocks, x: np.ndarray, y: np.ndarray, gated: bool = True,
                   batch_size: int = 1000) -> tuple[float, float]:
    """Accuracy and fraction of blocks off with deterministic gates ``1[sigmoid(a) > 1/2]``.

    ``y`` holds one-hot rows or class indices. ``gated=False`` runs every block.
    """
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    correct, off = 0, 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            if gated:
                gates = (model.gate_logits(xb).data > 0).astype(xb.dtype)
            else:
                gates = np.ones((len(xb), model.blocks), dtype=xb.dtype)
            logits = model(xb, gates).data
            correct += int((logits.argmax(axis=1) == labels[start:start + batch_size]).sum())
            off += float((1 - gates).sum())
    return correct / len(x), off / (len(x) * model.blocks)


def train_gated(config: GatingConfig, train, validation, seed: int,
                progress: bool = False) -> GatingResult:
    """Train one :class:`GatedBlocks` on ``train`` (x, y) and evaluate it on ``validation``."""
    rng = np.random.default_rng(seed)
    x, y = train
    model = GatedBlocks(x.shape[1], config.blocks, config.width, y.shape[1], rng,
                        dtype=x.dtype)
    optimizer = Adam(model.parameters(), lr=config.lr)
    loss_of = GATE_ESTIMATORS[config.estimator]
    baseline = VarianceAdjustingBaseline(units=config.blocks)
    train_off = []
    steps = config.epochs * -(-len(x) // config.batch_size)
    bar = tqdm(total=steps, desc=f"{config.estimator}, cost {config.cost}", leave=False,
               disable=not progress)
    for _ in range(config.epochs):
        on, seen = 0.0, 0
        for xb, yb in batches(x, y, config.batch_size, rng):
            u = rng.random((len(xb), config.blocks))
            model.zero_grad()
            loss, gates = loss_of(model, xb, yb, config.cost, u, baseline)
            loss.backward()
            optimizer.step()
            on, seen = on + float(gates.sum()), seen + gates.size
            bar.update(1)
        train_off.append(1 - on / seen)
    bar.close()
    gated = config.estimator != "all blocks"
    accuracy, off = evaluate_gated(model, *validation, gated=gated)
    return GatingResult(config, seed, accuracy, off, train_off)


def run_gating_sweep(configs: list[GatingConfig], train, validation, seeds: list[int],
                     progress: bool = True, workers: int | None = None) -> list[GatingResult]:
    """Every configuration with every seed, in parallel over the cores; results in order."""
    runs = [(config, train, validation, seed) for config in configs for seed in seeds]
    return map_runs(train_gated, runs, workers=workers, progress=progress,
                    desc="gated networks")
