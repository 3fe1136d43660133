"""LeNet-5 on padded MNIST, trained on the 0-1 loss by evolution strategies or on cross-entropy.

The protocol of the seed's course assignment: 32x32 images (MNIST padded by 2 pixels), Adam
at learning rate 5 / 55,000, minibatches of 128 drawn by shuffling the 55,000 training images
every epoch (the last batch of an epoch has the 88 left over), validation accuracy after
every epoch and test accuracy at the end.

With ``loss="es"`` each step estimates the gradient of the Gaussian-smoothed 0-1 loss at the
logits with :func:`~minigrad.estimators.black_box.es_zero_one_gradient` and backpropagates it
through the network with :func:`~minigrad.estimators.base.surrogate`; the surrogate is summed
over the batch, as the seed's loss is. With ``loss="cross_entropy"`` the same network is
trained by ordinary backpropagation of the mean cross-entropy (Adam's steps do not depend on
the scale of the loss, up to its epsilon).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad import budget as _budget
from minigrad.estimators.base import surrogate
from minigrad.estimators.black_box import es_zero_one_gradient
from minigrad.functions import softmax_cross_entropy
from minigrad.models.lenet import LeNet5
from minigrad.optim import Adam
from minigrad.tensor import Tensor, no_grad

from .checkpoint import Resumable
from .executor import map_runs

LOSSES = ("es", "cross_entropy")


@dataclass(frozen=True)
class LeNetConfig:
    """One LeNet-5 experiment; the defaults are the seed's."""

    label: str
    loss: str = "es"
    sigma: float = 4.0
    n: int = 200
    antithetic: bool = False
    shaping: str = "none"
    baseline: object = None
    lr: float = 5.0 / 55_000
    batch_size: int = 128
    epochs: int = 50
    max_steps_per_epoch: int | None = None    # None: one pass over the training set
    max_eval: int | None = None               # None: the whole validation and test sets

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def scaled(self, epochs: int | None = None) -> LeNetConfig:
        """This experiment at the active budget, with ``epochs`` at the full budget.

        Smoke: the same code paths, 2 epochs of 12 steps, evaluated on 500 images.
        """
        if _budget.is_full():
            return self if epochs is None else replace(self, epochs=epochs)
        return replace(self, epochs=2, max_steps_per_epoch=12, max_eval=500)

    def es_options(self) -> dict:
        return dict(sigma=self.sigma, n=self.n, antithetic=self.antithetic,
                    shaping=self.shaping, baseline=self.baseline)


@dataclass
class LeNetHistory:
    """What one run recorded, per epoch and at the end."""

    label: str
    seed: int
    epochs: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    train_zero_one: list[float] = field(default_factory=list)   # mean over the epoch's batches
    epoch_seconds: list[float] = field(default_factory=list)   # training only
    # per epoch, 10 numbers each: the accuracy on the validation images of each class, and
    # the share of validation images predicted as each class
    val_class_accuracy: list[list[float]] = field(default_factory=list)
    val_predicted_share: list[list[float]] = field(default_factory=list)
    test_accuracy: float = float("nan")
    steps: int = 0
    seconds: float = 0.0

    @property
    def final_val(self) -> float:
        return self.val_accuracy[-1] if self.val_accuracy else float("nan")


