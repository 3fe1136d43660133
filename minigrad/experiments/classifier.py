"""The MNIST classifier loop: training that records what the seeds plot, sweeps over configurations
and seeds (run in parallel through :mod:`minigrad.experiments.executor`).

The classifier protocol follows the seeds (R2RT's binary and one-hot neuron posts): minibatches
of 50, plain SGD, ``epochs x steps_per_epoch`` steps, training accuracy averaged every 100
steps, validation accuracy after every epoch.

The seeds' loss is worth knowing exactly, because their learning rates are tied to it: the
per-example loss is the cross-entropy *averaged over the 10 classes* (``reduce_mean`` over
the class axis, i.e. cross-entropy / 10), and the optimizer minimises the *sum* of those over
the batch. :func:`seed_loss` reproduces it, so the seeds' learning rates carry over unchanged.

Score-function (REINFORCE) layers need that loss to compute their estimate, and it exists
only after the forward pass: :func:`step_loss` shows the whole route.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad import budget as _budget
from minigrad.data import minibatch_stream
from minigrad.estimators.base import Neuron, surrogate
from minigrad.functions import softmax_cross_entropy
from minigrad.models.mlp import MLPClassifier
from minigrad.optim import SGD
from minigrad.tensor import Tensor, no_grad

from .checkpoint import Resumable
from .executor import map_runs
from .results import mean_std_text


def seed_loss(logits: Tensor, targets: np.ndarray) -> Tensor:
    """Per-example loss of the seeds: cross-entropy divided by the number of classes."""
    n_classes = logits.shape[1]
    return softmax_cross_entropy(logits, Tensor(targets), reduction="none") * (1.0 / n_classes)


def step_loss(model: MLPClassifier, x: np.ndarray, y: np.ndarray, *,
              rng: np.random.Generator | None, stochastic: bool = True
              ) -> tuple[Tensor, Tensor]:
    """The scalar one training step differentiates, and the logits.

    ``sum_n L_n`` (the seeds' loss) plus, for every score-function layer, the
    surrogate of its estimate. The forward pass records each such layer's logits and
    sampled units; once the per-example loss ``L`` is known, each layer's baseline is
    advanced with this batch (R2RT's order: the moving averages see the batch before
    they are used on it) and its estimate ``g = (b - p)(L - L_bar)`` is sent into its
    logits by ``surrogate``.
    """
    sampled = []
    logits = model(Tensor(x), rng=rng, stochastic=stochastic, sampled=sampled)
    per_example = seed_loss(logits, y)
    loss = per_example.sum()
    losses = per_example.data
    for units in sampled:
        units.neuron.update(units, losses)
        loss = loss + surrogate(units.logits, units.neuron.estimate(units, losses))
    return loss, logits


@dataclass
class ClassifierConfig:
    """One classifier experiment. ``make_neuron`` builds each hidden layer's neuron."""

    label: str
    make_neuron: Callable[[], Neuron]
    lr: float
    hidden: tuple[int, ...] = (100,)
    epochs: int = 20
    steps_per_epoch: int = 1000
    batch_size: int = 50
    train_stochastic: bool = True
    eval_stochastic: bool = True

    def __repr__(self) -> str:
        # The neuron it makes, not the address of the function that makes it.
        fields = [f"{k}={v!r}" for k, v in self.__dict__.items() if k != "make_neuron"]
        fields.insert(1, f"neuron={self.make_neuron()!r}")
        return f"ClassifierConfig({', '.join(fields)})"

    def scaled(self) -> ClassifierConfig:
        """The same experiment at the active budget (smoke: 2 short epochs)."""
        if _budget.is_full():
            return self
        return ClassifierConfig(**{**self.__dict__, "epochs": min(self.epochs, 2),
                                   "steps_per_epoch": min(self.steps_per_epoch, 100)})


@dataclass
class History:
    """What one training run recorded."""

    label: str
    seed: int
    train_steps: list[int] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_val(self) -> float:
        return self.val_accuracy[-1] if self.val_accuracy else float("nan")


def accuracy(model: MLPClassifier, x: np.ndarray, y: np.ndarray, *, stochastic: bool,
             rng: np.random.Generator | None = None, batch_size: int = 1000) -> float:
    """Fraction of examples whose largest logit is the labelled class."""
    correct = 0
    with no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(Tensor(x[start:start + batch_size]), rng=rng, stochastic=stochastic)
            correct += int(np.sum(logits.data.argmax(1) == y[start:start + batch_size].argmax(1)))
    return correct / len(x)


def output_health(model: MLPClassifier, x: np.ndarray, *,
                  batch_size: int = 1000) -> tuple[float, float]:
    """How a trained network's deterministic outputs look on ``x``: ``(share of examples
    with a logit that is not finite, largest share of examples given one class)``.

    A network whose weights diverged gives NaN logits, and ``argmax`` answers 0 for a row of
    NaNs, so its accuracy is the share of zeros in the labels (0.0958 on the validation set
    of chapter 4's seed): the first number tells that apart from a network that is merely
    bad, the second from one that gives every image the same class.
    """
    if len(x) == 0:
        raise ValueError("output_health needs at least one example in x")
    bad = 0
    counts = np.zeros(0, dtype=int)
    with no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(Tensor(x[start:start + batch_size]), stochastic=False).data
            bad += int(np.sum(~np.all(np.isfinite(logits), axis=1)))
            counts = np.bincount(logits.argmax(1), minlength=logits.shape[1]) + (
                counts if counts.size else 0)
    return bad / len(x), float(counts.max() / len(x))


def train_classifier(config: ClassifierConfig, train, validation, seed: int,
                     sizes_in_out: tuple[int, int] = (784, 10),
                     progress: bool = False) -> tuple[MLPClassifier, History]:
    """Train one MLP classifier with the seeds' protocol and record its learning curves.

    Args:
        config: the experiment (already scaled to the budget, or not: see ``scaled``).
        train, validation: splits with ``.x`` (N, 784) floats and ``.y`` (N, 10) one-hot.
        seed: seeds the weights, the minibatch order and the neurons' noise.

    BLAS runs on one thread here: the matrices of a batch-50 MLP are too small to gain from
    a second thread, and a multi-threaded BLAS waiting for a busy core can turn a 0.4 ms
    step into tens of milliseconds (measured on a loaded 2-core machine).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_classifier(config, train, validation, seed, sizes_in_out, progress)


def _train_classifier(config, train, validation, seed, sizes_in_out, progress):
    run = ClassifierRun(config, train, validation, seed, sizes_in_out)
    for _ in tqdm(range(run.total_steps), desc=config.label, leave=False,
                  disable=not progress):
        run.step()
    return run.model, run.finish()


class ClassifierRun(Resumable):
    """One classifier run, a step at a time, with a state that can be saved and restored.

    :func:`train_classifier` is ``step()`` ``epochs x steps_per_epoch`` times; the step
    that ends an epoch also advances the neurons' schedules and measures the validation
    accuracy. :meth:`state` holds the model (neurons' baselines and schedules included),
    the optimizer, the Generators, the minibatch stream, the step count and the history.
    """

    family = "classifier"
    state_names = ("model", "optimizer", "batch_rng", "noise_rng", "eval_rng", "stream",
                   "history", "window", "steps_done")

    def __init__(self, config: ClassifierConfig, train, validation, seed: int,
                 sizes_in_out: tuple[int, int] = (784, 10)):
        self.config, self.validation = config, validation
        rng = np.random.default_rng(seed)
        init_rng, self.batch_rng, self.noise_rng, self.eval_rng = rng.spawn(4)
        sizes = [sizes_in_out[0], *config.hidden, sizes_in_out[1]]
        self.model = MLPClassifier(sizes, config.make_neuron, init_rng)
        self.optimizer = SGD(self.model.parameters(), lr=config.lr)
        self.stream = minibatch_stream(train.x, train.y, config.batch_size, self.batch_rng)
        self.history = History(config.label, seed)
        self.window: list = []
        self.steps_done = 0

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.config.steps_per_epoch

    @property
    def objective(self) -> dict[str, float]:
        h = self.history
        return {"train acc": h.train_accuracy[-1] if h.train_accuracy else float("nan"),
                "val acc": h.final_val}

    def step(self) -> None:
        config, model = self.config, self.model
        started = time.perf_counter()
        x, y = next(self.stream)
        loss, logits = step_loss(model, x, y, rng=self.noise_rng,
                                 stochastic=config.train_stochastic)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.window.append(np.mean(logits.data.argmax(1) == y.argmax(1)))
        self.steps_done = step = self.steps_done + 1
        if step % 100 == 0:
            self.history.train_steps.append(step)
            self.history.train_accuracy.append(float(np.mean(self.window)))
            self.window = []
        if step % config.steps_per_epoch == 0:
            model.end_epoch()
            self.history.val_epochs.append(step // config.steps_per_epoch)
            self.history.val_accuracy.append(
                accuracy(model, self.validation.x, self.validation.y,
                         stochastic=config.eval_stochastic, rng=self.eval_rng))
        self.history.seconds += time.perf_counter() - started

    def finish(self) -> History:
        return self.history


def run_sweep(configs: list[ClassifierConfig], train, validation, seeds: list[int],
              progress: bool = True, executor=None) -> dict[str, list[History]]:
    """Train every configuration with every seed, in parallel; returns histories by label.

    The runs are independent (each is seeded by its own seed), so they go through
    :func:`~minigrad.experiments.executor.map_runs` on both cores and give the same
    histories as a sequential loop.
    """
    runs = [(c.scaled(), train, validation, s) for c in configs for s in seeds]
    histories = map_runs(_history_of_run, runs, executor=executor, progress=progress)
    results: dict[str, list[History]] = {}
    for (config, *_), history in zip(runs, histories):
        results.setdefault(config.label, []).append(history)
    return results


def _history_of_run(config, train, validation, seed) -> History:
    return train_classifier(config, train, validation, seed)[1]


def run_sweep_with_models(configs: list[ClassifierConfig], train, validation, seeds: list[int],
                          progress: bool = True, executor=None
                          ) -> tuple[dict[str, list[History]], dict[str, list[MLPClassifier]]]:
    """:func:`run_sweep` that also keeps the trained models: ``(histories, models)``, by label.

    ``models[label][i]`` is the network trained with ``seeds[i]``, as it was after its last step.
    """
    return run_runs_with_models([(c, s) for c in configs for s in seeds], train, validation,
                                progress=progress, executor=executor)


def run_runs_with_models(runs: list[tuple[ClassifierConfig, int]], train, validation,
                         progress: bool = True, executor=None
                         ) -> tuple[dict[str, list[History]], dict[str, list[MLPClassifier]]]:
    """The given ``(configuration, seed)`` runs, in parallel; ``(histories, models)`` by label.

    For sweeps whose configurations do not all use the same seeds. Labels (and the runs of a
    label) keep the order of ``runs``. Each worker sends its trained model back to this
    process (pickled: its weights and its neurons' state, such as a baseline or an annealed
    slope), so the models can be evaluated again after the sweep.
    """
    jobs = [(config.scaled(), train, validation, seed) for config, seed in runs]
    trained = map_runs(train_classifier, jobs, executor=executor, progress=progress)
    results: dict[str, list[History]] = {}
    models: dict[str, list[MLPClassifier]] = {}
    for (config, *_), (model, history) in zip(jobs, trained):
        results.setdefault(config.label, []).append(history)
        models.setdefault(config.label, []).append(model)
    return results, models


def summarize(results: dict[str, list[History]]) -> dict[str, tuple[float, float, int]]:
    """Final validation accuracy per label as (mean, sample std, number of seeds)."""
    out = {}
    for label, runs in results.items():
        finals = np.array([h.final_val for h in runs])
        std = float(finals.std(ddof=1)) if len(finals) > 1 else 0.0
        out[label] = (float(finals.mean()), std, len(finals))
    return out


def summary_table(results: dict[str, list[History]], reference: dict[str, float] | None = None
                  ) -> str:
    """A plain-text table of mean ± std final validation accuracy (and the seed's number)."""
    reference = reference or {}
    width = max([len("configuration")] + [len(label) for label in results])
    lines = [f"{'configuration':{width}s} {'ours (mean ± std, n)':>24s} {'seed':>8s}"]
    for label, (mean, std, n) in summarize(results).items():
        ref = reference.get(label)
        ref_text = f"{ref:.4f}" if ref is not None else ""
        ours = f"{mean_std_text(mean, std, n)} (n={n})"
        lines.append(f"{label:{width}s} {ours:>24s} {ref_text:>8s}")
    return "\n".join(lines)


def history_rows(experiment: str, results: dict[str, list[History]],
                 reference: dict[str, float] | None = None,
                 reference_steps: int | dict[str, int] = 20_000,
                 explanations: dict[str, str] | None = None) -> list[dict]:
    """Rows for :func:`record_results`: the final validation accuracy of every run.

    ``reference`` maps a label to the seed post's number, measured after ``reference_steps``
    training steps (the seeds' 20 x 1,000; a dict gives them per label); each row also
    carries its own steps, so the appendix compares a smoke run with nothing.
    ``explanations`` maps a label to a sentence on its gap, generated from the chapter's data.
    """
    reference, explanations = reference or {}, explanations or {}
    rows = []
    for label, runs in results.items():
        for h in runs:
            row = {"experiment": experiment, "config": label, "seed": h.seed,
                   "metric": "final validation accuracy", "value": h.final_val,
                   "steps": h.train_steps[-1] if h.train_steps else 0,
                   "reference": reference.get(label), "seconds": h.seconds}
            if row["reference"] is not None:
                row["reference_steps"] = (reference_steps.get(label, 20_000)
                                          if isinstance(reference_steps, dict)
                                          else reference_steps)
                if label in explanations:
                    row["explanation"] = explanations[label]
            rows.append(row)
    return rows
