"""Long runs from a specification: resumable, checkpointed, and mapped over any executor.

A :class:`RunSpec` names one run in a few words and numbers (no arrays, no functions), so it
pickles to any worker, which loads its own data. :func:`execute` trains it in a folder of
its own: a checkpoint every ``checkpoint_every`` steps (and on SIGINT/SIGTERM: the current
step is finished, the checkpoint written, and :class:`RunInterrupted` raised), then the
history and a results file with rows in the results-store convention (``experiment``,
``config``, ``seed``, ``metric``, ``value``). With ``resume=True`` a run continues from its
checkpoint exactly where it stopped, and a finished run is not trained again, so a sweep
whose worker died can simply be submitted again with the same output folder.

:func:`run_specs` maps :func:`execute` over a list of specifications with
:func:`~minigrad.experiments.executor.map_runs`: a local process pool by default, or any
``concurrent.futures.Executor`` (``dask.distributed.Client(...).get_executor()``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad.fileio import (UnreadableFile, atomic_write, read_json,
                             remove_temp_files)
from minigrad.tensor import keep_freed_memory

from .checkpoint import CheckpointError, Resumable
from .executor import RunNotStarted, Stopped, _Signals, map_runs, stop_requested

__all__ = ["FAMILIES", "RunSpec", "RunInterrupted", "build_run", "execute", "run_specs",
           "sweep", "default_steps", "load_run_results", "read_history", "runs_dir", "CHECKPOINT",
           "HISTORY",
           "RESULTS"]

FAMILIES = ("classifier", "sbn", "lenet", "vae")
CHECKPOINT, HISTORY, RESULTS = "checkpoint.npz", "history.json", "results.json"

#: SBN models by name: (stochastic layers, nonlinear), as in the REBAR paper's tables.
SBN_MODELS = {"linear1": (1, False), "linear2": (2, False), "nonlinear": (1, True)}
SBN_DATASETS = ("binarized-mnist", "omniglot")
LENET_LOSSES = ("es", "cross_entropy")
#: A categorical VAE's latent shape as a model name: ``n24k2`` is 24 variables of 2 classes.
VAE_MODEL = re.compile(r"^n([1-9][0-9]*)k([1-9][0-9]*)$")
#: Latent shapes of 24 bits each (n log2 K = 24), the comparison's: any nNkK is accepted.
VAE_MODELS = ("n24k2", "n12k4", "n6k16", "n4k64")

#: Training steps per run at each budget: the book's full and smoke scales, and the papers'.
STEPS = {
    "sbn": {"smoke": 200, "full": 30_000, "paper": 2_000_000},
    "classifier": {"smoke": 200, "full": 20_000, "paper": 20_000},
    "lenet": {"smoke": 24, "full": 50 * 430, "paper": 50 * 430},
    "vae": {"smoke": 200, "full": 20_000, "paper": 1_000_000},
}


def default_steps(family: str, budget: str) -> int:
    """The steps of one run of ``family`` at ``budget`` (smoke, full or paper)."""
    return FAMILY_RECORDS[family].steps[budget]


def _classifier_neurons():
    # Built lazily: the table imports the estimators' modules.
    import minigrad as mg
    from minigrad.estimators.base import Deterministic
    from minigrad.estimators.binary import StraightThroughNeuron
    from minigrad.estimators.score_function import ReinforceNeuron

    # name: (neuron maker, the book's learning rate); picklable makers (no lambdas)
    return {
        "sigmoid": (_Maker(Deterministic, mg.sigmoid), 1.0),
        "tanh": (_Maker(Deterministic, mg.tanh), 0.1),
        "pass-through": (_Maker(StraightThroughNeuron, "pass_through"), 0.1),
        "sigmoid-adjusted": (_Maker(StraightThroughNeuron, "sigmoid_adjusted"), 0.1),
        "slope-annealed": (_Maker(StraightThroughNeuron, "sigmoid_adjusted",
                                  anneal_rate=1.1), 0.1),
        "reinforce": (_Maker(ReinforceNeuron, baseline=True), 0.05),
        "reinforce-no-baseline": (_Maker(ReinforceNeuron, baseline=False), 0.05),
    }


CLASSIFIER_MODELS = ("sigmoid", "tanh", "pass-through", "sigmoid-adjusted", "slope-annealed",
                     "reinforce", "reinforce-no-baseline")


class _Maker:
    """A neuron factory that pickles: a class and its arguments."""

    def __init__(self, cls, *args, **kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs

    def __call__(self):
        return self.cls(*self.args, **self.kwargs)


@dataclass(frozen=True)
class RunSpec:
    """One run: what to train, how long, with which seed. Every field is a plain value.

    ``model``: SBN ``linear1``/``linear2``/``nonlinear``; classifier: a hidden neuron
    (:data:`CLASSIFIER_MODELS`); LeNet-5: ``lenet5``. ``estimator``: SBN: a key of
    :data:`minigrad.estimators.catalogue.SBN_ESTIMATORS`; LeNet-5: ``es`` or ``cross_entropy``;
    classifier: the neuron is the estimator, leave it empty; VAE: the latent shape ``nNkK``
    (N variables of K classes, e.g. ``n12k4``) and a name of
    :data:`minigrad.estimators.catalogue.VAE_ESTIMATORS`. Fields left ``None`` take the
    book's values for the family. ``train_examples`` trains on the first so many examples
    only (for quick checks).
    """

    family: str
    model: str
    estimator: str = ""
    steps: int = 1000
    seed: int = 0
    dataset: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    record_every: int | None = None
    temperature: float = 0.5
    eval_k: int = 100
    eval_examples: int | None = None
    train_examples: int | None = None
    steps_per_epoch: int | None = None
    es_sigma: float = 4.0
    es_samples: int = 200
    init: str = "glorot"
    baseline: str = "trained"
    task: str = "generative"
    binarization: str = "fixed"

    def __post_init__(self):
        check_spec(self)

    @property
    def name(self) -> str:
        """A folder name: family, model, estimator (and a frozen baseline, the structured
        task, dynamic binarization) and seed."""
        frozen = "frozen-baseline" if self.baseline == "frozen" else ""
        task = "structured" if self.task == "structured" else ""
        dynamic = "dynamic-binarization" if self.binarization == "dynamic" else ""
        parts = [self.family, self.model, self.estimator, frozen, task, dynamic,
                 f"seed{self.seed}"]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(p for p in parts if p))

    def as_dict(self) -> dict:
        """The fields as a dict; those added after runs were recorded (:data:`ADDED_LATER`)
        are left out at their defaults, so the checkpoints and results of those runs still
        match the specification that made them."""
        fields = dataclasses.asdict(self)
        for name, default in ADDED_LATER.items():
            if fields[name] == default:
                del fields[name]
        return fields


#: RunSpec fields newer than some recorded runs, with the default those runs had.
ADDED_LATER = {"task": "generative", "binarization": "fixed"}


class SpecError(ValueError):
    """A run specification that cannot be run: a bad argument (exit status 2)."""


#: Training examples of each dataset when ``train_examples`` is not given.
TRAIN_SIZES = {"mnist": 55_000, "binarized-mnist": 50_000}
#: The book's minibatch size of each family when ``batch_size`` is not given.
BATCH_SIZES = {"sbn": 24, "classifier": 50, "lenet": 128, "vae": 50}


def _positive(spec, name, allow_none=True):
    value = getattr(spec, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        flag = "--" + name.replace("_", "-")
        raise SpecError(f"{name} ({flag}) must be a whole number >= 1, got {value!r}")


def check_spec(spec: RunSpec) -> None:
    """Raise ValueError with what is wrong and what is allowed."""
    if spec.family not in FAMILIES:
        raise SpecError(f"family (--family) must be one of {', '.join(FAMILIES)}; "
                        f"got {spec.family!r}")
    for name in ("steps", "batch_size", "record_every", "eval_k", "eval_examples",
                 "train_examples", "steps_per_epoch", "es_samples"):
        _positive(spec, name, allow_none=name != "steps")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, (int, np.integer)) \
            or spec.seed < 0:
        raise SpecError(f"seed (--seed) must be a whole number >= 0, got {spec.seed!r}")
    for name in ("lr", "temperature", "es_sigma"):
        value = getattr(spec, name)
        if value is not None and not (isinstance(value, (int, float)) and value > 0
                                      and np.isfinite(value)):
            flag = "--" + name.replace("_", "-")
            raise SpecError(f"{name} ({flag}) must be a positive number, got {value!r}")
    if spec.family != "sbn" and spec.baseline != "trained":
        raise SpecError(f"baseline={spec.baseline!r} (--baseline) is an SBN option (REBAR's "
                        f"C(x)); the {spec.family} family has no such baseline")
    if spec.family != "sbn" and spec.task != "generative":
        raise SpecError(f"task={spec.task!r} (--task) is an SBN option; the {spec.family} "
                        "family has one task")
    if spec.family != "sbn" and spec.binarization != "fixed":
        raise SpecError(f"binarization={spec.binarization!r} (--binarization) is an SBN "
                        f"option; the {spec.family} family trains on its data as loaded")
    FAMILY_RECORDS[spec.family].check(spec)
    dataset = spec.dataset or ("binarized-mnist" if spec.family in ("sbn", "vae")
                               else "mnist")
    batch = spec.batch_size or BATCH_SIZES[spec.family]
    n = spec.train_examples or TRAIN_SIZES.get(dataset)
    n = min(n, TRAIN_SIZES.get(dataset, n)) if n is not None else None
    if n is not None and batch > n:
        raise SpecError(f"batch size ({batch}; --batch-size) is larger than the {n:,} "
                        "training examples (--train-examples): choose a batch of at most "
                        f"{n:,}")


def _check_sbn(spec: RunSpec) -> None:
    from minigrad.estimators.catalogue import ESTIMATORS, SBN_ESTIMATORS
    from minigrad.experiments.sbn import BASELINES, BINARIZATIONS, RELAXED_FAMILY
    from minigrad.models.sbn import INITS, TASKS

    choices = (("model", SBN_MODELS), ("estimator", SBN_ESTIMATORS),
               ("dataset", SBN_DATASETS), ("init", INITS), ("baseline", BASELINES),
               ("task", TASKS), ("binarization", BINARIZATIONS))
    for option, allowed in choices:
        value = getattr(spec, option)
        if option == "dataset" and value is None:   # the default: binarized MNIST
            continue
        if value not in allowed:
            raise SpecError(f"SBN {option} (--{option}) must be one of "
                            f"{', '.join(allowed)}; got {value!r}")
    if spec.baseline == "frozen" and ESTIMATORS[spec.estimator].family != RELAXED_FAMILY:
        raise SpecError(f"a frozen baseline (--baseline) is for REBAR, dynamic REBAR and "
                        f"RELAX; {spec.estimator} trains its own")
    if spec.binarization == "dynamic" and spec.dataset == "omniglot":
        raise SpecError("dynamic binarization (--binarization) needs grey levels; omniglot "
                        "is kept binarized once: use --binarization fixed with it")


def vae_shape(model: str) -> tuple[int, int]:
    """``(n, K)`` of a VAE model name ``nNkK``; a SpecError for anything else."""
    match = VAE_MODEL.match(model) if isinstance(model, str) else None
    if match is None or int(match.group(2)) < 2:
        raise SpecError(f"VAE model (--model) is the latent shape nNkK, N categorical "
                        f"variables of K >= 2 classes, e.g. {', '.join(VAE_MODELS)}; "
                        f"got {model!r}")
    return int(match.group(1)), int(match.group(2))


def _check_vae(spec: RunSpec) -> None:
    from minigrad.estimators.catalogue import VAE_ESTIMATORS

    vae_shape(spec.model)
    if spec.estimator not in VAE_ESTIMATORS:
        names = ", ".join(repr(name) for name in VAE_ESTIMATORS)
        raise SpecError(f"VAE estimator (--estimator) must be one of {names} (quote a "
                        f"name with spaces); got {spec.estimator!r}")
    if spec.dataset not in (None, "binarized-mnist"):
        raise SpecError(f"the VAE trains on binarized-mnist; got --dataset {spec.dataset!r}")
    if spec.init != "glorot":
        raise SpecError(f"init={spec.init!r} (--init) is an SBN option; the VAE's "
                        "weights are initialised one way")


def _check_classifier(spec: RunSpec) -> None:
    if spec.model not in CLASSIFIER_MODELS:
        raise SpecError(f"classifier model (--model, the hidden neuron) must be one of "
                        f"{', '.join(CLASSIFIER_MODELS)}; got {spec.model!r}")
    if spec.estimator:
        raise SpecError("a classifier's estimator is its neuron (--model); "
                        f"leave the estimator out, got {spec.estimator!r}")
    if spec.dataset not in (None, "mnist"):
        raise SpecError(f"the classifier trains on mnist; got --dataset {spec.dataset!r}")
    spe = spec.steps_per_epoch or min(1000, spec.steps)
    if spec.steps % spe:
        raise SpecError(f"classifier steps ({spec.steps}; --steps) must be a multiple "
                        f"of the steps per epoch ({spe}; --steps-per-epoch)")


def _check_lenet(spec: RunSpec) -> None:
    if spec.model != "lenet5":
        raise SpecError(f"the lenet family has one model (--model), lenet5; "
                        f"got {spec.model!r}")
    if spec.estimator not in LENET_LOSSES:
        raise SpecError(f"LeNet-5 estimator (--estimator) must be one of "
                        f"{', '.join(LENET_LOSSES)}; got {spec.estimator!r}")
    if spec.dataset not in (None, "mnist"):
        raise SpecError(f"LeNet-5 trains on mnist; got --dataset {spec.dataset!r}")
    n = spec.train_examples or TRAIN_SIZES["mnist"]
    _lenet_epochs(spec, min(n, TRAIN_SIZES["mnist"]))


def _lenet_epochs(spec, n_train: int) -> tuple[int, int | None]:
    """LeNet-5's (epochs, steps per epoch cap) for ``spec`` on ``n_train`` examples."""
    batch = spec.batch_size or BATCH_SIZES["lenet"]
    per_epoch = -(-n_train // batch)
    if spec.steps < per_epoch:
        return 1, spec.steps
    if spec.steps % per_epoch == 0:
        return spec.steps // per_epoch, None
    raise SpecError(f"LeNet-5 steps ({spec.steps}; --steps) must be under one epoch or a "
                    f"multiple of it ({per_epoch} steps of {batch} on {n_train:,} training "
                    "examples)")


class RunInterrupted(Stopped):
    """A run stopped by SIGINT or SIGTERM; its checkpoint (if it has one) is at ``path``.

    ``when`` says where it was: ``"training"`` (the current step was finished and the
    checkpoint written), ``"evaluation"`` (the final checkpoint was already written) or
    ``"setup"`` (before training began: nothing new to save).
    """

    def __init__(self, signum: int, step: int, path: Path | None, when: str = "training"):
        self.signum, self.step, self.path, self.when = signum, step, path, when
        name = signal.Signals(signum).name
        if when == "training":
            what = f"after step {step:,}; checkpoint written to {path}"
        elif when == "evaluation":
            what = (f"during the final evaluation; the checkpoint of step {step:,} is in "
                    f"{path}")
        else:
            what = "before training started; nothing new to save"
        super().__init__(f"stopped by {name} {what}; continue with --resume")

    def __reduce__(self):   # so that it travels back from a worker
        return type(self), (self.signum, self.step, self.path, self.when)


# ---------------------------------------------------------------------- building runs
def _slice(x, k):
    return x if k is None else x[:k]


def build_run(spec: RunSpec) -> tuple[Resumable, dict]:
    """The family's run object for ``spec`` (its data loaded here) and the config it used."""
    return FAMILY_RECORDS[spec.family].build(spec)


def _build_sbn(spec: RunSpec):
    from .sbn import SBNConfig, SBNRun

    if spec.dataset == "omniglot":
        from minigrad.data.omniglot import load_omniglot

        data = load_omniglot()
        train_x = data.train.x
    else:
        from minigrad.data import load_binarized_mnist

        data = load_binarized_mnist()   # validation: always the fixed bits
        train_x = load_binarized_mnist(spec.binarization).train.x
    n_layers, nonlinear = SBN_MODELS[spec.model]
    config = SBNConfig(
        spec.estimator, spec.estimator, steps=spec.steps, temperature=spec.temperature,
        n_layers=n_layers, nonlinear=nonlinear, task=spec.task,
        batch_size=spec.batch_size or 24, lr=spec.lr or 3e-4,
        record_every=spec.record_every or min(500, spec.steps), eval_k=spec.eval_k,
        eval_examples=spec.eval_examples, seed=spec.seed, init=spec.init,
        baseline=spec.baseline, binarization=spec.binarization)
    train_x = _slice(train_x, spec.train_examples)
    if config.batch_size > len(train_x):
        raise SpecError(f"batch size ({config.batch_size}; --batch-size) is larger than "
                        f"the {len(train_x):,} training examples of {spec.dataset}")
    run = SBNRun(config, train_x, data.validation.x)
    return run, config


def _build_classifier(spec: RunSpec):
    from minigrad.data import Split, load_mnist

    from .classifier import ClassifierConfig, ClassifierRun

    make, lr = _classifier_neurons()[spec.model]
    mnist = load_mnist()
    spe = spec.steps_per_epoch or min(1000, spec.steps)
    config = ClassifierConfig(spec.model, make, lr=spec.lr or lr,
                              epochs=spec.steps // spe, steps_per_epoch=spe,
                              batch_size=spec.batch_size or 50)
    train = Split(_slice(mnist.train.x, spec.train_examples),
                  _slice(mnist.train.y, spec.train_examples))
    validation = Split(_slice(mnist.validation.x, spec.eval_examples),
                       _slice(mnist.validation.y, spec.eval_examples))
    return ClassifierRun(config, train, validation, spec.seed), config


def _build_lenet(spec: RunSpec):
    from minigrad.data import Split, load_mnist

    from .lenet import LeNetConfig, LeNetRun

    mnist = load_mnist(pad_to_32=True)
    k = spec.train_examples
    train = Split(_slice(mnist.train.x, k), _slice(mnist.train.y, k))
    batch = spec.batch_size or BATCH_SIZES["lenet"]
    epochs, cap = _lenet_epochs(spec, len(train.x))
    config = LeNetConfig(f"{spec.estimator}", loss=spec.estimator, sigma=spec.es_sigma,
                         n=spec.es_samples, lr=spec.lr or 5.0 / 55_000, batch_size=batch,
                         epochs=epochs, max_steps_per_epoch=cap,
                         max_eval=spec.eval_examples)
    return LeNetRun(config, train, mnist.validation, mnist.test, spec.seed), config


def _build_vae(spec: RunSpec):
    from minigrad.data import load_binarized_mnist

    from .vae import VAEConfig, VAERun

    data = load_binarized_mnist()
    n, classes = vae_shape(spec.model)
    config = VAEConfig(
        spec.estimator, spec.estimator, steps=spec.steps, n=n, classes=classes,
        batch_size=spec.batch_size or BATCH_SIZES["vae"], lr=spec.lr or 1e-3,
        temperature=spec.temperature, record_every=spec.record_every or min(100, spec.steps),
        eval_k=spec.eval_k, eval_examples=spec.eval_examples, seed=spec.seed)
    train_x = _slice(data.train.x, spec.train_examples)
    return VAERun(config, train_x, data.validation.x), config


# ---------------------------------------------------------------------- running
#: The file in a sweep's output folder through which the process that started the sweep
#: talks to its runs wherever they are (a shared filesystem): a heartbeat, and a stop request.
SWEEP_FILE = ".minigrad-sweep.json"
#: Default seconds without a heartbeat after which a run on another executor stops at a
#: checkpoint, its command being gone (``--parent-timeout``).
PARENT_TIMEOUT = 30.0
_HEARTBEAT = 1.0


class _SweepFile:
    """The run's side of :data:`SWEEP_FILE`: :meth:`check` (at most every half second) gives
    the signal to stop with, if the sweep asks for a stop or its heartbeat has stopped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._next = 0.0
        self._beat, self._heard = None, time.monotonic()

    def check(self) -> int | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + 0.5
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return signal.SIGTERM      # the sweep is over or its folder gone
        except (OSError, ValueError):
            return None                # read while being replaced: ask again later
        if state.get("stop"):
            return int(state["stop"])
        if state.get("beat") != self._beat:
            self._beat, self._heard = state.get("beat"), now
        elif now - self._heard > float(state.get("timeout", PARENT_TIMEOUT)):
            return signal.SIGTERM      # the command that started the sweep is gone
        return None


class _Heartbeat:
    """The sweep's side of :data:`SWEEP_FILE`: a beat every second; :meth:`stop` asks the
    runs to stop."""

    def __init__(self, folder: Path, timeout: float):
        self.path, self.timeout = folder / SWEEP_FILE, timeout
        self.beat, self.signum = 0, None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._write()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")
        self._thread.start()

    def _write(self):
        with self._lock:
            _write_json(self.path, {"pid": os.getpid(), "beat": self.beat,
                                    "timeout": self.timeout, "stop": self.signum})

    def _run(self):
        while not self._done.wait(_HEARTBEAT):
            self.beat += 1
            try:
                self._write()
            except OSError:
                pass                   # a full disk: the runs will see no beat

    def stop(self, signum: int) -> None:
        self.signum = signum
        self._write()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        with self._lock:
            self.path.unlink(missing_ok=True)


class _StopOnSignals(_Signals):
    """Within ``with``: SIGINT and SIGTERM set a flag instead of stopping the process.

    Where stopping loses nothing (``raising`` True: before training, during the final
    evaluation) the signal raises :class:`RunInterrupted` at once instead. Signals reach
    only the main thread; on a Dask worker's thread a run learns of a stop from the sweep's
    file (``sweep_file``) instead, and in a worker of the local pool from a signal received
    before the run began (:func:`~minigrad.experiments.executor.stop_requested`).
    """

    def __init__(self, sweep_file: str | Path | None = None):
        super().__init__()
        self.raising = True
        self.step, self.path, self.when = 0, None, "setup"
        self._sweep = _SweepFile(sweep_file) if sweep_file is not None else None

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
        if self.raising:
            self.interrupt()

    def poll(self) -> int | None:
        """The signal to stop with, if any (checks the sweep's file too)."""
        if self.signum is None:
            self.signum = stop_requested()
        if self.signum is None and self._sweep is not None:
            self.signum = self._sweep.check()
        return self.signum

    def interrupt(self):
        self.raising = False   # one exception, however many signals
        raise RunInterrupted(self.signum, self.step, self.path, self.when)


def _history_dict(history) -> dict:
    return dataclasses.asdict(history)


def _rows(spec: RunSpec, history, budget: str | None) -> list[dict]:
    experiment = f"{spec.family} {spec.model} {spec.dataset or ''}".strip()
    config = spec.estimator or spec.model
    base = {"experiment": experiment, "config": config, "seed": spec.seed,
            "steps": spec.steps, "budget": budget}
    metrics = FAMILY_RECORDS[spec.family].rows(spec, history)
    return [{**base, "metric": m, "value": float(v)} for m, v in metrics.items()]


def _sbn_metrics(spec: RunSpec, history) -> dict:
    if spec.task == "structured":   # bounds on log p(bottom half | top half), not ELBOs
        return {"final training bound on log p(bottom | top)": history.final_train_elbo,
                f"validation bound on log p(bottom | top) (k={spec.eval_k})":
                    history.val_iwae}
    return {"final training ELBO": history.final_train_elbo,
            f"validation IWAE bound (k={spec.eval_k})": history.val_iwae}


def _classifier_metrics(spec: RunSpec, history) -> dict:
    return {"final validation accuracy": history.final_val}


def _vae_metrics(spec: RunSpec, history) -> dict:
    return {"final training ELBO": history.train_elbo[-1],
            f"validation IWAE bound (k={spec.eval_k})": history.val_bound}


def _lenet_metrics(spec: RunSpec, history) -> dict:
    return {"final validation accuracy": history.final_val,
            "test accuracy": history.test_accuracy}


@dataclass(frozen=True)
class FamilyRecord:
    """What :mod:`runs` needs to know of one family of runs: how to check a
    specification, build its run, turn its history into result rows, and its steps per
    budget."""

    check: Callable[[RunSpec], None]
    build: Callable[[RunSpec], tuple]
    rows: Callable[[RunSpec, Any], dict]
    steps: dict


#: One record per family (the keys are :data:`FAMILIES`).
FAMILY_RECORDS = {
    "classifier": FamilyRecord(_check_classifier, _build_classifier, _classifier_metrics,
                               STEPS["classifier"]),
    "sbn": FamilyRecord(_check_sbn, _build_sbn, _sbn_metrics, STEPS["sbn"]),
    "lenet": FamilyRecord(_check_lenet, _build_lenet, _lenet_metrics, STEPS["lenet"]),
    "vae": FamilyRecord(_check_vae, _build_vae, _vae_metrics, STEPS["vae"]),
}


def _write_json(path: Path, payload: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)


def execute(spec: RunSpec, out: str | Path, *, checkpoint_every: int = 1000,
            resume: bool = False, progress: bool = False, budget: str | None = None,
            sweep_file: str | Path | None = None) -> dict:
    """Train one run in the folder ``out``; returns its results (also written there).

    Writes ``checkpoint.npz`` every ``checkpoint_every`` steps, before the final evaluation,
    and when SIGINT or SIGTERM arrives (then raises :class:`RunInterrupted`). A checkpoint
    already in ``out`` is an error unless ``resume`` is True; with ``resume`` the run
    continues from it (or starts afresh when there is none) and a run whose results are
    already there returns them without training.

    The results: ``{"spec", "budget", "rows", "history", "timing"}``; ``rows`` follow the
    results store's convention. ``timing`` (wall time, steps per second) is kept apart
    from the numbers that a resumed run reproduces exactly.

    ``sweep_file``: the :data:`SWEEP_FILE` of the sweep this run belongs to (set by
    :func:`run_specs`): the run stops at a checkpoint when the sweep asks it to or when
    the sweep's heartbeat stops, and does not start when the sweep is already stopping.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a whole number >= 1, "
                         f"got {checkpoint_every!r}")
    out = Path(out)
    early = stop_requested()
    if early is None and sweep_file is not None:
        early = _SweepFile(sweep_file).check()
    if early is not None:   # the sweep is stopping: this run does not start
        raise RunNotStarted(early)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, results = out / CHECKPOINT, out / RESULTS
    remove_temp_files(out, (CHECKPOINT, HISTORY, RESULTS))   # left by a killed write
    spec_dict = spec.as_dict()
    if results.exists() and resume:
        try:
            done = read_json(results, "results file", "delete it and resume: the run "
                             "finishes again from its checkpoint")
        except UnreadableFile as e:
            raise CheckpointError(str(e)) from None
        if isinstance(done, dict) and done.get("spec") == spec_dict:
            return done
    if checkpoint.exists() and not resume:
        raise FileExistsError(f"{checkpoint} exists: pass resume=True (--resume) to continue "
                              "that run, or choose another output folder")
    keep_freed_memory()     # opt-in, for the process that trains (see its docstring)
    with threadpool_limits(limits=1, user_api="blas"), _StopOnSignals(sweep_file) as stop:
        if stop.poll() is not None:
            raise RunNotStarted(stop.signum)
        if checkpoint.exists():
            stop.path = checkpoint
        run, _ = build_run(spec)
        if resume and checkpoint.exists():
            run.resume(checkpoint, spec_dict)
            stop.step = run.steps_done
        return _train(run, spec, out, checkpoint_every, progress, budget, stop)


def _train(run, spec, out, checkpoint_every, progress, budget, stop) -> dict:
    checkpoint = out / CHECKPOINT
    first, started = run.steps_done, time.perf_counter()
    bar = tqdm(total=run.total_steps, initial=run.steps_done, desc=spec.name,
               disable=not progress, dynamic_ncols=True)
    size = None
    # from here a signal is only noted: the current step finishes and a checkpoint is written
    stop.raising, stop.when = False, "training"
    if stop.poll() is not None:   # a signal during the setup, noted by a worker
        stop.path = checkpoint
        bar.close()
        stop.when = "setup"
        stop.interrupt()
    while run.steps_done < run.total_steps:
        run.step()
        bar.update(1)
        if run.steps_done % 100 == 0:
            bar.set_postfix({k: f"{v:.4g}" for k, v in run.objective.items()},
                            refresh=False)
        if stop.poll() is not None:
            run.save(checkpoint, spec.as_dict())
            bar.close()
            stop.step, stop.path = run.steps_done, checkpoint
            stop.interrupt()
        if run.steps_done % checkpoint_every == 0 and run.steps_done < run.total_steps:
            size = run.save(checkpoint, spec.as_dict())
    seconds = time.perf_counter() - started
    size = run.save(checkpoint, spec.as_dict())
    bar.close()
    # the final checkpoint is written: a signal now stops the evaluation at once
    stop.step, stop.path, stop.when = run.steps_done, checkpoint, "evaluation"
    stop.raising = True
    if stop.poll() is not None:
        stop.interrupt()
    history = run.finish()
    stop.raising = False
    done = run.steps_done - first
    payload = {
        "spec": spec.as_dict(), "budget": budget, "rows": _rows(spec, history, budget),
        "history": _history_dict(history),
        "timing": {"steps_this_session": done, "seconds_this_session": seconds,
                   "steps_per_second": done / seconds if seconds > 0 else None,
                   "checkpoint_bytes": size},
    }
    _write_json(out / HISTORY, payload["history"])
    _write_json(out / RESULTS, payload)
    return payload


def _execute_in(spec, out, checkpoint_every, resume, budget, sweep_file=None):
    return execute(spec, Path(out) / spec.name, checkpoint_every=checkpoint_every,
                   resume=resume, budget=budget, sweep_file=sweep_file)


def sweep(family: str, models: list[str], estimators: list[str], seeds: list[int],
          **common: Any) -> list[RunSpec]:
    """Every (model, estimator, seed) as a :class:`RunSpec`; ``common`` sets other fields."""
    return [RunSpec(family, m, e, seed=s, **common)
            for m in models for e in estimators for s in seeds]


def run_specs(specs: list[RunSpec], out: str | Path, *, executor=None,
              workers: int | None = None, checkpoint_every: int = 1000, resume: bool = False,
              progress: bool = False, budget: str | None = None,
              parent_timeout: float = PARENT_TIMEOUT) -> list[dict]:
    """Each run in ``out/<spec.name>``, mapped over ``executor`` (a local pool by default).

    Results in the order of ``specs``. Runs on a cluster need ``out`` on a filesystem every
    worker sees; then a run whose worker was lost resumes from its checkpoint wherever it is
    submitted again (``resume=True``).

    The sweep stops as one unit (see :func:`~minigrad.experiments.executor.map_runs`): on
    SIGINT or SIGTERM every running run writes its checkpoint and stops, no other run
    starts, and :class:`~minigrad.experiments.executor.SweepInterrupted` is raised. Runs
    on another executor learn of it through :data:`SWEEP_FILE` in ``out``, which this
    process rewrites every second; a run that has not seen it change for
    ``parent_timeout`` seconds (this process was killed) stops at a checkpoint too.
    """
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("two runs of the sweep have the same name (family, model, "
                         "estimator, seed): they would share a folder")
    if not parent_timeout > 0:
        raise ValueError(f"parent_timeout must be a positive number of seconds, "
                         f"got {parent_timeout!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out, (SWEEP_FILE,))
    heartbeat = _Heartbeat(out, parent_timeout)
    jobs = [(s, str(out), checkpoint_every, resume, budget, str(heartbeat.path))
            for s in specs]
    try:
        return map_runs(_execute_in, jobs, executor=executor, workers=workers,
                        progress=progress, desc="runs", on_stop=heartbeat.stop)
    finally:
        heartbeat.close()



#: Environment variable naming the folder of command-line runs the appendix shows.
RUNS_ENV = "MINIGRAD_RUNS"


def runs_dir() -> Path:
    """Where the reproduction appendix looks for command-line runs: ``$MINIGRAD_RUNS``, else
    ``runs/`` at the book's root."""
    import os

    from .results import repo_root

    value = os.environ.get(RUNS_ENV)
    return Path(value) if value else repo_root() / "runs"


def read_history(folder: str | Path) -> tuple[dict, bool]:
    """The history of the run in ``folder`` and whether the run is finished.

    ``folder`` may also be a recorded history file (``book/recorded/*.json``): it is read
    as it is, with its ``complete`` flag.

    A finished run has its ``history.json``; a run still going (or stopped) has the history
    up to its last checkpoint, read from the checkpoint without building the model.
    """
    from .checkpoint import read_checkpoint, saved_value

    folder = Path(folder)
    if folder.is_file():   # a recorded history (book/recorded): the run's JSON itself
        with open(folder) as f:
            record = json.load(f)
        return record, bool(record.get("complete", True))
    if (folder / HISTORY).exists():
        return read_json(folder / HISTORY, "run history"), True
    path = folder / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"{folder} has neither {HISTORY} nor {CHECKPOINT}: "
                                "is it the output folder of a run?")
    manifest, arrays = read_checkpoint(path)
    history = saved_value(manifest, arrays, "history")
    return history, False


def load_run_results(folder: str | Path | None = None) -> list[dict]:
    """The results of every finished run under ``folder`` (its ``results.json`` files)."""
    folder = Path(folder) if folder is not None else runs_dir()
    payloads = []
    for path in sorted(folder.rglob(RESULTS)) if folder.is_dir() else []:
        payload = read_json(path, "results file", "delete it, or run that run again with "
                            "--resume")
        if isinstance(payload, dict) and "spec" in payload and "rows" in payload:
            payloads.append(payload)
    return payloads
