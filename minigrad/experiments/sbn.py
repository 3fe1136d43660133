"""Training sigmoid belief networks with one encoder-gradient estimator per run.

The protocol is the REBAR paper's (Tucker et al. 2017): statically binarized MNIST, batch 24,
Adam with beta2 = 0.99999, learning rate 3e-4. At every step the decoder and the prior get the
exact gradient of ``log p(x, b)`` at the sampled ``b``; each stochastic layer's logits get the
estimator's estimate of ``d E[f] / d logits`` through
:func:`~minigrad.estimators.base.surrogate`. Every run of a comparison starts from the same
weights and sees the same minibatches.

An estimator enters through a small adapter in :data:`ESTIMATORS` (a table, not an if/elif):
``estimates(...)`` returns one estimate per layer, ``update(...)`` changes its baselines
after the step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad.data import minibatch_stream
from minigrad.estimators import sbn_estimators as E
from minigrad.estimators.antithetic import arm, disarm
from minigrad.estimators.base import surrogate
from minigrad.estimators.diagnostics import EMALogVariance
from minigrad.models.sbn import SigmoidBeliefNet
from minigrad.optim import Adam
from minigrad.tensor import no_grad

from .checkpoint import Resumable
from .executor import map_runs

__all__ = ["SBNConfig", "SBNHistory", "ESTIMATORS", "SBNRun", "train_sbn",
           "run_sbn_comparison", "time_sbn_steps"]


# ---------------------------------------------------------------------- adapters
class _Reinforce:
    """REINFORCE with a moving-average baseline of the ELBO."""

    def __init__(self, model, config):
        self.baseline = E.MovingAverageBaseline(decay=0.9)

    def estimates(self, model, x, logits, samples, u, rng):
        c = self.baseline.value()
        with no_grad():
            return [E.reinforce(lg.detach(), model.learning_signal(x, samples, i, u, logits),
                                u[i], baseline=c)
                    for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        self.baseline.update(f_values)


class _LeaveOneOut:
    """REINFORCE with leave-one-out centring over 2 samples (the first is the one trained)."""

    def __init__(self, model, config):
        self.k = 2

    def estimates(self, model, x, logits, samples, u, rng):
        out = []
        for i, lg in enumerate(logits):
            extra = rng.random((self.k - 1, *u[i].shape)).astype(u[i].dtype)
            noise = np.concatenate([u[i][None], extra])
            f = model.learning_signal(x, samples, i, u, logits)
            out.append(E.reinforce_loo(lg, f, noise))
        return out

    def update(self, x, f_values):
        pass


class _NVIL:
    """NVIL: input-dependent baseline, running mean, variance normalisation (optional)."""

    def __init__(self, model, config):
        self.baseline = E.NVILBaseline(model.input_mean, rng=config.seed + 7,
                                       lr=10 * config.lr, normalise=config.nvil_normalise,
                                       dtype=model.dtype)

    def estimates(self, model, x, logits, samples, u, rng):
        inp, _ = model.split(x)
        values, scale = self.baseline(inp)
        return [E.nvil(lg, model.learning_signal(x, samples, i, u, logits), u[i], values,
                       scale)
                for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        self.baseline.update(x[:, :self.baseline.input_mean.size], f_values)


class _Plain:
    """An estimator with no state: MuProp, SimpleMuProp."""

    def __init__(self, model, config, fn):
        self.fn = fn

    def estimates(self, model, x, logits, samples, u, rng):
        return [self.fn(lg, model.learning_signal(x, samples, i, u, logits), u[i])
                for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        pass


class _Concrete(_Plain):
    def __init__(self, model, config):
        t = config.temperature
        super().__init__(model, config, lambda lg, f, u: E.concrete(lg, f, u, temperature=t))


ESTIMATORS = {
    "REINFORCE": _Reinforce,
    "REINFORCE LOO": _LeaveOneOut,
    "NVIL": _NVIL,
    "MuProp": lambda model, config: _Plain(model, config, E.muprop),
    "SimpleMuProp": lambda model, config: _Plain(model, config, E.simple_muprop),
    "Concrete": _Concrete,
    # antithetic: f at b (the sample trained on) and at its mirror b~, from the same u
    "ARM": lambda model, config: _Plain(model, config, arm),
    "DisARM": lambda model, config: _Plain(model, config, disarm),
}


# ---------------------------------------------------------------------- runs
@dataclass
class SBNConfig:
    """One training run: the model, the estimator (a key of :data:`ESTIMATORS`), the steps."""

    label: str
    estimator: str
    steps: int
    temperature: float = 0.5
    nvil_normalise: bool = True
    n_layers: int = 1
    nonlinear: bool = False
    task: str = "generative"
    batch_size: int = 24
    lr: float = 3e-4
    beta2: float = 0.99999
    record_every: int = 500
    eval_k: int = 100
    eval_examples: int | None = None  # None: the whole validation set
    seed: int = 0

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; one of {list(ESTIMATORS)}")


@dataclass
class SBNHistory:
    """What one run recorded: training ELBO and log-variance every ``record_every`` steps."""

    label: str
    steps: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    log_variance: list[float] = field(default_factory=list)
    val_iwae: float = float("nan")
    seconds: float = 0.0

    @property
    def final_train_elbo(self) -> float:
        return self.train_elbo[-1] if self.train_elbo else float("nan")

    @property
    def seconds_per_1000(self) -> float:
        return 1000 * self.seconds / self.steps[-1] if self.steps else float("nan")


def _encoder_params(model):
    return [p for name, p in model.named_parameters() if name.startswith("q")]


def train_sbn(config: SBNConfig, train_x: np.ndarray, val_x: np.ndarray,
              progress: bool = False) -> tuple[SigmoidBeliefNet, SBNHistory]:
    """Train one SBN with one estimator; BLAS on one thread (small matrices, shared cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_sbn(config, train_x, val_x, progress)


def _train_sbn(config, train_x, val_x, progress):
    run = SBNRun(config, train_x, val_x)
    for _ in tqdm(range(config.steps), desc=config.label, disable=not progress):
        run.step()
    return run.model, run.finish()


class SBNRun(Resumable):
    """One SBN training run, a step at a time, with a state that can be saved and restored.

    :func:`train_sbn` is ``step()`` ``config.steps`` times, then ``finish()`` (the
    validation bound). :meth:`state` is everything the next steps depend on: the model, the
    optimizer, the estimator's state (baselines, control variates and their optimizers),
    the variance tracker, every Generator, the minibatch stream, the step count and the
    history so far; :mod:`~minigrad.experiments.checkpoint` writes it to a file and puts it
    back into a fresh run made with the same configuration and data.
    """

    family = "sbn"

    def __init__(self, config: SBNConfig, train_x: np.ndarray, val_x: np.ndarray):
        self.config, self.val_x = config, val_x
        init_rng, self.batch_rng, self.noise_rng, self.eval_rng = \
            np.random.default_rng(config.seed).spawn(4)
        self.model = SigmoidBeliefNet(train_x.mean(axis=0), n_layers=config.n_layers,
                                      nonlinear=config.nonlinear, task=config.task,
                                      rng=init_rng)
        self.estimator = ESTIMATORS[config.estimator](self.model, config)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr, betas=(0.9, config.beta2))
        self.tracker = EMALogVariance(decay=0.999)
        self.encoder = _encoder_params(self.model)
        self.stream = minibatch_stream(train_x, None, config.batch_size, self.batch_rng)
        self.history = SBNHistory(config.label)
        self.window: list[float] = []
        self.steps_done = 0

    @property
    def total_steps(self) -> int:
        return self.config.steps

    @property
    def objective(self) -> dict[str, float]:
        """The latest recorded training ELBO (for a progress bar)."""
        return {"elbo": self.history.final_train_elbo}

    def step(self) -> None:
        """One training step (and a history record every ``record_every`` steps)."""
        config, model = self.config, self.model
        started = time.perf_counter()
        x, _ = next(self.stream)
        u = model.noise(self.noise_rng, len(x))
        logits, samples = model.sample_encoder(x, u)
        gs = self.estimator.estimates(model, x, logits, samples, u, self.noise_rng)
        log_joint = model.log_joint(x, samples)
        with no_grad():
            f_values = log_joint.data - model.log_q(x, samples, logits).data
        loss = log_joint.sum() * (-1.0 / len(x))
        for lg, g in zip(logits, gs):
            loss = loss - surrogate(lg, g) * (1.0 / len(x))
        self.optimizer.zero_grad()
        loss.backward()
        # the optimizer minimises -ELBO: the ascent direction's variance is the same
        self.tracker.update(np.concatenate([p.grad.data.ravel() for p in self.encoder]))
        self.optimizer.step()
        self.estimator.update(x, f_values)
        self.window.append(float(f_values.mean()))
        self.steps_done = step = self.steps_done + 1
        if step % config.record_every == 0 or step == config.steps:
            self.history.steps.append(step)
            self.history.train_elbo.append(float(np.mean(self.window)))
            self.history.log_variance.append(self.tracker.log_variance)
            self.window = []
        self.history.seconds += time.perf_counter() - started

    def finish(self) -> SBNHistory:
        """The bound on the validation set (``eval_k`` importance samples); the history."""
        config = self.config
        val = self.val_x if config.eval_examples is None else self.val_x[:config.eval_examples]
        self.history.val_iwae = float(np.mean(self.model.iwae_bound(val, config.eval_k,
                                                                    self.eval_rng)))
        return self.history

    state_names = ("model", "optimizer", "estimator", "tracker", "batch_rng", "noise_rng",
                   "eval_rng", "stream", "history", "window", "steps_done")


def _history(config, train_x, val_x):
    return train_sbn(config, train_x, val_x)[1]


def run_sbn_comparison(configs: list[SBNConfig], train_x, val_x, progress: bool = True,
                       executor=None) -> dict[str, SBNHistory]:
    """Train every configuration (independent runs, on every core); histories by label."""
    histories = map_runs(_history, [(c, train_x, val_x) for c in configs],
                         executor=executor, progress=progress, desc="SBN runs")
    return {c.label: h for c, h in zip(configs, histories)}


def time_sbn_steps(config: SBNConfig, train_x: np.ndarray, steps: int = 200) -> float:
    """Measured training steps per second of one configuration (no evaluation)."""
    short = SBNConfig(**{**config.__dict__, "steps": steps, "record_every": steps,
                         "eval_k": 1, "eval_examples": 1})
    _, history = train_sbn(short, train_x, train_x[:1])
    return steps / history.seconds