def lenet_accuracy(model: LeNet5, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Fraction of images whose largest logit is the labelled class (labels one-hot)."""
    correct = 0
    with no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(Tensor(x[start:start + batch_size])).data
            correct += int(np.sum(logits.argmax(1) == y[start:start + batch_size].argmax(1)))
    return correct / len(x)


def lenet_class_accuracy(model: LeNet5, x: np.ndarray, y: np.ndarray,
                         batch_size: int = 500) -> tuple[float, np.ndarray, np.ndarray]:
    """Accuracy, the accuracy on the images of each class, and the share of images predicted
    as each class (labels one-hot). A class the network never predicts has accuracy 0 and
    share 0."""
    predicted = []
    with no_grad():
        for start in range(0, len(x), batch_size):
            predicted.append(model(Tensor(x[start:start + batch_size])).data.argmax(1))
    predicted, labels = np.concatenate(predicted), y.argmax(1)
    k = y.shape[1]
    correct = predicted == labels
    per_class = np.array([correct[labels == c].mean() if np.any(labels == c) else np.nan
                          for c in range(k)])
    share = np.bincount(predicted, minlength=k) / len(predicted)
    return float(correct.mean()), per_class, share


def train_lenet(config: LeNetConfig, train, validation, test, seed: int,
                progress: bool = False) -> tuple[LeNet5, LeNetHistory]:
    """Train one LeNet-5 and record its curves. Splits: ``.x`` (N, 1, 32, 32), ``.y`` one-hot.

    ``seed`` seeds the weights, the order of the minibatches and the ES noise. BLAS runs on
    one thread: two runs share the two cores, one each.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_lenet(config, train, validation, test, seed, progress)


def lenet_step(model, optimizer, config: LeNetConfig, x, y, noise_rng) -> float:
    """One training step; returns the batch's 0-1 loss before the step."""
    logits = model(Tensor(x))
    if config.loss == "es":
        g = es_zero_one_gradient(logits, y, noise_rng, **config.es_options())
        loss = surrogate(logits, g)
    else:
        loss = softmax_cross_entropy(logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(np.mean(logits.data.argmax(1) != y.argmax(1)))


def _train_lenet(config, train, validation, test, seed, progress):
    run = LeNetRun(config, train, validation, test, seed)
    for _ in tqdm(range(run.total_steps), desc=config.label, leave=False,
                  disable=not progress):
        run.step()
    return run.model, run.finish()


class LeNetRun(Resumable):
    """One LeNet-5 run, a step at a time, with a state that can be saved and restored.

    Each epoch visits the training images in a fresh order (drawn at its first step, as
    :func:`~minigrad.data.batches` draws it), cut into batches, at most
    ``max_steps_per_epoch`` of them; the step that ends an epoch measures the validation
    accuracy. :meth:`state` holds the model, Adam's moments, the Generators, the epoch's order
    and position, the step count and the history.
    """

    family = "lenet"
    state_names = ("model", "optimizer", "batch_rng", "noise_rng", "order", "position",
                   "losses", "epoch_seconds", "history", "steps_done")

    def __init__(self, config: LeNetConfig, train, validation, test, seed: int):
        self.config, self.train = config, train
        init_rng, self.batch_rng, self.noise_rng = np.random.default_rng(seed).spawn(3)
        self.model = LeNet5(init_rng)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.history = LeNetHistory(config.label, seed)
        self.val, self.test = (validation, test) if config.max_eval is None else (
            _head(validation, config.max_eval), _head(test, config.max_eval))
        per_epoch = -(-len(train.x) // config.batch_size)
        if config.max_steps_per_epoch is not None:
            per_epoch = min(per_epoch, config.max_steps_per_epoch)
        self.per_epoch = per_epoch
        self.order: np.ndarray | None = None
        self.position = 0                 # batches of the current epoch done
        self.losses: list[float] = []     # their 0-1 losses
        self.epoch_seconds = 0.0
        self.steps_done = 0

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.per_epoch

    @property
    def objective(self) -> dict[str, float]:
        h = self.history
        return {"0-1 loss": h.train_zero_one[-1] if h.train_zero_one else float("nan"),
                "val acc": h.final_val}

    def step(self) -> None:
        config = self.config
        started = time.perf_counter()
        if self.order is None:
            self.order = self.batch_rng.permutation(len(self.train.x))
        start = self.position * config.batch_size
        idx = self.order[start:start + config.batch_size]
        self.losses.append(lenet_step(self.model, self.optimizer, config, self.train.x[idx],
                                      self.train.y[idx], self.noise_rng))
        self.position += 1
        self.steps_done += 1
        self.epoch_seconds += time.perf_counter() - started
        if self.position == self.per_epoch:
            history = self.history
            history.epoch_seconds.append(self.epoch_seconds)
            history.steps += len(self.losses)
            history.train_zero_one.append(float(np.mean(self.losses)))
            history.epochs.append(len(history.epochs) + 1)
            overall, per_class, share = lenet_class_accuracy(self.model, self.val.x,
                                                             self.val.y)
            history.val_accuracy.append(overall)
            history.val_class_accuracy.append([float(a) for a in per_class])
            history.val_predicted_share.append([float(a) for a in share])
            self.order, self.position, self.losses, self.epoch_seconds = None, 0, [], 0.0
        self.history.seconds += time.perf_counter() - started

    def finish(self) -> LeNetHistory:
        """The test accuracy at the end; the history."""
        self.history.test_accuracy = lenet_accuracy(self.model, self.test.x, self.test.y)
        return self.history


def _head(split, k):
    return type(split)(split.x[:k], split.y[:k])


def run_lenet_sweep(configs: list[LeNetConfig], train, validation, test, seeds: list[int],
                    executor=None, progress: bool = True) -> dict[str, list[LeNetHistory]]:
    """Every configuration with every seed, two at a time on two cores; histories by label.

    The configurations are used as given (scale them first with ``scaled``).
    """
    return run_lenet_runs([(c, s) for c in configs for s in seeds], train, validation, test,
                          executor=executor, progress=progress)


def run_lenet_runs(runs: list[tuple[LeNetConfig, int]], train, validation, test,
                   executor=None, progress: bool = True) -> dict[str, list[LeNetHistory]]:
    """The given (configuration, seed) runs, in parallel, in that order; histories by label.

    Put the longest runs first: a pool of two workers starts them first.
    """
    jobs = [(c, train, validation, test, s) for c, s in runs]
    histories = map_runs(_history_of_run, jobs, executor=executor, progress=progress,
                         desc="LeNet-5 runs")
    results: dict[str, list[LeNetHistory]] = {}
    for (config, _), history in zip(runs, histories):
        results.setdefault(config.label, []).append(history)
    return results


def _history_of_run(config, train, validation, test, seed) -> LeNetHistory:
    return train_lenet(config, train, validation, test, seed)[1]


def lenet_rows(experiment: str, results: dict[str, list[LeNetHistory]],
               reference_curve: list[float] | None = None,
               reference_test: tuple[int, float] | None = None,
               reference_steps_per_epoch: int = 430) -> list[dict]:
    """Rows for :func:`record_results`: validation accuracy after epoch 1 and after the last
    epoch, and test accuracy, each with the training steps it was measured at.

    ``reference_curve`` is a published validation accuracy per epoch and ``reference_test``
    a published (epoch, test accuracy); each row's reference is the published number at its
    own epoch, with its steps (``reference_steps_per_epoch`` per epoch), so that the appendix
    compares like with like (a truncated smoke epoch has fewer steps than the reference's).
    """
    rows = []
    for label, runs in results.items():
        for h in runs:
            per_epoch = h.steps // len(h.epochs)
            last = h.epochs[-1]
            metrics = [("validation accuracy after epoch 1", 1, h.val_accuracy[0]),
                       (f"validation accuracy after epoch {last}", last, h.final_val),
                       (f"test accuracy after epoch {last}", last, h.test_accuracy)]
            for i, (metric, epoch, value) in enumerate(metrics):
                row = {"experiment": experiment, "config": label, "seed": h.seed,
                       "metric": metric, "value": float(value), "steps": per_epoch * epoch,
                       "seconds": h.seconds}
                if i < 2 and reference_curve is not None and epoch <= len(reference_curve):
                    row.update(reference=reference_curve[epoch - 1],
                               reference_steps=reference_steps_per_epoch * epoch)
                elif i == 2 and reference_test is not None:
                    row.update(reference=reference_test[1],
                               reference_steps=reference_steps_per_epoch * reference_test[0])
                rows.append(row)
    return rows


def es_spread(logits, labels, *, repeats: int, seed: int, **options) -> dict[str, float]:
    """How noisy the ES estimate is at fixed logits: ``repeats`` independent estimates.

    Returns the mean over examples and classes of the variance of one component of g
    (``variance``), the mean squared norm of the mean estimate (``signal``), and the mean
    cosine between single estimates and the mean of all of them (``cosine``).
    """
    rng = np.random.default_rng(seed)
    gs = np.stack([es_zero_one_gradient(logits, labels, rng, **options)
                   for _ in range(repeats)]).astype(np.float64)      # (repeats, batch, K)
    mean = gs.mean(axis=0)
    norms = np.linalg.norm(gs, axis=2) * np.linalg.norm(mean, axis=1)
    cosine = np.sum(gs * mean, axis=2) / np.where(norms > 0, norms, np.inf)
    return {"variance": float(gs.var(axis=0, ddof=1).mean()),
            "signal": float(np.mean(np.sum(mean ** 2, axis=1))),
            "cosine": float(cosine.mean())}
